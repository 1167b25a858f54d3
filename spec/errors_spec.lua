-- rem.Error, rem.ErrorGroup, the predicates, rem.chain.
local H = require "spec.helper"
local rem = H.rem

describe("rem.Error", function()
  after_each(H.assert_clean)

  it("rem.Error(message, code) has message, code and a traceback; tostring is 'CODE: message'", function()
    local e = rem.Error("connection refused", "ECONNREFUSED")
    assert.are.equal("connection refused", e.message)
    assert.are.equal("ECONNREFUSED", e.code)
    assert.are.equal("string", type(e.traceback))
    assert.matches("errors_spec.lua", e.traceback, 1, true)
    assert.is_nil(e.context)
    assert.are.equal("ECONNREFUSED: connection refused", tostring(e))
    assert.are.equal(rem.Error, getmetatable(e))
  end)

  it("without a code, tostring is the message", function()
    local e = rem.Error("plain")
    assert.is_nil(e.code)
    assert.are.equal("plain", tostring(e))
  end)

  it("rem.Error{...} copies the fields given, context and extras included", function()
    local ctx = rem.Error("cause")
    local spec = { message = "m", code = "EX", context = ctx, extra = 42 }
    local e = rem.Error(spec)
    assert.are_not.equal(spec, e)
    assert.are.equal("m", e.message)
    assert.are.equal("EX", e.code)
    assert.are.equal(ctx, e.context)
    assert.are.equal(42, e.extra)
    assert.are.equal("string", type(e.traceback))
    assert.are.equal("EX: m", tostring(e))
  end)

  it("rem.Error{} gets a default message", function()
    assert.are.equal("error", rem.Error({}).message)
    assert.are.equal("error", tostring(rem.Error({})))
  end)

  it("keeps a traceback given in the table", function()
    assert.are.equal("tb", rem.Error({ message = "m", traceback = "tb" }).traceback)
  end)

  it("is raised and caught as the same object", function()
    local e = rem.Error("x", "EX")
    local ok, got = pcall(error, e)
    assert.is_false(ok)
    assert.are.equal(e, got)
  end)

  it("a cancellation prints as 'cancelled' and has code ECANCELED", function()
    local err = H.run(function()
      local t = rem.spawn(rem.sleep, 10)
      rem.checkpoint()
      t:cancel()
      return H.error_of(t.join, t)
    end)
    assert.are.equal("cancelled", tostring(err))
    assert.are.equal("ECANCELED", err.code)
    assert.are.equal(rem.Error, getmetatable(err))
  end)
end)

describe("rem.ErrorGroup", function()
  after_each(H.assert_clean)

  it("holds the errors given, with a message counting them", function()
    local E1, E2 = H.E("one"), H.E("two")
    local list = { E1, E2 }
    local eg = rem.ErrorGroup(list)
    assert.are.same({ E1, E2 }, eg.errors)
    assert.are.equal(E1, eg.errors[1])
    assert.are.equal(E2, eg.errors[2])
    assert.are.equal("2 errors in a group", eg.message)
    assert.are.equal(rem.ErrorGroup, getmetatable(eg))
    assert.are.equal("1 error in a group", rem.ErrorGroup({ "x" }).message)
  end)

  it("takes a message", function()
    local eg = rem.ErrorGroup({ "x" }, "custom")
    assert.are.equal("custom", eg.message)
    assert.are.equal("ErrorGroup: custom\n└─ x", tostring(eg))
  end)

  it("tostring prints the tree of nested groups", function()
    local eg = rem.ErrorGroup({
      rem.Error("one", "C1"),
      rem.ErrorGroup({ "two", rem.ErrorGroup({ "three" }) }),
      "four",
    })
    local lines = {}
    for line in tostring(eg):gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.are.same({
      "ErrorGroup: 3 errors in a group",
      "├─ C1: one",
      "├─ ErrorGroup: 2 errors in a group",
      "│  ├─ two",
      "│  └─ ErrorGroup: 1 error in a group",
      "│     └─ three",
      "└─ four",
    }, lines)
  end)

  it("eg:flatten() lists the leaf errors of nested groups, in order", function()
    local a, b, c, d = H.E("a"), H.E("b"), H.E("c"), H.E("d")
    local eg = rem.ErrorGroup({ a, rem.ErrorGroup({ b, rem.ErrorGroup({ c }) }), d })
    local flat = eg:flatten()
    assert.are.equal(4, #flat)
    assert.are.equal(a, flat[1])
    assert.are.equal(b, flat[2])
    assert.are.equal(c, flat[3])
    assert.are.equal(d, flat[4])
    assert.are.same({}, rem.ErrorGroup({}):flatten())
  end)

  it("refuses anything but a table of errors, naming itself", function()
    local msg = H.error_of(rem.ErrorGroup, "x")
    assert.matches("rem.ErrorGroup: bad argument #1", msg, 1, true)
  end)
end)

describe("rem.is_error_group, rem.is_cancelled, rem.is_timeout", function()
  after_each(H.assert_clean)

  local others = {
    { "a string", "cancelled" },
    { "nil", nil },
    { "a number", 42 },
    { "a plain table", {} },
    { "a table that looks like one", { cancelled = true, timeout = true, errors = {} } },
    { "a plain rem.Error", rem.Error("x", "ECANCELED") },
  }
  for _, case in ipairs(others) do
    it("are false on " .. case[1], function()
      assert.is_false(rem.is_error_group(case[2]))
      assert.is_false(rem.is_cancelled(case[2]))
      assert.is_false(rem.is_timeout(case[2]))
    end)
  end

  it("are false when called with nothing", function()
    assert.is_false(rem.is_error_group())
    assert.is_false(rem.is_cancelled())
    assert.is_false(rem.is_timeout())
  end)

  it("each recognises its own kind only", function()
    local eg, cancel, timeout = H.run(function()
      local ok, t = pcall(rem.timeout, 0, rem.sleep, 1)
      assert(not ok)
      return rem.ErrorGroup({ "x" }), t.context, t
    end)
    assert.are.same({ true, false, false },
      { rem.is_error_group(eg), rem.is_cancelled(eg), rem.is_timeout(eg) })
    assert.are.same({ false, true, false },
      { rem.is_error_group(cancel), rem.is_cancelled(cancel), rem.is_timeout(cancel) })
    assert.are.same({ false, false, true },
      { rem.is_error_group(timeout), rem.is_cancelled(timeout), rem.is_timeout(timeout) })
  end)
end)

describe("rem.chain", function()
  after_each(H.assert_clean)

  it("returns the new error with the old one as its context", function()
    local new, old = rem.Error("new"), rem.Error("old")
    local got = rem.chain(new, old)
    assert.are.equal(new, got)
    assert.are.equal(old, new.context)
  end)

  it("returns the new error as is when nothing is in flight, or when both are the same", function()
    local e = rem.Error("e")
    assert.are.equal(e, rem.chain(e, nil))
    assert.are.equal(e, rem.chain(e, e))
    assert.is_nil(e.context)
  end)

  it("wraps a string in an rem.Error keeping it as `value`; wraps a string context too", function()
    local got = rem.chain("new", "old")
    assert.are.equal(rem.Error, getmetatable(got))
    assert.are.equal("new", got.message)
    assert.are.equal("new", got.value)
    assert.are.equal(rem.Error, getmetatable(got.context))
    assert.are.equal("old", got.context.value)
  end)

  it("sets the context once: a second chain does not overwrite it", function()
    local new, first, second = rem.Error("new"), rem.Error("first"), rem.Error("second")
    rem.chain(new, first)
    rem.chain(new, second)
    assert.are.equal(first, new.context)
  end)

  it("keeps a context the error already had", function()
    local prior, later = rem.Error("prior"), rem.Error("later")
    local e = rem.Error({ message = "e", context = prior })
    rem.chain(e, later)
    assert.are.equal(prior, e.context)
  end)
end)

describe("rem._VERSION", function()
  it("names rem and its version", function()
    assert.matches("^rem %d+%.%d+", rem._VERSION)
  end)
end)
