/* Tasks as Lua sees them: rem.spawn, rem.run, task:join/cancel/done.
 *
 * A task is a coroutine whose body is task_main: it calls the user's function under rem's
 * pcall, so an error closes every to-be-closed variable (suspending ones included) before
 * the task ends, and leaves `true, results...` or `false, error` on the coroutine's stack,
 * where they stay for join. The scheduler resumes the coroutine from libuv callbacks; that
 * resume is protected, so no Lua error reaches uv_run.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

static rem_ltask *check_task(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, REM_TASK_MT);
}

static void push_task(lua_State *L, rem_ltask *t) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref);
}

/* Appends the error at `err` to the error list of the task's group (user value 1 of the
 * group userdata) and remembers its index as the runtime payload. */
static void record_group_error(lua_State *L, rem_ltask *t, int err) {
  err = lua_absindex(L, err);
  if (t->group_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->group_ref);
  lua_getiuservalue(L, -1, 1);
  lua_Integer n = luaL_len(L, -1) + 1;
  lua_pushvalue(L, err);
  lua_rawseti(L, -2, n);
  lua_pop(L, 2);
  t->payload = (intptr_t)n;
}

/* Handler of the task's own pcall: an error nobody inside caught. Keeps a traceback (a
 * registry reference: a second user value would cost every task 16 bytes) for the report of
 * an error nobody joins. */
static int task_handler(lua_State *T) {
  rem_ltask *t = rem__current(T);
  if (t && !rem__is_cancelled(T, 1)) {
    luaL_traceback(T, T, NULL, 1);
    luaL_unref(T, LUA_REGISTRYINDEX, t->tb_ref);
    t->tb_ref = luaL_ref(T, LUA_REGISTRYINDEX);
  }
  return rem__unwind_handler(T);
}

/* Stack: [boundary, handler, results...] or [boundary, handler, error]. */
static int task_main_k(lua_State *T, int status, lua_KContext ctx) {
  (void)ctx;
  rem_ltask *t = rem__current(T);
  t->rt.unwind_boundary = NULL;
  if (status == LUA_OK || status == LUA_YIELD) {
    lua_pushboolean(T, 1);
    lua_replace(T, 2);
    lua_remove(T, 1);
    return lua_gettop(T);
  }
  if (!rem__is_cancelled(T, -1)) record_group_error(T, t, -1);
  lua_pushboolean(T, 0);
  lua_replace(T, 1);
  lua_remove(T, 2);
  return 2;
}

static int task_main(lua_State *T) {
  lua_pushlightuserdata(T, NULL);
  lua_pushcfunction(T, task_handler);
  lua_rotate(T, 1, 2);  /* [boundary, handler, fn, args...] */
  int status = lua_pcallk(T, lua_gettop(T) - 3, LUA_MULTRET, 2, 0, task_main_k);
  return task_main_k(T, status, 0);
}

static void release(rem_ltask *t) {
  lua_State *L = t->st->L;
  luaL_unref(L, LUA_REGISTRYINDEX, t->self_ref);
  t->self_ref = LUA_NOREF;
}

static void cancel_all(rem_state *st) {
  rem_list_t *node;
  for (node = st->tasks.next; node != &st->tasks; node = node->next)
    rem_task_cancel(&REM_CONTAINER_OF(node, rem_ltask, link)->rt);
}

/* The coroutine holds [ok, values...]: tell the runtime and drop what kept the task. */
static void finish(rem_ltask *t) {
  lua_State *T = t->T;
  t->nres = lua_gettop(T);
  t->ok = lua_toboolean(T, 1);
  int status = 0;
  if (!t->ok) status = rem__is_cancelled(T, 2) ? UV_ECANCELED : REM_EFAILED;
  rem_list_remove(&t->link);
  if (t->group_ref != LUA_NOREF) {
    luaL_unref(t->st->L, LUA_REGISTRYINDEX, t->group_ref);
    t->group_ref = LUA_NOREF;
    t->observed = 1;  /* the group collects it */
  }
  if (status == REM_EFAILED && !t->observed) {
    /* Reported at the end of rem.run, or when the task is collected, unless joined. The
     * traceback goes above the outcome on the coroutine's stack, for the report. */
    lua_rawgeti(T, LUA_REGISTRYINDEX, t->tb_ref);  /* nil when there is none */
    rem_list_push_back(&t->st->unobserved, &t->link);
  }
  luaL_unref(T, LUA_REGISTRYINDEX, t->tb_ref);
  t->tb_ref = LUA_NOREF;
  release(t);
  rem_task_finish(&t->rt, status, t->payload);
  if (t == t->st->main && !t->ok) cancel_all(t->st);
}

static void task_run(rem_task_t *rt) {
  rem_ltask *t = REM_CONTAINER_OF(rt, rem_ltask, rt);
  lua_State *T = t->T;
  int nargs = 0;
  if (t->nargs >= 0) {
    nargs = t->nargs;
    t->nargs = -1;
    if (rem_task_cancelled(rt)) {  /* cancelled before it ran: the body never runs */
      lua_settop(T, 0);
      lua_pushboolean(T, 0);
      rem__push_cancelled(T);
      finish(t);
      return;
    }
  }
  int nres;
  int status = lua_resume(T, t->st->L, nargs, &nres);
  if (status == LUA_YIELD) {
    if (nres == 1 && rem__is_marker(T, -1)) {
      lua_pop(T, 1);
      return;  /* waiting; what it waits for wakes it */
    }
    lua_pop(T, nres);
    lua_resetthread(T);
    lua_settop(T, 0);
    lua_pushboolean(T, 0);
    rem__push_error(T, NULL, "coroutine.yield: a task's own function cannot yield "
                    "(only coroutines it creates can)");
    if (t->group_ref != LUA_NOREF) record_group_error(T, t, -1);
  } else if (status != LUA_OK) {
    /* An error that escaped task_main (out of memory): keep it as the outcome. */
    int top = lua_gettop(T);
    lua_pushboolean(T, 0);
    lua_pushvalue(T, top);
    lua_rotate(T, 1, 2);
    lua_settop(T, 2);
    if (t->group_ref != LUA_NOREF) record_group_error(T, t, 2);
  }
  finish(t);
}

/* The task's userdata (pushed) and coroutine, whose body is `body` called with the `nvals`
 * values from `first` on L. */
static rem_ltask *new_task(lua_State *L, rem_state *st, lua_CFunction body, int first,
                           int nvals) {
  first = lua_absindex(L, first);
  rem_ltask *t = lua_newuserdatauv(L, sizeof *t, 1);
  memset(t, 0, sizeof *t);
  t->st = st;
  t->self_ref = LUA_NOREF;
  t->group_ref = LUA_NOREF;
  t->tb_ref = LUA_NOREF;
  t->nargs = nvals;
  rem_list_init(&t->link);
  rem_task_init(&t->rt, &st->sched, NULL, task_run);
  t->rt.interrupt = rem__may_interrupt;
  t->rt.data = t;
  luaL_setmetatable(L, REM_TASK_MT);
  lua_State *T = lua_newthread(L);
  rem__set_current(T, t);
  t->T = T;
  lua_setiuservalue(L, -2, 1);
  if (!lua_checkstack(T, nvals + 1)) luaL_error(L, "rem.spawn: too many arguments");
  lua_pushcfunction(T, body);
  for (int i = 0; i < nvals; i++) lua_pushvalue(L, first + i);
  lua_xmove(L, T, nvals);
  rem_list_push_back(&st->tasks, &t->link);
  lua_pushvalue(L, -1);
  t->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return t;
}

rem_ltask *rem__task_new(lua_State *L, rem_state *st, int fidx, int nargs) {
  return new_task(L, st, task_main, fidx, nargs + 1);
}

rem_ltask *rem__task_new_body(lua_State *L, rem_state *st, lua_CFunction body, int first,
                              int nargs) {
  return new_task(L, st, body, first, nargs);
}

static void observe(rem_ltask *t) {
  t->observed = 1;
  rem_list_remove(&t->link);  /* from st->unobserved, if it is there */
}

/* Returns the task's results, or raises its error. */
static int outcome(lua_State *L, rem_ltask *t) {
  observe(t);
  lua_State *T = t->T;
  int n = t->nres - 1;
  luaL_checkstack(L, n, "too many results");
  for (int i = 2; i <= t->nres; i++) {
    lua_pushvalue(T, i);
    lua_xmove(T, L, 1);
  }
  if (t->ok) return n;
  return lua_error(L);
}

static int join_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  rem__resumed(L);
  return outcome(L, check_task(L, 1));
}

static int t_join(lua_State *L) {
  rem_ltask *t = check_task(L, 1);
  if (t->rt.state == REM_TASK_DONE) return outcome(L, t);
  rem_ltask *me = rem__need_task(L, "task:join");
  if (me == t) return luaL_error(L, "task:join: a task cannot join itself");
  rem__check_cancel(L, me);
  lua_settop(L, 1);
  rem_task_wait_on(&me->rt, &t->rt.joiners, 1);
  return rem__await(L, me, 0, join_k);
}

static int t_cancel(lua_State *L) {
  rem_task_cancel(&check_task(L, 1)->rt);
  return 0;
}

static int t_done(lua_State *L) {
  lua_pushboolean(L, check_task(L, 1)->rt.state == REM_TASK_DONE);
  return 1;
}

static int t_tostring(lua_State *L) {
  rem_ltask *t = check_task(L, 1);
  const char *what = t->rt.state != REM_TASK_DONE ? "running" : t->ok ? "done" :
                     t->rt.status == UV_ECANCELED ? "cancelled" : "failed";
  lua_pushfstring(L, "rem.task (%s): %p", what, (void *)t);
  return 1;
}

static int l_spawn(lua_State *L) {
  rem_state *st = rem__state(L);
  rem__check_function(L, 1, "rem.spawn");
  rem_ltask *t = rem__task_new(L, st, 1, lua_gettop(L) - 1);
  rem_task_start(&t->rt);
  return 1;
}

/* Reports one error nobody joined, through the host's hook or on stderr. Protected:
 * __tostring is Lua code, and so may be the hook. */
static int report_protected(lua_State *L) {
  rem_ltask *t = lua_touserdata(L, 1);
  lua_State *T = t->T;
  lua_pushvalue(T, 2);
  if (lua_gettop(T) > t->nres) lua_pushvalue(T, t->nres + 1); else lua_pushnil(T);
  lua_xmove(T, L, 2);
  if (t->st->error_hook) {
    t->st->error_hook(L, t->st->error_hook_ud);
    return 0;
  }
  const char *msg = luaL_tolstring(L, -2, NULL);
  const char *tb = lua_tostring(L, -2);
  fprintf(stderr, "rem: a task failed and nobody joined it: %s\n%s%s", msg, tb ? tb : "",
          tb ? "\n" : "");
  fflush(stderr);
  return 0;
}

static void report(lua_State *L, rem_ltask *t) {
  t->observed = 1;
  rem_list_remove(&t->link);
  lua_pushcfunction(L, report_protected);
  lua_pushlightuserdata(L, t);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) lua_pop(L, 1);
}

void rem__report_unobserved(rem_state *st, lua_State *L) {
  while (!rem_list_empty(&st->unobserved))
    report(L, REM_CONTAINER_OF(st->unobserved.next, rem_ltask, link));
}

/* A task is collected: report an error nobody saw. A task still running is collected only
 * when the Lua state closes: unlink it from everything the scheduler could still touch. */
static int t_gc(lua_State *L) {
  rem_ltask *t = lua_touserdata(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, t->tb_ref);
  t->tb_ref = LUA_NOREF;
  if (t->rt.state != REM_TASK_DONE) {
    /* Undo the pending wait: a later completion must not wake freed memory. */
    if (t->rt.state == REM_TASK_WAITING && t->rt.abort) t->rt.abort(&t->rt);
    rem_timer_stop(&t->st->sched.timers, &t->rt.timer);
    rem_list_remove(&t->rt.link);
    rem_list_remove(&t->rt.scope_link);
    rem_scope_deinit(&t->rt.root);
    rem_list_remove(&t->link);
    return 0;
  }
  if (!t->observed && t->rt.status == REM_EFAILED) report(L, t);
  return 0;
}

/* Runs the loop until every task has finished. Returns 0, or 1 when tasks were left
 * waiting for something that could never happen and had to be cancelled, or 2 when even
 * that did not end them. */
static int drive(rem_state *st) {
  int deadlock = 0;
  while (st->sched.live > 0) {
    if (uv_run(st->loop, UV_RUN_ONCE) != 0 || st->sched.live == 0) continue;
    if (!rem_list_empty(&st->sched.ready)) continue;
    if (deadlock) return 2;
    deadlock = 1;
    cancel_all(st);
  }
  return deadlock;
}

/* The tracebacks of the tasks still waiting (at most 16), where they wait: for the error
 * of a deadlock that cancelling could not end. */
static void push_stuck(lua_State *L, rem_state *st) {
  lua_newtable(L);
  int n = 0;
  for (rem_list_t *node = st->tasks.next; node != &st->tasks && n < 16; node = node->next) {
    rem_ltask *t = REM_CONTAINER_OF(node, rem_ltask, link);
    lua_State *co = t->wait_L ? t->wait_L : t->T;
    luaL_traceback(L, co, NULL, 0);
    lua_rawseti(L, -2, ++n);
  }
}

static int l_run(lua_State *L) {
  rem_state *st = rem__state(L);
  if (rem__current(L)) {
    return luaL_error(L, "rem.run: called from inside a task "
                      "(use rem.spawn, or call the function directly)");
  }
  if (st->running) return luaL_error(L, "rem.run: already running");
  rem__check_function(L, 1, "rem.run");
  rem_ltask *main = rem__task_new(L, st, 1, lua_gettop(L) - 1);
  main->observed = 1;
  rem_task_start(&main->rt);
  st->running = 1;
  st->main = main;
  int deadlock = drive(st);
  st->running = 0;
  st->main = NULL;
  rem__report_unobserved(st, L);
  if (deadlock) {
    int stuck = (int)st->sched.live;
    if (main->rt.state == REM_TASK_DONE) {
      lua_pushvalue(main->T, main->nres >= 2 ? 2 : 1);
      lua_xmove(main->T, L, 1);
    } else {
      lua_pushnil(L);
    }
    int ctx = lua_gettop(L);
    if (stuck) {
      rem__push_error(L, "EDEADLK", "rem.run: deadlock: %d task(s) wait for something "
                      "that can never happen, even after being cancelled", stuck);
      push_stuck(L, st);
      lua_setfield(L, -2, "tasks");
    } else
      rem__push_error(L, "EDEADLK", "rem.run: deadlock: every task was waiting and "
                      "nothing could wake them; they were cancelled");
    if (main->rt.state == REM_TASK_DONE && !main->ok) {
      lua_pushvalue(L, ctx);
      lua_setfield(L, -2, "context");
    }
    return lua_error(L);
  }
  return outcome(L, main);
}

/* current() -> the running task, or nil outside tasks. */
static int l_current(lua_State *L) {
  rem_ltask *t = rem__current(L);
  if (!t) return 0;
  push_task(L, t);
  return 1;
}

void rem__open_task(lua_State *L, rem_state *st) {
  static const luaL_Reg methods[] = {
    {"join", t_join}, {"cancel", t_cancel}, {"done", t_done}, {NULL, NULL}};
  luaL_newmetatable(L, REM_TASK_MT);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, t_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushcfunction(L, t_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {
    {"spawn", l_spawn}, {"run", l_run}, {"current", l_current}, {NULL, NULL}};
  rem__setfuncs(L, fns, st);
}
