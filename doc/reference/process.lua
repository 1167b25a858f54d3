--- Child processes: `rem.process.spawn` and the `process` type.
--
-- A process is closable: closing it ends a child that still runs (SIGTERM, a grace period,
-- then SIGKILL), reaps it in every case (no zombie is left), and closes its pipes. Its
-- pipes are @{rem.io.stream|streams}, so reading a child's output or feeding its input
-- suspends only the task that does it. A process that is garbage-collected unclosed is
-- killed with SIGKILL, with a warning through Lua's `warn`.
-- @module rem.process

--- Starts a program. The table's array part is the command and its arguments: `t[1]` is
-- the program, found through `PATH` as `execvp` does, and the other items (strings or
-- numbers) are its arguments; no shell is involved.
--
-- Each of `stdin`, `stdout` and `stderr` is `"inherit"` (the default: the child shares
-- rem's own), `"ignore"` (`/dev/null`), `"pipe"` (a new pipe, which becomes the field
-- `p.stdin`, `p.stdout` or `p.stderr`: a @{rem.io.stream|stream} that is write-only for stdin and
-- read-only for the others), or an open stream that the child gets as that descriptor
-- (another process's pipe, a socket), which makes pipelines.
-- @function spawn
-- @tparam table t `{cmd, args..., stdin =, stdout =, stderr =, cwd =, env =, grace =}`
-- @tparam[opt] string t.cwd the child's working directory
-- @tparam[opt] table t.env the child's whole environment, `{NAME = "value", ...}` (by
-- default it inherits rem's)
-- @tparam[opt=2] number t.grace seconds between SIGTERM and SIGKILL when the process is
-- closed while it runs
-- @treturn process
-- @raise `"rem.process.spawn: cannot run 'cmd': no such file or directory"` (`ENOENT`,
-- `EACCES`...), the cancellation; a bad argument or field, such as
-- `bad field 'stdout' ("pipe", "inherit", "ignore" or a stream expected, got ...)`
-- @usage
-- local ls <close> = rem.process.spawn{"ls", "-l", "/", stdout = "pipe"}
-- for line in ls.stdout:lines() do print(line) end
-- print(ls:wait())                              --> 0  nil
--
-- -- a pipeline: printf | sort -r
-- local p1 <close> = rem.process.spawn{"printf", "b\na\nc\n", stdout = "pipe"}
-- local p2 <close> = rem.process.spawn{"sort", "-r", stdin = p1.stdout, stdout = "pipe"}
-- print(p2.stdout:read("a"))                    --> c b a, one a line

--- A child process, made by @{spawn}. `tostring(p)` gives
-- `"rem.process (process 1234 (ls), running|exited with 0|killed by SIGTERM): 0x..."`.
-- @type process

--- The child's process id.
-- @field process.pid

--- With `stdin = "pipe"`: a write-only @{rem.io.stream|stream} to the child's standard input
-- (close it to send the end of input); else nil.
-- @field process.stdin

--- With `stdout = "pipe"`: a read-only @{rem.io.stream|stream} of the child's standard output;
-- else nil.
-- @field process.stdout

--- With `stderr = "pipe"`: a read-only @{rem.io.stream|stream} of the child's standard error;
-- else nil.
-- @field process.stderr

--- Waits for the child to exit. Returns at once (and works outside a task) once it has
-- exited, also after `close`. Cancellable: the child is not affected.
-- @function process:wait
-- @treturn ?integer the exit status, or nil if a signal ended the child
-- @treturn ?string nil, or the name of the signal that ended it (`"SIGTERM"`; `"SIG<n>"`
-- for one rem has no name for)
-- @raise the cancellation; `"process:wait: not inside a task (...)"`
-- @usage
-- local code, sig = p:wait()
-- if code ~= 0 then error(("exited with %s"):format(code or sig)) end

--- Sends a signal to the child.
-- @function process:kill
-- @param[opt="SIGTERM"] sig a signal name (`"SIGINT"` or `"INT"`) or number
-- @treturn boolean true if it was sent; false when the child had already exited
-- @raise a bad signal (`"process:kill: bad argument #2 (unknown signal 'X')"`); a failure
-- of kill(2)
-- @usage p:kill("INT")

--- Ends the child if it still runs (SIGTERM; after the grace period, SIGKILL), waits until
-- it has exited, closes its pipes (dropping unwritten data) and its handle. The waits are
-- not cancellable: they are bounded by the grace period and SIGKILL. Also the process's
-- `__close`; idempotent. Outside a task it sends SIGKILL and closes in the background.
-- @function process:close
-- @usage
-- local server <close> = rem.process.spawn{"python3", "-m", "http.server", "8000"}
-- -- ... use it; leaving the block terminates it
