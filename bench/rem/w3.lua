-- W3, rem: `rem w3.lua PORT`. 10 rounds of: enter 1,000 TCP connections concurrently with
-- rem.gather, write 64 bytes on each and read the 64-byte echo, exit all concurrently (the
-- pool closes every stream at once). Prints ms per round.
local rem = require "rem"
local CONNS, ROUNDS = 1000, 10
local port = assert(tonumber(arg[1]), "usage: rem w3.lua PORT")
local payload = ("abcdefghijklmnopqrstuvwxyz"):rep(3):sub(1, 64)

local function connect() return rem.tcp.connect("127.0.0.1", port) end
local members = {}
for i = 1, CONNS do members[i] = connect end

local function body(...)
  local streams = { ... }
  for i = 1, CONNS do streams[i]:write(payload) end
  for i = 1, CONNS do assert(streams[i]:read(64) == payload, "bad echo") end
end

rem.checkpoint()
local t0 = rem.now()
for _ = 1, ROUNDS do rem.with(rem.gather(table.unpack(members)), body) end
rem.checkpoint()
local t1 = rem.now()
print(("RESULT %.3f"):format((t1 - t0) * 1e3 / ROUNDS))
