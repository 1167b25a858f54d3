-- rem.signal: watchers that run a handler task per delivery. The process signals itself
-- with kill(1) (its pid from /proc/self/stat). Only signals a watcher catches are sent,
-- or ones whose default action is to be ignored (SIGWINCH), so a missed watcher cannot
-- kill the test run.
local H = require "spec.helper"
local rem = H.rem

local function kill(sig)
  assert(os.execute("kill -" .. sig .. " " .. H.pid()))
end

-- Waits (inside a task) until cond() holds, for at most 2 s.
local function wait_for(cond)
  for _ = 1, 400 do
    if cond() then return true end
    rem.sleep(0.005)
  end
  return cond()
end

describe("rem.signal", function()
  local baseline
  before_each(function()
    collectgarbage()
    baseline = H.fd_count()
  end)
  after_each(function()
    H.assert_clean()
    collectgarbage()
    assert.are.equal(baseline, H.fd_count(), "file descriptors leaked")
  end)

  it("runs the handler with the signal's name when the signal arrives", function()
    local got = H.run(function()
      local got = {}
      local w <close> = rem.signal("SIGUSR1", function(name)
        got[#got + 1] = { name = name, task = rem.current() }
      end)
      kill("USR1")
      assert.is_true(wait_for(function() return #got == 1 end))
      return got
    end)
    assert.are.equal("SIGUSR1", got[1].name)
    assert.is_truthy(got[1].task)  -- a task of its own
  end)

  it("accepts 'USR2', 'SIGUSR2' and the number alike", function()
    H.run(function()
      local n = 0
      local a <close> = rem.signal("USR2", function() n = n + 1 end)
      kill("USR2")
      assert.is_true(wait_for(function() return n == 1 end))
      a:close()
      local numbers = {}
      local b <close> = rem.signal(12, function(name) numbers[#numbers + 1] = name end)
      kill("USR2")
      assert.is_true(wait_for(function() return #numbers == 1 end))
      assert.are.equal("SIGUSR2", numbers[1])  -- the name, when rem knows it
    end)
  end)

  it("runs each delivery's handler in its own task, concurrently", function()
    local log, add = H.log()
    H.run(function()
      local w <close> = rem.signal("SIGHUP", function()
        add("start")
        rem.sleep(0.1)
        add("end")
      end)
      kill("HUP")
      assert.is_true(wait_for(function() return #log == 1 end))
      kill("HUP")  -- while the first handler sleeps
      assert.is_true(wait_for(function() return #log == 2 end))
      assert.is_true(wait_for(function() return #log == 4 end))
    end)
    assert.are.same({ "start", "start", "end", "end" }, log)
  end)

  it("stops delivering once closed", function()
    H.run(function()
      local n = 0
      local w = rem.signal("SIGWINCH", function() n = n + 1 end)
      kill("WINCH")
      assert.is_true(wait_for(function() return n == 1 end))
      w:close()
      w:close()  -- a second close does nothing
      kill("WINCH")  -- ignored by default once nobody watches
      rem.sleep(0.05)
      assert.are.equal(1, n)
      assert.matches("closed", tostring(w))
    end)
  end)

  it("closing cancels the running handlers and waits for their cleanup", function()
    local log, add = H.log()
    H.run(function()
      do
        local w <close> = rem.signal("SIGUSR1", function()
          local _ <close> = H.closer(add, "handler", 0.02)
          add("handler sleeps")
          rem.sleep(10)
          add("never")
        end)
        kill("USR1")
        assert.is_true(wait_for(function() return #log == 1 end))
        add("closing")
      end
      add("closed")
    end)
    assert.are.same({ "handler sleeps", "closing", "handler close start", "handler closed",
                      "closed" }, log)
  end)

  it("raises the handlers' failures from close as an ErrorGroup; others go on", function()
    local n = 0
    local err = H.run_error(function()
      local w <close> = rem.signal("SIGUSR1", function()
        n = n + 1
        if n == 1 then error("handler failed") end
      end)
      kill("USR1")
      assert.is_true(wait_for(function() return n == 1 end))
      kill("USR1")  -- the watcher still works after a failure
      assert.is_true(wait_for(function() return n == 2 end))
    end)
    assert.is_true(rem.is_error_group(err))
    assert.are.equal(1, #err.errors)
    assert.matches("handler failed", tostring(err.errors[1]))
  end)

  it("does not keep rem.run going by itself", function()
    local w
    local t0 = os.clock()
    rem.run(function()
      w = rem.signal("SIGUSR1", function() end)
    end)
    assert.is_true(os.clock() - t0 < 1)
    assert.are.equal(1, H.core.stats().active_handles)  -- still watching, unref'd
    H.run(function() w:close() end)
  end)

  it("a watcher collected unclosed stops watching", function()
    H.run(function()
      rem.signal("SIGWINCH", function() end)
      collectgarbage()
      collectgarbage()
    end)
    H.run(function() rem.sleep(0) end)  -- lets the close callback run
  end)

  it("rejects bad arguments and use outside a task", function()
    H.run(function()
      assert.matches("rem.signal: bad argument #1 %(unknown signal 'SIGNOPE'%)",
        H.error_of(rem.signal, "SIGNOPE", print))
      assert.matches("rem.signal: bad argument #1", H.error_of(rem.signal, {}, print))
      assert.matches("rem.signal: bad argument #2 %(function expected, got no value%)",
        H.error_of(rem.signal, "SIGUSR1"))
      local err = H.error_of(rem.signal, "SIGKILL", print)  -- cannot be caught
      assert.are.equal("EINVAL", err.code)
    end)
    assert.matches("rem.signal: not inside a task",
      H.error_of(rem.signal, "SIGUSR1", print))
  end)
end)
