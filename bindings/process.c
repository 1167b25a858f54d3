/* Child processes (rem.process): uv_spawn with optional pipes as rem.stream values.
 *
 * p:wait() waits for the exit; p:kill(sig) signals; closing a process whose child still runs
 * sends SIGTERM, waits up to its grace period (2 s unless spawn's `grace` says otherwise),
 * then SIGKILL, and reaps it in every case (the exit callback has run before the handle is
 * closed, so no zombie is left); then it closes the pipes (dropping what was not written)
 * and the handle, and waits for the close callback. The waits of a close are not
 * cancellable: they are bounded by the grace period and SIGKILL.
 *
 * The handle lives in malloc'd memory (rem_proc), freed in its close callback. A process
 * collected unclosed is killed with SIGKILL; its exit callback then closes the handle.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"

typedef struct rem_proc {
  uv_process_t h;
  rem_state *st;
  rem_waitq_t exited_q;   /* woken by the exit callback */
  rem_waitq_t closed_q;   /* woken by the close callback */
  rem_timer_t grace;
  rem_task_t *closer;     /* waiting out the grace period */
  int64_t status;
  int signal;
  int exited;
  int orphan;             /* collected: the exit callback closes the handle */
} rem_proc;

/* The userdata; user values 1, 2, 3: the stdin, stdout, stderr streams, or nil. */
typedef struct rem_lproc {
  rem_proc *p;            /* NULL once closed */
  int pid;
  int closing;
  int exited;             /* the outcome, copied from p, kept after close */
  int64_t status;
  int signal;
  double grace;
  char name[80];
} rem_lproc;

static void push_signal(lua_State *L, int num) {
  const char *name = rem__signal_name(num);
  if (name)
    lua_pushstring(L, name);
  else
    lua_pushfstring(L, "SIG%d", num);
}

static rem_lproc *check_proc(lua_State *L, const char *fname) {
  rem_lproc *lp = luaL_testudata(L, 1, REM_PROCESS_MT);
  if (!lp) {
    luaL_error(L, "%s: bad self (rem.process expected, got %s; call it as p:%s(...))", fname,
               luaL_typename(L, 1), strchr(fname, ':') + 1);
  }
  return lp;
}

static void sync_exit(rem_lproc *lp) {
  if (lp->exited || !lp->p || !lp->p->exited) return;
  lp->exited = 1;
  lp->status = lp->p->status;
  lp->signal = lp->p->signal;
}

static void proc_closed(uv_handle_t *handle) {
  rem_proc *p = handle->data;
  rem_waitq_wake_all(&p->closed_q, 0);
  free(p);
}

static void proc_exited(uv_process_t *handle, int64_t status, int sig) {
  rem_proc *p = handle->data;
  p->exited = 1;
  p->status = status;
  p->signal = sig;
  if (p->orphan) {
    uv_close((uv_handle_t *)&p->h, proc_closed);
    return;
  }
  rem_waitq_wake_all(&p->exited_q, 0);
}

static void on_grace_over(rem_timer_t *timer) {
  rem_proc *p = REM_CONTAINER_OF(timer, rem_proc, grace);
  if (p->closer) rem_task_wake(p->closer, UV_ETIMEDOUT);
  p->closer = NULL;
}

/* ---- spawn --------------------------------------------------------------------------- */

enum { STDIO_INHERIT, STDIO_IGNORE, STDIO_PIPE, STDIO_STREAM };
static const char *const stdio_names[] = {"stdin", "stdout", "stderr"};

/* The mode of spawn's field stdin/stdout/stderr (the value is left on the stack). */
static int stdio_mode(lua_State *L, int i) {
  const char *F = "rem.process.spawn";
  lua_getfield(L, 1, stdio_names[i]);
  if (lua_isnil(L, -1)) return STDIO_INHERIT;
  if (rem__stream_test(L, -1)) return STDIO_STREAM;
  if (luaL_testudata(L, -1, REM_STREAM_MT))
    luaL_error(L, "%s: bad field '%s' (the stream is closed)", F, stdio_names[i]);
  const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
  if (strcmp(s, "inherit") == 0) return STDIO_INHERIT;
  if (strcmp(s, "ignore") == 0) return STDIO_IGNORE;
  if (strcmp(s, "pipe") == 0) return STDIO_PIPE;
  return luaL_error(L, "%s: bad field '%s' (\"pipe\", \"inherit\", \"ignore\" or a stream "
                    "expected, got %s)", F, stdio_names[i],
                    lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                   : luaL_typename(L, -1));
}

/* Checks spawn's table before anything is made. */
static void check_spec(lua_State *L, lua_Integer *nargs) {
  const char *F = "rem.process.spawn";
  if (!lua_istable(L, 1)) rem__argerror(L, 1, F, "table {cmd, args..., stdin=, stdout=, ...}");
  lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
  if (n < 1 || lua_rawgeti(L, 1, 1) != LUA_TSTRING)
    luaL_error(L, "%s: bad argument #1 (the command, t[1], must be a string)", F);
  lua_pop(L, 1);
  for (lua_Integer i = 2; i <= n; i++) {
    int type = lua_rawgeti(L, 1, i);
    if (type != LUA_TSTRING && type != LUA_TNUMBER)
      luaL_error(L, "%s: bad argument #1 (t[%d] must be a string, got %s)", F, (int)i,
                 luaL_typename(L, -1));
    lua_pop(L, 1);
  }
  for (int i = 0; i < 3; i++) {
    stdio_mode(L, i);
    lua_pop(L, 1);
  }
  int type = lua_getfield(L, 1, "cwd");
  if (type != LUA_TNIL && type != LUA_TSTRING)
    luaL_error(L, "%s: bad field 'cwd' (string expected, got %s)", F, luaL_typename(L, -1));
  lua_pop(L, 1);
  type = lua_getfield(L, 1, "env");
  if (type == LUA_TTABLE) {
    for (lua_pushnil(L); lua_next(L, -2); lua_pop(L, 1)) {
      if (lua_type(L, -2) != LUA_TSTRING ||
          (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER))
        luaL_error(L, "%s: bad field 'env' (a table of string names to string values "
                   "expected)", F);
    }
  } else if (type != LUA_TNIL) {
    luaL_error(L, "%s: bad field 'env' (table expected, got %s)", F, luaL_typename(L, -1));
  }
  lua_pop(L, 1);
  rem__opt_number(L, 1, "grace", 2, F);
  *nargs = n;
}

/* Stack: [spec, process, anchor]: strings made for argv and env go into the anchor table. */
static char **make_argv(lua_State *L, lua_Integer n) {
  char **argv = calloc((size_t)n + 1, sizeof *argv);
  if (!argv) return NULL;
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    argv[i - 1] = (char *)lua_tostring(L, -1);
    lua_rawseti(L, 3, i);
  }
  return argv;
}

static char **make_env(lua_State *L) {
  if (lua_getfield(L, 1, "env") != LUA_TTABLE) {
    lua_pop(L, 1);
    return NULL;
  }
  size_t n = 0;
  for (lua_pushnil(L); lua_next(L, -2); lua_pop(L, 1)) n++;
  char **env = calloc(n + 1, sizeof *env);
  if (!env) luaL_error(L, "rem.process.spawn: out of memory");
  size_t i = 0;
  lua_Integer slot = (lua_Integer)lua_rawlen(L, 3);
  for (lua_pushnil(L); lua_next(L, -2); lua_pop(L, 1)) {
    const char *v = lua_tostring(L, -1);  /* numbers turn into strings on the stack only */
    env[i++] = (char *)lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), v);
    lua_rawseti(L, 3, ++slot);
  }
  lua_pop(L, 1);
  return env;
}

/* rem.process.spawn{cmd, args..., stdin=, stdout=, stderr=, cwd=, env=, grace=} -> process.
 * stdio: "inherit" (default), "ignore", "pipe" (p.stdin, p.stdout, p.stderr are then
 * streams), or an open stream the child gets as that descriptor. env replaces the whole
 * environment. grace: seconds between SIGTERM and SIGKILL when closing (2). */
static int l_spawn(lua_State *L) {
  const char *F = "rem.process.spawn";
  lua_Integer nargs;
  check_spec(L, &nargs);
  rem_ltask *t = rem__need_task(L, F);
  rem__check_cancel(L, t);
  lua_settop(L, 1);
  rem_lproc *lp = lua_newuserdatauv(L, sizeof *lp, 3);  /* 2 */
  memset(lp, 0, sizeof *lp);
  lp->grace = rem__opt_number(L, 1, "grace", 2, F);
  luaL_setmetatable(L, REM_PROCESS_MT);
  lua_newtable(L);                                       /* 3: anchor */

  uv_stdio_container_t stdio[3];
  rem_stream *pipes[3] = {NULL, NULL, NULL};
  int rc = 0;
  for (int i = 0; i < 3; i++) {
    int mode = stdio_mode(L, i);
    stdio[i].flags = UV_INHERIT_FD;
    stdio[i].data.fd = i;
    if (mode == STDIO_IGNORE) {
      stdio[i].flags = UV_IGNORE;
    } else if (mode == STDIO_STREAM) {
      stdio[i].flags = UV_INHERIT_STREAM;
      stdio[i].data.stream = &rem__stream_test(L, -1)->h.stream;
    } else if (mode == STDIO_PIPE && rc == 0) {
      rem_lstream *ls = rem__stream_push(L);
      pipes[i] = rem__stream_new(t->st, REM_STREAM_PIPE, &rc);
      if (pipes[i]) rem__stream_attach(ls, pipes[i]);
      lua_setiuservalue(L, 2, i + 1);
      stdio[i].flags = UV_CREATE_PIPE | (i == 0 ? UV_READABLE_PIPE : UV_WRITABLE_PIPE);
      stdio[i].data.stream = pipes[i] ? &pipes[i]->h.stream : NULL;
    }
    lua_pop(L, 1);
  }
  rem_proc *p = NULL;
  if (rc == 0) {
    p = calloc(1, sizeof *p);
    if (!p) rc = UV_ENOMEM;
  }
  char **argv = rc == 0 ? make_argv(L, nargs) : NULL;
  if (rc == 0 && !argv) rc = UV_ENOMEM;
  if (rc == 0) {
    char **env = make_env(L);
    lua_getfield(L, 1, "cwd");
    uv_process_options_t opts;
    memset(&opts, 0, sizeof opts);
    opts.exit_cb = proc_exited;
    opts.file = argv[0];
    opts.args = argv;
    opts.env = env;
    opts.cwd = lua_tostring(L, -1);
    opts.stdio_count = 3;
    opts.stdio = stdio;
    p->st = t->st;
    rem_waitq_init(&p->exited_q);
    rem_waitq_init(&p->closed_q);
    rem_timer_init(&p->grace);
    rc = uv_spawn(t->st->loop, &p->h, &opts);
    p->h.data = p;
    free(env);
    if (rc) {
      uv_close((uv_handle_t *)&p->h, proc_closed);  /* a failed spawn still needs it */
      p = NULL;
    }
  }
  free(argv);
  if (rc) {
    free(p);
    for (int i = 0; i < 3; i++)
      if (pipes[i]) rem__stream_close_now(pipes[i]);
    lua_rawgeti(L, 1, 1);
    rem__push_error(L, uv_err_name(rc), "%s: cannot run '%s': %s", F, lua_tostring(L, -1),
                    uv_strerror(rc));
    return lua_error(L);
  }
  lp->p = p;
  lp->pid = p->h.pid;
  lua_rawgeti(L, 1, 1);
  snprintf(lp->name, sizeof lp->name, "process %d (%s)", lp->pid, lua_tostring(L, -1));
  for (int i = 0; i < 3; i++) {
    if (!pipes[i]) continue;
    pipes[i]->can_read = i != 0;
    pipes[i]->can_write = i == 0;
    snprintf(pipes[i]->name, sizeof pipes[i]->name, "%s of %s", stdio_names[i], lp->name);
  }
  lua_settop(L, 2);
  return 1;
}

/* ---- methods ------------------------------------------------------------------------- */

static int push_exit(lua_State *L, rem_lproc *lp) {
  if (lp->signal) {
    lua_pushnil(L);
    push_signal(L, lp->signal);
  } else {
    lua_pushinteger(L, (lua_Integer)lp->status);
    lua_pushnil(L);
  }
  return 2;
}

static int wait_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  rem_ltask *t = rem__resumed(L);
  rem_lproc *lp = lua_touserdata(L, 1);
  sync_exit(lp);
  if (lp->exited || !lp->p) return push_exit(L, lp);
  rem_task_wait_on(&t->rt, &lp->p->exited_q, 1);
  return rem__await(L, t, 0, wait_k);
}

/* p:wait() -> code, signal: the exit code and nil, or nil and the name of the signal that
 * ended it ("SIGTERM"). */
static int p_wait(lua_State *L) {
  rem_lproc *lp = check_proc(L, "process:wait");
  lua_settop(L, 1);
  sync_exit(lp);
  if (lp->exited || !lp->p) return push_exit(L, lp);
  rem_ltask *t = rem__need_task(L, "process:wait");
  rem__check_cancel(L, t);
  rem_task_wait_on(&t->rt, &lp->p->exited_q, 1);
  return rem__await(L, t, 0, wait_k);
}

/* p:kill([sig]) -> true, or false when the child already exited. sig: SIGTERM default. */
static int p_kill(lua_State *L) {
  rem_lproc *lp = check_proc(L, "process:kill");
  int sig = lua_isnoneornil(L, 2) ? SIGTERM : rem__check_signal(L, 2, "process:kill");
  sync_exit(lp);
  if (lp->exited || !lp->p) {
    lua_pushboolean(L, 0);
    return 1;
  }
  int rc = uv_process_kill(&lp->p->h, sig);
  if (rc == UV_ESRCH) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (rc) return rem__io_error(L, rc, "process:kill", lp->name);
  lua_pushboolean(L, 1);
  return 1;
}

/* Kills without waiting, for when nobody can wait (no task; collection): the exit callback
 * closes the handle. */
static void abandon(rem_lproc *lp) {
  rem_proc *p = lp->p;
  lp->p = NULL;
  p->closer = NULL;
  rem_timer_stop(&p->st->sched.timers, &p->grace);
  if (p->exited) {
    uv_close((uv_handle_t *)&p->h, proc_closed);
    return;
  }
  uv_process_kill(&p->h, SIGKILL);
  p->orphan = 1;
  if (!lp->exited) {
    lp->exited = 1;
    lp->signal = SIGKILL;
  }
}

enum { PH_TERM, PH_KILL, PH_HANDLE, PH_PIPES };

static int close_k(lua_State *L, int status, lua_KContext phase);

/* Releases the pipes from `i` on, then closes the handle. Stack: [process]. */
static int close_pipes(lua_State *L, rem_ltask *t, rem_lproc *lp, int i) {
  for (; i < 3; i++) {
    lua_getiuservalue(L, 1, i + 1);
    if (!rem__stream_test(L, -1)) {
      lua_pop(L, 1);
      continue;
    }
    lua_pushcfunction(L, rem__stream_release);
    lua_insert(L, -2);
    lua_callk(L, 1, 0, PH_PIPES + i, close_k);
  }
  uv_close((uv_handle_t *)&lp->p->h, proc_closed);
  rem_task_wait_on(&t->rt, &lp->p->closed_q, 0);
  return rem__await(L, t, PH_HANDLE, close_k);
}

static int close_k(lua_State *L, int status, lua_KContext phase) {
  (void)status;
  rem_ltask *t;
  rem__io_woke(L, &t);
  rem_lproc *lp = lua_touserdata(L, 1);
  rem_proc *p = lp->p;
  switch (phase) {
  case PH_TERM:
    p->closer = NULL;
    rem_timer_stop(&p->st->sched.timers, &p->grace);
    /* fallthrough */
  case PH_KILL:
    if (!p->exited) {
      if (phase == PH_TERM) uv_process_kill(&p->h, SIGKILL);
      rem_task_wait_on(&t->rt, &p->exited_q, 0);
      return rem__await(L, t, PH_KILL, close_k);
    }
    sync_exit(lp);
    return close_pipes(L, t, lp, 0);
  case PH_HANDLE:
    lp->p = NULL;
    lp->closing = 0;
    return 0;
  default:
    return close_pipes(L, t, lp, (int)phase - PH_PIPES + 1);
  }
}

/* p:close() and __close: ends a child still running (SIGTERM, the grace period, SIGKILL),
 * reaps it, closes its pipes and the handle. Idempotent. */
static int p_close(lua_State *L) {
  rem_lproc *lp = check_proc(L, "process:close");
  lua_settop(L, 1);
  rem_proc *p = lp->p;
  if (!p || lp->closing) return 0;
  rem_ltask *t = rem__current(L);
  if (!t || !lua_isyieldable(L)) {
    abandon(lp);
    for (int i = 1; i <= 3; i++) {
      lua_pushcfunction(L, rem__stream_release);
      lua_getiuservalue(L, 1, i);
      lua_call(L, 1, 0);
    }
    return 0;
  }
  lp->closing = 1;
  if (!p->exited) {
    uv_process_kill(&p->h, SIGTERM);
    p->closer = &t->rt;
    (void)rem_timer_start(&p->st->sched.timers, &p->grace, rem_timer_ms(lp->grace),
                          on_grace_over);
    rem_task_wait_on(&t->rt, &p->exited_q, 0);
    return rem__await(L, t, PH_TERM, close_k);
  }
  sync_exit(lp);
  return close_pipes(L, t, lp, 0);
}

static int p_gc(lua_State *L) {
  rem_lproc *lp = lua_touserdata(L, 1);
  if (!lp->p) return 0;
  rem__io_warn(L, "a process (%s) was garbage-collected without being closed; %s", lp->name,
               lp->p->exited ? "closing it" : "killing it");
  abandon(lp);
  return 0;
}

/* p.pid, p.stdin, p.stdout, p.stderr; the methods. */
static int p_index(lua_State *L) {
  rem_lproc *lp = luaL_checkudata(L, 1, REM_PROCESS_MT);  /* called by hand, it may be anything */
  const char *key = lua_tostring(L, 2);
  if (key && strcmp(key, "pid") == 0) {
    lua_pushinteger(L, lp->pid);
    return 1;
  }
  for (int i = 0; key && i < 3; i++) {
    if (strcmp(key, stdio_names[i]) == 0) {
      lua_getiuservalue(L, 1, i + 1);
      return 1;
    }
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

static int p_tostring(lua_State *L) {
  rem_lproc *lp = check_proc(L, "process:__tostring");
  sync_exit(lp);
  if (!lp->exited)
    lua_pushfstring(L, "rem.process (%s, running): %p", lp->name, (void *)lp);
  else if (lp->signal)
    lua_pushfstring(L, "rem.process (%s, killed by %s): %p", lp->name,
                    rem__signal_name(lp->signal) ? rem__signal_name(lp->signal) : "a signal",
                    (void *)lp);
  else
    lua_pushfstring(L, "rem.process (%s, exited with %d): %p", lp->name, (int)lp->status,
                    (void *)lp);
  return 1;
}

void rem__open_process(lua_State *L, rem_state *st) {
  static const luaL_Reg methods[] = {
    {"wait", p_wait}, {"kill", p_kill}, {"close", p_close}, {NULL, NULL}};
  luaL_newmetatable(L, REM_PROCESS_MT);
  luaL_newlib(L, methods);
  lua_pushcclosure(L, p_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, p_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, p_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, p_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"spawn", l_spawn}, {NULL, NULL}};
  lua_newtable(L);
  rem__setfuncs(L, fns, st);
  lua_setfield(L, -2, "process");
}
