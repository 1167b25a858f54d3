/* rem.timeout and rem.shield: a function run inside a cancellation scope.
 *
 * The scope lives in a userdata on the caller's stack, below the function, so it stays
 * valid while the function is suspended and is deinitialised by __gc should the frame be
 * abandoned (its coroutine collected). */
#include "internal.h"

typedef struct rem_lscope {
  rem_scope_t scope;
  double seconds;
} rem_lscope;

enum { KIND_SHIELD = 0, KIND_TIMEOUT = 1 };

/* Stack: [scope, boundary, handler, results...] or [scope, boundary, handler, error]. */
static int scoped_k(lua_State *L, int status, lua_KContext kind) {
  rem__pcall_restore(L, 1);
  rem_lscope *s = lua_touserdata(L, 1);
  rem_ltask *t = rem__current(L);
  /* A group opened inside and never closed would still be pushed: drop it first. */
  while (t->rt.scope != &s->scope && t->rt.scope != &t->rt.root)
    rem_task_pop_scope(&t->rt, t->rt.scope);
  rem_task_pop_scope(&t->rt, &s->scope);
  int expired = s->scope.expired;
  rem_scope_deinit(&s->scope);
  if (status == LUA_OK || status == LUA_YIELD) return lua_gettop(L) - 3;
  if (kind == KIND_TIMEOUT && expired && rem__is_cancelled(L, -1) &&
      !rem__cancelled_here(L, t)) {
    rem__push_timeout(L, s->seconds, -1);
  }
  return lua_error(L);
}

/* Runs the function at index 1 (arguments above it) inside a new scope. */
static int run_scoped(lua_State *L, rem_ltask *t, int kind, double seconds) {
  rem_lscope *s = lua_newuserdatauv(L, sizeof *s, 0);
  rem_scope_init(&s->scope, &t->st->sched, t->rt.scope);
  s->seconds = seconds;
  s->scope.tag = rem__cleanup_depth(L, t);
  luaL_setmetatable(L, REM_SCOPE_MT);
  if (kind == KIND_SHIELD) s->scope.shielded = 1;
  if (kind == KIND_TIMEOUT) {
    int rc = rem_scope_set_deadline(&s->scope, rem_timer_ms(seconds));
    if (rc) {
      rem_scope_deinit(&s->scope);
      return luaL_error(L, "rem.timeout: %s", uv_strerror(rc));
    }
  }
  rem_task_push_scope(&t->rt, &s->scope);
  lua_insert(L, 1);
  lua_pushnil(L);
  lua_pushnil(L);
  lua_rotate(L, 2, 2);  /* [scope, -, -, fn, args...] */
  return rem__pcall(L, 1, kind, scoped_k);
}

static int l_timeout(lua_State *L) {
  lua_Number seconds = rem__check_number(L, 1, "rem.timeout");
  rem__check_function(L, 2, "rem.timeout");
  rem_ltask *t = rem__need_task(L, "rem.timeout");
  lua_remove(L, 1);
  return run_scoped(L, t, KIND_TIMEOUT, seconds);
}

static int l_shield(lua_State *L) {
  rem__check_function(L, 1, "rem.shield");
  rem_ltask *t = rem__need_task(L, "rem.shield");
  return run_scoped(L, t, KIND_SHIELD, 0);
}

static int scope_gc(lua_State *L) {
  rem_lscope *s = lua_touserdata(L, 1);
  rem_scope_deinit(&s->scope);
  return 0;
}

/* cancelled() -> whether the running task is cancelled (outside its cleanup). */
static int l_cancelled(lua_State *L) {
  rem_ltask *t = rem__current(L);
  lua_pushboolean(L, t && rem__cancelled_here(L, t));
  return 1;
}

void rem__open_scope(lua_State *L, rem_state *st) {
  luaL_newmetatable(L, REM_SCOPE_MT);
  lua_pushcfunction(L, scope_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {
    {"timeout", l_timeout}, {"shield", l_shield}, {"cancelled", l_cancelled},
    {NULL, NULL}};
  rem__setfuncs(L, fns, st);
}
