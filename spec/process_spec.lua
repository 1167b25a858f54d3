-- rem.process: children with pipes as streams; wait, kill, and close that kills and reaps.
local H = require "spec.helper"
local rem = H.rem

-- Is a process with this pid still there (not reaped)?
local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  f:close()
  return true
end

describe("rem.process", function()
  local fds
  setup(function()
    -- libuv's first spawn opens its signal pipes, its first stream the loop's reserve
    -- descriptor: both are kept.
    H.run(function()
      local p <close> = rem.process.spawn { "true", stdout = "pipe" }
      p:wait()
    end)
  end)
  before_each(function() fds = H.fd_count() end)
  after_each(function()
    H.assert_clean()
    assert.are.equal(fds, H.fd_count(), "file descriptors leaked")
  end)

  it("echoes through cat: write to stdin, read stdout, close stdin, exit 0", function()
    H.run(function()
      local p <close> = rem.process.spawn { "cat", stdin = "pipe", stdout = "pipe" }
      assert.is_true(math.type(p.pid) == "integer" and p.pid > 0)
      assert.is_nil(p.stderr)
      p.stdin:write("hello cat\n", 42, "\n")
      assert.are.equal("hello cat", p.stdout:read("l"))
      assert.are.equal("42", p.stdout:read("l"))
      p.stdin:close()
      assert.are.equal("", p.stdout:read("a"))
      local code, sig = p:wait()
      assert.are.equal(0, code)
      assert.is_nil(sig)
    end)
  end)

  it("exit codes", function()
    H.run(function()
      for _, n in ipairs { 0, 1, 7, 255 } do
        local p <close> = rem.process.spawn { "sh", "-c", "exit " .. n }
        assert.are.same({ n }, { p:wait() })
      end
    end)
  end)

  it("a child killed by a signal: wait gives nil and the signal's name", function()
    H.run(function()
      local p <close> = rem.process.spawn { "sleep", "30" }
      assert.is_true(p:kill())
      local code, sig = p:wait()
      assert.is_nil(code)
      assert.are.equal("SIGTERM", sig)
      assert.is_false(p:kill())  -- already gone
      assert.are.same({ nil, "SIGTERM" }, { p:wait() })  -- again, the same answer
      local q <close> = rem.process.spawn { "sleep", "30" }
      q:kill("KILL")
      assert.are.equal("SIGKILL", select(2, q:wait()))
      local r <close> = rem.process.spawn { "sleep", "30" }
      r:kill(2)
      assert.are.equal("SIGINT", select(2, r:wait()))
    end)
  end)

  it("a process killed on close: SIGTERM, reaped, pipes closed", function()
    H.run(function()
      local p
      local t0 = rem.now()
      do
        local child <close> = rem.process.spawn { "sleep", "30", stdout = "pipe" }
        p = child
        assert.is_true(alive(p.pid))
      end
      assert.is_true(rem.now() - t0 < 1)
      assert.is_false(alive(p.pid), "the child must be reaped")
      assert.are.same({ nil, "SIGTERM" }, { p:wait() })
      assert.matches("closed", tostring(p.stdout))
      assert.matches("killed by SIGTERM", tostring(p))
    end)
  end)

  it("a child that ignores SIGTERM is killed after the grace period", function()
    H.run(function()
      local p = rem.process.spawn { "sh", "-c", "trap '' TERM; echo ready; sleep 30",
                                    stdout = "pipe", grace = 0.2 }
      assert.are.equal("ready", p.stdout:read("l"))
      local t0 = rem.now()
      p:close()
      local took = rem.now() - t0
      assert.is_true(took >= 0.19 and took < 2, "took " .. took)
      assert.are.equal("SIGKILL", select(2, p:wait()))
      assert.is_false(alive(p.pid))
      p:close()  -- idempotent
    end)
  end)

  it("a task cancelled while its process runs: the process is killed as the task unwinds", function()
    H.run(function()
      local pid
      local err = H.error_of(rem.timeout, 0.1, function()
        local p <close> = rem.process.spawn { "sleep", "30" }
        pid = p.pid
        p:wait()
      end)
      assert.is_true(rem.is_timeout(err))
      assert.is_false(alive(pid))
    end)
  end)

  it("stdout read to the end, and by lines", function()
    H.run(function()
      local p <close> = rem.process.spawn { "seq", "1", "1000", stdout = "pipe" }
      local n = 0
      for line in p.stdout:lines() do
        n = n + 1
        assert.are.equal(tostring(n), line)
      end
      assert.are.equal(1000, n)
      assert.are.equal(0, p:wait())
      local q <close> = rem.process.spawn { "sh", "-c", "printf 'a\\nb'; echo oops >&2",
                                            stdout = "pipe", stderr = "pipe" }
      assert.are.equal("a\nb", q.stdout:read("a"))
      assert.are.equal("oops\n", q.stderr:read("a"))
    end)
  end)

  it("cwd and env", function()
    H.run(function()
      local p <close> = rem.process.spawn { "sh", "-c", "pwd; echo \"$FOO $N\"; echo \"${HOME-none}\"",
                                            cwd = "/tmp", env = { FOO = "bar", N = 3 },
                                            stdout = "pipe" }
      assert.are.equal("/tmp\nbar 3\nnone\n", p.stdout:read("a"))
      assert.are.equal(0, p:wait())
    end)
  end)

  it("stdio: ignore, and a stream handed to a child (a pipeline)", function()
    H.run(function()
      local quiet <close> = rem.process.spawn { "sh", "-c", "cat; echo done", stdin = "ignore",
                                                stdout = "pipe" }
      assert.are.equal("done\n", quiet.stdout:read("a"))
      local gen <close> = rem.process.spawn { "printf", "b\\na\\nc\\n", stdout = "pipe" }
      local sort <close> = rem.process.spawn { "sort", stdin = gen.stdout, stdout = "pipe" }
      gen.stdout:close()  -- the child has its own copy
      assert.are.equal("a\nb\nc\n", sort.stdout:read("a"))
      assert.are.equal(0, gen:wait())
      assert.are.equal(0, sort:wait())
    end)
  end)

  it("a command that cannot run raises an rem.Error with its code", function()
    H.run(function()
      local err = H.error_of(rem.process.spawn, { "no-such-command-here", stdout = "pipe" })
      assert.are.equal(rem.Error, getmetatable(err))
      assert.are.equal("ENOENT", err.code)
      assert.matches("no-such-command-here", err.message, 1, true)
      err = H.error_of(rem.process.spawn, { "true", cwd = "/no/such/dir" })
      assert.are.equal("ENOENT", err.code)
    end)
  end)

  it("a wait cancelled by a timeout; the process is still there to close", function()
    H.run(function()
      local p <close> = rem.process.spawn { "sleep", "30" }
      local err = H.error_of(rem.timeout, 0.05, p.wait, p)
      assert.is_true(rem.is_timeout(err))
      assert.is_true(alive(p.pid))
    end)
  end)

  it("misuse: bad specs, bad signals, writing to a read-only pipe, outside a task", function()
    local msg = H.error_of(rem.process.spawn, { "true" })
    assert.matches("rem.process.spawn: not inside a task", msg, 1, true)
    H.run(function()
      local function msg_of(...) return H.error_of(rem.process.spawn, ...) end
      assert.matches("rem.process.spawn: bad argument #1 %(table", msg_of("cat"))
      assert.matches("the command, t%[1%], must be a string", msg_of({}))
      assert.matches("t%[2%] must be a string", msg_of({ "echo", {} }))
      assert.matches("bad field 'stdout'", msg_of({ "cat", stdout = "bogus" }))
      assert.matches("bad field 'env'", msg_of({ "cat", env = 5 }))
      assert.matches("bad field 'cwd'", msg_of({ "cat", cwd = 5 }))
      assert.matches("grace", msg_of({ "cat", grace = -1 }))
      local p <close> = rem.process.spawn { "cat", stdin = "pipe", stdout = "pipe" }
      assert.matches("unknown signal 'NOPE'", H.error_of(p.kill, p, "NOPE"), 1, true)
      assert.matches("not writable", H.error_of(p.stdout.write, p.stdout, "x"), 1, true)
      assert.matches("not readable", H.error_of(p.stdin.read, p.stdin, "l"), 1, true)
      assert.matches("bad self", H.error_of(p.wait), 1, true)
      p.stdin:close()
      assert.are.equal(0, p:wait())
    end)
  end)
end)
