-- rem.unix: the same streams and servers over Unix-domain sockets.
local H = require "spec.helper"
local rem = H.rem

-- A fresh socket path under /tmp (nothing there yet).
local function socket_path(name)
  local base = os.tmpname()
  os.remove(base)
  return base .. "-" .. name .. ".sock"
end

-- Is there a file at path? (io.open fails with ENOENT, errno 2, only when there is none.)
local function exists(path)
  local f, _, errno = io.open(path)
  if f then f:close() return true end
  return errno ~= 2
end

local function echo(s)
  for line in s:lines("L") do s:write(line) end
end

describe("rem.unix", function()
  local fds
  setup(function()
    H.run(function()
      local path = socket_path("warmup")
      local srv <close> = rem.unix.listen(path, echo)
      local c <close> = rem.unix.connect(path)
    end)
  end)
  before_each(function() fds = H.fd_count() end)
  after_each(function()
    H.assert_clean()
    assert.are.equal(fds, H.fd_count(), "file descriptors leaked")
  end)

  it("echoes lines; the socket file exists while it listens and is removed after", function()
    local path = socket_path("echo")
    H.run(function()
      do
        local srv <close> = rem.unix.listen(path, echo)
        assert.are.equal(path, srv:address())
        assert.is_true(exists(path))
        local c <close> = rem.unix.connect(path)
        c:write("one\n", "two\n")
        assert.are.equal("one", c:read("l"))
        assert.are.equal("two\n", c:read("L"))
        assert.matches(path, tostring(c), 1, true)
        c:shutdown()
        assert.is_nil(c:read("l"))
      end
      assert.is_false(exists(path))
    end)
  end)

  it("several clients at once", function()
    local path = socket_path("many")
    H.run(function()
      local srv <close> = rem.unix.listen(path, echo)
      local done = 0
      rem.group(function(g)
        for i = 1, 50 do
          g:spawn(function()
            local c <close> = rem.unix.connect(path)
            c:write("client ", i, "\n")
            assert.are.equal("client " .. i, c:read("l"))
            done = done + 1
          end)
        end
      end)
      assert.are.equal(50, done)
    end)
  end)

  it("connecting to a missing path raises ENOENT; to a plain file, ECONNREFUSED", function()
    H.run(function()
      local path = socket_path("missing")
      local err = H.error_of(rem.unix.connect, path)
      assert.are.equal(rem.Error, getmetatable(err))
      assert.are.equal("ENOENT", err.code)
      assert.matches("rem.unix.connect", err.message, 1, true)
      assert.matches(path, err.message, 1, true)
      local file = os.tmpname()
      err = H.error_of(rem.unix.connect, file)
      os.remove(file)
      assert.are.equal("ECONNREFUSED", err.code)
    end)
  end)

  it("listening on a path that exists raises EADDRINUSE and leaves the file alone", function()
    H.run(function()
      local file = os.tmpname()
      local err = H.error_of(rem.unix.listen, file, echo)
      assert.are.equal("EADDRINUSE", err.code)
      assert.matches("rem.unix.listen", err.message, 1, true)
      assert.is_true(exists(file))
      os.remove(file)
    end)
  end)

  it("a path too long for a socket raises ENAMETOOLONG", function()
    H.run(function()
      local path = "/tmp/" .. string.rep("x", 200)
      assert.are.equal("ENAMETOOLONG", H.error_of(rem.unix.connect, path).code)
      assert.are.equal("ENAMETOOLONG", H.error_of(rem.unix.listen, path, echo).code)
    end)
  end)

  it("closing the server with connections open cancels the handlers", function()
    local path = socket_path("close")
    H.run(function()
      local cancelled, running = 0, 0
      local srv = rem.unix.listen(path, function(s)
        running = running + 1
        local ok, err = pcall(s.read, s, "l")
        if rem.is_cancelled(err) then cancelled = cancelled + 1 end
        error(err, 0)
      end)
      local a <close> = rem.unix.connect(path)
      local b <close> = rem.unix.connect(path)
      for _ = 1, 100 do
        if running == 2 then break end
        rem.sleep(0.01)
      end
      srv:close()
      assert.are.equal(2, cancelled)
      assert.is_nil(a:read("l"))
      assert.are.equal("", b:read("a"))
    end)
  end)

  it("rem.timeout around a read that never completes releases the socket", function()
    local path = socket_path("timeout")
    H.run(function()
      local saw
      local srv <close> = rem.unix.listen(path, function(s) saw = s:read("a") end)
      local err = H.error_of(rem.timeout, 0.05, function()
        local c <close> = rem.unix.connect(path)
        c:read("l")
      end)
      assert.is_true(rem.is_timeout(err))
      for _ = 1, 100 do
        if saw then break end
        rem.sleep(0.01)
      end
      assert.are.equal("", saw)
    end)
  end)

  it("misuse: bad paths and handlers, reset on a Unix stream, outside a task", function()
    local msg = H.error_of(rem.unix.connect, "/tmp/x.sock")
    assert.matches("rem.unix.connect: not inside a task", msg, 1, true)
    local path = socket_path("misuse")
    H.run(function()
      assert.matches("rem.unix.connect: bad argument #1", H.error_of(rem.unix.connect, 42), 1, true)
      assert.matches("empty path", H.error_of(rem.unix.connect, ""), 1, true)
      assert.matches("rem.unix.listen: bad argument #2 (function expected",
        H.error_of(rem.unix.listen, path, "nope"), 1, true)
      local srv <close> = rem.unix.listen(path, echo)
      local c <close> = rem.unix.connect(path)
      assert.matches("only TCP connections can be reset", H.error_of(c.reset, c), 1, true)
    end)
  end)
end)
