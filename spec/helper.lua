-- Shared helpers for the specs: run a body under rem.run and check that nothing leaked.
--
--   local H = require "spec.helper"
--   local rem = H.rem
--   after_each(H.assert_clean)           -- every test: nothing left on the loop
--   local a, b = H.run(function() ... end)  -- rem.run, then the leak check
--   local err = H.run_error(function() ... end)  -- rem.run must raise; returns the error
local rem = require "rem"
local core = require "rem.core"
local assert = require "luassert"

local H = { rem = rem, core = core }

local pack, unpack = table.pack, table.unpack

--- Asserts that rem has nothing going on: no live task, no timer, no active handle.
function H.assert_clean()
  local s = core.stats()
  assert.are.same({ live = 0, timers = 0, active_handles = 0, ready = false },
    { live = s.live, timers = s.timers, active_handles = s.active_handles, ready = s.ready },
    "rem leaked something")
end

--- rem.run(fn, ...), then the leak check; returns fn's results or raises its error as is.
function H.run(fn, ...)
  local res = pack(pcall(rem.run, fn, ...))
  H.assert_clean()
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, res.n)
end

--- rem.run(fn, ...) must raise: returns the error (the very object), after the leak check.
function H.run_error(fn, ...)
  local ok, err = pcall(rem.run, fn, ...)
  H.assert_clean()
  assert.is_false(ok, "rem.run was expected to raise")
  return err
end

--- A log: `local log, add = H.log()`; `add(x)` appends x; compare `log` as a whole.
function H.log()
  local log = {}
  return log, function(v) log[#log + 1] = v end
end

--- A closable whose __close logs "<name> close start", sleeps `delay` s when given, calls
-- `on_close(err)` when given (err: what the handler received), then logs "<name> closed".
function H.closer(add, name, delay, on_close)
  return setmetatable({}, {
    __close = function(_, err)
      add(name .. " close start")
      if delay then rem.sleep(delay) end
      if on_close then on_close(err) end
      add(name .. " closed")
    end,
  })
end

--- pcall that returns only the error (asserts the call failed).
function H.error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "the call was expected to raise")
  return err
end

--- Seconds fn took on the loop's clock, and its results (inside a task).
function H.timed(fn, ...)
  local t0 = rem.now()
  local res = pack(fn(...))
  return rem.now() - t0, unpack(res, 1, res.n)
end

--- A unique error value, compared by identity.
function H.E(name)
  return setmetatable({ name = name }, { __tostring = function() return "E(" .. name .. ")" end })
end

--- This process's id (Lua has no getpid: the first field of /proc/self/stat).
local pid
function H.pid()
  if not pid then
    local f = assert(io.open("/proc/self/stat"))
    pid = tonumber(f:read("l"):match("^(%d+)"))
    f:close()
  end
  return pid
end

--- How many file descriptors this process has open (the entries of /proc/<pid>/fd, as
-- `ls` lists them). Not through io.popen: `ls` may list the parent's copy of the pipe's
-- write end before popen closes it, so counts would differ by one at random; os.execute
-- opens nothing in this process.
function H.fd_count()
  local listing = os.tmpname()
  assert(os.execute("ls /proc/" .. H.pid() .. "/fd > " .. listing))
  local f = assert(io.open(listing))
  local n = 0
  for _ in f:lines() do n = n + 1 end
  f:close()
  os.remove(listing)
  return n
end

return H
