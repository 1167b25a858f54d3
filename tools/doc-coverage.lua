#!/usr/bin/env lua5.4
-- Checks that the API reference covers every public Lua name of rem.
--
--   make doc && lua5.4 tools/doc-coverage.lua
--
-- Loads rem from the tree (lua/ and $BUILD, default build/), walks the `rem` table (its
-- functions, its sub-tables such as rem.tcp and rem.fs, its classes such as rem.Manager
-- and rem.ErrorGroup) and, inside rem.run, the method tables of one object of each kind
-- rem makes (a task, a group, an exit stack, managers, contextlib managers, a stream pair
-- over a loopback listener, a server, a file in /tmp, a process, a signal watcher, an exit
-- pool when rem.gather exists, errors). Every public name (one not starting with `_`) must
-- be documented in doc/reference/*.lua, as an item (`@function`, `@field`, `@table`) or a
-- module of that name, and ldoc must have put it in the generated HTML under doc/api/.
-- Prints the names missing, or the count; exits 1 when something is missing.
-- Names are written as the reference writes them: rem.sleep, rem.tcp.connect,
-- stream:read (methods as <type>:<name>; <type>.<name> is accepted too).

local root = (arg and arg[0] or ""):match("^(.*)/tools/[^/]*$") or "."
local build = os.getenv("BUILD") or "build"
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/" .. build .. "/?.so;" .. package.cpath

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function fail(msg)
  io.stderr:write("doc-coverage: ", msg, "\n")
  os.exit(1)
end

----------------------------------------------------------------------------------------
-- What the reference documents: doc/config.ld lists the sources and the output folder.

local config = {}
local chunk, err = loadfile(root .. "/doc/config.ld", "t", config)
if not chunk then fail(err) end
chunk()
local docdir = root .. "/doc/"
local apidir = docdir .. (config.dir or "doc")

local documented = {}   -- name -> module it is documented in
local modules = {}      -- module name -> true
local module_list = {}
for _, file in ipairs(config.file or {}) do
  local src = read(docdir .. file) or fail("cannot read doc/" .. file)
  local mod = src:match("\n%-%-%s*@module%s+([%w_.]+)") or src:match("^%-%-%s*@module%s+([%w_.]+)")
  if not mod then fail("doc/" .. file .. " has no @module") end
  modules[mod] = true
  module_list[#module_list + 1] = mod
  for tag, name in src:gmatch("\n%-%-%s*@(%a+)%s+([%w_.:]+)") do
    if tag == "function" or tag == "field" or tag == "table" then
      -- A plain name belongs to its module: `@function sleep` in module rem is rem.sleep.
      if not name:find("[.:]") then name = mod .. "." .. name end
      documented[name] = mod
    end
  end
end

-- The anchors ldoc wrote, per module page (a lone module goes to index.html).
local anchors = {}
for _, mod in ipairs(module_list) do
  local page = read(apidir .. "/modules/" .. mod .. ".html")
    or (#module_list == 1 and read(apidir .. "/index.html"))
  if not page then
    fail("no generated page for module " .. mod .. " in " .. apidir .. " (run `make doc`)")
  end
  local set = {}
  for a in page:gmatch('<a%s+name%s*=%s*"([^"]+)"') do set[a] = true end
  anchors[mod] = set
end

-- Every link between the generated pages must lead to a page and an anchor that exist.
local pages = { ["index.html"] = read(apidir .. "/index.html") or fail("no " .. apidir
  .. "/index.html (run `make doc`)") }
for _, mod in ipairs(module_list) do
  pages["modules/" .. mod .. ".html"] = read(apidir .. "/modules/" .. mod .. ".html")
end
local page_anchors = {}
for name, text in pairs(pages) do
  local set = {}
  for a in text:gmatch('<a%s+name%s*=%s*"([^"]+)"') do set[a] = true end
  page_anchors[name] = set
end
local broken = {}
for name, text in pairs(pages) do
  local dir = name:match("^(.*/)") or ""
  for href in text:gmatch('href="([^"]+)"') do
    if not href:match("^%a+:") and not href:match("%.css$") then
      local path, frag = href:match("^([^#]*)#?(.*)$")
      local target = name
      if path ~= "" then
        target = (dir .. path):gsub("[^/]+/%.%./", "")
      end
      if not page_anchors[target] then
        broken[#broken + 1] = ("  %s: %s (no such page)"):format(name, href)
      elseif frag ~= "" and not page_anchors[target][frag] then
        broken[#broken + 1] = ("  %s: %s (no such anchor)"):format(name, href)
      end
    end
  end
end
table.sort(broken)
for i = #broken, 2, -1 do if broken[i] == broken[i - 1] then table.remove(broken, i) end end

-- ldoc drops the module's own prefix from an item's name (rem.sleep is "sleep" in rem).
local function in_html(name, mod)
  local set = anchors[mod]
  if set[name] then return true end
  local prefix = mod .. "."
  return name:sub(1, #prefix) == prefix and set[name:sub(#prefix + 1)] == true
end

----------------------------------------------------------------------------------------
-- What rem has.

local rem = require "rem"
local public = {}       -- name -> where it was found
local order = {}

local function add(name, where, alt)
  if public[name] then return end
  public[name] = { where = where, alt = alt }
  order[#order + 1] = name
end

local function is_public(k)
  return type(k) == "string" and k:sub(1, 1) ~= "_"
end

-- A class (a table that is its instances' __index) is walked as <Class>:<name>.
local function is_class(t)
  return rawget(t, "__index") ~= nil
end

local function walk_class(short, t, where)
  for k in pairs(t) do
    if is_public(k) then add(short .. ":" .. k, where, short .. "." .. k) end
  end
end

local function walk_namespace(prefix, t, where, seen)
  seen = seen or {}
  if seen[t] then return end
  seen[t] = true
  for k, v in pairs(t) do
    if is_public(k) then
      local name = prefix .. "." .. k
      add(name, where)
      if type(v) == "table" then
        if is_class(v) then
          walk_class(k, v, name)
        else
          walk_namespace(name, v, where, seen)
        end
      end
    end
  end
end

walk_namespace("rem", rem, "rem")

-- The methods of an object: its metatable's __index, a table, or the table a function
-- __index looks its methods up in (rem.process: fields first, then methods).
local function method_table(obj)
  local mt = getmetatable(obj)
  local idx = type(mt) == "table" and rawget(mt, "__index") or nil
  if type(idx) == "table" then return idx end
  if type(idx) == "function" then
    for i = 1, 255 do
      local n, v = debug.getupvalue(idx, i)
      if n == nil then break end
      if type(v) == "table" then return v end
    end
  end
  return nil
end

local kinds = {}

local function object(kind, obj)
  local methods = method_table(obj)
  if not methods then
    kinds[#kinds + 1] = kind .. " (no methods found!)"
    return
  end
  kinds[#kinds + 1] = kind
  for k in pairs(methods) do
    if is_public(k) then add(kind .. ":" .. k, "methods of a " .. kind, kind .. "." .. k) end
  end
end

local tmpfile = os.tmpname()

rem.run(function()
  local t = rem.spawn(function() return true end)
  object("task", t)
  t:join()

  do
    local g <close> = rem.group()
    object("group", g)
  end

  local stack <close> = rem.ExitStack()
  object("ExitStack", stack)
  object("Manager", rem.Manager.new())
  object("Collection", rem.Collection.new{})
  object("contextmanager", rem.contextmanager(function() coroutine.yield() end)())
  object("closing", rem.closing(stack))
  object("nullcontext", rem.nullcontext())
  object("Error", rem.Error("x"))
  object("ErrorGroup", rem.ErrorGroup({ rem.Error("x") }))

  local accepted = {}
  local srv <close> = rem.tcp.listen("127.0.0.1", 0, function(s)
    accepted[1] = s
    s:read("a")
  end)
  object("server", srv)
  local host, port = srv:address()
  local conn <close> = rem.tcp.connect(host, port)
  object("stream", conn)
  while not accepted[1] do rem.sleep(0.001) end
  if getmetatable(accepted[1]) ~= getmetatable(conn) then
    object("stream (accepted)", accepted[1])
  end
  conn:shutdown()

  local f <close> = rem.fs.open(tmpfile, "w")
  object("file", f)

  local p <close> = rem.process.spawn{ "true", stdout = "pipe" }
  object("process", p)
  if getmetatable(p.stdout) ~= getmetatable(conn) then object("stream (pipe)", p.stdout) end
  p:wait()

  local w <close> = rem.signal("USR2", function() end)
  object("watcher", w)

  if rem.gather then
    local pool = rem.gather(rem.nullcontext(1))
    object("ExitPool", pool)
  end
end)
os.remove(tmpfile)

----------------------------------------------------------------------------------------
-- Compare.

local missing, not_rendered = {}, {}
for _, name in ipairs(order) do
  local info = public[name]
  local as = documented[name] and name or (info.alt and documented[info.alt] and info.alt)
  if modules[name] then
    -- a sub-table documented as a page of its own (rem.fs, rem.process)
  elseif not as then
    missing[#missing + 1] = ("  %-40s (%s)"):format(name, info.where)
  elseif not in_html(as, documented[as]) then
    not_rendered[#not_rendered + 1] = ("  %-40s (doc/reference: module %s)"):format(as,
      documented[as])
  end
end

-- Documented functions of rem that do not exist (a stale reference) are reported too.
local stale = {}
for name, mod in pairs(documented) do
  if name:match("^rem%.") and not name:match("[.:]_[^.:]*$") and not public[name] then
    stale[#stale + 1] = ("  %-40s (doc/reference: module %s)"):format(name, mod)
  end
end
table.sort(stale)

print(("doc-coverage: %d public names (rem, its sub-tables and classes, and the methods of: %s)")
  :format(#order, table.concat(kinds, ", ")))
if #stale > 0 then
  print("documented in doc/reference but not in rem (stale?):\n" .. table.concat(stale, "\n"))
end
if #missing > 0 then
  print("not documented in doc/reference:\n" .. table.concat(missing, "\n"))
end
if #not_rendered > 0 then
  print("documented but absent from the generated HTML in doc/api (run `make doc`):\n"
    .. table.concat(not_rendered, "\n"))
end
if #broken > 0 then
  print("broken links in doc/api:\n" .. table.concat(broken, "\n"))
end
if #missing > 0 or #not_rendered > 0 or #stale > 0 or #broken > 0 then
  print(("doc-coverage: %d of %d public names missing, %d stale, %d broken links"):format(
    #missing + #not_rendered, #order, #stale, #broken))
  os.exit(1)
end
print(("doc-coverage: all %d documented"):format(#order))
