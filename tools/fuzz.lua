-- Misuse fuzzing: calls every public Lua function and method of rem with random argument
-- types, counts and values, for a bounded time; every call must work or raise a Lua error.
-- A crash (ASan/UBSan report, signal) or a hang fails the run.
--
--   lua5.4 tools/fuzz.lua [seconds] [seed]     (make fuzz SECONDS=N [SEED=S] runs it under
--                                               ASan+UBSan, in a temporary directory)
--
-- What is called: every function reachable from the `rem` table (its sub-tables and classes,
-- callable tables), every function of rem.core, rem's replacements of pcall, xpcall and
-- coroutine.*, and every method and metamethod in the metatables of the objects rem makes:
-- tasks (running, done, failed, cancelled), groups, exit stacks, managers, collections,
-- contextlib helpers, exit pools, errors, TCP and Unix streams and servers, files, processes,
-- signal watchers, open and closed. Objects that calls return join the pool.
--
-- Values: nil, booleans, integers at the edges, NaN, infinities, huge and tiny floats,
-- strings (empty, format letters, NUL, 1 MiB), tables (empty, lists, context managers, ones
-- whose __index raises, cycles), functions (no-ops, raising, suspending, yielding), threads,
-- the pooled objects of every type, io.stdout.
--
-- Rounds of 1,000 calls, each round one rem.run with fresh fixtures, then 200 calls outside
-- any task. Inside rem.run each call runs in a task of its own under rem.timeout (0.05 s), so
-- a call that blocks is cut short. A seed gives the same calls (timing aside). A watchdog task ends the
-- run (status 3) when no call has finished for 10 s, naming the call; FUZZ_TRACE=1 prints
-- every call to stderr before making it (to name the one that crashed). `__gc` is left out:
-- it is the collector's hook, not a method (called by hand on a live object, rem's, like
-- most C libraries', frees what is still in use). Paths are relative:
-- run it in a scratch directory. Handlers for fatal signals are not installed (they would
-- hide a crash): rem.signal gets SIGUSR2 instead of those, and p:kill SIGTERM.
local rem = require "rem"
local core = require "rem.core"

local SECONDS = tonumber(arg[1] or "") or tonumber(os.getenv("FUZZ_SECONDS") or "") or 20
local SEED = tonumber(arg[2] or "") or os.time()
local CALL_TIMEOUT = 0.05
local ROUND_SECONDS = 2   -- what the fixtures' handlers hold out for
local ROUND_CALLS = 1000

math.randomseed(SEED)
local random = math.random
local pack, unpack = table.pack, table.unpack

print(("fuzz: %d s, seed %d"):format(SECONDS, SEED))
io.stdout:flush()

local function fd_count()
  local f = io.open("/proc/self/stat")
  local pid = f:read("l"):match("^(%d+)")
  f:close()
  local listing = os.tmpname()
  os.execute("ls /proc/" .. pid .. "/fd > " .. listing)
  local n = 0
  f = io.open(listing)
  for _ in f:lines() do n = n + 1 end
  f:close()
  os.remove(listing)
  return n
end
local fds_at_start = fd_count()

----------------------------------------------------------------------------------------
-- Values

local HUGE = string.rep("x", 1 << 20)
local safe_fns = {
  function() end,
  function() error("fuzz: raised") end,
  function() error(nil) end,
  function(...) return ... end,
  function() return true end,
  function() rem.sleep(0.001) end,
  function() rem.checkpoint(); return 1, 2, 3 end,
  function() coroutine.yield("raw yield") end,
  function() error(setmetatable({}, { __tostring = function() error("tostring raised") end })) end,
}
local strings = { "", "x", "l", "L", "a", "n", "*l", "*a", "%s%n", "\0", "a\0b", HUGE,
  "127.0.0.1", "localhost", "::1", "0.0.0.0", "SIGUSR1", "USR2", "r", "w+", "a+", "rb",
  "fuzz.txt", "fuzz.sock", "d", ".", "..", "set", "cur", "end", "pipe", "inherit", "ignore",
  "closed", "acquired", "__close", "enter", "exit", "pid", "stdin", "stdout", "stderr" }
local numbers = { 0, 1, -1, 2, 3, 7, 10, 65535, 65536, 2 ^ 31, 2 ^ 53, math.maxinteger,
  math.mininteger, 0.5, -0.0, 1 / 0, -1 / 0, 0 / 0, 1e308, -1e308, 1e-308, 0.001, 0.0001 }

local pool = {}       -- objects rem made: { value, ... }
local pooled = {}     -- value -> true
local function add_obj(v)
  if v ~= nil and not pooled[v] then
    pooled[v] = true
    pool[#pool + 1] = v
  end
end

local cyclic = {}
cyclic.self = cyclic
local function table_value()
  local r = random(12)
  if r == 1 then return {} end
  if r == 2 then return { 1, 2, 3 } end
  if r == 3 then return { "true" } end
  if r == 4 then return { "cat", stdin = "pipe", stdout = "pipe" } end
  if r == 5 then return { "/nonexistent/fuzz" } end
  if r == 6 then return setmetatable({}, { __index = function() error("fuzz: __index raised") end }) end
  if r == 7 then return { enter = safe_fns[random(#safe_fns)], exit = safe_fns[random(#safe_fns)] } end
  if r == 8 then return setmetatable({}, { __close = safe_fns[random(#safe_fns)] }) end
  if r == 9 then return cyclic end
  if r == 10 then return { timeout = numbers[random(#numbers)], max_connections = numbers[random(#numbers)] } end
  if r == 11 then return { errors = { "a", {} }, message = 1 } end
  return { [1.5] = true, [-1] = "x", n = -5 }
end

local function value()
  local r = random(20)
  if r == 1 then return nil end
  if r == 2 then return random(2) == 1 end
  if r <= 5 then return numbers[random(#numbers)] end
  if r == 6 then return random(0, 10) end
  if r <= 9 then return strings[random(#strings)] end
  if r <= 11 then return table_value() end
  if r <= 13 then return safe_fns[random(#safe_fns)] end
  if r == 14 then return coroutine.create(safe_fns[random(#safe_fns)]) end
  if r == 15 then return io.stdout end
  if #pool > 0 then return pool[random(#pool)] end
  return nil
end

----------------------------------------------------------------------------------------
-- Targets: { name, fn, self = a typical receiver (for methods) }

local targets, seen_fn = {}, {}
local function add_target(name, fn, self_kind)
  local key = tostring(fn) .. "|" .. tostring(self_kind)
  if seen_fn[key] then return end
  seen_fn[key] = true
  targets[#targets + 1] = { name = name, fn = fn, self_kind = self_kind }
end

local function callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__call ~= nil
end

-- Every function in `t` (and in its sub-tables, classes and their metatables).
local walked = {}
local function walk(prefix, t, depth)
  if walked[t] or depth > 3 then return end
  walked[t] = true
  for k, v in pairs(t) do
    local name = prefix .. "." .. tostring(k)
    if callable(v) then add_target(name, v) end
    if type(v) == "table" then walk(name, v, depth + 1) end
  end
  local mt = getmetatable(t)
  if type(mt) == "table" then walk(prefix .. "<mt>", mt, depth + 1) end
end
walk("rem", rem, 0)
walk("core", core, 0)
add_target("pcall", pcall)
add_target("xpcall", xpcall)
for _, k in ipairs { "resume", "wrap", "create", "yield", "status", "close", "running" } do
  add_target("coroutine." .. k, coroutine[k])
end

-- The methods and metamethods of an object's metatable (and its __index chain).
local kinds = {}      -- kind name -> { objects }
local PROBE = { "wait", "kill", "close", "read", "write", "lines", "seek", "flush", "shutdown",
  "reset", "address", "join", "cancel", "done", "spawn", "enter", "exit", "wrap" }
local function kind_of(v)
  local mt = getmetatable(v)
  if type(mt) ~= "table" then return type(v) end
  -- A subclass made by extend() finds its base's name through its own metatable.
  local ok, name = pcall(function() return mt.__name end)
  if ok and type(name) == "string" then return name end
  return "table with a metatable"
end
local function add_methods(v)
  local kind = kind_of(v)
  -- Only rem's objects: io.stdout (a value in the pool) keeps Lua's own methods to itself.
  if kind:sub(1, 4) ~= "rem." and kind ~= "table with a metatable" then return end
  kinds[kind] = kinds[kind] or {}
  table.insert(kinds[kind], v)
  local mt = getmetatable(v)
  local seen = {}
  local depth = 0
  while type(mt) == "table" and not seen[mt] and depth < 5 do
    seen[mt] = true
    depth = depth + 1
    for k, f in pairs(mt) do
      if type(f) == "function" and k ~= "__gc" then
        add_target(kind .. ":" .. tostring(k), f, kind)
      end
    end
    local idx = rawget(mt, "__index")
    if type(idx) == "function" then  -- methods behind a function: look up the usual names
      for _, k in ipairs(PROBE) do
        local ok, f = pcall(function() return v[k] end)
        if ok and type(f) == "function" then add_target(kind .. ":" .. k, f, kind) end
      end
    end
    if type(idx) == "table" then
      for k, f in pairs(idx) do
        if type(f) == "function" then add_target(kind .. ":" .. tostring(k), f, kind) end
      end
      mt = getmetatable(idx)
      if type(mt) == "table" and type(rawget(mt, "__index")) == "table" then
        mt = { __index = rawget(mt, "__index") }
      end
    else
      mt = nil
    end
  end
end

----------------------------------------------------------------------------------------
-- Fixtures: one of each object, open and closed, made inside a task.

local hold = {}   -- things the round ends (servers' owner tasks, handlers)
local function fixtures()
  local objs = {}
  local function keep(v) objs[#objs + 1] = v; return v end
  -- tasks
  local done = rem.spawn(function() return 1 end); done:join(); keep(done)
  local failed = rem.spawn(error, "fuzz: task failed"); pcall(failed.join, failed); keep(failed)
  local cancelled = rem.spawn(rem.sleep, 10); rem.checkpoint(); cancelled:cancel()
  pcall(cancelled.join, cancelled); keep(cancelled)
  keep(rem.spawn(rem.sleep, 0.05))
  -- groups: the open one belongs to a task of its own (g:cancel() cancels its owner's body,
  -- which must not be the fuzzer's main task)
  local group_owner = rem.spawn(function()
    local g <close> = keep(rem.group())
    hold.group = g
    rem.sleep(ROUND_SECONDS * 4)
  end)
  hold[#hold + 1] = group_owner
  while not hold.group and not group_owner:done() do rem.checkpoint() end
  local g2 = rem.group(); g2:close(); keep(g2)
  -- exit stacks and cms
  keep(rem.ExitStack())
  local s2 = rem.ExitStack(); s2:close(); keep(s2)
  local M = rem.Manager:extend()
  keep(M.new()); keep(rem.Manager.new())
  local acquired = M.new(); acquired:acquire(); keep(acquired); hold[#hold + 1] = acquired
  keep(rem.Collection.new { M.new(), M.new() })
  keep(rem.contextmanager(function() coroutine.yield(1) end)())
  keep(rem.closing(setmetatable({}, { __index = { close = function() end } })))
  keep(rem.nullcontext(1))
  if rem.gather then keep(rem.gather(rem.nullcontext(1), M.new())) end
  keep(rem.Error("fuzz", "EFUZZ")); keep(rem.ErrorGroup { rem.Error("a"), "b" })
  -- TCP: a server whose handler holds its stream, a client, a closed client
  local server_owner = rem.spawn(function()
    local srv <close> = rem.tcp.listen("127.0.0.1", 0, function(s)
      keep(s)
      rem.sleep(ROUND_SECONDS * 2)
    end)
    keep(srv)
    hold.port = select(2, srv:address())
    rem.sleep(ROUND_SECONDS * 4)
  end)
  hold[#hold + 1] = server_owner
  while not hold.port and not server_owner:done() do rem.checkpoint() end
  if hold.port then
    keep(rem.tcp.connect("127.0.0.1", hold.port))
    local c = rem.tcp.connect("127.0.0.1", hold.port); c:close(); keep(c)
  end
  -- Unix sockets
  os.remove("fuzz-fixture.sock")
  local unix_owner = rem.spawn(function()
    local srv <close> = rem.unix.listen("fuzz-fixture.sock", function(s) keep(s); rem.sleep(ROUND_SECONDS * 2) end)
    keep(srv)
    hold.unix = true
    rem.sleep(ROUND_SECONDS * 4)
  end)
  hold[#hold + 1] = unix_owner
  while not hold.unix and not unix_owner:done() do rem.checkpoint() end
  if hold.unix then keep(rem.unix.connect("fuzz-fixture.sock")) end
  -- files
  keep(rem.fs.open("fuzz-fixture.txt", "w+"))
  local f2 = rem.fs.open("fuzz-fixture.txt", "r"); f2:close(); keep(f2)
  -- processes
  keep(rem.process.spawn { "cat", stdin = "pipe", stdout = "pipe" })
  local p2 = rem.process.spawn { "true" }; p2:wait(); keep(p2)
  -- signal watchers
  keep(rem.signal("SIGUSR2", function() end))
  local w2 = rem.signal("SIGUSR2", function() end); w2:close(); keep(w2)
  rem.checkpoint()
  return objs
end

----------------------------------------------------------------------------------------
-- Calls

local FATAL = { SIGSEGV = 1, SEGV = 1, SIGBUS = 1, BUS = 1, SIGFPE = 1, FPE = 1, SIGILL = 1,
  ILL = 1, SIGABRT = 1, ABRT = 1, SIGTRAP = 1, TRAP = 1, SIGSYS = 1, SYS = 1, SIGINT = 1,
  INT = 1, SIGTERM = 1, TERM = 1, SIGQUIT = 1, QUIT = 1 }
local FATAL_NUM = { [2] = 1, [3] = 1, [4] = 1, [5] = 1, [6] = 1, [7] = 1, [8] = 1, [11] = 1,
  [15] = 1, [31] = 1 }

local function args_for(target)
  local n = random(0, 5)
  local a = { n = n }
  for i = 1, n do a[i] = value() end
  if target.self_kind and random(10) <= 7 then
    local objs = kinds[target.self_kind]
    if objs and #objs > 0 then
      a[1] = objs[random(#objs)]
      if a.n < 1 then a.n = 1 end
    end
  end
  -- No handler for a fatal signal in the fuzzer; none sent to a child either (its ASan, which
  -- it inherits with LD_PRELOAD, would report the signal as if rem had crashed).
  local sig_at = (target.fn == rem.signal or target.fn == core.signal) and 1
    or (target.name:match(":kill$") and 2)
  if sig_at then
    local s = a[sig_at]
    if FATAL[s] or (type(s) == "number" and (s ~= s or FATAL_NUM[math.floor(s)] or
        (s >= 0 and s < 65 and math.floor(s) ~= s))) then
      a[sig_at] = sig_at == 1 and "SIGUSR2" or "SIGTERM"
    end
  end
  return a
end

local stats = { calls = 0, errors = 0, returned = 0, outside = 0, by_target = {} }
local last = "none yet"
local last_progress = os.time()

local function describe_args(a)
  local parts = {}
  for i = 1, a.n do
    local v = a[i]
    local s
    if type(v) == "string" then
      s = #v > 40 and ("<string of " .. #v .. ">") or ("%q"):format(v)
    else
      local ok, str = pcall(tostring, v)  -- a __tostring may raise
      s = ok and type(str) == "string" and str or ("<" .. type(v) .. ">")
    end
    parts[i] = s
  end
  return table.concat(parts, ", ")
end

local function pool_results(res)
  for i = 1, res.n do
    local v = res[i]
    local t = type(v)
    if t == "userdata" or (t == "table" and getmetatable(v) ~= nil) then
      if not pooled[v] then add_obj(v); add_methods(v) end
    end
  end
end

local function note(target, ok)
  stats.calls = stats.calls + 1
  if ok then stats.returned = stats.returned + 1 else stats.errors = stats.errors + 1 end
  stats.by_target[target.name] = (stats.by_target[target.name] or 0) + 1
  last_progress = os.time()
end

-- One call inside the loop, in a task of its own, bounded by rem.timeout.
local TRACE = os.getenv("FUZZ_TRACE") == "1"
local current_co, current_task, main_co  -- for the watchdog's report
local calls_of = setmetatable({}, { __mode = "k" })  -- call task -> the call it makes

local function call_in_task(target)
  local a = args_for(target)
  last = target.name .. "(" .. describe_args(a) .. ")"
  if TRACE then io.stderr:write(last, "\n"); io.stderr:flush() end
  local t = rem.spawn(function()
    current_co = coroutine.running()
    return pack(pcall(rem.timeout, CALL_TIMEOUT, target.fn, unpack(a, 1, a.n)))
  end)
  current_task = t
  calls_of[t] = last
  local live = core.stats().live
  local jok, res = pcall(t.join, t)
  if TRACE and core.stats().live > live - 1 then
    io.stderr:write(("  [%d task(s) more after it]\n"):format(core.stats().live - live + 1))
  end
  if jok and type(res) == "table" then
    note(target, res[1])
    if res[1] then pool_results({ n = res.n - 1, unpack(res, 2, res.n) }) end
  else
    note(target, false)
  end
end

-- One call outside any task (rem.run only with a function that cannot block).
local function call_outside(target)
  local a = args_for(target)
  if (target.fn == rem.run or target.fn == core.run) and callable(a[1]) then
    a[1] = safe_fns[random(#safe_fns)]
  end
  last = "(outside a task) " .. target.name .. "(" .. describe_args(a) .. ")"
  if TRACE then io.stderr:write(last, "\n"); io.stderr:flush() end
  local res = pack(pcall(target.fn, unpack(a, 1, a.n)))
  stats.outside = stats.outside + 1
  note(target, res[1])
end

-- What the round leaves: cancel tasks, cancel and close groups, close what can be closed.
local function end_round(objs)
  for _, v in ipairs(pool) do
    local k = kind_of(v)
    if k == "rem.task" then pcall(v.cancel, v) end
    if k == "rem.group" then pcall(v.cancel, v) end
  end
  for _, v in ipairs(hold) do
    if kind_of(v) == "rem.task" then pcall(v.cancel, v) end
    if kind_of(v) == "rem.group" then pcall(v.cancel, v) end
  end
  -- Exit what was entered (pools hold tasks until then), close what can be closed.
  local function close_all(list)
    for _, v in ipairs(list) do
      for _, m in ipairs { "exit", "close" } do
        local ok, f = pcall(function() return v[m] end)
        if ok and type(f) == "function" then pcall(rem.timeout, 1, f, v) end
      end
    end
  end
  close_all(objs)
  close_all(pool)
  for _, v in ipairs(hold) do
    if kind_of(v) == "rem.task" then pcall(rem.timeout, 3, v.join, v) end
  end
  for _, v in ipairs(pool) do
    if kind_of(v) == "rem.task" then pcall(rem.timeout, 3, v.join, v) end
  end
end

local deadline = os.time() + SECONDS
local rounds = 0
while os.time() < deadline do
  rounds = rounds + 1
  pool, pooled, kinds, hold = {}, {}, {}, {}
  local ok, err = pcall(rem.run, function()
    main_co = coroutine.running()
    local objs = fixtures()
    for _, v in ipairs(objs) do add_obj(v); add_methods(v) end
    local stop = false
    local watchdog = rem.spawn(function()
      while not stop do
        rem.shield(rem.sleep, 0.5)
        if os.time() - last_progress > 10 then
          print("fuzz: HANG: no call finished for 10 s; the last one: " .. last)
          if current_co then
            print(("the call's coroutine is %s, its task %s; rem: %d live, ready %s")
              :format(coroutine.status(current_co), tostring(current_task), core.stats().live,
                tostring(core.stats().ready)))
            print(debug.traceback(current_co, "where it waits:"))
            print(debug.traceback(main_co, "where the fuzzer's main task waits:"))
          end
          io.stdout:flush()
          os.exit(3)
        end
      end
    end)
    -- A round is a number of calls, not a time, so that a seed replays the same calls.
    for _ = 1, ROUND_CALLS do
      local cok, cerr = pcall(call_in_task, targets[random(#targets)])
      if not cok then  -- the fuzzer's own fault: say so
        print("fuzz: the fuzzer's main task got an error: " .. tostring(cerr):sub(1, 300))
      end
      if core.cancelled() then  -- a call reached the fuzzer's own task: end the round
        print("fuzz: the fuzzer's main task was cancelled by " .. last)
        break
      end
    end
    last = "ending the round"
    last_progress = os.time()
    end_round(objs)
    stop = true
    watchdog:cancel()
  end)
  if not ok then
    print("fuzz: a round ended with an error (not a failure): " .. tostring(err):sub(1, 300))
    for t, desc in pairs(calls_of) do
      if not t:done() then print("  a call that has not ended: " .. desc) end
    end
    if type(err) == "table" and type(err.tasks) == "table" then
      for _, tb in ipairs(err.tasks) do print("  stuck: " .. tb:gsub("\n", "\n    ")) end
    end
  end
  -- Outside any task.
  for _ = 1, 200 do call_outside(targets[random(#targets)]) end
  collectgarbage()
end

-- Whatever is left must be collectable and the loop must end clean.
pool, pooled, kinds, hold = {}, {}, {}, {}
collectgarbage()
collectgarbage()
rem.run(function() rem.sleep(0.01) end)
local s = core.stats()
local untouched = 0
local names = {}
for _, t in ipairs(targets) do
  if not stats.by_target[t.name] then untouched = untouched + 1; names[#names + 1] = t.name end
end
print(("fuzz: %d calls (%d in tasks, %d outside any task; %d returned, %d raised) to %d "
  .. "functions and methods, %d rounds, seed %d; left on the loop: %d task(s), %d handle(s); "
  .. "fds %d at the start, %d at the end")
  :format(stats.calls, stats.calls - stats.outside, stats.outside, stats.returned, stats.errors,
    #targets, rounds, SEED, s.live, s.active_handles, fds_at_start, fd_count()))
if os.getenv("FUZZ_LIST") == "1" then
  local list = {}
  for _, t in ipairs(targets) do list[#list + 1] = t.name .. "=" .. (stats.by_target[t.name] or 0) end
  table.sort(list)
  print("fuzz: targets: " .. table.concat(list, " "))
end
if untouched > 0 then
  print(("fuzz: %d never called: %s"):format(untouched, table.concat(names, ", ")))
end
os.exit((s.live == 0 and s.active_handles == 0) and 0 or 1)
