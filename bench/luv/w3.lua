-- W3, Lua + luv by hand: `w3.lua PORT`. 10 rounds of: enter 1,000 connections concurrently
-- with the hand-written gather, write 64 bytes on each and read the echo, exit all
-- concurrently. Prints ms per round.
package.path = arg[0]:match("^(.-)[^/]*$") .. "?.lua;" .. package.path
local S = require "sched"
local uv = S.uv
local CONNS, ROUNDS = 1000, 10
local port = assert(tonumber(arg[1]), "usage: w3.lua PORT")
local payload = ("abcdefghijklmnopqrstuvwxyz"):rep(3):sub(1, 64)

local function connect() return S.connect("127.0.0.1", port) end
local members = {}
for i = 1, CONNS do members[i] = connect end

local function round()
  local pool <close> = S.gather(table.unpack(members))
  local streams = { pool:enter() }
  for i = 1, CONNS do streams[i]:write(payload) end
  for i = 1, CONNS do assert(streams[i]:read(64) == payload, "bad echo") end
end

S.run(function()
  local t0 = uv.hrtime()
  for _ = 1, ROUNDS do round() end
  local t1 = uv.hrtime()
  print(("RESULT %.3f"):format((t1 - t0) / 1e6 / ROUNDS))
end)
