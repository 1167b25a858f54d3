-- W2, Lua + luv by hand: an exit stack of 1,000 entries (500 entered trivial managers and 500
-- callbacks, interleaved), unwound; 200 times. Prints ns per entry.
package.path = arg[0]:match("^(.-)[^/]*$") .. "?.lua;" .. package.path
local S = require "sched"
local uv = S.uv
local ENTRIES, TIMES, REPS = 1000, 200, 5

local M = S.Manager:extend()
function M:acquire_resources() end
function M:release_resources() end
local function callback() end

local function run()
  for _ = 1, TIMES do
    local stack = S.exit_stack()
    for _ = 1, ENTRIES // 2 do
      stack:enter_context(M.new())
      stack:callback(callback)
    end
    stack:close()
  end
end

S.run(function()
  run()
  local t0 = uv.hrtime()
  for _ = 1, REPS do run() end
  local t1 = uv.hrtime()
  print(("RESULT %.2f"):format((t1 - t0) / (ENTRIES * TIMES * REPS)))
end)
