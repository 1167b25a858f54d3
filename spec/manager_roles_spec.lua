-- A plain rem.Manager keeps its state in its metatable (bindings/manager_plain.c): its class
-- when idle, one of the class's role tables otherwise. Guards what that must not change:
-- the instance looks like one of its class in every state, carries no field of rem's, and
-- every state is told apart.
local H = require "spec.helper"
local rem = H.rem
local core = H.core

-- A class whose resources report the state they see, from inside.
local function observing_class(seen)
  local M = rem.Manager:extend()
  function M:acquire_resources() seen[#seen + 1] = "acquire " .. core.manager_state(self) end
  function M:release_resources() seen[#seen + 1] = "release " .. core.manager_state(self) end
  return M
end

describe("a plain manager's state in its metatable", function()
  after_each(H.assert_clean)

  it("is acquiring, acquired, releasing, idle, as seen from inside and outside", function()
    local seen = {}
    local M = observing_class(seen)
    H.run(function()
      local m = M.new()
      assert.are.equal("idle", core.manager_state(m))
      m:enter()
      assert.are.equal("acquired", core.manager_state(m))
      m:exit()
      assert.are.equal("idle", core.manager_state(m))
    end)
    assert.are.same({ "acquire acquiring", "release releasing" }, seen)
  end)

  it("leaves the instance as its class made it: same metatable, same fields, same name", function()
    local M = rem.Manager:extend()
    M.__name = "Db"
    function M.__tostring(self) return "Db(" .. self.port .. ")" end
    function M:init(port) self.port = port end
    local during
    function M:acquire_resources()
      during = during or { getmetatable(self), tostring(self) }
    end
    H.run(function()
      local m = M.new(7)
      do
        local _ <close> = m:enter()
        assert.are.equal(M, getmetatable(m))
        assert.are.equal("Db(7)", tostring(m))
        local keys = {}
        for k in pairs(m) do keys[#keys + 1] = k end
        assert.are.same({ "port" }, keys)  -- no field of rem's in the instance
      end
      assert.are.equal(M, getmetatable(m))
      local bare = M.new(8)
      bare:enter()
      assert.is_nil(next(bare, "port"))
      bare:exit()
    end)
    assert.are.same({ M, "Db(7)" }, during)
  end)

  it("refuses a second enter while acquiring, and an exit while releasing", function()
    local M = rem.Manager:extend()
    local errs = {}
    function M:acquire_resources()
      errs[#errs + 1] = H.error_of(function() self:enter() end)
    end
    function M:release_resources()
      errs[#errs + 1] = H.error_of(function() self:exit() end)
    end
    H.run(function()
      local _ <close> = M.new():enter()
    end)
    assert.are.equal(2, #errs)
    assert.matches("rem.Manager:enter: the manager is being acquired$", errs[1])
    assert.matches("rem.Manager:exit: the manager is being released$", errs[2])
  end)

  it("keeps each class's roles apart: a subclass made after its parent was used", function()
    local log, add = H.log()
    local A = rem.Manager:extend()
    function A:acquire_resources() add("A acquire") end
    function A:release_resources() add("A release") end
    H.run(function()
      local a <close> = A.new():enter()
      local B = A:extend()
      function B:acquire_resources() add("B acquire") end
      local b = B.new():enter()
      assert.are.equal(B, getmetatable(b))
      assert.are.equal("acquired", core.manager_state(b))
      b:exit()
    end)
    assert.are.same({ "A acquire", "B acquire", "A release", "A release" }, log)
  end)

  it("is held by a collection, refused inline then, and free again once released", function()
    local log, add = H.log()
    local M = rem.Manager:extend()
    function M:acquire_resources() add("acquire") end
    function M:release_resources() add("release") end
    H.run(function()
      local m = M.new()
      do
        local _ <close> = rem.Collection.new({ m }):enter()
        assert.are.equal("acquired", core.manager_state(m))
        assert.are.equal(M, getmetatable(m))
        assert.has_error(function() m:enter() end,
          "rem.Manager:enter: the manager is held by a rem.Collection")
        assert.has_error(function() m:exit() end,
          "rem.Manager:exit: the manager is held by a rem.Collection (release the collection)")
      end
      assert.are.equal("idle", core.manager_state(m))
      local _ <close> = m:enter()  -- inline again
      assert.are.equal("acquired", core.manager_state(m))
    end)
    assert.are.same({ "acquire", "release", "acquire", "release" }, log)
  end)

  it("cannot be taken by a collection while acquired inline", function()
    local M = rem.Manager:extend()
    H.run(function()
      local m <close> = M.new():enter()
      local err = H.error_of(function() rem.Collection.new({ m }):enter() end)
      assert.matches("resource_managers%(%) item 1 is already acquired", tostring(err))
      assert.are.equal("acquired", core.manager_state(m))
    end)
  end)
end)
