-- rem.tcp: streams and servers over real sockets on 127.0.0.1 (and ::1 when the machine has
-- it). After every case nothing is left on the loop and the fd count is back at its baseline.
local H = require "spec.helper"
local rem = H.rem

local LOCAL = "127.0.0.1"

-- How many descriptors this process may open (the soft limit).
local function fd_limit()
  local f = io.open("/proc/self/limits")
  if not f then return 1024 end
  local text = f:read("a")
  f:close()
  return tonumber(text:match("Max open files%s+(%d+)")) or 1024
end

local function has_ipv6_loopback()
  local f = io.open("/proc/net/if_inet6")
  if not f then return false end
  local text = f:read("a")
  f:close()
  return text:find("00000000000000000000000000000001", 1, true) ~= nil
end

-- Waits (a bounded number of turns) until cond() is true.
local function wait_until(cond, what)
  for _ = 1, 500 do
    if cond() then return end
    rem.sleep(0.01)
  end
  error("timed out waiting for " .. (what or "a condition"), 2)
end

local function echo(s)
  for line in s:lines("L") do s:write(line) end
end

-- listen on an ephemeral port of 127.0.0.1: server, port.
local function serve(handler, opts)
  local srv = rem.tcp.listen(LOCAL, 0, handler, opts)
  local _, port = srv:address()
  return srv, port
end

describe("rem.tcp", function()
  local fds
  setup(function()
    -- What libuv opens once per loop or process and keeps: the thread pool, the loop's
    -- reserve descriptor for EMFILE (made with its first stream).
    H.run(function()
      rem.resolve("localhost")
      local srv <close> = rem.tcp.listen(LOCAL, 0, echo)
      local c <close> = rem.tcp.connect(LOCAL, select(2, srv:address()))
    end)
  end)
  before_each(function() fds = H.fd_count() end)
  after_each(function()
    H.assert_clean()
    assert.are.equal(fds, H.fd_count(), "file descriptors leaked")
  end)

  describe("echo", function()
    it("a client exchanges lines with an echo server; the server reports its address", function()
      H.run(function()
        local srv <close>, port = serve(echo)
        local host, p = srv:address()
        assert.are.equal(LOCAL, host)
        assert.are.equal(port, p)
        assert.is_true(port > 0)
        local c <close> = rem.tcp.connect(LOCAL, port)
        assert.are.equal(c, c:write("hello\n"))
        assert.are.equal("hello", c:read("l"))
        c:write("a", 1, " ", 2.5, "\n", "b\n")
        assert.are.equal("a1 2.5\n", c:read("L"))
        assert.are.equal("b", c:read("*l"))
        c:shutdown()
        assert.are.equal("", c:read("a"))
        assert.is_nil(c:read("l"))
      end)
    end)

    it("connects by name: localhost", function()
      H.run(function()
        local srv <close>, port = serve(echo)
        local c <close> = rem.tcp.connect("localhost", port)
        c:write("by name\n")
        assert.are.equal("by name", c:read())
      end)
    end)

    it("reads with Lua's io formats: counts, several formats, read(0), the end", function()
      H.run(function()
        local srv <close>, port = serve(function(s)
          s:write("0123456789\nline two\nlast without newline")
        end)
        local c <close> = rem.tcp.connect(LOCAL, port)
        assert.are.equal("012", c:read(3))
        assert.are.equal("", c:read(0))
        local a, b, d = c:read(2, "l", "L")
        assert.are.same({ "34", "56789", "line two\n" }, { a, b, d })
        assert.are.equal("last without newline", c:read("a"))
        assert.are.equal("", c:read("a"))
        assert.is_nil(c:read(0))
        assert.is_nil(c:read(5))
        assert.is_nil(c:read("l"))
        local x, y = c:read("l", "l")
        assert.is_nil(x)
        assert.is_nil(y)
      end)
    end)

    it("lines() over a multi-line exchange, in order", function()
      H.run(function()
        local srv <close>, port = serve(function(s)
          local n = tonumber(s:read("l"))
          for i = 1, n do s:write("line ", i, "\n") end
        end)
        local c <close> = rem.tcp.connect(LOCAL, port)
        c:write("200\n")
        local got = {}
        for line in c:lines() do got[#got + 1] = line end
        assert.are.equal(200, #got)
        for i = 1, 200 do assert.are.equal("line " .. i, got[i]) end
        local keep = {}
        for line in c:lines("L") do keep[#keep + 1] = line end
        assert.are.same({}, keep)
      end)
    end)

    it("the stream is closed when its handler returns: the client reads the end", function()
      H.run(function()
        local log, add = H.log()
        local srv <close>, port = serve(function(s)
          add("handler " .. s:read("l"))
        end)
        local c <close> = rem.tcp.connect(LOCAL, port)
        c:write("hi\n")
        assert.is_nil(c:read("l"))
        assert.are.same({ "handler hi" }, log)
      end)
    end)

    it("close flushes what was queued: the peer reads every byte", function()
      H.run(function()
        local size = 4 * 1024 * 1024
        local got
        local srv <close>, port = serve(function(s) got = #s:read("a") end)
        do
          local c <close> = rem.tcp.connect(LOCAL, port)
          c:write(string.rep("x", size))
        end
        wait_until(function() return got end, "the server to read everything")
        assert.are.equal(size, got)
      end)
    end)

    it("a big write waits for the peer; what it reads is intact", function()
      H.run(function()
        local chunk = string.rep("0123456789abcdef", 64 * 1024)  -- 1 MiB
        local srv <close>, port = serve(function(s)
          s:write(chunk, chunk, chunk)
          s:write("\nend\n")
        end)
        local c <close> = rem.tcp.connect(LOCAL, port)
        local all = c:read("l")
        assert.are.equal(3 * #chunk, #all)
        assert.is_true(all == chunk .. chunk .. chunk)
        assert.are.equal("end", c:read("l"))
      end)
    end)

    it("reading stops while nobody reads: a fast writer is held back (backpressure)", function()
      H.run(function()
        local chunk = string.rep("y", 256 * 1024)
        local sent, total = 0, 128
        local srv <close>, port = serve(function(s)
          for _ = 1, total do
            s:write(chunk)
            sent = sent + 1
          end
        end)
        local c <close> = rem.tcp.connect(LOCAL, port)
        rem.sleep(0.2)
        assert.is_true(sent < total, "the writer should be blocked by the unread data")
        local n = #c:read("a")
        assert.are.equal(total * #chunk, n)
        assert.are.equal(total, sent)
      end)
    end)
  end)

  describe("many clients", function()
    -- Each connection costs two descriptors here (client and server side).
    local wanted = 1000
    local limit = fd_limit()
    local n = math.min(wanted, (limit - 200) // 2)
    local title = ("%d concurrent echo clients in a group"):format(n)
    if n < 400 then
      pending(("concurrent echo clients: the fd limit (%d) allows fewer than 400"):format(limit))
    else
      if n < wanted then
        title = title .. (" (the fd limit %d allows no more than this)"):format(limit)
      end
      it(title, function()
        H.run(function()
          local done, peak, open = 0, 0, 0
          rem.timeout(60, function()
            local srv <close>, port = serve(function(s)
              open = open + 1
              if open > peak then peak = open end
              echo(s)
              open = open - 1
            end, { backlog = 1024 })
            local g <close> = rem.group()
            for i = 1, n do
              g:spawn(function()
                local c <close> = rem.tcp.connect(LOCAL, port)
                c:write("hello ", i, "\n")
                assert.are.equal("hello " .. i, c:read("l"))
                rem.checkpoint()
                c:write("bye ", i, "\n")
                assert.are.equal("bye " .. i, c:read("l"))
                done = done + 1
              end)
            end
          end)
          assert.are.equal(n, done)
          assert.is_true(peak > 1, "the connections should overlap")
        end)
      end)
    end
  end)

  describe("failures", function()
    it("connection refused raises an rem.Error with code ECONNREFUSED", function()
      H.run(function()
        local srv, port = serve(echo)
        srv:close()  -- the port is now free and nobody listens there
        local err = H.error_of(rem.tcp.connect, LOCAL, port)
        assert.are.equal(rem.Error, getmetatable(err))
        assert.are.equal("ECONNREFUSED", err.code)
        assert.matches("rem.tcp.connect", err.message, 1, true)
        assert.matches(LOCAL .. ":" .. port, err.message, 1, true)
      end)
    end)

    it("a name that does not resolve raises an rem.Error with its code", function()
      H.run(function()
        local err = H.error_of(rem.tcp.connect, "no-such-host.invalid", 80)
        assert.are.equal(rem.Error, getmetatable(err))
        assert.matches("^EAI_", err.code)
        assert.matches("no-such-host.invalid", err.message, 1, true)
      end)
    end)

    it("listening on a port in use raises EADDRINUSE", function()
      H.run(function()
        local srv <close>, port = serve(echo)
        local err = H.error_of(rem.tcp.listen, LOCAL, port, echo)
        assert.are.equal("EADDRINUSE", err.code)
        assert.matches("rem.tcp.listen", err.message, 1, true)
      end)
    end)

    it("a peer that resets mid-read: the read raises ECONNRESET", function()
      H.run(function()
        local srv <close>, port = serve(function(s)
          s:read("l")
          s:reset()
        end)
        local c <close> = rem.tcp.connect(LOCAL, port)
        c:write("go\n")
        local err = H.error_of(c.read, c, "l")
        assert.are.equal("ECONNRESET", err.code)
        assert.matches("stream:read", err.message, 1, true)
        -- the failure sticks: the next read says the same
        assert.are.equal("ECONNRESET", H.error_of(c.read, c, "a").code)
      end)
    end)

    it("writes to a peer that reset fail on a later call with the socket's code", function()
      H.run(function()
        local srv <close>, port = serve(function(s) s:reset() end)
        local c <close> = rem.tcp.connect(LOCAL, port)
        pcall(c.read, c, "l")  -- the reset (or the end) has arrived
        local err
        for _ = 1, 200 do
          local ok, e = pcall(c.write, c, string.rep("z", 64 * 1024))
          if not ok then err = e break end
          rem.sleep(0.001)
        end
        assert.is_not_nil(err, "a write should have failed")
        assert.is_truthy(err.code == "EPIPE" or err.code == "ECONNRESET", tostring(err))
      end)
    end)
  end)

  describe("cancellation", function()
    it("rem.timeout around a read that never completes releases the socket", function()
      H.run(function()
        local server_saw
        local srv <close>, port = serve(function(s)
          server_saw = s:read("a")  -- the client never writes; "" once it is gone
        end)
        local c
        local err = H.error_of(rem.timeout, 0.1, function()
          local s <close> = rem.tcp.connect(LOCAL, port)
          c = s
          s:read("l")
        end)
        assert.is_true(rem.is_timeout(err))
        assert.matches("closed", tostring(c))
        wait_until(function() return server_saw end, "the server to see the end")
        assert.are.equal("", server_saw)
      end)
    end)

    it("cancelling a task blocked in read closes cleanly; buffered data is kept", function()
      H.run(function()
        local srv <close>, port = serve(function(s)
          s:write("partial")
          s:read("a")
        end)
        local log, add = H.log()
        local c <close> = rem.tcp.connect(LOCAL, port)
        local t = rem.spawn(function()
          local ok, err = pcall(c.read, c, "l")
          add(rem.is_cancelled(err) and "cancelled" or tostring(err))
          error(err, 0)
        end)
        rem.sleep(0.05)
        t:cancel()
        local err = H.error_of(t.join, t)
        assert.is_true(rem.is_cancelled(err))
        assert.are.same({ "cancelled" }, log)
        assert.are.equal("partial", c:read(7))  -- nothing read before was lost
      end)
    end)

    it("cancelling a task blocked in write closes cleanly and quickly", function()
      H.run(function()
        local release = false
        local srv <close>, port = serve(function(s)
          wait_until(function() return release end, "the release")  -- never reads
        end)
        local blocked, written = false, 0
        local t = rem.spawn(function()
          local c <close> = rem.tcp.connect(LOCAL, port)
          local chunk = string.rep("w", 1024 * 1024)
          for _ = 1, 512 do
            c:write(chunk)
            written = written + 1
          end
          blocked = "never"
        end)
        rem.sleep(0.3)
        local before = written
        rem.sleep(0.1)
        assert.are.equal(before, written, "the writer should be blocked")
        local t0 = rem.now()
        t:cancel()
        local err = H.error_of(t.join, t)
        assert.is_true(rem.is_cancelled(err))
        assert.is_true(rem.now() - t0 < 1, "close must not flush a cancelled write")
        assert.is_false(blocked)
        release = true
      end)
    end)

    it("a cancelled write leaves the stream broken: further writes raise", function()
      H.run(function()
        local release = false
        local srv <close>, port = serve(function()
          wait_until(function() return release end, "the release")
        end)
        local c <close> = rem.tcp.connect(LOCAL, port)
        local chunk = string.rep("w", 1024 * 1024)
        local err = H.error_of(rem.timeout, 0.2, function()
          for _ = 1, 512 do c:write(chunk) end
        end)
        assert.is_true(rem.is_timeout(err))
        local err2 = H.error_of(c.write, c, "more")
        assert.are.equal("EPIPE", err2.code)
        assert.matches("cancelled", err2.message, 1, true)
        release = true
      end)
    end)

    it("opts.timeout ends a connect that cannot complete; cancelling one closes cleanly", function()
      H.run(function()
        -- One connection at a time, and a tiny backlog: once the server holds one and the
        -- kernel's queue is full, the next connection attempt waits (its SYN is dropped).
        local stop = false
        local srv <close>, port = serve(function()
          wait_until(function() return stop end, "the end of the test")
        end, { max_connections = 1, backlog = 1 })
        local held = {}
        local timed_out
        for _ = 1, 10 do
          local ok, c = pcall(rem.tcp.connect, LOCAL, port, { timeout = 0.3 })
          if not ok then
            timed_out = c
            break
          end
          held[#held + 1] = c
        end
        assert.is_not_nil(timed_out, "a connect should have blocked")
        assert.are.equal("ETIMEDOUT", timed_out.code)
        assert.is_true(rem.is_timeout(timed_out))
        assert.matches("timed out after 0.3 s", timed_out.message, 1, true)
        local t = rem.spawn(function() rem.tcp.connect(LOCAL, port) end)
        rem.sleep(0.1)
        assert.is_false(t:done())
        t:cancel()
        assert.is_true(rem.is_cancelled(H.error_of(t.join, t)))
        stop = true
        for _, c in ipairs(held) do c:close() end
      end)
    end)

    it("max_connections holds further connections until one closes", function()
      H.run(function()
        local active, peak, served = 0, 0, 0
        local srv <close>, port = serve(function(s)
          active = active + 1
          peak = math.max(peak, active)
          rem.sleep(0.02)
          s:write(s:read("l"), "\n")
          served = served + 1
          active = active - 1
        end, { max_connections = 2 })
        rem.group(function(g)
          for i = 1, 6 do
            g:spawn(function()
              local c <close> = rem.tcp.connect(LOCAL, port)
              c:write(i, "\n")
              assert.are.equal(tostring(i), c:read("l"))
            end)
          end
        end)
        assert.are.equal(6, served)
        assert.are.equal(2, peak)
      end)
    end)
  end)

  describe("servers", function()
    it("closing a server with connections open cancels the handlers; clients read the end", function()
      H.run(function()
        local log, add = H.log()
        local running = 0
        local srv, port = serve(function(s)
          running = running + 1
          local ok, err = pcall(s.read, s, "l")
          add(rem.is_cancelled(err) and "handler cancelled" or "handler: " .. tostring(err))
          error(err, 0)
        end)
        local clients = {}
        for i = 1, 3 do clients[i] = rem.tcp.connect(LOCAL, port) end
        wait_until(function() return running == 3 end, "three handlers")
        srv:close()
        assert.are.same({ "handler cancelled", "handler cancelled", "handler cancelled" }, log)
        for _, c in ipairs(clients) do
          assert.is_nil(c:read("l"))
          c:close()
        end
        srv:close()  -- idempotent
        assert.matches("closed", H.error_of(srv.address, srv))
      end)
    end)

    it("a failing handler stops the server; close raises an ErrorGroup with its error", function()
      H.run(function()
        local log, add = H.log()
        local srv <close>, port = serve(function(s)
          local what = s:read("l")
          if what == "fail" then error(H.E("handler failed")) end
          local ok, err = pcall(s.read, s, "l")
          add(rem.is_cancelled(err) and "other cancelled" or "other: " .. tostring(err))
        end)
        local calm <close> = rem.tcp.connect(LOCAL, port)
        calm:write("calm\n")
        rem.sleep(0.05)
        local bad <close> = rem.tcp.connect(LOCAL, port)
        bad:write("fail\n")
        srv:wait()  -- returns once the server stopped
        local eg = H.error_of(srv.close, srv)
        assert.is_true(rem.is_error_group(eg))
        assert.are.equal(1, #eg.errors)
        assert.are.equal("handler failed", eg.errors[1].name)
        assert.are.same({ "other cancelled" }, log)
        assert.is_nil(calm:read("l"))
        assert.are.equal("ECONNREFUSED", H.error_of(rem.tcp.connect, LOCAL, (port)).code)
      end)
    end)

    it("a handler may stop its server; the owner's wait returns and close waits for the rest", function()
      H.run(function()
        local log, add = H.log()
        local srv
        srv = rem.tcp.listen(LOCAL, 0, function(s)
          local cmd = s:read("l")
          if cmd == "stop" then
            srv:close()
            add("stopped")
          else
            local ok, err = pcall(s.read, s, "l")
            add(rem.is_cancelled(err) and "idle cancelled" or tostring(err))
          end
        end)
        local _, port = srv:address()
        local idle <close> = rem.tcp.connect(LOCAL, port)
        idle:write("idle\n")
        rem.sleep(0.05)
        local c <close> = rem.tcp.connect(LOCAL, port)
        c:write("stop\n")
        srv:wait()
        srv:close()
        table.sort(log)
        assert.are.same({ "idle cancelled", "stopped" }, log)
      end)
    end)

    it("a server belongs to its task: cancelling that task stops it", function()
      H.run(function()
        local port
        local err = H.error_of(rem.timeout, 0.15, function()
          local srv <close> = rem.tcp.listen(LOCAL, 0, echo)
          port = select(2, srv:address())
          local c <close> = rem.tcp.connect(LOCAL, port)
          srv:wait()
        end)
        assert.is_true(rem.is_timeout(err))
        assert.are.equal("ECONNREFUSED", H.error_of(rem.tcp.connect, LOCAL, port).code)
      end)
    end)

    it("a server whose task ends without closing it stops by itself", function()
      H.run(function()
        local port
        local t = rem.spawn(function()
          local srv = rem.tcp.listen(LOCAL, 0, echo)
          port = select(2, srv:address())
        end)
        t:join()
        rem.sleep(0.02)
        assert.are.equal("ECONNREFUSED", H.error_of(rem.tcp.connect, LOCAL, port).code)
      end)
    end)

    if has_ipv6_loopback() then
      it("IPv6: a server on ::1 and a client", function()
        H.run(function()
          local srv <close> = rem.tcp.listen("::1", 0, echo)
          local host, port = srv:address()
          assert.are.equal("::1", host)
          local c <close> = rem.tcp.connect("::1", port)
          c:write("six\n")
          assert.are.equal("six", c:read("l"))
          assert.matches("%[::1%]:" .. port, tostring(c))
        end)
      end)
    else
      pending("IPv6: this machine has no ::1 loopback")
    end
  end)

  describe("safety net", function()
    it("a stream collected unclosed is closed (its descriptor is released)", function()
      H.run(function()
        local srv <close>, port = serve(function(s) s:read("a") end)
        do
          local c = rem.tcp.connect(LOCAL, port)
          c:write("x")
        end
        collectgarbage()
        collectgarbage()
      end)
      collectgarbage()
    end)
  end)

  describe("misuse", function()
    local function message_of(name, fn, ...)
      local msg = H.error_of(fn, ...)
      assert.are.equal("string", type(msg), "expected a message, got " .. tostring(msg))
      assert.matches(name, msg, 1, true)
      return msg
    end

    it("outside a task, connect and listen say so", function()
      assert.matches("not inside a task", message_of("rem.tcp.connect", rem.tcp.connect, LOCAL, 80))
      assert.matches("not inside a task",
        message_of("rem.tcp.listen", rem.tcp.listen, LOCAL, 0, echo))
    end)

    it("bad hosts, ports, handlers and options name the argument", function()
      H.run(function()
        assert.matches("#1", message_of("rem.tcp.connect", rem.tcp.connect, nil, 80))
        assert.matches("empty host", message_of("rem.tcp.connect", rem.tcp.connect, "", 80))
        assert.matches("port number", message_of("rem.tcp.connect", rem.tcp.connect, LOCAL, "x"))
        assert.matches("out of range", message_of("rem.tcp.connect", rem.tcp.connect, LOCAL, 70000))
        assert.matches("out of range", message_of("rem.tcp.connect", rem.tcp.connect, LOCAL, 0))
        assert.matches("#3", message_of("rem.tcp.connect", rem.tcp.connect, LOCAL, 80, 5))
        assert.matches("timeout", message_of("rem.tcp.connect", rem.tcp.connect, LOCAL, 80,
          { timeout = "soon" }))
        assert.matches("function expected",
          message_of("rem.tcp.listen", rem.tcp.listen, LOCAL, 0, "handler"))
        assert.matches("backlog",
          message_of("rem.tcp.listen", rem.tcp.listen, LOCAL, 0, echo, { backlog = -1 }))
      end)
    end)

    it("use after close, bad formats, bad write arguments and a missing self", function()
      H.run(function()
        local srv <close>, port = serve(echo)
        local c = rem.tcp.connect(LOCAL, port)
        assert.matches("invalid format", message_of("stream:read", c.read, c, "x"))
        assert.matches("non%-negative", message_of("stream:read", c.read, c, -1))
        assert.matches("#2 %(string or number expected, got table%)",
          message_of("stream:write", c.write, c, "ok", {}))
        assert.matches("bad self", message_of("stream:read", c.read, "l"))
        assert.matches("invalid format", message_of("stream:lines", c.lines, c, "q"))
        c:close()
        c:close()  -- idempotent
        for _, m in ipairs { "read", "write", "lines", "shutdown" } do
          assert.matches("closed", message_of("stream:" .. m, c[m], c, "l"))
        end
        assert.matches("closed", tostring(c))
      end)
    end)

    it("reading from two tasks at once is refused", function()
      H.run(function()
        local srv <close>, port = serve(echo)
        local c <close> = rem.tcp.connect(LOCAL, port)
        local t = rem.spawn(function() return c:read("l") end)
        rem.sleep(0.02)
        assert.matches("another task is already reading",
          message_of("stream:read", c.read, c, "l"))
        c:write("for the first\n")
        assert.are.equal("for the first", t:join())
      end)
    end)

    it("a write after shutdown is refused; a stream closed under a reader wakes it", function()
      H.run(function()
        local srv <close>, port = serve(echo)
        local c = rem.tcp.connect(LOCAL, port)
        c:shutdown()
        assert.matches("shut down", message_of("stream:write", c.write, c, "late"))
        local d = rem.tcp.connect(LOCAL, port)
        local t = rem.spawn(function() return d:read("l") end)
        rem.sleep(0.02)
        d:close()
        local err = H.error_of(t.join, t)
        assert.are.equal("EBADF", err.code)
        assert.matches("closed by another task", err.message, 1, true)
        c:close()
      end)
    end)
  end)
end)
