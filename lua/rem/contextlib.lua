--- Exit stacks and the contextlib helpers: the sugar over rem.core's context-manager protocol
-- (bindings/cm.c) and exit stack (bindings/exitstack.c, runtime/exitstack.c).
-- rem (init.lua) re-exports ExitStack, enter, with, contextmanager, closing, nullcontext;
-- `wrap` and `finish` are here for the other context managers rem makes.
-- @module rem.contextlib

local core = require "rem.core"

local M = {}

local ExitStack, cm_kind, cm_chain = core.ExitStack, core.cm_kind, core.cm_chain
local THROW = core.throw_marker
local Error = core.Error
local pcall, error, select, type, rawequal = pcall, error, select, type, rawequal
local setmetatable, getmetatable, tostring = setmetatable, getmetatable, tostring
local pack, unpack = table.pack, table.unpack
-- rem.core has replaced these with versions that pass rem's suspensions through.
local create, resume, status, close = coroutine.create, coroutine.resume, coroutine.status,
  coroutine.close

-- A body error is raised at the generator's yield: coroutine.yield raises what the resumer
-- throws in (otherwise it is the standard one).
coroutine.yield = core.yield

local function callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__call ~= nil
end

local function typename(v)
  local mt = getmetatable(v)
  if type(mt) == "table" and type(mt.__name) == "string" then return mt.__name end
  return type(v)
end

-- An exit must see a non-nil error when the body failed.
local function body_error(err)
  if err == nil or err == false then
    return Error { message = "the body raised " .. tostring(err) .. " as its error" }
  end
  return err
end

--- finish(stack, pcall(body...)): unwinds `stack` after a body ran — close() when it
-- returned (and returns its results), exit(err) when it raised: nothing when the error was
-- suppressed, else the error (the same object, or one that replaced it) is raised.
local function finish(stack, ok, ...)
  if ok then
    stack:close()
    return ...
  end
  local err = body_error((...))
  if stack:exit(err) then return end
  error(err, 0)
end
M.finish = finish

local function enter_all(stack, n, fn, ...)
  if n == 1 then return fn(stack:enter_context((...))) end
  local firsts = {}
  for i = 1, n do firsts[i] = (stack:enter_context((select(i, ...)))) end
  return fn(unpack(firsts, 1, n))
end

--- rem.with(cm1, ..., cmN, fn) -> fn's results: enters the cms in order (a function is an
-- async constructor), calls fn with the values (all of them with one cm, the first of each
-- with several), exits in reverse. Honours suppression: then it returns nothing.
function M.with(...)
  local n = select("#", ...) - 1
  local fn = n >= 0 and (select(n + 1, ...)) or nil
  if not callable(fn) then
    error(("rem.with: bad argument #%d (function expected, got %s)")
      :format(n + 1 > 0 and n + 1 or 1, n >= 0 and typename(fn) or "no value"), 2)
  end
  for i = 1, n do
    local cm = (select(i, ...))
    if not cm_kind(cm) then
      error(("rem.with: bad argument #%d (context manager, closable or function expected, "
        .. "got %s)"):format(i, typename(cm)), 2)
    end
  end
  local stack = ExitStack()
  return finish(stack, pcall(enter_all, stack, n, fn, ...))
end

local function run_in(stack, cm, fn, ...)
  stack:enter_context(cm)
  return fn(...)
end

--- cm:wrap(fn) -> a function running fn(...) inside cm (a fresh copy when cm has recreate).
local function wrap(cm, fn)
  if not callable(fn) then
    error("cm:wrap: bad argument #1 (function expected, got " .. typename(fn) .. ")", 2)
  end
  return function(...)
    local m = cm
    local recreate = m.recreate
    if recreate then m = recreate(m) end
    local stack = ExitStack()
    return finish(stack, pcall(run_in, stack, m, fn, ...))
  end
end
M.wrap = wrap

core.exitstack_methods.wrap = wrap
M.ExitStack = ExitStack
M.enter = core.enter

----------------------------------------------------------------------------------------
-- contextmanager

local GenCM = { __name = "rem.contextmanager" }
GenCM.__index = GenCM

-- The generator's coroutine body: under rem's pcall, so that an error unwinds it (closing
-- its to-be-closed variables, which may suspend) inside the coroutine, while it can run.
local function gen_main(genfn, ...)
  return pcall(genfn, ...)
end

--- rem.contextmanager(genfn) -> factory: factory(...) makes a one-shot manager whose enter
-- runs genfn(...) up to its coroutine.yield(values...) and whose exit runs the rest.
function M.contextmanager(genfn)
  if not callable(genfn) then
    error("rem.contextmanager: bad argument #1 (function expected, got "
      .. typename(genfn) .. ")", 2)
  end
  return function(...)
    return setmetatable({ genfn = genfn, args = pack(...) }, GenCM)
  end
end

function GenCM:recreate()
  return setmetatable({ genfn = self.genfn, args = self.args }, GenCM)
end

local function entered(self, co, ok, ...)
  if not ok then error((...), 0) end
  if status(co) ~= "dead" then return ... end
  local gok, gerr = ...
  if gok then error(Error("contextmanager: generator didn't yield"), 0) end
  error(gerr, 0)
end

function GenCM:enter()
  if self.co ~= nil then
    error("contextmanager: entered twice (each call of the factory makes a one-shot manager)", 2)
  end
  local co = create(gen_main)
  self.co = co
  return entered(self, co, resume(co, self.genfn, unpack(self.args, 1, self.args.n)))
end

-- The generator yielded once too often: `why` is thrown in at that yield, so it unwinds
-- (its cleanup may suspend); if it yields yet again it is closed by force. Returns the error
-- to raise: `why`, or an error its cleanup raised (with `why` as context).
local function stop(co, why)
  local ok, gok, gerr = resume(co, THROW, why, {})
  if status(co) ~= "dead" then
    local cok, cerr = close(co)
    if not cok then return cm_chain(cerr, why) end
    return why
  end
  if not ok then return cm_chain(gok, why) end
  if gok == false and not rawequal(gerr, why) then return cm_chain(gerr, why) end
  return why
end

local function exited_clean(co, ok, ...)
  if not ok then error(cm_chain((...), nil), 0) end
  if status(co) ~= "dead" then
    error(stop(co, Error("contextmanager: generator didn't stop")), 0)
  end
  local gok, gerr = ...
  if gok then return false end
  error(cm_chain(gerr, nil), 0)
end

local NOT_THROWN = "contextmanager: the generator's yield did not raise the error thrown "
  .. "in (call coroutine.yield as rem installs it, not a copy taken before require \"rem\")"

local function exited_error(co, err, box, ok, ...)
  if not ok then error(cm_chain((...), err), 0) end
  if status(co) ~= "dead" then
    local why = box.thrown and "contextmanager: generator didn't stop after the error was "
      .. "thrown in" or NOT_THROWN
    error(stop(co, cm_chain(Error(why), err)), 0)
  end
  local gok, gerr = ...
  if gok then
    if not box.thrown then error(cm_chain(Error(NOT_THROWN), err), 0) end
    return true  -- it caught the error and ended: suppressed
  end
  if rawequal(gerr, err) then return false end
  error(cm_chain(gerr, err), 0)
end

function GenCM:exit(err)
  local co = self.co
  if not co then
    error(co == nil and "contextmanager: exit without enter"
      or "contextmanager: exited twice", 2)
  end
  self.co = false
  if not err then return exited_clean(co, resume(co)) end
  local box = {}
  return exited_error(co, err, box, resume(co, THROW, err, box))
end

function GenCM:__close(err)
  self:exit(err)
end

GenCM.wrap = wrap

----------------------------------------------------------------------------------------
-- closing, nullcontext

local Closing = { __name = "rem.closing" }
Closing.__index = Closing

--- rem.closing(thing): enter gives thing; exit calls thing:close() and never suppresses.
function M.closing(thing)
  local t = type(thing)
  if t ~= "table" and t ~= "userdata" then
    error("rem.closing: bad argument #1 (a value with a close method expected, got "
      .. typename(thing) .. ")", 2)
  end
  return setmetatable({ thing = thing }, Closing)
end

function Closing:enter()
  return self.thing
end

function Closing:exit()
  self.thing:close()
  return false
end

function Closing:__close()
  self.thing:close()
end

Closing.wrap = wrap

local Null = { __name = "rem.nullcontext" }
Null.__index = Null

--- rem.nullcontext(value): enter gives value; exit does nothing. Reusable and re-entrant.
function M.nullcontext(value)
  return setmetatable({ value = value }, Null)
end

function Null:enter()
  return self.value
end

function Null:exit()
  return false
end

function Null.__close() end

Null.wrap = wrap

return M
