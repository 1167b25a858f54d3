--- rem: structured resource management for Lua 5.4 over libuv.
-- The module face: the C core (`rem.core`) with the Lua sugar on top.
-- @module rem

local core = require "rem.core"

local rem = {
  _VERSION = "rem " .. core.version,
  run = core.run,
  spawn = core.spawn,
  sleep = core.sleep,
  now = core.now,
  checkpoint = core.checkpoint,
  timeout = core.timeout,
  shield = core.shield,
  current = core.current,
  is_cancelled = core.is_cancelled,
  is_timeout = core.is_timeout,
  is_error_group = core.is_error_group,
}

local Error, ErrorGroup = core.Error, core.ErrorGroup
local chain = core.chain
local pcall, error, select, type = pcall, error, select, type
local tostring, setmetatable, getmetatable = tostring, setmetatable, getmetatable
local concat, pack, unpack = table.concat, table.pack, table.unpack

----------------------------------------------------------------------------------------
-- Errors

--- rem.Error(message [, code]) or rem.Error{message=, code=, context=, ...}:
-- a table error with a readable one-line tostring.
setmetatable(Error, {
  __call = function(_, spec, code)
    local e
    if type(spec) == "table" then
      e = {}
      for k, v in pairs(spec) do e[k] = v end
    else
      e = { message = tostring(spec), code = code }
    end
    if e.message == nil then e.message = "error" end
    if e.traceback == nil then e.traceback = debug.traceback("", 2):sub(2) end
    return setmetatable(e, Error)
  end,
})

Error.__name = "rem.Error"
function Error.__tostring(e)
  local msg = tostring(e.message)
  if e.code and not rem.is_cancelled(e) then return e.code .. ": " .. msg end
  return msg
end

--- rem.ErrorGroup(errors [, message]): several errors raised together.
setmetatable(ErrorGroup, {
  __call = function(_, errors, message)
    if type(errors) ~= "table" then
      error("rem.ErrorGroup: bad argument #1 (table of errors expected, got "
            .. type(errors) .. ")", 2)
    end
    local eg = core.error_group(errors)
    if message ~= nil then eg.message = tostring(message) end
    return eg
  end,
})

ErrorGroup.__name = "rem.ErrorGroup"

local function describe(e)
  if getmetatable(e) == ErrorGroup then return "ErrorGroup: " .. tostring(e.message) end
  return tostring(e)
end

local function render(eg, lines, prefix, seen)
  seen[eg] = true
  local errors = eg.errors or {}
  for i = 1, #errors do
    local e, last = errors[i], i == #errors
    lines[#lines + 1] = prefix .. (last and "└─ " or "├─ ") .. describe(e)
    if getmetatable(e) == ErrorGroup and not seen[e] then
      render(e, lines, prefix .. (last and "   " or "│  "), seen)
    end
  end
end

--- tostring(eg) prints the group as a tree of its errors.
function ErrorGroup.__tostring(eg)
  local lines = { describe(eg) }
  render(eg, lines, "", {})
  return concat(lines, "\n")
end

--- eg:flatten() -> the leaf errors of this group and of the groups inside it, in order.
function ErrorGroup:flatten(out, seen)
  out, seen = out or {}, seen or {}
  seen[self] = true
  for _, e in ipairs(self.errors or {}) do
    if getmetatable(e) == ErrorGroup then
      if not seen[e] then e:flatten(out, seen) end
    else
      out[#out + 1] = e
    end
  end
  return out
end

rem.Error, rem.ErrorGroup = Error, ErrorGroup

----------------------------------------------------------------------------------------
-- Task groups

--- rem.group() -> group, to use as `local g <close> = rem.group()`;
-- rem.group(function(g) ... end) -> the function's results, after every child ended.
function rem.group(fn, ...)
  if fn == nil then return core.group() end
  if type(fn) ~= "function" then
    error("rem.group: bad argument #1 (function or nothing expected, got " .. type(fn) .. ")", 2)
  end
  local g = core.group()
  local res = pack(pcall(fn, g, ...))
  local err = (not res[1]) and res[2] or nil
  if not res[1] and err == nil then err = Error("the group's function raised nil") end
  g:close(err)  -- raises the ErrorGroup, if any
  if res[1] then return unpack(res, 2, res.n) end
  -- The group's own cancellation (g:cancel()) ends the function form quietly.
  if rem.is_cancelled(err) and g:cancelled() and not core.cancelled() then return end
  error(err, 0)
end

----------------------------------------------------------------------------------------
-- Exit stacks and context managers (lua/rem/contextlib.lua)

local contextlib = require "rem.contextlib"
rem.ExitStack, rem.enter, rem.with = contextlib.ExitStack, contextlib.enter, contextlib.with
rem.contextmanager, rem.closing, rem.nullcontext =
  contextlib.contextmanager, contextlib.closing, contextlib.nullcontext

----------------------------------------------------------------------------------------
-- Exit pools (bindings/gather.c, runtime/pool.c)

--- rem.gather(cm_or_fn, ...) -> exit pool, a context manager: enter() enters every member
-- concurrently (each in a task of its own) and returns one value per member, its first, in
-- argument order; exit(err) exits them concurrently. A failed enter cancels the pending
-- ones, exits the entered ones and raises an rem.ErrorGroup; the pool suppresses only if
-- every member did. `pool:wrap(fn)` enters a fresh pool (pool:recreate()) on each call.
rem.gather = core.gather
core.pool_methods.wrap = contextlib.wrap

----------------------------------------------------------------------------------------
-- Resource managers (lua/rem/manager.lua)

local manager = require "rem.manager"
rem.Manager, rem.Collection = manager.Manager, manager.Collection

----------------------------------------------------------------------------------------
-- Files and signals (bindings/file.c, fs.c, signal.c)

--- rem.fs.open(path [, mode]) -> file; rem.fs.stat, remove, rename, mkdir.
rem.fs = core.fs
--- rem.signal(name, fn) -> watcher: each delivery runs fn(name) in a task of its own.
-- The watcher does not keep rem.run going by itself.
rem.signal = core.signal

----------------------------------------------------------------------------------------
-- Network and processes (bindings/io.h: stream.c, server.c, tcp.c, unix.c, dns.c, process.c)

--- rem.tcp.connect(host, port [, opts]) -> stream; rem.tcp.listen(host, port, handler
-- [, opts]) -> server. rem.unix.connect(path), rem.unix.listen(path, handler [, opts]).
-- A server belongs to the task that opened it, like a group: each connection's handler runs
-- in a task of the server's group, below the scope where listen was called (cancelling that
-- task stops the server); a failing handler stops the whole server. Close it in that task:
-- `local srv <close> = rem.tcp.listen(...)`, then `srv:wait()` to serve until it stops;
-- close raises the handlers' failures as an rem.ErrorGroup. A server still open when its
-- task ends is stopped (with a warning).
rem.tcp, rem.unix = core.tcp, core.unix
--- rem.process.spawn{cmd, args..., stdin=, stdout=, stderr=, cwd=, env=, grace=} -> process.
rem.process = core.process
--- rem.resolve(host) -> list of addresses.
rem.resolve = core.resolve

rem.chain = chain
return rem
