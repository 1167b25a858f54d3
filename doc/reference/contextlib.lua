--- Context managers, exit stacks and the contextlib helpers: `rem.enter`, `rem.with`,
-- `rem.ExitStack`, `rem.contextmanager`, `rem.closing`, `rem.nullcontext`.
--
-- They are used through `rem` (lua/rem/contextlib.lua defines them over the C exit stack
-- of bindings/exitstack.c and bindings/cm.c; `require "rem.contextlib"` is the module they
-- come from).
--
-- **The protocol.** A *closable* is any value whose metatable has `__close` (plain Lua
-- 5.4). A *context manager* (cm) is a value with `cm:enter()` → values and
-- `cm:exit(err)` → truthy to suppress `err` (`err` is nil when the body succeeded). Both may
-- suspend. Every cm that rem makes is also closable (its `__close` runs the same exit) and
-- has `cm:wrap(fn)`. Where a cm is expected, rem also takes a closable (entered as itself,
-- closed on exit) or a function, an *async constructor*: it is called with no arguments and
-- what it returns is entered if it is a cm, else kept as is (and closed on exit if it is
-- closable).
--
-- **Exits.** Entering is not shielded: an acquisition may be cancelled. Exits run shielded
-- (cancellation from outside does not interrupt them; a `rem.timeout` inside one does).
-- Errors are never lost: when an exit raises while another error is in flight, the new
-- error propagates with the old one as its `context` (wrapped in an `rem.Error` if it is not
-- a table; see @{rem.chain}). A body that raises `nil` or `false` is given an `rem.Error`
-- instead, so an exit always sees a non-nil error when the body failed.
--
-- **Suppression and `<close>`.** `rem.with`, `stack:exit` and `cm:wrap` honour an exit that
-- suppresses: they then return normally. Lua ignores what `__close` returns, so under
-- `local x <close> = ...` a suppressing exit still runs, but the error goes on.
-- @module rem.contextlib

--- Enters `cm` and returns a guard followed by what entering gave. The guard is an
-- @{ExitStack} holding the one exit: closing it (normally as a to-be-closed variable) exits
-- `cm` with the error in flight.
-- @function rem.enter
-- @param cm a context manager, a closable, or an async constructor (see above)
-- @treturn ExitStack the guard
-- @return the values: `cm:enter()`'s results; a closable itself; what a constructor returned
-- @raise the error of `enter` or of the constructor (nothing is then left to exit);
-- `"rem.enter: bad argument #1 (context manager, closable or function expected, got ...)"`
-- @usage
-- local _ <close>, conn = rem.enter(function() return rem.tcp.connect("127.0.0.1", port) end)
-- conn:write("hello\n")                         -- conn is closed when the block ends

--- Enters the cms in order, calls `fn` with their values, and exits them in reverse order,
-- each with the error as the exits after it left it. With one cm, `fn` gets all of its
-- values; with several, the first value of each, in order. When an enter fails, the cms
-- already entered are exited with that error and `fn` does not run. Honours suppression:
-- if the exits swallow the body's error, `rem.with` returns nothing.
-- @function rem.with
-- @param ... the cms (or closables, or async constructors), then `fn`
-- @return the results of `fn`, or nothing when its error was suppressed
-- @raise the error left after the exits ran; a bad argument (the message names its number)
-- @usage
-- rem.with(rem.closing(f1), rem.closing(f2), function(a, b)
--   a:write(b:read("a"))
-- end)

--- Makes an empty exit stack (asyncstdlib's `ExitStack`, Python's `AsyncExitStack`).
-- @function rem.ExitStack
-- @treturn ExitStack
-- @usage
-- local stack <close> = rem.ExitStack()
-- local a = stack:enter_context(function() return rem.fs.open("/tmp/a", "w") end)
-- stack:callback(print, "unwound")

--- Makes a context-manager factory from a generator function. `factory(...)` returns a
-- one-shot @{contextmanager}: entering it runs `genfn(...)` in a coroutine up to its
-- `coroutine.yield(values...)`, whose values are the entered values; exiting runs the rest.
-- The body's error is raised at the yield, so the generator sees it (and suppresses it by
-- catching it and returning, or replaces it by raising another). The generator may suspend
-- anywhere. It must call `coroutine.yield` as rem installs it (not a copy taken before
-- `require "rem"`).
-- @function rem.contextmanager
-- @tparam function genfn the generator; it must yield exactly once
-- @treturn function the factory
-- @raise `"rem.contextmanager: bad argument #1 (function expected, got ...)"`
-- @usage
-- local opened = rem.contextmanager(function(path)
--   local f = rem.fs.open(path, "w")
--   local ok, err = pcall(coroutine.yield, f)   -- the body runs here
--   f:close()
--   if not ok then error(err, 0) end            -- do not suppress
-- end)
-- rem.with(opened("/tmp/out.txt"), function(f) f:write("hi\n") end)

--- Makes a @{closing} cm: entering gives `thing`; exiting calls `thing:close()`, whether
-- the body succeeded or not, and never suppresses.
-- @function rem.closing
-- @param thing a table or userdata with a `close` method
-- @treturn closing
-- @raise `"rem.closing: bad argument #1 (a value with a close method expected, got ...)"`
-- @usage rem.with(rem.closing(conn), function(c) c:write("bye\n") end)

--- Makes a @{nullcontext} cm: entering gives `value`; exiting does nothing. Reusable and
-- re-entrant.
-- @function rem.nullcontext
-- @param value the value to give
-- @treturn nullcontext
-- @usage local cm = shared_conn and rem.nullcontext(shared_conn) or connect_cm()

--- An exit stack: a list of exits run newest first when it unwinds. It is a context
-- manager and closable. Unwinding runs each exit with the error as the previous exits left
-- it (nil once one suppressed it); an exit that raises replaces the error in flight (the old
-- one becomes its `context`) and the remaining exits still run. Every entry is removed as it
-- runs, so a stack can be reused (what it held is let go when the unwinding ends); exits run
-- shielded and may suspend; any number of entries
-- unwinds without growing the C stack. `#stack` is the number of entries; `tostring` gives
-- `"rem.ExitStack (N entries): 0x..."`. Entries still on a stack that is garbage-collected
-- are dropped without running.
-- @type ExitStack

--- Enters `cm` (a cm, a closable or an async constructor, as @{rem.enter}) and pushes its
-- exit (a cm's `exit` method is taken before entering it, as Python's ExitStack takes
-- `__exit__`). If entering fails, nothing is pushed and the error propagates.
-- @function ExitStack:enter_context
-- @param cm what to enter
-- @return what entering gave
-- @raise the error of entering; a bad argument
-- @usage local conn = stack:enter_context(function() return rem.unix.connect(path) end)

--- Pushes a callback: `fn(...)` runs at unwinding, with exactly these arguments (not the
-- error), and never suppresses. It may suspend.
-- @function ExitStack:callback
-- @tparam function fn the callback (or a callable value)
-- @param ... its arguments
-- @treturn function `fn`
-- @usage stack:callback(print, "cleaned up")

--- Pushes an exit without entering anything: a cm (its `exit` method as it is now; `enter`
-- is never called), a closable (its `__close`), or a function `exit(err)` that returns truthy
-- to suppress.
-- @function ExitStack:push
-- @param exit the exit
-- @return `exit`
-- @raise `"stack:push: bad argument #1 (...)"`
-- @usage stack:push(function(err) if err then log(err) end end)

--- Moves every entry to a new stack and returns it; this stack is left empty (so leaving
-- its block runs nothing). The usual way to keep resources past a successful setup.
-- @function ExitStack:pop_all
-- @treturn ExitStack the new stack
-- @raise `"stack:pop_all: the stack is unwinding"`
-- @usage
-- local stack <close> = rem.ExitStack()
-- local a = stack:enter_context(open_a)
-- local b = stack:enter_context(open_b)
-- keep = stack:pop_all()                        -- both stay open; keep:close() later

--- Unwinds the stack now, with no error in flight; raises the error the exits leave, if
-- any.
-- @function ExitStack:close
-- @raise the error an exit raised (chained as described above);
-- `"stack:close: the stack is already unwinding (...)"`

--- Returns the stack itself (a stack is a context manager).
-- @function ExitStack:enter
-- @treturn ExitStack the stack

--- Unwinds the stack with `err` in flight.
-- @function ExitStack:exit
-- @param[opt] err the error in flight (nil or false: none)
-- @treturn boolean true if `err` came in and the exits suppressed it
-- @raise the error that replaced `err`, if an exit raised one

--- Returns a function that runs `fn(...)` and then unwinds the stack (with `fn`'s error,
-- if it failed), returning `fn`'s results.
-- @function ExitStack:wrap
-- @tparam function fn the function
-- @treturn function

--- A one-shot context manager made by a @{rem.contextmanager} factory; closable.
-- @type contextmanager

--- Runs the generator up to its yield and returns the yielded values.
-- @function contextmanager:enter
-- @return the values the generator yielded
-- @raise the generator's error; an `rem.Error` `"contextmanager: generator didn't yield"`
-- when it ends without yielding; `"contextmanager: entered twice (...)"`

--- Runs the rest of the generator. With `err`, raises `err` at the generator's yield. A
-- generator that yields again is closed (its pending to-be-closed variables are closed)
-- and an `rem.Error` `"contextmanager: generator didn't stop"` is raised.
-- @function contextmanager:exit
-- @param[opt] err the body's error
-- @treturn boolean true if the generator caught `err` and returned (suppressed)
-- @raise what the generator raised instead (with `err` as its context);
-- `"contextmanager: exit without enter"`; `"contextmanager: exited twice"`

--- Returns a function that runs `fn(...)` inside a fresh copy of this manager (see
-- @{contextmanager:recreate}) for each call, so the decorated function can be called many
-- times, recursively or concurrently.
-- @function contextmanager:wrap
-- @tparam function fn the function
-- @treturn function
-- @usage
-- local timed = rem.contextmanager(function(name)
--   local t0 = rem.now()
--   local ok, err = pcall(coroutine.yield)
--   print(name, rem.now() - t0)
--   if not ok then error(err, 0) end
-- end)
-- local fetch = timed("fetch"):wrap(function(url) return get(url) end)

--- A new, unentered manager with the same generator and arguments.
-- @function contextmanager:recreate
-- @treturn contextmanager

--- The cm made by @{rem.closing}; closable.
-- @type closing

--- Returns the thing.
-- @function closing:enter
-- @return the thing given to @{rem.closing}

--- Calls `thing:close()`; an error it raises propagates (under `rem.with` or an exit stack,
-- with the body's error as its `context`).
-- @function closing:exit
-- @param[opt] err the body's error (not used)
-- @treturn boolean false (never suppresses)

--- Returns a function running `fn(...)` inside this cm.
-- @function closing:wrap
-- @tparam function fn the function
-- @treturn function

--- The cm made by @{rem.nullcontext}; closable.
-- @type nullcontext

--- Returns the value.
-- @function nullcontext:enter
-- @return the value given to @{rem.nullcontext}

--- Does nothing.
-- @function nullcontext:exit
-- @treturn boolean false

--- Returns a function running `fn(...)` inside this cm.
-- @function nullcontext:wrap
-- @tparam function fn the function
-- @treturn function
