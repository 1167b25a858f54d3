-- Regression guard for a performance change in bindings/stream.c: before a reader suspends,
-- the bytes the kernel already holds are read at once from the descriptor (read_now). The
-- order of the bytes, the end of the stream, partial data and large replies must come out
-- as they do through libuv's reading.
local H = require "spec.helper"
local rem = H.rem

local LOCAL = "127.0.0.1"

-- A server whose handler is `handler(stream)`; returns the server and a connected client.
local function pair(handler)
  local srv = rem.tcp.listen(LOCAL, 0, handler)
  local _, port = srv:address()
  return srv, rem.tcp.connect(LOCAL, port)
end

describe("a stream's read with data already there", function()
  local fds
  setup(function()
    -- What libuv opens once and keeps (the loop's reserve descriptor for EMFILE, made with
    -- its first stream): before the fd count is taken.
    H.run(function()
      local srv <close>, c = pair(function() end)
      c:close()
    end)
  end)
  before_each(function() fds = H.fd_count() end)
  after_each(function()
    H.assert_clean()
    assert.are.equal(fds, H.fd_count(), "file descriptors leaked")
  end)

  it("reads what arrived before it asked, in order, then the end", function()
    H.run(function()
      local srv <close>, c = pair(function(s)
        s:write("one\ntwo\n", ("x"):rep(10000), "\nlast")
      end)
      rem.sleep(0.05)                    -- everything, and the end, is in the socket now
      assert.are.equal("one", c:read("l"))
      assert.are.equal("two\n", c:read("L"))
      assert.are.equal(("x"):rep(10000), c:read("l"))
      assert.are.equal("last", c:read("a"))
      assert.is_nil(c:read("l"))
      assert.is_nil(c:read(1))
      c:close()
    end)
  end)

  it("waits for the rest when only part of a line is there", function()
    H.run(function()
      local srv <close>, c = pair(function(s)
        s:write("par")
        rem.sleep(0.05)
        s:write("tial\n")
        assert.is_nil(s:read("l"))
      end)
      rem.sleep(0.02)                    -- "par" is there, the rest is not
      assert.are.equal("partial", c:read("l"))
      c:close()
    end)
  end)

  it("counts bytes across what was there and what comes later", function()
    H.run(function()
      local srv <close>, c = pair(function(s)
        s:write(("a"):rep(6000))
        rem.sleep(0.03)
        s:write(("b"):rep(6000))
        assert.is_nil(s:read("l"))
      end)
      rem.sleep(0.02)
      local got = c:read(12000)
      assert.are.equal(("a"):rep(6000) .. ("b"):rep(6000), got)
      c:close()
    end)
  end)

  it("reads a process's output that is already in the pipe", function()
    H.run(function()
      local p <close> = rem.process.spawn{ "sh", "-c", "printf 'hello\\nworld'", stdout = "pipe" }
      assert.are.equal(0, p:wait())
      assert.are.equal("hello", p.stdout:read("l"))
      assert.are.equal("world", p.stdout:read("a"))
      assert.is_nil(p.stdout:read("l"))
    end)
  end)
end)
