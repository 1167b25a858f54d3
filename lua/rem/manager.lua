--- rem.Manager and rem.Collection: class sugar over the classes rem.core makes.
-- The behaviour (acquire, release, exactly once, collections) is in C; this adds only
-- `Class:extend()` and `Class.new(...)`.
-- @module rem.manager

local core = require "rem.core"

local Manager, Collection = core.Manager, core.Collection
local pairs, setmetatable, type = pairs, setmetatable, type

--- A constructor for `cls`: Class.new(...) makes an instance and calls its init(...),
-- when the class has one (in C: bindings/manager_plain.c).
local constructor = core.manager_constructor

--- Parent:extend() -> a subclass. Instances find methods through `__index`; metamethods
-- (`__close`) and rem's marker (`__rem_kind`) are looked up raw, so they are copied.
function Manager.extend(parent)
  local cls = {}
  for k, v in pairs(parent) do
    if type(k) == "string" and k:sub(1, 2) == "__" then cls[k] = v end
  end
  cls.__index = cls
  cls.new = constructor(cls)
  return setmetatable(cls, { __index = parent })
end

Manager.new = constructor(Manager)
Collection.new = constructor(Collection)

return { Manager = Manager, Collection = Collection }
