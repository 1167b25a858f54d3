-- W1's floor, plain Lua 5.4: `local x <close> = setmetatable({}, mt)` 200,000 times (luv only
-- for its clock). Prints ns per iteration.
local hrtime = require("luv").hrtime
local N, REPS = 200000, 5
local mt = { __close = function() end }
local setmetatable = setmetatable

local function run()
  for _ = 1, N do
    local x <close> = setmetatable({}, mt)
  end
end

run()
local t0 = hrtime()
for _ = 1, REPS do run() end
local t1 = hrtime()
print(("RESULT %.2f"):format((t1 - t0) / (N * REPS)))
