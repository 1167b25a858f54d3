/* rem's Lua bindings: the module `rem.core` and the embedding API.
 *
 * A host that owns a uv_loop_t calls rem_set_loop(L, loop) before `require "rem"`; rem then
 * runs every task on that loop and never runs or closes it. Without it, rem makes a loop of
 * its own, run by rem.run. rem uses the LUA_EXTRASPACE of every thread (to find the task a
 * coroutine belongs to): a host must not use it for anything else.
 */
#ifndef REMLUA_H
#define REMLUA_H

#include <lua.h>
#include <uv.h>

/* Makes rem use `loop` (owned by the host, which must outlive the Lua state's use of rem).
 * Call before `require "rem"`; later calls have no effect on a loaded rem. */
void rem_set_loop(lua_State *L, uv_loop_t *loop);

/* The loop rem runs its tasks on in this state (after require "rem"), or NULL. */
uv_loop_t *rem_get_loop(lua_State *L);

int luaopen_rem_core(lua_State *L);

#endif
