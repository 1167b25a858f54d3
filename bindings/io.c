/* The I/O resources' registration (rem.tcp, rem.unix, rem.process, rem.resolve) and the
 * small pieces their files share: waking, errors, options, warnings. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>

#include "io.h"

void rem__io_abort(rem_task_t *task) {
  (void)task;
}

int rem__io_woke(lua_State *L, rem_ltask **tp) {
  rem_ltask *t = rem__current(L);
  t->wait_L = NULL;
  int status = t->rt.wake_status;
  t->rt.wake_status = 0;
  *tp = t;
  return status;
}

int rem__io_raise_cancel(lua_State *L) {
  rem__push_cancelled(L);
  return lua_error(L);
}

int rem__io_error(lua_State *L, int rc, const char *fname, const char *what) {
  rem__push_error(L, uv_err_name(rc), "%s: %s: %s", fname, what, uv_strerror(rc));
  return lua_error(L);
}

void rem__check_opts(lua_State *L, int idx, const char *fname) {
  if (!lua_isnoneornil(L, idx) && !lua_istable(L, idx))
    rem__argerror(L, idx, fname, "table of options or nil");
}

double rem__opt_number(lua_State *L, int idx, const char *field, double dflt,
                       const char *fname) {
  if (!lua_istable(L, idx)) return dflt;
  lua_getfield(L, idx, field);
  double v = dflt;
  if (!lua_isnil(L, -1)) {
    int isnum;
    v = lua_tonumberx(L, -1, &isnum);
    if (!isnum || v != v || v < 0) {
      luaL_error(L, "%s: bad option '%s' (non-negative number expected, got %s)", fname,
                 field, lua_isnumber(L, -1) ? "a negative number" : luaL_typename(L, -1));
    }
  }
  lua_pop(L, 1);
  return v;
}

int rem__opt_boolean(lua_State *L, int idx, const char *field, int dflt, const char *fname) {
  if (!lua_istable(L, idx)) return dflt;
  lua_getfield(L, idx, field);
  int v = dflt;
  if (!lua_isnil(L, -1)) {
    if (!lua_isboolean(L, -1))
      luaL_error(L, "%s: bad option '%s' (boolean expected, got %s)", fname, field,
                 luaL_typename(L, -1));
    v = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

void rem__io_warn(lua_State *L, const char *fmt, ...) {
  char text[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  lua_warning(L, "rem: ", 1);
  lua_warning(L, text, 0);
}

void rem__open_io(lua_State *L, rem_state *st) {
  /* A write to a connection the peer closed raises SIGPIPE, whose default action kills the
   * process; rem reports EPIPE as an error instead. A host's own handler is left alone. */
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(SIGPIPE, &sa, NULL);
  }
  rem__open_stream(L, st);
  rem__open_server(L, st);
  rem__open_dns(L, st);
  rem__open_tcp(L, st);
  rem__open_unix(L, st);
  rem__open_process(L, st);
}
