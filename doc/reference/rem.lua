--- Running tasks, task groups, timeouts, cancellation and errors.
--
--     local rem = require "rem"
--
-- `require "rem"` loads the C core (`rem.core`, bindings/*.c) and the Lua face
-- (lua/rem/init.lua). It needs Lua 5.4.4 or newer (a `__close` handler may suspend).
-- It also replaces `pcall`, `xpcall`, `coroutine.resume` and `coroutine.wrap` with versions
-- that behave as the standard ones, except that rem's own suspensions pass through a
-- coroutine to the task that runs it (so a generator may call `rem.sleep`), and
-- `coroutine.yield` with one that can raise an error thrown in by `rem.contextmanager`.
--
-- The other pages: @{rem.contextlib} (exit stacks, `rem.enter`, `rem.with`),
-- @{rem.manager} (resource managers and collections), @{rem.gather} (the exit pool),
-- @{rem.io} (TCP, Unix sockets, streams, servers, name resolution), @{rem.process},
-- @{rem.fs} and @{rem.signal}.
--
-- **Suspension.** A *suspending* function makes the running task wait (for a timer, a
-- child, I/O) while the loop runs other tasks. It may only be called inside a task (one
-- started by `rem.run`, `rem.spawn`, `group:spawn`, a server or a signal watcher); elsewhere
-- it raises `"<name>: not inside a task (start one with rem.run or rem.spawn)"`, and inside a
-- C function that cannot yield (a metamethod other than `__close`, a `table.sort`
-- comparator) `"<name>: cannot suspend here ..."`.
--
-- **Cancellation.** A cancelled task gets an error for which `rem.is_cancelled(err)` is true
-- (an `rem.Error` with `code = "ECANCELED"`, `cancelled = true`), raised at the suspension
-- point where it waits, or at its next one. It is level-triggered: swallowing it with
-- `pcall` does not end it, the next suspension raises it again. Cleanup is shielded: code
-- that runs while an error unwinds, `__close` handlers, exits and releases may suspend and
-- are not interrupted by cancellations from outside them (a `rem.timeout` opened inside
-- the cleanup still applies to it). A task cancelled before it first runs never runs its
-- function.
--
-- **Misuse** (a wrong argument type, a closed object, a suspension outside a task) raises a
-- string error naming the function and the argument, such as
-- `"rem.sleep: bad argument #1 (number expected, got string)"`. Failures of the
-- environment raise an @{Error} with a `code`.
-- @module rem

--- The version string: `"rem "` and the version of `rem.core`, such as `"rem 0.1.0"`.
-- @field _VERSION

--- Running and tasks
-- @section tasks

--- Runs `fn(...)` as the main task, and drives the loop until it and every task started
-- meanwhile have finished.
--
-- Other tasks (`rem.spawn`) keep `rem.run` going until they end; when the main task fails,
-- every task still running is cancelled (and waited for) before the error is raised. An
-- error of a task that nobody joined is reported on stderr
-- (`"rem: a task failed and nobody joined it: ..."`, with its traceback; an embedding host
-- can set its own hook) when `rem.run` ends. If every task is left waiting for something
-- that can never happen, they are all cancelled and `rem.run` raises an error with
-- `code = "EDEADLK"` (the main task's error, if it failed, is its `context`).
--
-- The `rem` program (`rem script.lua`) runs the script as the main task: scripts run with
-- it do not call `rem.run`.
-- @function run
-- @tparam function fn the main task's function
-- @param ... arguments for `fn`
-- @return the results of `fn`
-- @raise the error of `fn`; `"rem.run: called from inside a task (...)"` inside a task;
-- `"rem.run: already running"`; an `rem.Error` with `code = "EDEADLK"` on a deadlock.
-- @usage
-- local rem = require "rem"
-- print(rem.run(function(a, b)
--   rem.sleep(0.01)
--   return a + b
-- end, 1, 2))                                   --> 3

--- Starts `fn(...)` as a new task and returns it at once; it first runs when the calling
-- task next suspends (tasks start in the order they were spawned).
--
-- A task started this way is independent: cancelling the task that spawned it does not
-- cancel it (start children in a @{group} for that), though all tasks are cancelled when the
-- main task fails. Its error is kept for @{task:join}; if nobody joins it, the error is
-- reported on stderr when `rem.run` ends or when the task is garbage-collected. May be
-- called outside a task: the task then runs once the loop runs.
-- @function spawn
-- @tparam function fn the task's function
-- @param ... arguments for `fn`
-- @treturn task the new task
-- @raise `"rem.spawn: bad argument #1 (function expected, got ...)"`
-- @usage
-- local t = rem.spawn(function(n) rem.sleep(0.1) return n * 2 end, 21)
-- print(t:join())                               --> 42

--- The running task.
-- @function current
-- @treturn ?task the task this code runs in, or nil outside tasks

--- Suspends the running task for `seconds` (0 or less: until the loop's next turn).
-- Cancellable: a cancellation raises at once and ends the wait.
-- @function sleep
-- @tparam number seconds how long
-- @raise the cancellation; `"rem.sleep: not inside a task (...)"`
-- @usage rem.sleep(0.25)

--- The loop's monotonic clock, in seconds (millisecond resolution). It is the time the
-- loop read when its current turn began, so it does not move while a task runs without
-- suspending.
-- @function now
-- @treturn number seconds since an arbitrary point
-- @usage
-- local t0 = rem.now()
-- rem.sleep(0.1)
-- print(rem.now() - t0 >= 0.1)                  --> true

--- Lets the other ready tasks run, then goes on. A cancellation pending for the task is
-- raised here. Use it in long computations that do not otherwise suspend.
-- @function checkpoint
-- @raise the cancellation; `"rem.checkpoint: not inside a task (...)"`
-- @usage for i = 1, 1e6 do if i % 1000 == 0 then rem.checkpoint() end end

--- Task groups
-- @section groups

--- Opens a task group (a nursery) in the running task.
--
-- Without arguments it returns the group, to be closed by the task that opened it, normally
-- with `local g <close> = rem.group()`: closing waits for every child (see @{group:close}).
-- With a function, it runs `fn(g, ...)`, then closes the group, and returns the function's
-- results once every child has ended.
--
-- When a child fails, the group is cancelled: its other children and the body (the code
-- between opening and closing, in the task that opened it) get the cancellation at their
-- suspension points. The close then raises an @{ErrorGroup} of every failure that is not a
-- cancellation, the body's own error included. In the function form, a cancellation the
-- body got only because of @{group:cancel} ends the call quietly (it returns nothing).
-- @function group
-- @tparam[opt] function fn the body, called as `fn(g, ...)`
-- @param ... arguments for `fn`
-- @return the group (without `fn`), or the results of `fn`
-- @raise (function form) an @{ErrorGroup} of the failures;
-- `"rem.group: not inside a task (...)"`
-- @usage
-- local results = {}
-- rem.group(function(g)
--   for i = 1, 3 do
--     g:spawn(function() rem.sleep(0.1 * i); results[i] = i end)
--   end
-- end)                                          -- returns after about 0.3 s
--
-- do
--   local g <close> = rem.group()
--   g:spawn(rem.sleep, 0.1)
-- end                                           -- waits for the child here

--- Timeouts and cancellation
-- @section cancellation

--- Runs `fn(...)` with a deadline. When `seconds` pass first, `fn` is cancelled, its
-- cleanup runs to the end (`__close` handlers, exits, releases), then `rem.timeout` raises
-- an @{Error} with `code = "ETIMEDOUT"`, `timeout = true` and the cancellation as its
-- `context` (so `rem.is_timeout(err)` is true). If `fn` ends with another error, that error
-- propagates; if it swallows the cancellation and returns, its results are returned.
-- Timeouts nest; a cancellation of the task from outside propagates as a cancellation, not
-- a timeout.
-- @function timeout
-- @tparam number seconds the time allowed
-- @tparam function fn the function to run
-- @param ... arguments for `fn`
-- @return the results of `fn`
-- @raise the timeout error (`"ETIMEDOUT: timed out after 0.5 s"`), or the error of `fn`
-- @usage
-- local ok, err = pcall(rem.timeout, 0.5, function()
--   rem.sleep(10)
-- end)
-- print(ok, rem.is_timeout(err), err.code)      --> false  true  ETIMEDOUT

--- Runs `fn(...)` shielded from cancellation: a cancellation of the task (or of a group or
-- timeout around it) is not delivered inside `fn`; it is raised at the first suspension
-- after `rem.shield` returns. A `rem.timeout` opened inside `fn` still applies.
-- @function shield
-- @tparam function fn the function to run
-- @param ... arguments for `fn`
-- @return the results of `fn`
-- @raise the error of `fn`
-- @usage rem.shield(function() conn:write("bye\n"); conn:close() end)

--- Whether `err` is a cancellation (an @{Error} with `cancelled = true`).
-- @function is_cancelled
-- @param err any value
-- @treturn boolean
-- @usage
-- local ok, err = pcall(rem.sleep, 1)          -- in a cancelled task
-- if rem.is_cancelled(err) then error(err, 0) end

--- Errors
-- @section errors

--- Makes an @{Error}: `rem.Error(message [, code])`, or
-- `rem.Error{message = ..., code = ..., context = ..., any = ...}` (the fields are copied).
-- Sets `traceback` to the caller's traceback unless given; `message` defaults to `"error"`.
-- @function Error
-- @param message a message (converted with `tostring`), or a table of fields
-- @tparam[opt] string code a short stable code, such as `"ECONNREFUSED"`
-- @treturn Error
-- @usage
-- error(rem.Error("the server said no", "EREFUSED"))
-- local e = rem.Error{message = "bad reply", code = "EPROTO", reply = line}

--- Makes an @{ErrorGroup} over a list of errors.
-- @function ErrorGroup
-- @tparam table errors the errors (any values)
-- @tparam[opt] string message default `"N error(s) in a group"`
-- @treturn ErrorGroup
-- @raise `"rem.ErrorGroup: bad argument #1 (table of errors expected, got ...)"`
-- @usage error(rem.ErrorGroup({e1, e2}, "both replicas failed"))

--- Whether `err` is an @{ErrorGroup}.
-- @function is_error_group
-- @param err any value
-- @treturn boolean

--- Whether `err` is the error `rem.timeout` raises when its time is up.
-- @function is_timeout
-- @param err any value
-- @treturn boolean

--- Chains errors as rem's exits do: returns the error to raise when `new` is raised while
-- `old` is in flight. A table `new` whose context is not settled yet gets
-- `context = old` (unless it already has one) and is marked settled, so outer frames never
-- overwrite it; a non-table `new` raised while `old` is in flight is wrapped in an
-- @{Error} (`message = tostring(new)`, `value = new`) to carry the context. With `old` nil
-- (or the same as `new`), `new` is returned, marked settled if it is a table.
-- @function chain
-- @param new the error being raised
-- @param old the error in flight, or nil
-- @return the error to raise
-- @usage
-- local ok, err = pcall(body)
-- local ok2, err2 = pcall(cleanup)
-- if not ok2 then error(rem.chain(err2, err), 0) end   -- err2.context == err

--- A task: a coroutine run by the loop. Made by @{spawn}, @{group:spawn}, @{run}, a server
-- for each connection, and a signal watcher for each delivery. `tostring(t)` gives
-- `"rem.task (running|done|cancelled|failed): 0x..."`.
-- @type task

--- Waits for the task to end; returns its results or raises its error (the same outcome
-- every time it is called, by any number of tasks). A task that has ended can be joined
-- anywhere, even outside tasks, without suspending. Joining marks the error as seen (it is
-- not reported). Cancellable: the waiting task's cancellation is raised in `join`; the
-- joined task is not cancelled by it.
-- @function task:join
-- @return the task's results
-- @raise the task's error (a cancellation if it was cancelled);
-- `"task:join: a task cannot join itself"`; `"task:join: not inside a task (...)"` for a task
-- still running
-- @usage
-- local t = rem.spawn(function() return "a", "b" end)
-- print(t:join())                               --> a  b

--- Cancels the task: the cancellation is raised at its current or next suspension point;
-- a task that has not run yet never runs its function. Does not wait; does nothing to a
-- task that has ended.
-- @function task:cancel
-- @usage
-- t:cancel()
-- local ok, err = pcall(t.join, t)              -- waits for its cleanup to finish
-- print(rem.is_cancelled(err))                  --> true (unless it had ended already)

--- Whether the task has ended (returned, failed or was cancelled).
-- @function task:done
-- @treturn boolean

--- A task group, from @{rem.group}. `tostring(g)` gives
-- `"rem.group (open|closed, N running): 0x..."`.
-- @type group

--- Starts `fn(...)` as a child task of the group. A child runs below the group's scope: it
-- is cancelled when the group is (a failing sibling, @{group:cancel}, a timeout or
-- cancellation of the task that opened the group). Its error goes to the group, not to
-- the unjoined-error report.
-- @function group:spawn
-- @tparam function fn the child's function
-- @param ... arguments for `fn`
-- @treturn task the child
-- @raise `"group:spawn: the group is closed"`; a bad argument
-- @usage g:spawn(function(url) fetch(url) end, "http://127.0.0.1:8080/")

--- Cancels the group: its children and its body get the cancellation. Does not wait. After
-- it, the function form of @{rem.group} returns quietly if the body ended by that
-- cancellation. Does nothing to a closed group.
-- @function group:cancel

--- Whether the group itself was cancelled (by @{group:cancel} or by a failing child), as
-- opposed to a scope around it.
-- @function group:cancelled
-- @treturn boolean

--- Closes the group: records `err` (the body's error, if any, unless it is a
-- cancellation) as a failure, which cancels the children; waits for every child to end;
-- then raises an @{ErrorGroup} of the failures in the order they happened, if any. Also
-- the group's `__close`. Only the task that opened the group can close it; a second close
-- does nothing. Groups and timeouts opened inside it must end first. The wait is not
-- interrupted by the closing task's cancellation (the children get it).
-- @function group:close
-- @param[opt] err the error the body raised, or nil
-- @raise an @{ErrorGroup};
-- `"group:close: only the task that opened the group can close it"`;
-- `"group:close: closed out of order: ..."`
-- @usage
-- local g = rem.group()
-- g:spawn(worker)
-- local ok, err = pcall(body)
-- g:close(not ok and err or nil)               -- raises an ErrorGroup if anything failed

--- A table error with a readable one-line `tostring`: `"CODE: message"`, or the message
-- alone when there is no code (or for a cancellation). rem raises these for failures of
-- the environment (their `code` is libuv's error name: `"ECONNREFUSED"`, `"ENOENT"`,
-- `"EAI_NONAME"`...), cancellations and timeouts. The end of a stream or file is not an
-- error (`read` returns nil).
-- @type Error

--- The message.
-- @field Error.message

--- A short stable code (`"ECONNREFUSED"`, `"ETIMEDOUT"`, `"ECANCELED"`...), or nil.
-- @field Error.code

--- The traceback where the error was made.
-- @field Error.traceback

--- The error that was in flight when this one was raised (set once, by the innermost rem
-- frame that caught this error), or nil.
-- @field Error.context

--- true for a cancellation (`code = "ECANCELED"`, `message = "cancelled"`).
-- @field Error.cancelled

--- true for the error of @{rem.timeout} (`code = "ETIMEDOUT"`) and of a `rem.tcp.connect`
-- whose `timeout` option ran out.
-- @field Error.timeout

--- (I/O errors of files and path functions) the path concerned.
-- @field Error.path

--- (errors made by @{rem.chain} from a non-table error) the original value.
-- @field Error.value

--- Several errors raised together: by a group, a server, a signal watcher, a collection or
-- an exit pool. `tostring(eg)` prints a tree:
--
--     ErrorGroup: 2 errors in a group
--     ├─ ECONNREFUSED: rem.tcp.connect: cannot connect to 127.0.0.1:1: connection refused
--     └─ oops
-- @type ErrorGroup

--- The errors, a list, in the order they happened.
-- @field ErrorGroup.errors

--- `"N error(s) in a group"`, or the message given to @{rem.ErrorGroup}.
-- @field ErrorGroup.message

--- The leaf errors of this group and of the groups nested in it, in order, as a list.
-- @function ErrorGroup:flatten
-- @treturn table the errors that are not groups
-- @usage
-- for _, e in ipairs(eg:flatten()) do print(e.code, e.message) end
