-- W1, rem: 200,000 sequential enter+exit of a trivial rem.Manager (a fresh one each time),
-- `local m <close> = M.new():enter()`. Prints ns per enter+exit. rem.now() is the loop's
-- clock (ms): a checkpoint refreshes it, and the 5 timed batches last long enough for it.
local rem = require "rem"
local N, REPS = 200000, 5

local M = rem.Manager:extend()
function M:acquire_resources() end
function M:release_resources() end

local function run()
  for _ = 1, N do
    local m <close> = M.new():enter()
  end
end

run()
rem.checkpoint()
local t0 = rem.now()
for _ = 1, REPS do run() end
rem.checkpoint()
local t1 = rem.now()
print(("RESULT %.2f"):format((t1 - t0) * 1e9 / (N * REPS)))
