/* rem.sleep, rem.now, rem.checkpoint. */
#include "internal.h"

static int sleep_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  rem__resumed(L);
  return 0;
}

static int l_sleep(lua_State *L) {
  lua_Number seconds = rem__check_number(L, 1, "rem.sleep");
  rem_ltask *t = rem__need_task(L, "rem.sleep");
  rem__check_cancel(L, t);
  int rc = rem_task_sleep(&t->rt, rem_timer_ms(seconds));
  if (rc) return luaL_error(L, "rem.sleep: %s", uv_strerror(rc));
  return rem__await(L, t, 0, sleep_k);
}

static int l_checkpoint(lua_State *L) {
  rem_ltask *t = rem__need_task(L, "rem.checkpoint");
  rem__check_cancel(L, t);
  rem_task_reschedule(&t->rt);
  return rem__await(L, t, 0, sleep_k);
}

static int l_now(lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_now(rem__state(L)->loop) / 1000.0);
  return 1;
}

void rem__open_clock(lua_State *L, rem_state *st) {
  static const luaL_Reg fns[] = {
    {"sleep", l_sleep}, {"checkpoint", l_checkpoint}, {"now", l_now}, {NULL, NULL}};
  rem__setfuncs(L, fns, st);
}
