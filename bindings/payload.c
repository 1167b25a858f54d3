/* Error payloads: how the bindings fill the runtime's opaque `intptr_t payload` of a failure
 * (managers, collections, pools). A payload is a registry reference to the error value, or
 * 0 when there is none (the error is then made from the runtime's code). Whoever holds a
 * payload owns the reference; the runtime hands payloads over as its headers say.
 */
#include "internal.h"

void rem__push_payload(lua_State *L, int code, intptr_t payload) {
  if (payload) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, (lua_Integer)payload);
  } else if (code == UV_ECANCELED) {
    rem__push_cancelled(L);  /* a C member that was cancelled: a cancellation like any other */
  } else {
    rem__push_error(L, uv_err_name(code), "%s", code == REM_EFAILED ? "failed"
                    : uv_strerror(code));
  }
}

void rem__unref_payload(lua_State *L, intptr_t payload) {
  if (payload) luaL_unref(L, LUA_REGISTRYINDEX, (int)payload);
}

int rem__error_payload(lua_State *L, const char *what, intptr_t *payload) {
  if (!lua_toboolean(L, -1)) {
    const char *v = lua_isnil(L, -1) ? "nil" : "false";
    lua_pop(L, 1);
    rem__push_error(L, NULL, "%s raised %s", what, v);
  }
  int code = rem__is_cancelled(L, -1) ? UV_ECANCELED : REM_EFAILED;
  *payload = luaL_ref(L, LUA_REGISTRYINDEX);
  return code;
}

intptr_t rem__fold_payloads(lua_State *L, const rem_errlist_t *errors, intptr_t context) {
  luaL_checkstack(L, 8, NULL);
  lua_createtable(L, (int)errors->len, 0);
  for (size_t i = 0; i < errors->len; i++) {
    rem__push_payload(L, errors->items[i].code, errors->items[i].payload);
    rem__unref_payload(L, errors->items[i].payload);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  rem__push_error_group(L, -1);
  lua_remove(L, -2);
  if (context) {
    rem__push_payload(L, 0, context);
    rem__chain(L, -2, -1);
    lua_replace(L, -3);
    lua_pop(L, 1);
  }
  return luaL_ref(L, LUA_REGISTRYINDEX);
}
