/* rem.fs.open and the file type `rem.file`: Lua io's file methods (read formats, write,
 * lines, seek, flush, close) over libuv's fs requests, so the loop never blocks on a disk.
 *
 * A file is a malloc'd rem_file behind a userdata that only points to it: a request on the
 * threadpool may outlive both the task that asked for it (cancelled) and the userdata
 * (collected), so the request, its buffers and the fd stay in rem_file until the request's
 * callback. One request is in flight at a time. Positions are rem's own: reads and writes
 * give libuv an explicit offset (pread/pwrite), since libuv has no lseek; append mode
 * writes at offset -1 (O_APPEND puts them at the end) and learns the end with fstat when
 * it needs a position. Files that cannot seek (pipes, terminals) use offset -1 throughout.
 *
 * Buffers follow C stdio: the file is in read mode (`rbuf` holds bytes from `pos` on) or in
 * write mode (`wbuf` holds bytes that end at `pos`), never both; switching flushes the
 * writes or drops the read-ahead.
 */
#include <ctype.h>
#include <limits.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"
#include "rbuf.h"

#define FILE_MT "rem.file"
#define CHUNK 65536            /* read-ahead, and the write buffer's flush threshold */
#define MAX_IO (1u << 30)      /* bytes per request (uv_buf_t lengths are unsigned int) */
#define MAXFORMATS 250         /* as liolib's lines(); read's ctx packs two of these */
#define MAXLENNUM 200          /* liolib's L_MAXLENNUM: the longest numeral "n" reads */
#define CTX_IDLE 0x10000       /* a continuation after waiting for `idle`, not a request */

enum { OP_NONE, OP_OPEN, OP_FSTAT, OP_READ, OP_WRITE, OP_CLOSE };
enum { F_READ = 1, F_WRITE = 2, F_APPEND = 4, F_SEEK = 8 };

typedef struct rem_file {
  rem_fsreq fr;       /* first: on_fs finds the file from its request */
  int op;             /* the request in flight, or OP_NONE */
  uv_file fd;         /* -1 when not open */
  int oflags;         /* for open(2) */
  unsigned flags;     /* F_* */
  int64_t pos;        /* where the next read or write goes; -1: the end, not known yet */
  int64_t size;       /* from the last fstat */
  rem_rbuf_t rbuf;
  rem_rbuf_t wbuf;
  int eof;            /* the last read request hit the end */
  int status;         /* 0 or UV_E*: the outcome of a request a task waited for */
  int close_err;      /* the first failure while closing */
  unsigned opening : 1;   /* open, then fstat, are under way */
  unsigned opened : 1;    /* the open succeeded and Lua got the file */
  unsigned closed : 1;    /* close() began: Lua may not use it any more */
  unsigned doomed : 1;    /* flush and close the fd as soon as nobody waits (a cancelled
                             open, or a collected file) */
  unsigned gone : 1;      /* the userdata was collected: free once settled */
  rem_waitq_t idle;   /* tasks waiting for a request a cancelled task gave up */
  char path[];
} rem_file;

typedef struct rem_lfile {
  rem_file *f;  /* NULL: born closed, before anything can fail */
} rem_lfile;

static void on_fs(uv_fs_t *req);

/* ---- requests and their completion --------------------------------------------------- */

static void clear(rem_rbuf_t *b) {
  rem_rbuf_consume(b, rem_rbuf_len(b));
}

static unsigned io_len(size_t n) {
  return n > MAX_IO ? MAX_IO : (unsigned)n;
}

/* Issues request `op` from the file's state. Returns 0 or a UV_E* code (nothing issued). */
static int submit(rem_file *f, int op) {
  uv_loop_t *loop = f->fr.loop;
  uv_fs_t *req = &f->fr.req;
  int rc = UV_EINVAL;
  uv_buf_t b;
  int64_t off;
  char *spare;
  size_t avail;
  switch (op) {
  case OP_OPEN:
    rc = uv_fs_open(loop, req, f->path, f->oflags, 0666, on_fs);
    break;
  case OP_FSTAT:
    rc = uv_fs_fstat(loop, req, f->fd, on_fs);
    break;
  case OP_READ:
    spare = rem_rbuf_reserve(&f->rbuf, CHUNK, &avail);
    if (!spare) {
      rc = UV_ENOMEM;
      break;
    }
    b = uv_buf_init(spare, io_len(avail));
    off = (f->flags & F_SEEK) ? f->pos + (int64_t)rem_rbuf_len(&f->rbuf) : -1;
    rc = uv_fs_read(loop, req, f->fd, &b, 1, off, on_fs);
    break;
  case OP_WRITE:
    b = uv_buf_init((char *)rem_rbuf_peek(&f->wbuf), io_len(rem_rbuf_len(&f->wbuf)));
    off = (f->flags & (F_SEEK | F_APPEND)) == F_SEEK
            ? f->pos - (int64_t)rem_rbuf_len(&f->wbuf) : -1;
    rc = uv_fs_write(loop, req, f->fd, &b, 1, off, on_fs);
    break;
  case OP_CLOSE:
    rc = uv_fs_close(loop, req, f->fd, on_fs);
    break;
  }
  if (rc == 0) f->op = op;
  return rc;
}

static void free_file(rem_file *f) {
  rem_rbuf_free(&f->rbuf);
  rem_rbuf_free(&f->wbuf);
  free(f);
}

/* Runs when no request is in flight and no task waits for one: flushes and closes what a
 * cancelled open or a collection left behind, ends the hold, frees a collected file. */
static void settle(rem_file *f) {
  if (f->op != OP_NONE || rem__fsreq_waited(&f->fr)) return;
  if (f->doomed && f->fd >= 0) {
    if (rem_rbuf_len(&f->wbuf) && submit(f, OP_WRITE) == 0) return;
    clear(&f->wbuf);
    if (submit(f, OP_CLOSE) == 0) return;
    f->fd = -1;  /* libuv refused even to try: give the fd up rather than loop */
  }
  rem__fsreq_release(&f->fr);
  if (f->gone) free_file(f);
}

static void on_fs(uv_fs_t *req) {
  rem_file *f = (rem_file *)req->data;
  ssize_t r = req->result;
  int op = f->op;
  int status = r < 0 ? (int)r : 0;
  int waited = rem__fsreq_waited(&f->fr);
  if (op == OP_FSTAT && r == 0) {
    f->size = (int64_t)req->statbuf.st_size;
    if (f->opening) {
      if (S_ISDIR(req->statbuf.st_mode)) status = UV_EISDIR;
      if (S_ISREG(req->statbuf.st_mode) || S_ISBLK(req->statbuf.st_mode)) f->flags |= F_SEEK;
    }
    if (f->pos < 0) f->pos = f->size;  /* append mode: the position is the end */
  }
  uv_fs_req_cleanup(req);
  f->op = OP_NONE;
  switch (op) {
  case OP_OPEN:
    if (r < 0) break;
    f->fd = (uv_file)r;
    if (f->doomed) break;  /* given up: settle closes it */
    status = submit(f, OP_FSTAT);
    if (status == 0) return;
    break;
  case OP_READ:
    if (r > 0) rem_rbuf_commit(&f->rbuf, (size_t)r);
    else if (r == 0) f->eof = 1;
    break;
  case OP_WRITE:
    if (r == UV_ECANCELED) break;  /* uv_cancel stopped it before it ran: keep the bytes */
    if (r == 0 && rem_rbuf_len(&f->wbuf)) status = UV_EIO;  /* no progress: do not spin */
    if (status) {
      /* Unwritten data goes with the error, so a later close does not fail again. */
      clear(&f->wbuf);
      break;
    }
    rem_rbuf_consume(&f->wbuf, (size_t)r);
    if (rem_rbuf_len(&f->wbuf) == 0 && (f->flags & F_APPEND)) f->pos = -1;
    /* A short write goes on while someone wants it all; a cancelled flush stops here and
     * leaves the rest buffered for the next flush or the close. */
    if (rem_rbuf_len(&f->wbuf) && (waited || f->doomed)) {
      status = submit(f, OP_WRITE);
      if (status == 0) return;
      clear(&f->wbuf);
    }
    break;
  case OP_CLOSE:
    f->fd = -1;
    break;
  }
  if (waited && status && !f->status) f->status = status;  /* for the waiter alone */
  if (f->opening && f->status && f->fd >= 0 && waited) {
    /* The open failed after the fd was made (a directory): close it before telling. */
    if (submit(f, OP_CLOSE) == 0) return;
    f->fd = -1;
  }
  if (waited) rem__fsreq_wake(&f->fr);
  rem_waitq_wake_all(&f->idle, 0);
  settle(f);
}

/* The waiting task gave up: an unfinished open is useless to anyone, so it is closed. */
static void file_abandoned(rem_fsreq *r) {
  rem_file *f = (rem_file *)r;
  if (f->opening) f->doomed = 1;
}

/* ---- helpers for the methods --------------------------------------------------------- */

static rem_file *check_file(lua_State *L, const char *fname) {
  rem_lfile *u = luaL_testudata(L, 1, FILE_MT);
  if (!u) {
    luaL_error(L, "%s: bad self (rem.file expected, got %s; call it with ':')", fname,
               luaL_typename(L, 1));
  }
  if (!u->f || u->f->closed) luaL_error(L, "%s: attempt to use a closed file", fname);
  return u->f;
}

static int take_status(rem_file *f) {
  int rc = f->status;
  f->status = 0;
  return rc;
}

/* Starts request `op` for `t` and suspends it until the request is done; continues at k. */
static int start(lua_State *L, rem_file *f, rem_ltask *t, int op, int cancellable,
                 lua_KContext ctx, lua_KFunction k, const char *fname) {
  if (cancellable) rem__check_cancel(L, t);
  f->status = 0;
  int rc = submit(f, op);
  if (rc) return rem__fs_error(L, rc, fname, f->path);
  return rem__fsreq_await(L, &f->fr, t, cancellable, ctx, k);
}

/* A request is in flight. If a task waits for it, the file is in use by another task (this
 * one is running): an error. Otherwise a cancelled task gave it up: wait until it ends. */
static int await_idle(lua_State *L, rem_file *f, rem_ltask *t, const char *fname,
                      lua_KContext ctx, lua_KFunction k) {
  if (rem__fsreq_waited(&f->fr))
    return luaL_error(L, "%s: the file is in use by another task", fname);
  rem__check_cancel(L, t);
  rem_task_wait_on(&t->rt, &f->idle, 1);
  return rem__await(L, t, ctx | CTX_IDLE, k);
}

/* The continuation's common start: raises a cancellation, use after close, or the failure
 * of the request waited for. Returns the file and the ctx without CTX_IDLE. */
static rem_file *resume_file(lua_State *L, lua_KContext *ctx, const char *fname) {
  rem__resumed(L);
  rem_file *f = check_file(L, fname);
  if (!(*ctx & CTX_IDLE)) {
    int rc = take_status(f);
    if (rc) rem__fs_error(L, rc, fname, f->path);
  }
  *ctx &= ~(lua_KContext)CTX_IDLE;
  return f;
}

static int not_open_for(lua_State *L, rem_file *f, const char *fname, const char *what) {
  rem__push_error(L, "EBADF", "%s: %s: file not open for %s", fname, f->path, what);
  lua_pushstring(L, f->path);
  lua_setfield(L, -2, "path");
  return lua_error(L);
}

/* ---- read ---------------------------------------------------------------------------- */

enum { R_OK, R_FAIL, R_NEED };  /* a value pushed, nil pushed, or more bytes needed */

/* Consumes `n` bytes of read-ahead: the position moves past them. */
static void advance(rem_file *f, size_t n) {
  rem_rbuf_consume(&f->rbuf, n);
  f->pos += (int64_t)n;
}

static int read_count(lua_State *L, rem_file *f, size_t n) {
  rem_rbuf_t *b = &f->rbuf;
  if (n == 0) {  /* "" unless at the end, as liolib's test_eof */
    if (rem_rbuf_len(b)) {
      lua_pushliteral(L, "");
      return R_OK;
    }
    if (!f->eof) return R_NEED;
    lua_pushnil(L);
    return R_FAIL;
  }
  if (rem_rbuf_len(b) < n && !f->eof) return R_NEED;
  if (rem_rbuf_len(b) == 0) {
    lua_pushnil(L);
    return R_FAIL;
  }
  if (n > rem_rbuf_len(b)) n = rem_rbuf_len(b);
  lua_pushlstring(L, rem_rbuf_peek(b), n);
  advance(f, n);
  return R_OK;
}

static int read_line(lua_State *L, rem_file *f, int chop) {
  rem_rbuf_t *b = &f->rbuf;
  const char *d = rem_rbuf_peek(b);
  const char *nl = rem_rbuf_len(b) ? memchr(d, '\n', rem_rbuf_len(b)) : NULL;
  size_t n;
  if (nl) {
    n = (size_t)(nl - d) + 1;
  } else {
    if (!f->eof) return R_NEED;
    if (rem_rbuf_len(b) == 0) {
      lua_pushnil(L);
      return R_FAIL;
    }
    n = rem_rbuf_len(b);
    chop = 0;  /* the last line has no newline to drop */
  }
  lua_pushlstring(L, d, chop ? n - 1 : n);
  advance(f, n);
  return R_OK;
}

static int read_all(lua_State *L, rem_file *f) {
  if (!f->eof) return R_NEED;
  size_t n = rem_rbuf_len(&f->rbuf);
  lua_pushlstring(L, rem_rbuf_peek(&f->rbuf), n);
  advance(f, n);
  return R_OK;
}

/* liolib's read_number over the buffer: the same grammar and the same 200-character limit,
 * one look-ahead character. Where liolib would wait in getc, this asks for more bytes and
 * scans again from the start; nothing but leading spaces is consumed until it is done. */
typedef struct numscan {
  const char *p;
  size_t len, i;
  int eof;
  int starved;  /* ran out of buffered bytes before the end of the file */
  int c;        /* the look-ahead character, or EOF */
  int n;
  char buff[MAXLENNUM + 1];
} numscan;

static int ns_getc(numscan *ns) {
  if (ns->i < ns->len) return (unsigned char)ns->p[ns->i++];
  if (!ns->eof) ns->starved = 1;
  return EOF;
}

static int ns_next(numscan *ns) {
  if (ns->n >= MAXLENNUM) {  /* too long for a numeral: fail */
    ns->buff[0] = '\0';
    return 0;
  }
  ns->buff[ns->n++] = (char)ns->c;
  ns->c = ns_getc(ns);
  return 1;
}

static int ns_test2(numscan *ns, const char *set) {
  if (ns->c != EOF && (ns->c == set[0] || ns->c == set[1])) return ns_next(ns);
  return 0;
}

static int ns_digits(numscan *ns, int hex) {
  int count = 0;
  while (ns->c != EOF && (hex ? isxdigit(ns->c) : isdigit(ns->c)) && ns_next(ns)) count++;
  return count;
}

static int read_number(lua_State *L, rem_file *f) {
  rem_rbuf_t *b = &f->rbuf;
  size_t sp = 0;
  while (sp < rem_rbuf_len(b) && isspace((unsigned char)rem_rbuf_peek(b)[sp])) sp++;
  advance(f, sp);
  if (rem_rbuf_len(b) == 0 && !f->eof) return R_NEED;
  numscan ns;
  ns.p = rem_rbuf_peek(b);
  ns.len = rem_rbuf_len(b);
  ns.i = 0;
  ns.eof = f->eof;
  ns.starved = 0;
  ns.n = 0;
  ns.c = ns_getc(&ns);
  char decp[2] = {lua_getlocaledecpoint(), '.'};
  int count = 0, hex = 0;
  ns_test2(&ns, "-+");
  if (ns_test2(&ns, "00")) {
    if (ns_test2(&ns, "xX")) hex = 1;
    else count = 1;
  }
  count += ns_digits(&ns, hex);
  if (ns_test2(&ns, decp)) count += ns_digits(&ns, hex);
  if (count > 0 && ns_test2(&ns, hex ? "pP" : "eE")) {
    ns_test2(&ns, "-+");
    ns_digits(&ns, 0);
  }
  if (ns.starved) return R_NEED;
  ns.buff[ns.n] = '\0';
  advance(f, (size_t)ns.n);  /* the look-ahead stays, as liolib's ungetc */
  if (lua_stringtonumber(L, ns.buff)) return R_OK;
  lua_pushnil(L);
  return R_FAIL;
}

static int read_format(lua_State *L, rem_file *f, int idx) {
  if (lua_type(L, idx) == LUA_TNUMBER) return read_count(L, f, (size_t)lua_tointeger(L, idx));
  const char *p = lua_tostring(L, idx);
  if (*p == '*') p++;  /* Lua 5.3's "*l" */
  switch (*p) {
  case 'n': return read_number(L, f);
  case 'l': return read_line(L, f, 1);
  case 'L': return read_line(L, f, 0);
  default: return read_all(L, f);
  }
}

/* Formats go at 2..n+1 of the stack; raises for a bad one. Returns how many there are. */
static int check_formats(lua_State *L, const char *fname) {
  int n = lua_gettop(L) - 1;
  if (n > MAXFORMATS) luaL_error(L, "%s: too many formats", fname);
  for (int i = 2; i <= n + 1; i++) {
    if (lua_type(L, i) == LUA_TNUMBER) {
      if (!lua_isinteger(L, i)) {
        lua_Integer v = 0;
        if (!lua_numbertointeger(lua_tonumber(L, i), &v))
          luaL_error(L, "%s: bad argument #%d (number has no integer representation)",
                     fname, i - 1);
        lua_pushinteger(L, v);
        lua_replace(L, i);
      }
      if (lua_tointeger(L, i) < 0)
        luaL_error(L, "%s: bad argument #%d (count must not be negative)", fname, i - 1);
      continue;
    }
    const char *p = lua_type(L, i) == LUA_TSTRING ? lua_tostring(L, i) : NULL;
    if (p && *p == '*') p++;
    if (!p || !*p || !strchr("nlLa", *p))
      luaL_error(L, "%s: bad argument #%d (invalid format)", fname, i - 1);
  }
  return n;
}

static int read_k(lua_State *L, int status, lua_KContext ctx);

/* Stack: [file, format...] then the values read so far; ctx: formats << 8 | the next. */
static int read_loop(lua_State *L, rem_file *f, lua_KContext ctx) {
  rem_ltask *t = rem__current(L);
  int nfmt = (int)(ctx >> 8), i = (int)(ctx & 0xff);
  if (f->op != OP_NONE) return await_idle(L, f, t, "file:read", ctx, read_k);
  if (rem_rbuf_len(&f->wbuf)) return start(L, f, t, OP_WRITE, 1, ctx, read_k, "file:read");
  if (f->pos < 0 && (f->flags & F_SEEK))  /* append mode after a write: find the end */
    return start(L, f, t, OP_FSTAT, 1, ctx, read_k, "file:read");
  for (; i <= nfmt; i++) {
    int r = read_format(L, f, i + 1);
    if (r == R_NEED)
      return start(L, f, t, OP_READ, 1, (lua_KContext)nfmt << 8 | i, read_k, "file:read");
    if (r == R_FAIL) return i;  /* the values so far and nil, as liolib */
  }
  return nfmt;
}

static int read_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  rem_file *f = resume_file(L, &ctx, "file:read");
  return read_loop(L, f, ctx);
}

/* file:read(...) -> one value per format ("n", "l", "L", "a" or a count; "l" by default);
 * nil for a format that finds the end of the file, and nothing after it. */
static int f_read(lua_State *L) {
  rem_file *f = check_file(L, "file:read");
  if (lua_gettop(L) == 1) lua_pushliteral(L, "l");
  int nfmt = check_formats(L, "file:read");
  if (!(f->flags & F_READ)) return not_open_for(L, f, "file:read", "reading");
  rem__need_task(L, "file:read");
  luaL_checkstack(L, nfmt + LUA_MINSTACK, "too many formats");
  f->eof = 0;  /* look past an earlier end: the file may have grown since */
  return read_loop(L, f, (lua_KContext)nfmt << 8 | 1);
}

/* Upvalues: the number of formats, the file, the formats. */
static int lines_iter(lua_State *L) {
  int n = (int)lua_tointeger(L, lua_upvalueindex(1));
  lua_settop(L, 0);
  luaL_checkstack(L, n + 1, "too many formats");
  for (int i = 2; i <= n + 2; i++) lua_pushvalue(L, lua_upvalueindex(i));
  rem_lfile *u = lua_touserdata(L, 1);
  if (!u->f || u->f->closed) return luaL_error(L, "file:lines: file is already closed");
  return f_read(L);
}

/* file:lines(...) -> an iterator reading with the formats given ("l" by default) until
 * nil. The file stays open, as with Lua io's file:lines. */
static int f_lines(lua_State *L) {
  check_file(L, "file:lines");
  int n = check_formats(L, "file:lines");
  lua_pushinteger(L, n);
  lua_insert(L, 1);
  lua_pushcclosure(L, lines_iter, n + 2);
  return 1;
}

/* ---- write, flush -------------------------------------------------------------------- */

static int write_k(lua_State *L, int status, lua_KContext ctx);

/* ctx 0: nothing appended yet; 1: appended, flushing. */
static int write_loop(lua_State *L, rem_file *f, lua_KContext ctx) {
  if (ctx == 0) {
    if (f->op != OP_NONE) {
      rem_ltask *t = rem__need_task(L, "file:write");
      return await_idle(L, f, t, "file:write", 0, write_k);
    }
    clear(&f->rbuf);  /* read-ahead starts at pos: dropping it keeps pos right */
    f->eof = 0;
    size_t total = 0;
    int top = lua_gettop(L);
    for (int i = 2; i <= top; i++) {
      size_t len;
      const char *s;
      char num[64];
      if (lua_type(L, i) == LUA_TNUMBER) {  /* as liolib: not lua_tostring's "1.0" */
        int n = lua_isinteger(L, i)
                  ? snprintf(num, sizeof num, LUA_INTEGER_FMT, lua_tointeger(L, i))
                  : snprintf(num, sizeof num, LUA_NUMBER_FMT, lua_tonumber(L, i));
        s = num;
        len = n < 0 ? 0 : (size_t)n;
      } else {
        s = lua_tolstring(L, i, &len);
      }
      size_t avail;
      char *room = len ? rem_rbuf_reserve(&f->wbuf, len, &avail) : NULL;
      if (len && !room) return rem__fs_error(L, UV_ENOMEM, "file:write", f->path);
      if (len) memcpy(room, s, len);
      rem_rbuf_commit(&f->wbuf, len);
      total += len;
    }
    if (f->flags & F_APPEND) f->pos = -1;
    else f->pos += (int64_t)total;
    if (rem_rbuf_len(&f->wbuf) >= CHUNK) {
      rem_ltask *t = rem__need_task(L, "file:write");
      return start(L, f, t, OP_WRITE, 1, 1, write_k, "file:write");
    }
  }
  lua_settop(L, 1);
  return 1;
}

static int write_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  rem_file *f = resume_file(L, &ctx, "file:write");
  return write_loop(L, f, ctx);
}

/* file:write(...) -> file. Buffered: a call suspends only when the buffer is flushed. */
static int f_write(lua_State *L) {
  rem_file *f = check_file(L, "file:write");
  int top = lua_gettop(L);
  for (int i = 2; i <= top; i++) {
    int t = lua_type(L, i);
    if (t != LUA_TSTRING && t != LUA_TNUMBER) {
      return luaL_error(L, "file:write: bad argument #%d (string expected, got %s)", i - 1,
                        luaL_typename(L, i));
    }
  }
  if (!(f->flags & F_WRITE)) return not_open_for(L, f, "file:write", "writing");
  return write_loop(L, f, 0);
}

static int flush_k(lua_State *L, int status, lua_KContext ctx);

static int flush_loop(lua_State *L, rem_file *f, lua_KContext ctx) {
  rem_ltask *t = rem__current(L);
  if (f->op != OP_NONE) return await_idle(L, f, t, "file:flush", ctx, flush_k);
  if (rem_rbuf_len(&f->wbuf)) return start(L, f, t, OP_WRITE, 1, 0, flush_k, "file:flush");
  lua_settop(L, 1);
  return 1;
}

static int flush_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  rem_file *f = resume_file(L, &ctx, "file:flush");
  return flush_loop(L, f, ctx);
}

/* file:flush() -> file, once the buffered writes are written. */
static int f_flush(lua_State *L) {
  rem_file *f = check_file(L, "file:flush");
  rem__need_task(L, "file:flush");
  return flush_loop(L, f, 0);
}

/* ---- seek ---------------------------------------------------------------------------- */

enum { SEEK_FROM_SET, SEEK_FROM_CUR, SEEK_FROM_END };

static int seek_k(lua_State *L, int status, lua_KContext ctx);

/* Stack: [file, whence (0, 1, 2), offset]; ctx 1: the size was just read. */
static int seek_loop(lua_State *L, rem_file *f, lua_KContext ctx) {
  rem_ltask *t = rem__current(L);
  int whence = (int)lua_tointeger(L, 2);
  lua_Integer offset = lua_tointeger(L, 3);
  if (f->op != OP_NONE) return await_idle(L, f, t, "file:seek", 0, seek_k);
  if (rem_rbuf_len(&f->wbuf)) return start(L, f, t, OP_WRITE, 1, 0, seek_k, "file:seek");
  if ((whence == SEEK_FROM_END || f->pos < 0) && ctx == 0)
    return start(L, f, t, OP_FSTAT, 1, 1, seek_k, "file:seek");
  int64_t base = whence == SEEK_FROM_SET ? 0 : whence == SEEK_FROM_CUR ? f->pos : f->size;
  if ((offset > 0 && base > INT64_MAX - offset) || base + offset < 0) {
    rem__push_fs_error(L, UV_EINVAL, "file:seek", f->path);
    return lua_error(L);
  }
  int64_t pos = base + offset;
  if (pos != f->pos) {
    clear(&f->rbuf);
    f->pos = pos;
  }
  f->eof = 0;
  lua_pushinteger(L, (lua_Integer)pos);
  return 1;
}

static int seek_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  rem_file *f = resume_file(L, &ctx, "file:seek");
  return seek_loop(L, f, ctx);
}

/* file:seek([whence [, offset]]) -> the position from the start, as Lua io's. */
static int f_seek(lua_State *L) {
  static const char *const names[] = {"set", "cur", "end", NULL};
  rem_file *f = check_file(L, "file:seek");
  int whence = SEEK_FROM_CUR;
  if (!lua_isnoneornil(L, 2)) {
    const char *w = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
    for (whence = 0; w && names[whence] && strcmp(names[whence], w) != 0; whence++) {}
    if (!w || !names[whence])
      return luaL_error(L, "file:seek: bad argument #1 (\"set\", \"cur\" or \"end\" expected)");
  }
  lua_Integer offset = 0;
  if (!lua_isnoneornil(L, 3)) {
    int ok;
    offset = lua_tointegerx(L, 3, &ok);
    if (!ok) {
      return luaL_error(L, "file:seek: bad argument #2 (integer expected, got %s)",
                        luaL_typename(L, 3));
    }
  }
  if (!(f->flags & F_SEEK)) {
    rem__push_fs_error(L, UV_ESPIPE, "file:seek", f->path);
    return lua_error(L);
  }
  rem__need_task(L, "file:seek");
  lua_settop(L, 1);
  lua_pushinteger(L, whence);
  lua_pushinteger(L, offset);
  return seek_loop(L, f, 0);
}

/* ---- close --------------------------------------------------------------------------- */

static int close_k(lua_State *L, int status, lua_KContext ctx);

/* Cleanup: every wait here is uncancellable, and a failure is raised only once the fd is
 * closed. */
static int close_loop(lua_State *L, rem_file *f) {
  rem_ltask *t = rem__current(L);
  if (f->op != OP_NONE) {  /* a request in flight (a cancelled one, or another task's) */
    rem_task_wait_on(&t->rt, &f->idle, 0);
    return rem__await(L, t, CTX_IDLE, close_k);
  }
  int rc;
  if (rem_rbuf_len(&f->wbuf) && f->fd >= 0) {
    f->status = 0;
    rc = submit(f, OP_WRITE);
    if (rc == 0) return rem__fsreq_await(L, &f->fr, t, 0, 0, close_k);
    if (!f->close_err) f->close_err = rc;
    clear(&f->wbuf);
  }
  if (f->fd >= 0) {
    f->status = 0;
    rc = submit(f, OP_CLOSE);
    if (rc == 0) return rem__fsreq_await(L, &f->fr, t, 0, 0, close_k);
    if (!f->close_err) f->close_err = rc;
    f->fd = -1;
  }
  rem_rbuf_free(&f->rbuf);
  rem_rbuf_free(&f->wbuf);
  if (f->close_err) return rem__fs_error(L, f->close_err, "file:close", f->path);
  lua_pushboolean(L, 1);
  return 1;
}

static int close_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  rem__resumed(L);
  rem_file *f = ((rem_lfile *)lua_touserdata(L, 1))->f;
  if (!(ctx & CTX_IDLE)) {
    int rc = take_status(f);
    if (rc && !f->close_err) f->close_err = rc;
  }
  return close_loop(L, f);
}

static int close_start(lua_State *L, rem_file *f) {
  rem__need_task(L, "file:close");
  f->closed = 1;
  lua_settop(L, 1);
  return close_loop(L, f);
}

/* file:close() -> true, once the writes are flushed and the fd is closed. */
static int f_close(lua_State *L) {
  return close_start(L, check_file(L, "file:close"));
}

/* __close: as close(), and nothing for a file closed already. */
static int f_tbc(lua_State *L) {
  rem_lfile *u = luaL_checkudata(L, 1, FILE_MT);
  if (!u->f || u->f->closed) return 0;
  return close_start(L, u->f);
}

/* The safety net: a file collected unclosed is flushed and closed in the background, and
 * reported. Nothing here blocks or waits. */
static int f_gc(lua_State *L) {
  rem_lfile *u = lua_touserdata(L, 1);
  rem_file *f = u->f;
  if (!f) return 0;
  u->f = NULL;
  if (f->opened && !f->closed) {
    lua_warning(L, "rem: file '", 1);
    lua_warning(L, f->path, 1);
    lua_warning(L, "' was garbage-collected without being closed", 0);
  }
  /* Only when the Lua state closes can tasks still be waiting here: let go of them. */
  rem__fsreq_detach(&f->fr);
  while (!rem_list_empty(&f->idle.waiters)) rem_list_remove(f->idle.waiters.next);
  f->closed = 1;
  f->doomed = 1;
  f->gone = 1;
  if (f->op != OP_NONE || f->fd >= 0) rem__fsreq_hold(&f->fr);
  settle(f);
  return 0;
}

static int f_tostring(lua_State *L) {
  rem_lfile *u = luaL_checkudata(L, 1, FILE_MT);
  if (!u->f || u->f->closed) lua_pushliteral(L, "rem.file (closed)");
  else lua_pushfstring(L, "rem.file (%s): %p", u->f->path, (void *)u->f);
  return 1;
}

/* ---- rem.fs.open --------------------------------------------------------------------- */

/* liolib's l_checkmode: [rwa]%+?b* */
static int parse_mode(const char *mode, int *oflags, unsigned *flags) {
  int plus;
  char kind = *mode;
  if (!kind || !strchr("rwa", kind)) return 0;
  mode++;
  plus = *mode == '+';
  if (plus) mode++;
  if (strspn(mode, "b") != strlen(mode)) return 0;
  switch (kind) {
  case 'r':
    *oflags = plus ? UV_FS_O_RDWR : UV_FS_O_RDONLY;
    *flags = F_READ | (plus ? F_WRITE : 0);
    break;
  case 'w':
    *oflags = (plus ? UV_FS_O_RDWR : UV_FS_O_WRONLY) | UV_FS_O_CREAT | UV_FS_O_TRUNC;
    *flags = F_WRITE | (plus ? F_READ : 0);
    break;
  default:
    *oflags = (plus ? UV_FS_O_RDWR : UV_FS_O_WRONLY) | UV_FS_O_CREAT | UV_FS_O_APPEND;
    *flags = F_WRITE | F_APPEND | (plus ? F_READ : 0);
    break;
  }
  return 1;
}

/* Stack: [path, mode, file]. */
static int open_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  rem__resumed(L);  /* cancelled: file_abandoned doomed the fd */
  rem_file *f = ((rem_lfile *)lua_touserdata(L, 3))->f;
  f->opening = 0;
  int rc = take_status(f);
  if (rc) return rem__fs_error(L, rc, "rem.fs.open", f->path);
  f->opened = 1;
  return 1;
}

/* rem.fs.open(path [, mode]) -> file; mode as io.open's ("r" by default). */
static int l_open(lua_State *L) {
  rem_state *st = rem__state(L);
  if (lua_type(L, 1) != LUA_TSTRING) return rem__argerror(L, 1, "rem.fs.open", "string");
  size_t plen;
  const char *path = lua_tolstring(L, 1, &plen);
  const char *mode = "r";
  if (!lua_isnoneornil(L, 2)) {
    if (lua_type(L, 2) != LUA_TSTRING) return rem__argerror(L, 2, "rem.fs.open", "string");
    mode = lua_tostring(L, 2);
  }
  int oflags;
  unsigned flags;
  if (!parse_mode(mode, &oflags, &flags))
    return luaL_error(L, "rem.fs.open: bad argument #2 (invalid mode '%s')", mode);
  if (strlen(path) != plen)
    return luaL_error(L, "rem.fs.open: bad argument #1 (path contains a zero byte)");
  rem_ltask *t = rem__need_task(L, "rem.fs.open");
  rem__check_cancel(L, t);
  lua_settop(L, 2);
  rem_lfile *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->f = NULL;
  luaL_setmetatable(L, FILE_MT);
  rem_file *f = malloc(sizeof *f + plen + 1);
  if (!f) return rem__fs_error(L, UV_ENOMEM, "rem.fs.open", path);
  memset(f, 0, sizeof *f);
  rem__fsreq_init(&f->fr, st, file_abandoned);
  f->op = OP_NONE;
  f->fd = -1;
  f->oflags = oflags;
  f->flags = flags;
  f->pos = (flags & F_APPEND) && !(flags & F_READ) ? -1 : 0;
  rem_rbuf_init(&f->rbuf);
  rem_rbuf_init(&f->wbuf);
  rem_waitq_init(&f->idle);
  memcpy(f->path, path, plen + 1);
  u->f = f;
  f->opening = 1;
  int rc = submit(f, OP_OPEN);
  if (rc) return rem__fs_error(L, rc, "rem.fs.open", path);
  return rem__fsreq_await(L, &f->fr, t, 1, 0, open_k);
}

void rem__open_file(lua_State *L, rem_state *st) {
  static const luaL_Reg methods[] = {
    {"read", f_read}, {"write", f_write}, {"lines", f_lines}, {"seek", f_seek},
    {"flush", f_flush}, {"close", f_close}, {NULL, NULL}};
  luaL_newmetatable(L, FILE_MT);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, f_tbc);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, f_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, f_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"open", l_open}, {NULL, NULL}};
  rem__setfuncs(L, fns, st);
}
