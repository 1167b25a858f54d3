-- W4, rem: 100,000 members entered concurrently with rem.gather, each enter sleeping 10 ms,
-- then all exited concurrently. Prints the wall time in ms.
local rem = require "rem"
local MEMBERS = 100000

local Member = {}
Member.__index = Member
function Member:enter() rem.sleep(0.01) end
function Member:exit() return false end

local members = {}
for i = 1, MEMBERS do members[i] = setmetatable({}, Member) end
rem.checkpoint()
local t0 = rem.now()
rem.with(rem.gather(table.unpack(members)), function() end)
rem.checkpoint()
local t1 = rem.now()
print(("RESULT %.3f"):format((t1 - t0) * 1e3))
