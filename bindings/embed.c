/* The embedding API of remlua.h that needs rem loaded: spawning from C, the error hook,
 * cancelling the main task. */
#include "internal.h"

int rem_spawn(lua_State *L, int nargs) {
  rem_state *st = rem__find_state(L);
  int fidx = lua_gettop(L) - nargs;
  if (!st || fidx < 1 || lua_type(L, fidx) != LUA_TFUNCTION) {
    lua_settop(L, fidx > 0 ? fidx - 1 : 0);
    lua_pushstring(L, st ? "rem_spawn: no function below the arguments"
                         : "rem_spawn: rem is not loaded (require \"rem\" first)");
    return LUA_ERRRUN;
  }
  rem_ltask *t = rem__task_new(L, st, fidx, nargs);
  rem_task_start(&t->rt);
  lua_replace(L, fidx);
  lua_settop(L, fidx);
  return LUA_OK;
}

void rem_set_error_hook(lua_State *L, rem_error_hook hook, void *ud) {
  rem_state *st = rem__find_state(L);
  if (!st) return;
  st->error_hook = hook;
  st->error_hook_ud = ud;
}

int rem_cancel_main(lua_State *L) {
  rem_state *st = rem__find_state(L);
  if (!st || !st->main) return 0;
  rem_task_cancel(&st->main->rt);
  return 1;
}

size_t rem_live_tasks(lua_State *L) {
  rem_state *st = rem__find_state(L);
  return st ? st->sched.live : 0;
}
