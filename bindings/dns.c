/* Name resolution: rem.resolve, and the lookups of rem.tcp.connect and rem.tcp.listen,
 * through uv_getaddrinfo (libuv's thread pool).
 *
 * A request is malloc'd and outlives whoever waits for it: a task that stops waiting
 * (cancelled, timed out, its userdata collected) abandons it with uv_cancel, and the
 * callback, which libuv always calls (with UV_EAI_CANCELED then), frees it. The userdata
 * `rem.dns` on the waiting task's stack owns the request until then.
 */
#include <stdlib.h>
#include <string.h>

#include "io.h"

#define DNS_MT "rem.dns"

typedef struct dns_req {
  uv_getaddrinfo_t req;
  rem_task_t *task;       /* woken on completion; NULL once abandoned */
  struct addrinfo *res;
  int status;
  int done;
} dns_req;

typedef struct dns_holder {
  dns_req *r;
} dns_holder;

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  dns_req *r = req->data;
  if (!r->task) {  /* abandoned: nobody will read it */
    uv_freeaddrinfo(res);
    free(r);
    return;
  }
  r->status = status;
  r->res = res;
  r->done = 1;
  rem_task_wake(r->task, 0);
}

int rem__dns_start(lua_State *L, rem_ltask *t, const char *host, const char *service) {
  dns_holder *h = lua_newuserdatauv(L, sizeof *h, 0);
  h->r = NULL;
  luaL_setmetatable(L, DNS_MT);
  dns_req *r = calloc(1, sizeof *r);
  if (!r) {
    lua_pop(L, 1);
    return UV_ENOMEM;
  }
  r->req.data = r;
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = uv_getaddrinfo(t->st->loop, &r->req, on_resolved, host, service, &hints);
  if (rc) {
    free(r);
    lua_pop(L, 1);
    return rc;
  }
  r->task = &t->rt;
  h->r = r;
  rem_task_wait(&t->rt, rem__io_abort);
  return 0;
}

int rem__dns_result(lua_State *L, int idx, struct addrinfo **res) {
  dns_req *r = ((dns_holder *)lua_touserdata(L, idx))->r;
  r->task = NULL;
  *res = r->res;
  return r->status;
}

void rem__dns_abandon(lua_State *L, int idx) {
  dns_holder *h = lua_touserdata(L, idx);
  dns_req *r = h->r;
  if (!r) return;
  h->r = NULL;
  if (r->done) {
    uv_freeaddrinfo(r->res);
    free(r);
    return;
  }
  r->task = NULL;
  uv_cancel((uv_req_t *)&r->req);  /* fails once a thread runs it: the callback frees it */
}

void rem__dns_done(lua_State *L, int idx) {
  rem__dns_abandon(L, idx);
}

static int dns_gc(lua_State *L) {
  rem__dns_abandon(L, 1);
  return 0;
}

/* Appends the decimal digits of `v` at `p`; returns the end. */
static char *put_uint(char *p, unsigned v) {
  char digits[10];
  int n = 0;
  do {
    digits[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) *p++ = digits[--n];
  return p;
}

/* Performance: this runs on every connect (the stream keeps the name for its messages), so an
 * IPv4 address and the port are formatted by hand: snprintf (which uv_ip4_name uses too)
 * cost about a tenth of a loopback connect's CPU time in bench/ W3. */
void rem__format_addr(const struct sockaddr *sa, char *out, size_t size) {
  char buf[INET6_ADDRSTRLEN + 16];
  char *p = buf;
  unsigned port;
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    char ip[INET6_ADDRSTRLEN] = "?";
    uv_ip6_name(in6, ip, sizeof ip);
    size_t n = strlen(ip);
    *p++ = '[';
    memcpy(p, ip, n);
    p += n;
    *p++ = ']';
    port = ntohs(in6->sin6_port);
  } else if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    const unsigned char *b = (const unsigned char *)&in->sin_addr;
    for (int i = 0; i < 4; i++) {
      if (i) *p++ = '.';
      p = put_uint(p, b[i]);
    }
    port = ntohs(in->sin_port);
  } else {
    snprintf(out, size, "(address family %d)", sa->sa_family);
    return;
  }
  *p++ = ':';
  p = put_uint(p, port);
  if (size == 0) return;
  size_t n = (size_t)(p - buf);
  if (n >= size) n = size - 1;
  memcpy(out, buf, n);
  out[n] = '\0';
}

/* Stack: [host, request]. */
static int resolve_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  rem_ltask *t;
  if (rem__io_woke(L, &t) == UV_ECANCELED) {
    rem__dns_abandon(L, 2);
    return rem__io_raise_cancel(L);
  }
  struct addrinfo *res;
  int rc = rem__dns_result(L, 2, &res);
  if (rc) {
    rem__dns_done(L, 2);
    rem__push_error(L, uv_err_name(rc), "rem.resolve: cannot resolve '%s': %s",
                    lua_tostring(L, 1), uv_strerror(rc));
    return lua_error(L);
  }
  lua_newtable(L);  /* 3: the list */
  lua_newtable(L);  /* 4: the addresses seen */
  int n = 0;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    char ip[INET6_ADDRSTRLEN];
    if (ai->ai_family == AF_INET)
      uv_ip4_name((const struct sockaddr_in *)ai->ai_addr, ip, sizeof ip);
    else if (ai->ai_family == AF_INET6)
      uv_ip6_name((const struct sockaddr_in6 *)ai->ai_addr, ip, sizeof ip);
    else
      continue;
    if (lua_getfield(L, 4, ip) != LUA_TNIL) {
      lua_pop(L, 1);
      continue;
    }
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
    lua_setfield(L, 4, ip);
    lua_pushstring(L, ip);
    lua_rawseti(L, 3, ++n);
  }
  rem__dns_done(L, 2);
  lua_settop(L, 3);
  return 1;
}

/* rem.resolve(host) -> list of the host's addresses ("127.0.0.1", "::1"), in the order
 * getaddrinfo gives them. */
static int l_resolve(lua_State *L) {
  const char *F = "rem.resolve";
  if (lua_type(L, 1) != LUA_TSTRING) return rem__argerror(L, 1, F, "string");
  rem_ltask *t = rem__need_task(L, F);
  rem__check_cancel(L, t);
  lua_settop(L, 1);
  int rc = rem__dns_start(L, t, lua_tostring(L, 1), NULL);
  if (rc) {
    rem__push_error(L, uv_err_name(rc), "%s: cannot resolve '%s': %s", F, lua_tostring(L, 1),
                    uv_strerror(rc));
    return lua_error(L);
  }
  return rem__await(L, t, 0, resolve_k);
}

void rem__open_dns(lua_State *L, rem_state *st) {
  luaL_newmetatable(L, DNS_MT);
  lua_pushcfunction(L, dns_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"resolve", l_resolve}, {NULL, NULL}};
  rem__setfuncs(L, fns, st);
}
