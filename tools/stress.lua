-- make stress [SCENARIOS=N] [SEED=S]: the fault-injection scenarios of spec/faults.lua, as
-- many as asked, from seed S (default: from the clock, printed). Prints progress, and for a
-- failing scenario its seed and the command that replays it; exits 1 if any failed.
--   lua5.4 tools/stress.lua [scenarios] [seed] [--keep-going]  (from the repository's root,
--   with lua/ and build/ on the Lua paths: the Makefile sets them)
-- GATHER=0 plans the scenarios as if rem.gather did not exist (to replay such a seed).
local F = require "spec.faults"

local n = tonumber(arg[1] or "") or 10000
local first = tonumber(arg[2] or "")
local keep_going = false
for _, a in ipairs(arg) do
  if a == "--keep-going" then keep_going = true end
end
if not first then first = os.time() % 1000000 * 1000 end
local gather = nil
if os.getenv("GATHER") == "0" then gather = false end

warn("@on")  -- rem warns of what it had to clean up behind the script's back
print(("stress: %d scenarios from seed %d (rem.gather %s)"):format(n, first,
  (gather == false or not require("rem").gather) and "left out" or "included"))
io.stdout:flush()

local t0 = os.time()
local clock0 = os.clock()
local stats = F.run(first, n, {
  gather = gather,
  stop_on_failure = not keep_going,
  on_failure = function(seed, msg)
    print("FAIL " .. msg)
    print(("  replay: make stress SCENARIOS=1 SEED=%d%s"):format(seed,
      gather == false and " GATHER=0" or ""))
    io.stdout:flush()
  end,
  progress = function(i, s)
    if i % 1000 == 0 then
      print(("  %d scenarios, %d clean, %d failed, %d errors injected, %d connections, %d s")
        :format(i, s.clean, s.errors, s.injected, s.streams, os.time() - t0))
      io.stdout:flush()
    end
  end,
})
print(("stress: %d scenarios (seeds %d-%d): %d clean, %d failed as planned, %d errors "
  .. "injected, %d connections; %d broke an invariant; %d s wall, %.1f s cpu")
  :format(stats.run, first, first + stats.run - 1, stats.clean, stats.errors, stats.injected,
    stats.streams, #stats.failures, os.time() - t0, os.clock() - clock0))
os.exit(#stats.failures == 0 and 0 or 1)
