/* rem.unix.connect and rem.unix.listen: stream connections over Unix-domain sockets
 * (libuv's pipes). Same stream and server types as TCP; a server removes its socket file
 * when it stops. */
#include <stdio.h>
#include <sys/un.h>
#include <unistd.h>

#include "io.h"

static const char *check_path(lua_State *L, int idx, const char *fname) {
  if (lua_type(L, idx) != LUA_TSTRING) rem__argerror(L, idx, fname, "socket path");
  size_t len;
  const char *path = lua_tolstring(L, idx, &len);
  struct sockaddr_un sun;
  if (len == 0) luaL_error(L, "%s: bad argument #%d (empty path)", fname, idx);
  if (len >= sizeof sun.sun_path) {
    rem__push_error(L, "ENAMETOOLONG", "%s: %s: the path is longer than a Unix socket's %d "
                    "bytes", fname, path, (int)sizeof sun.sun_path - 1);
    lua_error(L);
  }
  return path;
}

/* Stack: [path, stream, (error code)]. */
enum { PH_CONNECT, PH_FAILED, PH_ABORTED };

static int connect_k(lua_State *L, int status, lua_KContext phase) {
  (void)status;
  rem_ltask *t;
  int woke = rem__io_woke(L, &t);
  rem_lstream *ls = lua_touserdata(L, 2);
  if (phase == PH_CONNECT) {
    rem_stream *s = ls->s;
    s->connector = NULL;
    if (woke == UV_ECANCELED || s->connect_status) {
      lua_pushinteger(L, s->connect_status);
      rem__stream_close_wait(t, ls);
      return rem__await(L, t, woke == UV_ECANCELED ? PH_ABORTED : PH_FAILED, connect_k);
    }
    rem__stream_connected(s, 0);
    snprintf(s->name, sizeof s->name, "%s", lua_tostring(L, 1));
    lua_settop(L, 2);
    return 1;
  }
  if (phase == PH_ABORTED) return rem__io_raise_cancel(L);
  return rem__io_error(L, (int)lua_tointeger(L, 3), "rem.unix.connect", lua_tostring(L, 1));
}

/* rem.unix.connect(path) -> stream. */
static int l_connect(lua_State *L) {
  const char *F = "rem.unix.connect";
  const char *path = check_path(L, 1, F);
  rem_ltask *t = rem__need_task(L, F);
  rem__check_cancel(L, t);
  lua_settop(L, 1);
  rem_lstream *ls = rem__stream_push(L);
  int rc;
  rem_stream *s = rem__stream_new(t->st, REM_STREAM_PIPE, &rc);
  if (!s) return rem__io_error(L, rc, F, path);
  rem__stream_attach(ls, s);
  uv_pipe_connect(&s->connect_req, &s->h.pipe, path, rem__stream_on_connect);
  s->connector = &t->rt;
  rem_task_wait(&t->rt, rem__io_abort);
  return rem__await(L, t, PH_CONNECT, connect_k);
}

/* rem.unix.listen(path, handler [, opts]) -> server. opts: backlog, max_connections. The
 * path must not exist; it is removed when the server stops. */
static int l_listen(lua_State *L) {
  const char *F = "rem.unix.listen";
  const char *path = check_path(L, 1, F);
  rem__check_function(L, 2, F);
  rem__check_opts(L, 3, F);
  rem_server_opts opts;
  opts.backlog = (int)rem__opt_number(L, 3, "backlog", 511, F);
  opts.max_connections = (int)rem__opt_number(L, 3, "max_connections", 0, F);
  opts.nodelay = 0;
  rem_ltask *t = rem__need_task(L, F);
  rem__check_cancel(L, t);
  lua_settop(L, 3);
  rem_lserver *srv = rem__server_push(L, t->st, REM_STREAM_PIPE, 2, &opts);
  int rc;
  uv_handle_t *h = rem__server_handle(srv, &rc);
  int bound = 0;
  if (h) {
    rc = uv_pipe_bind((uv_pipe_t *)h, path);
    bound = rc == 0;
    if (rc == 0) rc = rem__server_start(L, srv, t, path);
  }
  if (rc) {
    rem__server_abort(srv);
    if (bound) unlink(path);  /* ours: made by the bind above */
    rem__push_error(L, uv_err_name(rc), "%s: cannot listen on %s: %s", F, path,
                    uv_strerror(rc));
    return lua_error(L);
  }
  return 1;
}

void rem__open_unix(lua_State *L, rem_state *st) {
  static const luaL_Reg fns[] = {{"connect", l_connect}, {"listen", l_listen}, {NULL, NULL}};
  lua_newtable(L);
  rem__setfuncs(L, fns, st);
  lua_setfield(L, -2, "unix");
}
