-- rem.gather, the exit pool (SEMANTICS 26-32): members enter concurrently and exit
-- concurrently, values in argument order, rollback of a failed enter, error groups in
-- argument order, suppression only when every member suppressed, cancellation as itself;
-- nesting in exit stacks and around collections; members that suspend inside __close or a
-- nested coroutine; C members (no task at all).
local H = require "spec.helper"
local rem = H.rem
local core = H.core

local function members_of(eg)
  assert.is_true(rem.is_error_group(eg), "expected an ErrorGroup, got " .. tostring(eg))
  return eg.errors
end

-- A member: a cm whose enter and exit log, sleep, and fail or suppress as told.
-- opts.enter = {delay, error, values}, opts.exit = {delay, error, suppress}; m.seen is the
-- error its exit got, m.exits how many times it was exited.
local function member(add, name, opts)
  opts = opts or {}
  local m = { name = name, enters = 0, exits = 0 }
  function m.enter()
    m.enters = m.enters + 1
    add(name .. " enter")
    local o = opts.enter or {}
    if o.delay then rem.sleep(o.delay) end
    if o.error then error(o.error, 0) end
    add(name .. " entered")
    if o.values then return table.unpack(o.values) end
    return name
  end
  function m.exit(_, err)
    m.exits = m.exits + 1
    m.seen = err
    add(name .. " exit")
    local o = opts.exit or {}
    if o.delay then rem.sleep(o.delay) end
    if o.error then error(o.error, 0) end
    add(name .. " exited")
    return o.suppress
  end
  return m
end

-- Index of `what` in the log (nil when absent).
local function at(log, what)
  for i, v in ipairs(log) do if v == what then return i end end
end

-- Every `first` event comes before every `second` event (both lists of names).
local function all_before(log, names, first, second)
  for _, a in ipairs(names) do
    for _, b in ipairs(names) do
      local i, j = at(log, a .. first), at(log, b .. second)
      assert.is_truthy(i, a .. first .. " missing")
      assert.is_truthy(j, b .. second .. " missing")
      assert.is_true(i < j, a .. first .. " after " .. b .. second)
    end
  end
end

describe("rem.gather", function()
  after_each(H.assert_clean)

  it("SEMANTICS 26-27: three members of 100 ms enter and exit in about 200 ms, concurrently", function()
    local log, add = H.log()
    local ms = {}
    for _, name in ipairs { "a", "b", "c" } do
      ms[#ms + 1] = member(add, name, { enter = { delay = 0.1 }, exit = { delay = 0.1 } })
    end
    local took, values = H.run(function()
      local t0 = rem.now()
      local got
      do
        local _ <close>, a, b, c = rem.enter(rem.gather(ms[1], ms[2], ms[3]))
        got = { a, b, c }
        add("body")
      end
      return rem.now() - t0, got
    end)
    assert.is_true(took >= 0.19 and took < 0.35, "took " .. took)
    assert.are.same({ "a", "b", "c" }, values)
    all_before(log, { "a", "b", "c" }, " enter", " entered")
    all_before(log, { "a", "b", "c" }, " exit", " exited")
    assert.is_true(at(log, "c entered") < at(log, "body"))
    assert.is_true(at(log, "body") < at(log, "a exit"))
    for _, m in ipairs(ms) do assert.are.equal(1, m.exits) end
  end)

  it("values come in argument order whatever order the members finish in", function()
    local log, add = H.log()
    local delays = { 0.06, 0.01, 0.04, 0.02, 0.05, 0.03 }
    local ms = {}
    for i, d in ipairs(delays) do
      ms[i] = member(add, "m" .. i, { enter = { delay = d, values = { i * 10, "second" } } })
    end
    local values = H.run(function()
      return { rem.with(rem.gather(table.unpack(ms)), function(...) return ... end) }
    end)
    assert.are.same({ 10, 20, 30, 40, 50, 60 }, values)  -- one (the first) value per member
    assert.are.equal("m2 entered", log[7])                -- m2 finished first
  end)

  it("a function is an async constructor: its result is entered, or kept (closed on exit)", function()
    local log, add = H.log()
    local cm = member(add, "cm", { enter = { delay = 0.01, values = { "from cm" } } })
    local closable = H.closer(add, "closable", 0.01)
    local v1, v2, v3, v4 = H.run(function()
      local _ <close>, a, b, c, d = rem.enter(rem.gather(
        function() rem.sleep(0.01); return cm end,
        function() return closable end,
        function() return 42, 43 end,
        function() end))
      return a, b, c, d
    end)
    assert.are.equal("from cm", v1)
    assert.are.equal(closable, v2)
    assert.are.equal(42, v3)
    assert.is_nil(v4)
    assert.are.equal(1, cm.exits)
    assert.is_truthy(at(log, "closable closed"))
  end)

  it("SEMANTICS 28: one fails while another enters: cancelled, not exited; the entered one rolled back; [E]", function()
    local log, add = H.log()
    local E = H.E("enter")
    local a = member(add, "a", { enter = { delay = 0.01 }, exit = { delay = 0.02 } })
    local b = member(add, "b", { enter = { delay = 0.05, error = E } })
    local c = member(add, "c", { enter = { delay = 0.5 } })
    -- c's enter holds something that its own cleanup releases when it is cancelled.
    local c_enter = c.enter
    c.enter = function(...)
      local _ <close> = H.closer(add, "c cleanup")
      return c_enter(...)
    end
    local took
    local err = H.run_error(function()
      local t0 = rem.now()
      local ok, e = pcall(function()
        local _ <close> = rem.enter(rem.gather(a, b, c))
        add("body")
      end)
      took = rem.now() - t0
      error(e, 0)
    end)
    assert.are.same({ E }, members_of(err))
    assert.are.equal(E, err.errors[1])
    assert.is_true(took >= 0.065 and took < 0.2, "took " .. took)
    assert.is_nil(at(log, "body"))
    assert.are.equal(1, a.exits)
    assert.are.equal(E, a.seen)          -- rolled back with the failure itself
    assert.are.equal(0, b.exits)
    assert.are.equal(0, c.exits)         -- cancelled while entering: not exited
    assert.is_nil(at(log, "c entered"))
    assert.is_truthy(at(log, "c cleanup close start"))
    assert.is_true(at(log, "c cleanup closed") < at(log, "a exit"))
  end)

  it("several enter failures are listed in argument order; rollback failures join them", function()
    local _, add = H.log()
    local E1, E3, R2 = H.E("enter 1"), H.E("enter 3"), H.E("rollback 2")
    -- m1 fails late, though its enter is cancelled: its cleanup raises E1 instead.
    local m1 = { enter = function()
      local _ <close> = setmetatable({}, { __close = function() error(E1, 0) end })
      rem.sleep(1)
    end, exit = function() end }
    local m2 = member(add, "m2", { exit = { delay = 0.01, error = R2 } })
    local m3 = member(add, "m3", { enter = { delay = 0.02, error = E3 } })
    local err = H.run_error(function() rem.gather(m1, m2, m3):enter() end)
    assert.are.same({ E1, E3, R2 }, members_of(err))
    assert.are.equal(E3, m2.seen)         -- rolled back with the first failure in time
    assert.are.equal(E3, R2.context)
  end)

  it("SEMANTICS 29: a body error reaches every exit, the same object, concurrently, and propagates", function()
    local log, add = H.log()
    local ms = {}
    for i, name in ipairs { "a", "b", "c" } do
      ms[i] = member(add, name, { exit = { delay = 0.01 * (4 - i) } })
    end
    local B = H.E("body")
    local err = H.run_error(function()
      rem.with(rem.gather(ms[1], ms[2], ms[3]), function() error(B, 0) end)
    end)
    assert.are.equal(B, err)
    for _, m in ipairs(ms) do assert.are.equal(B, m.seen) end
    all_before(log, { "a", "b", "c" }, " exit", " exited")
    -- the same through <close>
    err = H.run_error(function()
      local _ <close> = rem.enter(rem.gather(ms[1], ms[2]))
      error(B, 0)
    end)
    assert.are.equal(B, err)
  end)

  it("SEMANTICS 30: exit failures in argument order, the body error as context; the others still exit", function()
    local log, add = H.log()
    local R1, R3 = H.E("exit 1"), H.E("exit 3")
    local ms = {
      member(add, "a", { exit = { delay = 0.03, error = R1 } }),
      member(add, "b", { exit = { delay = 0.02 } }),
      member(add, "c", { exit = { error = R3 } }),   -- fails first
    }
    local B = rem.Error("body")
    local err = H.run_error(function()
      local _ <close> = rem.enter(rem.gather(table.unpack(ms)))
      error(B)
    end)
    assert.are.same({ R1, R3 }, members_of(err))
    assert.are.equal(B, err.context)
    assert.is_truthy(at(log, "b exited"))
    -- Without a body error, no context.
    local ms2 = { member(add, "x", { exit = { error = R1 } }), member(add, "y") }
    err = H.run_error(function() rem.with(rem.gather(table.unpack(ms2)), function() end) end)
    assert.are.same({ R1 }, members_of(err))
    assert.is_nil(rawget(err, "context"))
  end)

  it("SEMANTICS 30: the pool suppresses only if every member suppressed (rem.with honours it)", function()
    local _, add = H.log()
    local B = H.E("body")
    local function pool(suppress)
      local ms = {}
      for i, s in ipairs(suppress) do
        ms[i] = member(add, "m" .. i, { exit = { delay = 0.01, suppress = s } })
      end
      return rem.gather(table.unpack(ms))
    end
    local result = H.run(function()
      return rem.with(pool { true, true, true }, function() error(B, 0) end) == nil
    end)
    assert.is_true(result)
    local err = H.run_error(function()
      rem.with(pool { true, false, true }, function() error(B, 0) end)
    end)
    assert.are.equal(B, err)
    -- exit(err) says so directly; with no error there is nothing to suppress.
    H.run(function()
      local p = pool { true, true }
      p:enter()
      assert.is_true(p:exit(B))
      p:enter()
      assert.is_false(p:exit(nil))
    end)
  end)

  it("SEMANTICS 31: a task cancelled while members enter: cancellation as itself, entered ones exited", function()
    local log, add = H.log()
    local a = member(add, "a", { enter = { delay = 0.01 }, exit = { delay = 0.01 } })
    local b = member(add, "b", { enter = { delay = 1 } })
    local c = member(add, "c", { enter = { delay = 1 } })
    local err, took = H.run(function()
      local t0 = rem.now()
      local t = rem.spawn(function()
        local _ <close> = rem.enter(rem.gather(a, b, c))
        add("body")
      end)
      rem.sleep(0.05)
      t:cancel()
      local ok, e = pcall(t.join, t)
      assert.is_false(ok)
      return e, rem.now() - t0
    end)
    assert.is_true(rem.is_cancelled(err), "expected a cancellation, got " .. tostring(err))
    assert.is_false(rem.is_error_group(err))
    assert.is_true(took < 0.3, "took " .. took)
    assert.is_nil(at(log, "body"))
    assert.are.equal(1, a.exits)
    assert.is_true(rem.is_cancelled(a.seen))
    assert.are.equal(0, b.exits)
    assert.are.equal(0, c.exits)
  end)

  it("SEMANTICS 31: a timeout while members enter is a timeout", function()
    local _, add = H.log()
    local a = member(add, "a")
    local b = member(add, "b", { enter = { delay = 1 } })
    local err = H.run_error(function()
      rem.timeout(0.03, function()
        local _ <close> = rem.enter(rem.gather(a, b))
      end)
    end)
    assert.is_true(rem.is_timeout(err), tostring(err))
    assert.are.equal(1, a.exits)
    assert.are.equal(0, b.exits)
  end)

  it("exits are shielded: a cancelled task's pool exits completely", function()
    local log, add = H.log()
    local a = member(add, "a", { exit = { delay = 0.05 } })
    local b = member(add, "b", { exit = { delay = 0.05 } })
    H.run(function()
      local t = rem.spawn(function()
        local _ <close> = rem.enter(rem.gather(a, b))
        rem.sleep(1)
      end)
      rem.sleep(0.01)
      t:cancel()
      assert.is_true(rem.is_cancelled(H.error_of(t.join, t)))
    end)
    assert.is_truthy(at(log, "a exited"))
    assert.is_truthy(at(log, "b exited"))
    assert.is_true(rem.is_cancelled(a.seen))
  end)

  it("a pool entered and exited inside a __close of a cancelled task runs to the end", function()
    local log, add = H.log()
    local a = member(add, "a", { enter = { delay = 0.02 }, exit = { delay = 0.02 } })
    local b = member(add, "b", { enter = { delay = 0.03 }, exit = { delay = 0.01 } })
    H.run(function()
      local t = rem.spawn(function()
        local _ <close> = setmetatable({}, { __close = function()
          rem.with(rem.gather(a, b), function(va, vb) add("cleanup body " .. va .. vb) end)
        end })
        rem.sleep(1)
      end)
      rem.sleep(0.01)
      t:cancel()
      assert.is_true(rem.is_cancelled(H.error_of(t.join, t)))
    end)
    assert.is_truthy(at(log, "cleanup body ab"))
    assert.are.equal(1, a.exits)
    assert.is_nil(a.seen)
    assert.is_truthy(at(log, "b exited"))
  end)

  it("SEMANTICS 32: rem.gather() is a no-op", function()
    local B = H.E("body")
    H.run(function()
      local p = rem.gather()
      assert.are.equal(0, select("#", p:enter()))
      assert.is_false(p:exit(B))
      local _ <close> = rem.enter(rem.gather())
    end)
    local err = H.run_error(function() rem.with(rem.gather(), function() error(B, 0) end) end)
    assert.are.equal(B, err)
  end)

  it("nests in an exit stack, LIFO with the other entries, still concurrent", function()
    local log, add = H.log()
    local a = member(add, "a", { enter = { delay = 0.05 }, exit = { delay = 0.05 } })
    local b = member(add, "b", { enter = { delay = 0.05 }, exit = { delay = 0.05 } })
    local took = H.run(function()
      local t0 = rem.now()
      do
        local stack <close> = rem.ExitStack()
        stack:callback(add, "first callback")
        local va, vb = stack:enter_context(rem.gather(a, b))
        assert.are.same({ "a", "b" }, { va, vb })
        stack:callback(add, "last callback")
      end
      return rem.now() - t0
    end)
    assert.is_true(took >= 0.095 and took < 0.2, "took " .. took)
    assert.is_true(at(log, "last callback") < at(log, "a exit"))
    assert.is_true(at(log, "b exited") < at(log, "first callback"))
    all_before(log, { "a", "b" }, " exit", " exited")
  end)

  it("a collection inside a pool: acquired and released concurrently with the other members", function()
    local log, add = H.log()
    local Leaf = rem.Manager:extend()
    function Leaf:init(name) self.name = name end
    function Leaf:acquire_resources() add(self.name .. " acquire"); rem.sleep(0.05) end
    function Leaf:release_resources() add(self.name .. " release"); rem.sleep(0.05) end
    local coll = rem.Collection.new { Leaf.new("l1"), Leaf.new("l2") }
    local m = member(add, "m", { enter = { delay = 0.05 }, exit = { delay = 0.05 } })
    local took, first = H.run(function()
      local t0 = rem.now()
      local got
      do
        local _ <close>, c, v = rem.enter(rem.gather(coll, m))
        got = c
        assert.are.equal("m", v)
        assert.are.equal("acquired", core.manager_state(coll))
      end
      return rem.now() - t0, got
    end)
    assert.are.equal(coll, first)
    assert.is_true(took >= 0.095 and took < 0.2, "took " .. took)
    assert.are.equal("idle", core.manager_state(coll))
    assert.is_truthy(at(log, "l2 release"))
    -- And rolled back with the others when a member fails.
    local E = H.E("enter")
    local coll2 = rem.Collection.new { Leaf.new("k1") }
    local err = H.run_error(function()
      rem.gather(coll2, member(add, "bad", { enter = { delay = 0.1, error = E } })):enter()
    end)
    assert.are.same({ E }, members_of(err))
    assert.are.equal("idle", core.manager_state(coll2))
  end)

  it("members whose enter or exit suspends inside a __close or a nested coroutine", function()
    local log, add = H.log()
    local in_close = {
      enter = function()
        do local _ <close> = H.closer(add, "enter's close", 0.02) end
        return "closed in enter"
      end,
      exit = function()
        local _ <close> = H.closer(add, "exit's close", 0.02)
      end,
    }
    local function gen(tag)
      return coroutine.wrap(function()
        rem.sleep(0.02)
        coroutine.yield(tag .. " 1")
        rem.sleep(0.02)
        coroutine.yield(tag .. " 2")
      end)
    end
    local in_coroutine = {
      enter = function() local g = gen("enter"); g(); return g() end,
      exit = function() local g = gen("exit"); add(g()); add(g()) end,
    }
    local generator_cm = rem.contextmanager(function()
      rem.sleep(0.01)
      coroutine.yield("from a generator")
      rem.sleep(0.01)
      add("generator exited")
    end)
    local values, took = H.run(function()
      local t0 = rem.now()
      local got
      do
        local _ <close>, a, b, c = rem.enter(rem.gather(in_close, in_coroutine, generator_cm()))
        got = { a, b, c }
      end
      return got, rem.now() - t0
    end)
    assert.are.same({ "closed in enter", "enter 2", "from a generator" }, values)
    assert.is_true(took < 0.15, "took " .. took)  -- 0.04 + 0.04 if concurrent, 0.11 if not
    assert.is_truthy(at(log, "exit's close closed"))
    assert.is_truthy(at(log, "exit 2"))
    assert.is_truthy(at(log, "generator exited"))
  end)

  it("C members join without a task: values, failures as rem.Error, cancellation", function()
    local s1, s2 = core.sleeper(0.05, 0.02), core.sleeper(0.03)
    local live
    H.run(function()
      local t0 = rem.now()
      do
        local _ <close>, a, b, c = rem.enter(rem.gather(s1, s2, function()
          live = core.stats().live   -- the main task and this member's helper, no more
          rem.sleep(0.04)
          return "lua"
        end))
        assert.are.same({ s1, s2, "lua" }, { a, b, c })
        assert.is_true(rem.now() - t0 < 0.09)
      end
      assert.is_true(rem.now() - t0 < 0.12)
    end)
    assert.are.equal(2, live)
    assert.are.same({ 1, 1, 0 }, { s1:counts() })
    -- A C member failing: an rem.Error named after the code; the pending ones cancelled.
    local s3, s4, s5 = core.sleeper(0.01, 0, "ECONNREFUSED"), core.sleeper(1), core.sleeper(0)
    local err = H.run_error(function() rem.gather(s5, s3, s4):enter() end)
    local errs = members_of(err)
    assert.are.equal(1, #errs)
    assert.are.equal("ECONNREFUSED", errs[1].code)
    assert.are.same({ 1, 0, 1 }, { s4:counts() })
    assert.are.same({ 1, 1, 0 }, { s5:counts() })   -- rolled back
    -- Cancelled while only C members enter: the cancellation itself.
    err = H.run_error(function()
      rem.timeout(0.02, function() rem.gather(core.sleeper(1), core.sleeper(1)):enter() end)
    end)
    assert.is_true(rem.is_timeout(err), tostring(err))
    -- A C member in another pool's hands is refused.
    err = H.run_error(function()
      local s = core.sleeper(0)
      local _ <close> = rem.enter(rem.gather(s))
      rem.gather(s):enter()
    end)
    assert.are.equal("EBUSY", members_of(err)[1].code)
  end)

  it("pool:wrap(fn) enters a fresh pool for each call, concurrent calls included", function()
    local log, add = H.log()
    local cm = rem.contextmanager(function(name)
      add(name .. " in")
      rem.sleep(0.02)
      coroutine.yield(name)
      add(name .. " out")
    end)
    local f = rem.gather(cm("x"), function() return "y" end):wrap(function(n)
      add("body " .. n)
      return n * 10
    end)
    local results = H.run(function()
      local g <close> = rem.group()
      local out = {}
      for i = 1, 3 do g:spawn(function() out[i] = { f(i) } end) end
      return out
    end)
    for i = 1, 3 do assert.are.same({ i * 10 }, results[i]) end
    assert.is_true(at(log, "body 3") < at(log, "x out"))
    local ins = 0
    for _, v in ipairs(log) do if v == "x in" then ins = ins + 1 end end
    assert.are.equal(3, ins)
  end)

  it("can be entered again after it was exited", function()
    local _, add = H.log()
    local m = member(add, "m")
    H.run(function()
      local p = rem.gather(m, function() return 1 end)
      for _ = 1, 3 do
        local _ <close>, a, b = rem.enter(p)
        assert.are.same({ "m", 1 }, { a, b })
      end
    end)
    assert.are.equal(3, m.exits)
  end)

  describe("misuse", function()
    it("refuses values that are not members, naming the argument", function()
      local err = H.error_of(rem.gather, function() end, 42)
      assert.matches("rem.gather: bad argument #2 %(context manager, closable or function "
        .. "expected, got number%)", err)
    end)

    it("entering twice, exiting a pool not entered, outside a task", function()
      H.run(function()
        local p = rem.gather(function() end)
        assert.matches("pool:exit: the pool is not entered", H.error_of(p.exit, p))
        p:enter()
        assert.matches("pool:enter: the pool is already entered", H.error_of(p.enter, p))
        p:exit()
      end)
      local p = rem.gather()
      assert.matches("pool:enter: not inside a task", H.error_of(p.enter, p))
      assert.matches("rem.ExitPool %(0 members, idle%)", tostring(p))
    end)

    it("a member raising nil still makes an error the group can hold", function()
      local err = H.run_error(function() rem.gather(function() error(nil) end):enter() end)
      assert.matches("raised nil", tostring(members_of(err)[1]))
    end)
  end)
end)
