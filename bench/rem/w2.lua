-- W2, rem: a rem.ExitStack of 1,000 entries (500 entered trivial rem.Managers and 500
-- callbacks, interleaved), unwound; 200 times. Prints ns per entry.
local rem = require "rem"
local ENTRIES, TIMES, REPS = 1000, 200, 5

local M = rem.Manager:extend()
function M:acquire_resources() end
function M:release_resources() end
local function callback() end

local function run()
  for _ = 1, TIMES do
    local stack <close> = rem.ExitStack()
    for _ = 1, ENTRIES // 2 do
      stack:enter_context(M.new())
      stack:callback(callback)
    end
  end
end

run()
rem.checkpoint()
local t0 = rem.now()
for _ = 1, REPS do run() end
rem.checkpoint()
local t1 = rem.now()
print(("RESULT %.2f"):format((t1 - t0) * 1e9 / (ENTRIES * TIMES * REPS)))
