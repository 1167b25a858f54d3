-- Tasks, a group, a timeout, and a cancelled task that unwinds
-- its <close> resources (each release suspends, and none is cut short).
-- Run with `build/bin/rem examples/tasks.lua`: the `rem` program runs the
-- script as the main task (with plain lua5.4, wrap the body in rem.run(function() ... end)).
local rem = require "rem"

local t0 = rem.now()
local function say(fmt, ...)
  print(string.format("[%5.0f ms] " .. fmt, (rem.now() - t0) * 1000, ...))
end

-- A pretend connection: opening and closing both take time, as real ones do.
local function connect(name, latency)
  rem.sleep(latency)
  say("%s: connected", name)
  return setmetatable({ name = name }, {
    __close = function(self, err)
      rem.sleep(0.02)  -- a graceful close suspends the task
      say("%s: closed%s", self.name,
          err and (rem.is_cancelled(err) and " (task cancelled)" or " (after an error)") or "")
    end,
  })
end

do
  say("1. tasks: spawn two, join both")
  local a = rem.spawn(function() rem.sleep(0.03); return "a done" end)
  local b = rem.spawn(function() rem.sleep(0.01); return "b done" end)
  say("joined: %s, %s", a:join(), b:join())

  say("2. a group: three workers; the group waits for all of them")
  rem.group(function(g)
    for i = 1, 3 do
      g:spawn(function()
        local conn <close> = connect("worker" .. i, 0.01 * i)
        rem.sleep(0.01)
      end)
    end
  end)
  say("group closed: every worker finished and released its connection")

  say("3. a timeout: the body is cancelled, its resources released, then the error")
  local ok, err = pcall(rem.timeout, 0.05, function()
    local conn <close> = connect("slow-query", 0.01)
    rem.sleep(10)  -- never finishes in time
  end)
  say("timeout raised: %s (is_timeout=%s)", tostring(err), tostring(rem.is_timeout(err)))

  say("4. a cancelled task unwinds three resources, in reverse order")
  local task = rem.spawn(function()
    local db <close> = connect("db", 0.005)
    local cache <close> = connect("cache", 0.005)
    local queue <close> = connect("queue", 0.005)
    rem.sleep(10)
  end)
  rem.sleep(0.05)
  task:cancel()
  local ok2, cancel_err = pcall(task.join, task)
  say("task ended: ok=%s, cancelled=%s", tostring(ok2), tostring(rem.is_cancelled(cancel_err)))

  say("5. a failing child cancels its siblings; the group raises every failure as a tree")
  local ok3, group_err = pcall(rem.group, function(g)
    g:spawn(function() local c <close> = connect("sibling", 0.001); rem.sleep(10) end)
    g:spawn(function() rem.sleep(0.02); error(rem.Error("upstream refused", "ECONNREFUSED")) end)
    rem.sleep(10)
  end)
  print(tostring(group_err))
  local stats = require("rem.core").stats()
  say("done: %d tasks alive besides this one, %d timers pending", stats.live - 1, stats.timers)
end
