/* luaopen_rem_core: the per-state scheduler, the embedding hooks and rem.core's table. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#if LUA_VERSION_NUM != 504 || LUA_VERSION_RELEASE_NUM < 50404
#error "rem needs Lua 5.4.4 or newer (yielding inside __close)"
#endif

void rem__setfuncs(lua_State *L, const luaL_Reg *fns, rem_state *st) {
  lua_pushlightuserdata(L, st);
  luaL_setfuncs(L, fns, 1);
}

int rem__argerror(lua_State *L, int arg, const char *fname, const char *expected) {
  return luaL_error(L, "%s: bad argument #%d (%s expected, got %s)", fname, arg, expected,
                    luaL_typename(L, arg));
}

lua_Number rem__check_number(lua_State *L, int arg, const char *fname) {
  int isnum;
  lua_Number n = lua_tonumberx(L, arg, &isnum);
  if (!isnum) rem__argerror(L, arg, fname, "number");
  return n;
}

void rem__check_function(lua_State *L, int arg, const char *fname) {
  if (lua_type(L, arg) != LUA_TFUNCTION) rem__argerror(L, arg, fname, "function");
}

void rem_set_loop(lua_State *L, uv_loop_t *loop) {
  lua_pushlightuserdata(L, loop);
  lua_setfield(L, LUA_REGISTRYINDEX, REM_LOOP_KEY);
}

rem_state *rem__find_state(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, REM_STATE_KEY);
  rem_state **holder = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return holder ? *holder : NULL;
}

uv_loop_t *rem_get_loop(lua_State *L) {
  rem_state *st = rem__find_state(L);
  return st ? st->loop : NULL;
}

static void free_state(rem_sched_t *sched) {
  rem_state *st = sched->data;
  if (st->owns_loop) return;  /* freed by state_gc once its loop is closed */
  free(st);
}

/* The Lua state is closing: report errors nobody saw, close the scheduler's handles. On
 * rem's own loop the close completes here; on a host's loop, when the host runs it next. */
static int state_gc(lua_State *L) {
  rem_state **holder = lua_touserdata(L, 1);
  rem_state *st = *holder;
  if (!st) return 0;
  *holder = NULL;
  rem__report_unobserved(st, L);
  rem_sched_close(&st->sched, free_state);
  if (st->owns_loop) {
    uv_run(&st->own_loop, UV_RUN_DEFAULT);
    uv_loop_close(&st->own_loop);
    free(st);
  }
  return 0;
}

/* counts[0]: active handles not closing; counts[1]: every handle, closing ones included. */
static void count_handles(uv_handle_t *handle, void *arg) {
  int *counts = arg;
  if (uv_is_active(handle) && !uv_is_closing(handle)) ++counts[0];
  ++counts[1];
}

/* stats() -> {live=, ready=, timers=, active_handles=, handles=}: what rem has going on the
 * loop (handles: every handle still on it, a closing one until its close callback ran). */
static int l_stats(lua_State *L) {
  rem_state *st = rem__state(L);
  int counts[2] = {0, 0};
  uv_walk(st->loop, count_handles, counts);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)st->sched.live);
  lua_setfield(L, -2, "live");
  lua_pushboolean(L, !rem_list_empty(&st->sched.ready));
  lua_setfield(L, -2, "ready");
  lua_pushinteger(L, (lua_Integer)st->sched.timers.len);
  lua_setfield(L, -2, "timers");
  lua_pushinteger(L, counts[0]);
  lua_setfield(L, -2, "active_handles");
  lua_pushinteger(L, counts[1]);
  lua_setfield(L, -2, "handles");
  return 1;
}

#define REM_MODULE_KEY "rem.core.module"

int luaopen_rem_core(lua_State *L) {
  if (rem__find_state(L)) {
    /* Loaded again after package.loaded was cleared (busted's insulate does that, and
     * restores _G): give back the same module and reinstall the replaced globals. */
    if (lua_getfield(L, LUA_REGISTRYINDEX, REM_MODULE_KEY) != LUA_TTABLE)
      return luaL_error(L, "rem.core: already loaded in this Lua state");
    rem__open_await(L);
    return 1;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  lua_State *main = lua_tothread(L, -1);
  lua_pop(L, 1);
  /* Threads copy the main thread's extra space when created: it must say "no task". */
  rem__set_current(main, NULL);
  if (L != main) rem__set_current(L, NULL);

  rem_state **holder = lua_newuserdatauv(L, sizeof *holder, 0);
  *holder = NULL;
  lua_newtable(L);
  lua_pushcfunction(L, state_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);

  rem_state *st = malloc(sizeof *st);
  if (!st) return luaL_error(L, "rem.core: out of memory");
  memset(st, 0, sizeof *st);
  st->L = main;
  rem_list_init(&st->tasks);
  rem_list_init(&st->unobserved);
  lua_getfield(L, LUA_REGISTRYINDEX, REM_LOOP_KEY);
  st->loop = lua_touserdata(L, -1);
  lua_pop(L, 1);
  int rc = 0;
  if (!st->loop) {
    rc = uv_loop_init(&st->own_loop);
    st->loop = &st->own_loop;
    st->owns_loop = 1;
  }
  if (rc == 0) rc = rem_sched_init(&st->sched, st->loop);
  if (rc) {
    if (st->owns_loop) uv_loop_close(&st->own_loop);
    free(st);
    return luaL_error(L, "rem.core: cannot start: %s", uv_strerror(rc));
  }
  st->sched.data = st;
  *holder = st;
  lua_setfield(L, LUA_REGISTRYINDEX, REM_STATE_KEY);

  lua_newtable(L);
  static const luaL_Reg fns[] = {{"stats", l_stats}, {NULL, NULL}};
  rem__setfuncs(L, fns, st);
  rem__open_errors(L);
  rem__open_task(L, st);
  rem__open_group(L, st);
  rem__open_scope(L, st);
  rem__open_clock(L, st);
  rem__open_fs(L, st);
  rem__open_signal(L, st);
  rem__open_io(L, st);
  rem__open_manager(L, st);
  rem__open_gather(L, st);
  rem__open_contextlib(L, st);
  rem__open_await(L);
  lua_pushliteral(L, REM_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, REM_MODULE_KEY);
  return 1;
}
