/* The context-manager protocol, in one place: what a value is to it, entering a cm or an async
 * constructor, and exiting what was entered with the error in flight. rem.enter, rem.with and
 * exit stacks use it; so do the pools and collections that enter many values at once (they
 * run rem__cm_enter and rem__cm_exit as task functions, or call them with lua_callk).
 *
 * Entering is not shielded (an acquisition may be cancelled); exiting is cleanup, so it runs
 * shielded: the task's cancellation does not reach it, though a scope opened inside it (a
 * timeout bounding the cleanup) still can.
 *
 * Also here: rem.contextmanager's `coroutine.yield`, which raises an error thrown in by the
 * resumer (Python's generator.throw), so a body error is raised at the generator's yield.
 */
#include "internal.h"

/* A value is callable if it is a function or has __call. */
static int callable(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TFUNCTION) return 1;
  if (luaL_getmetafield(L, idx, "__call") == LUA_TNIL) return 0;
  lua_pop(L, 1);
  return 1;
}

/* Pushes x.exit (REM_CM_NAME_EXIT) or x.enter, by the name the caller keeps interned in its
 * upvalues (REM_CM_UPVALUE_NAMES) or by the literal. */
enum { NAME_EXIT = 1, NAME_ENTER = 2 };
static void get_method(lua_State *L, int idx, int name, int flags) {
  if (flags & REM_CM_UPVALUE_NAMES) {
    lua_pushvalue(L, lua_upvalueindex(name));
    lua_gettable(L, idx);
  } else {
    lua_getfield(L, idx, name == NAME_EXIT ? "exit" : "enter");
  }
}

int rem__cm_kind(lua_State *L, int idx, int flags) {
  int t = lua_type(L, idx);
  if (t == LUA_TFUNCTION) return REM_CM_FUNCTION;
  idx = lua_absindex(L, idx);
  /* Only tables, and userdata with an __index, are indexed: indexing anything else would
   * raise. */
  int indexable = t == LUA_TTABLE;
  if (t == LUA_TUSERDATA && luaL_getmetafield(L, idx, "__index") != LUA_TNIL) {
    lua_pop(L, 1);
    indexable = 1;
  }
  if (indexable) {
    get_method(L, idx, NAME_EXIT, flags);
    if (callable(L, -1)) {
      if (flags & REM_CM_EXIT_ONLY) {
        if (!(flags & REM_CM_KEEP_METHODS)) lua_pop(L, 1);
        return REM_CM_CM;
      }
      get_method(L, idx, NAME_ENTER, flags);
      if (callable(L, -1)) {
        if (!(flags & REM_CM_KEEP_METHODS)) lua_pop(L, 2);
        return REM_CM_CM;
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  if (luaL_getmetafield(L, idx, "__close") != LUA_TNIL) {
    lua_pop(L, 1);
    return REM_CM_CLOSABLE;
  }
  if (callable(L, idx)) return REM_CM_FUNCTION;
  return REM_CM_NONE;
}

int rem__cm_check(lua_State *L, int idx, int argn, const char *fname, int flags) {
  int kind = rem__cm_kind(L, idx, flags);
  if (kind == REM_CM_NONE) {
    luaL_error(L, "%s: bad argument #%d (context manager, closable or function expected, "
               "got %s)", fname, argn, luaL_typename(L, idx));
  }
  return kind;
}

/* ---- entering ------------------------------------------------------------------------ */

enum { STEP_ENTERED = 1, STEP_BUILT = 2 };

static int enter_cm(lua_State *L);

/* STEP_BUILT: [x, r], r what the constructor returned; STEP_ENTERED: [kind, cm, values...]. */
static int enter_k(lua_State *L, int status, lua_KContext step) {
  (void)status;
  if (step == STEP_ENTERED) return lua_gettop(L);
  int kind = rem__cm_kind(L, 2, 0);
  if (kind == REM_CM_CM) {
    lua_pushinteger(L, REM_CM_CM);
    lua_replace(L, 1);
    return enter_cm(L);
  }
  /* Kept as is; only a closable has something to do on exit. */
  if (kind != REM_CM_CLOSABLE) kind = REM_CM_NONE;
  lua_pushinteger(L, kind);
  lua_replace(L, 1);
  if (kind == REM_CM_NONE) {
    lua_pushnil(L);
    lua_insert(L, 2);
  } else {
    lua_pushvalue(L, 2);
  }
  return 3;
}

/* [kind, cm] -> [kind, cm, what cm:enter() returned...] */
static int enter_cm(lua_State *L) {
  lua_getfield(L, 2, "enter");
  lua_pushvalue(L, 2);
  lua_callk(L, 1, LUA_MULTRET, STEP_ENTERED, enter_k);
  return enter_k(L, LUA_OK, STEP_ENTERED);
}

int rem__cm_enter(lua_State *L) {
  lua_settop(L, 1);
  int kind = rem__cm_check(L, 1, 1, "rem.enter", 0);
  switch (kind) {
    case REM_CM_CM:
      lua_pushinteger(L, kind);
      lua_insert(L, 1);
      return enter_cm(L);
    case REM_CM_CLOSABLE:  /* entered as is: [kind, x, x] */
      lua_pushinteger(L, kind);
      lua_insert(L, 1);
      lua_pushvalue(L, 2);
      return 3;
    default:               /* an async constructor */
      lua_pushvalue(L, 1);
      lua_callk(L, 0, 1, STEP_BUILT, enter_k);
      return enter_k(L, LUA_OK, STEP_BUILT);
  }
}

/* ---- exiting ------------------------------------------------------------------------- */

int rem__cleanup_pcallk(lua_State *L, int base, int nresults, lua_KContext ctx,
                        lua_KFunction k) {
  rem_ltask *t = rem__current(L);
  lua_pushlightuserdata(L, t ? (void *)t->rt.unwind_boundary : NULL);
  lua_replace(L, base + 1);
  lua_pushcfunction(L, rem__unwind_handler);
  lua_replace(L, base + 2);
  /* The boundary at the innermost scope: no scope the exit did not open itself cancels it. */
  if (t) t->rt.unwind_boundary = t->rt.scope;
  int nargs = lua_gettop(L) - (base + 3);
  return lua_pcallk(L, nargs, nresults, base + 2, ctx, k);
}

int rem__cm_push_exit(lua_State *L, int kind, int exiter_idx, int err_idx) {
  exiter_idx = lua_absindex(L, exiter_idx);
  err_idx = lua_absindex(L, err_idx);
  luaL_checkstack(L, 3, NULL);
  switch (kind) {
    case REM_CM_CM:
      lua_getfield(L, exiter_idx, "exit");
      lua_pushvalue(L, exiter_idx);
      lua_pushvalue(L, err_idx);
      return 3;
    case REM_CM_CLOSABLE:
      if (luaL_getmetafield(L, exiter_idx, "__close") == LUA_TNIL) lua_pushnil(L);
      lua_pushvalue(L, exiter_idx);
      lua_pushvalue(L, err_idx);
      return 3;
    case REM_CM_FUNCTION:
      lua_pushvalue(L, exiter_idx);
      lua_pushvalue(L, err_idx);
      return 2;
    default:
      return 0;
  }
}

int rem__cm_suppresses(lua_State *L, int kind, int res_idx) {
  /* A closable's __close cannot suppress: Lua ignores what it returns. */
  return (kind == REM_CM_CM || kind == REM_CM_FUNCTION) && lua_toboolean(L, res_idx);
}

/* Stack: [kind, exiter, err, boundary, handler, result] or [..., handler, error]. */
static int exit_k(lua_State *L, int status, lua_KContext kind) {
  rem__pcall_restore(L, 3);
  if (status != LUA_OK && status != LUA_YIELD) {
    rem__chain(L, -1, 3);
    return lua_error(L);
  }
  lua_pushboolean(L, rem__cm_suppresses(L, (int)kind, 6));
  return 1;
}

int rem__cm_exit(lua_State *L) {
  lua_settop(L, 3);
  int kind = (int)lua_tointeger(L, 1);
  if (!lua_toboolean(L, 3)) {  /* nil and false: nothing in flight */
    lua_pushnil(L);
    lua_replace(L, 3);
  }
  if (kind != REM_CM_CM && kind != REM_CM_CLOSABLE && kind != REM_CM_FUNCTION) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_pushnil(L);
  lua_pushnil(L);
  rem__cm_push_exit(L, kind, 2, 3);
  int status = rem__cleanup_pcallk(L, 3, 1, kind, exit_k);
  return exit_k(L, status, kind);
}

/* ---- generators ---------------------------------------------------------------------- */

/* Its address marks a resume that throws: resume(co, THROW, err, box) makes the pending
 * coroutine.yield raise `err`, after setting box.thrown (so the resumer knows the error got
 * in, and a generator that holds the standard yield cannot swallow it unseen). */
static const char throw_marker = 0;

static int yield_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  if (lua_touserdata(L, 1) == (void *)&throw_marker) {
    if (lua_type(L, 3) == LUA_TTABLE) {
      lua_pushboolean(L, 1);
      lua_setfield(L, 3, "thrown");
    }
    lua_settop(L, 2);
    return lua_error(L);
  }
  return lua_gettop(L);
}

/* coroutine.yield(...): the standard one, but for a thrown error, and for a task's own
 * function: there it raises at once, where the caller (a collection's or a pool's helper
 * task, a pcall) can see it, instead of yielding to the scheduler, which could only end the
 * task without its cleanup. */
static int l_yield(lua_State *L) {
  rem_ltask *t = rem__current(L);
  if (t && L == t->T)
    return luaL_error(L, "coroutine.yield: a task's own function cannot yield (only "
                      "coroutines it creates can)");
  return lua_yieldk(L, lua_gettop(L), 0, yield_k);
}

/* ---- Lua functions ------------------------------------------------------------------- */

static const char *const kind_names[] = {NULL, "cm", "closable", "function"};

/* cm_kind(v [, exit_only]) -> "cm" | "closable" | "function" | nil */
static int l_cm_kind(lua_State *L) {
  luaL_checkany(L, 1);
  int kind = rem__cm_kind(L, 1, lua_toboolean(L, 2) ? REM_CM_EXIT_ONLY : 0);
  if (kind == REM_CM_NONE) return 0;
  lua_pushstring(L, kind_names[kind]);
  return 1;
}

/* cm_chain(new, old) -> the error to raise: new, with old as its context (settled when old
 * is nil). */
static int l_cm_chain(lua_State *L) {
  lua_settop(L, 2);
  rem__chain(L, 1, 2);
  return 1;
}

void rem__open_contextlib(lua_State *L, rem_state *st) {
  static const luaL_Reg fns[] = {
    {"cm_kind", l_cm_kind}, {"cm_chain", l_cm_chain}, {"cm_enter", rem__cm_enter},
    {"cm_exit", rem__cm_exit}, {"yield", l_yield}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  lua_pushlightuserdata(L, (void *)&throw_marker);
  lua_setfield(L, -2, "throw_marker");
  rem__open_exitstack(L, st);
}
