/* Streams (rem.stream): TCP and Unix-socket connections and process pipes, read and written
 * with Lua's io conventions.
 *
 * Reading: one buffer per stream (runtime/rbuf.h). A read is served from the buffer when it
 * can be; otherwise the task records what it waits for (a line, n bytes, the end), starts
 * libuv reading and suspends. The read callback appends to the buffer and wakes the reader
 * once its demand is met, stopping libuv reading: the socket is read only while a reader
 * waits, so a peer that sends faster than the script reads fills the kernel buffers and is
 * slowed down (backpressure). The end of the stream is nil ("" for "a"); a failure is
 * raised, after the bytes that arrived before it were read.
 *
 * Writing: what fits in the socket buffer is written at once (uv_try_write); the rest is
 * copied into one uv_write request. write returns as soon as the data is queued, unless the
 * queue holds more than REM_WRITE_HIGH_WATER bytes: then it waits for the queue to drain. A
 * failure of a write that completed later is raised by the next write, shutdown or close.
 * A write cancelled while it waited leaves the stream broken (what the peer got is unknown):
 * further writes raise, and close drops what is still queued instead of flushing it.
 *
 * Closing detaches the userdata first (every other call then says "closed"; a task waiting
 * in read or shutdown is woken with an error), waits for queued writes (at most
 * REM_STREAM_LINGER_MS; a cancellation that applies where close runs cuts it short), then
 * closes the handle and waits for the close callback, which frees the memory.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <unistd.h>
#endif

#include "io.h"

enum { CLOSE_NORMAL, CLOSE_QUIET, CLOSE_RESET };
enum { FMT_LINE, FMT_LINE_NL, FMT_ALL, FMT_COUNT };

/* ---- life cycle -------------------------------------------------------------------- */

rem_lstream *rem__stream_push(lua_State *L) {
  rem_lstream *ls = lua_newuserdatauv(L, sizeof *ls, 0);
  ls->s = NULL;
  luaL_setmetatable(L, REM_STREAM_MT);
  return ls;
}

rem_stream *rem__stream_new(rem_state *st, int kind, int *rc) {
  rem_stream *s = calloc(1, sizeof *s);
  if (!s) {
    *rc = UV_ENOMEM;
    return NULL;
  }
  s->st = st;
  s->kind = kind;
  rem_rbuf_init(&s->rbuf);
  rem_waitq_init(&s->drain);
  rem_waitq_init(&s->flushed);
  rem_waitq_init(&s->closed);
  rem_timer_init(&s->linger);
  rem_list_init(&s->server_link);
  *rc = kind == REM_STREAM_TCP ? uv_tcp_init(st->loop, &s->h.tcp)
                               : uv_pipe_init(st->loop, &s->h.pipe, 0);
  if (*rc) {  /* nothing was registered with the loop */
    free(s);
    return NULL;
  }
  s->h.handle.data = s;
  return s;
}

void rem__stream_attach(rem_lstream *ls, rem_stream *s) {
  ls->s = s;
  s->ud = ls;
}

void rem__stream_connected(rem_stream *s, int nodelay) {
  s->can_read = s->can_write = 1;
  if (s->kind == REM_STREAM_TCP && nodelay) uv_tcp_nodelay(&s->h.tcp, 1);
}

static void on_closed(uv_handle_t *handle) {
  rem_stream *s = handle->data;
  rem_waitq_wake_all(&s->closed, 0);
  rem_rbuf_free(&s->rbuf);
  free(s);
}

static void stop_reading(rem_stream *s) {
  if (!s->reading) return;
  uv_read_stop(&s->h.stream);
  s->reading = 0;
}

/* Stops everything and closes the handle; on_closed frees `s`. Pending write, connect and
 * shutdown requests complete first, with UV_ECANCELED. */
static void begin_close(rem_stream *s, int mode) {
  stop_reading(s);
  rem_timer_stop(&s->st->sched.timers, &s->linger);
  if (uv_is_closing(&s->h.handle)) return;
  /* uv_tcp_close_reset refuses a handle with a shutdown pending, or not connected. */
  if (mode == CLOSE_RESET && s->kind == REM_STREAM_TCP &&
      uv_tcp_close_reset(&s->h.tcp, on_closed) == 0)
    return;
  uv_close(&s->h.handle, on_closed);
}

/* Unlinks the stream from its userdata and its server, and wakes the tasks that wait on it
 * (with UV_EBADF: "closed while reading"). `L` is the closing task's thread, or NULL when no
 * Lua may run (collection). */
static void detach(lua_State *L, rem_stream *s) {
  if (s->ud) s->ud->s = NULL;
  s->ud = NULL;
  if (s->reader) rem_task_wake(s->reader, UV_EBADF);
  if (s->shutter) rem_task_wake(s->shutter, UV_EBADF);
  s->reader = s->shutter = NULL;
  rem_waitq_wake_all(&s->drain, UV_EBADF);
  rem_lserver *srv = s->server;
  s->server = NULL;
  rem_list_remove(&s->server_link);
  if (srv && L) rem__server_conn_closed(L, srv);
}

void rem__stream_close_now(rem_stream *s) {
  detach(NULL, s);
  begin_close(s, CLOSE_NORMAL);
}

int rem__stream_close_wait(rem_ltask *t, rem_lstream *ls) {
  rem_stream *s = ls->s;
  if (!s) return 0;
  detach(NULL, s);
  begin_close(s, CLOSE_NORMAL);
  rem_task_wait_on(&t->rt, &s->closed, 0);
  return 1;
}

void rem__stream_on_connect(uv_connect_t *req, int status) {
  rem_stream *s = req->handle->data;
  s->connected = 1;
  s->connect_status = status;
  if (s->connector) rem_task_wake(s->connector, 0);
  s->connector = NULL;
}

rem_stream *rem__stream_test(lua_State *L, int idx) {
  rem_lstream *ls = luaL_testudata(L, idx, REM_STREAM_MT);
  return ls ? ls->s : NULL;
}

/* ---- checks -------------------------------------------------------------------------- */

static rem_lstream *check_stream(lua_State *L, const char *fname) {
  rem_lstream *ls = luaL_testudata(L, 1, REM_STREAM_MT);
  if (!ls) {
    luaL_error(L, "%s: bad self (rem.stream expected, got %s; call it as s:%s(...))", fname,
               luaL_typename(L, 1), strchr(fname, ':') + 1);
  }
  return ls;
}

static rem_stream *open_stream(lua_State *L, rem_lstream *ls, const char *fname) {
  if (!ls->s) luaL_error(L, "%s: the stream is closed", fname);
  return ls->s;
}

static int closed_error(lua_State *L, const char *fname, const char *while_what) {
  rem__push_error(L, "EBADF", "%s: the stream was closed by another task while %s", fname,
                  while_what);
  return lua_error(L);
}

/* ---- reading ------------------------------------------------------------------------- */

/* The format at idx: its kind, and the count for FMT_COUNT. */
static int parse_fmt(lua_State *L, int idx, size_t *n, const char *fname, int argn) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    int isint;
    lua_Integer k = lua_tointegerx(L, idx, &isint);
    if (!isint || k < 0)
      luaL_error(L, "%s: bad argument #%d (non-negative integer expected)", fname, argn);
    *n = (size_t)k;
    return FMT_COUNT;
  }
  const char *p = lua_tostring(L, idx);
  if (!p)
    luaL_error(L, "%s: bad argument #%d (format expected, got %s)", fname, argn,
               luaL_typename(L, idx));
  if (*p == '*') p++;  /* Lua 5.1's "*l" */
  switch (*p) {
  case 'l': return FMT_LINE;
  case 'L': return FMT_LINE_NL;
  case 'a': return FMT_ALL;
  default:
    return luaL_error(L, "%s: bad argument #%d (invalid format '%s'; expected \"l\", \"L\", "
                      "\"a\" or a count)", fname, argn, lua_tostring(L, idx));
  }
}

static void take(lua_State *L, rem_stream *s, size_t n, size_t keep) {
  lua_pushlstring(L, rem_rbuf_peek(&s->rbuf), keep);
  rem_rbuf_consume(&s->rbuf, n);
  s->scanned = 0;
}

/* Serves one format from the buffer: pushes the value (a string, or nil at the end) and
 * returns 1, or returns 0 when more data is needed. Raises the failure that ended reading
 * once the buffer cannot serve the format. */
static int try_read(lua_State *L, rem_stream *s, int kind, size_t n, const char *fname) {
  rem_rbuf_t *b = &s->rbuf;
  size_t len = rem_rbuf_len(b);
  int ended = s->read_status != 0;
  switch (kind) {
  case FMT_LINE:
  case FMT_LINE_NL: {
    ssize_t nl = rem_rbuf_find(b, '\n', s->scanned);
    if (nl >= 0) {
      take(L, s, (size_t)nl + 1, (size_t)nl + (kind == FMT_LINE_NL));
      return 1;
    }
    s->scanned = len;
    if (!ended) return 0;
    if (len > 0) {  /* the last line, without its newline */
      take(L, s, len, len);
      return 1;
    }
    break;
  }
  case FMT_COUNT:
    if (n == 0 && len > 0) {
      lua_pushliteral(L, "");
      return 1;
    }
    if (n > 0 && len >= n) {
      take(L, s, n, n);
      return 1;
    }
    if (!ended) return 0;
    if (len > 0) {
      take(L, s, len, len);
      return 1;
    }
    break;
  case FMT_ALL:
    if (!ended) return 0;
    if (s->read_status == UV_EOF) {
      take(L, s, len, len);
      return 1;
    }
    break;
  }
  if (s->read_status == UV_EOF) {
    lua_pushnil(L);
    return 1;
  }
  return rem__io_error(L, s->read_status, fname, s->name);
}

/* Has the waiting reader got what it waits for? */
static int satisfied(rem_stream *s) {
  if (s->want_line) {
    if (rem_rbuf_find(&s->rbuf, '\n', s->scanned) >= 0) return 1;
    s->scanned = rem_rbuf_len(&s->rbuf);
    return 0;
  }
  return s->want > 0 && rem_rbuf_len(&s->rbuf) >= s->want;
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  rem_stream *s = handle->data;
  size_t avail = 0;
  char *p = rem_rbuf_reserve(&s->rbuf, 4096, &avail);
  if (avail > 65536) avail = 65536;
  *buf = uv_buf_init(p, p ? (unsigned)avail : 0);  /* empty: libuv reports UV_ENOBUFS */
}

static void on_read(uv_stream_t *handle, ssize_t nread, const uv_buf_t *buf) {
  (void)buf;
  rem_stream *s = handle->data;
  if (nread == 0) return;
  if (nread > 0)
    rem_rbuf_commit(&s->rbuf, (size_t)nread);
  else
    s->read_status = nread == UV_ENOBUFS ? UV_ENOMEM : (int)nread;
  if (s->read_status == 0 && !satisfied(s)) return;
  stop_reading(s);
  if (s->reader) rem_task_wake(s->reader, 0);
  s->reader = NULL;
}

static int start_reading(rem_stream *s) {
  if (s->reading) return 0;
  int rc = uv_read_start(&s->h.stream, on_alloc, on_read);
  if (rc == 0) s->reading = 1;
  return rc;
}

static int read_k(lua_State *L, int status, lua_KContext ctx);

/* Performance: before a reader suspends, what the kernel already holds is read at once from
 * the (non-blocking) descriptor, as libuv would after a loop turn: a reply that is already
 * there costs no uv_read_start/stop and no turn of the loop (bench/ W3 reads 1,000 echoes in
 * a row). Only while libuv is not reading, so the bytes stay in order, and once per read
 * call, so a fast peer cannot keep the task from suspending; the socket is still read only
 * for a waiting reader (backpressure is unchanged). Returns 1 when it read something or
 * ended reading (EOF, a failure), 0 when nothing is there yet. */
static int read_now(rem_stream *s) {
#ifdef _WIN32
  (void)s;
  return 0;  /* no descriptor to read from: libuv's path only */
#else
  uv_os_fd_t fd;
  if (s->reading || s->read_status || uv_fileno(&s->h.handle, &fd) != 0) return 0;
  size_t avail = 0;
  char *p = rem_rbuf_reserve(&s->rbuf, 4096, &avail);
  if (!p) return 0;  /* libuv's path reports the lack of memory */
  if (avail > 65536) avail = 65536;
  ssize_t n;
  do n = read(fd, p, avail); while (n < 0 && errno == EINTR);
  if (n > 0) {
    rem_rbuf_commit(&s->rbuf, (size_t)n);
    return 1;
  }
  if (n == 0) {
    s->read_status = UV_EOF;
    return 1;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
  s->read_status = uv_translate_sys_error(errno);
  return 1;
#endif
}

/* Stack: [stream, formats..., results so far]; reads from format `i` (0-based) on. */
static int read_step(lua_State *L, int i, int lines) {
  const char *fname = lines ? "stream:lines" : "stream:read";
  int nfmt = lua_gettop(L) - 1 - i;
  rem_stream *s = ((rem_lstream *)lua_touserdata(L, 1))->s;
  int tried = 0;
  for (; i < nfmt; i++) {
    size_t n = 0;
    int kind = parse_fmt(L, 2 + i, &n, fname, i + 1);
    luaL_checkstack(L, 2, "too many results");
    if (!try_read(L, s, kind, n, fname)) {
      if (!tried && read_now(s)) {  /* once (never starve the others): try it again */
        tried = 1;
        i--;
        continue;
      }
      rem_ltask *t = rem__current(L);
      s->want_line = kind == FMT_LINE || kind == FMT_LINE_NL;
      s->want = kind == FMT_COUNT ? (n ? n : 1) : 0;
      int rc = start_reading(s);
      if (rc) return rem__io_error(L, rc, fname, s->name);
      s->reader = &t->rt;
      rem_task_wait(&t->rt, rem__io_abort);
      return rem__await(L, t, (lua_KContext)i * 2 + lines, read_k);
    }
    if (lua_isnil(L, -1)) break;  /* as io: nothing after the end */
  }
  return lua_gettop(L) - 1 - nfmt;
}

static int read_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  rem_ltask *t;
  int woke = rem__io_woke(L, &t);
  int lines = (int)(ctx & 1);
  rem_stream *s = ((rem_lstream *)lua_touserdata(L, 1))->s;
  if (s && s->reader == &t->rt) s->reader = NULL;
  if (woke == UV_ECANCELED) {
    if (s) stop_reading(s);  /* what arrived stays buffered for the next read */
    return rem__io_raise_cancel(L);
  }
  if (!s) return closed_error(L, lines ? "stream:lines" : "stream:read", "reading");
  return read_step(L, (int)(ctx >> 1), lines);
}

/* The checks every read makes before reading; returns the stream. */
static rem_stream *reading(lua_State *L, rem_lstream *ls, const char *fname) {
  rem_stream *s = open_stream(L, ls, fname);
  if (!s->can_read) luaL_error(L, "%s: the stream is not readable (%s)", fname, s->name);
  rem_ltask *t = rem__need_task(L, fname);
  if (s->reader)
    luaL_error(L, "%s: another task is already reading from this stream", fname);
  rem__check_cancel(L, t);
  return s;
}

/* s:read(fmt...) -> one value per format: "l" a line without its newline, "L" with it,
 * "a" everything until the end ("" there), n up to n bytes (nil at the end). */
static int s_read(lua_State *L) {
  rem_lstream *ls = check_stream(L, "stream:read");
  int nfmt = lua_gettop(L) - 1;
  for (int i = 0; i < nfmt; i++) {
    size_t n;
    parse_fmt(L, 2 + i, &n, "stream:read", i + 1);
  }
  reading(L, ls, "stream:read");
  if (nfmt == 0) lua_pushliteral(L, "l");
  return read_step(L, 0, 0);
}

static int lines_iter(lua_State *L) {
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, lua_upvalueindex(2));
  reading(L, lua_touserdata(L, 1), "stream:lines");
  return read_step(L, 0, 1);
}

/* s:lines([fmt]) -> an iterator over reads of fmt ("l" by default) until the end. */
static int s_lines(lua_State *L) {
  rem_lstream *ls = check_stream(L, "stream:lines");
  open_stream(L, ls, "stream:lines");
  if (lua_gettop(L) < 2) lua_pushliteral(L, "l");
  size_t n;
  parse_fmt(L, 2, &n, "stream:lines", 1);
  lua_settop(L, 2);
  lua_pushcclosure(L, lines_iter, 2);
  return 1;
}

/* ---- writing ------------------------------------------------------------------------- */

typedef struct wreq {
  uv_write_t req;
  size_t len;
  char data[];
} wreq;

static void on_write(uv_write_t *req, int status) {
  wreq *w = (wreq *)req;
  rem_stream *s = req->handle->data;
  s->queued -= w->len;
  s->writes--;
  if (status < 0 && status != UV_ECANCELED && s->write_status == 0) s->write_status = status;
  free(w);
  if (s->queued <= REM_WRITE_HIGH_WATER || s->write_status) rem_waitq_wake_all(&s->drain, 0);
  if (s->writes == 0) rem_waitq_wake_all(&s->flushed, 0);
}

static int write_failed(lua_State *L, rem_stream *s, const char *fname) {
  s->reported = 1;
  return rem__io_error(L, s->write_status, fname, s->name);
}

static int write_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  rem_ltask *t;
  int woke = rem__io_woke(L, &t);
  rem_stream *s = ((rem_lstream *)lua_touserdata(L, 1))->s;
  if (woke == UV_ECANCELED) {
    if (s && s->queued > 0) s->broken = 1;
    return rem__io_raise_cancel(L);
  }
  if (!s) return closed_error(L, "stream:write", "writing");
  if (s->write_status) return write_failed(L, s, "stream:write");
  if (s->queued > REM_WRITE_HIGH_WATER) {
    rem_task_wait_on(&t->rt, &s->drain, 1);
    return rem__await(L, t, 0, write_k);
  }
  lua_settop(L, 1);
  return 1;
}

/* Queues `total` bytes of bufs[], the first `skip` of which were written already. */
static int queue_write(rem_stream *s, const uv_buf_t *bufs, int nbufs, size_t skip,
                       size_t total) {
  wreq *w = malloc(sizeof *w + (total - skip));
  if (!w) return UV_ENOMEM;
  w->len = total - skip;
  char *p = w->data;
  for (int i = 0; i < nbufs; i++) {
    size_t len = bufs[i].len;
    if (skip >= len) {
      skip -= len;
      continue;
    }
    memcpy(p, bufs[i].base + skip, len - skip);
    p += len - skip;
    skip = 0;
  }
  uv_buf_t buf = uv_buf_init(w->data, (unsigned)w->len);
  int rc = uv_write(&w->req, &s->h.stream, &buf, 1, on_write);
  if (rc) {
    free(w);
    return rc;
  }
  s->queued += w->len;
  s->writes++;
  return 0;
}

#define MAX_BUFS 16

/* s:write(...) -> s: writes strings and numbers (formatted as io.write does). */
static int s_write(lua_State *L) {
  const char *F = "stream:write";
  rem_lstream *ls = check_stream(L, F);
  int n = lua_gettop(L);
  for (int i = 2; i <= n; i++) {
    if (lua_type(L, i) == LUA_TNUMBER) {
      char num[64];
      if (lua_isinteger(L, i))
        snprintf(num, sizeof num, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(L, i));
      else
        snprintf(num, sizeof num, LUA_NUMBER_FMT, (LUAI_UACNUMBER)lua_tonumber(L, i));
      lua_pushstring(L, num);
      lua_replace(L, i);
    } else if (lua_type(L, i) != LUA_TSTRING) {
      return luaL_error(L, "%s: bad argument #%d (string or number expected, got %s)", F,
                        i - 1, luaL_typename(L, i));
    }
  }
  rem_stream *s = open_stream(L, ls, F);
  if (!s->can_write) return luaL_error(L, "%s: the stream is not writable (%s)", F, s->name);
  if (s->shut) return luaL_error(L, "%s: the stream was shut down for writing", F);
  rem_ltask *t = rem__need_task(L, F);
  rem__check_cancel(L, t);
  if (s->broken) {
    rem__push_error(L, "EPIPE", "%s: %s: an earlier write was cancelled midway, so what the "
                    "peer received is unknown", F, s->name);
    return lua_error(L);
  }
  if (s->write_status) return write_failed(L, s, F);
  if (n - 1 > MAX_BUFS) {
    lua_concat(L, n - 1);
    n = 2;
  }
  uv_buf_t bufs[MAX_BUFS];
  int nbufs = 0;
  size_t total = 0;
  for (int i = 2; i <= n; i++) {
    size_t len;
    const char *p = lua_tolstring(L, i, &len);
    if (len == 0) continue;
    bufs[nbufs++] = uv_buf_init((char *)p, (unsigned)len);
    total += len;
  }
  lua_settop(L, 1);
  if (total == 0) return 1;
  size_t done = 0;
  if (s->writes == 0) {  /* nothing queued: what the socket takes now needs no copy */
    int r = uv_try_write(&s->h.stream, bufs, (unsigned)nbufs);
    if (r >= 0) {
      done = (size_t)r;
    } else if (r != UV_EAGAIN) {
      s->write_status = r;
      return write_failed(L, s, F);
    }
  }
  if (done < total) {
    int rc = queue_write(s, bufs, nbufs, done, total);
    if (rc) {
      s->write_status = rc;
      return write_failed(L, s, F);
    }
  }
  if (s->queued > REM_WRITE_HIGH_WATER) {
    rem_task_wait_on(&t->rt, &s->drain, 1);
    return rem__await(L, t, 0, write_k);
  }
  return 1;
}

/* ---- shutdown ------------------------------------------------------------------------ */

static void on_shutdown(uv_shutdown_t *req, int status) {
  rem_stream *s = req->handle->data;
  s->shut_done = 1;
  s->shutdown_status = status;
  if (s->shutter) rem_task_wake(s->shutter, 0);
  s->shutter = NULL;
}

static int shutdown_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  rem_ltask *t;
  int woke = rem__io_woke(L, &t);
  rem_stream *s = ((rem_lstream *)lua_touserdata(L, 1))->s;
  if (s && s->shutter == &t->rt) s->shutter = NULL;
  if (woke == UV_ECANCELED) return rem__io_raise_cancel(L);  /* it goes on regardless */
  if (!s) return closed_error(L, "stream:shutdown", "shutting it down");
  if (s->write_status && !s->reported) return write_failed(L, s, "stream:shutdown");
  if (s->shutdown_status < 0)
    return rem__io_error(L, s->shutdown_status, "stream:shutdown", s->name);
  return 0;
}

/* s:shutdown(): waits until the queued writes are written, then ends the writing side (the
 * peer reads the end of the stream); reading goes on. */
static int s_shutdown(lua_State *L) {
  const char *F = "stream:shutdown";
  rem_lstream *ls = check_stream(L, F);
  rem_stream *s = open_stream(L, ls, F);
  if (!s->can_write) return luaL_error(L, "%s: the stream is not writable (%s)", F, s->name);
  rem_ltask *t = rem__need_task(L, F);
  rem__check_cancel(L, t);
  if (s->shut) return 0;
  s->shut = 1;
  int rc = uv_shutdown(&s->shutdown_req, &s->h.stream, on_shutdown);
  if (rc) return rem__io_error(L, rc, F, s->name);
  lua_settop(L, 1);
  s->shutter = &t->rt;
  rem_task_wait(&t->rt, rem__io_abort);
  return rem__await(L, t, 0, shutdown_k);
}

/* ---- close --------------------------------------------------------------------------- */

static void on_linger(rem_timer_t *timer) {
  rem_stream *s = REM_CONTAINER_OF(timer, rem_stream, linger);
  if (s->closer) rem_task_wake(s->closer, UV_ETIMEDOUT);
  s->closer = NULL;
}

/* Stack: [stream, error to raise once closed or nil]; ctx: a cancellation to raise. */
static int close_done_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  rem_ltask *t;
  rem__io_woke(L, &t);
  if (ctx) return rem__io_raise_cancel(L);
  if (lua_isnil(L, 2)) return 0;
  lua_settop(L, 2);
  return lua_error(L);
}

static int close_handle(lua_State *L, rem_ltask *t, rem_stream *s, int cancelled) {
  begin_close(s, s->close_mode);
  rem_task_wait_on(&t->rt, &s->closed, 0);
  return rem__await(L, t, cancelled, close_done_k);
}

static int close_flushed_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  rem_stream *s = (rem_stream *)ctx;
  rem_ltask *t;
  int woke = rem__io_woke(L, &t);
  s->closer = NULL;
  rem_timer_stop(&s->st->sched.timers, &s->linger);
  return close_handle(L, t, s, woke == UV_ECANCELED && s->close_mode != CLOSE_QUIET);
}

static int close_impl(lua_State *L, int mode) {
  rem_lstream *ls = lua_touserdata(L, 1);
  lua_settop(L, 1);
  rem_stream *s = ls->s;
  if (!s) return 0;
  rem_ltask *t = rem__current(L);
  detach(L, s);
  s->close_mode = mode;
  if (mode == CLOSE_NORMAL && s->write_status && !s->reported) {
    s->reported = 1;
    rem__push_error(L, uv_err_name(s->write_status), "stream:close: %s: an earlier write "
                    "failed: %s", s->name, uv_strerror(s->write_status));
  } else {
    lua_pushnil(L);
  }
  if (!t || !lua_isyieldable(L)) {  /* nobody can wait: close now, dropping queued data */
    begin_close(s, mode);
    if (lua_isnil(L, 2)) return 0;
    return lua_error(L);
  }
  int cancelled = rem__cancelled_here(L, t);
  if (!cancelled && mode != CLOSE_RESET && s->writes > 0 && !s->broken) {
    s->closer = &t->rt;
    (void)rem_timer_start(&s->st->sched.timers, &s->linger, REM_STREAM_LINGER_MS, on_linger);
    rem_task_wait_on(&t->rt, &s->flushed, 1);
    return rem__await(L, t, (lua_KContext)s, close_flushed_k);
  }
  return close_handle(L, t, s, cancelled && mode != CLOSE_QUIET);
}

/* s:close() and __close: flushes, closes, waits for the handle to be gone; raises a failure
 * of an earlier write nobody saw. Idempotent. */
static int s_close(lua_State *L) {
  check_stream(L, "stream:close");
  return close_impl(L, CLOSE_NORMAL);
}

int rem__stream_release(lua_State *L) {
  if (!luaL_testudata(L, 1, REM_STREAM_MT)) return 0;
  return close_impl(L, CLOSE_QUIET);
}

/* s:reset(): closes a TCP connection abortively (the peer gets ECONNRESET), dropping what is
 * still queued. */
static int s_reset(lua_State *L) {
  rem_lstream *ls = check_stream(L, "stream:reset");
  rem_stream *s = ls->s;
  if (s && s->kind != REM_STREAM_TCP)
    return luaL_error(L, "stream:reset: only TCP connections can be reset (%s)", s->name);
  return close_impl(L, CLOSE_RESET);
}

/* The safety net: a stream nobody closed is closed (queued writes are dropped). */
static int s_gc(lua_State *L) {
  rem_lstream *ls = lua_touserdata(L, 1);
  rem_stream *s = ls->s;
  if (!s) return 0;
  s->orphan = 1;
  s->connector = s->closer = NULL;
  detach(NULL, s);
  rem__io_warn(L, "a stream (%s) was garbage-collected without being closed; closing it",
               s->name);
  begin_close(s, CLOSE_NORMAL);
  return 0;
}

static int s_tostring(lua_State *L) {
  rem_lstream *ls = check_stream(L, "stream:__tostring");
  if (ls->s)
    lua_pushfstring(L, "rem.stream (%s): %p", ls->s->name, (void *)ls);
  else
    lua_pushfstring(L, "rem.stream (closed): %p", (void *)ls);
  return 1;
}

void rem__open_stream(lua_State *L, rem_state *st) {
  (void)st;
  static const luaL_Reg methods[] = {
    {"read", s_read}, {"lines", s_lines}, {"write", s_write}, {"shutdown", s_shutdown},
    {"close", s_close}, {"reset", s_reset}, {NULL, NULL}};
  luaL_newmetatable(L, REM_STREAM_MT);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, s_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, s_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, s_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}
