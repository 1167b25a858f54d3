-- rem's main job (`make demo`): an echo server in this process, 1,000 connections opened at
-- once with rem.gather, a message exchanged on each; then the same with one member failing
-- on purpose: every other connection is still closed, the failure comes back as an
-- ErrorGroup printed as a tree, and the open file descriptor count ends where it started.
--
-- Run it with `make demo`, or `build/bin/rem examples/demo.lua [connections]`: the rem
-- program runs the script as the main task. Everything stays on 127.0.0.1.
local rem = require "rem"

local t0 = rem.now()
local function say(fmt, ...)
  print(string.format("[%6.1f ms] " .. fmt, (rem.now() - t0) * 1000, ...))
end

-- Open descriptors of this process (Lua has no getpid: /proc/self/stat says it).
local function pid()
  local f <close> = assert(io.open("/proc/self/stat"))
  return f:read("n")
end
local PID = pid()
local function open_fds()
  -- ls writes to a file, not a pipe: a pipe's descriptors would be counted while popen
  -- still holds both ends (a race on a loaded machine).
  local listing = os.tmpname()
  assert(os.execute("ls /proc/" .. PID .. "/fd > " .. listing))
  local n = 0
  for _ in io.lines(listing) do n = n + 1 end  -- io.lines closes the file at its end
  os.remove(listing)
  return n
end

-- Each connection takes two descriptors here (client and server side): stay under the limit.
local function fd_limit()
  local f <close> = assert(io.open("/proc/self/limits"))  -- closed now, not at GC
  return tonumber(f:read("a"):match("\nMax open files%s+(%d+)")) or 1024
end
local N = math.min(tonumber(arg and arg[1]) or 1000, (fd_limit() - 64) // 2)

-- The echo server: each connection's handler runs in a task of its own.
local serving = 0
local server <close> = rem.tcp.listen("127.0.0.1", 0, function(conn)
  serving = serving + 1
  for line in conn:lines() do conn:write(line, "\n") end
  conn:close()  -- the server would close it after the handler; here it is gone when counted
  serving = serving - 1
end, { backlog = 4096 })  -- room for every connection arriving at once
local host, port = server:address()
-- Counted once the server listens (libuv keeps one spare descriptor per loop from then on).
local before = open_fds()
say("echo server on %s:%d; %d descriptors open; %d connections to make", host, port,
    before, N)

local function wait_until_served()
  for _ = 1, 500 do  -- the server's side ends when each client has closed
    if serving == 0 then return end
    rem.sleep(0.01)
  end
end

-- 1. N connections entered at once; one message each way on every one, all at once; the
--    pool closes every connection, concurrently, when the block ends.
local connect = function() return rem.tcp.connect(host, port, { timeout = 5 }) end
local members = {}
for i = 1, N do members[i] = connect end
do
  local entered = table.pack(rem.enter(rem.gather(table.unpack(members))))
  local pool <close> = entered[1]
  say("gather: %d connections open, %d descriptors", entered.n - 1, open_fds())
  local echoed = 0
  rem.group(function(g)
    for i = 1, N do
      g:spawn(function(conn)
        conn:write("hello from ", i, "\n")
        if conn:read("l") == "hello from " .. i then echoed = echoed + 1 end
      end, entered[i + 1])
    end
  end)
  say("exchanged: %d of %d connections echoed their message", echoed, N)
end
wait_until_served()
say("pool closed: %d connections still served, %d descriptors", serving, open_fds())

-- 2. The same, with member 700 failing on purpose once it is connected: the members that
--    entered are closed, those still connecting are cancelled, the body never runs, and
--    the failure comes back as an ErrorGroup.
local failing = math.min(700, N)
members[failing] = function()
  local conn <close> = rem.tcp.connect(host, port, { timeout = 5 })
  rem.sleep(0.005)
  error(rem.Error("member " .. failing .. " refuses on purpose", "EDEMO"))
end
local ok, err = pcall(rem.with, rem.gather(table.unpack(members)), function()
  error("the body must not run")
end)
say("gather with a failing member: ok=%s", tostring(ok))
print(tostring(err))
wait_until_served()
say("every other connection closed: %d still served", serving)

local after = open_fds()
say("%d descriptors open, %d at the start%s", after, before,
    after == before and ": nothing leaked" or "  <-- LEAK")
server:close()
if after ~= before then error("descriptors leaked") end
