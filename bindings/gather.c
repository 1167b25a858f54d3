/* rem.gather: exit pools (runtime/pool.c) over Lua values.
 *
 * Each member is one of:
 *  - a Lua cm, closable or function (an async constructor), entered through the cm protocol
 *    (cm.c) by a task of its own, its helper: the helper runs rem__cm_enter, reports to the
 *    pool, then waits; when the pool exits the member, it runs rem__cm_exit, reports and
 *    ends. What entering gave (how to exit it, and the member's value) stays on the
 *    helper's stack in between, so a Lua member costs its task and one slot in two arrays;
 *  - a C member: a userdata whose metatable's REM_MEMBER_FIELD points to a
 *    rem_cmember_class (internal.h). The pool runs its ops directly: no task, no coroutine.
 *
 * The task calling enter or exit (the driver) starts the pool's operation and waits until
 * the pool says it is over. While members enter, a cancellation of the driver is passed to
 * the pool (rem_pool_cancel: the helpers are cancelled, the C members' cancel ops run) and
 * the driver goes on waiting, uncancellably, for the rollback; exits are never cancelled.
 * Helpers are independent tasks, outside rem's list of live tasks while they wait for the
 * exit: a pool never exited leaves them waiting, which rem.run reports as a deadlock.
 * Error payloads are registry references (payload.c); the pool's failures become an
 * rem.ErrorGroup, and a pool cancelled while entering raises the cancellation itself.
 */
#include <string.h>

#include "internal.h"
#include "pool.h"

#define REM_POOL_MT "rem.ExitPool"

/* A member's place in the pool; for a C member only its pointer slot is used. */
typedef struct lmember {
  rem_pool_member_t m;
  rem_ltask *helper;          /* from its enter until its exit ends */
  unsigned started : 1;       /* the helper has run */
  unsigned cancel : 1;        /* cancelled before the helper ran */
  unsigned exit : 1;          /* the pool asked for the exit */
  unsigned waiting : 1;       /* the helper waits for it */
} lmember;

typedef struct lpool {
  rem_pool_t pool;
  rem_state *st;
  size_t n;
  lmember *members;           /* n of them, then the n pointers the pool reads: one block,
                                 a userdata (user value 2): freed with the pool, never
                                 before, even when __gc is called by hand */
  lua_State *spawn_L;         /* the driver's thread (the pool at index 1) during enter's start */
  rem_ltask *driver;          /* the task in enter or exit */
  int op;                     /* what it is doing */
  int waiting;                /* the driver is suspended */
  int cancelled;              /* its cancellation was passed on to the pool */
  int done;                   /* the operation ended, how: */
  int status;
  intptr_t payload;
  int err_ref;                /* exit: the error in flight, or LUA_NOREF */
  int finalised;              /* its __gc ran (called by hand, it may still be reached) */
} lpool;

enum { OP_ENTER = 1, OP_EXIT, OP_CLOSE };

#define LMEMBER(m) REM_CONTAINER_OF(m, lmember, m)
#define LPOOL(p) REM_CONTAINER_OF(p, lpool, pool)

static lpool *check_pool(lua_State *L, int idx) {
  lpool *lp = luaL_checkudata(L, idx, REM_POOL_MT);
  if (lp->finalised) luaL_error(L, "rem.ExitPool: the pool was finalised (its __gc ran)");
  return lp;
}

static rem_pool_member_t **member_ptrs(lpool *lp) {
  return (rem_pool_member_t **)(lp->members + lp->n);
}

static const char *state_name(const lpool *lp) {
  switch (lp->pool.state) {
  case REM_POOL_IDLE: return "not entered";
  case REM_POOL_ENTERING: return "being entered";
  case REM_POOL_ENTERED: return "already entered";
  default: return "being exited";
  }
}

/* ---- the pool's hooks: payloads are registry references -------------------------------- */

static intptr_t fold(rem_pool_t *p, rem_errlist_t *errors, intptr_t context) {
  return rem__fold_payloads(LPOOL(p)->st->L, errors, context);
}

static void drop(rem_pool_t *p, intptr_t payload) {
  rem__unref_payload(LPOOL(p)->st->L, payload);
}

static const rem_pool_hooks_t hooks = {fold, drop};

/* ---- a Lua member's helper task ---------------------------------------------------------- */

/* The helper's coroutine runs helper_main itself (rem__task_new_body: no task_main, no Lua
 * function under it), and calls a cm's `enter` directly rather than through rem__cm_enter:
 * while 100,000 members sleep in their enter (W4 of bench/), each coroutine holds three
 * frames (the helper, enter, what it suspends in) instead of five.
 *
 * The helper's stack: [pool, member (light), x, boundary, handler, kind, exiter, value]
 * once entered; the exit's call goes above. */
enum { H_POOL = 1, H_MEMBER = 2, H_X = 3, H_KIND = 6, H_EXITER = 7, H_VALUE = 8 };
enum { K_ENTERED = 1, K_ENTERED_CM, K_WOKEN, K_EXITED };

static int helper_k(lua_State *L, int status, lua_KContext ctx);

/* The helper's outcome, as a task: it reported everything to the pool. */
static int helper_done(lua_State *L) {
  lua_settop(L, 0);
  lua_pushboolean(L, 1);
  return 1;
}

/* The error on top ends the member's enter. */
static int enter_failed(lua_State *L, lmember *lm) {
  intptr_t payload;
  int code = rem__error_payload(L, "rem.gather: a member's enter", &payload);
  lm->helper = NULL;
  rem_pool_entered(&lm->m, code, payload);
  return helper_done(L);
}

static int run_exit(lua_State *L, lmember *lm) {
  rem_pool_t *p = lm->m.pool;
  lua_settop(L, H_VALUE);
  lua_pushnil(L);
  lua_pushnil(L);
  lua_pushcfunction(L, rem__cm_exit);
  lua_pushvalue(L, H_KIND);
  lua_pushvalue(L, H_EXITER);
  if (p->exit_err)
    rem__push_payload(L, p->exit_err, p->exit_payload);
  else
    lua_pushnil(L);
  return rem__pcall(L, H_VALUE, K_EXITED, helper_k);
}

static int helper_k(lua_State *L, int status, lua_KContext ctx) {
  lmember *lm = lua_touserdata(L, H_MEMBER);
  int ok = status == LUA_OK || status == LUA_YIELD;
  switch ((int)ctx) {
  case K_ENTERED:
  case K_ENTERED_CM: {
    rem__pcall_restore(L, H_X);
    if (!ok) return enter_failed(L, lm);
    if (ctx == K_ENTERED_CM) {  /* [..., values of enter]: as rem__cm_enter gives them */
      lua_settop(L, H_KIND);
      lua_pushinteger(L, REM_CM_CM);
      lua_pushvalue(L, H_X);
      lua_rotate(L, H_KIND, 2);
    }
    lua_settop(L, H_VALUE);  /* one value per member: the first */
    rem_pool_entered(&lm->m, 0, 0);
    if (lm->exit) return run_exit(L, lm);  /* rolled back at once */
    rem_ltask *t = rem__current(L);
    /* Out of the live list while it waits: rem.run's cancel_all must not reach a task that
     * only waits to clean up; the exit comes when the pool is exited. */
    rem_list_remove(&t->link);
    lm->waiting = 1;
    rem_task_wait(&t->rt, NULL);
    return rem__await(L, t, K_WOKEN, helper_k);
  }
  case K_WOKEN:
    rem__resumed(L);
    return run_exit(L, lm);
  default: {  /* K_EXITED */
    rem__pcall_restore(L, H_VALUE);
    lm->helper = NULL;
    if (ok) {
      rem_pool_exited(&lm->m, 0, 0, lua_toboolean(L, H_VALUE + 3));
    } else {
      intptr_t payload;
      int code = rem__error_payload(L, "rem.gather: a member's exit", &payload);
      rem_pool_exited(&lm->m, code, payload, 0);
    }
    return helper_done(L);
  }
  }
}

/* Whether looking `x` up cannot run Lua code (nor raise): a table whose __index chain, if
 * any, is made of tables. The helper then finds a cm's `enter` outside its pcall. */
static int plain_table(lua_State *L, int x) {
  int top = lua_gettop(L);
  int plain = 0;
  lua_pushvalue(L, x);
  for (int depth = 0; depth < 8 && lua_type(L, -1) == LUA_TTABLE; depth++) {
    if (!lua_getmetatable(L, -1)) {
      plain = 1;
      break;
    }
    lua_pushliteral(L, "__index");
    int t = lua_rawget(L, -2);
    if (t == LUA_TNIL) {
      plain = 1;
      break;
    }
  }
  lua_settop(L, top);
  return plain;
}

/* The helper's body: [pool, member, x]. */
static int helper_main(lua_State *L) {
  lmember *lm = lua_touserdata(L, H_MEMBER);
  rem_ltask *t = rem__current(L);
  rem_list_push_back(&t->st->tasks, &t->link);
  lm->started = 1;
  if (lm->cancel) rem_task_cancel(&t->rt);
  if (rem_task_cancelled(&t->rt)) {  /* cancelled before it began: nothing entered */
    rem__push_cancelled(L);
    return enter_failed(L, lm);
  }
  lua_settop(L, H_X);
  lua_pushnil(L);
  lua_pushnil(L);
  if (plain_table(L, H_X) && rem__cm_kind(L, H_X, REM_CM_KEEP_METHODS) == REM_CM_CM) {
    lua_remove(L, -2);      /* the `exit` found too: the exit looks it up when it runs */
    lua_pushvalue(L, H_X);  /* x:enter(), its `enter` being on top */
    return rem__pcall(L, H_X, K_ENTERED_CM, helper_k);
  }
  lua_settop(L, H_X + 2);
  lua_pushcfunction(L, rem__cm_enter);
  lua_pushvalue(L, H_X);
  return rem__pcall(L, H_X, K_ENTERED, helper_k);
}

/* ---- a Lua member's ops ------------------------------------------------------------------ */

/* The helper is made on the driver's thread (enters start only inside rem_pool_enter) and
 * kept out of the list of live tasks until it runs: a task cancelled before it first runs
 * never runs, and this one must run to report to the pool. */
static void lua_enter(rem_pool_member_t *m) {
  lmember *lm = LMEMBER(m);
  lpool *lp = LPOOL(m->pool);
  lua_State *L = lp->spawn_L;
  luaL_checkstack(L, 10, NULL);  /* our 4, and rem__task_new_body's own */
  lua_pushvalue(L, 1);
  lua_pushlightuserdata(L, lm);
  lua_getiuservalue(L, 1, 1);
  lua_rawgeti(L, -1, (lua_Integer)(lm - lp->members) + 1);
  lua_remove(L, -2);
  rem_ltask *t = rem__task_new_body(L, lp->st, helper_main, -3, 3);
  lua_pop(L, 4);
  rem_list_remove(&t->link);
  lm->helper = t;
  lm->started = lm->cancel = lm->exit = lm->waiting = 0;
  rem_task_start(&t->rt);
}

static void lua_exit(rem_pool_member_t *m, int err, intptr_t payload) {
  (void)err;
  (void)payload;  /* the helper reads them from the pool when it runs */
  lmember *lm = LMEMBER(m);
  lm->exit = 1;
  if (!lm->waiting) return;  /* it goes on to the exit by itself */
  lm->waiting = 0;
  rem_ltask *t = lm->helper;
  rem_list_push_back(&t->st->tasks, &t->link);
  rem_task_wake(&t->rt, 0);
}

static void lua_cancel(rem_pool_member_t *m) {
  lmember *lm = LMEMBER(m);
  if (!lm->helper) return;
  if (lm->started)
    rem_task_cancel(&lm->helper->rt);
  else
    lm->cancel = 1;
}

static const rem_pool_member_ops_t lua_member_ops = {lua_enter, lua_exit, lua_cancel};

/* ---- the driver -------------------------------------------------------------------------- */

static void on_done(rem_pool_t *p, int status, intptr_t payload, void *arg) {
  (void)p;
  lpool *lp = arg;
  lp->done = 1;
  lp->status = status;
  lp->payload = payload;
  if (lp->waiting) {
    lp->waiting = 0;
    rem_task_wake(&lp->driver->rt, 0);
  }
}

/* Makes the driver's wait cancellable; what to do about it is decided when it resumes. */
static void abort_wait(rem_task_t *task) {
  (void)task;
}

static int drive_k(lua_State *L, int status, lua_KContext ctx);

/* The C member at `i` (its userdata at `idx`): its class. */
static const rem_cmember_class *cmember_class(lua_State *L, int idx) {
  const rem_cmember_class *cls = NULL;
  if (luaL_getmetafield(L, idx, REM_MEMBER_FIELD) == LUA_TLIGHTUSERDATA)
    cls = lua_touserdata(L, -1);
  if (cls) lua_pop(L, 1);
  return cls;
}

/* Pushes each member's value, in member order: a Lua member's from its helper's stack
 * (every helper is waiting for its exit now), a C member's from its class. */
static int push_values(lua_State *L, lpool *lp) {
  luaL_checkstack(L, (int)lp->n + 4, "rem.gather: too many values");
  rem_pool_member_t **ptrs = member_ptrs(lp);
  lua_getiuservalue(L, 1, 1);
  int list = lua_gettop(L);
  for (size_t i = 0; i < lp->n; i++) {
    if (ptrs[i] == &lp->members[i].m) {
      lua_State *T = lp->members[i].helper->T;
      lua_pushvalue(T, H_VALUE);
      lua_xmove(T, L, 1);
    } else {
      lua_rawgeti(L, list, (lua_Integer)i + 1);
      const rem_cmember_class *cls = cmember_class(L, -1);
      if (cls && cls->push_value) {
        cls->push_value(L, lua_gettop(L), ptrs[i]);
        lua_remove(L, -2);
      }
    }
  }
  lua_remove(L, list);
  return (int)lp->n;
}

/* The operation is over: the driver lets go and gets its result. */
static int finish(lua_State *L, lpool *lp) {
  int op = lp->op;
  int status = lp->status;
  intptr_t payload = lp->payload;
  lp->driver = NULL;
  lp->op = 0;
  lp->done = 0;
  lp->cancelled = 0;
  lp->payload = 0;
  rem__unref_payload(L, lp->err_ref);
  lp->err_ref = LUA_NOREF;
  lua_settop(L, 1);
  if (status) {
    rem__push_payload(L, status, payload);
    rem__unref_payload(L, payload);
    return lua_error(L);
  }
  if (op == OP_ENTER) return push_values(L, lp);
  if (op == OP_EXIT) {
    lua_pushboolean(L, lp->pool.suppressed);
    return 1;
  }
  return 0;
}

static int drive(lua_State *L, lpool *lp) {
  if (lp->done) return finish(L, lp);
  rem_ltask *t = lp->driver;
  lp->waiting = 1;
  /* Only an enter not yet cancelled may be interrupted; then the members are told. */
  rem_task_wait(&t->rt, lp->op == OP_ENTER && !lp->cancelled ? abort_wait : NULL);
  return rem__await(L, t, 0, drive_k);
}

static int drive_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  lpool *lp = lua_touserdata(L, 1);
  rem_ltask *t = lp->driver;
  t->wait_L = NULL;
  lp->waiting = 0;
  if (t->rt.wake_status == UV_ECANCELED) {
    t->rt.wake_status = 0;
    lp->cancelled = 1;
    rem_pool_cancel(&lp->pool);
  }
  return drive(L, lp);
}

static void begin(lpool *lp, rem_ltask *t, int op) {
  lp->driver = t;
  lp->op = op;
  lp->done = 0;
  lp->cancelled = 0;
  lp->waiting = 0;
}

/* pool:enter() -> the members' values (the first of each), in member order. */
static int p_enter(lua_State *L) {
  lpool *lp = check_pool(L, 1);
  lua_settop(L, 1);
  if (lp->pool.state != REM_POOL_IDLE)
    return luaL_error(L, "pool:enter: the pool is %s", state_name(lp));
  rem_ltask *t = rem__need_task(L, "pool:enter");
  rem__check_cancel(L, t);
  begin(lp, t, OP_ENTER);
  lp->spawn_L = L;
  rem_pool_enter(&lp->pool, on_done, lp);
  lp->spawn_L = NULL;
  return drive(L, lp);
}

/* Exits with the error at 2 (nil or false: none). */
static int do_exit(lua_State *L, int op, const char *fname) {
  lua_settop(L, 2);
  lpool *lp = check_pool(L, 1);
  if (!lua_toboolean(L, 2)) {
    lua_pushnil(L);
    lua_replace(L, 2);
  }
  if (lp->pool.state != REM_POOL_ENTERED) {
    /* `local p <close> = rem.gather(...)` whose enter failed: nothing is entered. */
    if (op == OP_CLOSE && lp->pool.state == REM_POOL_IDLE && !lua_isnil(L, 2)) return 0;
    return luaL_error(L, "%s: the pool is %s", fname, state_name(lp));
  }
  begin(lp, rem__need_task(L, fname), op);
  int code = 0;
  intptr_t payload = 0;
  if (!lua_isnil(L, 2)) {
    code = rem__is_cancelled(L, 2) ? UV_ECANCELED : REM_EFAILED;
    lua_pushvalue(L, 2);
    lp->err_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    payload = lp->err_ref;
  }
  rem_pool_exit(&lp->pool, code, payload, on_done, lp);
  return drive(L, lp);
}

/* pool:exit(err) -> true if err came in and every member suppressed it. */
static int p_exit(lua_State *L) {
  return do_exit(L, OP_EXIT, "pool:exit");
}

/* __close(pool, err): as exit (a suppression cannot stop err: a Lua limit). */
static int p_close(lua_State *L) {
  return do_exit(L, OP_CLOSE, "pool:__close");
}

/* ---- making pools ------------------------------------------------------------------------ */

/* rem.gather(cm_or_fn, ...) -> pool. */
static int l_gather(lua_State *L) {
  int n = lua_gettop(L);
  for (int i = 1; i <= n; i++)
    if (!cmember_class(L, i)) rem__cm_check(L, i, i, "rem.gather", 0);
  lpool *lp = lua_newuserdatauv(L, sizeof *lp, 2);
  memset(lp, 0, sizeof *lp);
  rem_pool_init(&lp->pool, &hooks);  /* safe to collect from here on */
  lp->st = rem__state(L);
  lp->err_ref = LUA_NOREF;
  luaL_setmetatable(L, REM_POOL_MT);
  if (n > 0) {
    lp->members = lua_newuserdatauv(L, (size_t)n * (sizeof *lp->members +
                                                    sizeof(rem_pool_member_t *)), 0);
    lua_setiuservalue(L, -2, 2);
  }
  lp->n = (size_t)n;
  lua_createtable(L, n, 0);
  rem_pool_member_t **ptrs = member_ptrs(lp);
  for (int i = 0; i < n; i++) {
    lmember *lm = &lp->members[i];
    memset(lm, 0, sizeof *lm);
    rem_pool_member_init(&lm->m, &lua_member_ops);
    const rem_cmember_class *cls = cmember_class(L, i + 1);
    ptrs[i] = cls ? cls->member(L, i + 1) : &lm->m;
    lua_pushvalue(L, i + 1);
    lua_rawseti(L, -2, i + 1);
  }
  rem_pool_set(&lp->pool, ptrs, lp->n);
  lua_setiuservalue(L, -2, 1);
  return 1;
}

/* pool:recreate() -> a new pool over the same members, each recreated when it can be (so
 * that pool:wrap(fn) enters a fresh pool on every call). */
static int p_recreate(lua_State *L) {
  lpool *lp = check_pool(L, 1);
  lua_settop(L, 1);
  luaL_checkstack(L, (int)lp->n + 4, "rem.gather: too many members");
  lua_getiuservalue(L, 1, 1);
  lua_pushlightuserdata(L, lp->st);
  lua_pushcclosure(L, l_gather, 1);
  for (size_t i = 1; i <= lp->n; i++) {
    lua_rawgeti(L, 2, (lua_Integer)i);
    int t = lua_type(L, -1);
    if ((t == LUA_TTABLE || t == LUA_TUSERDATA) && !cmember_class(L, -1) &&
        rem__cm_kind(L, -1, 0) == REM_CM_CM) {
      lua_getfield(L, -1, "recreate");
      if (lua_isfunction(L, -1)) {
        lua_insert(L, -2);
        lua_call(L, 1, 1);
      } else {
        lua_pop(L, 1);
      }
    }
  }
  lua_call(L, (int)lp->n, 1);
  return 1;
}

static int p_tostring(lua_State *L) {
  lpool *lp = luaL_checkudata(L, 1, REM_POOL_MT);
  if (lp->finalised) {
    lua_pushfstring(L, "rem.ExitPool (finalised): %p", (void *)lp);
    return 1;
  }
  static const char *const states[] = {"idle", "entering", "entered", "exiting"};
  lua_pushfstring(L, "rem.ExitPool (%d member%s, %s): %p", (int)lp->n, lp->n == 1 ? "" : "s",
                  states[lp->pool.state], (void *)lp);
  return 1;
}

static int p_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_pool(L, 1)->n);
  return 1;
}

/* Whether an operation runs or a Lua member's helper lives: they hold the pool, so only a
 * __gc called by hand can see it so. */
static int in_use(const lpool *lp) {
  if (lp->driver) return 1;
  for (size_t i = 0; i < lp->n; i++)
    if (lp->members[i].helper) return 1;
  return 0;
}

/* A pool is collected only when no operation runs and no helper waits (they hold it). C
 * members left entered are let go, so they can join another pool. A pool in use can only
 * see a __gc called by hand (or lua_close's, when a pool was never exited): it is ignored,
 * and the pool goes on. Otherwise the pool is finalised once: its methods refuse it after
 * (the members' block is freed by the collector with the pool, never here). */
static int p_gc(lua_State *L) {
  lpool *lp = luaL_checkudata(L, 1, REM_POOL_MT);
  if (lp->finalised || in_use(lp)) return 0;
  lp->finalised = 1;
  rem_pool_member_t **ptrs = lp->members ? member_ptrs(lp) : NULL;
  for (size_t i = 0; i < lp->n; i++) {
    if (ptrs[i]->pool != &lp->pool) continue;
    ptrs[i]->pool = NULL;
    ptrs[i]->entered = ptrs[i]->busy = 0;
  }
  rem_pool_deinit(&lp->pool);
  lp->n = 0;
  return 0;
}

void rem__open_gather(lua_State *L, rem_state *st) {
  static const luaL_Reg methods[] = {
    {"enter", p_enter}, {"exit", p_exit}, {"recreate", p_recreate}, {NULL, NULL}};
  luaL_newmetatable(L, REM_POOL_MT);
  luaL_newlib(L, methods);
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "pool_methods");  /* rem (init.lua) adds wrap */
  lua_setfield(L, -2, "__index");
  static const luaL_Reg mms[] = {
    {"__close", p_close}, {"__gc", p_gc}, {"__len", p_len}, {"__tostring", p_tostring},
    {NULL, NULL}};
  luaL_setfuncs(L, mms, 0);
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"gather", l_gather}, {NULL, NULL}};
  rem__setfuncs(L, fns, st);
  rem__open_sleeper(L, st);
}
