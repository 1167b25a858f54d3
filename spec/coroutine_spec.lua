-- Awaiting through the user's coroutines, and the standard behaviour of coroutine.*,
-- pcall and xpcall that rem replaces.
local H = require "spec.helper"
local rem = H.rem

describe("awaiting inside user coroutines", function()
  after_each(H.assert_clean)

  it("a coroutine.wrap generator may rem.sleep between yields", function()
    local got, took = H.run(function()
      local gen = coroutine.wrap(function(n)
        for i = 1, n do
          rem.sleep(0.01)
          coroutine.yield(i, i * 10)
        end
        return "end"
      end)
      local t0, out = rem.now(), {}
      local a, b = gen(3)
      while b do
        out[#out + 1] = a .. ":" .. b
        a, b = gen()
      end
      out[#out + 1] = a
      return out, rem.now() - t0
    end)
    assert.are.same({ "1:10", "2:20", "3:30", "end" }, got)
    assert.is_true(took >= 0.025 and took < 0.5, "took " .. took)
  end)

  it("a coroutine.create generator may rem.sleep; resume and status are as usual", function()
    local log, add = H.log()
    H.run(function()
      local co = coroutine.create(function(x)
        rem.sleep(0.005)
        local y = coroutine.yield(x + 1)
        rem.checkpoint()
        local z = coroutine.yield(y * 2)
        rem.sleep(0.001)
        return "done", z
      end)
      add(coroutine.status(co))
      add(table.pack(coroutine.resume(co, 1)))
      add(coroutine.status(co))
      add(table.pack(coroutine.resume(co, 5)))
      add(table.pack(coroutine.resume(co, "z")))
      add(coroutine.status(co))
      add(table.pack(coroutine.resume(co)))
    end)
    assert.are.same({
      "suspended",
      { n = 2, true, 2 },
      "suspended",
      { n = 2, true, 10 },
      { n = 3, true, "done", "z" },
      "dead",
      { n = 2, false, "cannot resume dead coroutine" },
    }, log)
  end)

  it("other tasks run while a generator sleeps", function()
    local log, add = H.log()
    H.run(function()
      local other = rem.spawn(function()
        for i = 1, 3 do
          add("other " .. i)
          rem.sleep(0.01)
        end
      end)
      local gen = coroutine.wrap(function()
        for i = 1, 2 do
          rem.sleep(0.015)
          coroutine.yield(i)
        end
      end)
      add("gen " .. gen())
      add("gen " .. gen())
      other:join()
    end)
    assert.are.same({ "other 1", "other 2", "gen 1", "other 3", "gen 2" }, log)
  end)

  it("works through a wrap inside a wrap", function()
    local got = H.run(function()
      local inner = coroutine.wrap(function()
        for i = 1, 3 do
          rem.sleep(0.001)
          coroutine.yield(i)
        end
      end)
      local outer = coroutine.wrap(function()
        for _ = 1, 3 do
          local v = inner()
          rem.checkpoint()
          coroutine.yield(v * 100)
        end
      end)
      return { outer(), outer(), outer() }
    end)
    assert.are.same({ 100, 200, 300 }, got)
  end)

  it("works through a create inside a wrap", function()
    local got = H.run(function()
      local outer = coroutine.wrap(function()
        local co = coroutine.create(function()
          rem.sleep(0.001)
          coroutine.yield("a")
          rem.sleep(0.001)
          return "b"
        end)
        local _, a = coroutine.resume(co)
        coroutine.yield(a)
        local _, b = coroutine.resume(co)
        coroutine.yield(b)
      end)
      return { outer(), outer() }
    end)
    assert.are.same({ "a", "b" }, got)
  end)

  it("a cancellation raised inside a coroutine.create generator is resume's error", function()
    local log, add = H.log()
    local err = H.run(function()
      local co
      local t = rem.spawn(function()
        co = coroutine.create(function()
          rem.sleep(10)
        end)
        local ok, e = coroutine.resume(co)
        add(ok)
        add(coroutine.status(co))
        error(e, 0)
      end)
      rem.sleep(0.01)
      t:cancel()
      return H.error_of(t.join, t)
    end)
    assert.is_true(rem.is_cancelled(err))
    assert.are.same({ false, "dead" }, log)
  end)

  it("a cancellation raised inside a coroutine.wrap generator closes it and reaches the task", function()
    local log, add = H.log()
    local err = H.run(function()
      local t = rem.spawn(function()
        local gen = coroutine.wrap(function()
          local _ <close> = H.closer(add, "gen")
          rem.sleep(10)
        end)
        gen()
        add("after gen (wrong)")
      end)
      rem.sleep(0.01)
      t:cancel()
      return H.error_of(t.join, t)
    end)
    assert.is_true(rem.is_cancelled(err))
    assert.are.same({ "gen close start", "gen closed" }, log)
  end)

  it("a coroutine.wrap generator's sleeping <close> completes when its body fails", function()
    local log, add = H.log()
    local E = H.E("gen")
    local err = H.run(function()
      local gen = coroutine.wrap(function()
        local _ <close> = H.closer(add, "gen", 0.01, function(e)
          add(rawequal(e, E) and "saw E" or "saw " .. tostring(e))
        end)
        rem.sleep(0.001)
        error(E)
      end)
      return H.error_of(gen)
    end)
    assert.are.equal(E, err)
    assert.are.same({ "gen close start", "saw E", "gen closed" }, log)
  end)

  it("a coroutine.wrap generator's sleeping <close> completes when the task is cancelled", function()
    local log, add = H.log()
    local err = H.run(function()
      local t = rem.spawn(function()
        local gen = coroutine.wrap(function()
          local _ <close> = H.closer(add, "gen", 0.02)
          rem.sleep(10)
        end)
        gen()
      end)
      rem.sleep(0.01)
      t:cancel()
      return H.error_of(t.join, t)
    end)
    assert.is_true(rem.is_cancelled(err))
    assert.are.same({ "gen close start", "gen closed" }, log)
  end)

  it("a coroutine.wrap generator's sleeping <close> runs when it ends normally", function()
    local log, add = H.log()
    local res = H.run(function()
      local gen = coroutine.wrap(function()
        local _ <close> = H.closer(add, "gen", 0.01)
        coroutine.yield(1)
        return "last"
      end)
      local a = gen()
      add("between")
      return { a, gen() }
    end)
    assert.are.same({ 1, "last" }, res)
    assert.are.same({ "between", "gen close start", "gen closed" }, log)
  end)

  it("pcall inside a generator catches rem errors raised there", function()
    local got = H.run(function()
      local gen = coroutine.wrap(function()
        local ok, e = pcall(rem.timeout, 0.005, rem.sleep, 10)
        coroutine.yield(ok, rem.is_timeout(e))
      end)
      return table.pack(gen())
    end)
    assert.are.same({ n = 2, false, true }, got)
  end)
end)

-- The same checks run outside tasks and inside one.
local function standard_coroutines(run)
  it("resume passes values both ways; status goes suspended, running, dead", function()
    local got = run(function()
      local log = {}
      local co
      co = coroutine.create(function(a, b)
        log[#log + 1] = coroutine.status(co)
        local c = coroutine.yield(a + b, "y")
        return c, nil
      end)
      local function add(v) log[#log + 1] = v end
      add(coroutine.status(co))
      add(table.pack(coroutine.resume(co, 1, 2)))
      add(coroutine.status(co))
      add(table.pack(coroutine.resume(co, "c")))
      add(coroutine.status(co))
      return log
    end)
    assert.are.same({
      "suspended", "running", { n = 3, true, 3, "y" }, "suspended",
      { n = 3, true, "c", nil }, "dead",
    }, got)
  end)

  it("resume returns false and the error, the same object; the coroutine is dead", function()
    local E = H.E("co")
    local got = run(function()
      local co = coroutine.create(function() error(E) end)
      local ok, e = coroutine.resume(co)
      return { ok, rawequal(e, E), coroutine.status(co) }
    end)
    assert.are.same({ false, true, "dead" }, got)
  end)

  it("resuming a dead coroutine returns false and the standard message", function()
    local got = run(function()
      local co = coroutine.create(function() end)
      coroutine.resume(co)
      return table.pack(coroutine.resume(co))
    end)
    assert.are.same({ n = 2, false, "cannot resume dead coroutine" }, got)
  end)

  it("resume of a non-coroutine is an argument error", function()
    local msg = run(function() return H.error_of(coroutine.resume, 42) end)
    assert.matches("bad argument #1", msg, 1, true)
  end)

  it("wrap returns the yielded values and raises errors (a string with its position)", function()
    local got = run(function()
      local gen = coroutine.wrap(function(x)
        local y = coroutine.yield(x, nil, "!")
        error("bad " .. y)
      end)
      local first = table.pack(gen("a"))
      local e = H.error_of(gen, "b")
      local dead = H.error_of(gen)
      return { first, e, dead }
    end)
    assert.are.same({ n = 3, "a", nil, "!" }, got[1])
    assert.matches("coroutine_spec.lua:%d+: bad b$", got[2])
    assert.matches("cannot resume dead coroutine", got[3], 1, true)
  end)

  it("wrap raises a table error as the same object", function()
    local E = H.E("wrapped")
    local same = run(function()
      local gen = coroutine.wrap(function() error(E) end)
      return rawequal(H.error_of(gen), E)
    end)
    assert.is_true(same)
  end)

  it("yield across pcall inside a coroutine works as in Lua 5.4", function()
    local got = run(function()
      local gen = coroutine.wrap(function()
        local ok, v = pcall(function()
          local r = coroutine.yield(1)
          return r * 2
        end)
        coroutine.yield(ok, v)
        local ok2, e = pcall(function()
          coroutine.yield(2)
          error("after yield", 0)
        end)
        coroutine.yield(ok2, e)
      end)
      local out = { gen() }
      out[#out + 1] = table.pack(gen(21))
      out[#out + 1] = gen()
      out[#out + 1] = table.pack(gen())
      return out
    end)
    assert.are.same({ 1, { n = 2, true, 42 }, 2, { n = 2, false, "after yield" } }, got)
  end)

  it("coroutine.close closes a suspended coroutine's pending <close> variables", function()
    local got = run(function()
      local log = {}
      local co = coroutine.create(function()
        local _ <close> = setmetatable({}, { __close = function() log[#log + 1] = "closed" end })
        coroutine.yield()
      end)
      coroutine.resume(co)
      local closed = coroutine.close(co)
      log[#log + 1] = closed
      log[#log + 1] = coroutine.status(co)
      return log
    end)
    assert.are.same({ "closed", true, "dead" }, got)
  end)

  it("isyieldable and running are as usual inside a coroutine", function()
    local got = run(function()
      local co = coroutine.create(function()
        local running, main = coroutine.running()
        return coroutine.isyieldable(), type(running), main
      end)
      return table.pack(coroutine.resume(co))
    end)
    assert.are.same({ n = 4, true, true, "thread", false }, got)
  end)
end

local function standard_pcalls(run)
  it("pcall returns true and every result, nils included", function()
    local got = run(function()
      return table.pack(pcall(function(a, b) return a, nil, b end, 1, 2))
    end)
    assert.are.same({ n = 4, true, 1, nil, 2 }, got)
  end)

  it("pcall returns false and the error, the same object", function()
    local E = H.E("p")
    local got = run(function()
      local ok, e = pcall(error, E)
      return { ok, rawequal(e, E) }
    end)
    assert.are.same({ false, true }, got)
  end)

  it("pcall of a string error keeps its position; of a non-function gives the standard message", function()
    local got = run(function()
      local _, e1 = pcall(function() error("boom") end)
      local _, e2 = pcall(42)
      return { e1, e2 }
    end)
    assert.matches("coroutine_spec.lua:%d+: boom$", got[1])
    assert.matches("attempt to call a number value", got[2], 1, true)
  end)

  it("pcall with no argument is an argument error", function()
    local ok, e = run(function() return pcall(pcall) end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'pcall'", e, 1, true)
  end)

  it("xpcall passes the arguments and returns the results", function()
    local got = run(function()
      return table.pack(xpcall(function(a, b) return b, a end, error, "x", nil))
    end)
    assert.are.same({ n = 3, true, nil, "x" }, got)
  end)

  it("xpcall's handler gets the error and its return is the result", function()
    local E = H.E("x")
    local got = run(function()
      local seen
      local ok, r = xpcall(function() error(E) end, function(e)
        seen = e
        return "handled", "dropped"
      end)
      return { ok, r, rawequal(seen, E) }
    end)
    assert.are.same({ false, "handled", true }, got)
  end)

  it("xpcall's handler runs before the stack unwinds", function()
    local tb = run(function()
      local t = {}
      function t.failing_function() error("deep") end
      local _, r = xpcall(function() t.failing_function() end, debug.traceback)
      return r
    end)
    assert.matches("in field 'failing_function'", tb, 1, true)
  end)

  it("xpcall needs a function handler", function()
    local ok, e = run(function() return pcall(xpcall, print, nil) end)
    assert.is_false(ok)
    assert.matches("bad argument #2 to 'xpcall'", e, 1, true)
  end)
end

describe("outside tasks, coroutines", function()
  after_each(H.assert_clean)
  standard_coroutines(function(fn) return fn() end)
end)

describe("inside a task, coroutines", function()
  after_each(H.assert_clean)
  standard_coroutines(H.run)
end)

describe("outside tasks, pcall and xpcall", function()
  after_each(H.assert_clean)
  standard_pcalls(function(fn) return fn() end)
end)

describe("inside a task, pcall and xpcall", function()
  after_each(H.assert_clean)
  standard_pcalls(H.run)

  it("pcall and xpcall catch errors raised after a suspension", function()
    local E = H.E("late")
    local got = H.run(function()
      local ok1, e1 = pcall(function()
        rem.sleep(0.001)
        error(E)
      end)
      local ok2, r2 = xpcall(function()
        rem.checkpoint()
        error(E)
      end, function(e) return rawequal(e, E) and "handler saw E" or "?" end)
      local ok3, a, b = pcall(function()
        rem.sleep(0.001)
        return "a", "b"
      end)
      return { ok1, rawequal(e1, E), ok2, r2, ok3, a, b }
    end)
    assert.are.same({ false, true, false, "handler saw E", true, "a", "b" }, got)
  end)

  it("an xpcall handler cannot suspend (Lua's message handlers cannot yield): no crash", function()
    local got = H.run(function()
      local handler_ran = false
      local res = table.pack(xpcall(error, function()
        handler_ran = true
        rem.sleep(0.001)
        return "slept in the handler (wrong)"
      end, "E", 0))
      rem.sleep(0.001)  -- the task is fine afterwards
      res.handler_ran = handler_ran
      return res
    end)
    assert.are.same({ n = 2, false, "error in error handling", handler_ran = true }, got)
  end)
end)

describe("cleanup that resumes a user coroutine", function()
  after_each(H.assert_clean)

  -- Found by the fault-injection scenarios (spec/faults.lua): a pcall entered in an earlier
  -- resume restored the boundary of that time (none), so the cleanup lost its shield.
  it("stays shielded when a pcall entered before the cleanup catches an error in it", function()
    local log, add = H.log()
    H.run(function()
      local t = rem.spawn(function()
        local co = coroutine.wrap(function()
          local ok = pcall(function()
            coroutine.yield("in the pcall")
            error("thrown at the resume")
          end)
          add("caught: " .. tostring(not ok))
          rem.sleep(0.005)          -- still cleanup: the cancellation waits
          add("slept after the catch")
        end)
        add(co())
        local _ <close> = setmetatable({}, { __close = function() co() end })
        rem.sleep(1)
      end)
      rem.sleep(0.005)
      t:cancel()
      assert.is_true(rem.is_cancelled(select(2, pcall(t.join, t))))
    end)
    assert.are.same({ "in the pcall", "caught: true", "slept after the catch" }, log)
  end)
end)
