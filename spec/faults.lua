--- Fault injection: a seeded generator of random scenarios, and the checks run after each.
--
-- A scenario is a random tree, planned from its seed before it runs: nested rem.with,
-- rem.enter, exit stacks (closed, in the function form, moved with pop_all), task groups
-- (both forms, sometimes cancelled by their body), rem.timeout (sometimes caught), spawned
-- tasks cancelled after a pause, and rem.gather when this build has it. Their members are
-- managers, nested managers, collections, generator context managers, closables and real TCP
-- connections (managers that connect and exchange a line, plain streams, rem.closing(stream))
-- to an echo server the runner starts on 127.0.0.1, port 0, in every rem.run. Every enter,
-- body and exit is a step that succeeds, fails (an "injected" error), sleeps 0-2 ms, or
-- cancels its own task; some exits suppress the error they see.
--
-- After each scenario (faults.check): every acquisition released exactly once and nothing
-- released that was not acquired (per object), every manager idle, every stream closed, every
-- server handler ended, every injected error reachable from the error that propagated
-- (through ErrorGroup.errors and `context`) unless an exit suppressed it on purpose, no task
-- left (core.stats().live == 0), no timer, no handle on the loop beyond the baseline, and the
-- fd count back at its baseline.
--
-- Used by spec/fault_injection_spec.lua and tools/stress.lua. Needs no test framework.
local rem = require "rem"
local core = require "rem.core"

local M = {}

local pack, unpack = table.pack, table.unpack
local HOST = "127.0.0.1"

-- xorshift32: the same numbers on every platform, whatever math.random is.
local function xorshift(seed)
  local s = seed & 0xffffffff
  if s == 0 then s = 0x9e3779b9 end
  return function(n)
    s = s ~ ((s << 13) & 0xffffffff)
    s = s ~ (s >> 17)
    s = s ~ ((s << 5) & 0xffffffff)
    return s % n
  end
end
M.xorshift = xorshift

----------------------------------------------------------------------------------------
-- Plans: the shape of a scenario, drawn from its seed before anything runs, so that a seed
-- always means the same scenario (only the interleaving of sleeps and I/O may vary).

local function plan_step(P)
  local x = P.rng(20)
  return { ms = P.rng(3), act = x < 4 and "fail" or (x == 4 and "cancel" or "ok") }
end

local function name(P, what)
  P.n = P.n + 1
  return what .. P.n
end

local plan_body, plan_cm

local function plan_mgr(P, depth)
  P.budget = P.budget - 1
  local r = P.rng(10)
  if depth < 3 and r < 2 and P.budget > 0 then
    local kids = {}
    for i = 1, P.rng(4) do kids[i] = plan_mgr(P, depth + 1) end
    return { c = "coll", name = name(P, "coll"), list = plan_step(P), kids = kids }
  elseif depth < 3 and r < 3 then
    return { c = "nest", name = name(P, "nest"), acq = plan_step(P), rel = plan_step(P),
             before = P.rng(2) == 0, inner = plan_mgr(P, depth + 1) }
  elseif r < 6 then
    return { c = "sock", name = name(P, "sock"), acq = plan_step(P), rel = plan_step(P),
             reset = P.rng(3) == 0, talk = P.rng(2) == 0 }
  end
  return { c = "leaf", name = name(P, "leaf"), acq = plan_step(P), rel = plan_step(P) }
end

function plan_cm(P, depth)
  local r = P.rng(P.gather and 14 or 12)
  if r < 4 then return plan_mgr(P, depth) end
  P.budget = P.budget - 1
  if r < 6 then
    return { c = "gen", name = name(P, "gen"), enter = plan_step(P), exit = plan_step(P),
             suppress = P.rng(6) == 0 }
  elseif r < 8 then
    return { c = "closable", name = name(P, "closable"), make = plan_step(P),
             close = plan_step(P) }
  elseif r < 10 then
    return { c = "stream", name = name(P, "stream"), make = plan_step(P) }
  elseif r < 12 or depth >= 3 then
    return { c = "closing", name = name(P, "closing") }
  end
  local kids = {}
  for i = 1, P.rng(4) do kids[i] = plan_cm(P, depth + 1) end
  return { c = "gather", name = name(P, "gather"), kids = kids }
end

local function plan_stmt(P, depth)
  if depth >= 4 or P.budget <= 0 then
    if P.rng(3) == 0 then return { k = "talk", pick = P.rng(8) } end
    return { k = "step", step = plan_step(P) }
  end
  local r = P.rng(18)
  P.budget = P.budget - 1
  if r < 3 then
    local cms = {}
    for i = 1, 1 + P.rng(3) do cms[i] = plan_cm(P, 0) end
    return { k = "with", cms = cms, body = plan_body(P, depth + 1) }
  elseif r < 5 then
    return { k = "enter", cm = plan_cm(P, 0), body = plan_body(P, depth + 1) }
  elseif r < 8 then
    local entries = {}
    for i = 1, 1 + P.rng(4) do
      local e = P.rng(4)
      if e < 2 then
        entries[i] = { e = "cm", cm = plan_cm(P, 0) }
      elseif e < 3 then
        entries[i] = { e = "callback", step = plan_step(P), name = name(P, "callback") }
      else
        entries[i] = { e = "push", step = plan_step(P), name = name(P, "push"),
                       suppress = P.rng(5) == 0 }
      end
    end
    return { k = "stack", form = P.rng(3), entries = entries, body = plan_body(P, depth + 1) }
  elseif r < 11 then
    local kids = {}
    for i = 1, P.rng(4) do kids[i] = plan_body(P, depth + 1) end
    return { k = "group", form = P.rng(2), kids = kids, cancel = P.rng(6) == 0,
             body = plan_body(P, depth + 1) }
  elseif r < 13 then
    return { k = "timeout", ms = P.rng(6), catch = P.rng(2) == 0, body = plan_body(P, depth + 1) }
  elseif r < 14 then
    return { k = "spawn", ms = P.rng(4), body = plan_body(P, depth + 1) }
  elseif r < 15 then
    return { k = "talk", pick = P.rng(8) }
  end
  return { k = "step", step = plan_step(P) }
end

function plan_body(P, depth)
  local stmts = {}
  for i = 1, 1 + P.rng(2) do stmts[i] = plan_stmt(P, depth) end
  return stmts
end

--- The plan of scenario `seed`: { mode, limit, body }. mode 0-1: the body runs in the main
-- task; 2-4: under rem.timeout(limit ms); 5: in a task cancelled after limit ms.
function M.plan(seed, opts)
  local P = { rng = xorshift(seed), n = 0, budget = 5 + xorshift(seed * 7 + 1)(12),
              gather = (opts and opts.gather) }
  if P.gather == nil then P.gather = rem.gather ~= nil end
  return { mode = P.rng(6), limit = P.rng(7), body = plan_body(P, 0), gather = P.gather }
end

----------------------------------------------------------------------------------------
-- The world of one run: what was opened and closed, which errors were injected, what went
-- wrong (`bad`).

local Injected = { __name = "injected" }
Injected.__tostring = function(e) return "injected " .. e.what .. " #" .. e.id end

local function world(seed)
  local w = { seed = seed, injected = {}, suppressed = {}, bad = {}, counted = {}, managers = {},
              streams = {}, handlers = 0, handlers_done = 0, other = {} }
  function w.inject(what)
    local e = setmetatable({ what = what, id = #w.injected + 1 }, Injected)
    w.injected[#w.injected + 1] = e
    return e
  end
  function w.wrong(msg) w.bad[#w.bad + 1] = msg end
  -- A thing that is opened (acquired) and must be closed (released) exactly once per opening.
  function w.counter(nm)
    local c = { name = nm, opened = 0, closed = 0, held = false }
    w.counted[#w.counted + 1] = c
    return c
  end
  return w
end

local function open(w, c)
  if c.held then w.wrong(c.name .. ": opened again before it was closed") end
  c.held = true
  c.opened = c.opened + 1
end

local function close(w, c)
  if not c.held then w.wrong(c.name .. ": closed though not open") end
  c.held = false
  c.closed = c.closed + 1
end

local function pause(ms)
  if ms > 0 then rem.sleep(ms / 1000) end
end

local function do_step(w, st, what)
  pause(st.ms)
  if st.act == "fail" then
    error(w.inject(what), 0)
  elseif st.act == "cancel" then
    rem.current():cancel()
    rem.checkpoint()  -- raises here, unless shielded (cleanup): then at a later suspension
  end
end

-- Every error reachable from `err` through groups and contexts, added to `seen`.
local function reachable(err, seen)
  seen = seen or {}
  if type(err) ~= "table" or seen[err] then return seen end
  seen[err] = true
  reachable(rawget(err, "context"), seen)
  local list = rawget(err, "errors")
  if type(list) == "table" then
    for _, e in ipairs(list) do reachable(e, seen) end
  end
  return seen
end
M.reachable = reachable

local function carries_injected(err)
  for e in pairs(reachable(err)) do
    if getmetatable(e) == Injected then return true end
  end
  return false
end

local function suppress(w, err)
  w.suppressed[#w.suppressed + 1] = err
end

----------------------------------------------------------------------------------------
-- Sockets

local function connect(w)
  local s = rem.tcp.connect(HOST, w.port)
  w.streams[#w.streams + 1] = s
  return s
end

local function talk(s, tag)
  s:write(tag, "\n")
  local line = s:read("l")
  if line ~= tag then
    error(rem.Error("echo: sent " .. tag .. ", got " .. tostring(line)), 0)
  end
end

local function is_stream(v)
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__name == "rem.stream"
end

local function closer(s, reset)
  return setmetatable({}, { __close = function()
    if reset then s:reset() else s:close() end
  end })
end

-- The echo server's handler: echoes lines until the end, a reset or its cancellation.
local function echo(w, s)
  w.handlers = w.handlers + 1
  local _ <close> = setmetatable({}, { __close = function()
    w.handlers_done = w.handlers_done + 1
  end })
  while true do
    local ok, line = pcall(s.read, s, "L")
    if not ok or line == nil then return end
    if not pcall(s.write, s, line) then return end
  end
end

----------------------------------------------------------------------------------------
-- Members

local Leaf = rem.Manager:extend()
function Leaf:init(w, p)
  self.w, self.p, self.c = w, p, w.counter(p.name)
  w.managers[#w.managers + 1] = self
end
function Leaf:acquire_resources()
  open(self.w, self.c)
  do_step(self.w, self.p.acq, self.p.name .. " acquire")
end
local function leaf_release(self, err, on_error)
  close(self.w, self.c)
  if on_error and err == nil then self.w.wrong(self.p.name .. ": on_error(nil)") end
  do_step(self.w, self.p.rel, self.p.name .. " release")
end
function Leaf:release_resources() leaf_release(self) end
function Leaf:release_resources_on_error(err) leaf_release(self, err, true) end

local make_cm, make_mgr

-- A manager holding another one, acquired inline from its own acquire_resources.
local Nest = rem.Manager:extend()
function Nest:init(w, p)
  Leaf.init(self, w, p)
  self.inner = make_mgr(w, p.inner)
end
function Nest:acquire_resources()
  open(self.w, self.c)
  local p = self.p
  if p.before then do_step(self.w, p.acq, p.name .. " acquire") end
  self.inner:acquire()
  if not p.before then do_step(self.w, p.acq, p.name .. " acquire") end
end
local function nest_release(self, err, on_error)
  close(self.w, self.c)
  if on_error and err == nil then self.w.wrong(self.p.name .. ": on_error(nil)") end
  local ok, e = true, nil
  if core.manager_state(self.inner) == "acquired" then
    if on_error then
      ok, e = pcall(self.inner.release_on_error, self.inner, err)
    else
      ok, e = pcall(self.inner.release, self.inner)
    end
  end
  local sok, serr = pcall(do_step, self.w, self.p.rel, self.p.name .. " release")
  if not sok then error(ok and serr or rem.chain(serr, e), 0) end
  if not ok then error(e, 0) end
end
function Nest:release_resources() nest_release(self) end
function Nest:release_resources_on_error(err) nest_release(self, err, true) end

-- A manager over a TCP connection: connects and exchanges a line to acquire; on release,
-- maybe exchanges again, then closes or resets the connection (in a __close, so that a
-- failing step cannot skip it).
local Sock = rem.Manager:extend()
function Sock:init(w, p) Leaf.init(self, w, p) end
function Sock:acquire_resources()
  open(self.w, self.c)
  self.s = connect(self.w)
  talk(self.s, self.p.name)
  do_step(self.w, self.p.acq, self.p.name .. " acquire")
end
local function sock_release(self, err, on_error)
  close(self.w, self.c)
  if on_error and err == nil then self.w.wrong(self.p.name .. ": on_error(nil)") end
  local s = self.s
  self.s = nil
  if s then
    local _ <close> = closer(s, self.p.reset)
    if self.p.talk and not on_error then talk(s, self.p.name .. "-bye") end
    do_step(self.w, self.p.rel, self.p.name .. " release")
  end
end
function Sock:release_resources() sock_release(self) end
function Sock:release_resources_on_error(err) sock_release(self, err, true) end

local Coll = rem.Collection:extend()
function Coll:init(w, p)
  self.w, self.p = w, p
  self.kids = {}
  for i, k in ipairs(p.kids) do self.kids[i] = make_mgr(w, k) end
  w.managers[#w.managers + 1] = self
end
function Coll:resource_managers()
  do_step(self.w, self.p.list, self.p.name .. " list")
  return self.kids
end

function make_mgr(w, p)
  if p.c == "coll" then return Coll.new(w, p) end
  if p.c == "nest" then return Nest.new(w, p) end
  if p.c == "sock" then return Sock.new(w, p) end
  return Leaf.new(w, p)
end

-- A generator context manager: a step before its yield (enter) and after it (exit, on both
-- paths); it may suppress the body's error.
local function gen_cm(w, p)
  return rem.contextmanager(function()
    do_step(w, p.enter, p.name .. " enter")
    local c = w.counter(p.name)
    open(w, c)
    local ok, err = pcall(coroutine.yield, p.name)
    close(w, c)
    do_step(w, p.exit, p.name .. " exit")
    if not ok then
      if p.suppress then return suppress(w, err) end
      error(err, 0)
    end
  end)()
end

function make_cm(w, p)
  local c = p.c
  if c == "gen" then return gen_cm(w, p) end
  if c == "closable" then  -- an async constructor returning a closable
    return function()
      do_step(w, p.make, p.name .. " make")
      local cnt = w.counter(p.name)
      open(w, cnt)
      return setmetatable({ name = p.name }, { __close = function()
        close(w, cnt)
        do_step(w, p.close, p.name .. " close")
      end })
    end
  end
  if c == "stream" then  -- an async constructor returning a stream (closed on exit)
    return function()
      do_step(w, p.make, p.name .. " make")
      return connect(w)
    end
  end
  if c == "closing" then  -- an async constructor returning rem.closing(stream)
    return function() return rem.closing(connect(w)) end
  end
  if c == "gather" then
    local kids = {}
    for i, k in ipairs(p.kids) do kids[i] = make_cm(w, k) end
    return rem.gather(unpack(kids, 1, #kids))
  end
  return make_mgr(w, p)
end

----------------------------------------------------------------------------------------
-- Running a plan

local run_body

-- What a body can talk through: the streams its own task entered.
local function add_values(env, ...)
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if is_stream(v) or (type(v) == "table" and getmetatable(v) == Sock) then
      env[#env + 1] = v
    end
  end
  return ...
end

local function copy(t)
  local c = {}
  for i, v in ipairs(t) do c[i] = v end
  return c
end

local function fill_stack(w, s, entries, env)
  for _, e in ipairs(entries) do
    if e.e == "cm" then
      add_values(env, s:enter_context(make_cm(w, e.cm)))
    elseif e.e == "callback" then
      local c = w.counter(e.name)
      open(w, c)
      local token = {}
      s:callback(function(a, b, n)
        if a ~= token or b ~= "x" or n ~= nil then w.wrong(e.name .. ": wrong arguments") end
        close(w, c)
        do_step(w, e.step, e.name)
      end, token, "x")
    else
      local c = w.counter(e.name)
      open(w, c)
      s:push(function(err)
        close(w, c)
        do_step(w, e.step, e.name)
        if e.suppress and err ~= nil then
          suppress(w, err)
          return true
        end
      end)
    end
  end
end

local function run_stmt(w, st, env)
  local k = st.k
  if k == "step" then
    do_step(w, st.step, "body")
  elseif k == "talk" then
    if #env == 0 then return end
    local v = env[st.pick % #env + 1]
    local s = is_stream(v) and v or v.s
    if s then talk(s, "talk") end
  elseif k == "with" then
    local args = {}
    for i, p in ipairs(st.cms) do args[i] = make_cm(w, p) end
    args[#args + 1] = function(...)
      local env2 = copy(env)
      add_values(env2, ...)
      run_body(w, st.body, env2)
    end
    rem.with(unpack(args, 1, #args))
  elseif k == "enter" then
    local env2 = copy(env)
    local _ <close> = add_values(env2, rem.enter(make_cm(w, st.cm)))
    run_body(w, st.body, env2)
  elseif k == "stack" then
    local env2 = copy(env)
    if st.form == 0 then
      local s <close> = rem.ExitStack()
      fill_stack(w, s, st.entries, env2)
      run_body(w, st.body, env2)
    elseif st.form == 1 then
      rem.with(rem.ExitStack(), function(s)
        fill_stack(w, s, st.entries, env2)
        run_body(w, st.body, env2)
      end)
    else
      local s <close> = rem.ExitStack()
      fill_stack(w, s, st.entries, env2)
      local moved <close> = s:pop_all()
      run_body(w, st.body, env2)
    end
  elseif k == "group" then
    local function fill(g)
      for _, kid in ipairs(st.kids) do g:spawn(run_body, w, kid, {}) end
      run_body(w, st.body, env)
      if st.cancel then g:cancel() end
    end
    if st.form == 0 then
      rem.group(fill)
    else
      local g <close> = rem.group()
      fill(g)
    end
  elseif k == "timeout" then
    local ok, err = pcall(rem.timeout, st.ms / 1000, run_body, w, st.body, env)
    if not ok then
      -- A caught timeout may be dropped, never an error carrying an injected one.
      if not (st.catch and rem.is_timeout(err) and not carries_injected(err)) then
        error(err, 0)
      end
    end
  elseif k == "spawn" then
    local t = rem.spawn(run_body, w, st.body, {})
    local pok, perr = pcall(pause, st.ms)
    t:cancel()
    local ok, err = rem.shield(pcall, t.join, t)
    if not ok and not (rem.is_cancelled(err) and not carries_injected(err)) then
      error(err, 0)
    end
    if not pok then error(perr, 0) end
  else
    error("unknown statement " .. tostring(k))
  end
end

function run_body(w, body, env)
  for _, st in ipairs(body) do run_stmt(w, st, env) end
end

-- The main task of one scenario: the echo server in a task of its own, then the plan.
local function main(w, plan)
  local server = rem.spawn(function()
    local srv <close> = rem.tcp.listen(HOST, 0, function(s) echo(w, s) end)
    w.port = select(2, srv:address())
    rem.sleep(3600)
  end)
  while not w.port and not server:done() do rem.checkpoint() end
  local ok, err = pcall(function()
    if not w.port then server:join() end
    if plan.mode <= 1 then
      run_body(w, plan.body, {})
    elseif plan.mode <= 4 then
      rem.timeout(plan.limit / 1000, run_body, w, plan.body, {})
    else
      local t = rem.spawn(run_body, w, plan.body, {})
      pause(plan.limit)
      t:cancel()
      t:join()
    end
  end)
  server:cancel()
  local sok, serr = rem.shield(pcall, server.join, server)
  if sok or not rem.is_cancelled(serr) then
    w.wrong("the echo server ended with " .. tostring(serr))
  end
  if not ok then error(err, 0) end
end

----------------------------------------------------------------------------------------
-- Checks

local function fd_count()
  local f = io.open("/proc/self/stat")
  local pid = f:read("l"):match("^(%d+)")
  f:close()
  local listing = os.tmpname()
  os.execute("ls /proc/" .. pid .. "/fd > " .. listing)
  f = io.open(listing)
  local n = 0
  for _ in f:lines() do n = n + 1 end
  f:close()
  os.remove(listing)
  return n
end

--- The baseline: the fd and handle counts once libuv has made what it keeps per loop or per
-- process (its thread pool, the reserve descriptor made with the first stream).
function M.baseline()
  rem.run(function()
    local srv <close> = rem.tcp.listen(HOST, 0, function(s) s:read("a") end)
    local c <close> = rem.tcp.connect(HOST, select(2, srv:address()))
  end)
  collectgarbage()
  return { fds = fd_count(), handles = core.stats().handles }
end

--- Runs scenario `seed` and checks it: returns ok (every invariant held), a message (what
-- broke, with the seed), and a summary { outcome = "clean" | "error", injected = n, ... }.
function M.scenario(seed, base, opts)
  opts = opts or {}
  local plan = M.plan(seed, opts)
  local w = world(seed)
  local t0 = os.clock()
  local res = pack(pcall(rem.run, main, w, plan))
  local ok, err = res[1], res[2]
  local problems = {}
  local function fail(msg) problems[#problems + 1] = msg end

  local s = core.stats()
  if s.live ~= 0 then fail(s.live .. " task(s) left") end
  if s.timers ~= 0 then fail(s.timers .. " timer(s) left") end
  if s.active_handles ~= 0 then fail(s.active_handles .. " active handle(s) left") end
  if s.ready then fail("a task left ready") end
  if base and s.handles ~= base.handles then
    fail(("%d handle(s) on the loop, baseline %d"):format(s.handles, base.handles))
  end
  if base and not opts.skip_fds then
    local n = fd_count()
    if n ~= base.fds then fail(("%d fds open, baseline %d"):format(n, base.fds)) end
  end
  for _, msg in ipairs(w.bad) do fail(msg) end
  for _, c in ipairs(w.counted) do
    if c.opened ~= c.closed then
      fail(("%s: opened %d time(s), closed %d time(s)"):format(c.name, c.opened, c.closed))
    end
  end
  for _, m in ipairs(w.managers) do
    local state = core.manager_state(m)
    if state ~= "idle" then fail(m.p.name .. " ended " .. state) end
  end
  for i, st in ipairs(w.streams) do
    if not tostring(st):find("(closed)", 1, true) then fail("stream #" .. i .. " left open") end
  end
  if w.handlers ~= w.handlers_done then
    fail(("%d server handler(s) started, %d ended"):format(w.handlers, w.handlers_done))
  end
  local seen = ok and {} or reachable(err)
  for _, e in ipairs(w.suppressed) do reachable(e, seen) end
  for _, e in ipairs(w.injected) do
    if not seen[e] then
      fail(tostring(e) .. " is lost: not reachable from the error raised ("
        .. (ok and "none" or tostring(err):gsub("\n", "\n    ")) .. ")")
    end
  end

  -- Errors neither injected nor a cancellation or timeout (a refused connection, an echo
  -- that went wrong): not a failure by themselves, but worth a look when they show up.
  local others = {}
  for e in pairs(seen) do
    if getmetatable(e) ~= Injected and not rem.is_error_group(e) and not rem.is_cancelled(e)
        and not rem.is_timeout(e) then
      others[#others + 1] = tostring(e)
    end
  end
  if not ok and type(err) ~= "table" then others[#others + 1] = tostring(err) end
  local summary = { outcome = ok and "clean" or "error", injected = #w.injected, others = others,
                    mode = plan.mode, streams = #w.streams, cpu = os.clock() - t0,
                    error = not ok and err or nil }
  if #problems == 0 then return true, nil, summary end
  return false, ("seed %d (mode %d, limit %d ms, gather %s): %s"):format(seed, plan.mode,
    plan.limit, tostring(plan.gather), table.concat(problems, "; ")), summary
end

--- Runs n scenarios from seed `first` (first, first+1, ...). opts.stop_on_failure (default
-- true), opts.progress(i, stats). Returns stats { run, clean, errors, injected, streams,
-- failures = { messages } }.
function M.run(first, n, opts)
  opts = opts or {}
  local base = opts.base or M.baseline()
  local stats = { run = 0, clean = 0, errors = 0, injected = 0, streams = 0, failures = {},
                  first = first }
  for i = 0, n - 1 do
    local seed = first + i
    local ok, msg, sum = M.scenario(seed, base, opts)
    stats.run = stats.run + 1
    stats[sum.outcome == "clean" and "clean" or "errors"] =
      stats[sum.outcome == "clean" and "clean" or "errors"] + 1
    stats.injected = stats.injected + sum.injected
    stats.streams = stats.streams + sum.streams
    if not ok then
      stats.failures[#stats.failures + 1] = msg
      if opts.on_failure then opts.on_failure(seed, msg) end
      if opts.stop_on_failure ~= false then break end
      base = M.baseline()  -- whatever leaked, count from here on
    end
    if opts.progress then opts.progress(i + 1, stats) end
  end
  return stats
end

return M
