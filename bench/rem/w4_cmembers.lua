-- W4, rem with C members: the same fan-out, each member a `rem.core.sleeper(0.01)` -- the
-- C-member template of bindings/sleeper.c, whose enter waits 10 ms on rem's timer heap and
-- whose exit returns at once. No task or coroutine per member: this row shows what a pool of
-- rem's own C resources costs, next to the Lua members of w4.lua. Prints the wall time in ms.
local rem = require "rem"
local core = require "rem.core"
local MEMBERS = 100000

local members = {}
for i = 1, MEMBERS do members[i] = core.sleeper(0.01) end
rem.checkpoint()
local t0 = rem.now()
rem.with(rem.gather(table.unpack(members)), function() end)
rem.checkpoint()
local t1 = rem.now()
print(("RESULT %.3f"):format((t1 - t0) * 1e3))
