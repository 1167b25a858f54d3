-- W4, Lua + luv by hand: 100,000 members entered concurrently with the hand-written gather,
-- each enter sleeping 10 ms, then all exited concurrently. Prints the wall time in ms.
package.path = arg[0]:match("^(.-)[^/]*$") .. "?.lua;" .. package.path
local S = require "sched"
local uv = S.uv
local MEMBERS = 100000

local Member = {}
Member.__index = Member
function Member:enter() S.sleep(0.01) end
function Member:exit() return false end

S.run(function()
  local members = {}
  for i = 1, MEMBERS do members[i] = setmetatable({}, Member) end
  local t0 = uv.hrtime()
  do
    local pool <close> = S.gather(table.unpack(members))
    pool:enter()
  end
  local t1 = uv.hrtime()
  print(("RESULT %.3f"):format((t1 - t0) / 1e6))
end)
