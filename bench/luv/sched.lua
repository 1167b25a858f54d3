--- What a Lua 5.4 user writes today over luv, by hand: a small coroutine scheduler, a
-- resource-manager base class, an exit stack, a gather exit pool and TCP streams. Enough for
-- W1-W4, with the same shape as rem's (errors propagate, exits run LIFO with the error in
-- flight under pcall, every entered member is exited), without cancellation or timeouts.
local uv = require "luv"

local S = { uv = uv }
local running, resume, yield, create = coroutine.running, coroutine.resume, coroutine.yield,
  coroutine.create
local pcall, error, select, setmetatable = pcall, error, select, setmetatable
local unpack = table.unpack

---------------------------------------------------------------------------------------------
-- Tasks: coroutines resumed from the loop. A wake puts the task in the ready queue; the run
-- loop resumes ready tasks, then lets libuv run once (blocking only when nothing is ready).

local ready, nready, live = {}, 0, 0

local function wake(co, ...)
  nready = nready + 1
  ready[nready] = { co, select("#", ...), ... }
end
S.wake = wake

local function step(co, ok, ...)
  if not ok then error(debug.traceback(co, (...)), 0) end
  if coroutine.status(co) == "dead" then live = live - 1 end
end

function S.spawn(fn, ...)
  live = live + 1
  local co = create(fn)
  wake(co, ...)
  return co
end

S.wait = yield  -- a task suspends until somebody wakes it

function S.sleep(seconds)
  local co = running()
  local t = uv.new_timer()
  t:start(math.floor(seconds * 1000), 0, function()
    t:close()
    wake(co)
  end)
  return yield()
end

function S.run(fn, ...)
  S.spawn(fn, ...)
  while live > 0 do
    while nready > 0 do
      local batch, n = ready, nready
      ready, nready = {}, 0
      for i = 1, n do
        local r = batch[i]
        step(r[1], resume(r[1], unpack(r, 3, r[2] + 2)))
      end
    end
    if live > 0 and not uv.run("once") and nready == 0 then
      error("deadlock: tasks wait and nothing can wake them")
    end
  end
end

---------------------------------------------------------------------------------------------
-- A resource manager (aiorem's shape): acquire_resources / release_resources, with the
-- state checked; a context manager (enter/exit) and a closable.

local Manager = {}
Manager.__index = Manager
S.Manager = Manager

function Manager:extend()
  local cls = setmetatable({}, { __index = self })
  cls.__index, cls.__close = cls, self.__close
  cls.new = function(...)
    local obj = setmetatable({ state = "idle" }, cls)
    if obj.init then obj:init(...) end
    return obj
  end
  return cls
end

function Manager:acquire_resources() end
function Manager:release_resources() end
function Manager:release_resources_on_error(err) return self:release_resources() end

function Manager:enter()
  if self.state ~= "idle" then error("manager is " .. self.state, 2) end
  self.state = "acquiring"
  local ok, err = pcall(self.acquire_resources, self)
  if not ok then
    self.state = "releasing"
    pcall(self.release_resources_on_error, self, err)
    self.state = "idle"
    error(err, 0)
  end
  self.state = "acquired"
  return self
end

function Manager:exit(err)
  if self.state ~= "acquired" then error("manager is " .. self.state, 2) end
  self.state = "releasing"
  local ok, rerr
  if err then
    ok, rerr = pcall(self.release_resources_on_error, self, err)
  else
    ok, rerr = pcall(self.release_resources, self)
  end
  self.state = "idle"
  if not ok then error(rerr, 0) end
  return false
end

function Manager:__close(err)
  self:exit(err)
end

---------------------------------------------------------------------------------------------
-- An exit stack: entries run LIFO, each seeing the error as the previous ones left it; an
-- exit that raises replaces the error and the rest still run.

local ExitStack = {}
ExitStack.__index = ExitStack
S.ExitStack = ExitStack

function S.exit_stack()
  return setmetatable({ n = 0 }, ExitStack)
end

local function call_exit(cm, err)
  return cm:exit(err)
end

function ExitStack:enter_context(cm)
  local n = self.n + 1
  local v = cm:enter()
  self[n] = { call_exit, cm }
  self.n = n
  return v
end

function ExitStack:callback(fn, ...)
  local n = self.n + 1
  if select("#", ...) == 0 then
    self[n] = fn
  else
    local args = { ... }
    self[n] = function() return fn(unpack(args)) end
  end
  self.n = n
  return fn
end

function ExitStack:close(err)
  local pending = err
  for i = self.n, 1, -1 do
    local e = self[i]
    self[i] = nil
    local ok, res
    if type(e) == "function" then
      ok, res = pcall(e)
      res = false
    else
      ok, res = pcall(e[1], e[2], pending)
    end
    if not ok then pending = res
    elseif res then pending = nil end
  end
  self.n = 0
  if pending ~= nil and pending ~= err then error(pending, 0) end
  return err ~= nil and pending == nil
end

ExitStack.__close = ExitStack.close

---------------------------------------------------------------------------------------------
-- gather: enters every member concurrently (one task each), waits for all; if one failed,
-- exits those that entered and raises the first error. The pool's exit runs every member's
-- exit concurrently and waits for all. A member is a cm or a function returning a closable.

local Pool = {}
Pool.__index = Pool

function S.gather(...)
  return setmetatable({ n = select("#", ...), ... }, Pool)
end

-- Runs fn(i) for i = 1..n, each in a task; returns when all have finished, with the first
-- error (if any).
local function fan_out(n, fn)
  local parent = running()
  local left, first_err = n, nil
  local function member(i)
    local ok, err = pcall(fn, i)
    if not ok and first_err == nil then first_err = err end
    left = left - 1
    if left == 0 then wake(parent) end
  end
  for i = 1, n do S.spawn(member, i) end
  if n > 0 then yield() end
  return first_err
end

function Pool:enter()
  local n = self.n
  local values, exits = {}, {}
  local err = fan_out(n, function(i)
    local m = self[i]
    if type(m) == "function" then
      local v = m()
      values[i], exits[i] = v, v
    else
      values[i] = m:enter()
      exits[i] = m
    end
  end)
  self.values, self.exits = values, exits
  if err ~= nil then
    self:exit(err)
    error(err, 0)
  end
  return unpack(values, 1, n)
end

function Pool:exit(err)
  local exits = self.exits
  local e2 = fan_out(self.n, function(i)
    local x = exits[i]
    if x == nil then return end
    exits[i] = nil
    if type(x) == "table" and x.exit then x:exit(err) else x:close() end
  end)
  if e2 ~= nil then error(e2, 0) end
  return false
end

Pool.__close = Pool.exit

---------------------------------------------------------------------------------------------
-- TCP streams: connect, write, read exactly n bytes, close (all suspending).

local Stream = {}
Stream.__index = Stream

function S.connect(host, port)
  local co = running()
  local tcp = uv.new_tcp()
  tcp:nodelay(true)
  tcp:connect(host, port, function(err) wake(co, err) end)
  local err = yield()
  if err then
    tcp:close()
    error(err, 2)
  end
  return setmetatable({ tcp = tcp, buf = "" }, Stream)
end

function Stream:write(data)
  local co = running()
  self.tcp:write(data, function(err) wake(co, err) end)
  local err = yield()
  if err then error(err, 2) end
end

function Stream:read(n)
  while #self.buf < n do
    local co = running()
    self.tcp:read_start(function(err, chunk)
      self.tcp:read_stop()
      wake(co, err, chunk)
    end)
    local err, chunk = yield()
    if err then error(err, 2) end
    if not chunk then return nil end
    self.buf = self.buf .. chunk
  end
  local s = self.buf:sub(1, n)
  self.buf = self.buf:sub(n + 1)
  return s
end

function Stream:close()
  if not self.tcp then return end
  local co = running()
  local tcp = self.tcp
  self.tcp = nil
  tcp:close(function() wake(co) end)
  yield()
end

Stream.__close = Stream.close

return S
