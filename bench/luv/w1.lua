-- W1, Lua + luv by hand: 200,000 sequential enter+exit of a trivial manager (a fresh one each
-- time) in a task of the hand-written scheduler. Prints ns per enter+exit.
package.path = arg[0]:match("^(.-)[^/]*$") .. "?.lua;" .. package.path
local S = require "sched"
local uv = S.uv
local N, REPS = 200000, 5

local M = S.Manager:extend()
function M:acquire_resources() end
function M:release_resources() end

local function run()
  for _ = 1, N do
    local m <close> = M.new():enter()
  end
end

S.run(function()
  run()
  local t0 = uv.hrtime()
  for _ = 1, REPS do run() end
  local t1 = uv.hrtime()
  print(("RESULT %.2f"):format((t1 - t0) / (N * REPS)))
end)
