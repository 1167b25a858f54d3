-- W4 memory check for rem.gather (BENCH.md W4): 100,000 members entered concurrently, each
-- enter a rem.sleep(0.01), then all exited concurrently. Prints the wall time in ms.
--
-- Peak RSS per member: (peak of this script - peak of an empty script) / members, with
--   /usr/bin/time -f %M build/bin/rem bench/w4_gather.lua          (Lua members: a task each)
--   /usr/bin/time -f %M build/bin/rem bench/w4_gather.lua c        (C members: no task)
--   /usr/bin/time -f %M build/bin/rem -e ''                        (the baseline)
-- (%M is in KiB.) An optional second argument sets the number of members.
local rem = require "rem"
local core = require "rem.core"

local kind = arg and arg[1] or "lua"
local n = tonumber(arg and arg[2]) or 100000

local members = {}
if kind == "c" then
  for i = 1, n do members[i] = core.sleeper(0.01) end
else
  local function member() rem.sleep(0.01) end  -- an async constructor: nothing to exit
  for i = 1, n do members[i] = member end
end

local t0 = rem.now()
do
  local _ <close> = rem.enter(rem.gather(table.unpack(members, 1, n)))
end
print(("RESULT %.3f"):format((rem.now() - t0) * 1e3))
