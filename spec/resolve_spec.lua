-- rem.resolve: names to addresses through libuv's getaddrinfo.
local H = require "spec.helper"
local rem = H.rem

describe("rem.resolve", function()
  local fds
  setup(function() H.run(function() rem.resolve("localhost") end) end)
  before_each(function() fds = H.fd_count() end)
  after_each(function()
    H.assert_clean()
    assert.are.equal(fds, H.fd_count(), "file descriptors leaked")
  end)

  it("\"localhost\" resolves to a loopback address", function()
    local addrs = H.run(rem.resolve, "localhost")
    assert.is_true(#addrs >= 1)
    local loopback = false
    for _, a in ipairs(addrs) do
      if a == "127.0.0.1" or a == "::1" then loopback = true end
    end
    assert.is_true(loopback, table.concat(addrs, ", "))
  end)

  it("numeric addresses resolve to themselves, once each", function()
    assert.are.same({ "127.0.0.1" }, H.run(rem.resolve, "127.0.0.1"))
    assert.are.same({ "::1" }, H.run(rem.resolve, "::1"))
  end)

  it("a bad name gives an rem.Error with a code, naming the host", function()
    local err = H.run_error(rem.resolve, "no-such-host.invalid")
    assert.are.equal(rem.Error, getmetatable(err))
    assert.matches("^EAI_", err.code)
    assert.matches("rem.resolve: cannot resolve 'no-such-host.invalid'", err.message, 1, true)
  end)

  it("many lookups at once", function()
    H.run(function()
      local n = 0
      rem.group(function(g)
        for _ = 1, 40 do
          g:spawn(function()
            assert.are.equal("127.0.0.1", rem.resolve("localhost")[1])
            n = n + 1
          end)
        end
      end)
      assert.are.equal(40, n)
    end)
  end)

  it("a cancelled lookup is abandoned safely (its late callback frees it)", function()
    H.run(function()
      for _ = 1, 20 do
        local t = rem.spawn(rem.resolve, "localhost")
        rem.checkpoint()  -- the lookup is under way
        t:cancel()
        assert.is_true(rem.is_cancelled(H.error_of(t.join, t)))
      end
      rem.sleep(0.05)  -- the abandoned requests complete meanwhile
    end)
  end)

  it("misuse: not a string; outside a task", function()
    assert.matches("rem.resolve: not inside a task", H.error_of(rem.resolve, "localhost"), 1, true)
    H.run(function()
      assert.matches("rem.resolve: bad argument #1 (string expected, got number)",
        H.error_of(rem.resolve, 42), 1, true)
    end)
  end)
end)
