/* rem.ExitStack and rem.enter: the runtime's exit stack (runtime/exitstack.h) fed with Lua
 * exits.
 *
 * The runtime keeps the order, the error in flight, suppression and the chaining; the Lua
 * side of entry i (a function, a cm, a closable, or a callback with its arguments) is in the
 * stack's user value 1 at index i, and the runtime entry's data says which it is. Unwinding
 * runs in the calling task through the runtime's step-by-step API: each exit is called with
 * lua_pcallk, shielded, and when one suspends the loop goes on from the continuation after
 * the resume — the C stack never grows with the number of entries.
 */
#include <stdint.h>
#include <string.h>

#include "exitstack.h"
#include "internal.h"

#define REM_EXITSTACK_MT "rem.ExitStack"

typedef struct rem_lstack {
  rem_exitstack_t xs;
  lua_State *L;  /* the thread unwinding it, during a step call (the hooks use its stack) */
} rem_lstack;

/* Entry kinds beyond the cm protocol's (REM_CM_CM, REM_CM_CLOSABLE, REM_CM_FUNCTION = an
 * exit function): callbacks, which get their own arguments and never suppress. */
enum { ENTRY_CALLBACK = 8,  /* the value is the function */
       ENTRY_CALLBACK_ARGS  /* the value is {f, args..., n = 1 + #args} */ };

/* Unwinding: what the caller gets at the end. */
enum { MODE_CLOSE,   /* stack:close(): raises what is left in flight */
       MODE_EXIT,    /* stack:exit(err): true if err was suppressed; raises a new error */
       MODE_MM };    /* __close(stack, err): raises a new error */

/* The unwinding functions' stack: */
enum { S_STACK = 1, S_ERR = 2, S_IN = 3, S_BASE = 3, S_FN = 6 };
/* [stack, error in flight, error that came in, boundary, handler, exit fn, args...] */

/* Performance: the methods carry the metatable as upvalue 1 (rem__open_exitstack), so the
 * common check is one metatable comparison, not luaL_checkudata's registry lookup by name;
 * anything else goes to luaL_checkudata, which raises the usual message. */
static rem_lstack *check_stack(lua_State *L, int idx) {
  void *p = lua_touserdata(L, idx);
  if (p && lua_getmetatable(L, idx)) {
    int ok = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
    if (ok) return p;
  }
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

static rem_lstack *new_stack(lua_State *L) {
  rem_lstack *s = lua_newuserdatauv(L, sizeof *s, 1);
  rem_exitstack_init(&s->xs);  /* safe to collect from here on */
  s->xs.chain = on_chain;
  s->xs.drop = on_drop;
  s->L = NULL;
  luaL_setmetatable(L, REM_EXITSTACK_MT);
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);
  return s;
}

static int l_exitstack(lua_State *L) {
  new_stack(L);
  return 1;
}

static void reserve(lua_State *L, rem_lstack *s, const char *fname) {
  if (rem_exitstack_reserve(&s->xs, 1)) luaL_error(L, "%s: out of memory", fname);
}

/* Records the value at `idx` as the top entry (room was reserved). */
static void push_entry(lua_State *L, rem_lstack *s, int stack_idx, int kind, int idx,
                       const char *fname) {
  idx = lua_absindex(L, idx);
  if (rem_exitstack_push(&s->xs, NULL, (void *)(intptr_t)kind))
    luaL_error(L, "%s: out of memory", fname);
  lua_getiuservalue(L, stack_idx, 1);
  lua_pushvalue(L, idx);
  lua_rawseti(L, -2, (lua_Integer)s->xs.len);
  lua_pop(L, 1);
}

/* ---- registering ----------------------------------------------------------------------- */

/* stack:callback(f, ...) -> f; f(...) runs at unwinding, never suppresses. */
static int s_callback(lua_State *L) {
  rem_lstack *s = check_stack(L, 1);
  int n = lua_gettop(L) - 2;
  if (n < 0 || rem__cm_kind(L, 2, 0) != REM_CM_FUNCTION) {
    return luaL_error(L, "stack:callback: bad argument #1 (function expected, got %s)",
                      luaL_typename(L, 2));
  }
  reserve(L, s, "stack:callback");
  if (n == 0) {
    push_entry(L, s, 1, ENTRY_CALLBACK, 2, "stack:callback");
    return 1;
  }
  lua_createtable(L, n + 1, 1);
  for (int i = 0; i <= n; i++) {
    lua_pushvalue(L, 2 + i);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushinteger(L, n + 1);
  lua_setfield(L, -2, "n");
  push_entry(L, s, 1, ENTRY_CALLBACK_ARGS, -1, "stack:callback");
  lua_settop(L, 2);
  return 1;
}

/* stack:push(exit) -> exit: a cm (its exit), a closable, or a function exit(err). */
static int s_push(lua_State *L) {
  rem_lstack *s = check_stack(L, 1);
  int kind = rem__cm_check(L, 2, 1, "stack:push", REM_CM_EXIT_ONLY);
  lua_settop(L, 2);
  reserve(L, s, "stack:push");
  push_entry(L, s, 1, kind, 2, "stack:push");
  return 1;
}

enum { ENTER_CONTEXT, ENTER_GUARD };

/* [stack, x, kind, exiter, values...] */
static int entered_k(lua_State *L, int status, lua_KContext how) {
  (void)status;
  rem_lstack *s = lua_touserdata(L, 1);
  int kind = (int)lua_tointeger(L, 3);
  const char *fname = how == ENTER_GUARD ? "rem.enter" : "stack:enter_context";
  if (kind != REM_CM_NONE) push_entry(L, s, 1, kind, 4, fname);
  if (how == ENTER_CONTEXT) return lua_gettop(L) - 4;
  lua_pushvalue(L, 1);  /* rem.enter: the guard, then the values */
  lua_replace(L, 4);
  return lua_gettop(L) - 3;
}

/* [stack, x] (and for a cm, the `enter` its check found: [stack, x, enter]): enters x (of
 * protocol kind `kind`) and records how to exit it. */
static int enter_into(lua_State *L, rem_lstack *s, int kind, int how) {
  const char *fname = how == ENTER_GUARD ? "rem.enter" : "stack:enter_context";
  /* Room first, so that once entered, the exit can always be recorded. */
  reserve(L, s, fname);
  if (kind == REM_CM_CM) {
    /* Performance: a cm is entered here, as rem__cm_enter would, without checking it again,
     * looking `enter` up again or calling through it:
     * [stack, x, kind, x, enter, x] -> [stack, x, kind, x, what x:enter() returns...]. */
    lua_pushinteger(L, REM_CM_CM);
    lua_pushvalue(L, 2);
    lua_rotate(L, 3, 2);
    lua_pushvalue(L, 2);
    lua_callk(L, 1, LUA_MULTRET, how, entered_k);
    return entered_k(L, LUA_OK, how);
  }
  lua_pushcfunction(L, rem__cm_enter);
  lua_pushvalue(L, 2);
  lua_callk(L, 1, LUA_MULTRET, how, entered_k);
  return entered_k(L, LUA_OK, how);
}

/* After the check (before dropping extra arguments, so a missing value is reported as
 * such): keeps the value at `at` and, for a cm, the `enter` the check left on top, above it. */
static void keep_enter(lua_State *L, int at, int kind) {
  if (kind == REM_CM_CM) {
    lua_copy(L, -1, at + 1);
    lua_settop(L, at + 1);
  } else {
    lua_settop(L, at);
  }
}

/* stack:enter_context(cm_or_fn) -> what entering gave. */
static int s_enter_context(lua_State *L) {
  rem_lstack *s = check_stack(L, 1);
  int kind = rem__cm_check(L, 2, 1, "stack:enter_context", REM_CM_KEEP_ENTER);
  keep_enter(L, 2, kind);
  return enter_into(L, s, kind, ENTER_CONTEXT);
}

/* rem.enter(cm_or_fn) -> guard, values...: the guard is an exit stack holding the one exit. */
static int l_enter(lua_State *L) {
  int kind = rem__cm_check(L, 1, 1, "rem.enter", REM_CM_KEEP_ENTER);
  keep_enter(L, 1, kind);
  rem_lstack *s = new_stack(L);
  lua_insert(L, 1);  /* [stack, x] or [stack, x, enter] */
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
  /* The entries' Lua side moves along: swap the user values. */
  lua_getiuservalue(L, 1, 1);
  lua_setiuservalue(L, 2, 1);
  lua_newtable(L);
  lua_setiuservalue(L, 1, 1);
  return 1;
}

/* ---- unwinding --------------------------------------------------------------------------- */

static int unwind_loop(lua_State *L, int mode);

/* An exit has returned or raised: tell the runtime (its hooks update S_ERR). */
static void settle(lua_State *L, rem_lstack *s, int kind, int status) {
  rem__pcall_restore(L, S_BASE);
  s->L = L;
  if (status == LUA_OK || status == LUA_YIELD) {
    rem_exitstack_exit_done(&s->xs, rem__cm_suppresses(L, kind, S_FN));
  } else {
    int code = rem__is_cancelled(L, -1) ? UV_ECANCELED : REM_EFAILED;
    rem_exitstack_exit_raise(&s->xs, code, 0);
  }
  s->L = NULL;
}

/* After an exit suspended: the C stack is fresh, so going on with the loop from here does
 * not nest. ctx: mode | kind << 2. */
static int unwind_k(lua_State *L, int status, lua_KContext ctx) {
  settle(L, lua_touserdata(L, S_STACK), (int)(ctx >> 2), status);
  return unwind_loop(L, (int)(ctx & 3));
}

/* Pushes the call for one entry (the value at -1, popped): the function, then its args. */
static void push_call(lua_State *L, int kind) {
  int v = lua_gettop(L);
  if (kind == ENTRY_CALLBACK) {
    lua_pushvalue(L, v);
  } else if (kind == ENTRY_CALLBACK_ARGS) {
    lua_getfield(L, v, "n");
    int n = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    luaL_checkstack(L, n, "too many callback arguments");
    for (int i = 1; i <= n; i++) lua_rawgeti(L, v, i);
  } else {
    rem__cm_push_exit(L, kind, v, S_ERR);
  }
  lua_remove(L, v);
}

static int raise_at(lua_State *L, int idx) {
  lua_pushvalue(L, idx);
  return lua_error(L);
}

static int unwind_end(lua_State *L, rem_lstack *s, int mode) {
  int suppressed = rem_exitstack_end(&s->xs, NULL);
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

static int unwind_loop(lua_State *L, int mode) {
  rem_lstack *s = lua_touserdata(L, S_STACK);
  rem_exit_t exit;
  for (;;) {
    lua_settop(L, S_IN);
    if (!rem_exitstack_next(&s->xs, &exit)) break;
    int kind = (int)(intptr_t)exit.data;
    lua_Integer i = (lua_Integer)s->xs.len + 1;  /* the entry just popped */
    /* Performance: rem__cleanup_pcallk inlined, its boundary and handler slots pushed in
     * place rather than pushed as nil and replaced. The boundary only moves once the call
     * is set up, so an entry that cannot be called leaves it as it was. */
    rem_ltask *t = rem__current(L);
    lua_pushlightuserdata(L, t ? (void *)t->rt.unwind_boundary : NULL);
    lua_pushcfunction(L, rem__unwind_handler);
    lua_getiuservalue(L, S_STACK, 1);
    lua_rawgeti(L, -1, i);
    lua_pushnil(L);
    lua_rawseti(L, -3, i);  /* each entry is removed as it runs */
    lua_remove(L, -2);
    push_call(L, kind);
    lua_KContext ctx = (lua_KContext)mode | ((lua_KContext)kind << 2);
    if (t) t->rt.unwind_boundary = t->rt.scope;  /* shielded: see rem__cleanup_pcallk */
    int status = lua_pcallk(L, lua_gettop(L) - (S_BASE + 3), 1, S_BASE + 2, ctx, unwind_k);
    settle(L, s, kind, status);
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
  return unwind_loop(L, mode);
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

void rem__open_exitstack(lua_State *L, rem_state *st) {
  static const luaL_Reg methods[] = {
    {"enter_context", s_enter_context}, {"callback", s_callback}, {"push", s_push},
    {"pop_all", s_pop_all}, {"close", s_close}, {"enter", s_enter}, {"exit", s_exit},
    {NULL, NULL}};
  luaL_newmetatable(L, REM_EXITSTACK_MT);
  luaL_newlibtable(L, methods);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, methods, 1);              /* upvalue 1: the metatable (check_stack) */
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "exitstack_methods");  /* rem.contextlib adds wrap */
  lua_setfield(L, -2, "__index");
  static const luaL_Reg mms[] = {
    {"__close", s_mm_close}, {"__gc", s_gc}, {"__len", s_len}, {"__tostring", s_tostring},
    {NULL, NULL}};
  lua_pushvalue(L, -1);
  luaL_setfuncs(L, mms, 1);
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"ExitStack", l_exitstack}, {"enter", l_enter}, {NULL, NULL}};
  rem__setfuncs(L, fns, st);
}
