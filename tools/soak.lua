-- Load and soak: many clients connect to a rem echo server in the same process, exchange
-- lines and close; a fraction is reset abruptly (by the client, or by the server's handler),
-- for SOAK_SECONDS (default 60; the first argument overrides it). Every second it prints the
-- connection count, RSS (VmRSS of /proc/self/status), open fds and the Lua heap; at the end it
-- checks that, after a warm-up (the first fifth of the run, at least 2 s), RSS and the Lua
-- heap did not grow beyond a generous margin, and that the fd count is back where it began.
-- Exits 1 when they did.
--   build/bin/rem tools/soak.lua [seconds]      (make soak SOAK_SECONDS=N)
-- SOAK_CLIENTS (default 64) clients run at once.
local rem = require "rem"
local core = require "rem.core"

local SECONDS = tonumber(arg and arg[1] or "") or tonumber(os.getenv("SOAK_SECONDS") or "") or 60
local CLIENTS = tonumber(os.getenv("SOAK_CLIENTS") or "") or 64
local WARMUP = math.max(2, SECONDS / 5)
local RSS_MARGIN_KB = 8 * 1024      -- growth allowed after the warm-up: 8 MiB, or
local RSS_MARGIN_RATIO = 0.25       -- a quarter of the RSS then, whichever is larger
local HOST = "127.0.0.1"

io.stdout:setvbuf("line")

local function rss_kb()
  local f = io.open("/proc/self/status")
  if not f then return 0 end
  local text = f:read("a")
  f:close()
  return tonumber(text:match("VmRSS:%s*(%d+)")) or 0
end

local pid
local function fd_count()
  if not pid then
    local f = assert(io.open("/proc/self/stat"))
    pid = f:read("l"):match("^(%d+)")
    f:close()
  end
  local listing = os.tmpname()
  os.execute("ls /proc/" .. pid .. "/fd > " .. listing)
  local n = 0
  local f = io.open(listing)
  if f then
    for _ in f:lines() do n = n + 1 end
    f:close()
  end
  os.remove(listing)
  return n
end

local stats = { conns = 0, client_resets = 0, server_resets = 0, lines = 0, failures = 0,
                handlers = 0 }
local first_failure

-- xorshift32, so that a run is the same from one machine to the next.
local seed = 12345
local function rand(n)
  seed = seed ~ ((seed << 13) & 0xffffffff)
  seed = seed ~ (seed >> 17)
  seed = seed ~ ((seed << 5) & 0xffffffff)
  return seed % n
end

-- The server's handler: echoes lines; "bye" ends the exchange (the server closes first, so
-- TIME_WAIT stays on its side); "reset" makes it reset the client instead.
local function handler(s)
  stats.handlers = stats.handlers + 1
  while true do
    local ok, line = pcall(s.read, s, "l")
    if not ok or line == nil then return end          -- the client went away (or reset)
    if line == "reset" then
      stats.server_resets = stats.server_resets + 1
      return s:reset()
    end
    if not pcall(s.write, s, line, "\n") then return end
    if line == "bye" then return end
  end
end

local function note_failure(what, err)
  stats.failures = stats.failures + 1
  if not first_failure then first_failure = what .. ": " .. tostring(err) end
end

-- One connection of a client: a few lines, then a clean end or a reset from either side.
local function session(port, id)
  local c <close> = rem.tcp.connect(HOST, port)
  stats.conns = stats.conns + 1
  for i = 1, 1 + rand(8) do
    local line = ("client %d line %d %s"):format(id, i, ("x"):rep(rand(200)))
    c:write(line, "\n")
    local back = c:read("l")
    if back ~= line then error("echo: sent " .. #line .. " bytes, got " .. tostring(back)) end
    stats.lines = stats.lines + 1
  end
  local r = rand(10)
  if r == 0 then                    -- the client resets the connection
    stats.client_resets = stats.client_resets + 1
    c:reset()
  elseif r == 1 then                -- the server resets it: the client sees ECONNRESET or the end
    c:write("reset\n")
    local ok, got = pcall(c.read, c, "l")
    if ok and got ~= nil then error("expected the end or a reset, got " .. got) end
  else
    c:write("bye\n")
    assert(c:read("l") == "bye")
    assert(c:read("l") == nil)      -- the server closed
  end
end

local function client(port, id, stop)
  while not stop.now do
    local ok, err = pcall(session, port, id)
    if not ok then
      if rem.is_cancelled(err) then error(err, 0) end
      note_failure("client " .. id, err)
    end
  end
end

local samples = {}
local function sample(t)
  local s = { t = t, rss = rss_kb(), fds = fd_count(), heap = collectgarbage("count"),
              conns = stats.conns }
  samples[#samples + 1] = s
  print(("soak: t=%3ds connections=%7d resets=%d/%d rss=%6d KB fds=%4d lua=%6d KB live=%d")
    :format(t, s.conns, stats.client_resets, stats.server_resets, s.rss, s.fds,
      math.floor(s.heap), core.stats().live))
  return s
end

local function main()
  do  -- what libuv keeps once made (the reserve descriptor made with the first stream)
    local srv <close> = rem.tcp.listen(HOST, 0, function(s) s:read("a") end)
    local c <close> = rem.tcp.connect(HOST, select(2, srv:address()))
  end
  local fds0 = fd_count()
  print(("soak: %d s, %d clients at once, warm-up %d s; start: rss=%d KB fds=%d")
    :format(SECONDS, CLIENTS, WARMUP, rss_kb(), fds0))
  local stop = { now = false }
  do
    local srv <close> = rem.tcp.listen(HOST, 0, handler)
    local port = select(2, srv:address())
    local clients = rem.group()
    for id = 1, CLIENTS do clients:spawn(client, port, id, stop) end
    local t0 = rem.now()
    local t = 0
    sample(0)
    while t < SECONDS do
      rem.sleep(1)
      t = math.floor(rem.now() - t0 + 0.5)
      sample(t)
    end
    stop.now = true
    clients:close()
  end
  collectgarbage()
  collectgarbage()
  local fds1 = fd_count()

  -- After the warm-up: the first sample past it, against the last one.
  local base
  for _, s in ipairs(samples) do
    if s.t >= WARMUP then base = s; break end
  end
  base = base or samples[1]
  local last = samples[#samples]
  local margin = math.max(RSS_MARGIN_KB, math.floor(base.rss * RSS_MARGIN_RATIO))
  local heap_margin = math.max(4096, base.heap * RSS_MARGIN_RATIO)
  print(("soak: %d connections (%d reset by the client, %d by the server), %d lines, "
    .. "%d failures; after the warm-up (t=%ds): rss %d KB -> %d KB (allowed +%d KB), lua heap "
    .. "%d KB -> %d KB, fds %d -> %d; at the end: fds %d (at the start %d)")
    :format(stats.conns, stats.client_resets, stats.server_resets, stats.lines,
      stats.failures, base.t, base.rss, last.rss, margin, math.floor(base.heap),
      math.floor(last.heap), base.fds, last.fds, fds1, fds0))
  local problems = {}
  if last.rss - base.rss > margin then problems[#problems + 1] = "RSS grew" end
  if last.heap - base.heap > heap_margin then problems[#problems + 1] = "the Lua heap grew" end
  if last.fds > base.fds + CLIENTS * 2 + 8 then problems[#problems + 1] = "fds grew" end
  if fds1 ~= fds0 then problems[#problems + 1] = "fds left open at the end" end
  if stats.failures > 0 then problems[#problems + 1] = "client failures (" .. first_failure .. ")" end
  if stats.conns < SECONDS then problems[#problems + 1] = "hardly any connections" end
  if stats.client_resets == 0 or stats.server_resets == 0 then
    problems[#problems + 1] = "no resets"
  end
  if #problems > 0 then
    print("soak: FAILED: " .. table.concat(problems, "; "))
    print("soak: 0 passed, 1 failed")
    os.exit(1)
  end
  print("soak: 1 passed, 0 failed")
end

if rem.current() then
  main()             -- under the rem program: this script is the main task
else
  rem.run(main)
end
