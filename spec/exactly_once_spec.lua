-- SEMANTICS 21, as a property: random trees of managers and collections whose acquire and
-- release succeed, fail, sleep or get cancelled (a surrounding rem.timeout, or the task
-- cancelled). After each scenario: every acquisition attempt ended in exactly one release
-- call, every manager is idle, nothing leaked, and every error that was raised on purpose is
-- reachable from the error that propagated (through ErrorGroup.errors and `context`).
--
-- A failing scenario prints its seed; REM_SEED=<seed> REM_SCENARIOS=1 replays it alone.
local H = require "spec.helper"
local rem = H.rem
local core = H.core

-- The seeded generator of the fault-injection scenarios (xorshift32): same numbers anywhere.
local xorshift = require("spec.faults").xorshift

local Injected = { __tostring = function(e) return "injected " .. e.what .. " #" .. e.id end }

-- One scenario's world: its random numbers, the managers it made, the errors it raised.
local function world(seed)
  local w = { rng = xorshift(seed), counted = {}, all = {}, injected = {}, bad = {} }
  function w.inject(what)
    local e = setmetatable({ what = what, id = #w.injected + 1 }, Injected)
    w.injected[#w.injected + 1] = e
    return e
  end
  function w.pause(ms)
    if ms > 0 then rem.sleep(ms / 1000) end
  end
  -- How one step behaves: a pause of 0-2 ms, and a failure one time in four.
  function w.step()
    return { ms = w.rng(3), fail = w.rng(4) == 0 }
  end
  return w
end

-- A leaf: acquire_resources and release_resources(_on_error) as the world decides.
local Leaf = rem.Manager:extend()
function Leaf:init(w, name)
  self.w, self.name, self.acq, self.rel = w, name, w.step(), w.step()
  self.attempts, self.releases = 0, 0
  w.counted[#w.counted + 1], w.all[#w.all + 1] = self, self
end
function Leaf:acquire_resources()
  self.attempts = self.attempts + 1
  self.w.pause(self.acq.ms)
  if self.acq.fail then error(self.w.inject(self.name .. " acquire"), 0) end
end
local function leaf_release(self, err, on_error)
  self.releases = self.releases + 1
  if on_error and err == nil then self.w.bad[#self.w.bad + 1] = self.name .. ": on_error(nil)" end
  self.w.pause(self.rel.ms)
  if self.rel.fail then error(self.w.inject(self.name .. " release"), 0) end
end
function Leaf:release_resources() leaf_release(self) end
function Leaf:release_resources_on_error(err) leaf_release(self, err, true) end

-- A manager holding another one, entered inline from its own acquire_resources; it may fail
-- before or after acquiring the inner one, and releases it first when it holds it.
local Nest = rem.Manager:extend()
function Nest:init(w, name, inner)
  Leaf.init(self, w, name)
  self.inner = inner
  self.where = w.rng(2) == 0 and "before" or "after"
end
function Nest:acquire_resources()
  self.attempts = self.attempts + 1
  self.w.pause(self.acq.ms)
  if self.acq.fail and self.where == "before" then error(self.w.inject(self.name .. " acquire"), 0) end
  self.inner:acquire()
  if self.acq.fail then error(self.w.inject(self.name .. " acquire"), 0) end
end
local function nest_release(self, err, on_error)
  self.releases = self.releases + 1
  if on_error and err == nil then self.w.bad[#self.w.bad + 1] = self.name .. ": on_error(nil)" end
  local ok, e = true, nil
  if core.manager_state(self.inner) == "acquired" then
    if on_error then
      ok, e = pcall(self.inner.release_on_error, self.inner, err)
    else
      ok, e = pcall(self.inner.release, self.inner)
    end
  end
  self.w.pause(self.rel.ms)
  if self.rel.fail then
    local R = self.w.inject(self.name .. " release")
    error(ok and R or rem.chain(R, e), 0)
  end
  if not ok then error(e, 0) end
end
function Nest:release_resources() nest_release(self) end
function Nest:release_resources_on_error(err) nest_release(self, err, true) end

-- A collection whose resource_managers() may pause or fail.
local Coll = rem.Collection:extend()
function Coll:init(w, name, kids)
  self.w, self.name, self.kids, self.list_step = w, name, kids, w.step()
  self.list_step.fail = w.rng(10) == 0
  w.all[#w.all + 1] = self
end
function Coll:resource_managers()
  self.w.pause(self.list_step.ms)
  if self.list_step.fail then error(self.w.inject(self.name .. " list"), 0) end
  return self.kids
end

local function make(w, depth, name)
  local r = w.rng(10)
  if depth < 3 and r < 3 then
    local kids = {}
    for i = 1, w.rng(5) do kids[i] = make(w, depth + 1, name .. "." .. i) end
    return Coll.new(w, name .. "[c]", kids)
  elseif depth < 3 and r < 5 then
    return Nest.new(w, name .. "[n]", make(w, depth + 1, name .. ".i"))
  end
  return Leaf.new(w, name)
end

-- Every error reachable from `err` through groups and contexts (shared with the fault
-- injection generator).
local reachable = require("spec.faults").reachable

local function scenario(seed)
  local w = world(seed)
  local root = make(w, 0, "m")
  local mode = w.rng(6)       -- 0-1: plain; 2-4: rem.timeout of 0-4 ms; 5: task cancelled
  local limit = w.rng(5)
  local body_ms, body_fail = w.rng(3), w.rng(5) == 0
  local function body()
    local _ <close> = root:enter()
    w.pause(body_ms)
    if body_fail then error(w.inject("body"), 0) end
  end
  local ok, err = pcall(rem.run, function()
    if mode <= 1 then
      body()
    elseif mode <= 4 then
      rem.timeout(limit / 1000, body)
    else
      local t = rem.spawn(body)
      w.pause(limit)
      t:cancel()
      t:join()
    end
  end)
  local where = ("seed %d (mode %d, limit %d ms): "):format(seed, mode, limit)
  local s = core.stats()
  assert(s.live == 0 and s.timers == 0 and s.active_handles == 0 and not s.ready,
    where .. "rem leaked something")
  assert(#w.bad == 0, where .. table.concat(w.bad, "; "))
  for _, m in ipairs(w.counted) do
    assert(m.attempts == m.releases, ("%s%s: %d acquisition attempt(s), %d release call(s)")
      :format(where, m.name, m.attempts, m.releases))
  end
  for _, m in ipairs(w.all) do
    local state = core.manager_state(m)
    assert(state == "idle", where .. m.name .. " ended " .. state)
  end
  if ok then
    assert(#w.injected == 0, where .. "succeeded though " .. #w.injected .. " error(s) were raised")
  else
    local seen = reachable(err)
    for _, e in ipairs(w.injected) do
      assert(seen[e], where .. tostring(e) .. " is not reachable from the error raised: "
        .. tostring(err))
    end
  end
  return ok, mode, #w.injected
end

describe("exactly once (property)", function()
  after_each(H.assert_clean)

  it("random nested managers and collections: one release per attempt, no lost error", function()
    local base = tonumber(os.getenv("REM_SEED") or "") or 20240611
    local n = tonumber(os.getenv("REM_SCENARIOS") or "") or 1200
    local failed, cancelled, clean = 0, 0, 0
    for i = 0, n - 1 do
      local ok, mode = scenario(base + i)
      if ok then clean = clean + 1 else failed = failed + 1 end
      if mode >= 2 then cancelled = cancelled + 1 end
    end
    -- The generator must exercise both outcomes, not only one.
    assert.is_true(clean > n // 10, "only " .. clean .. " clean scenarios")
    assert.is_true(failed > n // 10, "only " .. failed .. " failing scenarios")
    if os.getenv("REM_VERBOSE") then
      print(("\n%d scenarios: %d clean, %d failed, %d under cancellation")
        :format(n, clean, failed, cancelled))
    end
  end)
end)
