--- Resource managers (aiorem): `rem.Manager` and `rem.Collection`.
--
-- A manager acquires and releases a resource through methods the user writes
-- (`acquire_resources`, `release_resources`, optionally `release_resources_on_error`); rem
-- runs them as a state machine (runtime/manager.c, bindings/manager.c) that guarantees:
--
-- - every acquisition attempt ends in exactly one release: if `acquire_resources` fails or
--   is cancelled, `release_resources_on_error(err)` runs before the error propagates;
-- - releases run shielded: they complete even when the task was cancelled or timed out;
-- - entering an acquired manager, or releasing one that is not acquired, is an error naming
--   the method (`"rem.Manager:enter: the manager is already acquired"`);
-- - a manager never suppresses errors.
--
-- All the user's methods may suspend. A release that raises while an error is in flight
-- raises its own error with the earlier one as `context`. The classes are plain tables
-- (lua/rem/manager.lua adds `extend` and `new`); an instance is a table whose metatable is
-- its class, and rem keeps its state aside.
-- @module rem.manager

--- The base class of resource managers. Subclass it with @{Manager:extend}.
-- @table rem.Manager
-- @usage
-- local Conn = rem.Manager:extend()
-- function Conn:init(port) self.port = port end
-- function Conn:acquire_resources() self.sock = rem.tcp.connect("127.0.0.1", self.port) end
-- function Conn:release_resources() self.sock:close() end
--
-- local c <close> = Conn.new(6379):enter()     -- released when the block ends
-- rem.with(Conn.new(6380), function(c2) c2.sock:write("PING\r\n") end)

--- A manager over child managers, acquired and released concurrently. Make one with
-- `rem.Collection.new{m1, m2, ...}`, or subclass it and implement
-- @{Collection:resource_managers}.
--
-- Acquiring runs every child's acquisition at once, each in a helper task. When one fails,
-- the children still acquiring are cancelled, those already acquired are released on the
-- error path, and an `rem.ErrorGroup` of every failure (rollback failures included) is
-- raised. Releasing runs every child's release at once; one failure does not stop the
-- others; the failures are raised together as an `rem.ErrorGroup`, in children order, with
-- the body's error (if any) as `context`. While a collection holds its children, they
-- cannot be acquired or released on their own. An empty collection does nothing.
-- @table rem.Collection
-- @usage
-- local t0 = rem.now()
-- rem.with(rem.Collection.new{Conn.new(8001), Conn.new(8002)}, function(pool)
--   print(rem.now() - t0)                       -- the two connected at once
-- end)

--- A resource manager instance: a context manager (and closable) whose class derives from
-- @{rem.Manager}. The methods the user implements are listed first.
-- @type Manager

--- Makes a subclass: a table whose instances find methods in it and then in the parent,
-- with its own `new`. Works on any class (`Sub:extend()`).
-- @function Manager:extend
-- @treturn table the new class
-- @usage local Db = rem.Manager:extend()

--- Makes an instance of the class and calls its `init(...)`, if the class has one.
-- @function Manager.new
-- @param ... arguments for `init`
-- @treturn Manager the instance (not acquired)
-- @usage local db = Db.new("127.0.0.1", 5432)

--- (User method, optional) Initialises a new instance; called by `new` with its arguments.
-- @function Manager:init
-- @param ... the arguments of `new`

--- (User method) Acquires the resource. May suspend; cancellable (a cancellation is treated
-- as a failure: `release_resources_on_error` runs). The default does nothing.
-- @function Manager:acquire_resources
-- @raise what it raises fails the acquisition

--- (User method) Releases the resource after a successful acquisition and a body without
-- error. May suspend; runs shielded. The default does nothing.
-- @function Manager:release_resources

--- (User method) Releases the resource when the acquisition failed or the body raised.
-- May suspend; runs shielded. The default calls `self:release_resources()`.
-- @function Manager:release_resources_on_error
-- @param err the error in flight (a cancellation, for a cancelled acquisition or body)

--- (User method, optional) Returns a fresh, unacquired copy of the manager; when present,
-- @{Manager:wrap} uses a copy for each call (Python's `_recreate_cm`).
-- @function Manager:recreate
-- @treturn Manager

--- Acquires the manager (the context manager's enter) and returns it. If
-- `acquire_resources` fails, `release_resources_on_error(err)` runs, then the error is
-- raised (a failure of that release is raised instead, with the acquire error as its
-- `context`).
-- @function Manager:enter
-- @treturn Manager self
-- @raise the acquisition's error; `"rem.Manager:enter: the manager is already acquired"`
-- (or `"being acquired"`, `"being released"`, `"held by a rem.Collection"`); the
-- cancellation, if the task is cancelled before it starts; outside a task
-- `"rem.Manager:enter: not inside a task (...)"`
-- @usage local db <close> = Db.new():enter()

--- Same as @{Manager:enter}, for explicit use.
-- @function Manager:acquire
-- @treturn Manager self

--- Releases the manager (the context manager's exit): `release_resources_on_error(err)`
-- when `err` is set, else `release_resources()`. Also its `__close`, which does nothing for
-- a manager whose acquisition already failed and was rolled back. Runs shielded.
-- @function Manager:exit
-- @param[opt] err the error in flight (nil or false: none)
-- @treturn boolean false: a manager never suppresses
-- @raise the release's error; `"rem.Manager:exit: the manager is not acquired"`

--- Releases the manager on the normal path (`release_resources()`).
-- @function Manager:release
-- @raise the release's error; `"rem.Manager:release: the manager is not acquired"`

--- Releases the manager on the error path (`release_resources_on_error(err)`).
-- @function Manager:release_on_error
-- @param err the error (required)
-- @raise the release's error;
-- `"rem.Manager:release_on_error: bad argument #1 (error expected, got nil)"`;
-- `"... the manager is not acquired"`

--- Returns a function that runs `fn(...)` inside the manager: each call acquires it (a
-- fresh copy from `recreate`, if the manager has that method), runs `fn`, releases it
-- (on the error path if `fn` failed), and returns `fn`'s results or raises its error.
-- @function Manager:wrap
-- @tparam function fn the function
-- @treturn function
-- @usage
-- local query = Db.new():wrap(function(sql) return run(sql) end)
-- query("select 1")                             -- acquire, run, release

--- A collection instance: a @{Manager} whose resources are other managers. It has every
-- method of @{Manager} (acquire and release act on all the children at once).
-- @type Collection

--- Makes a collection over the given managers (a list), or over what
-- @{Collection:resource_managers} returns when no list is given.
-- @function Collection.new
-- @tparam[opt] table managers a list of @{Manager} instances
-- @treturn Collection
-- @raise `"rem.Collection.new: bad argument #1 (item N is not a rem.Manager, got ...)"`
-- @usage local pool = rem.Collection.new{Conn.new(8001), Conn.new(8002)}

--- Keeps a copy of the list for @{Collection:resource_managers} (called by `new`). A
-- subclass that defines its own `init` need not call it if it implements
-- `resource_managers`.
-- @function Collection:init
-- @tparam[opt] table managers the children

--- Returns the children to acquire, a list of @{Manager} instances; called at each
-- acquisition (it may suspend). The default returns the list given to `new` (empty if none
-- was). A list that is not one, an item that is not a manager, a manager listed twice, the
-- collection itself, or a manager already acquired or held by another collection fails
-- the acquisition with an `rem.Error` of `code = "EINVAL"`.
-- @function Collection:resource_managers
-- @treturn table the children
-- @usage
-- local Replicas = rem.Collection:extend()
-- function Replicas:init(ports) self.ports = ports end
-- function Replicas:resource_managers()
--   local list = {}
--   for i, port in ipairs(self.ports) do list[i] = Conn.new(port) end
--   return list
-- end
