/* Suspending a task, and the parts of Lua that must know about it.
 *
 * A suspending call (rem.sleep, join, ...) arms a wait in the runtime, then yields a marker
 * value. The scheduler resumes the task's coroutine when the wait completes. Coroutines the
 * user resumes inside a task pass the marker up (rem replaces coroutine.resume and wrap) so
 * `rem.sleep` works inside a generator. pcall and xpcall are replaced so the runtime knows
 * when an error unwinds: from the raise (in the message handler, before any __close runs)
 * until the pcall returns, the task's scopes do not cancel it, so cleanup may suspend.
 */
#include <string.h>

#include "internal.h"

/* Its address marks rem's own yields. */
static const char suspend_marker = 0;
#define IS_MARKER(L, i) (lua_touserdata(L, i) == (void *)&suspend_marker)

int rem__is_marker(lua_State *L, int idx) {
  return IS_MARKER(L, idx);
}

rem_ltask *rem__need_task(lua_State *L, const char *fname) {
  rem_ltask *t = rem__current(L);
  if (!t) luaL_error(L, "%s: not inside a task (start one with rem.run or rem.spawn)", fname);
  if (!lua_isyieldable(L))
    luaL_error(L, "%s: cannot suspend here (called through a C function that cannot yield, "
               "such as a metamethod or a table.sort comparator)", fname);
  return t;
}

/* How many __close handlers called by blocks that end normally are running? (A block left
 * by an error is covered by the unwind boundary instead.) */
static int close_handlers(lua_State *L) {
  lua_Debug ar;
  int n = 0;
  for (int level = 0; lua_getstack(L, level, &ar); level++) {
    if (lua_getinfo(L, "n", &ar) && ar.namewhat && ar.name &&
        strcmp(ar.namewhat, "metamethod") == 0 && strcmp(ar.name, "close") == 0)
      n++;
  }
  return n;
}

int rem__cleanup_depth(lua_State *L, rem_ltask *t) {
  return close_handlers(L) + (L != t->T ? close_handlers(t->T) : 0);
}

/* Cleanup is shielded from the scopes outside it, but a scope opened inside the innermost
 * running __close (a timeout bounding the cleanup) still cancels it. */
int rem__cancelled_here(lua_State *L, rem_ltask *t) {
  const rem_scope_t *s = rem_task_cancelled_by(&t->rt);
  if (!s) return 0;
  int depth = rem__cleanup_depth(L, t);
  return depth == 0 || s->tag >= depth;
}

void rem__check_cancel(lua_State *L, rem_ltask *t) {
  if (rem__cancelled_here(L, t)) {
    rem__push_cancelled(L);
    lua_error(L);
  }
}

int rem__may_interrupt(rem_task_t *rt) {
  rem_ltask *t = REM_CONTAINER_OF(rt, rem_ltask, rt);
  return rem__cancelled_here(t->wait_L ? t->wait_L : t->T, t);
}

int rem__await(lua_State *L, rem_ltask *t, lua_KContext ctx, lua_KFunction k) {
  t->wait_L = L;
  lua_pushlightuserdata(L, (void *)&suspend_marker);
  return lua_yieldk(L, 1, ctx, k);
}

rem_ltask *rem__resumed(lua_State *L) {
  rem_ltask *t = rem__current(L);
  t->wait_L = NULL;
  if (t->rt.wake_status == UV_ECANCELED) {
    t->rt.wake_status = 0;
    rem__push_cancelled(L);
    lua_error(L);
  }
  return t;
}

/* ---- pcall / xpcall ---------------------------------------------------------------- */

/* The message handler runs where the error was raised, before anything unwinds. */
int rem__unwind_handler(lua_State *L) {
  rem_ltask *t = rem__current(L);
  if (t && !t->rt.unwind_boundary) t->rt.unwind_boundary = t->rt.scope;
  return 1;
}

/* xpcall's: the user's handler (upvalue 1) first, then ours. */
static int unwind_then_handler(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  return rem__unwind_handler(L);
}

static void push_boundary(lua_State *L) {
  rem_ltask *t = rem__current(L);
  lua_pushlightuserdata(L, t ? (void *)t->rt.unwind_boundary : NULL);
}

int rem__pcall(lua_State *L, int base, lua_KContext ctx, lua_KFunction k) {
  push_boundary(L);
  lua_replace(L, base + 1);
  lua_pushcfunction(L, rem__unwind_handler);
  lua_replace(L, base + 2);
  int nargs = lua_gettop(L) - (base + 3);
  int status = lua_pcallk(L, nargs, LUA_MULTRET, base + 2, ctx, k);
  return k(L, status, ctx);
}

/* A pcall inside a coroutine may have been entered in an earlier resume of it (a generator's
 * pcall around its yield, entered while its manager was entered, returning while it is
 * exited): a boundary of NULL saved then does not hold now, and the floor (the boundary of the
 * code that resumed the coroutine this time) is restored instead, so that a cleanup that
 * resumed it stays shielded. */
void rem__pcall_restore(lua_State *L, int base) {
  rem_ltask *t = rem__current(L);
  if (!t) return;
  rem_scope_t *saved = lua_touserdata(L, base + 1);
  t->rt.unwind_boundary = saved ? saved : t->unwind_floor;
}

/* Stack of both: [boundary, handler, true, f, args...]; results from index 3. */
static int finish_pcall(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  rem__pcall_restore(L, 0);
  if (status != LUA_OK && status != LUA_YIELD) {
    lua_pushboolean(L, 0);
    lua_pushvalue(L, -2);
    return 2;
  }
  return lua_gettop(L) - 2;
}

static int l_pcall(lua_State *L) {
  luaL_checkany(L, 1);
  int nargs = lua_gettop(L) - 1;
  push_boundary(L);
  lua_pushcfunction(L, rem__unwind_handler);
  lua_pushboolean(L, 1);
  lua_rotate(L, 1, 3);  /* [boundary, handler, true, f, args...] */
  int status = lua_pcallk(L, nargs, LUA_MULTRET, 2, 0, finish_pcall);
  return finish_pcall(L, status, 0);
}

static int l_xpcall(lua_State *L) {
  int n = lua_gettop(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushvalue(L, 2);
  lua_pushcclosure(L, unwind_then_handler, 1);
  lua_replace(L, 2);                       /* [f, handler, args...] */
  lua_pushboolean(L, 1);
  lua_pushvalue(L, 1);
  lua_rotate(L, 3, 2);                     /* [f, handler, true, f, args...] */
  push_boundary(L);
  lua_replace(L, 1);                       /* [boundary, handler, true, f, args...] */
  int status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 0, finish_pcall);
  return finish_pcall(L, status, 0);
}

/* ---- coroutine.resume / coroutine.wrap ---------------------------------------------- */

enum { MODE_RESUME = 0, MODE_WRAP = 1 };

static lua_State *wrapped_co(lua_State *L) {
  return lua_tothread(L, lua_upvalueindex(1));
}

static int resume_k(lua_State *L, int status, lua_KContext mode);

/* Both resumes keep two slots below the arguments, at SAVED(mode) and SAVED(mode) + 1: the
 * task's unwind floor and boundary when the resume began, put back when `co` yields or ends
 * (the coroutine runs in its resumer's context: `co` sees the resumer's boundary as its
 * floor). */
#define SAVED(mode) ((mode) == MODE_RESUME ? 2 : 1)

static void save_unwind(lua_State *L, int at) {
  rem_ltask *t = rem__current(L);
  lua_pushlightuserdata(L, t ? (void *)t->unwind_floor : NULL);
  lua_pushlightuserdata(L, t ? (void *)t->rt.unwind_boundary : NULL);
  lua_rotate(L, at, 2);
  if (t) t->unwind_floor = t->rt.unwind_boundary;
}

/* Resumes `co` with the `narg` values on top of L. A marker yield is passed up to the task;
 * anything else behaves as the standard function. */
static int resume_step(lua_State *L, lua_State *co, int narg, lua_KContext mode) {
  if (!lua_checkstack(co, narg)) {
    lua_pushliteral(L, "too many arguments to resume");
    goto fail;
  }
  lua_xmove(L, co, narg);
  rem__set_current(co, rem__current(L));
  int nres;
  int status = lua_resume(co, L, narg, &nres);
  rem__set_current(co, NULL);
  if (status == LUA_YIELD && nres == 1 && IS_MARKER(co, -1) && rem__current(L)) {
    lua_pop(co, 1);
    lua_pushlightuserdata(L, (void *)&suspend_marker);
    return lua_yieldk(L, 1, mode, resume_k);
  }
  rem_ltask *t = rem__current(L);
  if (t) {
    t->unwind_floor = lua_touserdata(L, SAVED(mode));
    t->rt.unwind_boundary = lua_touserdata(L, SAVED(mode) + 1);
  }
  if (status == LUA_OK || status == LUA_YIELD) {
    if (!lua_checkstack(L, nres + 1)) {
      lua_pop(co, nres);
      lua_pushliteral(L, "too many results to resume");
      goto fail;
    }
    if (mode == MODE_RESUME) lua_pushboolean(L, 1);
    lua_xmove(co, L, nres);
    return nres + (mode == MODE_RESUME);
  }
  lua_xmove(co, L, 1);
  if (mode == MODE_WRAP) {
    int stat = lua_status(co);
    if (stat != LUA_OK && stat != LUA_YIELD) {  /* an error in the coroutine: close it */
      lua_pop(L, 1);
      stat = lua_resetthread(co);
      lua_xmove(co, L, 1);
    }
    if (stat != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
      luaL_where(L, 1);
      lua_insert(L, -2);
      lua_concat(L, 2);
    }
    return lua_error(L);
  }
fail:
  if (mode == MODE_WRAP) return lua_error(L);
  lua_pushboolean(L, 0);
  lua_insert(L, -2);
  return 2;
}

static int resume_k(lua_State *L, int status, lua_KContext mode) {
  (void)status;
  lua_State *co = mode == MODE_WRAP ? wrapped_co(L) : lua_tothread(L, 1);
  return resume_step(L, co, 0, mode);
}

static int l_resume(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argexpected(L, co, 1, "coroutine");
  int narg = lua_gettop(L) - 1;
  luaL_checkstack(L, 2, NULL);
  save_unwind(L, SAVED(MODE_RESUME));
  return resume_step(L, co, narg, MODE_RESUME);
}

static int l_wrap_call(lua_State *L) {
  int narg = lua_gettop(L);
  luaL_checkstack(L, 2, NULL);
  save_unwind(L, SAVED(MODE_WRAP));
  return resume_step(L, wrapped_co(L), narg, MODE_WRAP);
}

/* A wrapped coroutine's body: the user's function under rem's pcall, so that on an error its
 * to-be-closed variables are closed inside the coroutine while it can still be resumed
 * (their __close may suspend the task), before the error ends it. The standard wrap closes
 * them too, from lua_resetthread, where nothing can yield. Upvalue 1: the function. */
static int wrap_body_k(lua_State *co, int status, lua_KContext ctx) {
  (void)ctx;
  rem__pcall_restore(co, 0);
  if (status != LUA_OK && status != LUA_YIELD) return lua_error(co);
  return lua_gettop(co) - 2;
}

static int wrap_body(lua_State *co) {
  lua_pushnil(co);
  lua_pushnil(co);
  lua_pushvalue(co, lua_upvalueindex(1));
  lua_rotate(co, 1, 3);  /* [-, -, fn, args...] */
  return rem__pcall(co, 0, 0, wrap_body_k);
}

/* Pushes a new coroutine (belonging to no task yet) whose body is the function on top,
 * which it pops. */
static lua_State *new_coroutine(lua_State *L) {
  lua_State *co = lua_newthread(L);
  rem__set_current(co, NULL);
  lua_rotate(L, -2, 1);
  lua_xmove(L, co, 1);
  return co;
}

static int l_wrap(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_pushvalue(L, 1);
  lua_pushcclosure(L, wrap_body, 1);
  new_coroutine(L);
  lua_pushcclosure(L, l_wrap_call, 1);
  return 1;
}

static int l_create(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_pushvalue(L, 1);
  new_coroutine(L);
  return 1;
}

/* Installs the replacements into _G and the coroutine table. */
void rem__open_await(lua_State *L) {
  lua_pushcfunction(L, l_pcall);
  lua_setglobal(L, "pcall");
  lua_pushcfunction(L, l_xpcall);
  lua_setglobal(L, "xpcall");
  if (lua_getglobal(L, "coroutine") == LUA_TTABLE) {
    lua_pushcfunction(L, l_resume);
    lua_setfield(L, -2, "resume");
    lua_pushcfunction(L, l_wrap);
    lua_setfield(L, -2, "wrap");
    lua_pushcfunction(L, l_create);
    lua_setfield(L, -2, "create");
  }
  lua_pop(L, 1);
}
