/* A C program that owns its libuv loop and embeds Lua with rem.
 *
 * It keeps a heartbeat timer of its own on the loop, gives rem the loop before
 * `require "rem"`, starts the script's function as a task from C, and drives the loop
 * itself. When no task is left it stops its timer, closes the Lua state (rem closes its
 * handles), runs the loop once more for their close callbacks, and checks that the loop
 * closes with nothing left on it.
 *
 *   build/host examples/host/script.lua [connections]
 *
 * Lua finds rem's modules through LUA_PATH_5_4 (or the installed share/lua/5.4); rem.core
 * is linked in (librem.a).
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "remlua.h"

static lua_State *L;
static uv_timer_t heartbeat;
static int ticks;
static int unobserved_errors;

/* rem's hook for an error nobody joined: the error at -2, its traceback at -1. */
static void on_task_error(lua_State *Ls, void *ud) {
  (void)ud;
  unobserved_errors++;
  printf("host: a task failed and nobody joined it: %s\n", luaL_tolstring(Ls, -2, NULL));
  lua_pop(Ls, 1);
}

static void on_heartbeat(uv_timer_t *timer) {
  ticks++;
  if (rem_live_tasks(L) == 0) uv_close((uv_handle_t *)timer, NULL);  /* rem is done */
}

static int fail(const char *what) {
  fprintf(stderr, "host: %s: %s\n", what, lua_tostring(L, -1));
  lua_close(L);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s script.lua [connections]\n", argv[0]);
    return 2;
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  uv_timer_init(&loop, &heartbeat);
  uv_timer_start(&heartbeat, on_heartbeat, 5, 5);

  L = luaL_newstate();
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_rem_core);
  lua_setfield(L, -2, "rem.core");
  lua_pop(L, 1);

  rem_set_loop(L, &loop);  /* before require "rem" */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "rem");
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) return fail("cannot load rem");
  rem_set_error_hook(L, on_task_error, NULL);

  /* The script returns its main function; run it as a task with one argument. */
  if (luaL_dofile(L, argv[1]) != LUA_OK) return fail("cannot run the script");
  lua_pushinteger(L, argc > 2 ? atoi(argv[2]) : 5);
  if (rem_spawn(L, 1) != LUA_OK) return fail("cannot start the task");
  lua_setglobal(L, "main_task");  /* the host keeps the task to join it later */

  uv_run(&loop, UV_RUN_DEFAULT);  /* the host drives the loop, rem's tasks run on it */

  /* Join the main task's outcome from C: run a tiny Lua snippet that inspects it. */
  if (luaL_dostring(L, "local t = main_task; return t:done(), select(2, pcall(t.join, t))"))
    return fail("cannot join the main task");
  printf("host: main task done=%s, result=%s\n", lua_toboolean(L, -2) ? "true" : "false",
         luaL_tolstring(L, -1, NULL));
  lua_close(L);                   /* rem closes its handles... */
  uv_run(&loop, UV_RUN_DEFAULT);  /* ...whose close callbacks run on the host's loop */
  int rc = uv_loop_close(&loop);
  printf("host: heartbeat ticked %s; %d unobserved error(s); loop closed %s\n",
         ticks > 0 ? "while rem ran" : "never", unobserved_errors,
         rc == 0 ? "clean" : "with handles left");
  return rc == 0 ? 0 : 1;
}
