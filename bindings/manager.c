/* rem.Manager and rem.Collection: Lua classes; collections over runtime/manager.c and
 * collection.c.
 *
 * An instance is a plain Lua table of a class (the base classes are made here, and
 * lua/rem/manager.lua adds extend). A plain manager's state is its metatable, and its
 * operations run inline (manager_plain.c) — but while a collection holds it. A collection's
 * state, and that of each manager it holds, is a userdata found through a weak-keyed
 * registry table, made on first use, holding the runtime's state machine. Lua methods
 * (acquire_resources, ...) run as the machine's ops, in a task called the driver:
 *  - the task that calls a collection's enter/exit/acquire/release drives it inline: the method
 *    starts the operation, then runs the steps the machine asks for (acquire, release on
 *    error) in the same task, with continuations (it may suspend);
 *  - a collection's children are driven by a helper task each, spawned when the collection's
 *    runtime starts their operation, so they acquire and release concurrently. Helpers hang
 *    below a scope of the collection's driver: cancelling that task cancels them. The
 *    collection's driver waits (uncancellably: cancellation reaches the children through
 *    the scope tree) until the runtime says the operation ended.
 * Releases run inside a shielded scope pushed on the driver, so cleanup completes even in a
 * cancelled or timed-out task. Error payloads are registry references to error values.
 */
#include <stdlib.h>
#include <string.h>

#include "collection.h"
#include "internal.h"
#include "lmanager.h"
#include "manager.h"

#define REM_MANAGER_STATE_MT "rem.manager.state"
/* Registry keys (their addresses): instance -> state userdata (weak keys); light(lmgr) ->
 * state userdata (weak values). */
static const char instances_key = 0, states_key = 0;
#define KIND_FIELD "__rem_kind"                /* in a class: "manager" or "collection" */

enum { KIND_PLAIN = REM_KIND_PLAIN, KIND_COLLECTION = REM_KIND_COLLECTION };
enum { STEP_NONE, STEP_ACQUIRE, STEP_RELEASE };
enum {
  CALLER_WORKER,
  CALLER_ACQUIRE,
  CALLER_RELEASE = REM_CALLER_RELEASE,
  CALLER_EXIT = REM_CALLER_EXIT,
  CALLER_CLOSE = REM_CALLER_CLOSE
};
/* Continuations of the driver; the context packs the stack index of the state userdata. */
enum { K_ACQUIRE = 1, K_RELEASE, K_MANAGERS, K_WAIT };
#define CTX(base, k) ((lua_KContext)(base) << 3 | (k))

/* Uservalues of the state userdata. */
enum { UV_INSTANCE = 1, UV_CHILDREN = 2, UV_GIVEN = 3, UV_COUNT = 3 };

typedef struct lmgr {
  rem_collection_t coll;      /* coll.manager is the state machine of both kinds */
  rem_state *st;
  int kind;
  const char *cls;            /* "rem.Manager" or "rem.Collection", for messages */
  rem_ltask *driver;          /* the task running the operation's steps, during one */
  int worker;                 /* the driver is a helper spawned for this operation */
  int started;                /* (helper) it has run */
  int cancel_requested;       /* (helper) cancelled before it ran */
  int waiting;                /* the driver is suspended until a step or the end */
  int step;                   /* asked by the machine, not yet run */
  int err;                    /* the release step's error in flight, and its payload */
  intptr_t err_payload;
  int finished;               /* the operation ended (ops.settled) */
  int attempted;              /* acquire_resources was called in this operation */
  int held;                   /* listed in a collection's acquisition */
  int caller;                 /* the inline method, for its result */
  const char *method;         /* ... and for messages */
  int err_ref;                /* inline release: the error given to it, or LUA_NOREF */
  rem_scope_t shield;         /* pushed on the driver while it releases */
  int shield_on;
  rem_scope_t children;       /* collection: the parent of the helpers during a step */
  int children_on;
  rem_scope_t *parent_scope;  /* a child's: its collection's `children` scope */
} lmgr;

#define LMGR(m) REM_CONTAINER_OF(m, lmgr, coll.manager)

static int drive(lua_State *L, lmgr *lm, int base);

/* ---- instances and their state -------------------------------------------------------- */

#define kind_of rem__manager_kind

static void push_state(lua_State *L, lmgr *lm) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &states_key);
  lua_rawgetp(L, -1, lm);
  lua_remove(L, -2);
}

static const rem_manager_ops_t lm_ops;
static const rem_collection_hooks_t lm_hooks;

/* A fresh state in the safe idle state, its uservalues empty. */
static void init_lmgr(lmgr *lm, rem_state *st, int kind) {
  memset(lm, 0, sizeof *lm);
  rem_collection_init(&lm->coll, &lm_hooks);
  lm->coll.manager.ops = &lm_ops;  /* both kinds: the steps run in Lua tasks */
  lm->st = st;
  lm->kind = kind;
  lm->cls = kind == KIND_COLLECTION ? "rem.Collection" : "rem.Manager";
  lm->err_ref = LUA_NOREF;
}

/* Pushes the state of the manager instance at `idx`, made on first use; returns NULL and
 * pushes nothing when the value is not a manager. (A plain manager has one only while a
 * collection holds it: release_children drops it.) */
static lmgr *push_lmgr(lua_State *L, rem_state *st, int idx) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TTABLE) return NULL;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &instances_key);
  int inst = lua_gettop(L);
  lua_pushvalue(L, idx);
  if (lua_rawget(L, inst) == LUA_TUSERDATA) {
    lua_remove(L, inst);
    return lua_touserdata(L, -1);
  }
  lua_pop(L, 1);
  int kind = kind_of(L, idx);
  if (kind < 0) {
    lua_pop(L, 1);
    return NULL;
  }
  lmgr *lm = lua_newuserdatauv(L, sizeof *lm, UV_COUNT);
  init_lmgr(lm, st, kind);
  luaL_setmetatable(L, REM_MANAGER_STATE_MT);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &states_key);
  lua_pushvalue(L, -2);
  lua_rawsetp(L, -2, lm);                /* states[lm] = state */
  lua_pop(L, 1);
  lua_pushvalue(L, idx);
  lua_setiuservalue(L, -2, UV_INSTANCE);
  lua_pushvalue(L, idx);
  lua_pushvalue(L, -2);
  lua_rawset(L, inst);                   /* instances[instance] = state */
  lua_remove(L, inst);
  return lm;
}

/* Forgets the state of the instance at `idx` (a plain manager a collection let go). */
static void drop_lmgr(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &instances_key);
  lua_pushvalue(L, idx);
  lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* The state of the instance at `idx` if it has one (pushed), else NULL (nothing pushed). */
static lmgr *find_lmgr(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (kind_of(L, idx) < 0) return NULL;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &instances_key);
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) == LUA_TUSERDATA) {
    lua_remove(L, -2);
    return lua_touserdata(L, -1);
  }
  lua_pop(L, 2);
  return NULL;
}

/* The state of `self` (argument 1) of the method `method`, pushed; raises when self is not
 * a manager instance. */
static lmgr *check_self(lua_State *L, const char *method) {
  lmgr *lm = push_lmgr(L, rem__state(L), 1);
  if (!lm) {
    luaL_error(L, "rem.Manager:%s: bad self (a rem.Manager instance expected, got %s; "
               "call it with ':')", method, luaL_typename(L, 1));
  }
  return lm;
}

static const char *state_name(const lmgr *lm) {
  if (lm->held && lm->coll.manager.state != REM_MANAGER_IDLE) return "held by a rem.Collection";
  switch (lm->coll.manager.state) {
  case REM_MANAGER_IDLE: return "not acquired";
  case REM_MANAGER_ACQUIRING: return "being acquired";
  case REM_MANAGER_ACQUIRED: return "already acquired";
  default: return "being released";
  }
}

/* ---- payloads: registry references to error values (bindings/payload.c) ------------------ */

/* The error on top, made fit to travel: nil and false become an rem.Error (an exit must
 * always see an error when something failed). Returns its runtime code. */
static int error_code(lua_State *L, lmgr *lm, const char *what) {
  rem__manager_fit_error(L, lm->cls, what);
  return rem__is_cancelled(L, -1) ? UV_ECANCELED : REM_EFAILED;
}

/* Collection hooks: the failures become an rem.ErrorGroup, with the error in flight as its
 * context. They run from whatever task ends the operation, on the main thread's stack. */
static intptr_t fold_errors(rem_collection_t *c, const rem_errlist_t *errors,
                            intptr_t context) {
  return rem__fold_payloads(REM_CONTAINER_OF(c, lmgr, coll)->st->L, errors, context);
}

static void drop_error(rem_collection_t *c, intptr_t payload) {
  rem__unref_payload(REM_CONTAINER_OF(c, lmgr, coll)->st->L, payload);
}

static const rem_collection_hooks_t lm_hooks = {fold_errors, drop_error};

/* ---- the machine's ops: post a step to the driver --------------------------------------- */

static void wake_driver(lmgr *lm) {
  if (!lm->waiting) return;
  lm->waiting = 0;
  rem_task_wake(&lm->driver->rt, 0);
}

static int worker_main(lua_State *L);

/* A child of a collection gets a helper task to drive it. It is created on the main
 * thread's stack (the op may run from any task's callback) and kept out of the list of
 * live tasks until it runs: a task cancelled before it first runs never runs, and this one
 * must run to report to the collection (it then sees the cancellation itself). */
static void spawn_worker(lmgr *lm) {
  lua_State *L = lm->st->L;
  luaL_checkstack(L, 4, NULL);
  lua_pushcfunction(L, worker_main);
  push_state(L, lm);
  rem_ltask *w = rem__task_new(L, lm->st, -2, 1);
  lua_pop(L, 3);
  rem_list_remove(&w->link);
  lm->driver = w;
  lm->worker = 1;
  lm->started = 0;
  lm->cancel_requested = 0;
  lm->caller = CALLER_WORKER;
  lm->method = "acquire";
  rem_task_start(&w->rt);
}

static void post_step(lmgr *lm, int step, int err, intptr_t payload) {
  lm->step = step;
  lm->err = err;
  lm->err_payload = payload;
  lm->finished = 0;
  if (!lm->driver)
    spawn_worker(lm);
  else
    wake_driver(lm);
}

static void op_acquire(rem_manager_t *m) {
  post_step(LMGR(m), STEP_ACQUIRE, 0, 0);
}

static void op_release(rem_manager_t *m, int err, intptr_t payload) {
  post_step(LMGR(m), STEP_RELEASE, err, payload);
}

static void op_cancel(rem_manager_t *m) {
  lmgr *lm = LMGR(m);
  if (!lm->driver || !lm->worker) return;  /* an inline driver is cancelled as a task */
  if (lm->started)
    rem_task_cancel(&lm->driver->rt);
  else
    lm->cancel_requested = 1;
}

static void op_settled(rem_manager_t *m, int status) {
  (void)status;
  lmgr *lm = LMGR(m);
  lm->finished = 1;
  if (lm->driver) wake_driver(lm);
}

static const rem_manager_ops_t lm_ops = {op_acquire, op_release, op_cancel, op_settled};

/* ---- scopes ----------------------------------------------------------------------------- */

static void push_shield(lmgr *lm, rem_ltask *t) {
  if (lm->shield_on) return;
  rem_scope_init(&lm->shield, &lm->st->sched, t->rt.scope);
  lm->shield.shielded = 1;
  rem_task_push_scope(&t->rt, &lm->shield);
  lm->shield_on = 1;
}

static void pop_shield(lmgr *lm, rem_ltask *t) {
  if (!lm->shield_on) return;
  /* Scopes a release left open (a group never closed) go first. */
  while (t->rt.scope != &lm->shield && t->rt.scope != &t->rt.root)
    rem_task_pop_scope(&t->rt, t->rt.scope);
  rem_task_pop_scope(&t->rt, &lm->shield);
  rem_scope_deinit(&lm->shield);
  lm->shield_on = 0;
}

static void close_children(lmgr *lm) {
  if (!lm->children_on) return;
  rem_scope_deinit(&lm->children);
  lm->children_on = 0;
}

/* The helpers of a step hang below the driver's innermost scope. A driver running cleanup
 * is not cancelled by the scopes outside it, and neither are the helpers working for it. */
static void open_children(lua_State *L, lmgr *lm, rem_ltask *t) {
  close_children(lm);
  rem_scope_init(&lm->children, &lm->st->sched, t->rt.scope);
  if (!lm->worker && (t->rt.unwind_boundary || rem__cleanup_depth(L, t) > 0))
    lm->children.shielded = 1;
  lm->children_on = 1;
}

/* ---- the driver ------------------------------------------------------------------------- */

/* Reports a failure (the error on top of the stack) to the machine. */
static void report_failure(lua_State *L, lmgr *lm, const char *what, int chain) {
  int code = error_code(L, lm, what);
  if (chain && lm->err) {
    rem__push_payload(L, lm->err, lm->err_payload);
    rem__chain(L, -2, -1);
    lua_replace(L, -3);
    lua_pop(L, 1);
  }
  intptr_t ref = luaL_ref(L, LUA_REGISTRYINDEX);
  rem_manager_done(&lm->coll.manager, code, ref);
}

static int validate_children(lua_State *L, lmgr *lm, int base, int list);
static int run_method(lua_State *L, lmgr *lm, int base, const char *name, int with_err,
                      int k);

static int drive_k(lua_State *L, int status, lua_KContext ctx) {
  int base = (int)(ctx >> 3);
  lmgr *lm = lua_touserdata(L, base);
  int ok = status == LUA_OK || status == LUA_YIELD;
  switch ((int)(ctx & 7)) {
  case K_ACQUIRE:
    rem__pcall_restore(L, base);
    if (ok)
      rem_manager_done(&lm->coll.manager, 0, 0);
    else
      report_failure(L, lm, "acquire_resources", 0);
    break;
  case K_RELEASE:
    rem__pcall_restore(L, base);
    if (ok)
      rem_manager_done(&lm->coll.manager, 0, 0);
    else
      report_failure(L, lm, lm->err ? "release_resources_on_error" : "release_resources", 1);
    break;
  case K_MANAGERS:
    rem__pcall_restore(L, base);
    if (!ok) {
      report_failure(L, lm, "resource_managers", 0);
      break;
    }
    lua_settop(L, base + 3);
    if (validate_children(L, lm, base, base + 3) != 0) {
      report_failure(L, lm, "resource_managers", 0);
      break;
    }
    open_children(L, lm, lm->driver);
    /* The runtime copies the children into its slots when the acquisition starts. */
    rem_manager_t **kids = lm->coll.data;
    rem_collection_start_acquire(&lm->coll);
    free(kids);
    lm->coll.data = NULL;
    lm->coll.children = NULL;
    lm->coll.nchildren = 0;
    break;
  case K_WAIT:
    rem__resumed(L);
    lm->waiting = 0;
    break;
  }
  return drive(L, lm, base);
}

/* Calls the instance's method `name` (with the error in flight when `with_err`) under rem's
 * pcall, going on at drive_k. Stack from `base`: [state, boundary, handler, fn, self, err]. */
static int run_method(lua_State *L, lmgr *lm, int base, const char *name, int with_err,
                      int k) {
  /* drive left the stack at `base`. Performance: this is rem__pcall with the boundary and
   * handler slots pushed in place (not pushed as nil, then replaced), and an inline caller's
   * instance is its argument 1 (checked by check_self), not looked up in the state. */
  rem_ltask *cur = rem__current(L);
  lua_pushlightuserdata(L, cur ? (void *)cur->rt.unwind_boundary : NULL);
  lua_pushcfunction(L, rem__unwind_handler);
  if (!lm->worker) {
    lua_getfield(L, 1, name);
    lua_pushvalue(L, 1);
  } else {
    lua_getiuservalue(L, base, UV_INSTANCE);
    lua_getfield(L, -1, name);
    lua_insert(L, -2);
  }
  if (with_err) rem__push_payload(L, lm->err, lm->err_payload);
  lua_KContext ctx = CTX(base, k);
  int status = lua_pcallk(L, lua_gettop(L) - (base + 3), LUA_MULTRET, base + 2, ctx, drive_k);
  return drive_k(L, status, ctx);
}

/* Lets the children of the collection's last acquisition go. */
static void release_children(lua_State *L, lmgr *lm, int base) {
  lua_getiuservalue(L, base, UV_CHILDREN);
  if (lua_istable(L, -1)) {
    lua_Integer n = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      lmgr *child = push_lmgr(L, lm->st, -1);
      if (child) {
        child->held = 0;
        child->parent_scope = NULL;
        lua_pop(L, 1);
        if (child->kind == KIND_PLAIN) {
          /* Free again: its state goes back to its metatable (manager_plain.c). */
          rem__manager_set_role(L, -1, REM_ROLE_IDLE);
          drop_lmgr(L, -1);
        }
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  lua_pushnil(L);
  lua_setiuservalue(L, base, UV_CHILDREN);
}

static int finish(lua_State *L, lmgr *lm, int base);

/* Runs the steps the machine asks for until the operation is over. */
/* `lm` is the state at `base` (its callers have it at hand). */
static int drive(lua_State *L, lmgr *lm, int base) {
  rem_ltask *t = lm->driver;
  for (;;) {
    lua_settop(L, base);
    int step = lm->step;
    lm->step = STEP_NONE;
    if (step == STEP_ACQUIRE) {
      lm->attempted = 0;
      if (lm->worker && rem_task_cancelled(&t->rt)) {
        /* Cancelled before it began: nothing was attempted, nothing to release. */
        rem__push_cancelled(L);
        rem_manager_done(&lm->coll.manager, UV_ECANCELED, luaL_ref(L, LUA_REGISTRYINDEX));
        continue;
      }
      lm->attempted = 1;
      return run_method(L, lm, base, lm->kind == KIND_PLAIN ? "acquire_resources"
                        : "resource_managers", 0, lm->kind == KIND_PLAIN ? K_ACQUIRE
                        : K_MANAGERS);
    }
    if (step == STEP_RELEASE) {
      push_shield(lm, t);
      if (lm->kind == KIND_COLLECTION) {
        open_children(L, lm, t);
        rem_collection_start_release(&lm->coll, lm->err, lm->err_payload);
        continue;
      }
      if (!lm->attempted) {
        rem_manager_done(&lm->coll.manager, 0, 0);
        continue;
      }
      return run_method(L, lm, base, lm->err ? "release_resources_on_error"
                        : "release_resources", lm->err != 0, K_RELEASE);
    }
    if (lm->finished) return finish(L, lm, base);
    lm->waiting = 1;
    rem_task_wait(&t->rt, NULL);
    return rem__await(L, t, CTX(base, K_WAIT), drive_k);
  }
}

/* The end of an operation: its driver lets go, and an inline caller gets its result. */
static int finish(lua_State *L, lmgr *lm, int base) {
  rem_manager_t *m = &lm->coll.manager;
  close_children(lm);
  pop_shield(lm, lm->driver);
  if (lm->kind == KIND_COLLECTION && m->state == REM_MANAGER_IDLE)
    release_children(L, lm, base);
  lm->driver = NULL;
  lm->finished = 0;
  lm->waiting = 0;
  int caller = lm->caller;
  lm->caller = CALLER_WORKER;
  if (lm->worker) {
    lm->worker = 0;
    return 0;  /* the collection took the outcome */
  }
  int failed;
  if (caller == CALLER_ACQUIRE) {
    failed = m->state != REM_MANAGER_ACQUIRED;
    if (!failed) {
      lua_pushvalue(L, 1);
      return 1;
    }
    /* A failed release on error carries the acquire error as its context (a collection's
     * rollback carries the group of every failure). */
    if (m->release_status)
      rem__push_payload(L, m->release_status, m->release_payload);
    else
      rem__push_payload(L, m->acquire_status, m->acquire_payload);
    rem__unref_payload(L, m->acquire_payload);
    rem__unref_payload(L, m->release_payload);
    m->acquire_payload = m->release_payload = 0;
    return lua_error(L);
  }
  rem__unref_payload(L, lm->err_ref);
  lm->err_ref = LUA_NOREF;
  if (m->release_status) {
    rem__push_payload(L, m->release_status, m->release_payload);
    rem__unref_payload(L, m->release_payload);
    m->release_payload = 0;
    return lua_error(L);
  }
  if (caller == CALLER_EXIT) {
    lua_pushboolean(L, 0);  /* a manager never suppresses */
    return 1;
  }
  return 0;
}

/* Checks the list a collection's resource_managers() gave (at `list`) and hands it to the
 * runtime. Leaves an error on top and returns nonzero when it is unfit. */
static int validate_children(lua_State *L, lmgr *lm, int base, int list) {
  if (!lua_istable(L, list)) {
    rem__push_error(L, "EINVAL", "%s:%s: resource_managers() must return a list of "
                    "rem.Manager (got %s)", lm->cls, lm->method, luaL_typename(L, list));
    return 1;
  }
  lua_Integer n = luaL_len(L, list);
  lua_createtable(L, (int)n, 0);    /* the children, kept while the collection holds them */
  int copy = lua_gettop(L);
  lua_newtable(L);                  /* seen */
  int seen = copy + 1;
  rem_manager_t **kids = n > 0 ? malloc((size_t)n * sizeof *kids) : NULL;
  if (n > 0 && !kids) {
    rem__push_error(L, "ENOMEM", "%s:%s: out of memory", lm->cls, lm->method);
    return 1;
  }
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    /* A plain manager in use keeps its state in its metatable (manager_plain.c). */
    int role = rem__manager_role(L, -1);
    int busy = role > REM_ROLE_IDLE && role != REM_ROLE_HELD;
    lmgr *child = busy ? NULL : push_lmgr(L, lm->st, -1);
    const char *why = NULL;
    if (busy)
      why = rem__role_name(role);
    else if (!child)
      why = "is not a rem.Manager";
    else if (lua_rawgetp(L, seen, child) != LUA_TNIL)
      why = "appears twice";
    else if (child == lm)
      why = "the collection itself";
    else if (child->held || child->coll.manager.state != REM_MANAGER_IDLE)
      why = child->held ? "held by another rem.Collection" : state_name(child);
    if (why) {
      if (!child && !busy)
        rem__push_error(L, "EINVAL", "%s:%s: resource_managers() item %d %s (got %s)",
                        lm->cls, lm->method, (int)i, why, luaL_typename(L, copy + 2));
      else
        rem__push_error(L, "EINVAL", "%s:%s: resource_managers() item %d %s%s", lm->cls,
                        lm->method, (int)i, strcmp(why, "appears twice") ? "is " : "", why);
      free(kids);
      return 1;
    }
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
    lua_rawsetp(L, seen, child);
    lua_pop(L, 1);                  /* the state */
    lua_rawseti(L, copy, i);        /* the instance */
    kids[i - 1] = &child->coll.manager;
  }
  for (lua_Integer i = 0; i < n; i++) {
    lmgr *child = LMGR(kids[i]);
    child->held = 1;
    child->parent_scope = &lm->children;
    if (child->kind == KIND_PLAIN) {
      lua_rawgeti(L, copy, i + 1);
      rem__manager_set_role(L, -1, REM_ROLE_HELD);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  lua_setiuservalue(L, base, UV_CHILDREN);
  rem_collection_set(&lm->coll, kids, (size_t)n);
  lm->coll.data = kids;  /* freed once the acquisition has started */
  return 0;
}

/* ---- the helper task of a collection's child ------------------------------------------ */

/* The helper's function: stack [state]. */
static int worker_main(lua_State *L) {
  lmgr *lm = lua_touserdata(L, 1);
  rem_ltask *w = rem__current(L);
  rem_list_push_back(&lm->st->tasks, &w->link);
  rem_scope_set_parent(&w->rt.root, lm->parent_scope);
  lm->started = 1;
  if (lm->cancel_requested) rem_task_cancel(&w->rt);
  lua_settop(L, 1);
  return drive(L, lm, 1);
}

/* ---- a collection's operations: inline ------------------------------------------------- */

static void begin_inline(lmgr *lm, rem_ltask *t, int caller, const char *method) {
  lm->driver = t;
  lm->worker = 0;
  lm->caller = caller;
  lm->method = method;
  lm->finished = 0;
}

static rem_ltask *need_task(lua_State *L, lmgr *lm, const char *method) {
  return rem__manager_task(L, lm->cls, method);
}

int rem__collection_acquire(lua_State *L, const char *method) {
  lmgr *lm = check_self(L, method);
  if (lm->held)
    return luaL_error(L, "%s:%s: the manager is held by a rem.Collection", lm->cls, method);
  if (lm->coll.manager.state != REM_MANAGER_IDLE)
    return luaL_error(L, "%s:%s: the manager is %s", lm->cls, method, state_name(lm));
  rem_ltask *t = need_task(L, lm, method);
  rem__check_cancel(L, t);
  lua_copy(L, -1, 2);  /* the state check_self pushed */
  lua_settop(L, 2);
  begin_inline(lm, t, CALLER_ACQUIRE, method);
  rem_manager_acquire(&lm->coll.manager, NULL, NULL);
  return drive(L, lm, 2);
}

int rem__collection_release(lua_State *L, int caller, const char *method, int required) {
  lua_settop(L, 2);
  lmgr *lm = check_self(L, method);  /* the state at 3 */
  int has_err = caller != CALLER_RELEASE && lua_toboolean(L, 2);
  if (required && lua_isnil(L, 2))
    return luaL_error(L, "%s:%s: bad argument #1 (error expected, got nil)", lm->cls, method);
  if (required) has_err = 1;
  rem_manager_state_t state = lm->coll.manager.state;
  if (lm->held) {
    return luaL_error(L, "%s:%s: the manager is held by a rem.Collection (release the "
                      "collection)", lm->cls, method);
  }
  if (state != REM_MANAGER_ACQUIRED) {
    /* `local m <close> = M.new(); m:acquire()` whose acquire failed: already rolled back. */
    if (caller == CALLER_CLOSE && state == REM_MANAGER_IDLE && has_err) return 0;
    return luaL_error(L, "%s:%s: the manager is %s", lm->cls, method, state_name(lm));
  }
  rem_ltask *t = need_task(L, lm, method);
  int code = 0;
  intptr_t payload = 0;
  if (has_err) {
    code = rem__is_cancelled(L, 2) ? UV_ECANCELED : REM_EFAILED;
    lua_pushvalue(L, 2);
    lm->err_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    payload = lm->err_ref;
  }
  begin_inline(lm, t, caller, method);
  rem_manager_release(&lm->coll.manager, code, payload, NULL, NULL);
  return drive(L, lm, 3);
}

/* ---- wrap: the decorator -------------------------------------------------------------- */

enum { W_RECREATED = 1, W_ENTERED, W_BODY, W_EXITED };

/* Stack: [cm, boundary, handler, fn, args...] while fn runs; [cm, -, -, results or error]
 * after; the exit's call goes above that. */
static int wrap_k(lua_State *L, int status, lua_KContext ctx) {
  int ok = status == LUA_OK || status == LUA_YIELD;
  switch ((int)(ctx & 7)) {
  case W_RECREATED:
    lua_replace(L, 1);
    /* fallthrough */
  case 0:
    lua_getfield(L, 1, "enter");
    lua_pushvalue(L, 1);
    lua_callk(L, 1, 0, W_ENTERED, wrap_k);
    /* fallthrough */
  case W_ENTERED:
    return rem__pcall(L, 1, W_BODY, wrap_k);
  case W_BODY: {
    rem__pcall_restore(L, 1);
    if (!ok && !lua_toboolean(L, 4)) {
      const char *v = lua_isnil(L, 4) ? "nil" : "false";
      lua_settop(L, 3);
      rem__push_error(L, NULL, "the wrapped function raised %s", v);
    }
    int top = lua_gettop(L);
    lua_pushnil(L);
    lua_pushnil(L);
    lua_getfield(L, 1, "exit");
    lua_pushvalue(L, 1);
    if (ok)
      lua_pushnil(L);
    else
      lua_pushvalue(L, 4);
    return rem__pcall(L, top, (lua_KContext)top << 4 | ok << 3 | W_EXITED, wrap_k);
  }
  default: {  /* W_EXITED */
    int top = (int)(ctx >> 4);
    int body_ok = (int)(ctx >> 3) & 1;
    rem__pcall_restore(L, top);
    if (!ok) {
      if (!body_ok) rem__chain(L, -1, 4);  /* usually settled by the exit already */
      return lua_error(L);
    }
    if (body_ok) {
      lua_settop(L, top);
      return top - 3;
    }
    if (lua_gettop(L) > top + 2 && lua_toboolean(L, top + 3)) return 0;
    lua_pushvalue(L, 4);
    return lua_error(L);
  }
  }
}

/* The function wrap returns; upvalues: the manager, the function. */
static int wrapped_call(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_insert(L, 1);
  lua_pushnil(L);
  lua_pushnil(L);
  lua_rotate(L, 1, 2);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);  /* [manager, -, -, fn, args...] */
  /* ContextDecorator's _recreate_cm: a fresh manager for each call when it can make one. */
  if (lua_getfield(L, 1, "recreate") == LUA_TFUNCTION) {
    lua_pushvalue(L, 1);
    lua_callk(L, 1, 1, W_RECREATED, wrap_k);
    return wrap_k(L, LUA_OK, W_RECREATED);
  }
  lua_pop(L, 1);
  return wrap_k(L, LUA_OK, 0);
}

/* wrap(fn) -> function running fn(...) inside the manager (entered anew for each call). */
static int m_wrap(lua_State *L) {
  if (kind_of(L, 1) < 0) {
    return luaL_error(L, "rem.Manager:wrap: bad self (a rem.Manager instance expected, got "
                      "%s; call it with ':')", luaL_typename(L, 1));
  }
  rem__check_function(L, 2, "rem.Manager:wrap");
  lua_settop(L, 2);
  lua_pushcclosure(L, wrapped_call, 2);
  return 1;
}

/* ---- default resource methods --------------------------------------------------------- */

static int m_nothing(lua_State *L) {
  (void)L;
  return 0;
}

static int all_results(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return lua_gettop(L);
}

/* release_resources_on_error(err): the default is release_resources(). */
static int m_release_resources_on_error(lua_State *L) {
  lua_settop(L, 1);
  lua_getfield(L, 1, "release_resources");
  lua_insert(L, 1);
  lua_callk(L, 1, LUA_MULTRET, 0, all_results);
  return all_results(L, LUA_OK, 0);
}

/* Collection:init([managers]): keeps a copy of the list for resource_managers(). */
static int c_init(lua_State *L) {
  lua_settop(L, 2);
  check_self(L, "init");  /* the state at 3 */
  if (lua_isnil(L, 2)) return 0;
  if (!lua_istable(L, 2)) {
    return luaL_error(L, "rem.Collection.new: bad argument #1 (list of rem.Manager expected, "
                      "got %s)", luaL_typename(L, 2));
  }
  lua_Integer n = luaL_len(L, 2);
  lua_createtable(L, (int)n, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    if (kind_of(L, -1) < 0) {
      return luaL_error(L, "rem.Collection.new: bad argument #1 (item %d is not a rem.Manager, "
                        "got %s)", (int)i, luaL_typename(L, -1));
    }
    lua_rawseti(L, -2, i);
  }
  lua_setiuservalue(L, 3, UV_GIVEN);
  return 0;
}

/* Collection:resource_managers() -> the list given to new (empty when none was). */
static int c_resource_managers(lua_State *L) {
  check_self(L, "resource_managers");
  if (lua_getiuservalue(L, -1, UV_GIVEN) != LUA_TTABLE) lua_newtable(L);
  return 1;
}

/* ---- module ----------------------------------------------------------------------------- */

static int state_gc(lua_State *L) {
  lmgr *lm = lua_touserdata(L, 1);
  /* Unreferenced here, with this state: the rem state may be gone when Lua closes. */
  for (size_t i = 0; i < lm->coll.failures.len; i++)
    rem__unref_payload(L, lm->coll.failures.items[i].payload);
  lm->coll.hooks = NULL;
  rem_collection_deinit(&lm->coll);
  free(lm->coll.data);
  lm->coll.data = NULL;
  if (lm->shield_on) rem_scope_deinit(&lm->shield);
  close_children(lm);
  return 0;
}

/* manager_state(m) -> "idle" | "acquiring" | "acquired" | "releasing", or nil for a
 * value that is not a manager. */
static int l_manager_state(lua_State *L) {
  static const char *const names[] = {"idle", "acquiring", "acquired", "releasing"};
  int role = rem__manager_role(L, 1);
  if (role >= 0 && role != REM_ROLE_HELD) {  /* a plain manager on its own: its metatable */
    lua_pushstring(L, names[role]);
    return 1;
  }
  lmgr *lm = find_lmgr(L, 1);
  if (!lm) {  /* no state (yet, or given back idle) */
    if (kind_of(L, 1) < 0) return 0;
    lua_pushstring(L, names[REM_MANAGER_IDLE]);
    return 1;
  }
  lua_pushstring(L, names[lm->coll.manager.state]);
  return 1;
}

static int l_is_manager(lua_State *L) {
  lua_pushboolean(L, kind_of(L, 1) >= 0);
  return 1;
}

/* registry[key] (made once: a reloaded module shares it); `mode` NULL: a strong table. */
static void weak_table(lua_State *L, const void *key, const char *mode) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) == LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  lua_newtable(L);
  if (mode) {
    lua_createtable(L, 0, 1);
    lua_pushstring(L, mode);
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
  }
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

/* A class table: methods in itself, found through __index by its instances. */
static void new_class(lua_State *L, rem_state *st, const char *name, const char *kind,
                      const luaL_Reg *methods) {
  lua_newtable(L);
  rem__setfuncs(L, methods, st);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__name");
  lua_pushstring(L, kind);
  lua_setfield(L, -2, KIND_FIELD);
}

/* Adds Manager, Collection, manager_state, is_manager and manager_constructor to the table
 * on top. */
void rem__open_manager(lua_State *L, rem_state *st) {
  luaL_newmetatable(L, REM_MANAGER_STATE_MT);
  lua_pushcfunction(L, state_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  weak_table(L, &instances_key, "k");
  weak_table(L, &states_key, "v");

  static const luaL_Reg manager[] = {
    {"wrap", m_wrap}, {"acquire_resources", m_nothing}, {"release_resources", m_nothing},
    {"release_resources_on_error", m_release_resources_on_error}, {NULL, NULL}};
  new_class(L, st, "rem.Manager", "manager", manager);
  rem__manager_setfuncs(L, st);
  static const luaL_Reg collection[] = {
    {"init", c_init}, {"resource_managers", c_resource_managers}, {NULL, NULL}};
  new_class(L, st, "rem.Collection", "collection", collection);
  lua_getfield(L, -2, "__close");   /* a metamethod: looked up raw, so copied */
  lua_setfield(L, -2, "__close");
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, -3);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);          /* Collection inherits Manager's methods */
  lua_setfield(L, -3, "Collection");
  lua_setfield(L, -2, "Manager");

  static const luaL_Reg fns[] = {
    {"manager_state", l_manager_state}, {"is_manager", l_is_manager},
    {"manager_constructor", rem__manager_constructor}, {NULL, NULL}};
  rem__setfuncs(L, fns, st);
}
