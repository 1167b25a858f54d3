/* Task groups as Lua sees them: `local g <close> = rem.group()`, g:spawn, g:cancel.
 * (The function form `rem.group(fn)` is Lua sugar over these.) */
#include <string.h>

#include "internal.h"

typedef struct rem_lgroup {
  rem_group_t rg;
  rem_state *st;
  rem_ltask *owner;
  int self_ref;  /* keeps the group (and so its scope) alive while it is open */
} rem_lgroup;

static rem_lgroup *check_group(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, REM_GROUP_MT);
}

static int l_group(lua_State *L) {
  rem_ltask *t = rem__need_task(L, "rem.group");
  rem_lgroup *g = lua_newuserdatauv(L, sizeof *g, 1);
  memset(g, 0, sizeof *g);
  g->self_ref = LUA_NOREF;
  g->st = t->st;
  g->owner = t;
  luaL_setmetatable(L, REM_GROUP_MT);
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);  /* the errors, in the order they happened */
  rem_group_init(&g->rg, &t->rt);
  g->rg.scope.tag = rem__cleanup_depth(L, t);
  lua_pushvalue(L, -1);
  g->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

static int g_spawn(lua_State *L) {
  rem_lgroup *g = check_group(L, 1);
  if (lua_type(L, 2) != LUA_TFUNCTION) {  /* the argument after self is #1 */
    return luaL_error(L, "group:spawn: bad argument #1 (function expected, got %s)",
                      luaL_typename(L, 2));
  }
  if (g->rg.closed) return luaL_error(L, "group:spawn: the group is closed");
  rem_ltask *child = rem__task_new(L, g->st, 2, lua_gettop(L) - 2);
  lua_pushvalue(L, 1);
  child->group_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  rem_group_spawn(&g->rg, &child->rt);
  return 1;
}

static int g_cancel(lua_State *L) {
  rem_lgroup *g = check_group(L, 1);
  if (!g->rg.closed) rem_scope_cancel(&g->rg.scope);
  return 0;
}

/* Stack: [group, error in flight or nil]. */
static int close_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  rem_lgroup *g = lua_touserdata(L, 1);
  g->owner->wait_L = NULL;
  int rc = rem_group_close_end(&g->rg);
  luaL_unref(L, LUA_REGISTRYINDEX, g->self_ref);
  g->self_ref = LUA_NOREF;
  if (rc) {
    return luaL_error(L, "group:close: closed out of order: groups and timeouts opened "
                      "inside it must end first");
  }
  lua_getiuservalue(L, 1, 1);
  if (luaL_len(L, -1) == 0) return 0;
  rem__push_error_group(L, -1);
  return lua_error(L);
}

/* group:close([err]) and __close(group, err): records a body error, waits for every
 * child, then raises an ErrorGroup of the failures, if any. */
static int g_close(lua_State *L) {
  rem_lgroup *g = check_group(L, 1);
  lua_settop(L, 2);
  if (g->rg.closed || g->rg.closing) return 0;
  rem_ltask *t = rem__current(L);
  if (t != g->owner)
    return luaL_error(L, "group:close: only the task that opened the group can close it");
  if (!lua_isnil(L, 2) && !rem__is_cancelled(L, 2)) {
    lua_getiuservalue(L, 1, 1);
    lua_Integer n = luaL_len(L, -1) + 1;
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, n);
    lua_pop(L, 1);
    rem_group_body_failed(&g->rg, REM_EFAILED, (intptr_t)n);
  }
  if (rem_group_close_wait(&g->rg)) {
    if (!lua_isyieldable(L)) {
      return luaL_error(L, "group:close: cannot wait for the children here "
                        "(called through a C function that cannot yield)");
    }
    return rem__await(L, t, 0, close_k);
  }
  return close_k(L, LUA_OK, 0);
}

/* group:cancelled() -> whether the group's own scope was cancelled. */
static int g_cancelled(lua_State *L) {
  lua_pushboolean(L, check_group(L, 1)->rg.scope.cancelled);
  return 1;
}

static int g_gc(lua_State *L) {
  rem_lgroup *g = lua_touserdata(L, 1);
  rem_errlist_clear(&g->rg.errors, NULL, NULL);
  return 0;
}

static int g_tostring(lua_State *L) {
  rem_lgroup *g = check_group(L, 1);
  lua_pushfstring(L, "rem.group (%s, %d running): %p", g->rg.closed ? "closed" : "open",
                  (int)g->rg.children, (void *)g);
  return 1;
}

void rem__open_group(lua_State *L, rem_state *st) {
  static const luaL_Reg methods[] = {
    {"spawn", g_spawn}, {"cancel", g_cancel}, {"close", g_close},
    {"cancelled", g_cancelled}, {NULL, NULL}};
  luaL_newmetatable(L, REM_GROUP_MT);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, g_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, g_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, g_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"group", l_group}, {NULL, NULL}};
  rem__setfuncs(L, fns, st);
}
