/* rem.tcp.connect and rem.tcp.listen: TCP over IPv4 and IPv6.
 *
 * connect resolves the host (a numeric address skips the lookup), then tries each address in
 * turn until one accepts; opts.timeout bounds the whole. The attempt in progress lives in a
 * userdata on the task's stack (its deadline is a runtime timer, stopped on every way out);
 * each failed or interrupted attempt's handle is closed, and waited for, before the next
 * one or the error, so a connect that raises leaves nothing behind.
 */
#include <stdio.h>
#include <string.h>

#include "io.h"

#define CONNECT_MT "rem.tcp.connecting"

/* ---- arguments ----------------------------------------------------------------------- */

static int check_port(lua_State *L, int idx, const char *fname, int allow_zero) {
  int isint;
  lua_Integer port = lua_tointegerx(L, idx, &isint);
  if (!isint) return rem__argerror(L, idx, fname, "port number");
  if (port < (allow_zero ? 0 : 1) || port > 65535)
    return luaL_error(L, "%s: bad argument #%d (port out of range: %d)", fname, idx, (int)port);
  return (int)port;
}

static const char *check_host(lua_State *L, int idx, const char *fname) {
  if (lua_type(L, idx) != LUA_TSTRING) rem__argerror(L, idx, fname, "host name or address");
  const char *host = lua_tostring(L, idx);
  if (!*host) luaL_error(L, "%s: bad argument #%d (empty host name)", fname, idx);
  return host;
}

/* A numeric IPv4 or IPv6 address: fills `ss`. */
static int numeric_addr(const char *host, int port, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0) return 1;
  if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0) return 1;
  return 0;
}

/* ---- connect ------------------------------------------------------------------------- */

typedef struct connect_op {
  rem_timer_t timer;
  rem_sched_t *sched;
  rem_task_t *task;
  struct addrinfo *res;          /* the lookup's answer (owned by the request userdata) */
  struct addrinfo *ai;           /* the address being tried */
  struct sockaddr_storage direct;
  double seconds;
  int numeric;
  int waiting;                   /* in a wait the deadline may end */
  int expired;
  int last_error;
  int abort_status;
  int nodelay;
  char addr[INET6_ADDRSTRLEN + 16];
} connect_op;

_Static_assert(sizeof ((rem_stream *)0)->name >= sizeof ((connect_op *)0)->addr,
               "a stream's name holds a connect's address");

/* Stack of connect: [host, port, opts, stream, op, lookup]. */
enum { I_HOST = 1, I_STREAM = 4, I_OP = 5, I_DNS = 6 };
enum { PH_DNS, PH_CONNECT, PH_FAILED, PH_ABORTED };

static void on_deadline(rem_timer_t *timer) {
  connect_op *op = REM_CONTAINER_OF(timer, connect_op, timer);
  op->expired = 1;
  if (op->waiting) rem_task_wake(op->task, UV_ETIMEDOUT);
  op->waiting = 0;
}

static void op_end(connect_op *op) {
  rem_timer_stop(&op->sched->timers, &op->timer);
  op->waiting = 0;
}

static int op_gc(lua_State *L) {
  op_end(lua_touserdata(L, 1));
  return 0;
}

static int give_up(lua_State *L, connect_op *op, int why) {
  op_end(op);
  if (why == UV_ECANCELED) return rem__io_raise_cancel(L);
  rem__push_error(L, "ETIMEDOUT", "rem.tcp.connect: timed out after %f s connecting to %s",
                  (lua_Number)op->seconds, op->addr[0] ? op->addr : lua_tostring(L, I_HOST));
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "timeout");
  return lua_error(L);
}

static int connect_k(lua_State *L, int status, lua_KContext phase);

static int attempt(lua_State *L, rem_ltask *t, connect_op *op, const struct sockaddr *addr) {
  rem__format_addr(addr, op->addr, sizeof op->addr);
  rem_lstream *ls = lua_touserdata(L, I_STREAM);
  int rc;
  rem_stream *s = rem__stream_new(t->st, REM_STREAM_TCP, &rc);
  if (!s) {
    op_end(op);
    return rem__io_error(L, rc, "rem.tcp.connect", op->addr);
  }
  rem__stream_attach(ls, s);
  rc = uv_tcp_connect(&s->connect_req, &s->h.tcp, addr, rem__stream_on_connect);
  if (rc) {
    op->last_error = rc;
    rem__stream_close_wait(t, ls);
    return rem__await(L, t, PH_FAILED, connect_k);
  }
  s->connector = &t->rt;
  op->waiting = 1;
  rem_task_wait(&t->rt, rem__io_abort);
  return rem__await(L, t, PH_CONNECT, connect_k);
}

static int next_attempt(lua_State *L, rem_ltask *t, connect_op *op) {
  if (rem__cancelled_here(L, t)) return give_up(L, op, UV_ECANCELED);
  if (op->expired) return give_up(L, op, UV_ETIMEDOUT);
  struct addrinfo *ai = op->numeric ? NULL : op->ai ? op->ai->ai_next : op->res;
  while (ai && ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ai = ai->ai_next;
  if (!ai) {
    op_end(op);
    int rc = op->last_error ? op->last_error : UV_EAI_NONAME;
    rem__push_error(L, uv_err_name(rc), "rem.tcp.connect: cannot connect to %s: %s",
                    op->addr[0] ? op->addr : lua_tostring(L, I_HOST), uv_strerror(rc));
    return lua_error(L);
  }
  op->ai = ai;
  return attempt(L, t, op, ai->ai_addr);
}

static int connect_k(lua_State *L, int status, lua_KContext phase) {
  (void)status;
  rem_ltask *t;
  int woke = rem__io_woke(L, &t);
  connect_op *op = lua_touserdata(L, I_OP);
  op->waiting = 0;
  rem_lstream *ls = lua_touserdata(L, I_STREAM);
  int aborted = woke == UV_ECANCELED || woke == UV_ETIMEDOUT;
  switch (phase) {
  case PH_DNS: {
    if (aborted) {
      rem__dns_abandon(L, I_DNS);
      return give_up(L, op, woke);
    }
    int rc = rem__dns_result(L, I_DNS, &op->res);
    if (rc) {
      op_end(op);
      rem__push_error(L, uv_err_name(rc), "rem.tcp.connect: cannot resolve '%s': %s",
                      lua_tostring(L, I_HOST), uv_strerror(rc));
      return lua_error(L);
    }
    return next_attempt(L, t, op);
  }
  case PH_CONNECT: {
    rem_stream *s = ls->s;
    s->connector = NULL;
    if (aborted || s->connect_status) {
      op->abort_status = woke;
      if (!aborted) op->last_error = s->connect_status;
      rem__stream_close_wait(t, ls);
      return rem__await(L, t, aborted ? PH_ABORTED : PH_FAILED, connect_k);
    }
    op_end(op);
    rem__stream_connected(s, op->nodelay);
    memcpy(s->name, op->addr, sizeof op->addr);  /* no snprintf on this path (dns.c) */
    if (!op->numeric) rem__dns_done(L, I_DNS);
    lua_settop(L, I_STREAM);
    return 1;
  }
  case PH_FAILED:
    return next_attempt(L, t, op);
  default:
    return give_up(L, op, op->abort_status);
  }
}

/* rem.tcp.connect(host, port [, opts]) -> stream. opts.timeout: seconds for the lookup and
 * the connection together; opts.nodelay (default true): TCP_NODELAY. */
static int l_connect(lua_State *L) {
  const char *F = "rem.tcp.connect";
  const char *host = check_host(L, 1, F);
  int port = check_port(L, 2, F, 0);
  rem__check_opts(L, 3, F);
  double timeout = rem__opt_number(L, 3, "timeout", -1, F);
  int nodelay = rem__opt_boolean(L, 3, "nodelay", 1, F);
  rem_ltask *t = rem__need_task(L, F);
  rem__check_cancel(L, t);
  lua_settop(L, 3);
  rem__stream_push(L);
  connect_op *op = lua_newuserdatauv(L, sizeof *op, 0);
  memset(op, 0, sizeof *op);
  rem_timer_init(&op->timer);
  luaL_setmetatable(L, CONNECT_MT);
  op->sched = &t->st->sched;
  op->task = &t->rt;
  op->nodelay = nodelay;
  op->seconds = timeout;
  if (timeout >= 0) {
    int rc = rem_timer_start(&op->sched->timers, &op->timer, rem_timer_ms(timeout),
                             on_deadline);
    if (rc) return rem__io_error(L, rc, F, host);
  }
  if (numeric_addr(host, port, &op->direct)) {
    op->numeric = 1;
    return attempt(L, t, op, (struct sockaddr *)&op->direct);
  }
  char service[8];
  snprintf(service, sizeof service, "%d", port);
  int rc = rem__dns_start(L, t, host, service);
  if (rc) {
    op_end(op);
    rem__push_error(L, uv_err_name(rc), "%s: cannot resolve '%s': %s", F, host,
                    uv_strerror(rc));
    return lua_error(L);
  }
  op->waiting = 1;
  return rem__await(L, t, PH_DNS, connect_k);
}

/* ---- listen -------------------------------------------------------------------------- */

/* Stack of listen: [host, port, handler, opts, (lookup)]. */
static int bind_and_listen(lua_State *L, rem_ltask *t, const struct sockaddr *addr) {
  const char *F = "rem.tcp.listen";
  rem_server_opts opts;
  opts.backlog = (int)rem__opt_number(L, 4, "backlog", 511, F);
  opts.max_connections = (int)rem__opt_number(L, 4, "max_connections", 0, F);
  opts.nodelay = rem__opt_boolean(L, 4, "nodelay", 1, F);
  char name[INET6_ADDRSTRLEN + 16];
  rem__format_addr(addr, name, sizeof name);
  rem_lserver *srv = rem__server_push(L, t->st, REM_STREAM_TCP, 3, &opts);
  int rc;
  uv_handle_t *h = rem__server_handle(srv, &rc);
  if (h) {
    rc = uv_tcp_bind((uv_tcp_t *)h, addr, 0);
    if (rc == 0) rc = rem__server_start(L, srv, t, NULL);
  }
  if (rc) {
    rem__server_abort(srv);
    rem__push_error(L, uv_err_name(rc), "%s: cannot listen on %s: %s", F, name,
                    uv_strerror(rc));
    return lua_error(L);
  }
  return 1;
}

static int listen_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  rem_ltask *t;
  if (rem__io_woke(L, &t) == UV_ECANCELED) {
    rem__dns_abandon(L, 5);
    return rem__io_raise_cancel(L);
  }
  struct addrinfo *res;
  int rc = rem__dns_result(L, 5, &res);
  struct addrinfo *ai = res;
  while (ai && ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ai = ai->ai_next;
  if (rc || !ai) {
    rem__dns_done(L, 5);
    if (!rc) rc = UV_EAI_NONAME;
    rem__push_error(L, uv_err_name(rc), "rem.tcp.listen: cannot resolve '%s': %s",
                    lua_tostring(L, 1), uv_strerror(rc));
    return lua_error(L);
  }
  struct sockaddr_storage ss;
  memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
  rem__dns_done(L, 5);
  return bind_and_listen(L, t, (struct sockaddr *)&ss);
}

/* rem.tcp.listen(host, port, handler [, opts]) -> server. Port 0 picks a free port.
 * opts: backlog (511), max_connections (none), nodelay (true). */
static int l_listen(lua_State *L) {
  const char *F = "rem.tcp.listen";
  const char *host = check_host(L, 1, F);
  int port = check_port(L, 2, F, 1);
  rem__check_function(L, 3, F);
  rem__check_opts(L, 4, F);
  rem__opt_number(L, 4, "backlog", 511, F);
  rem__opt_number(L, 4, "max_connections", 0, F);
  rem__opt_boolean(L, 4, "nodelay", 1, F);
  rem_ltask *t = rem__need_task(L, F);
  rem__check_cancel(L, t);
  lua_settop(L, 4);
  struct sockaddr_storage ss;
  if (numeric_addr(host, port, &ss)) return bind_and_listen(L, t, (struct sockaddr *)&ss);
  char service[8];
  snprintf(service, sizeof service, "%d", port);
  int rc = rem__dns_start(L, t, host, service);
  if (rc) {
    rem__push_error(L, uv_err_name(rc), "%s: cannot resolve '%s': %s", F, host,
                    uv_strerror(rc));
    return lua_error(L);
  }
  return rem__await(L, t, 0, listen_k);
}

void rem__open_tcp(lua_State *L, rem_state *st) {
  luaL_newmetatable(L, CONNECT_MT);
  lua_pushcfunction(L, op_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"connect", l_connect}, {"listen", l_listen}, {NULL, NULL}};
  lua_newtable(L);
  rem__setfuncs(L, fns, st);
  lua_setfield(L, -2, "tcp");
}
