-- rem.ExitStack: SEMANTICS 1-11, the <close> form against rem.with, deep stacks, misuse.
local H = require "spec.helper"
local rem = H.rem

-- A context manager that logs "<name> enter" / "<name> exit <what it saw>", optionally
-- sleeping, raising or suppressing. seen[name] is the very error its exit got.
local function mk(add, name, opts)
  opts = opts or {}
  local m = { seen = {} }
  function m.enter()
    add(name .. " enter")
    if opts.enter_delay then rem.sleep(opts.enter_delay) end
    if opts.enter_raise ~= nil then error(opts.enter_raise, 0) end
    return opts.value
  end
  function m.exit(_, err)
    m.seen[#m.seen + 1] = err
    add(name .. " exit " .. tostring(err))
    if opts.delay then rem.sleep(opts.delay) end
    if opts.raise ~= nil then error(opts.raise, 0) end
    return opts.suppress
  end
  return m
end

-- An exit function with the same options.
local function exitfn(add, name, opts)
  opts = opts or {}
  local seen = {}
  local f = function(err)
    seen[#seen + 1] = err
    add(name .. " " .. tostring(err))
    if opts.delay then rem.sleep(opts.delay) end
    if opts.raise ~= nil then error(opts.raise, 0) end
    return opts.suppress
  end
  return f, seen
end

describe("rem.ExitStack", function()
  after_each(H.assert_clean)

  it("1: unwinds LIFO: callback, enter_context, body", function()
    for _, form in ipairs { "with", "close" } do
      local log, add = H.log()
      H.run(function()
        local m = { enter = function() add(1) end, exit = function() add(3) end }
        local function body(stack)
          stack:callback(add, 4)
          stack:enter_context(m)
          add(2)
        end
        if form == "with" then
          rem.with(rem.ExitStack(), body)
        else
          local stack <close> = rem.ExitStack()
          body(stack)
        end
      end)
      assert.are.same({ 1, 2, 3, 4 }, log, form)
    end
  end)

  it("2: callback returns f, passes exactly its arguments and never suppresses", function()
    local log, add = H.log()
    local E = H.E("E")
    local got, noargs
    local err = H.run_error(function()
      local stack <close> = rem.ExitStack()
      local f = function(...) got = table.pack(...) end
      assert.are.equal(f, stack:callback(f, 1, nil, 3, nil))
      stack:callback(function(...) noargs = select("#", ...) end)
      rem.with(stack, function()
        for i = 0, 4 do
          stack:callback(function(...)
            add(i)
            assert.are.equal(0, select("#", ...))
            return true
          end)
        end
        error(E)
      end)
    end)
    assert.are.equal(E, err)
    assert.are.same({ 4, 3, 2, 1, 0 }, log)
    assert.are.same({ n = 4, 1, nil, 3, nil }, got)
    assert.are.equal(0, noargs)
  end)

  it("3: push registers without entering, returns its argument; suppression in rem.with", function()
    local log, add = H.log()
    local E = H.E("E")
    H.run(function()
      local stack = rem.ExitStack()
      local ok_fn = exitfn(add, "ok")
      local cm_ok = mk(add, "cm_ok")
      local sup = exitfn(add, "sup", { suppress = true })
      local cm_e = mk(add, "cm_e")
      local e1, seen1 = exitfn(add, "e1")
      local e2, seen2 = exitfn(add, "e2")
      for _, x in ipairs { ok_fn, cm_ok, sup, cm_e, e1, e2 } do
        assert.are.equal(x, stack:push(x))
      end
      local res = table.pack(rem.with(stack, function() error(E) end))
      assert.are.equal(0, res.n)  -- suppressed: the block ended normally, with nothing
      assert.is_true(rawequal(seen2[1], E))
      assert.is_true(rawequal(seen1[1], E))
      assert.is_true(rawequal(cm_e.seen[1], E))
    end)
    assert.are.same({ "e2 E(E)", "e1 E(E)", "cm_e exit E(E)", "sup E(E)",
                      "cm_ok exit nil", "ok nil" }, log)
  end)

  it("3: the <close> form runs the same exits but the error propagates", function()
    local log, add = H.log()
    local E = H.E("E")
    local err = H.run_error(function()
      local stack <close> = rem.ExitStack()
      stack:push(exitfn(add, "ok"))
      stack:push(exitfn(add, "sup", { suppress = true }))
      stack:push(exitfn(add, "e1"))
      error(E)
    end)
    assert.are.equal(E, err)
    assert.are.same({ "e1 E(E)", "sup E(E)", "ok nil" }, log)
  end)

  it("4: exit(err) returns true only if an error came in and was suppressed", function()
    local E = H.E("E")
    H.run(function()
      local s = rem.ExitStack()
      s:push(function() return true end)
      assert.is_false(s:exit(nil))         -- nothing came in
      s:push(function() return true end)
      assert.is_true(s:exit(E))            -- came in, suppressed
      s:push(function() return false end)
      assert.is_false(s:exit(E))           -- came in, not suppressed
      assert.is_false(s:exit(E))           -- empty: nothing ran
      -- Replaced, then the replacement suppressed: nothing is left of what came in.
      s:push(function() return true end)
      s:push(function() error(H.E("N")) end)
      assert.is_true(s:exit(E))
      -- An exit raising with nothing in flight: exit raises it.
      local N = H.E("N2")
      s:push(function() error(N) end)
      local ok, got = pcall(s.exit, s, nil)
      assert.is_false(ok)
      assert.are.equal(N, got)
    end)
  end)

  it("5: a raising exit replaces the error; later exits see it; contexts chain", function()
    local log, add = H.log()
    for _, form in ipairs { "with", "close" } do
      for k in pairs(log) do log[k] = nil end
      local K, T, V, I = H.E("K"), H.E("T"), H.E("V"), H.E("I")
      local seen = {}
      local function obs(name, opts)
        local f, s = exitfn(add, name, opts)
        seen[name] = s
        return f
      end
      local err = H.run_error(function()
        local function body(stack)
          stack:push(obs("raiseT", { raise = T }))
          stack:push(obs("raiseV", { raise = V }))
          stack:push(obs("sup", { suppress = true }))
          stack:push(obs("raiseI", { raise = I }))
          stack:push(obs("observer"))
          error(K)
        end
        if form == "with" then
          rem.with(rem.ExitStack(), body)
        else
          local stack <close> = rem.ExitStack()
          body(stack)
        end
      end)
      assert.are.equal(T, err, form)
      assert.are.same({ "observer E(K)", "raiseI E(K)", "sup E(I)", "raiseV nil",
                        "raiseT E(V)" }, log, form)
      assert.is_true(rawequal(seen.observer[1], K))
      assert.is_true(rawequal(seen.raiseI[1], K))
      assert.is_true(rawequal(seen.sup[1], I))
      assert.is_true(rawequal(seen.raiseT[1], V))
      assert.are.equal(V, T.context, form)
      assert.are.equal(K, I.context, form)
      assert.is_nil(V.context, form)  -- raised after a suppression: no context, ever
    end
  end)

  it("6: several exits raising with no body error chain like nested blocks; all run", function()
    local log, add = H.log()
    local A, B, C = H.E("A"), H.E("B"), H.E("C")
    local err = H.run_error(function()
      rem.with(rem.ExitStack(), function(stack)
        stack:callback(add, "bottom")
        stack:push(exitfn(add, "raiseA", { raise = A }))
        stack:push(exitfn(add, "raiseB", { raise = B }))
        stack:push(exitfn(add, "raiseC", { raise = C }))
      end)
    end)
    assert.are.equal(A, err)
    assert.are.equal(B, A.context)
    assert.are.equal(C, B.context)
    assert.is_nil(C.context)
    assert.are.same({ "raiseC nil", "raiseB E(C)", "raiseA E(B)", "bottom" }, log)
  end)

  it("6: a suppressed error drops out of the chain", function()
    local K, X = H.E("K"), H.E("X")
    local err = H.run_error(function()
      rem.with(rem.ExitStack(), function(stack)
        stack:push(function() error(X) end)
        stack:push(function() return true end)
        error(K)
      end)
    end)
    assert.are.equal(X, err)
    assert.is_nil(X.context)
  end)

  it("a string raised by an exit over an error becomes an rem.Error carrying it", function()
    local K = H.E("K")
    local err = H.run_error(function()
      local stack <close> = rem.ExitStack()
      stack:callback(error, "cleanup failed", 0)
      error(K)
    end)
    assert.are.equal(rem.Error, getmetatable(err))
    assert.are.equal("cleanup failed", err.value)
    assert.are.equal(K, err.context)
  end)

  it("a body raising nil or false: the exits see an rem.Error", function()
    for _, v in ipairs { false, "nil" } do
      local seen
      local err = H.run_error(function()
        rem.with(rem.ExitStack(), function(stack)
          stack:push(function(e) seen = e end)
          if v == "nil" then error(nil) else error(false) end
        end)
      end)
      assert.are.equal(rem.Error, getmetatable(seen))
      assert.are.equal(seen, err)
    end
  end)

  it("7: pop_all moves every entry to a new stack; later entries stay", function()
    local log, add = H.log()
    H.run(function()
      local moved
      do
        local stack <close> = rem.ExitStack()
        stack:callback(add, "a")
        stack:enter_context(mk(add, "m"))
        moved = stack:pop_all()
        assert.are.equal(0, #stack)
        assert.are.equal(2, #moved)
        stack:callback(add, "later")
      end
      add("block left")
      moved:close()
    end)
    assert.are.same({ "m enter", "later", "block left", "m exit nil", "a" }, log)
  end)

  it("8: close runs the entries now, each removed as it runs; then it is reusable", function()
    local log, add = H.log()
    H.run(function()
      local stack = rem.ExitStack()
      stack:callback(function() add("b" .. #stack) end)
      stack:callback(function() add("a" .. #stack) end)
      stack:close()
      stack:close()  -- nothing left
      assert.are.equal(0, #stack)
      stack:callback(add, "again")
      stack:close()
    end)
    assert.are.same({ "a1", "b0", "again" }, log)
  end)

  it("9: an enter that fails is not exited; the ones before are, with its error", function()
    local log, add = H.log()
    local E = H.E("E")
    local good = mk(add, "good")
    local bad = mk(add, "bad", { enter_raise = E })
    local err = H.run_error(function()
      rem.with(rem.ExitStack(), function(stack)
        stack:enter_context(good)
        stack:enter_context(bad)
        add("body")
      end)
    end)
    assert.are.equal(E, err)
    assert.are.same({ "good enter", "bad enter", "good exit E(E)" }, log)
    assert.is_true(rawequal(good.seen[1], E))
  end)

  it("9: a value that is neither a cm, a closable nor a function is refused, nothing pushed", function()
    H.run(function()
      local stack = rem.ExitStack()
      for _, v in ipairs { 42, "str", true, {} } do
        local err = H.error_of(stack.push, stack, v)
        assert.matches("stack:push: bad argument #1 (context manager, closable or function "
          .. "expected, got " .. type(v) .. ")", err, 1, true)
        err = H.error_of(stack.enter_context, stack, v)
        assert.matches("stack:enter_context: bad argument #1", err, 1, true)
      end
      assert.matches("stack:enter_context: bad argument #1 (context manager, closable or "
        .. "function expected, got no value)", H.error_of(stack.enter_context, stack), 1, true)
      assert.matches("stack:callback: bad argument #1 (function expected, got table)",
        H.error_of(stack.callback, stack, {}), 1, true)
      assert.matches("rem.ExitStack expected",
        H.error_of(stack.close, {}), 1, true)
      -- a table with exit alone is a cm to push, not to enter
      local half = { exit = function() end }
      assert.are.equal(half, stack:push(half))
      assert.matches("stack:enter_context: bad argument #1",
        H.error_of(stack.enter_context, stack, half), 1, true)
      assert.are.equal(1, #stack)
      stack:close()
    end)
  end)

  it("refuses close, exit and pop_all from its own exits while it unwinds", function()
    local msgs = {}
    H.run(function()
      local stack = rem.ExitStack()
      stack:callback(function()
        msgs.close = select(2, pcall(stack.close, stack))
        msgs.exit = select(2, pcall(stack.exit, stack))
        msgs.pop_all = select(2, pcall(stack.pop_all, stack))
        -- pushing while it unwinds is fine: the new entry runs next
        stack:callback(function() msgs.pushed = true end)
      end)
      stack:close()
      assert.are.equal(0, #stack)
    end)
    assert.matches("stack:close: the stack is already unwinding", msgs.close, 1, true)
    assert.matches("stack:exit: the stack is already unwinding", msgs.exit, 1, true)
    assert.matches("stack:pop_all: the stack is unwinding", msgs.pop_all, 1, true)
    assert.is_true(msgs.pushed)
  end)

  it("enter_context: a closable is pushed as is and returned; a function constructs", function()
    local log, add = H.log()
    H.run(function()
      local closable = H.closer(add, "c")
      local plain = {}
      do
        local stack <close> = rem.ExitStack()
        assert.are.equal(closable, stack:enter_context(closable))
        -- a constructor returning a cm: it is entered, its values returned
        local a, b = stack:enter_context(function()
          rem.sleep(0.001)
          return { enter = function() add("built enter") return "x", "y" end,
                   exit = function() add("built exit") end }
        end)
        assert.are.same({ "x", "y" }, { a, b })
        -- returning a closable: kept, closed on exit
        assert.are.equal(closable, stack:enter_context(function() return closable end))
        -- returning a plain value: kept, nothing to exit
        assert.are.equal(plain, stack:enter_context(function() return plain end))
        assert.are.equal(3, #stack)
        add("body")
      end
    end)
    assert.are.same({ "built enter", "body", "c close start", "c closed", "built exit",
                      "c close start", "c closed" }, log)
  end)

  it("10: sync and suspending callbacks, exits and cms mix in one LIFO order", function()
    local log, add = H.log()
    local E = H.E("E")
    local err = H.run_error(function()
      local stack <close> = rem.ExitStack()
      stack:callback(add, "cb sync")
      stack:callback(function() rem.sleep(0.01) add("cb slow") end)
      stack:enter_context(mk(add, "cm slow", { enter_delay = 0.005, delay = 0.01 }))
      stack:push(exitfn(add, "fn sync"))
      stack:push(exitfn(add, "fn slow", { delay = 0.005 }))
      stack:enter_context(H.closer(add, "closer", 0.005))
      stack:enter_context(mk(add, "cm sync"))
      error(E)
    end)
    assert.are.equal(E, err)
    assert.are.same({ "cm slow enter", "cm sync enter", "cm sync exit E(E)",
                      "closer close start", "closer closed", "fn slow E(E)", "fn sync E(E)",
                      "cm slow exit E(E)", "cb slow", "cb sync" }, log)
  end)

  it("11: a cancelled body: every exit runs, sees the cancellation, completes", function()
    for _, form in ipairs { "with", "close" } do
      local log, add = H.log()
      local seen = {}
      H.run(function()
        local task = rem.spawn(function()
          local function body(stack)
            stack:callback(function() rem.sleep(0.005) add("cb done") end)
            stack:push(function(e)
              seen[#seen + 1] = e
              rem.sleep(0.005)      -- shielded: cleanup is not interrupted
              add("exit done")
            end)
            stack:enter_context(mk(add, "cm", { delay = 0.005 }))
            add("body sleeps")
            rem.sleep(10)
            add("never")
          end
          if form == "with" then
            rem.with(rem.ExitStack(), body)
          else
            local stack <close> = rem.ExitStack()
            body(stack)
          end
        end)
        rem.sleep(0.005)
        task:cancel()
        local ok, err = pcall(task.join, task)
        assert.is_false(ok)
        assert.is_true(rem.is_cancelled(err), form)
        seen.final = err
      end)
      assert.are.same({ "cm enter", "body sleeps", "cm exit cancelled", "exit done",
                        "cb done" }, log, form)
      assert.is_true(rem.is_cancelled(seen[1]))
      assert.are.equal(seen[1], seen.final)  -- the cancellation propagates as itself
    end
  end)

  it("unwinds a 100,000-deep stack of sync exits (iteration, not recursion)", function()
    local n, count, last = 100000, 0, math.huge
    H.run(function()
      local stack <close> = rem.ExitStack()
      for i = 1, n do
        stack:callback(function()
          assert(i < last)
          last, count = i, count + 1
        end)
      end
    end)
    assert.are.equal(n, count)
  end)

  it("unwinds a 100,000-deep stack of exits, some suspending, with an error in flight", function()
    local n, count, last = 100000, 0, math.huge
    local E = H.E("E")
    local err = H.run_error(function()
      rem.with(rem.ExitStack(), function(stack)
        for i = 1, n do
          stack:push(function(e)
            assert(rawequal(e, E) and i < last)
            if i % 10000 == 0 then rem.sleep(0) end
            last, count = i, count + 1
          end)
        end
        error(E)
      end)
    end)
    assert.are.equal(E, err)
    assert.are.equal(n, count)
  end)

  it("is a context manager and closable; enter gives the stack; tostring and #", function()
    H.run(function()
      local s = rem.ExitStack()
      assert.are.equal(s, s:enter())
      assert.is_function(getmetatable(s).__close)
      s:callback(print)
      assert.are.equal(1, #s)
      assert.matches("^rem.ExitStack %(1 entry%)", tostring(s))
      s:pop_all()
    end)
  end)

  -- The entries' Lua values live in slots of one table: a callback takes one slot per
  -- value, a cm two; the slots are reused and the table dropped when unwinding ends.
  it("entry slots: callbacks with many arguments and nils, cms and pushes interleaved, reuse", function()
    local log, add = H.log()
    H.run(function()
      local stack = rem.ExitStack()
      for round = 1, 2 do
        local args = {}
        for i = 1, 40 do args[i] = (i % 3 ~= 0) and i or nil end
        stack:callback(function(...)
          local n = select("#", ...)
          local t = { ... }
          for i = 1, 40 do assert(t[i] == args[i]) end
          add("many " .. n)
        end, table.unpack(args, 1, 40))
        stack:enter_context(mk(add, "cm" .. round))
        stack:callback(add, "one")
        stack:push(exitfn(add, "fn"))
        stack:callback(function(a, b) add(tostring(a) .. " " .. b) end, nil, "two")
        assert.are.equal(5, #stack)
        stack:close()
        assert.are.equal(0, #stack)
      end
    end)
    assert.are.same({ "cm1 enter", "nil two", "fn nil", "one", "cm1 exit nil", "many 40",
                      "cm2 enter", "nil two", "fn nil", "one", "cm2 exit nil", "many 40" }, log)
  end)

  it("entry slots: an exit that pushes while it unwinds, suspending, runs the new entry next", function()
    local log, add = H.log()
    H.run(function()
      local stack = rem.ExitStack()
      stack:callback(add, "bottom")
      stack:enter_context(mk(add, "m"))
      stack:callback(function()
        rem.sleep(0.001)
        stack:callback(add, "pushed 1", "x")
        stack:enter_context(mk(add, "late"))
        rem.sleep(0.001)
        add("top")
      end)
      stack:close()
    end)
    assert.are.same({ "m enter", "late enter", "top", "late exit nil", "pushed 1", "m exit nil",
                      "bottom" }, log)
  end)

  it("entry slots: an enter that suspends while another task closes the stack is still recorded", function()
    local log, add = H.log()
    H.run(function()
      local stack = rem.ExitStack()
      stack:callback(add, "first")
      local t = rem.spawn(function()
        stack:enter_context(mk(add, "slow", { enter_delay = 0.01 }))
        add("entered")
      end)
      rem.sleep(0.002)
      stack:close()  -- runs "first" and drops the table while "slow" is entering
      t:join()
      assert.are.equal(1, #stack)
      stack:close()
    end)
    assert.are.same({ "slow enter", "first", "entered", "slow exit nil" }, log)
  end)

  it("a cm's exit is the one it had when pushed (as Python's ExitStack takes __exit__)", function()
    local log, add = H.log()
    H.run(function()
      local stack = rem.ExitStack()
      local m = mk(add, "m")
      stack:enter_context(m)
      m.exit = function() add("replaced") end
      stack:close()
    end)
    assert.are.same({ "m enter", "m exit nil" }, log)
  end)

  it("holds nothing once unwound: entries are collectable after close", function()
    H.run(function()
      local weak = setmetatable({}, { __mode = "k" })
      local stack = rem.ExitStack()
      for _ = 1, 10 do
        local m = mk(function() end, "m")
        weak[m] = true
        stack:enter_context(m)
        local f = function() end
        weak[f] = true
        stack:callback(f)
      end
      stack:close()
      collectgarbage()
      collectgarbage()
      assert.is_nil(next(weak))
      assert.are.equal(0, #stack)
    end)
  end)

  it("works outside a task for exits that do not suspend", function()
    local log, add = H.log()
    local s = rem.ExitStack()
    s:callback(add, 2)
    s:push(function() add(1) end)
    s:close()
    assert.are.same({ 1, 2 }, log)
    local err = H.error_of(function()
      local s2 <close> = rem.ExitStack()
      s2:callback(rem.sleep, 0)
    end)
    assert.matches("rem.sleep: not inside a task", tostring(err), 1, true)
  end)
end)
