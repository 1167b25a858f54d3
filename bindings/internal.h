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
};

/* The userdata `rem.task`; its user value 1 is its coroutine, 2 an uncaught traceback. */
struct rem_ltask {
  rem_task_t rt;
  rem_state *st;
  lua_State *T;            /* its coroutine */
  lua_State *wait_L;       /* the thread (T or a coroutine it resumed) that is suspended */
  int self_ref;            /* registry ref while it runs or holds an unseen error */
  int nargs;               /* arguments for the first resume; -1 once started */
  int nres;                /* values on T's stack once done: true, results... / false, err */
  int ok;
  int observed;            /* its outcome was joined, raised or reported */
  int group_ref;           /* registry ref of the group it was spawned in, or LUA_NOREF */
  intptr_t payload;        /* its error's index in the group's error list, once failed */
  rem_list_t link;         /* in st->tasks, then st->unobserved */
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

/* task.c */
rem_ltask *rem__task_new(lua_State *L, rem_state *st, int fidx, int nargs);
void rem__report_unobserved(rem_state *st, lua_State *L);
void rem__open_task(lua_State *L, rem_state *st);

/* group.c, scope.c, clock.c */
void rem__open_group(lua_State *L, rem_state *st);
void rem__open_scope(lua_State *L, rem_state *st);
void rem__open_clock(lua_State *L, rem_state *st);

/* core.c */
void rem__setfuncs(lua_State *L, const luaL_Reg *fns, rem_state *st);
/* Argument checks naming the function as users call it ("rem.sleep: bad argument #1 (number
 * expected, got string)"); luaL's search package.loaded and may say "rem.core.sleep". */
int rem__argerror(lua_State *L, int arg, const char *fname, const char *expected);
lua_Number rem__check_number(lua_State *L, int arg, const char *fname);
void rem__check_function(lua_State *L, int arg, const char *fname);

#endif
