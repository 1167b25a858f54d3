-- rem.Collection (SEMANTICS 22-25): concurrent acquire and release, cancellation of the
-- pending children and rollback on failure, error groups, nesting, misuse.
local H = require "spec.helper"
local rem = H.rem
local core = H.core

local function members(eg)
  assert.is_true(rem.is_error_group(eg), "expected an ErrorGroup, got " .. tostring(eg))
  return eg.errors
end

-- A child class: opts.acquire = {delay, error}, opts.release = {delay, error}; it logs and
-- counts every call (acquires, releases, on_error) and keeps what release_on_error saw.
local function child_class(add)
  local C = rem.Manager:extend()
  function C:init(name, opts)
    self.name, self.opts = name, opts or {}
    self.acquires, self.releases, self.on_error = 0, 0, 0
  end
  function C:acquire_resources()
    self.acquires = self.acquires + 1
    add(self.name .. " acquire")
    local o = self.opts.acquire or {}
    if o.delay then rem.sleep(o.delay) end
    if o.error then error(o.error, 0) end
    add(self.name .. " acquired")
  end
  local function release(self, err)
    self.releases = self.releases + 1
    local o = self.opts.release or {}
    if o.delay then rem.sleep(o.delay) end
    if o.error then error(o.error, 0) end
    add(self.name .. " released")
  end
  function C:release_resources()
    add(self.name .. " release")
    release(self)
  end
  function C:release_resources_on_error(err)
    add(self.name .. " release_on_error")
    self.on_error = self.on_error + 1
    self.seen = err
    release(self, err)
  end
  return C
end

local function assert_released_once(children)
  for _, c in ipairs(children) do
    assert.are.equal(c.acquires, c.releases, c.name .. ": acquires ~= releases")
    assert.are.equal(1, c.releases, c.name .. " released " .. c.releases .. " times")
    assert.are.equal("idle", core.manager_state(c))
  end
end

describe("rem.Collection", function()
  after_each(H.assert_clean)

  it("SEMANTICS 22: ten children of 0.5 s acquire and release concurrently", function()
    local log, add = H.log()
    local C = child_class(add)
    local kids = {}
    for i = 1, 10 do
      kids[i] = C.new("c" .. i, { acquire = { delay = 0.5 }, release = { delay = 0.5 } })
    end
    local acquire_took, release_took
    H.run(function()
      local t0 = rem.now()
      do
        local coll <close> = rem.Collection.new(kids):enter()
        acquire_took = rem.now() - t0
        assert.are.equal("acquired", core.manager_state(coll))
        for _, k in ipairs(kids) do assert.are.equal("acquired", core.manager_state(k)) end
        t0 = rem.now()
      end
      release_took = rem.now() - t0
    end)
    assert.is_true(acquire_took < 0.9, "acquire took " .. acquire_took)
    assert.is_true(release_took < 0.9, "release took " .. release_took)
    -- Every acquire started before any finished; every release too.
    for i = 1, 10 do assert.are.equal("c" .. i .. " acquire", log[i]) end
    for i = 11, 20 do assert.matches("acquired$", log[i]) end
    for i = 21, 30 do assert.are.equal("c" .. (i - 20) .. " release", log[i]) end
    for _, k in ipairs(kids) do
      assert.are.equal(1, k.releases)
      assert.are.equal(0, k.on_error)
    end
  end)

  it("SEMANTICS 23: one fails while another is acquiring: cancelled, rolled back, [E]", function()
    local log, add = H.log()
    local C = child_class(add)
    local E = H.E("acquire")
    local kids = {
      C.new("a", { acquire = { delay = 0.01 } }),
      C.new("b", { acquire = { delay = 0.05, error = E } }),
      C.new("c", { acquire = { delay = 0.5 } }),
    }
    local took
    local err = H.run_error(function()
      local t0 = rem.now()
      local ok, e = pcall(function()
        local _ <close> = rem.Collection.new(kids):enter()
        add("body")
      end)
      took = rem.now() - t0
      error(e, 0)
    end)
    local errs = members(err)
    assert.are.equal(1, #errs)
    assert.are.equal(E, errs[1])
    assert.is_true(took < 0.3, "took " .. took)
    -- c's acquire was cancelled, and it was released on error with the cancellation.
    assert.is_true(rem.is_cancelled(kids[3].seen))
    assert.are.equal(E, kids[2].seen)  -- b by its own state machine
    assert.are.equal(E, kids[1].seen)  -- a rolled back with the failure
    assert_released_once(kids)
    assert.are.same({ "a acquire", "b acquire", "c acquire", "a acquired", "b release_on_error",
      "b released", "c release_on_error", "c released", "a release_on_error", "a released" }, log)
  end)

  it("failures during the rollback join the group; the acquire error stays first", function()
    local log, add = H.log()
    local C = child_class(add)
    local E, R1, R3 = H.E("acquire"), H.E("rollback 1"), H.E("rollback 3")
    local kids = {
      C.new("a", { release = { delay = 0.02, error = R1 } }),
      C.new("b", { acquire = { delay = 0.01, error = E } }),
      C.new("c", { release = { error = R3 } }),
    }
    local err = H.run_error(function() rem.Collection.new(kids):enter() end)
    local errs = members(err)
    assert.are.same({ E, R1, R3 }, errs)
    assert.are.equal(E, errs[1])
    assert.are.equal(E, R1.context)  -- each rollback failure carries what it released for
    assert_released_once(kids)
  end)

  it("a child whose own release on error fails reports that failure, carrying its acquire error", function()
    local C = child_class(function() end)
    local E, R = rem.Error("acquire"), rem.Error("rollback")
    local kids = { C.new("a", { acquire = { error = E }, release = { error = R } }), C.new("b") }
    local err = H.run_error(function() rem.Collection.new(kids):enter() end)
    local errs = members(err)
    assert.are.equal(1, #errs)
    assert.are.equal(R, errs[1])
    assert.are.equal(E, R.context)
    assert_released_once({ kids[1] })
    -- b was cancelled before its helper ran: never attempted, so nothing to release.
    assert.are.equal(0, kids[2].acquires)
    assert.are.equal(0, kids[2].releases)
  end)

  it("SEMANTICS 24: release failures in children order; the others still released", function()
    local log, add = H.log()
    local C = child_class(add)
    local R2, R4 = H.E("release 2"), H.E("release 4")
    local kids = {
      C.new("a", { release = { delay = 0.01 } }),
      C.new("b", { release = { delay = 0.03, error = R2 } }),
      C.new("c", { release = { delay = 0.02 } }),
      C.new("d", { release = { error = R4 } }),  -- fails first
    }
    local err = H.run_error(function()
      local _ <close> = rem.Collection.new(kids):enter()
    end)
    assert.are.same({ R2, R4 }, members(err))
    assert.are.equal(R2, err.errors[1])
    assert.is_nil(err.context)
    assert_released_once(kids)
    for _, k in ipairs(kids) do assert.are.equal(0, k.on_error) end
  end)

  it("SEMANTICS 24: with a body error in flight, it is the group's context", function()
    local C = child_class(function() end)
    local B, R1 = rem.Error("body"), rem.Error("release")
    local kids = { C.new("a", { release = { error = R1 } }), C.new("b") }
    local err = H.run_error(function()
      local _ <close> = rem.Collection.new(kids):enter()
      error(B)
    end)
    assert.are.same({ R1 }, members(err))
    assert.are.equal(B, err.context)
    assert.are.equal(B, kids[1].seen)
    assert.are.equal(B, kids[2].seen)
    -- No failure: the body error itself propagates.
    local B2 = H.E("body 2")
    err = H.run_error(function()
      local _ <close> = rem.Collection.new{ C.new("x"), C.new("y") }:enter()
      error(B2)
    end)
    assert.are.equal(B2, err)
  end)

  it("SEMANTICS 25: an empty collection is a no-op", function()
    H.run(function()
      do
        local c <close> = rem.Collection.new{}:enter()
        assert.are.equal("acquired", core.manager_state(c))
      end
      local c = rem.Collection.new()
      c:acquire()
      c:release()
      assert.is_false(c:enter():exit(nil))
    end)
  end)

  it("a subclass implements resource_managers(); collections nest", function()
    local log, add = H.log()
    local C = child_class(add)
    local Pool = rem.Collection:extend()
    function Pool:init(n)
      self.kids = {}
      for i = 1, n do self.kids[i] = C.new("p" .. i, { acquire = { delay = 0.01 } }) end
    end
    function Pool:resource_managers() return self.kids end
    local pool = Pool.new(2)
    local outer = rem.Collection.new{ pool, C.new("x", { acquire = { delay = 0.02 } }) }
    H.run(function()
      local _ <close> = outer:enter()
      assert.are.equal("acquired", core.manager_state(pool))
      assert.are.equal("acquired", core.manager_state(pool.kids[2]))
      add("body")
    end)
    -- The pool's children start from the pool's own helper task, one turn after x.
    assert.are.same({ "x acquire", "p1 acquire", "p2 acquire", "p1 acquired", "p2 acquired",
      "x acquired", "body", "x release", "x released", "p1 release", "p1 released",
      "p2 release", "p2 released" }, log)
    -- The same pool again: a failure deep inside rolls everything back.
    local E = H.E("deep")
    pool.kids[2].opts.acquire = { delay = 0.005, error = E }
    local err = H.run_error(function() outer:enter() end)
    local errs = members(err)
    assert.are.equal(1, #errs)
    assert.are.same({ E }, members(errs[1]))  -- the inner collection's group, inside
    local p1 = pool.kids[1]
    assert.are.same({ 2, 2, 1 }, { p1.acquires, p1.releases, p1.on_error })
    assert.is_true(rem.is_cancelled(p1.seen))  -- still acquiring when p2 failed
    assert.are.equal("idle", core.manager_state(outer))
    assert.are.equal("idle", core.manager_state(pool))
  end)

  it("releasing runs when the surrounding block times out", function()
    local log, add = H.log()
    local C = child_class(add)
    local kids = { C.new("a", { release = { delay = 0.05 } }), C.new("b", { release = { delay = 0.05 } }) }
    local err = H.run_error(function()
      rem.timeout(0.02, function()
        local _ <close> = rem.Collection.new(kids):enter()
        rem.sleep(1)
      end)
    end)
    assert.is_true(rem.is_timeout(err))
    assert_released_once(kids)
    assert.is_true(rem.is_cancelled(kids[1].seen))
    assert.are.same({ "a acquire", "a acquired", "b acquire", "b acquired", "a release_on_error",
      "b release_on_error", "a released", "b released" }, log)
  end)

  it("a timeout while the children acquire cancels them; the timeout propagates, not a group", function()
    local log, add = H.log()
    local C = child_class(add)
    local kids = {
      C.new("a", { release = { delay = 0.02 } }),
      C.new("b", { acquire = { delay = 1 } }),
      C.new("c", { acquire = { delay = 1 } }),
    }
    local err = H.run_error(function()
      rem.timeout(0.02, function() rem.Collection.new(kids):enter() end)
    end)
    assert.is_true(rem.is_timeout(err), tostring(err))
    assert_released_once(kids)
    for _, k in ipairs(kids) do assert.is_true(rem.is_cancelled(k.seen)) end
  end)

  it("a cancelled task's collection: released, shielded, and the cancellation propagates", function()
    local C = child_class(function() end)
    local kids = { C.new("a", { release = { delay = 0.03 } }), C.new("b") }
    H.run(function()
      local t = rem.spawn(function()
        local _ <close> = rem.Collection.new(kids):enter()
        rem.sleep(1)
      end)
      rem.sleep(0.01)
      t:cancel()
      assert.is_true(rem.is_cancelled(select(2, pcall(t.join, t))))
    end)
    assert_released_once(kids)
  end)

  describe("misuse", function()
    it("a collection given a non-manager is a clear error", function()
      local err = H.error_of(rem.Collection.new, { rem.Manager.new(), 42 })
      assert.matches("rem.Collection.new: bad argument #1 (item 2 is not a rem.Manager, got number)",
        err, 1, true)
      err = H.error_of(rem.Collection.new, "x")
      assert.matches("rem.Collection.new: bad argument #1 (list of rem.Manager expected, got string)",
        err, 1, true)
      local Bad = rem.Collection:extend()
      function Bad:resource_managers() return { rem.Manager.new(), {} } end
      err = H.run_error(function() Bad.new():enter() end)
      assert.matches("rem.Collection:enter: resource_managers() item 2 is not a rem.Manager (got table)",
        tostring(err), 1, true)
    end)

    it("a child already acquired, listed twice, or held by a collection", function()
      local m = rem.Manager.new()
      H.run(function()
        m:acquire()
        local err = H.error_of(rem.Collection.new{ m }.enter, rem.Collection.new{ m })
        assert.matches("item 1 is already acquired", tostring(err), 1, true)
        m:release()
        local twice = rem.Collection.new{ m, m }
        err = H.error_of(twice.enter, twice)
        assert.matches("rem.Collection:enter: resource_managers() item 2 appears twice",
          tostring(err), 1, true)
        local c = rem.Collection.new{ m }:enter()
        err = H.error_of(m.release, m)
        assert.matches("rem.Manager:release: the manager is held by a rem.Collection", err, 1, true)
        err = H.error_of(m.enter, m)
        assert.matches("rem.Manager:enter: the manager is held by a rem.Collection", err, 1, true)
        local other = rem.Collection.new{ m }
        err = H.error_of(other.acquire, other)
        assert.matches("rem.Collection:acquire: resource_managers() item 1 is held by another",
          tostring(err), 1, true)
        c:release()
        m:acquire()
        m:release()
      end)
    end)
  end)
end)
