/* rem — run a Lua script as rem's main task.
 *
 *   rem script.lua [args]   run the script (its arguments in `arg`, as lua5.4 does)
 *   rem -                   read the script from standard input
 *   rem -e 'code' [args]    run a string
 *   rem -v                  print the versions
 *
 * An uncaught error is printed (an ErrorGroup as a tree) with its traceback; exit status 1.
 * SIGINT or SIGTERM cancels the main task: every <close> and exit runs, then rem exits with
 * 130 or 143. A second signal while that cleanup runs exits at once.
 * rem.core is linked in; the Lua half of rem is found next to the executable (the build
 * tree's lua/, or PREFIX/share/lua/5.4 once installed), then on the usual package.path.
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "remlua.h"

#ifndef REM_INSTALL_LUA_DIR
#define REM_INSTALL_LUA_DIR "/usr/local/share/lua/5.4"
#endif

/* Runs the loaded chunk (on the stack with its arguments) as rem's main task; returns the
 * exit status. Lua, so that printing an error uses the error's own __tostring. */
static const char driver[] =
  "local rem = require 'rem'\n"
  "local chunk, signalled = ...\n"
  "local tb\n"
  "local function handler(e) tb = debug.traceback('', 2); return e end\n"
  "local ok, err = pcall(rem.run, function(...)\n"
  "  local ok2, e = xpcall(chunk, handler, ...)\n"
  "  if not ok2 then error(e, 0) end\n"
  "end, select(3, ...))\n"
  "if ok then return 0 end\n"
  "if signalled() and rem.is_cancelled(err) then return 128 + signalled() end\n"
  "local shown, text = pcall(tostring, err)\n"
  "io.stderr:write('rem: ', shown and text or '(error object is not printable)', '\\n')\n"
  "local trace = type(err) == 'table' and rawget(err, 'traceback') or tb\n"
  "if type(trace) == 'string' and trace ~= '' then\n"
  "  io.stderr:write((trace:gsub('^\\n', '')), '\\n')\n"
  "end\n"
  "return 1\n";

static void prepend_paths(lua_State *L) {
  char exe[4096];
  size_t size = sizeof exe;
  lua_getglobal(L, "package");
  int n = 0;
  if (uv_exepath(exe, &size) == 0) {
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    /* build tree: build/bin/rem -> ../../lua; installed: bin/rem -> ../share/lua/5.4 */
    lua_pushfstring(L, "%s/../../lua/?.lua;%s/../../lua/?/init.lua;", exe, exe);
    lua_pushfstring(L, "%s/../share/lua/5.4/?.lua;%s/../share/lua/5.4/?/init.lua;", exe, exe);
    n = 2;
  }
  lua_pushliteral(L, REM_INSTALL_LUA_DIR "/?.lua;" REM_INSTALL_LUA_DIR "/?/init.lua;");
  lua_getfield(L, -n - 2, "path");
  lua_concat(L, n + 2);
  lua_setfield(L, -2, "path");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_rem_core);
  lua_setfield(L, -2, "rem.core");
  lua_pop(L, 2);
}

/* arg[0] is the script, arg[1..] its arguments, arg[-1..] what came before. */
static void make_arg_table(lua_State *L, char **argv, int argc, int script) {
  lua_createtable(L, argc - script - 1, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static int usage(const char *prog) {
  fprintf(stderr,
          "usage: %s script.lua [args]   run a script as rem's main task\n"
          "       %s -e 'code' [args]    run a string\n"
          "       %s - [args]            run the script on standard input\n"
          "       %s -v                  print the versions\n",
          prog, prog, prog, prog);
  return 2;
}

/* The first SIGINT/SIGTERM cancels the main task; a second one ends the process. */
static int signal_received;

static void on_signal(uv_signal_t *handle, int signum) {
  if (signal_received) _Exit(128 + signum);
  signal_received = signum;
  rem_cancel_main(handle->data);
}

static int l_signalled(lua_State *L) {
  if (!signal_received) return 0;
  lua_pushinteger(L, signal_received);
  return 1;
}

static uv_signal_t signals[2];

static void watch_signals(lua_State *L) {
  static const int which[2] = {SIGINT, SIGTERM};
  uv_loop_t *loop = rem_get_loop(L);
  for (int i = 0; i < 2; i++) {
    uv_signal_init(loop, &signals[i]);
    signals[i].data = L;
    uv_signal_start(&signals[i], on_signal, which[i]);
    uv_unref((uv_handle_t *)&signals[i]);  /* a signal watch never keeps rem.run going */
  }
}

static void unwatch_signals(void) {
  for (int i = 0; i < 2; i++) uv_close((uv_handle_t *)&signals[i], NULL);
}

static int report(lua_State *L, const char *what) {
  fprintf(stderr, "rem: %s: %s\n", what, lua_tostring(L, -1));
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 2) return usage(argv[0]);
  if (strcmp(argv[1], "-v") == 0) {
    printf("rem 0.1.0 (%s, libuv %s)\n", LUA_RELEASE, uv_version_string());
    return 0;
  }
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "rem: cannot create a Lua state\n");
    return 1;
  }
  luaL_openlibs(L);
  prepend_paths(L);

  int script = 1, status;
  if (strcmp(argv[1], "-e") == 0) {
    if (argc < 3) {
      lua_close(L);
      return usage(argv[0]);
    }
    script = 2;
    status = luaL_loadbuffer(L, argv[2], strlen(argv[2]), "=(command line)");
  } else if (strcmp(argv[1], "-") == 0) {
    status = luaL_loadfile(L, NULL);
  } else if (argv[1][0] == '-') {
    lua_close(L);
    return usage(argv[0]);
  } else {
    status = luaL_loadfile(L, argv[1]);
  }
  if (status != LUA_OK) {
    int rc = report(L, "cannot load");
    lua_close(L);
    return rc;
  }
  make_arg_table(L, argv, argc, script);
  int chunk = lua_gettop(L);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "rem");
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    int rc = report(L, "cannot load rem");
    lua_close(L);
    return rc;
  }
  watch_signals(L);
  if (luaL_loadbuffer(L, driver, sizeof driver - 1, "=rem") != LUA_OK) {
    int rc = report(L, "internal error");
    lua_close(L);
    return rc;
  }
  lua_pushvalue(L, chunk);
  lua_pushcfunction(L, l_signalled);
  int nargs = 2;
  for (int i = script + 1; i < argc; i++, nargs++) lua_pushstring(L, argv[i]);
  int exit_status = 1;
  if (lua_pcall(L, nargs, 1, 0) != LUA_OK)
    report(L, "error");
  else
    exit_status = (int)lua_tointeger(L, -1);
  unwatch_signals();  /* closed by the loop run when rem's state closes, in lua_close */
  lua_close(L);
  return exit_status;
}
