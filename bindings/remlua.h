/* rem's Lua bindings: the module `rem.core` and the embedding API.
 *
 * A host that owns a uv_loop_t calls rem_set_loop(L, loop) before `require "rem"`; rem then
 * runs every task on that loop and never runs or closes it. Without it, rem makes a loop of
 * its own, run by rem.run. rem uses the LUA_EXTRASPACE of every thread (to find the task a
 * coroutine belongs to): a host must not use it for anything else.
 */
#ifndef REMLUA_H
#define REMLUA_H

#include <stddef.h>

#include <lua.h>
#include <uv.h>

/* Makes rem use `loop` (owned by the host, which must outlive the Lua state's use of rem).
 * Call before `require "rem"`; later calls have no effect on a loaded rem. */
void rem_set_loop(lua_State *L, uv_loop_t *loop);

/* The loop rem runs its tasks on in this state (after require "rem"), or NULL. */
uv_loop_t *rem_get_loop(lua_State *L);

int luaopen_rem_core(lua_State *L);

/* Starts a task running the function below the `nargs` values on top of the stack (as
 * lua_call takes them): pops them and pushes the task. The task runs when the loop runs.
 * Returns LUA_OK, or LUA_ERRRUN with a message pushed instead (rem not loaded, or no
 * function). */
int rem_spawn(lua_State *L, int nargs);

/* Reports an error nobody saw: a task (not in a group) that failed and was never joined,
 * when rem.run ends, the task is collected, or the Lua state closes. The hook is called
 * in protected mode with the error at index -2 and its traceback (a string, or nil) at -1,
 * and must leave the stack as it found it. NULL restores the default, which prints both
 * on stderr. rem must be loaded. */
typedef void (*rem_error_hook)(lua_State *L, void *ud);
void rem_set_error_hook(lua_State *L, rem_error_hook hook, void *ud);

/* How many tasks are started and not finished (a host driving its own loop may stop when
 * none is left). */
size_t rem_live_tasks(lua_State *L);

/* Cancels the main task of the rem.run in progress (as a signal handler wants); returns 1,
 * or 0 when no rem.run is running. */
int rem_cancel_main(lua_State *L);

#endif
