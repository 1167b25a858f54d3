-- rem.enter, rem.with, rem.contextmanager, rem.closing, rem.nullcontext, cm:wrap:
-- SEMANTICS 12-18 and the context-manager protocol they share.
local H = require "spec.helper"
local rem = H.rem

local function mk(add, name, opts)
  opts = opts or {}
  local m = { seen = {}, exits = 0, enters = 0 }
  function m.enter()
    m.enters = m.enters + 1
    add(name .. " enter")
    if opts.delay then rem.sleep(opts.delay) end
    if opts.enter_raise ~= nil then error(opts.enter_raise, 0) end
    if opts.values then return table.unpack(opts.values) end
    return name
  end
  function m.exit(_, err)
    m.exits = m.exits + 1
    m.seen[m.exits] = err
    add(name .. " exit " .. tostring(err))
    if opts.delay then rem.sleep(opts.delay) end
    if opts.raise ~= nil then error(opts.raise, 0) end
    return opts.suppress
  end
  return m
end

describe("rem.enter", function()
  after_each(H.assert_clean)

  it("returns a closable guard and the values; the guard exits the cm", function()
    local log, add = H.log()
    H.run(function()
      do
        local _ <close>, a, b = rem.enter(mk(add, "m", { values = { 1, 2 }, delay = 0.001 }))
        add("body " .. a .. b)
      end
      add("after")
    end)
    assert.are.same({ "m enter", "body 12", "m exit nil", "after" }, log)
  end)

  it("under <close> a suppressing exit still lets the error propagate", function()
    local log, add = H.log()
    local E = H.E("E")
    local m = mk(add, "m", { suppress = true })
    local err = H.run_error(function()
      local _ <close> = rem.enter(m)
      error(E)
    end)
    assert.are.equal(E, err)
    assert.is_true(rawequal(m.seen[1], E))
    -- rem.with honours the same suppression
    local res = H.run(function()
      return select("#", rem.with(m, function() error(E) end))
    end)
    assert.are.equal(0, res)
  end)

  it("a function is an async constructor: a cm it returns is entered", function()
    local log, add = H.log()
    H.run(function()
      local _ <close>, v = rem.enter(function()
        rem.sleep(0.001)
        return mk(add, "built")
      end)
      assert.are.equal("built", v)
    end)
    assert.are.same({ "built enter", "built exit nil" }, log)
  end)

  it("a constructor's closable is kept and closed; a plain value is kept", function()
    local log, add = H.log()
    local plain = {}
    H.run(function()
      do
        local c = H.closer(add, "c", 0.001)
        local _ <close>, v = rem.enter(function() return c end)
        assert.are.equal(c, v)
        local _ <close>, p = rem.enter(function() return plain end)
        assert.are.equal(plain, p)
        -- a closable given directly is entered as itself
        local _ <close>, d = rem.enter(H.closer(add, "d"))
        add("body")
      end
    end)
    assert.are.same({ "body", "d close start", "d closed", "c close start", "c closed" }, log)
  end)

  it("an enter that fails leaves nothing to exit and raises its error", function()
    local log, add = H.log()
    local E = H.E("E")
    local err = H.run_error(function()
      local _ <close> = rem.enter(mk(add, "bad", { enter_raise = E }))
      add("body")
    end)
    assert.are.equal(E, err)
    assert.are.same({ "bad enter" }, log)
  end)

  it("refuses values that are neither a cm, a closable nor a function", function()
    for _, v in ipairs { 1, "s", true, {} } do
      local err = H.error_of(rem.enter, v)
      assert.matches("rem.enter: bad argument #1 (context manager, closable or function "
        .. "expected, got " .. type(v) .. ")", err, 1, true)
    end
    assert.matches("got no value", H.error_of(rem.enter), 1, true)
  end)
end)

describe("rem.with", function()
  after_each(H.assert_clean)

  it("enters in order, exits in reverse; one cm gives fn all its values", function()
    local log, add = H.log()
    local res = table.pack(H.run(function()
      return rem.with(mk(add, "a", { values = { 1, 2, 3 } }), function(...)
        add("body " .. select("#", ...))
        return "r1", nil, "r3"
      end)
    end))
    assert.are.same({ n = 3, "r1", nil, "r3" }, res)
    assert.are.same({ "a enter", "body 3", "a exit nil" }, log)
  end)

  it("several cms give fn the first value of each, in order", function()
    local log, add = H.log()
    H.run(function()
      rem.with(mk(add, "a", { values = { 1, 9 } }), mk(add, "b", { values = { 2, 9 } }),
        function() return mk(add, "c", { values = { 3 } }) end,
        function(...)
          assert.are.same({ n = 3, 1, 2, 3 }, table.pack(...))
          add("body")
        end)
    end)
    assert.are.same({ "a enter", "b enter", "c enter", "body", "c exit nil", "b exit nil",
                      "a exit nil" }, log)
  end)

  it("an enter failing: the entered ones exit with its error, the body never runs", function()
    local log, add = H.log()
    local E = H.E("E")
    local a = mk(add, "a")
    local err = H.run_error(function()
      rem.with(a, mk(add, "b", { enter_raise = E }), mk(add, "c"), function() add("body") end)
    end)
    assert.are.equal(E, err)
    assert.are.same({ "a enter", "b enter", "a exit E(E)" }, log)
    assert.is_true(rawequal(a.seen[1], E))
  end)

  it("the error of the body propagates as the same object", function()
    local E = H.E("E")
    local err = H.run_error(function()
      rem.with(rem.nullcontext(), function() rem.sleep(0.001) error(E) end)
    end)
    assert.are.equal(E, err)
    local s = H.run_error(function()
      rem.with(rem.nullcontext(), function() error("plain", 0) end)
    end)
    assert.are.equal("plain", s)
  end)

  it("an exit raising replaces the body error, which becomes its context", function()
    local log, add = H.log()
    local E, X = H.E("E"), H.E("X")
    local err = H.run_error(function()
      rem.with(mk(add, "a"), mk(add, "b", { raise = X }), function() error(E) end)
    end)
    assert.are.equal(X, err)
    assert.are.equal(E, X.context)
    assert.are.same({ "a enter", "b enter", "b exit E(E)", "a exit E(X)" }, log)
  end)

  it("works with no cm at all", function()
    assert.are.equal(3, H.run(function() return rem.with(function() return 3 end) end))
  end)

  it("refuses a missing body and bad cms, naming the argument", function()
    assert.matches("rem.with: bad argument #1 (function expected, got no value)",
      H.error_of(rem.with), 1, true)
    assert.matches("rem.with: bad argument #2 (function expected, got number)",
      H.error_of(rem.with, rem.nullcontext(), 5), 1, true)
    assert.matches("rem.with: bad argument #2 (context manager, closable or function "
      .. "expected, got number)", H.error_of(rem.with, rem.nullcontext(), 5, print), 1, true)
  end)
end)

describe("rem.contextmanager", function()
  after_each(H.assert_clean)

  it("12: the yielded values are entered; before the yield enters, after it exits", function()
    local log, add = H.log()
    local cm = rem.contextmanager(function(x, y)
      add("before " .. x .. y)
      rem.sleep(0.002)                 -- suspends before the yield
      coroutine.yield(x + y, "second")
      rem.sleep(0.002)                 -- and after it
      add("after")
    end)
    local res = H.run(function()
      return rem.with(cm(1, 2), function(v, w)
        add("body " .. v .. w)
        return "result"
      end)
    end)
    assert.are.equal("result", res)
    assert.are.same({ "before 12", "body 3second", "after" }, log)
  end)

  it("13: a body error is raised at the yield; cleanup runs; the same error propagates", function()
    local log, add = H.log()
    local E = H.E("E")
    local seen
    local cm = rem.contextmanager(function()
      local _ <close> = H.closer(add, "gen resource", 0.002)  -- suspends while closing
      local ok, err = pcall(coroutine.yield, "v")
      seen = err
      add("caught " .. tostring(ok))
      error(err, 0)   -- re-raised as is
    end)
    local err = H.run_error(function()
      rem.with(cm(), function() error(E) end)
    end)
    assert.are.equal(E, err)
    assert.is_true(rawequal(seen, E))
    assert.are.same({ "caught false", "gen resource close start", "gen resource closed" }, log)
  end)

  it("13: without a pcall in the generator the error unwinds it and propagates", function()
    local log, add = H.log()
    local E = H.E("E")
    local cm = rem.contextmanager(function()
      local _ <close> = H.closer(add, "r", 0.001)
      coroutine.yield()
      add("never")
    end)
    local err = H.run_error(function()
      local _ <close> = rem.enter(cm())
      error(E)
    end)
    assert.are.equal(E, err)
    assert.are.same({ "r close start", "r closed" }, log)
  end)

  it("13: a generator that swallows the error suppresses it (rem.with returns normally)", function()
    local cm = rem.contextmanager(function()
      pcall(coroutine.yield)
    end)
    local n = H.run(function()
      return select("#", rem.with(cm(), function() error(H.E("E")) end))
    end)
    assert.are.equal(0, n)
  end)

  it("13: a generator raising another error: it propagates with context = body error", function()
    local E, X = H.E("E"), H.E("X")
    local cm = rem.contextmanager(function()
      pcall(coroutine.yield)
      rem.sleep(0.001)
      error(X)
    end)
    local err = H.run_error(function()
      rem.with(cm(), function() error(E) end)
    end)
    assert.are.equal(X, err)
    assert.are.equal(E, X.context)
  end)

  it("13: an error after the yield with no body error propagates without a context", function()
    local X = H.E("X")
    local cm = rem.contextmanager(function()
      coroutine.yield()
      error(X)
    end)
    local err = H.run_error(function()
      rem.with(cm(), function() end)
    end)
    assert.are.equal(X, err)
    assert.is_nil(X.context)
  end)

  it("13: an error before the yield propagates from enter; the body does not run", function()
    local E = H.E("E")
    local ran = false
    local cm = rem.contextmanager(function() error(E) end)
    local err = H.run_error(function()
      rem.with(cm(), function() ran = true end)
    end)
    assert.are.equal(E, err)
    assert.is_false(ran)
  end)

  it("14: no yield is an error 'generator didn't yield'; the body does not run", function()
    local ran = false
    local cm = rem.contextmanager(function() end)
    local err = H.run_error(function()
      rem.with(cm(), function() ran = true end)
    end)
    assert.is_false(ran)
    assert.are.equal(rem.Error, getmetatable(err))
    assert.matches("generator didn't yield", err.message, 1, true)
  end)

  it("14: a second yield is 'generator didn't stop'; the generator is closed", function()
    local log, add = H.log()
    local cm = rem.contextmanager(function()
      local _ <close> = H.closer(add, "pending", 0.001)  -- closed, and may suspend
      coroutine.yield(1)
      add("second yield")
      coroutine.yield(2)
      add("never")
    end)
    local err = H.run_error(function()
      rem.with(cm(), function() add("body") end)
    end)
    assert.matches("generator didn't stop", err.message, 1, true)
    assert.is_nil(err.context)
    assert.are.same({ "body", "second yield", "pending close start", "pending closed" }, log)
  end)

  it("14: a generator that keeps yielding is closed by force", function()
    local log, add = H.log()
    local cm = rem.contextmanager(function()
      local _ <close> = H.closer(add, "pending")
      for _ = 1, 3 do pcall(coroutine.yield) end
    end)
    local err = H.run_error(function()
      rem.with(cm(), function() end)
    end)
    assert.matches("generator didn't stop", err.message, 1, true)
    assert.are.same({ "pending close start", "pending closed" }, log)
  end)

  it("14: yielding again after the body error was thrown in: error, context = body error", function()
    local log, add = H.log()
    local E = H.E("E")
    local cm = rem.contextmanager(function()
      local _ <close> = H.closer(add, "pending")
      pcall(coroutine.yield)
      coroutine.yield()
    end)
    local err = H.run_error(function()
      rem.with(cm(), function() error(E) end)
    end)
    assert.are.equal(rem.Error, getmetatable(err))
    assert.matches("didn't stop", err.message, 1, true)
    assert.are.equal(E, err.context)
    assert.are.same({ "pending close start", "pending closed" }, log)
  end)

  it("15: each factory call is a fresh one-shot manager; entering one twice is an error", function()
    local count = 0
    local factory = rem.contextmanager(function()
      count = count + 1
      coroutine.yield(count)
    end)
    H.run(function()
      local a, b = factory(), factory()
      assert.are_not.equal(a, b)
      assert.are.equal(1, rem.with(a, function(v) return v end))
      assert.are.equal(2, rem.with(b, function(v) return v end))
      local err = H.error_of(rem.with, a, function() end)
      assert.matches("entered twice", err, 1, true)
      local c = factory()
      c:enter()
      assert.matches("entered twice", H.error_of(c.enter, c), 1, true)
      c:exit()
      assert.matches("exited twice", H.error_of(c.exit, c), 1, true)
      assert.matches("exit without enter", H.error_of(factory().exit, factory()), 1, true)
    end)
  end)

  it("15: as a decorator each call gets a fresh manager (recursion, concurrency)", function()
    local log, add = H.log()
    local depth = 0
    local cm = rem.contextmanager(function(tag)
      depth = depth + 1
      add("in " .. tag .. " " .. depth)
      coroutine.yield()
      rem.sleep(0.001)
      depth = depth - 1
    end)
    local fact
    fact = cm("f"):wrap(function(n)
      if n <= 1 then return 1 end
      return n * fact(n - 1)
    end)
    local slow = cm("s"):wrap(function(ms) rem.sleep(ms) return ms end)
    H.run(function()
      assert.are.equal(24, fact(4))
      assert.are.equal(0, depth)
      local g <close> = rem.group()
      for i = 1, 3 do g:spawn(slow, 0.002 * i) end
    end)
    assert.are.same({ "in f 1", "in f 2", "in f 3", "in f 4", "in s 1", "in s 2", "in s 3" },
      log)
    assert.are.equal(0, depth)
  end)

  it("is closable: __close runs its exit", function()
    local log, add = H.log()
    local cm = rem.contextmanager(function()
      coroutine.yield("v")
      add("exit")
    end)
    H.run(function()
      local m <close> = cm()
      assert.are.equal("v", m:enter())
    end)
    assert.are.same({ "exit" }, log)
  end)

  it("refuses a non-function", function()
    assert.matches("rem.contextmanager: bad argument #1 (function expected, got number)",
      H.error_of(rem.contextmanager, 1), 1, true)
  end)
end)

describe("rem.closing", function()
  after_each(H.assert_clean)

  local function thing(add, opts)
    opts = opts or {}
    return { close = function()
      add("close")
      if opts.delay then rem.sleep(opts.delay) end
      if opts.raise ~= nil then error(opts.raise, 0) end
    end }
  end

  it("16: enter gives the thing; exit closes it on success and on error", function()
    local log, add = H.log()
    local E = H.E("E")
    local t = thing(add, { delay = 0.001 })
    H.run(function()
      assert.are.equal(t, rem.with(rem.closing(t), function(x) return x end))
    end)
    local err = H.run_error(function()
      rem.with(rem.closing(t), function() error(E) end)
    end)
    assert.are.equal(E, err)
    assert.are.same({ "close", "close" }, log)
  end)

  it("16: an error from close replaces the body error (context = body error)", function()
    local log, add = H.log()
    local E, C = H.E("E"), H.E("C")
    local err = H.run_error(function()
      rem.with(rem.closing(thing(add, { raise = C })), function() error(E) end)
    end)
    assert.are.equal(C, err)
    assert.are.equal(E, C.context)
  end)

  it("16: is closable, and never suppresses under <close>", function()
    local log, add = H.log()
    local E = H.E("E")
    local err = H.run_error(function()
      local c <close> = rem.closing(thing(add))
      error(E)
    end)
    assert.are.equal(E, err)
    assert.are.same({ "close" }, log)
    assert.matches("rem.closing: bad argument #1", H.error_of(rem.closing, 3), 1, true)
  end)
end)

describe("rem.nullcontext", function()
  after_each(H.assert_clean)

  it("17: enter gives the value; never suppresses; reusable and re-entrant", function()
    local E = H.E("E")
    local n = rem.nullcontext("v")
    H.run(function()
      assert.are.equal("v", rem.with(n, function(v)
        return rem.with(n, function(w) return w end)  -- re-entrant
      end))
      assert.are.equal("v", rem.with(n, function(v) return v end))  -- reusable
      assert.is_false(n:exit(E))
      local ok, err = pcall(rem.with, n, function() error(E) end)
      assert.is_false(ok)
      assert.are.equal(E, err)
      local _ <close> = n
      assert.is_nil(rem.with(rem.nullcontext(), function(v) return v end))
    end)
  end)
end)

describe("cm:wrap", function()
  after_each(H.assert_clean)

  it("18: without recreate the same manager is entered each call; exits see fn's error", function()
    local log, add = H.log()
    local E = H.E("E")
    local m = mk(add, "m")
    m.wrap = rem.nullcontext().wrap  -- the decorator every rem cm has, on a plain cm
    local f = m:wrap(function(x)
      add("fn " .. tostring(x))
      if x == "bad" then error(E) end
      return x
    end)
    H.run(function()
      assert.are.equal(1, f(1))
      local ok, err = pcall(f, "bad")
      assert.is_false(ok)
      assert.are.equal(E, err)
    end)
    assert.are.equal(2, m.enters)
    assert.is_true(rawequal(m.seen[2], E))
    assert.are.same({ "m enter", "fn 1", "m exit nil", "m enter", "fn bad", "m exit E(E)" }, log)
  end)

  it("every cm rem makes has wrap and is closable", function()
    H.run(function()
      local cms = { rem.ExitStack(), rem.contextmanager(function() coroutine.yield() end)(),
                    rem.closing({ close = function() end }), rem.nullcontext() }
      for _, m in ipairs(cms) do
        assert.is_function(m.wrap)
        assert.is_function(getmetatable(m).__close)
        assert.are.equal("ok", m:wrap(function() return "ok" end)())
      end
      local stack = rem.ExitStack()
      assert.matches("cm:wrap: bad argument #1 (function expected, got nil)",
        H.error_of(stack.wrap, stack), 1, true)
    end)
  end)
end)

describe("the cm protocol in rem.core (cm_kind, cm_enter, cm_exit), reused by gather", function()
  after_each(H.assert_clean)
  local core = H.core

  it("classifies values", function()
    assert.are.equal("cm", core.cm_kind(rem.nullcontext()))
    assert.are.equal("cm", core.cm_kind(rem.ExitStack()))
    assert.are.equal("closable", core.cm_kind(setmetatable({}, { __close = print })))
    assert.are.equal("function", core.cm_kind(print))
    assert.are.equal("function", core.cm_kind(setmetatable({}, { __call = print })))
    assert.is_nil(core.cm_kind({ exit = print }))
    assert.are.equal("cm", core.cm_kind({ exit = print }, true))
    assert.is_nil(core.cm_kind(1))
    assert.are.equal("closable", core.cm_kind(io.stdout))  -- a userdata with __close
  end)

  it("enters and exits, suspending in both, chaining an exit's error to the one given", function()
    local log, add = H.log()
    local E, X = H.E("E"), H.E("X")
    H.run(function()
      local m = mk(add, "m", { values = { 1, 2 }, delay = 0.001, suppress = true })
      local kind, exiter, a, b = core.cm_enter(m)
      assert.are.same({ m, 1, 2 }, { exiter, a, b })
      assert.is_true(core.cm_exit(kind, exiter, E))
      -- a constructor whose result is a plain value: nothing to exit
      local k2, ex2, v = core.cm_enter(function() return "plain" end)
      assert.is_nil(ex2)
      assert.are.equal("plain", v)
      assert.is_false(core.cm_exit(k2, ex2, E))
      -- a closable: closed, never suppresses
      local k3, ex3 = core.cm_enter(function() return H.closer(add, "c", 0.001) end)
      assert.is_false(core.cm_exit(k3, ex3, E))
      -- an exit raising: its error, with the given one as context
      local r = mk(add, "r", { raise = X })
      local k4, ex4 = core.cm_enter(r)
      local ok, err = pcall(core.cm_exit, k4, ex4, E)
      assert.is_false(ok)
      assert.are.equal(X, err)
      assert.are.equal(E, X.context)
    end)
    assert.are.same({ "m enter", "m exit E(E)", "c close start", "c closed", "r enter",
                      "r exit E(E)" }, log)
  end)

  it("exits run shielded from the task's cancellation", function()
    local log, add = H.log()
    H.run(function()
      local t = rem.spawn(function()
        local kind, exiter = core.cm_enter(mk(add, "m", { delay = 0.005 }))
        rem.current():cancel()
        assert.is_false(core.cm_exit(kind, exiter, "why"))  -- sleeps inside: shielded
        add("exit completed")
        rem.sleep(0)                                        -- still cancelled here
        add("never")
      end)
      assert.is_true(rem.is_cancelled(select(2, pcall(t.join, t))))
    end)
    assert.are.same({ "m enter", "m exit why", "exit completed" }, log)
  end)
end)

describe("rem.contextmanager's exit under cancellation", function()
  after_each(H.assert_clean)

  -- Found by the fault-injection scenarios (spec/faults.lua): a generator that caught the
  -- body's error at its yield with pcall ran the rest of its exit unshielded, so a
  -- cancellation replaced its error and a group absorbed it: the injected error was lost.
  it("a generator that catches the body's error at its yield keeps its exit shielded", function()
    local log, add = H.log()
    local E = H.E("body")
    local err = H.run_error(function()
      rem.group(function(g)
        g:spawn(function()
          rem.with(rem.contextmanager(function()
            local ok, e = pcall(coroutine.yield, "v")
            add("caught " .. tostring(e))
            rem.current():cancel()
            rem.checkpoint()          -- shielded: no cancellation here
            rem.sleep(0.002)
            add("exit done")
            if not ok then error(e, 0) end
          end)(), function() error(E, 0) end)
        end)
      end)
    end)
    assert.is_true(rem.is_error_group(err))
    assert.are.equal(E, err.errors[1])
    assert.are.same({ "caught E(body)", "exit done" }, log)
  end)

  it("a generator's exit that catches a cancellation of its body may still suspend", function()
    local log, add = H.log()
    H.run(function()
      local t = rem.spawn(function()
        rem.with(rem.contextmanager(function()
          local ok, e = pcall(coroutine.yield, "v")
          add("caught " .. tostring(rem.is_cancelled(e)))
          rem.sleep(0.005)
          add("slept")
          if not ok then error(e, 0) end
        end)(), function() rem.sleep(1) end)
      end)
      rem.sleep(0.005)
      t:cancel()
      assert.is_true(rem.is_cancelled(select(2, pcall(t.join, t))))
    end)
    assert.are.same({ "caught true", "slept" }, log)
  end)
end)
