/* A plain rem.Manager: its state is its metatable; its operations run inline.
 *
 * An idle instance has its class as metatable, as Lua's class idiom makes it. During an
 * operation, and while it is acquired or held by a rem.Collection, its metatable is one of
 * the class's role tables, made the first time the class is used: acquiring, acquired,
 * releasing, held. A role table copies the class's metamethods (`__index`, `__close`,
 * `__name`, `__tostring`, ...: the instance behaves as one of its class in every state) and
 * names the class in `__metatable`, so getmetatable(m) is the class in every state.
 * Performance (W1, W2 of bench/): entering and exiting a fresh manager allocates nothing —
 * no state object, no registry or weak-table entry, no hash part in the instance (a field
 * would cost one): a change of state is a metatable swap. Metamethods a class gets after its
 * first use are not copied to its role tables.
 *
 * The operations run in the calling task, which may suspend in them:
 *  - acquire: acquire_resources under rem's pcall; when it fails (a cancellation included),
 *    release_resources_on_error(err) runs shielded, then the error propagates (a failure of
 *    that release carries the acquire error as its `context`);
 *  - release: release_resources, or release_resources_on_error(err) with an error in
 *    flight, shielded from the cancellation of every scope open at the call (rem's cleanup
 *    pcall); exactly once per acquisition, as the role tables refuse a second one.
 * Collections, and the plain managers they hold, are manager.c's.
 */
#include <string.h>

#include "lmanager.h"

/* In a class, under the key &roles_key (its address): its role tables, a list indexed by
 * role. A role table keeps in its array part (performance: rawgeti on the array part is the
 * cheapest lookup there is) a marker, its class and that list. The marker, a light userdata
 * pointing into role_marks, tells a role table apart from a class whatever the class holds:
 * Lua code cannot make one. */
static const char roles_key = 0;
static const char role_marks[REM_ROLE_COUNT];
enum { R_MARK = 1, R_CLASS, R_ROLES };

/* The role of the metatable at `mt` when it is a role table, else -1. Pushes nothing. */
static int role_of_metatable(lua_State *L, int mt) {
  lua_rawgeti(L, mt, R_MARK);
  const char *mark = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (mark >= role_marks && mark < role_marks + REM_ROLE_COUNT) return (int)(mark - role_marks);
  return -1;
}

#define KIND_FIELD "__rem_kind"  /* in a class: "manager" or "collection" */
#define CLS "rem.Manager"

/* The kind the metatable at `mt` gives. Performance: the marker is compared by length and
 * memcmp, not strcmp (a fresh class's first use). */
static int kind_of_metatable(lua_State *L, int mt) {
  int kind = -1;
  lua_pushliteral(L, KIND_FIELD);
  if (lua_rawget(L, mt < 0 ? mt - 1 : mt) == LUA_TSTRING) {
    size_t len = 0;
    const char *k = lua_tolstring(L, -1, &len);
    kind = len == 7 && memcmp(k, "manager", 7) == 0 ? REM_KIND_PLAIN
           : len == 10 && memcmp(k, "collection", 10) == 0 ? REM_KIND_COLLECTION : -1;
  }
  lua_pop(L, 1);
  return kind;
}

int rem__manager_kind(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx)) return -1;
  int kind = kind_of_metatable(L, -1);
  lua_pop(L, 1);
  return kind;
}

int rem__manager_role(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx)) return -1;
  int role = role_of_metatable(L, -1);
  if (role < 0 && kind_of_metatable(L, -1) == REM_KIND_PLAIN) role = REM_ROLE_IDLE;
  lua_pop(L, 1);
  return role;
}

const char *rem__role_name(int role) {
  switch (role) {
  case REM_ROLE_IDLE: return "not acquired";
  case REM_ROLE_ACQUIRING: return "being acquired";
  case REM_ROLE_ACQUIRED: return "already acquired";
  case REM_ROLE_RELEASING: return "being released";
  default: return "held by a rem.Collection";
  }
}

/* Copies the metamethods (the keys "__...") of the table at `from` into the table on top. */
static void copy_metamethods(lua_State *L, int from) {
  lua_pushnil(L);
  while (lua_next(L, from)) {
    size_t len = 0;
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &len) : NULL;
    if (k && len > 2 && k[0] == '_' && k[1] == '_') {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, -4);
    } else {
      lua_pop(L, 1);
    }
  }
}

/* Pushes the role tables of the plain manager class at `cls`, made on its first use. */
static void push_roles(lua_State *L, int cls) {
  cls = lua_absindex(L, cls);
  if (lua_rawgetp(L, cls, &roles_key) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_createtable(L, REM_ROLE_COUNT - 1, 0);
  for (int role = REM_ROLE_ACQUIRING; role < REM_ROLE_COUNT; role++) {
    lua_createtable(L, R_ROLES, 8);
    copy_metamethods(L, cls);
    lua_pushliteral(L, "__metatable");
    if (lua_rawget(L, -2) == LUA_TNIL) {  /* a class may protect its metatable itself */
      lua_pushliteral(L, "__metatable");
      lua_pushvalue(L, cls);
      lua_rawset(L, -4);
    }
    lua_pop(L, 1);
    lua_pushlightuserdata(L, (void *)(role_marks + role));
    lua_rawseti(L, -2, R_MARK);
    lua_pushvalue(L, cls);
    lua_rawseti(L, -2, R_CLASS);
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, R_ROLES);
    lua_rawseti(L, -2, role);
  }
  lua_pushvalue(L, -1);
  lua_rawsetp(L, cls, &roles_key);
}

void rem__manager_set_role(lua_State *L, int idx, int role) {
  idx = lua_absindex(L, idx);
  lua_getmetatable(L, idx);
  if (role_of_metatable(L, -1) >= 0) {
    lua_rawgeti(L, -1, R_CLASS);
    lua_replace(L, -2);  /* the class of a role table */
  }
  if (role != REM_ROLE_IDLE) {
    push_roles(L, -1);
    lua_rawgeti(L, -1, role);
    lua_replace(L, -3);
    lua_pop(L, 1);
  }
  lua_setmetatable(L, idx);
}

rem_ltask *rem__manager_task(lua_State *L, const char *cls, const char *method) {
  rem_ltask *t = rem__current(L);
  if (t && lua_isyieldable(L)) return t;
  /* Performance: the name for the message is only formatted when it is needed. */
  const char *fname = lua_pushfstring(L, "%s:%s", cls, method);
  t = rem__need_task(L, fname);
  lua_pop(L, 1);
  return t;
}

#define need_task(L, method) rem__manager_task(L, CLS, method)

void rem__manager_fit_error(lua_State *L, const char *cls, const char *what) {
  if (lua_toboolean(L, -1)) return;
  const char *v = lua_isnil(L, -1) ? "nil" : "false";
  lua_pop(L, 1);
  rem__push_error(L, NULL, "%s:%s raised %s", cls, what, v);
}

#define fit_error(L, what) rem__manager_fit_error(L, CLS, what)

#define OK(status) ((status) == LUA_OK || (status) == LUA_YIELD)

/* The methods' upvalues: the rem state (1, as rem__setfuncs gives), then the names of the
 * methods they call, interned once. Performance: lua_getfield would intern its literal on
 * every call (a strcmp in Lua's string cache). */
enum { UP_ACQUIRE = 2, UP_RELEASE, UP_RELEASE_ON_ERROR, UP_COUNT = UP_RELEASE_ON_ERROR };

/* Pushes self[upvalue `up`] (self at 1; through __index, as self.name would). */
static void push_method(lua_State *L, int up) {
  lua_pushvalue(L, lua_upvalueindex(up));
  lua_gettable(L, 1);
}

/* ---- acquire ------------------------------------------------------------------------ */

/* Stack: [self, class, roles, boundary, handler, acquire_resources, self] while it runs;
 * [self, class, roles, err, boundary, handler, release_resources_on_error, self, err] while
 * the rollback runs. */
static int rollback_k(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  rem__pcall_restore(L, 4);
  lua_pushvalue(L, 2);
  lua_setmetatable(L, 1);  /* idle: the attempt got its one release */
  if (OK(status)) {
    lua_pushvalue(L, 4);
    return lua_error(L);
  }
  fit_error(L, "release_resources_on_error");
  rem__chain(L, -1, 4);
  return lua_error(L);
}

static int acquire_k(lua_State *L, int status, lua_KContext ctx) {
  rem__pcall_restore(L, 3);
  if (OK(status)) {
    lua_rawgeti(L, 3, REM_ROLE_ACQUIRED);
    lua_setmetatable(L, 1);
    lua_settop(L, 1);
    return 1;
  }
  fit_error(L, "acquire_resources");
  lua_replace(L, 4);
  lua_settop(L, 6);
  push_method(L, UP_RELEASE_ON_ERROR);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 4);
  status = rem__cleanup_pcallk(L, 4, 0, ctx, rollback_k);
  return rollback_k(L, status, ctx);
}

/* enter() and acquire() -> self. */
static int acquire(lua_State *L, const char *method) {
  lua_settop(L, 1);
  /* The common case first: an idle instance of a class used before (its roles are made). */
  if (!lua_getmetatable(L, 1) || lua_rawgetp(L, 2, &roles_key) != LUA_TTABLE) {
    lua_settop(L, 1);
    int role = rem__manager_role(L, 1);
    if (role < 0) return rem__collection_acquire(L, method);
    if (role == REM_ROLE_HELD)
      return luaL_error(L, CLS ":%s: the manager is held by a rem.Collection", method);
    if (role != REM_ROLE_IDLE)
      return luaL_error(L, CLS ":%s: the manager is %s", method, rem__role_name(role));
    lua_getmetatable(L, 1);
    push_roles(L, 2);
  }
  rem_ltask *t = need_task(L, method);
  rem__check_cancel(L, t);  /* cancelled: nothing attempted, nothing to release */
  lua_rawgeti(L, 3, REM_ROLE_ACQUIRING);
  lua_setmetatable(L, 1);
  lua_settop(L, 5);
  push_method(L, UP_ACQUIRE);
  lua_pushvalue(L, 1);
  return rem__pcall(L, 3, 0, acquire_k);
}

static int m_enter(lua_State *L) {
  return acquire(L, "enter");
}

static int m_acquire(lua_State *L) {
  return acquire(L, "acquire");
}

/* ---- release ------------------------------------------------------------------------ */

#define CTX_CALLER(ctx) ((int)((ctx) & 7))
#define CTX_HAS_ERR(ctx) ((int)((ctx) >> 3))

/* Stack: [self, err, class, boundary, handler, release method, self, (err)]. */
static int release_k(lua_State *L, int status, lua_KContext ctx) {
  rem__pcall_restore(L, 3);
  lua_pushvalue(L, 3);
  lua_setmetatable(L, 1);  /* idle */
  if (!OK(status)) {
    int has_err = CTX_HAS_ERR(ctx);
    fit_error(L, has_err ? "release_resources_on_error" : "release_resources");
    if (has_err) rem__chain(L, -1, 2);
    return lua_error(L);
  }
  if (CTX_CALLER(ctx) == REM_CALLER_EXIT) {
    lua_pushboolean(L, 0);  /* a manager never suppresses */
    return 1;
  }
  return 0;
}

/* A release of a manager that is not acquired, or of a collection: errors, but for the
 * one case that is no misuse. */
static int release_refused(lua_State *L, int caller, const char *method, int required) {
  lua_settop(L, 2);
  int role = rem__manager_role(L, 1);
  if (role < 0) return rem__collection_release(L, caller, method, required);
  if (required && lua_isnil(L, 2))
    return luaL_error(L, CLS ":%s: bad argument #1 (error expected, got nil)", method);
  if (role == REM_ROLE_HELD) {
    return luaL_error(L, CLS ":%s: the manager is held by a rem.Collection (release the "
                      "collection)", method);
  }
  /* `local m <close> = M.new(); m:acquire()` whose acquire failed: already rolled back. */
  if (caller == REM_CALLER_CLOSE && role == REM_ROLE_IDLE && lua_toboolean(L, 2)) return 0;
  return luaL_error(L, CLS ":%s: the manager is %s", method, rem__role_name(role));
}

/* Releases. The error in flight is argument 2 (nil or false: none) but for release(), which
 * takes none; `required`: release_on_error, which must be given one. */
static int release(lua_State *L, int caller, const char *method, int required) {
  lua_settop(L, 2);
  if (!lua_getmetatable(L, 1) || (lua_rawgeti(L, 3, R_MARK),
                                   lua_touserdata(L, 4) != role_marks + REM_ROLE_ACQUIRED))
    return release_refused(L, caller, method, required);
  if (required && lua_isnil(L, 2))
    return luaL_error(L, CLS ":%s: bad argument #1 (error expected, got nil)", method);
  int has_err = required || (caller != REM_CALLER_RELEASE && lua_toboolean(L, 2));
  need_task(L, method);
  lua_rawgeti(L, 3, R_ROLES);
  lua_rawgeti(L, -1, REM_ROLE_RELEASING);
  lua_setmetatable(L, 1);
  lua_rawgeti(L, 3, R_CLASS);
  lua_replace(L, 3);                   /* [self, err, class, mark, roles]: 4 and 5 are free */
  push_method(L, has_err ? UP_RELEASE_ON_ERROR : UP_RELEASE);
  lua_pushvalue(L, 1);
  if (has_err) lua_pushvalue(L, 2);
  lua_KContext ctx = (lua_KContext)(has_err << 3 | caller);
  int status = rem__cleanup_pcallk(L, 3, 0, ctx, release_k);
  return release_k(L, status, ctx);
}

/* release(): the normal release. */
static int m_release(lua_State *L) {
  return release(L, REM_CALLER_RELEASE, "release", 0);
}

/* release_on_error(err): the release on the error path. */
static int m_release_on_error(lua_State *L) {
  return release(L, REM_CALLER_RELEASE, "release_on_error", 1);
}

/* exit(err) -> false: releases, on the error path when err is set; never suppresses. */
static int m_exit(lua_State *L) {
  return release(L, REM_CALLER_EXIT, "exit", 0);
}

/* __close(self, err): as exit. */
static int m_close(lua_State *L) {
  return release(L, REM_CALLER_CLOSE, "__close", 0);
}

void rem__manager_setfuncs(lua_State *L, rem_state *st) {
  static const luaL_Reg methods[] = {
    {"enter", m_enter}, {"exit", m_exit}, {"__close", m_close}, {"acquire", m_acquire},
    {"release", m_release}, {"release_on_error", m_release_on_error}, {NULL, NULL}};
  lua_pushlightuserdata(L, st);
  lua_pushliteral(L, "acquire_resources");
  lua_pushliteral(L, "release_resources");
  lua_pushliteral(L, "release_resources_on_error");
  luaL_setfuncs(L, methods, UP_COUNT);
}

/* ---- the constructor ------------------------------------------------------------------ */

static int constructed(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  lua_settop(L, 1);
  return 1;
}

/* Class.new(...): an instance (upvalue 1: the class; 2: "init"), then instance:init(...) when the
 * class has an init. Performance: in C, the instance made with no hash part. */
static int construct(lua_State *L) {
  int nargs = lua_gettop(L);  /* the 3 slots used above the arguments: LUA_MINSTACK */
  lua_createtable(L, 0, 0);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_setmetatable(L, -2);
  lua_insert(L, 1);
  lua_pushvalue(L, lua_upvalueindex(2));  /* "init", interned once */
  lua_gettable(L, 1);
  if (!lua_toboolean(L, -1)) return constructed(L, LUA_OK, 0);
  lua_insert(L, 2);
  lua_pushvalue(L, 1);
  lua_insert(L, 3);  /* [instance, init, instance, args...] */
  lua_callk(L, nargs + 1, 0, 0, constructed);
  return constructed(L, LUA_OK, 0);
}

int rem__manager_constructor(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_pushliteral(L, "init");
  lua_pushcclosure(L, construct, 2);
  return 1;
}
