/* core.sleeper(enter_s [, exit_s [, enter_error [, exit_error]]]): a pool member written in
 * C, the template for resources that join rem.gather without a task (gather.c,
 * rem_cmember_class in internal.h). Its enter waits enter_s on rem's timer heap, its exit
 * exit_s (0: at once, inside the op), each failing with the given libuv error name
 * ("ECONNREFUSED") when one is given; cancelling an enter stops its timer. No coroutine is
 * involved at any point: the timer's callback reports to the pool. The specs use it to
 * check the C-member path through Lua; s:counts() -> enters, exits, cancels.
 */
#include <string.h>

#include "internal.h"
#include "pool.h"

#define REM_SLEEPER_MT "rem.sleeper"

typedef struct sleeper {
  rem_pool_member_t m;
  rem_timers_t *timers;
  rem_timer_t timer;
  uint64_t enter_ms, exit_ms;
  int enter_error, exit_error;
  int exiting;
  lua_Integer enters, exits, cancels;
} sleeper;

#define SLEEPER(m) REM_CONTAINER_OF(m, sleeper, m)

static void on_timer(rem_timer_t *timer) {
  sleeper *s = REM_CONTAINER_OF(timer, sleeper, timer);
  if (s->exiting)
    rem_pool_exited(&s->m, s->exit_error, 0, 0);
  else
    rem_pool_entered(&s->m, s->enter_error, 0);
}

static void start(rem_pool_member_t *m, uint64_t ms) {
  sleeper *s = SLEEPER(m);
  int rc = rem_timer_start(s->timers, &s->timer, ms, on_timer);
  if (rc == 0) return;
  if (s->exiting)
    rem_pool_exited(m, rc, 0, 0);
  else
    rem_pool_entered(m, rc, 0);
}

static void s_enter(rem_pool_member_t *m) {
  sleeper *s = SLEEPER(m);
  s->enters++;
  s->exiting = 0;
  start(m, s->enter_ms);
}

static void s_exit(rem_pool_member_t *m, int err, intptr_t payload) {
  (void)err;
  (void)payload;
  sleeper *s = SLEEPER(m);
  s->exits++;
  s->exiting = 1;
  if (s->exit_ms == 0)
    rem_pool_exited(m, s->exit_error, 0, 0);
  else
    start(m, s->exit_ms);
}

static void s_cancel(rem_pool_member_t *m) {
  sleeper *s = SLEEPER(m);
  s->cancels++;
  if (!rem_timer_active(&s->timer)) return;
  rem_timer_stop(s->timers, &s->timer);
  rem_pool_entered(m, UV_ECANCELED, 0);
}

static const rem_pool_member_ops_t sleeper_ops = {s_enter, s_exit, s_cancel};

static rem_pool_member_t *member_of(lua_State *L, int idx) {
  return &((sleeper *)luaL_checkudata(L, idx, REM_SLEEPER_MT))->m;
}

static const rem_cmember_class sleeper_class = {member_of, NULL};

/* An optional libuv error name (argument `arg`) as its code. */
static int error_arg(lua_State *L, int arg) {
  if (lua_isnoneornil(L, arg)) return 0;
  const char *name = luaL_checkstring(L, arg);
#define MATCH(code, _) if (strcmp(name, #code) == 0) return UV_##code;
  UV_ERRNO_MAP(MATCH)
#undef MATCH
  return luaL_error(L, "rem.core.sleeper: bad argument #%d (unknown error name '%s')", arg,
                    name);
}

static int l_sleeper(lua_State *L) {
  double enter_s = rem__check_number(L, 1, "rem.core.sleeper");
  double exit_s = lua_isnoneornil(L, 2) ? 0 : rem__check_number(L, 2, "rem.core.sleeper");
  int enter_error = error_arg(L, 3), exit_error = error_arg(L, 4);
  sleeper *s = lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  rem_pool_member_init(&s->m, &sleeper_ops);
  s->timers = &rem__state(L)->sched.timers;
  rem_timer_init(&s->timer);
  s->enter_ms = rem_timer_ms(enter_s);
  s->exit_ms = rem_timer_ms(exit_s);
  s->enter_error = enter_error;
  s->exit_error = exit_error;
  luaL_setmetatable(L, REM_SLEEPER_MT);
  return 1;
}

static int s_counts(lua_State *L) {
  sleeper *s = luaL_checkudata(L, 1, REM_SLEEPER_MT);
  lua_pushinteger(L, s->enters);
  lua_pushinteger(L, s->exits);
  lua_pushinteger(L, s->cancels);
  return 3;
}

void rem__open_sleeper(lua_State *L, rem_state *st) {
  static const luaL_Reg methods[] = {{"counts", s_counts}, {NULL, NULL}};
  luaL_newmetatable(L, REM_SLEEPER_MT);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushlightuserdata(L, (void *)&sleeper_class);
  lua_setfield(L, -2, REM_MEMBER_FIELD);
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"sleeper", l_sleeper}, {NULL, NULL}};
  rem__setfuncs(L, fns, st);
}
