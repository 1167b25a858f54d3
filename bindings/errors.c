/* rem.Error and rem.ErrorGroup values made from C, and context chaining.
 *
 * Both are plain tables with a metatable from the registry; the Lua layer adds their
 * printing and constructors to the same metatables. */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

#define CHAINED_KEY "rem.chained"  /* weak-keyed: errors whose context is settled */

static void set_mt(lua_State *L, const char *name) {
  luaL_setmetatable(L, name);
}

static void push_traceback(lua_State *L) {
  luaL_traceback(L, L, NULL, 1);
}

void rem__push_error(lua_State *L, const char *code, const char *fmt, ...) {
  va_list ap;
  lua_createtable(L, 0, 4);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_setfield(L, -2, "message");
  if (code) {
    lua_pushstring(L, code);
    lua_setfield(L, -2, "code");
  }
  push_traceback(L);
  lua_setfield(L, -2, "traceback");
  set_mt(L, REM_ERROR_MT);
}

void rem__push_cancelled(lua_State *L) {
  rem__push_error(L, "ECANCELED", "cancelled");
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "cancelled");
}

static int has_mt(lua_State *L, int idx, const char *name) {
  if (!lua_getmetatable(L, idx)) return 0;
  luaL_getmetatable(L, name);
  int same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same;
}

static int flag(lua_State *L, int idx, const char *mt, const char *field) {
  if (lua_type(L, idx) != LUA_TTABLE || !has_mt(L, idx, mt)) return 0;
  lua_pushstring(L, field);
  lua_rawget(L, idx < 0 ? idx - 1 : idx);
  int on = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return on;
}

int rem__is_cancelled(lua_State *L, int idx) {
  return flag(L, idx, REM_ERROR_MT, "cancelled");
}

void rem__push_timeout(lua_State *L, double seconds, int cancel_idx) {
  cancel_idx = lua_absindex(L, cancel_idx);
  char text[64];
  snprintf(text, sizeof text, "timed out after %g s", seconds);
  rem__push_error(L, "ETIMEDOUT", "%s", text);
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "timeout");
  lua_pushvalue(L, cancel_idx);
  lua_setfield(L, -2, "context");
}

void rem__push_error_group(lua_State *L, int errors_idx) {
  errors_idx = lua_absindex(L, errors_idx);
  lua_Integer n = luaL_len(L, errors_idx);
  lua_createtable(L, 0, 2);
  lua_pushvalue(L, errors_idx);
  lua_setfield(L, -2, "errors");
  lua_pushfstring(L, "%I error%s in a group", n, n == 1 ? "" : "s");
  lua_setfield(L, -2, "message");
  set_mt(L, REM_ERRORGROUP_MT);
}

/* Pushes `idx` as an error that can carry fields: itself if a table, else an rem.Error
 * whose message is its text and whose `value` is the original. */
static void push_as_table(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TTABLE) {
    lua_pushvalue(L, idx);
    return;
  }
  rem__push_error(L, NULL, "%s", luaL_tolstring(L, idx, NULL));
  lua_remove(L, -2);
  lua_pushvalue(L, idx);
  lua_setfield(L, -2, "value");
}

/* Pushes the error to raise when `new_idx` is raised while `old_idx` is in flight (nil:
 * nothing). The context is settled once, by the innermost frame (DESIGN: "outer frames
 * never overwrite it"): an unsettled table error gets `context` = the error in flight
 * (none when nothing is), and is remembered as settled in a weak table. A string raised
 * while an error is in flight is wrapped so that it can carry the context. */
void rem__chain(lua_State *L, int new_idx, int old_idx) {
  new_idx = lua_absindex(L, new_idx);
  old_idx = lua_absindex(L, old_idx);
  int in_flight = !lua_isnoneornil(L, old_idx) && !lua_rawequal(L, new_idx, old_idx);
  if (in_flight) push_as_table(L, new_idx); else lua_pushvalue(L, new_idx);
  int err = lua_gettop(L);
  if (lua_type(L, err) != LUA_TTABLE) return;  /* a string with nothing in flight */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, CHAINED_KEY);
  lua_pushvalue(L, err);
  int settled = lua_rawget(L, -2) != LUA_TNIL;
  lua_pop(L, 1);
  if (!settled) {
    lua_pushliteral(L, "context");
    int has_context = lua_rawget(L, err) != LUA_TNIL;
    lua_pop(L, 1);
    if (in_flight && !has_context) {
      push_as_table(L, old_idx);
      lua_setfield(L, err, "context");
    }
    lua_pushvalue(L, err);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
  }
  lua_pop(L, 1);
}

/* ---- Lua functions ------------------------------------------------------------------- */

static int l_is_cancelled(lua_State *L) {
  lua_pushboolean(L, rem__is_cancelled(L, 1));
  return 1;
}

static int l_is_timeout(lua_State *L) {
  lua_pushboolean(L, flag(L, 1, REM_ERROR_MT, "timeout"));
  return 1;
}

static int l_is_error_group(lua_State *L) {
  lua_pushboolean(L, lua_type(L, 1) == LUA_TTABLE && has_mt(L, 1, REM_ERRORGROUP_MT));
  return 1;
}

/* chain(new, old) -> the error to raise (new, or new wrapped), with old as its context
 * unless its context was settled before. */
static int l_chain(lua_State *L) {
  lua_settop(L, 2);
  rem__chain(L, 1, 2);
  return 1;
}

/* cancelled_error() -> a fresh cancellation error (for tests and the Lua layer). */
static int l_cancelled_error(lua_State *L) {
  rem__push_cancelled(L);
  return 1;
}

/* error_group(list) -> an ErrorGroup over the given list. */
static int l_error_group(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  rem__push_error_group(L, 1);
  return 1;
}

void rem__open_errors(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"is_cancelled", l_is_cancelled},
    {"is_timeout", l_is_timeout},
    {"is_error_group", l_is_error_group},
    {"chain", l_chain},
    {"cancelled_error", l_cancelled_error},
    {"error_group", l_error_group},
    {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  luaL_newmetatable(L, REM_ERROR_MT);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  lua_setfield(L, -2, "Error");
  luaL_newmetatable(L, REM_ERRORGROUP_MT);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  lua_setfield(L, -2, "ErrorGroup");
  luaL_getsubtable(L, LUA_REGISTRYINDEX, CHAINED_KEY);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_pushvalue(L, -1);
  lua_setmetatable(L, -2);
  lua_pop(L, 1);
}
