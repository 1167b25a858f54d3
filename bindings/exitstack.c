/* rem.ExitStack and rem.enter: the runtime's exit stack (runtime/exitstack.h) fed with Lua
 * exits.
 *
 * The runtime keeps the order, the error in flight, suppression and the chaining; the Lua
 * side of the entries is in one table, the stack's user value 1, where each entry takes the
 * next slots: [exit, cm] for a cm (its `exit`, taken when it is pushed, as Python does),
 * [closable], [exit function], or [f, args...] for a callback. The runtime entry's data holds
 * the entry's first slot and its kind; its last slot is the one below the next entry's first
 * (rem_lstack.top for the top entry). So pushing an entry allocates nothing per entry beyond
 * the two arrays' amortised growth, and unwinding reads its slots and calls.
 *
 * Unwinding runs in the calling task through the runtime's step-by-step API: each exit is
 * called with lua_pcallk (a plain call when the task can yield: no setjmp), shielded, and
 * when one suspends the loop goes on from the continuation after the resume — the C stack
 * never grows with the number of entries. Slots are not cleared as their entries run (the
 * runtime's length says what is live; a push overwrites them); the table is dropped when the
 * unwinding ends, so everything it held can be collected then, and the next push makes a
 * fresh one.
 */
#include <stdint.h>
#include <string.h>

#include "exitstack.h"
#include "internal.h"

#define REM_EXITSTACK_MT "rem.ExitStack"

/* Its address marks a stack (check_stack). */
static const char stack_tag = 0;

typedef struct rem_lstack {
  const char *tag;   /* &stack_tag */
  rem_exitstack_t xs;
  lua_State *L;      /* the thread unwinding it, during a step call (the hooks use its stack) */
  lua_Integer top;   /* slots of the entries table in use: the top entry's last */
} rem_lstack;

/* Entry kinds beyond the cm protocol's (REM_CM_CM, REM_CM_CLOSABLE, REM_CM_FUNCTION = an
 * exit function): a callback, which gets its own arguments and never suppresses. */
enum { ENTRY_CALLBACK = 4 };

/* A runtime entry's data: its first slot and its kind. */
#define KIND_BITS 3
#define ENTRY_DATA(slot, kind) ((void *)(((intptr_t)(slot) << KIND_BITS) | (kind)))
#define ENTRY_KIND(data) ((int)((intptr_t)(data) & ((1 << KIND_BITS) - 1)))
#define ENTRY_SLOT(data) ((lua_Integer)((intptr_t)(data) >> KIND_BITS))

/* Unwinding: what the caller gets at the end. */
enum { MODE_CLOSE,   /* stack:close(): raises what is left in flight */
       MODE_EXIT,    /* stack:exit(err): true if err was suppressed; raises a new error */
       MODE_MM };    /* __close(stack, err): raises a new error */

/* The unwinding functions' stack: [stack, error in flight, error that came in, entries
 * table (nil: no entries), saved boundary, handler, exit fn, args...]. */
enum { S_STACK = 1, S_ERR = 2, S_IN = 3, S_TAB = 4, S_BASE = 4, S_HANDLER = 6, S_FN = 7 };

/* Performance: a stack is recognised by its size and its tag, without pushing and comparing
 * its metatable (luaL_checkudata's registry lookup by name, or even one comparison with the
 * metatable, cost more than the rest of stack:callback). Only C code could make another
 * userdata of that size holding the address of this file's stack_tag. Anything else goes to
 * luaL_checkudata, which raises the usual message. */
static rem_lstack *check_stack(lua_State *L, int idx) {
  rem_lstack *s = lua_touserdata(L, idx);
  if (s && lua_rawlen(L, idx) == sizeof *s && s->tag == &stack_tag) return s;
  return luaL_checkudata(L, idx, REM_EXITSTACK_MT);
}

/* Hooks: the error in flight is the value at S_ERR of the unwinding thread. */
static void on_chain(rem_exitstack_t *xs, rem_err_t *raised, const rem_err_t *old) {
  (void)raised;
  (void)old;
  lua_State *L = REM_CONTAINER_OF(xs, rem_lstack, xs)->L;
  rem__chain(L, -1, S_ERR);  /* the raised error is on top */
  lua_replace(L, S_ERR);
}

static void on_drop(rem_exitstack_t *xs, const rem_err_t *err) {
  (void)err;
  lua_State *L = REM_CONTAINER_OF(xs, rem_lstack, xs)->L;
  lua_pushnil(L);
  lua_replace(L, S_ERR);
}

/* A stack is born without its entries table (rem.enter's guard, a stack never used): the
 * first push makes it. */
static rem_lstack *new_stack(lua_State *L) {
  rem_lstack *s = lua_newuserdatauv(L, sizeof *s, 1);
  s->tag = &stack_tag;
  rem_exitstack_init(&s->xs);  /* safe to collect from here on */
  s->xs.chain = on_chain;
  s->xs.drop = on_drop;
  s->L = NULL;
  s->top = 0;
  luaL_setmetatable(L, REM_EXITSTACK_MT);
  return s;
}

static int l_exitstack(lua_State *L) {
  new_stack(L);
  return 1;
}

static void reserve(lua_State *L, rem_lstack *s, const char *fname) {
  if (s->xs.len == s->xs.cap && rem_exitstack_reserve(&s->xs, 1))
    luaL_error(L, "%s: out of memory", fname);
}

/* Pushes the entries table of the stack at `stack_idx`, made if it has none. */
static void push_entries(lua_State *L, int stack_idx) {
  if (lua_getiuservalue(L, stack_idx, 1) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_createtable(L, 8, 0);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, stack_idx, 1);
}

/* Records the top entry, of `kind`, whose `n` values are the top `n` of the stack (popped),
 * first slot first. Room in the runtime's array was reserved, so only the table's growth can
 * fail, and it raises before anything is recorded. */
static void push_entry(lua_State *L, rem_lstack *s, int stack_idx, int kind, int n) {
  push_entries(L, stack_idx);
  lua_insert(L, -1 - n);
  int tab = lua_gettop(L) - n;
  lua_Integer first = s->top + 1;
  for (lua_Integer i = first + n - 1; i >= first; i--) lua_rawseti(L, tab, i);
  lua_pop(L, 1);
  rem_exitstack_push(&s->xs, NULL, ENTRY_DATA(first, kind));  /* reserved: cannot fail */
  s->top += n;
}

/* ---- registering ----------------------------------------------------------------------- */

/* stack:callback(f, ...) -> f; f(...) runs at unwinding, never suppresses. */
static int s_callback(lua_State *L) {
  rem_lstack *s = check_stack(L, 1);
  int n = lua_gettop(L) - 1;  /* f and its arguments */
  if (n < 1 || (lua_type(L, 2) != LUA_TFUNCTION && rem__cm_kind(L, 2, REM_CM_UPVALUE_NAMES) != REM_CM_FUNCTION)) {
    return luaL_error(L, "stack:callback: bad argument #1 (function expected, got %s)",
                      luaL_typename(L, 2));
  }
  reserve(L, s, "stack:callback");
  if (n == 1) {
    /* Performance: the common case, one slot, without push_entry's shuffle. */
    push_entries(L, 1);
    lua_pushvalue(L, 2);
    lua_rawseti(L, 3, ++s->top);
    rem_exitstack_push(&s->xs, NULL, ENTRY_DATA(s->top, ENTRY_CALLBACK));
    lua_settop(L, 2);
    return 1;
  }
  luaL_checkstack(L, n + 2, "stack:callback: too many arguments");
  for (int i = 0; i < n; i++) lua_pushvalue(L, 2 + i);
  push_entry(L, s, 1, ENTRY_CALLBACK, n);
  lua_settop(L, 2);
  return 1;
}

/* stack:push(exit) -> exit: a cm (its exit), a closable, or a function exit(err). */
static int s_push(lua_State *L) {
  rem_lstack *s = check_stack(L, 1);
  int kind = rem__cm_check(L, 2, 1, "stack:push",
                          REM_CM_EXIT_ONLY | REM_CM_KEEP_METHODS | REM_CM_UPVALUE_NAMES);
  reserve(L, s, "stack:push");
  if (kind == REM_CM_CM) {  /* [exit, cm]; the check left `exit` on top */
    lua_pushvalue(L, 2);
    push_entry(L, s, 1, kind, 2);
  } else {
    lua_pushvalue(L, 2);
    push_entry(L, s, 1, kind, 1);
  }
  lua_settop(L, 2);
  return 1;
}

enum { ENTER_CONTEXT = 0, ENTER_GUARD = 1, ENTER_CM = 2 };

/* After x:enter() (how & ENTER_CM): [stack, x, exit, values...]; after rem__cm_enter:
 * [stack, x, kind, exiter, values...]. Records the exit and returns the values (for a
 * guard, the guard first). */
static int entered_k(lua_State *L, int status, lua_KContext how) {
  (void)status;
  rem_lstack *s = lua_touserdata(L, 1);
  int values;  /* the index below the first value */
  if (how & ENTER_CM) {
    /* Performance: push_entry's work without its shuffle: [exit, cm] in the next slots. */
    push_entries(L, 1);
    lua_pushvalue(L, 3);
    lua_rawseti(L, -2, s->top + 1);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, s->top + 2);
    lua_pop(L, 1);
    rem_exitstack_push(&s->xs, NULL, ENTRY_DATA(s->top + 1, REM_CM_CM));  /* reserved */
    s->top += 2;
    values = 3;
  } else {
    int kind = (int)lua_tointeger(L, 3);
    if (kind == REM_CM_CM) {  /* an async constructor's cm: its exit, as for enter_context */
      lua_getfield(L, 4, "exit");
      lua_pushvalue(L, 4);
      push_entry(L, s, 1, kind, 2);
    } else if (kind != REM_CM_NONE) {
      lua_pushvalue(L, 4);
      push_entry(L, s, 1, kind, 1);
    }
    values = 4;
  }
  if (how & ENTER_GUARD) {  /* rem.enter: the guard, then the values */
    lua_pushvalue(L, 1);
    lua_replace(L, values);
    values--;
  }
  return lua_gettop(L) - values;
}

/* [stack, x] (for a cm, with the methods its check found: [stack, x, exit, enter]): enters x
 * (of protocol kind `kind`) and records how to exit it. */
static int enter_into(lua_State *L, rem_lstack *s, int kind, int how) {
  /* Room first, so that once entered, the exit can be recorded. */
  reserve(L, s, how == ENTER_GUARD ? "rem.enter" : "stack:enter_context");
  if (kind == REM_CM_CM) {
    /* Performance: a cm is entered here, as rem__cm_enter would, without checking it again,
     * looking `enter` up again or calling through it:
     * [stack, x, exit, enter, x] -> [stack, x, exit, what x:enter() returns...]. */
    lua_pushvalue(L, 2);
    how |= ENTER_CM;
    lua_callk(L, 1, LUA_MULTRET, how, entered_k);
    return entered_k(L, LUA_OK, how);
  }
  lua_pushcfunction(L, rem__cm_enter);
  lua_pushvalue(L, 2);
  lua_callk(L, 1, LUA_MULTRET, how, entered_k);
  return entered_k(L, LUA_OK, how);
}

/* After the check (before dropping extra arguments, so a missing value is reported as
 * such): keeps the value at `at` and, for a cm, the `exit` and `enter` the check left on
 * top, above it. */
static void keep_methods(lua_State *L, int at, int kind) {
  if (kind == REM_CM_CM) {
    if (lua_gettop(L) == at + 2) return;  /* no extra arguments: in place already */
    lua_copy(L, -2, at + 1);
    lua_copy(L, -1, at + 2);
    lua_settop(L, at + 2);
  } else {
    lua_settop(L, at);
  }
}

/* stack:enter_context(cm_or_fn) -> what entering gave. */
static int s_enter_context(lua_State *L) {
  rem_lstack *s = check_stack(L, 1);
  int kind = rem__cm_check(L, 2, 1, "stack:enter_context",
                          REM_CM_KEEP_METHODS | REM_CM_UPVALUE_NAMES);
  keep_methods(L, 2, kind);
  return enter_into(L, s, kind, ENTER_CONTEXT);
}

/* rem.enter(cm_or_fn) -> guard, values...: the guard is an exit stack holding the one exit. */
static int l_enter(lua_State *L) {
  int kind = rem__cm_check(L, 1, 1, "rem.enter", REM_CM_KEEP_METHODS | REM_CM_UPVALUE_NAMES);
  keep_methods(L, 1, kind);
  rem_lstack *s = new_stack(L);
  lua_insert(L, 1);  /* [stack, x] or [stack, x, exit, enter] */
  return enter_into(L, s, kind, ENTER_GUARD);
}

/* stack:pop_all() -> a new stack with every entry; this one is left empty. */
static int s_pop_all(lua_State *L) {
  rem_lstack *s = check_stack(L, 1);
  lua_settop(L, 1);  /* the new stack at 2, whatever else was passed */
  rem_lstack *to = new_stack(L);
  int rc = rem_exitstack_move(&to->xs, &s->xs);
  if (rc == UV_EBUSY) return luaL_error(L, "stack:pop_all: the stack is unwinding");
  if (rc) return luaL_error(L, "stack:pop_all: %s", uv_strerror(rc));
  /* The entries' Lua side moves along: the table, and the slots in use. */
  to->top = s->top;
  s->top = 0;
  lua_getiuservalue(L, 1, 1);
  lua_setiuservalue(L, 2, 1);
  lua_pushnil(L);
  lua_setiuservalue(L, 1, 1);
  return 1;
}

/* ---- unwinding --------------------------------------------------------------------------- */

static int unwind_loop(lua_State *L, rem_lstack *s, int mode);

/* An exit has returned or raised: tell the runtime (its hooks update S_ERR). `saved` is the
 * boundary at S_BASE + 1; rem__pcall_restore(L, S_BASE), inline. */
static void settle(lua_State *L, rem_lstack *s, int kind, int status, rem_scope_t *saved) {
  rem_ltask *t = rem__current(L);
  if (t) t->rt.unwind_boundary = saved ? saved : t->unwind_floor;
  s->L = L;
  if (status == LUA_OK || status == LUA_YIELD) {
    /* rem__cm_suppresses, inline: a cm's exit and an exit function may suppress. */
    int suppress = (kind == REM_CM_CM || kind == REM_CM_FUNCTION) && lua_toboolean(L, S_FN);
    rem_exitstack_exit_done(&s->xs, suppress);
  } else {
    int code = rem__is_cancelled(L, -1) ? UV_ECANCELED : REM_EFAILED;
    rem_exitstack_exit_raise(&s->xs, code, 0);
  }
  s->L = NULL;
}

/* After an exit suspended: the C stack is fresh, so going on with the loop from here does
 * not nest. ctx: mode | kind << 2. */
static int unwind_k(lua_State *L, int status, lua_KContext ctx) {
  rem_lstack *s = lua_touserdata(L, S_STACK);
  settle(L, s, (int)(ctx >> 2), status, lua_touserdata(L, S_BASE + 1));
  lua_settop(L, S_HANDLER);
  return unwind_loop(L, s, (int)(ctx & 3));
}

/* Pushes the call for the entry of `kind` in slots first..first + n - 1; returns how many
 * arguments it has. */
static int push_call(lua_State *L, int kind, lua_Integer first, lua_Integer n) {
  switch (kind) {
    case ENTRY_CALLBACK:
      if (n > 8) luaL_checkstack(L, (int)n, "too many callback arguments");
      for (lua_Integer i = 0; i < n; i++) lua_rawgeti(L, S_TAB, first + i);
      return (int)n - 1;
    case REM_CM_CM:  /* exit(cm, err) */
      lua_rawgeti(L, S_TAB, first);
      lua_rawgeti(L, S_TAB, first + 1);
      break;
    case REM_CM_CLOSABLE:  /* __close(x, err), looked up now, as Lua does */
      lua_rawgeti(L, S_TAB, first);
      if (luaL_getmetafield(L, -1, "__close") == LUA_TNIL) lua_pushnil(L);
      lua_insert(L, -2);
      break;
    default:  /* REM_CM_FUNCTION: exit(err) */
      lua_rawgeti(L, S_TAB, first);
      lua_pushvalue(L, S_ERR);
      return 1;
  }
  lua_pushvalue(L, S_ERR);
  return 2;
}

static int raise_at(lua_State *L, int idx) {
  lua_pushvalue(L, idx);
  return lua_error(L);
}

static int unwind_end(lua_State *L, rem_lstack *s, int mode) {
  int suppressed = rem_exitstack_end(&s->xs, NULL);
  /* Every entry has run: the slots are dead, and what they held may go. */
  if (!lua_isnil(L, S_TAB)) {
    lua_pushnil(L);
    lua_setiuservalue(L, S_STACK, 1);
  }
  lua_settop(L, S_IN);
  int same = lua_rawequal(L, S_ERR, S_IN);
  switch (mode) {
    case MODE_CLOSE:
      if (!lua_isnil(L, S_ERR)) return raise_at(L, S_ERR);
      return 0;
    case MODE_EXIT:
      if (lua_isnil(L, S_ERR) || same) {
        lua_pushboolean(L, suppressed);  /* an error came in and none is left */
        return 1;
      }
      return raise_at(L, S_ERR);
    default:  /* __close cannot suppress: the error that came in goes on by itself */
      if (!lua_isnil(L, S_ERR) && !same) return raise_at(L, S_ERR);
      return 0;
  }
}

/* Runs the entries left, from a stack at S_HANDLER. */
static int unwind_loop(lua_State *L, rem_lstack *s, int mode) {
  rem_scope_t *saved = lua_touserdata(L, S_BASE + 1);
  rem_exit_t exit;
  while (rem_exitstack_next(&s->xs, &exit)) {
    int kind = ENTRY_KIND(exit.data);
    lua_Integer first = ENTRY_SLOT(exit.data);
    lua_Integer n = s->top - first + 1;
    s->top = first - 1;  /* popped: a push from the exit takes its slots */
    int nargs = push_call(L, kind, first, n);
    /* Performance: rem__cleanup_pcallk inlined; its boundary and handler slots were pushed
     * once for the whole unwinding (the saved boundary is restored after each exit). The
     * boundary only moves once the call is set up. */
    rem_ltask *t = rem__current(L);
    if (t) t->rt.unwind_boundary = t->rt.scope;  /* shielded: see rem__cleanup_pcallk */
    lua_KContext ctx = (lua_KContext)mode | ((lua_KContext)kind << 2);
    /* A callback's result is not wanted: it leaves the stack at S_HANDLER. */
    int nres = kind == ENTRY_CALLBACK ? 0 : 1;
    int status = lua_pcallk(L, nargs, nres, S_HANDLER, ctx, unwind_k);
    settle(L, s, kind, status, saved);
    if (nres || status != LUA_OK) lua_settop(L, S_HANDLER);
  }
  return unwind_end(L, s, mode);
}

/* [stack, err, err] -> unwinds with err in flight (nil: none). */
static int unwind(lua_State *L, int mode, const char *fname) {
  rem_lstack *s = lua_touserdata(L, S_STACK);
  rem_err_t in = {0, 0};
  if (!lua_isnil(L, S_IN)) in.code = rem__is_cancelled(L, S_IN) ? UV_ECANCELED : REM_EFAILED;
  if (rem_exitstack_begin(&s->xs, &in)) {
    return luaL_error(L, "%s: the stack is already unwinding (called from one of its own "
                      "exits?)", fname);
  }
  /* The table cannot change while unwinding: pop_all is refused, and a stack with entries
   * has one. */
  lua_getiuservalue(L, S_STACK, 1);
  rem_ltask *t = rem__current(L);
  lua_pushlightuserdata(L, t ? (void *)t->rt.unwind_boundary : NULL);
  lua_pushcfunction(L, rem__unwind_handler);
  return unwind_loop(L, s, mode);
}

/* Reads the error argument at 2: nil and false mean none. Leaves [stack, err, err]. */
static void error_arg(lua_State *L) {
  lua_settop(L, 2);
  if (!lua_toboolean(L, 2)) {
    lua_pushnil(L);
    lua_replace(L, 2);
  }
  lua_pushvalue(L, 2);
}

/* stack:close(): runs every entry now; raises the error the exits leave, if any. */
static int s_close(lua_State *L) {
  check_stack(L, 1);
  lua_settop(L, 1);
  lua_pushnil(L);
  lua_pushnil(L);
  return unwind(L, MODE_CLOSE, "stack:close");
}

/* stack:exit(err) -> true if err came in and was suppressed; raises an error that replaced
 * it. */
static int s_exit(lua_State *L) {
  check_stack(L, 1);
  error_arg(L);
  return unwind(L, MODE_EXIT, "stack:exit");
}

/* __close(stack, err): like exit, but a suppression cannot stop err (a Lua limit). */
static int s_mm_close(lua_State *L) {
  check_stack(L, 1);
  error_arg(L);
  return unwind(L, MODE_MM, "stack:__close");
}

/* stack:enter() -> the stack itself (so a stack is a context manager). */
static int s_enter(lua_State *L) {
  check_stack(L, 1);
  lua_settop(L, 1);
  return 1;
}

static int s_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_stack(L, 1)->xs.len);
  return 1;
}

static int s_tostring(lua_State *L) {
  rem_lstack *s = check_stack(L, 1);
  lua_pushfstring(L, "rem.ExitStack (%d entr%s%s): %p", (int)s->xs.len,
                  s->xs.len == 1 ? "y" : "ies",
                  s->xs.state == REM_EXITSTACK_IDLE ? "" : ", unwinding", (void *)s);
  return 1;
}

/* Entries that never ran are dropped: their exits may suspend, which __gc cannot. */
static int s_gc(lua_State *L) {
  rem_lstack *s = lua_touserdata(L, 1);
  rem_exitstack_deinit(&s->xs);
  return 0;
}

/* Pushes the upvalues of the functions that check cms: the names rem__cm_kind looks up
 * (REM_CM_UPVALUE_NAMES). */
static void push_names(lua_State *L) {
  lua_pushliteral(L, "exit");
  lua_pushliteral(L, "enter");
}

void rem__open_exitstack(lua_State *L, rem_state *st) {
  (void)st;
  static const luaL_Reg methods[] = {
    {"enter_context", s_enter_context}, {"callback", s_callback}, {"push", s_push},
    {"pop_all", s_pop_all}, {"close", s_close}, {"enter", s_enter}, {"exit", s_exit},
    {NULL, NULL}};
  luaL_newmetatable(L, REM_EXITSTACK_MT);
  luaL_newlibtable(L, methods);
  push_names(L);
  luaL_setfuncs(L, methods, 2);
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "exitstack_methods");  /* rem.contextlib adds wrap */
  lua_setfield(L, -2, "__index");
  static const luaL_Reg mms[] = {
    {"__close", s_mm_close}, {"__gc", s_gc}, {"__len", s_len}, {"__tostring", s_tostring},
    {NULL, NULL}};
  luaL_setfuncs(L, mms, 0);
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"ExitStack", l_exitstack}, {"enter", l_enter}, {NULL, NULL}};
  push_names(L);
  luaL_setfuncs(L, fns, 2);
}
