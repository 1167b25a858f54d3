-- Integration: a real redis-server (Debian's), started by the spec on a free port of
-- 127.0.0.1 with persistence off, spoken to in RESP over 100 concurrent connections.
local H = require "spec.helper"
local rem = H.rem

local function which(cmd)
  for dir in (os.getenv("PATH") or "/usr/bin:/bin"):gmatch("[^:]+") do
    local f = io.open(dir .. "/" .. cmd)
    if f then
      f:close()
      return dir .. "/" .. cmd
    end
  end
end

-- RESP: a command is an array of bulk strings.
local function command(...)
  local args = table.pack(...)
  local out = { "*" .. args.n .. "\r\n" }
  for i = 1, args.n do
    local a = tostring(args[i])
    out[#out + 1] = "$" .. #a .. "\r\n" .. a .. "\r\n"
  end
  return table.concat(out)
end

-- One reply: a simple string, an integer, a bulk string (nil when absent); errors raise.
local function reply(c)
  local line = assert(c:read("l"), "redis closed the connection")
  line = line:gsub("\r$", "")
  local kind, rest = line:sub(1, 1), line:sub(2)
  if kind == "+" then return rest end
  if kind == ":" then return tonumber(rest) end
  if kind == "-" then error("redis: " .. rest, 0) end
  if kind == "$" then
    local n = tonumber(rest)
    if n < 0 then return nil end
    return c:read(n + 2):sub(1, n)
  end
  error("unexpected reply: " .. line, 0)
end

local function free_port()
  local srv <close> = rem.tcp.listen("127.0.0.1", 0, function() end)
  return (select(2, srv:address()))
end

-- Starts redis-server and waits (bounded) until it answers PING: process, port.
local function start_redis(exe)
  local port = free_port()
  local p = rem.process.spawn { exe, "--save", "", "--appendonly", "no", "--port", port,
                                "--bind", "127.0.0.1", stdout = "ignore", stderr = "ignore" }
  for _ = 1, 200 do
    local ok, c = pcall(rem.tcp.connect, "127.0.0.1", port)
    if ok then
      local c2 <close> = c
      c2:write(command("PING"))
      local pong = reply(c2)
      if pong == "PONG" then return p, port end
    end
    rem.sleep(0.025)
  end
  p:close()
  error("redis-server did not start accepting connections within 5 s")
end

local exe = which("redis-server")

describe("redis integration", function()
  if not exe then
    pending("redis-server is not installed (apt-get install redis-server)")
    return
  end

  local fds
  setup(function()
    H.run(function()
      local p <close> = rem.process.spawn { "true", stdout = "pipe" }
      p:wait()
      local srv <close> = rem.tcp.listen("127.0.0.1", 0, function() end)
      local c <close> = rem.tcp.connect("127.0.0.1", select(2, srv:address()))
    end)
  end)
  before_each(function() fds = H.fd_count() end)
  after_each(function()
    H.assert_clean()
    assert.are.equal(fds, H.fd_count(), "file descriptors leaked")
  end)

  it("100 concurrent connections each SET then GET their own key", function()
    H.run(function()
      rem.timeout(30, function()
        local redis <close>, port = start_redis(exe)
        local checked = 0
        rem.group(function(g)
          for i = 1, 100 do
            g:spawn(function()
              local c <close> = rem.tcp.connect("127.0.0.1", port)
              local key, value = "rem:key:" .. i, ("value %d\r\nwith a newline"):format(i)
              c:write(command("SET", key, value))
              assert.are.equal("OK", reply(c))
              c:write(command("GET", key))
              assert.are.equal(value, reply(c))
              checked = checked + 1
            end)
          end
        end)
        assert.are.equal(100, checked)
        -- one more, pipelined: both commands in one write, both replies after
        local c <close> = rem.tcp.connect("127.0.0.1", port)
        c:write(command("INCRBY", "rem:n", 41), command("INCR", "rem:n"))
        assert.are.equal(41, reply(c))
        assert.are.equal(42, reply(c))
        local ok, err = pcall(function()
          c:write(command("NOPE"))
          return reply(c)
        end)
        assert.is_false(ok)
        assert.matches("^redis: ERR unknown command", err)
      end)
    end)
  end)

  it("redis is stopped afterwards: closing the process ends it (SIGTERM) and reaps it", function()
    H.run(function()
      local redis, port = start_redis(exe)
      redis:close()
      assert.are.equal("ECONNREFUSED", H.error_of(rem.tcp.connect, "127.0.0.1", port).code)
      local code, sig = redis:wait()
      assert.is_true(code == 0 or sig == "SIGTERM", tostring(code) .. " " .. tostring(sig))
    end)
  end)
end)
