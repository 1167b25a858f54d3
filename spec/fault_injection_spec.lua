-- Fault injection (spec/faults.lua): random nested exit stacks, collections, groups, rem.with,
-- timeouts (and rem.gather when this build has it) over managers, generator cms, closables
-- and real TCP connections to an echo server, where enters, bodies and exits succeed, fail,
-- sleep or are cancelled. After each scenario every invariant is checked: released exactly
-- once, nothing released unacquired, no injected error lost, no task, timer, handle or fd left.
--
-- A failure names its seed: REM_FAULT_SEED=<seed> REM_FAULT_SCENARIOS=1 replays it alone
-- (make stress SEED=<seed> SCENARIOS=1 too). More scenarios: make stress SCENARIOS=N.
local H = require "spec.helper"
local F = require "spec.faults"

describe("fault injection", function()
  after_each(H.assert_clean)

  it("random scenarios: released exactly once, no error lost, nothing left behind", function()
    local first = tonumber(os.getenv("REM_FAULT_SEED") or "") or 1000000
    local n = tonumber(os.getenv("REM_FAULT_SCENARIOS") or "") or 2000
    local stats = F.run(first, n)
    assert.are.same({}, stats.failures)
    assert.are.equal(n, stats.run)
    if n >= 100 then
      -- The generator must exercise every outcome, and sockets, not only some.
      assert.is_true(stats.clean > n // 10, "only " .. stats.clean .. " clean scenarios")
      assert.is_true(stats.errors > n // 10, "only " .. stats.errors .. " failing scenarios")
      assert.is_true(stats.injected > n // 4, "only " .. stats.injected .. " injected errors")
      assert.is_true(stats.streams > n // 4, "only " .. stats.streams .. " connections")
    end
    if os.getenv("REM_VERBOSE") then
      print(("\n%d scenarios from seed %d: %d clean, %d failed, %d errors injected, "
        .. "%d connections"):format(n, first, stats.clean, stats.errors, stats.injected,
        stats.streams))
    end
  end)

  it("a plan depends on its seed only", function()
    assert.are.same(F.plan(42), F.plan(42))
    assert.are_not.same(F.plan(42), F.plan(43))
  end)
end)
