/* Servers (rem.server): a listening socket whose connections each run the user's handler in
 * a task of the server's own task group.
 *
 * Lifetime: a server belongs to the task that opened it, as a group does. Its group's scope
 * hangs below the scope where listen was called (it is not pushed on that task's scopes, so
 * the server may be closed in any order with the task's other resources): cancelling that
 * task (a timeout around it, a failing sibling) cancels the handlers and stops accepting.
 * A handler that fails cancels the whole server (trio's nursery rule); close() raises the
 * failures as an rem.ErrorGroup. The group also holds a "keeper" task that watches the
 * owner: should the owner end without closing the server, the keeper stops it (and warns),
 * so no server outlives its task; while it is open, rem.run waits for it, as for any task.
 *
 * Accepting happens in libuv's connection callback, which makes the stream and spawns the
 * handler task (through one protected call into Lua). With opts.max_connections, a
 * connection beyond the limit is left unaccepted: libuv then stops watching the socket and
 * the kernel's backlog fills (backpressure on accepting) until a connection closes.
 *
 * The listening handle is malloc'd (rem_listener) and freed in its close callback; the
 * keeper waits for that callback, so close() (which waits for every task of the group) only
 * returns once the socket is gone.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io.h"

#define SERVE_KEY "rem.server.serve"  /* registry: the Lua function a connection task runs */

enum { SRV_NEW, SRV_OPEN, SRV_CLOSED };

typedef struct rem_listener {
  rem_listen_handle h;
  rem_lserver *srv;  /* NULL: nobody to tell (the close callback only frees) */
} rem_listener;

/* The userdata; user values: 1 the errors of the handlers, 2 the handler, 3 the owner task. */
struct rem_lserver {
  rem_group_t group;
  rem_state *st;
  rem_listener *lis;        /* NULL once it stops listening */
  rem_server_opts opts;
  int kind;
  int state;
  int self_ref;             /* pins it while open */
  int listen_closed;        /* the listening handle's close callback ran */
  int paused;               /* a connection waits unaccepted (max_connections) */
  int conns;                /* open connections */
  int accept_error;         /* the last failure to accept, warned about once */
  rem_list_t conn_list;     /* rem_stream.server_link */
  rem_waitq_t stopped;      /* woken when the listening handle is closed */
  char *path;               /* a Unix socket's path, removed when it stops */
  char host[INET6_ADDRSTRLEN];
  int port;
  char name[112];
};

static rem_lserver *check_server(lua_State *L, const char *fname) {
  rem_lserver *srv = luaL_testudata(L, 1, REM_SERVER_MT);
  if (!srv) {
    luaL_error(L, "%s: bad self (rem.server expected, got %s; call it as server:%s(...))",
               fname, luaL_typename(L, 1), strchr(fname, ':') + 1);
  }
  return srv;
}

rem_lserver *rem__server_push(lua_State *L, rem_state *st, int kind, int handler_idx,
                              const rem_server_opts *opts) {
  handler_idx = lua_absindex(L, handler_idx);
  rem_lserver *srv = lua_newuserdatauv(L, sizeof *srv, 3);
  memset(srv, 0, sizeof *srv);
  srv->st = st;
  srv->kind = kind;
  srv->state = SRV_NEW;
  srv->self_ref = LUA_NOREF;
  srv->opts = *opts;
  rem_list_init(&srv->conn_list);
  rem_waitq_init(&srv->stopped);
  luaL_setmetatable(L, REM_SERVER_MT);
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, handler_idx);
  lua_setiuservalue(L, -2, 2);
  return srv;
}

uv_handle_t *rem__server_handle(rem_lserver *srv, int *rc) {
  rem_listener *lis = calloc(1, sizeof *lis);
  if (!lis) {
    *rc = UV_ENOMEM;
    return NULL;
  }
  *rc = srv->kind == REM_STREAM_TCP ? uv_tcp_init(srv->st->loop, &lis->h.tcp)
                                    : uv_pipe_init(srv->st->loop, &lis->h.pipe, 0);
  if (*rc) {
    free(lis);
    return NULL;
  }
  lis->h.handle.data = lis;
  lis->srv = srv;
  srv->lis = lis;
  return &lis->h.handle;
}

static void on_listener_closed(uv_handle_t *handle) {
  rem_listener *lis = handle->data;
  rem_lserver *srv = lis->srv;
  free(lis);
  if (!srv) return;
  srv->listen_closed = 1;
  rem_waitq_wake_all(&srv->stopped, 0);
}

static void stop_listening(rem_lserver *srv) {
  rem_listener *lis = srv->lis;
  if (!lis) return;
  srv->lis = NULL;
  srv->paused = 0;
  uv_close(&lis->h.handle, on_listener_closed);
  if (srv->path) unlink(srv->path);  /* the socket file would outlive the socket */
}

void rem__server_abort(rem_lserver *srv) {
  if (srv->lis) srv->lis->srv = NULL;
  free(srv->path);  /* a socket file that failed to start may be someone else's */
  srv->path = NULL;
  stop_listening(srv);
  srv->listen_closed = 1;
}

/* Is the group's scope cancelled, by itself or by a scope outside it? */
static int scope_cancelled(const rem_scope_t *s) {
  for (; s; s = s->parent) {
    if (s->cancelled) return 1;
    if (s->shielded) return 0;
  }
  return 0;
}

/* Protected (lua_CFunction, light userdata srv): accepts one connection and spawns its task. */
static int accept_conn(lua_State *L) {
  rem_lserver *srv = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, srv->self_ref);  /* 2 */
  lua_getfield(L, LUA_REGISTRYINDEX, SERVE_KEY);     /* 3 */
  lua_getiuservalue(L, 2, 2);                        /* 4: the handler */
  rem_lstream *ls = rem__stream_push(L);             /* 5 */
  int rc;
  rem_stream *s = rem__stream_new(srv->st, srv->kind, &rc);
  if (!s) return luaL_error(L, "%s", uv_strerror(rc));
  rem__stream_attach(ls, s);
  rc = uv_accept(&srv->lis->h.stream, &s->h.stream);
  if (rc) {
    rem__stream_close_now(s);
    return luaL_error(L, "%s", uv_strerror(rc));
  }
  rem__stream_connected(s, srv->opts.nodelay);
  if (srv->kind == REM_STREAM_TCP) {
    struct sockaddr_storage peer;
    int len = sizeof peer;
    if (uv_tcp_getpeername(&s->h.tcp, (struct sockaddr *)&peer, &len) == 0)
      rem__format_addr((struct sockaddr *)&peer, s->name, sizeof s->name);
  } else {
    snprintf(s->name, sizeof s->name, "a connection to %s", srv->name);
  }
  /* A task cancelled before it runs never runs its body, so the stream is tracked here and
   * closed by the server should its handler never run. */
  s->server = srv;
  rem_list_push_back(&srv->conn_list, &s->server_link);
  srv->conns++;
  rem_ltask *child = rem__task_new(L, srv->st, 3, 2);
  lua_pushvalue(L, 2);
  child->group_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  rem_group_spawn(&srv->group, &child->rt);
  return 0;
}

/* `L`: the running thread (the loop's caller in a libuv callback, else the current task's). */
static void accept_protected(lua_State *L, rem_lserver *srv) {
  int top = lua_gettop(L);
  lua_pushcfunction(L, accept_conn);
  lua_pushlightuserdata(L, srv);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK)
    rem__io_warn(L, "%s: a connection could not be served: %s", srv->name,
                 lua_tostring(L, -1) ? lua_tostring(L, -1) : "(error object)");
  lua_settop(L, top);
}

static int accepting(rem_lserver *srv) {
  return srv->lis && srv->state == SRV_OPEN && !scope_cancelled(&srv->group.scope);
}

static void on_connection(uv_stream_t *handle, int status) {
  rem_listener *lis = handle->data;
  rem_lserver *srv = lis->srv;
  if (!srv || srv->lis != lis) return;
  lua_State *L = srv->st->L;
  if (status < 0) {  /* e.g. EMFILE: libuv dropped the connection; say so once */
    if (srv->accept_error != status)
      rem__io_warn(L, "%s: accepting a connection failed: %s", srv->name, uv_strerror(status));
    srv->accept_error = status;
    return;
  }
  if (!accepting(srv)) return;
  if (srv->opts.max_connections > 0 && srv->conns >= srv->opts.max_connections) {
    srv->paused = 1;  /* libuv keeps the connection and stops watching until uv_accept */
    return;
  }
  accept_protected(L, srv);
}

void rem__server_conn_closed(lua_State *L, rem_lserver *srv) {
  srv->conns--;
  if (srv->paused && accepting(srv)) {
    srv->paused = 0;
    accept_protected(L, srv);
  }
}

/* ---- the keeper -------------------------------------------------------------------- */

static int keeper_end(lua_State *L, rem_ltask *me, rem_lserver *srv);

static int keeper_closed_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  rem_ltask *me;
  rem__io_woke(L, &me);
  return keeper_end(L, me, lua_touserdata(L, 1));
}

/* Stops accepting and waits until the listening handle is gone. */
static int keeper_end(lua_State *L, rem_ltask *me, rem_lserver *srv) {
  stop_listening(srv);
  if (srv->listen_closed) return 0;
  rem_task_wait_on(&me->rt, &srv->stopped, 0);
  return rem__await(L, me, 0, keeper_closed_k);
}

static int owner_gone(lua_State *L, rem_ltask *me, rem_lserver *srv) {
  if (srv->lis) {
    rem__io_warn(L, "the task that opened the server on %s ended without closing it; the "
                 "server stops and its handlers are cancelled", srv->name);
    rem_scope_cancel(&srv->group.scope);
  }
  return keeper_end(L, me, srv);
}

static int keeper_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  rem_ltask *me;
  int woke = rem__io_woke(L, &me);
  rem_lserver *srv = lua_touserdata(L, 1);
  if (woke == UV_ECANCELED) return keeper_end(L, me, srv);
  return owner_gone(L, me, srv);
}

/* The keeper's body: (server). Waits for the owner to end, or for a cancellation. */
static int keeper(lua_State *L) {
  rem_lserver *srv = lua_touserdata(L, 1);
  rem_ltask *me = rem__current(L);
  lua_getiuservalue(L, 1, 3);
  rem_ltask *owner = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!owner || owner->rt.state == REM_TASK_DONE) return owner_gone(L, me, srv);
  rem_task_wait_on(&me->rt, &owner->rt.joiners, 1);
  return rem__await(L, me, 0, keeper_k);
}

int rem__server_start(lua_State *L, rem_lserver *srv, rem_ltask *t, const char *path) {
  int idx = lua_gettop(L);  /* the server */
  int rc = uv_listen(&srv->lis->h.stream, srv->opts.backlog, on_connection);
  if (rc) return rc;
  if (srv->kind == REM_STREAM_TCP) {
    struct sockaddr_storage ss;
    int len = sizeof ss;
    rc = uv_tcp_getsockname(&srv->lis->h.tcp, (struct sockaddr *)&ss, &len);
    if (rc) return rc;
    rem__format_addr((struct sockaddr *)&ss, srv->name, sizeof srv->name);
    if (ss.ss_family == AF_INET6) {
      uv_ip6_name((struct sockaddr_in6 *)&ss, srv->host, sizeof srv->host);
      srv->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    } else {
      uv_ip4_name((struct sockaddr_in *)&ss, srv->host, sizeof srv->host);
      srv->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
  } else {
    snprintf(srv->name, sizeof srv->name, "%s", path);
    srv->path = strdup(path);
    if (!srv->path) return UV_ENOMEM;
  }
  /* The group, detached from the owner's stack of scopes at once. */
  rem_group_init(&srv->group, &t->rt);
  rem_task_pop_scope(&t->rt, &srv->group.scope);
  srv->group.scope.tag = rem__cleanup_depth(L, t);
  srv->state = SRV_OPEN;
  lua_pushvalue(L, idx);
  srv->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref);
  lua_setiuservalue(L, idx, 3);
  lua_pushcfunction(L, keeper);
  lua_pushvalue(L, idx);
  rem_ltask *k = rem__task_new(L, srv->st, -2, 1);
  lua_pushvalue(L, idx);
  k->group_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  rem_group_spawn(&srv->group, &k->rt);
  lua_settop(L, idx);
  return 0;
}

/* ---- methods ------------------------------------------------------------------------- */

/* Ends the server once every task of its group ended: connections whose handler never ran
 * are closed, and the handlers' failures raised. */
static int finish(lua_State *L, rem_lserver *srv) {
  if (srv->state != SRV_OPEN) return 0;
  srv->state = SRV_CLOSED;
  while (!rem_list_empty(&srv->conn_list))
    rem__stream_close_now(REM_CONTAINER_OF(srv->conn_list.next, rem_stream, server_link));
  srv->group.closed = 1;
  rem_scope_deinit(&srv->group.scope);
  rem_errlist_clear(&srv->group.errors, NULL, NULL);
  luaL_unref(L, LUA_REGISTRYINDEX, srv->self_ref);
  srv->self_ref = LUA_NOREF;
  lua_getiuservalue(L, 1, 1);
  if (luaL_len(L, -1) == 0) return 0;
  rem__push_error_group(L, -1);
  return lua_error(L);
}

static int close_k(lua_State *L, int status, lua_KContext ctx);

static int close_wait(lua_State *L, rem_ltask *t, rem_lserver *srv) {
  if (srv->state == SRV_OPEN && srv->group.children > 0) {
    rem_task_wait_on(&t->rt, &srv->group.idle, 0);
    return rem__await(L, t, 0, close_k);
  }
  return finish(L, srv);
}

static int close_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  rem_ltask *t;
  rem__io_woke(L, &t);
  return close_wait(L, t, lua_touserdata(L, 1));
}

/* server:close() and __close: stops accepting, cancels the handlers, waits for them (their
 * connections are closed as each handler ends), then raises their failures as an
 * rem.ErrorGroup. Called from one of its own handlers, it stops the server without waiting
 * (the owner's close still waits). Idempotent. */
static int srv_close(lua_State *L) {
  rem_lserver *srv = check_server(L, "server:close");
  lua_settop(L, 1);
  if (srv->state != SRV_OPEN) return 0;
  stop_listening(srv);
  rem_scope_cancel(&srv->group.scope);
  rem_ltask *t = rem__current(L);
  if (!t || !lua_isyieldable(L) || t->rt.group == &srv->group) return 0;
  return close_wait(L, t, srv);
}

static int wait_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  rem__resumed(L);
  return 0;
}

/* server:wait(): waits until the server stops accepting (closed by another task or a
 * handler, its owner cancelled, or a handler failed). Cancellable. */
static int srv_wait(lua_State *L) {
  rem_lserver *srv = check_server(L, "server:wait");
  rem_ltask *t = rem__need_task(L, "server:wait");
  rem__check_cancel(L, t);
  if (srv->state != SRV_OPEN || !srv->lis) return 0;
  rem_task_wait_on(&t->rt, &srv->stopped, 1);
  return rem__await(L, t, 0, wait_k);
}

/* server:address() -> host, port (TCP) or the path (Unix). */
static int srv_address(lua_State *L) {
  rem_lserver *srv = check_server(L, "server:address");
  if (srv->state != SRV_OPEN) return luaL_error(L, "server:address: the server is closed");
  if (srv->kind == REM_STREAM_PIPE) {
    lua_pushstring(L, srv->path);
    return 1;
  }
  lua_pushstring(L, srv->host);
  lua_pushinteger(L, srv->port);
  return 2;
}

static int srv_tostring(lua_State *L) {
  rem_lserver *srv = check_server(L, "server:__tostring");
  lua_pushfstring(L, "rem.server (%s, %s, %d connections): %p", srv->name,
                  srv->state == SRV_OPEN ? (srv->lis ? "listening" : "stopped") : "closed",
                  srv->conns, (void *)srv);
  return 1;
}

/* The safety net: only reached by a server that never started, or when the state closes. */
static int srv_gc(lua_State *L) {
  rem_lserver *srv = lua_touserdata(L, 1);
  if (srv->lis) {
    rem__io_warn(L, "a server (%s) was garbage-collected without being closed", srv->name);
    srv->lis->srv = NULL;
    stop_listening(srv);
  }
  while (!rem_list_empty(&srv->conn_list))
    rem__stream_close_now(REM_CONTAINER_OF(srv->conn_list.next, rem_stream, server_link));
  if (srv->state == SRV_OPEN) rem_scope_deinit(&srv->group.scope);
  rem_errlist_clear(&srv->group.errors, NULL, NULL);
  free(srv->path);
  srv->path = NULL;
  return 0;
}

/* A connection's task runs serve(handler, stream): the stream is released when the handler
 * returns or fails, without raising a failure of an earlier write (the peer went away; the
 * handler's own writes raised what it could see). */
static const char serve_chunk[] =
  "local release, setmetatable = ...\n"
  "local guard_mt = { __close = function(g) release(g[1]) end }\n"
  "return function(handler, stream)\n"
  "  local guard <close> = setmetatable({ stream }, guard_mt)\n"
  "  return handler(stream)\n"
  "end\n";

void rem__open_server(lua_State *L, rem_state *st) {
  (void)st;
  static const luaL_Reg methods[] = {
    {"close", srv_close}, {"wait", srv_wait}, {"address", srv_address}, {NULL, NULL}};
  luaL_newmetatable(L, REM_SERVER_MT);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, srv_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, srv_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, srv_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  if (luaL_loadbuffer(L, serve_chunk, sizeof serve_chunk - 1, "=rem.server") != LUA_OK)
    lua_error(L);
  lua_pushcfunction(L, rem__stream_release);
  lua_getglobal(L, "setmetatable");
  lua_call(L, 2, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, SERVE_KEY);
}
