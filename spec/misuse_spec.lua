-- Misuse raises a Lua error naming the function, never crashes.
local H = require "spec.helper"
local rem = H.rem

-- The message of the error `fn(...)` raises; it must be a string naming `name`.
local function message_of(name, fn, ...)
  local msg = H.error_of(fn, ...)
  assert.are.equal("string", type(msg), "expected a message, got " .. tostring(msg))
  assert.matches(name, msg, 1, true)
  return msg
end

describe("outside a task", function()
  after_each(H.assert_clean)

  local suspending = {
    { "rem.sleep", function() rem.sleep(0.01) end },
    { "rem.checkpoint", function() rem.checkpoint() end },
    { "rem.timeout", function() rem.timeout(1, function() end) end },
    { "rem.shield", function() rem.shield(function() end) end },
    { "rem.group", function() rem.group() end },
    { "rem.group", function() rem.group(function() end) end },
  }
  for _, case in ipairs(suspending) do
    it(case[1] .. " raises 'not inside a task'", function()
      local msg = message_of(case[1], case[2])
      assert.matches("not inside a task", msg, 1, true)
    end)
  end

  it("task:join of a task still to run raises 'not inside a task'; the task can still be cancelled", function()
    local log, add = H.log()
    local t = rem.spawn(function() add("ran (wrong)") end)
    local msg = message_of("task:join", t.join, t)
    assert.matches("not inside a task", msg, 1, true)
    t:cancel()
    H.run(function() end)  -- drains it: cancelled before it ran, its body never runs
    assert.is_true(t:done())
    assert.are.same({}, log)
  end)

  it("a task spawned outside rem.run runs at the next rem.run", function()
    local log, add = H.log()
    local t = rem.spawn(function(x)
      rem.sleep(0.001)
      add(x)
      return x
    end, "spawned early")
    H.run(function() add("main") end)
    assert.are.same({ "main", "spawned early" }, log)
    assert.are.equal("spawned early", t:join())  -- done: join needs no task
  end)
end)

describe("wrong arguments", function()
  after_each(H.assert_clean)

  it("rem.run(nil)", function()
    message_of("rem.run: bad argument #1 (function expected, got nil)", rem.run, nil)
  end)

  it("rem.sleep('x') and rem.sleep()", function()
    H.run(function()
      message_of("rem.sleep: bad argument #1 (number expected, got string)", rem.sleep, "x")
      message_of("rem.sleep: bad argument #1 (number expected, got no value)", rem.sleep)
    end)
  end)

  it("rem.spawn(42)", function()
    message_of("rem.spawn: bad argument #1 (function expected, got number)", rem.spawn, 42)
  end)

  it("rem.timeout('a', f) and rem.timeout(1, 42)", function()
    H.run(function()
      message_of("rem.timeout: bad argument #1 (number expected, got string)",
        rem.timeout, "a", function() end)
      message_of("rem.timeout: bad argument #2 (function expected, got number)",
        rem.timeout, 1, 42)
    end)
  end)

  it("rem.shield(42)", function()
    H.run(function()
      message_of("rem.shield: bad argument #1 (function expected, got number)", rem.shield, 42)
    end)
  end)

  it("rem.group(42)", function()
    H.run(function()
      message_of("rem.group: bad argument #1 (function or nothing expected, got number)",
        rem.group, 42)
    end)
  end)

  it("are checked before the task is: the message is about the argument", function()
    message_of("rem.sleep: bad argument #1", rem.sleep, "x")
    message_of("rem.timeout: bad argument #2", rem.timeout, 1, 42)
  end)

  it("g:spawn(nil)", function()
    H.run(function()
      rem.group(function(g)
        local msg = message_of("group:spawn: bad argument #1", g.spawn, g, nil)
        assert.matches("function expected, got nil", msg, 1, true)
        message_of("group:spawn", function() g:spawn(42) end)
      end)
    end)
  end)

  it("task methods on something that is not a task", function()
    local t = H.run(function() return rem.spawn(function() end) end)
    message_of("rem.task expected", t.join, 42)
    message_of("rem.task expected", t.cancel, {})
    message_of("rem.task expected", t.done, nil)
  end)

  it("group methods on something that is not a group", function()
    H.run(function()
      rem.group(function(g)
        message_of("rem.group expected", g.spawn, {}, function() end)
        message_of("rem.group expected", g.cancel, 42)
      end)
    end)
  end)
end)

describe("suspending where Lua cannot", function()
  after_each(H.assert_clean)

  it("rem.sleep in a table.sort comparator says it cannot suspend there", function()
    local msg = H.run(function()
      return H.error_of(table.sort, { 3, 1, 2 }, function(a, b)
        rem.sleep(0)
        return a < b
      end)
    end)
    assert.matches("rem.sleep: cannot suspend here", msg, 1, true)
  end)

  it("rem.checkpoint in a __tostring called by tostring says it cannot suspend there", function()
    local msg = H.run(function()
      local v = setmetatable({}, { __tostring = function()
        rem.checkpoint()
        return "v"
      end })
      return H.error_of(tostring, v)
    end)
    assert.matches("rem.checkpoint: cannot suspend here", msg, 1, true)
  end)
end)

describe("coroutine.yield in a task's own function", function()
  after_each(H.assert_clean)

  it("fails that task with a clear error; its <close> variables are closed", function()
    local log, add = H.log()
    local err = H.run(function()
      local t = rem.spawn(function()
        local _ <close> = H.closer(add, "r")
        rem.sleep(0.001)
        coroutine.yield("stray")
        add("resumed (wrong)")
      end)
      return H.error_of(t.join, t)
    end)
    assert.matches("coroutine.yield", tostring(err), 1, true)
    assert.matches("task", tostring(err), 1, true)
    assert.are.same({ "r close start", "r closed" }, log)
  end)

  it("fails rem.run when the main task does it", function()
    local err = H.run_error(function() coroutine.yield() end)
    assert.matches("coroutine.yield", tostring(err), 1, true)
  end)

  it("fails a group child, and so the group", function()
    local err = H.run_error(function()
      rem.group(function(g) g:spawn(coroutine.yield, 1) end)
    end)
    assert.is_true(rem.is_error_group(err))
    assert.are.equal(1, #err.errors)
    assert.matches("coroutine.yield", tostring(err.errors[1]), 1, true)
  end)
end)

describe("groups used wrongly", function()
  after_each(H.assert_clean)

  it("only the task that opened a group can close it", function()
    local msg = H.run(function()
      local g <close> = rem.group()
      local t = rem.spawn(function() return H.error_of(g.close, g) end)
      return t:join()
    end)
    assert.matches("group:close: only the task that opened the group can close it", msg, 1, true)
  end)
end)

-- Found by the misuse fuzzer (tools/fuzz.lua): each one crashed rem before it was fixed.
describe("extra arguments (found by tools/fuzz.lua)", function()
  after_each(H.assert_clean)

  it("stack:pop_all ignores extra arguments (it wrote its entries into the wrong value)", function()
    local log, add = H.log()
    H.run(function()
      local s <close> = rem.ExitStack()
      s:callback(add, "moved")
      local moved <close> = s:pop_all(nil, "x", {})
      assert.are.equal(1, #moved)
      assert.are.equal(0, #s)
    end)
    assert.are.same({ "moved" }, log)
  end)
end)

describe("coroutine.yield in a task's own function (found by tools/fuzz.lua)", function()
  after_each(H.assert_clean)

  local function raw_yield() coroutine.yield("raw") end

  it("raises where it is called, so a pcall around it catches it", function()
    local ok, err = H.run(function() return pcall(raw_yield) end)
    assert.is_false(ok)
    assert.matches("a task's own function cannot yield", err, 1, true)
  end)

  it("a collection's child yielding in acquire fails the acquisition (it hung the collection)", function()
    local M = rem.Manager:extend()
    M.acquire_resources = raw_yield
    local released = 0
    function M:release_resources_on_error() released = released + 1 end
    local err = H.run_error(function()
      rem.timeout(5, rem.with, rem.Collection.new { M.new() }, function() end)
    end)
    assert.is_true(rem.is_error_group(err))
    assert.matches("cannot yield", tostring(err.errors[1]), 1, true)
    assert.are.equal(1, released)
  end)

  it("a collection's child yielding in release fails the release (it hung the collection)", function()
    local M = rem.Manager:extend()
    M.release_resources = raw_yield
    local err = H.run_error(function()
      rem.timeout(5, rem.with, rem.Collection.new { M.new() }, function() end)
    end)
    assert.is_true(rem.is_error_group(err))
    assert.matches("cannot yield", tostring(err.errors[1]), 1, true)
  end)
end)

describe("metamethods called by hand (found by tools/fuzz.lua)", function()
  after_each(H.assert_clean)

  it("a process's __index given another value raises (it read that value as a process)", function()
    H.run(function()
      local p <close> = rem.process.spawn { "true" }
      local index = getmetatable(p).__index
      assert.is_number(index(p, "pid"))
      for _, v in ipairs { {}, io.stdout, "pid", 1 } do
        local msg = H.error_of(index, v, "pid")
        assert.matches("rem.process expected", msg, 1, true)
      end
    end)
  end)

  it("a pool's __gc called by hand: an idle pool is refused after, a pool in use goes on", function()
    local log, add = H.log()
    local function member(name)
      return { enter = function() rem.sleep(0.001); add(name .. " enter"); return name end,
               exit = function() add(name .. " exit") end }
    end
    H.run(function()
      local idle = rem.gather(member("a"))
      local gc = getmetatable(idle).__gc
      gc(idle)
      gc(idle)  -- once only
      assert.matches("rem.ExitPool: the pool was finalised", H.error_of(function()
        rem.with(idle, function() end)
      end), 1, true)
      assert.matches("^rem.ExitPool %(finalised%)", tostring(idle))
      -- In use, its helpers reach its members' slots: the call is ignored (it freed them).
      local busy = rem.gather(member("b"), member("c"))
      local _ <close>, b, c = rem.enter(busy)
      gc(busy)
      assert.are.same({ "b", "c" }, { b, c })
      assert.matches("entered", tostring(busy))
    end)
    assert.are.same({ "b enter", "c enter", "b exit", "c exit" }, log)
  end)
end)
