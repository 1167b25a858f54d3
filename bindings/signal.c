/* rem.signal(name, fn) -> watcher (`rem.signal`), and the signal names rem knows.
 *
 * Each delivery of the signal runs fn(name) in a task of its own, a child of the watcher:
 * the handlers' tasks hang below the watcher's scope, which hangs below the scope that
 * created the watcher, so cancelling that scope (a timeout around it) cancels them too.
 * close() stops the deliveries, cancels the handlers still running and waits for them,
 * then raises an rem.ErrorGroup of the handlers that failed; a failed handler does not stop
 * the watcher or the other handlers. Deliveries that arrive close together may be merged
 * into one (as with any signal).
 *
 * The uv_signal_t is unref'd: a watcher alone does not keep rem.run going, so a script
 * that only waits for signals waits on something else too (a sleep, a server). The
 * uv_signal_t lives in a malloc'd rem_sigwatch freed in its close callback; the userdata
 * only points to it. The signal callback finds the userdata through a weak table and
 * spawns the handler under lua_pcall (the one way from a libuv callback into Lua here).
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define SIGNAL_MT "rem.signal"
#define WATCHERS_KEY "rem.signal.watchers"  /* weak values: rem_sigwatch* -> its userdata */

typedef struct rem_sigwatch {
  uv_signal_t handle;
  rem_state *st;
  rem_scope_t scope;  /* parent of the handlers' root scopes */
  int signum;
  int closing;        /* close() began: no more handlers */
} rem_sigwatch;

/* The userdata; its user values: 1 the function, 2 the handlers' tasks (a set), 3 the
 * handlers' failures (a list). */
typedef struct rem_lsignal {
  rem_sigwatch *w;  /* NULL: closed (or born closed) */
} rem_lsignal;

static const struct {
  const char *name;
  int num;
} signals[] = {
  {"SIGHUP", SIGHUP}, {"SIGINT", SIGINT}, {"SIGQUIT", SIGQUIT}, {"SIGILL", SIGILL},
  {"SIGTRAP", SIGTRAP}, {"SIGABRT", SIGABRT}, {"SIGBUS", SIGBUS}, {"SIGFPE", SIGFPE},
  {"SIGKILL", SIGKILL}, {"SIGUSR1", SIGUSR1}, {"SIGSEGV", SIGSEGV}, {"SIGUSR2", SIGUSR2},
  {"SIGPIPE", SIGPIPE}, {"SIGALRM", SIGALRM}, {"SIGTERM", SIGTERM}, {"SIGCHLD", SIGCHLD},
  {"SIGCONT", SIGCONT}, {"SIGSTOP", SIGSTOP}, {"SIGTSTP", SIGTSTP}, {"SIGTTIN", SIGTTIN},
  {"SIGTTOU", SIGTTOU}, {"SIGURG", SIGURG}, {"SIGXCPU", SIGXCPU}, {"SIGXFSZ", SIGXFSZ},
  {"SIGVTALRM", SIGVTALRM}, {"SIGPROF", SIGPROF}, {"SIGWINCH", SIGWINCH},
  {"SIGSYS", SIGSYS},
#ifdef SIGIO
  {"SIGIO", SIGIO},
#endif
#ifdef SIGPWR
  {"SIGPWR", SIGPWR},
#endif
};
#define NSIGNALS (sizeof signals / sizeof signals[0])

const char *rem__signal_name(int signum) {
  for (size_t i = 0; i < NSIGNALS; i++)
    if (signals[i].num == signum) return signals[i].name;
  return NULL;
}

int rem__check_signal(lua_State *L, int arg, const char *fname) {
  if (lua_type(L, arg) == LUA_TNUMBER) {
    int ok;
    lua_Integer n = lua_tointegerx(L, arg, &ok);
    if (!ok || n <= 0 || n >= 65)
      luaL_error(L, "%s: bad argument #%d (not a signal number)", fname, arg);
    return (int)n;
  }
  if (lua_type(L, arg) != LUA_TSTRING)
    rem__argerror(L, arg, fname, "signal name or number");
  const char *name = lua_tostring(L, arg);
  for (size_t i = 0; i < NSIGNALS; i++) {
    /* "SIGUSR1" or "USR1" */
    if (strcmp(signals[i].name, name) == 0 || strcmp(signals[i].name + 3, name) == 0)
      return signals[i].num;
  }
  return luaL_error(L, "%s: bad argument #%d (unknown signal '%s')", fname, arg, name);
}

/* ---- handlers ------------------------------------------------------------------------ */

/* Stack: [watcher, -, -, failure or results]. */
static int handler_k(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  rem__pcall_restore(L, 1);
  if (status != LUA_OK && status != LUA_YIELD && !rem__is_cancelled(L, -1)) {
    lua_getiuservalue(L, 1, 3);
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, luaL_len(L, -2) + 1);
  }
  return 0;
}

/* A handler task's body: [watcher, fn, name]. The failure stays with the watcher for
 * close(); the task itself ends well, so it is not reported as an error nobody joined. */
static int handler_main(lua_State *L) {
  lua_pushnil(L);
  lua_pushnil(L);
  lua_rotate(L, 2, 2);  /* [watcher, nil, nil, fn, name] */
  return rem__pcall(L, 1, 0, handler_k);
}

/* Forgets the handlers that have finished, so a long-lived watcher does not grow. */
static void prune(lua_State *L, int set) {
  lua_pushnil(L);
  while (lua_next(L, set)) {
    lua_pop(L, 1);
    rem_ltask *t = lua_touserdata(L, -1);
    if (t->rt.state == REM_TASK_DONE) {
      lua_pushvalue(L, -1);
      lua_pushnil(L);
      lua_rawset(L, set);  /* clearing a field during lua_next is allowed */
    }
  }
}

/* lua_CFunction (rem_sigwatch*): starts a handler task; under lua_pcall. */
static int spawn_handler(lua_State *L) {
  rem_sigwatch *w = lua_touserdata(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, WATCHERS_KEY);
  if (lua_rawgetp(L, -1, w) != LUA_TUSERDATA) return 0;  /* being collected */
  int ud = lua_gettop(L);
  lua_getiuservalue(L, ud, 2);
  int set = lua_gettop(L);
  prune(L, set);
  lua_pushcfunction(L, handler_main);
  int fidx = lua_gettop(L);
  lua_pushvalue(L, ud);
  lua_getiuservalue(L, ud, 1);
  const char *name = rem__signal_name(w->signum);
  if (name) lua_pushstring(L, name); else lua_pushinteger(L, w->signum);
  rem_ltask *t = rem__task_new(L, w->st, fidx, 3);
  rem_scope_set_parent(&t->rt.root, &w->scope);  /* cancelled with the watcher */
  lua_pushboolean(L, 1);
  lua_rawset(L, set);
  rem_task_start(&t->rt);
  return 0;
}

static void on_signal(uv_signal_t *handle, int signum) {
  (void)signum;
  rem_sigwatch *w = handle->data;
  if (w->closing) return;
  lua_State *L = w->st->L;
  if (!lua_checkstack(L, 4)) return;
  int top = lua_gettop(L);
  lua_pushcfunction(L, spawn_handler);
  lua_pushlightuserdata(L, w);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    lua_warning(L, "rem.signal: cannot start a handler: ", 1);
    lua_warning(L, lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?", 0);
  }
  lua_settop(L, top);
}

/* ---- the watcher --------------------------------------------------------------------- */

static void free_watch(uv_handle_t *handle) {
  free(handle->data);
}

static rem_lsignal *check_watcher(lua_State *L, const char *fname) {
  rem_lsignal *u = luaL_testudata(L, 1, SIGNAL_MT);
  if (!u) {
    luaL_error(L, "%s: bad self (rem.signal watcher expected, got %s; call it with ':')",
               fname, luaL_typename(L, 1));
  }
  return u;
}

/* Closes the handle once no handler runs; raises the failures, if any. */
static int close_k(lua_State *L, int status, lua_KContext ctx);

static int close_loop(lua_State *L, rem_lsignal *u) {
  rem_sigwatch *w = u->w;
  lua_getiuservalue(L, 1, 2);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    rem_ltask *child = lua_touserdata(L, -2);
    if (child->rt.state != REM_TASK_DONE) {
      lua_settop(L, 1);
      rem_ltask *t = rem__current(L);
      rem_task_wait_on(&t->rt, &child->rt.joiners, 0);
      return rem__await(L, t, 0, close_k);
    }
    lua_pop(L, 1);
  }
  lua_settop(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, WATCHERS_KEY);
  lua_pushnil(L);
  lua_rawsetp(L, -2, w);
  lua_settop(L, 1);
  u->w = NULL;
  rem_scope_deinit(&w->scope);
  uv_close((uv_handle_t *)&w->handle, free_watch);
  lua_newtable(L);
  lua_setiuservalue(L, 1, 2);
  lua_getiuservalue(L, 1, 3);
  if (luaL_len(L, -1) == 0) return 0;
  rem__push_error_group(L, -1);
  return lua_error(L);
}

static int close_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  rem__resumed(L);
  return close_loop(L, lua_touserdata(L, 1));
}

/* watcher:close() and __close: stops the deliveries, cancels the running handlers, waits
 * for them; raises an rem.ErrorGroup of the handlers' failures. A second close does
 * nothing. */
static int w_close(lua_State *L) {
  rem_lsignal *u = check_watcher(L, "watcher:close");
  rem_sigwatch *w = u->w;
  if (!w || w->closing) return 0;
  rem__need_task(L, "watcher:close");
  lua_settop(L, 1);
  w->closing = 1;
  uv_signal_stop(&w->handle);
  rem_scope_cancel(&w->scope);
  return close_loop(L, u);
}

static int w_gc(lua_State *L) {
  rem_lsignal *u = lua_touserdata(L, 1);
  rem_sigwatch *w = u->w;
  if (!w) return 0;
  u->w = NULL;
  const char *name = rem__signal_name(w->signum);
  lua_warning(L, "rem: a watcher of ", 1);
  lua_warning(L, name ? name : "a signal", 1);
  lua_warning(L, " was garbage-collected without being closed", 0);
  rem_scope_deinit(&w->scope);
  uv_close((uv_handle_t *)&w->handle, free_watch);
  return 0;
}

static int w_tostring(lua_State *L) {
  rem_lsignal *u = luaL_checkudata(L, 1, SIGNAL_MT);
  if (!u->w) {
    lua_pushliteral(L, "rem.signal (closed)");
  } else {
    const char *name = rem__signal_name(u->w->signum);
    lua_pushfstring(L, "rem.signal (%s): %p", name ? name : "?", (void *)u->w);
  }
  return 1;
}

/* rem.signal(name, fn) -> watcher; name "SIGINT", "INT" or a number. */
static int l_signal(lua_State *L) {
  rem_state *st = rem__state(L);
  int signum = rem__check_signal(L, 1, "rem.signal");
  rem__check_function(L, 2, "rem.signal");
  rem_ltask *t = rem__need_task(L, "rem.signal");
  lua_settop(L, 2);
  rem_lsignal *u = lua_newuserdatauv(L, sizeof *u, 3);
  u->w = NULL;
  luaL_setmetatable(L, SIGNAL_MT);
  int ud = lua_gettop(L);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, ud, 1);
  lua_newtable(L);
  lua_setiuservalue(L, ud, 2);
  lua_newtable(L);
  lua_setiuservalue(L, ud, 3);
  lua_getfield(L, LUA_REGISTRYINDEX, WATCHERS_KEY);
  rem_sigwatch *w = malloc(sizeof *w);
  if (!w) return luaL_error(L, "rem.signal: not enough memory");
  memset(w, 0, sizeof *w);
  w->st = st;
  w->signum = signum;
  int rc = uv_signal_init(st->loop, &w->handle);
  if (rc) {
    free(w);
    rem__push_error(L, uv_err_name(rc), "rem.signal: %s", uv_strerror(rc));
    return lua_error(L);
  }
  w->handle.data = w;
  rc = uv_signal_start(&w->handle, on_signal, signum);
  if (rc) {
    uv_close((uv_handle_t *)&w->handle, free_watch);
    rem__push_error(L, uv_err_name(rc), "rem.signal: cannot watch signal %d: %s", signum,
                    uv_strerror(rc));
    return lua_error(L);
  }
  uv_unref((uv_handle_t *)&w->handle);
  rem_scope_init(&w->scope, &st->sched, t->rt.scope);
  u->w = w;
  lua_pushvalue(L, ud);
  lua_rawsetp(L, -2, w);
  lua_settop(L, ud);
  return 1;
}

void rem__open_signal(lua_State *L, rem_state *st) {
  static const luaL_Reg methods[] = {{"close", w_close}, {NULL, NULL}};
  luaL_newmetatable(L, SIGNAL_MT);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, w_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, w_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, w_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, WATCHERS_KEY);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "v");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"signal", l_signal}, {NULL, NULL}};
  rem__setfuncs(L, fns, st);
}
