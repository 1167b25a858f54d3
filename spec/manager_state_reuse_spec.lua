-- Regression guard for the performance design of bindings/manager_plain.c: a plain
-- manager's state is its metatable (its class when idle, a role table of the class shared by
-- every instance otherwise). No manager may ever see another one's state: its own
-- acquisition, its errors, its place in a collection.
local H = require "spec.helper"
local rem = H.rem
local core = H.core

local function counting_class()
  local M = rem.Manager:extend()
  function M:init(name, log) self.name, self.log = name, log end
  function M:acquire_resources() self.log[#self.log + 1] = self.name .. " acquire" end
  function M:release_resources() self.log[#self.log + 1] = self.name .. " release" end
  function M:release_resources_on_error(err)
    self.log[#self.log + 1] = self.name .. " release_on_error " .. tostring(err)
  end
  return M
end

describe("a manager's state, shared role tables", function()
  after_each(H.assert_clean)

  it("keeps each manager's own acquisition after another one went idle", function()
    local log = {}
    local M = counting_class()
    H.run(function()
      local a = M.new("a", log)
      a:enter()
      a:exit()                                   -- a is idle again
      assert.are.equal("idle", core.manager_state(a))
      local b <close> = M.new("b", log):enter()  -- b shares a's class and roles
      assert.are.equal("acquired", core.manager_state(b))
      assert.are.equal("idle", core.manager_state(a))
      assert.has_error(function() a:release() end,
        "rem.Manager:release: the manager is not acquired")
      assert.are.equal("acquired", core.manager_state(b))
      a:acquire()                                -- a is acquired on its own
      assert.are.equal("acquired", core.manager_state(a))
      a:release()
    end)
    assert.are.same({ "a acquire", "a release", "b acquire", "a acquire", "a release",
      "b release" }, log)
  end)

  it("nests and interleaves many managers, each released exactly once", function()
    local log = {}
    local M = counting_class()
    H.run(function()
      for round = 1, 3 do
        local ms = {}
        for i = 1, 50 do
          ms[i] = M.new(round .. "." .. i, log):enter()
          if i % 7 == 0 then ms[i - 1]:exit(); ms[i - 1] = nil end  -- go idle in between
        end
        for i = 50, 1, -1 do
          if ms[i] then
            assert.are.equal("acquired", core.manager_state(ms[i]))
            ms[i]:exit()
          end
        end
      end
    end)
    local acquired, released = {}, {}
    for _, line in ipairs(log) do
      local name, what = line:match("^(%S+) (%S+)")
      if what == "acquire" then acquired[name] = (acquired[name] or 0) + 1 end
      if what == "release" then released[name] = (released[name] or 0) + 1 end
    end
    assert.are.same(acquired, released)
    for name, n in pairs(acquired) do assert.are.equal(1, n, name) end
  end)

  it("after a failed acquire, the next manager starts clean", function()
    local log = {}
    local M = counting_class()
    local Bad = M:extend()
    function Bad:acquire_resources() error("boom", 0) end
    H.run(function()
      local bad = Bad.new("bad", log)
      assert.has_error(function() bad:enter() end, "boom")
      assert.are.equal("idle", core.manager_state(bad))
      local ok <close> = M.new("ok", log):enter()
      assert.are.equal("acquired", core.manager_state(ok))
      assert.is_nil(ok.seen)
    end)
    assert.are.same({ "bad release_on_error boom", "ok acquire", "ok release" }, log)
  end)

  it("a manager held by a collection keeps its state", function()
    local log = {}
    local M = counting_class()
    H.run(function()
      local child = M.new("child", log)
      local coll <close> = rem.Collection.new{ child }:enter()
      for i = 1, 20 do                            -- churn the idle states meanwhile
        local m <close> = M.new("m" .. i, log):enter()
      end
      assert.are.equal("acquired", core.manager_state(child))
      assert.has_error(function() child:release() end)
    end)
    assert.are.equal("child release", log[#log])
  end)
end)
