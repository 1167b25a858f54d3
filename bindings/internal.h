/* Shared between the files of the bindings; not installed. */
#ifndef REM_BINDINGS_INTERNAL_H
#define REM_BINDINGS_INTERNAL_H

#include <lauxlib.h>
#include <lua.h>

#include "rem.h"
#include "remlua.h"

/* A task's Lua failure, for the runtime's status codes: any error that is not a
 * cancellation (libuv has no code for "the Lua code raised"). */
#define REM_EFAILED (-0x524D) /* "RM" */

typedef struct rem_state rem_state;
typedef struct rem_ltask rem_ltask;

/* One per lua_State, malloc'd: on a host's loop it must outlive lua_close until the
 * scheduler's close callbacks have run. */
struct rem_state {
  rem_sched_t sched;
  uv_loop_t own_loop;
  uv_loop_t *loop;
  int owns_loop;
  lua_State *L;            /* the main thread: the only one rem keeps */
  int running;             /* inside rem.run */
  rem_list_t tasks;        /* live tasks (rem_ltask.link) */
  rem_list_t unobserved;   /* finished with an error nobody has seen yet */
  rem_ltask *main;         /* rem.run's task while it runs */
  rem_error_hook error_hook;  /* reports errors nobody joined; NULL prints them */
  void *error_hook_ud;
};

/* The userdata `rem.task`; its user value is its coroutine. */
struct rem_ltask {
  rem_task_t rt;
  rem_state *st;
  lua_State *T;            /* its coroutine */
  lua_State *wait_L;       /* the thread (T or a coroutine it resumed) that is suspended */
  int self_ref;            /* registry ref while it runs or holds an unseen error */
  int nargs;               /* arguments for the first resume; -1 once started */
  int nres;                /* values on T's stack once done: true, results... / false, err */
  int group_ref;           /* registry ref of the group it was spawned in, or LUA_NOREF */
  int tb_ref;              /* registry ref of an uncaught error's traceback, or LUA_NOREF */
  unsigned ok : 1;
  unsigned observed : 1;   /* its outcome was joined, raised or reported */
  intptr_t payload;        /* its error's index in the group's error list, once failed */
  rem_list_t link;         /* in st->tasks, then st->unobserved */
  rem_scope_t *unwind_floor;  /* rt.unwind_boundary where the running coroutine was resumed:
                                 a pcall inside it restores no less (await.c) */
};

/* Registry keys. */
#define REM_STATE_KEY "rem.state"
#define REM_LOOP_KEY "rem.loop"
#define REM_TASK_MT "rem.task"
#define REM_GROUP_MT "rem.group"
#define REM_SCOPE_MT "rem.scope"
#define REM_ERROR_MT "rem.Error"
#define REM_ERRORGROUP_MT "rem.ErrorGroup"

static inline rem_ltask *rem__current(lua_State *L) {
  return *(rem_ltask **)lua_getextraspace(L);
}
static inline void rem__set_current(lua_State *L, rem_ltask *t) {
  *(rem_ltask **)lua_getextraspace(L) = t;
}
static inline rem_state *rem__state(lua_State *L) {
  return (rem_state *)lua_touserdata(L, lua_upvalueindex(1));
}

/* await.c: suspending the current task */
rem_ltask *rem__need_task(lua_State *L, const char *fname);
void rem__check_cancel(lua_State *L, rem_ltask *t);
int rem__await(lua_State *L, rem_ltask *t, lua_KContext ctx, lua_KFunction k);
rem_ltask *rem__resumed(lua_State *L);
int rem__is_marker(lua_State *L, int idx);
int rem__unwind_handler(lua_State *L);
int rem__may_interrupt(rem_task_t *rt);
/* How many __close handlers (of blocks ending normally) the task is running, and whether
 * its cancellation applies where it runs now: in cleanup, only the cancellation of a scope
 * opened inside the innermost handler does (scopes store their depth in `tag`). */
int rem__cleanup_depth(lua_State *L, rem_ltask *t);
int rem__cancelled_here(lua_State *L, rem_ltask *t);
/* Calls the function at `base + 3` with the values above it under rem's message handler;
 * slots base+1 and base+2 must be free for it (they become the saved unwind boundary and
 * the handler). Continues at `k`; see rem__pcall_restore. */
int rem__pcall(lua_State *L, int base, lua_KContext ctx, lua_KFunction k);
/* In a continuation of rem__pcall: restores the unwind boundary saved at `base + 1`. */
void rem__pcall_restore(lua_State *L, int base);
void rem__open_await(lua_State *L);

/* errors.c */
void rem__open_errors(lua_State *L);
void rem__push_error(lua_State *L, const char *code, const char *fmt, ...);
void rem__push_cancelled(lua_State *L);
int rem__is_cancelled(lua_State *L, int idx);
void rem__push_timeout(lua_State *L, double seconds, int cancel_idx);
void rem__push_error_group(lua_State *L, int errors_idx);
/* Leaves on top the error to raise: `new_idx` carrying `old_idx` as its context. */
void rem__chain(lua_State *L, int new_idx, int old_idx);

/* cm.c: the context-manager protocol, shared by rem.enter, rem.with, exit stacks, gather and
 * collections. A value is, to it: */
enum { REM_CM_NONE, REM_CM_CM, REM_CM_CLOSABLE, REM_CM_FUNCTION };
/* A cm has callable `enter` and `exit` (rem__cm_kind's flag REM_CM_EXIT_ONLY: `exit` alone,
 * as stack:push wants); else a closable has __close; else a function is callable. A cm that
 * is also closable (all of rem's) is a cm. */
#define REM_CM_EXIT_ONLY 1
/* rem__cm_kind's flag REM_CM_KEEP_METHODS: when the value is a cm, the methods the check
 * found are left on top of the stack, `exit` then (without REM_CM_EXIT_ONLY) `enter`, so the
 * caller enters and records the exit without looking them up again (performance: an exit
 * stack's enter_context, W2 of bench/; like Python's ExitStack, which takes both methods
 * from the cm when it is pushed). */
#define REM_CM_KEEP_METHODS 2
/* rem__cm_kind's flag REM_CM_UPVALUE_NAMES: the calling C function's upvalues 1 and 2 are the
 * strings "exit" and "enter" (performance: looking a method up by a string already interned
 * spares lua_getfield's interning of the literal on every check). */
#define REM_CM_UPVALUE_NAMES 4
int rem__cm_kind(lua_State *L, int idx, int flags);
/* The kind, or raises "fname: bad argument #argn (context manager, closable or function
 * expected, got T)". Check before doing anything, so misuse changes nothing. */
int rem__cm_check(lua_State *L, int idx, int argn, const char *fname, int flags);
/* lua_CFunction (x) -> kind, exiter, values...: enters x. A cm: x:enter(); a function: an
 * async constructor, called with no arguments, whose result is entered if it is a cm, else
 * kept as the value (exited by closing it if closable: kind REM_CM_CLOSABLE; else kind
 * REM_CM_NONE and exiter nil). A closable: kept as is. May suspend: call it with
 * lua_callk/pcallk or run it as a task. Raises what entering raised (nothing to exit then);
 * raises a "rem.enter: bad argument" error for other values (check with your name first). */
int rem__cm_enter(lua_State *L);
/* lua_CFunction (kind, exiter, err) -> suppressed: exits what rem__cm_enter gave (kind
 * REM_CM_FUNCTION: exiter is an exit function, exiter(err)). err nil/false: none. Runs
 * shielded; may suspend. An exit that raises: its error is raised with err as context. */
int rem__cm_exit(lua_State *L);
/* The pieces of rem__cm_exit, for callers running their own loop: pushes the function and
 * arguments that exit `exiter` (returns how many values), and says whether the call's
 * result at `res_idx` suppresses. */
int rem__cm_push_exit(lua_State *L, int kind, int exiter_idx, int err_idx);
int rem__cm_suppresses(lua_State *L, int kind, int res_idx);
/* As rem__pcall, for cleanup: the callee runs shielded from the cancellation of every scope
 * open now. Returns the status when the call ends without suspending (k is not called then);
 * after a suspension Lua goes on at k. Either way call rem__pcall_restore(L, base) first. */
int rem__cleanup_pcallk(lua_State *L, int base, int nresults, lua_KContext ctx,
                        lua_KFunction k);

/* payload.c: the runtime's error payloads (managers, collections, pools) as the bindings
 * fill them: a registry reference to the error value, or 0 (the error is made from the
 * code: an rem.Error named after it, a cancellation for UV_ECANCELED). */
void rem__push_payload(lua_State *L, int code, intptr_t payload);
void rem__unref_payload(lua_State *L, intptr_t payload);
/* Pops the error on top into *payload (nil and false become rem.Error("<what> raised
 * nil")); returns its code: UV_ECANCELED for a cancellation, else REM_EFAILED. */
int rem__error_payload(lua_State *L, const char *what, intptr_t *payload);
/* The errors (their payloads unreferenced) as one rem.ErrorGroup with `context` as its
 * context (0: none), returned as a payload. */
intptr_t rem__fold_payloads(lua_State *L, const rem_errlist_t *errors, intptr_t context);

/* gather.c: rem.gather, exit pools over runtime/pool.c. A userdata type whose values may be
 * pool members without a task (no coroutine at all: the I/O resources) sets the field
 * REM_MEMBER_FIELD of its metatable to a light userdata pointing to its static
 * rem_cmember_class. Its member's ops (pool.h) run in C, from libuv callbacks or at once,
 * and report with rem_pool_entered / rem_pool_exited; a failure's payload is a registry
 * reference to its error value (rem__error_payload) or 0 (made from the code). The ops get
 * the error in flight as (code, payload): the payload, when set, is a registry reference to
 * it. The pool holds the userdata (and so the member) while it holds the member. */
#define REM_MEMBER_FIELD "__rem_member"
typedef struct rem_pool_member rem_pool_member_t;
typedef struct rem_cmember_class {
  /* The member behind the userdata at `idx` (typically embedded in it); called by
   * rem.gather. A member is in one pool operation at a time (another pool's enter fails with
   * UV_EBUSY). */
  rem_pool_member_t *(*member)(lua_State *L, int idx);
  /* Pushes the value its enter gave, the userdata being at `idx`; NULL: the userdata. */
  void (*push_value)(lua_State *L, int idx, rem_pool_member_t *m);
} rem_cmember_class;
/* Opens rem.gather and (sleeper.c) core.sleeper, the sample C member. */
void rem__open_gather(lua_State *L, rem_state *st);
void rem__open_sleeper(lua_State *L, rem_state *st);

/* Opens cm.c's functions, rem.ExitStack and rem.enter (exitstack.c) into the table on top. */
void rem__open_contextlib(lua_State *L, rem_state *st);
void rem__open_exitstack(lua_State *L, rem_state *st);

/* task.c */
rem_ltask *rem__task_new(lua_State *L, rem_state *st, int fidx, int nargs);
/* A task whose coroutine runs `body` itself, with the `nargs` values from `first`, instead
 * of a Lua function under task_main's pcall: one C frame less on a coroutine that stays
 * suspended (gather's helpers, W4 of bench/). The body must catch its errors (a coroutine
 * that dies by an error does not close its to-be-closed variables) and return the outcome:
 * true and its results, or false and an error. */
rem_ltask *rem__task_new_body(lua_State *L, rem_state *st, lua_CFunction body, int first,
                              int nargs);
void rem__report_unobserved(rem_state *st, lua_State *L);
void rem__open_task(lua_State *L, rem_state *st);

/* group.c, scope.c, clock.c */
void rem__open_group(lua_State *L, rem_state *st);
void rem__open_scope(lua_State *L, rem_state *st);
void rem__open_clock(lua_State *L, rem_state *st);

/* manager.c: rem.Manager, rem.Collection (classes the Lua layer extends) */
void rem__open_manager(lua_State *L, rem_state *st);

/* fsreq.c: libuv fs requests a task awaits and may give up when cancelled (see there). */
typedef struct rem_fsreq rem_fsreq;
struct rem_fsreq {
  uv_fs_t req;             /* req.data points to the rem_fsreq */
  uv_loop_t *loop;         /* outlives the Lua state on a host's loop; rem_state may not */
  rem_state *st;
  rem_list_t waiting;      /* the waiting task's rem_task_t.link, or empty */
  rem_task_t hold;         /* keeps rem.run going while an abandoned request finishes */
  int holding;
  void (*abandon)(rem_fsreq *r);  /* told when the waiting task gives up; may be NULL */
};
void rem__fsreq_init(rem_fsreq *r, rem_state *st, void (*abandon)(rem_fsreq *r));
/* Makes `t` wait for the request (issued already) and suspends; continues at k. A
 * cancellable wait, when interrupted, abandons the request: uv_cancel, hold, `abandon`. */
int rem__fsreq_await(lua_State *L, rem_fsreq *r, rem_ltask *t, int cancellable,
                     lua_KContext ctx, lua_KFunction k);
/* Whether a task waits (in the request's callback: 0 means abandoned); wake it. */
int rem__fsreq_waited(const rem_fsreq *r);
void rem__fsreq_wake(rem_fsreq *r);
/* Forgets the waiting task without waking it (the Lua state is closing). */
void rem__fsreq_detach(rem_fsreq *r);
/* Keeps rem.run from returning until rem__fsreq_release (no-op outside rem.run). */
void rem__fsreq_hold(rem_fsreq *r);
void rem__fsreq_release(rem_fsreq *r);
/* rem.Error{code = uv_err_name(rc), message = "fname: path: strerror", path = path}. */
void rem__push_fs_error(lua_State *L, int rc, const char *fname, const char *path);
int rem__fs_error(lua_State *L, int rc, const char *fname, const char *path);

/* fs.c, file.c: rem.core.fs (path functions; open and the file type) */
void rem__open_fs(lua_State *L, rem_state *st);
void rem__open_file(lua_State *L, rem_state *st);

/* signal.c: rem.core.signal; signal names ("SIGUSR1" or "USR1") and numbers */
void rem__open_signal(lua_State *L, rem_state *st);
int rem__check_signal(lua_State *L, int arg, const char *fname);
const char *rem__signal_name(int signum);  /* NULL when rem has no name for it */

/* io.c: rem.core.tcp, unix, process, resolve and the stream/server types (bindings/io.h) */
void rem__open_io(lua_State *L, rem_state *st);

/* core.c */
rem_state *rem__find_state(lua_State *L);
void rem__setfuncs(lua_State *L, const luaL_Reg *fns, rem_state *st);
/* Argument checks naming the function as users call it ("rem.sleep: bad argument #1 (number
 * expected, got string)"); luaL's search package.loaded and may say "rem.core.sleep". */
int rem__argerror(lua_State *L, int arg, const char *fname, const char *expected);
lua_Number rem__check_number(lua_State *L, int arg, const char *fname);
void rem__check_function(lua_State *L, int arg, const char *fname);

#endif
