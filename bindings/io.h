/* Shared by the I/O bindings (stream.c, server.c, tcp.c, unix.c, dns.c, process.c);
 * not installed.
 *
 * Ownership, as in luv: every libuv handle lives in malloc'd memory of its own, apart from
 * the Lua userdata that stands for it, and is freed only in its close callback. The
 * userdata points to it and is born closed (a NULL pointer) before anything can fail;
 * closing detaches it at once (so every other call sees "closed"), then closes the handle.
 * A collected userdata whose handle is still open closes it with the same callback (which
 * then only frees) and warns. Waiting tasks are woken from libuv callbacks; a cancellable
 * wait has a no-op abort, and the continuation, which always runs before the task can wait
 * for anything else, undoes the operation (stops reading, abandons a request). Callbacks
 * that arrive after that find nobody to wake and touch only their own memory.
 */
#ifndef REM_BINDINGS_IO_H
#define REM_BINDINGS_IO_H

#include "internal.h"
#include "rbuf.h"

#define REM_STREAM_MT "rem.stream"
#define REM_SERVER_MT "rem.server"
#define REM_PROCESS_MT "rem.process"

/* The size of the queue of unwritten bytes above which stream:write waits. */
#define REM_WRITE_HIGH_WATER (64 * 1024)
/* How long a close waits for queued writes to reach the peer before dropping them. */
#define REM_STREAM_LINGER_MS 5000

enum { REM_STREAM_TCP, REM_STREAM_PIPE };

typedef struct rem_stream rem_stream;
typedef struct rem_lserver rem_lserver;

/* A stream's handle and state (malloc'd; freed in the close callback). */
struct rem_stream {
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h;
  uv_connect_t connect_req;
  uv_shutdown_t shutdown_req;
  rem_state *st;
  rem_rbuf_t rbuf;
  rem_task_t *reader;      /* the task waiting in read, if any */
  rem_task_t *connector;   /* the task waiting for connect_req */
  rem_task_t *shutter;     /* the task waiting for shutdown_req */
  rem_task_t *closer;      /* the task waiting for the flush in close */
  rem_waitq_t drain;       /* writers waiting for the queue to shrink */
  rem_waitq_t flushed;     /* woken when no write is in flight */
  rem_waitq_t closed;      /* woken by the close callback */
  rem_timer_t linger;
  rem_lserver *server;     /* the server that accepted it, while it is open */
  rem_list_t server_link;  /* in the server's list of open connections */
  struct rem_lstream *ud;  /* the userdata pointing to it, while attached */
  size_t want;             /* what the reader waits for: bytes, or 0 for "a" */
  size_t scanned;          /* bytes already searched for a newline */
  size_t queued;           /* bytes handed to uv_write and not yet written */
  int want_line;
  int writes;              /* uv_write requests in flight */
  int read_status;         /* 0, UV_EOF, or the error that ended reading */
  int write_status;        /* the first failure of a write that completed later */
  int connect_status;
  int shutdown_status;
  unsigned kind : 2;
  unsigned reading : 1;    /* uv_read_start is on */
  unsigned connected : 1;  /* connect_req completed */
  unsigned shut : 1;       /* shutdown was requested */
  unsigned shut_done : 1;
  unsigned broken : 1;     /* a cancelled write left unknown data in flight */
  unsigned reported : 1;   /* write_status was raised */
  unsigned orphan : 1;     /* its userdata was collected */
  unsigned can_read : 1;
  unsigned can_write : 1;
  unsigned close_mode : 2;
  char name[160];          /* for messages: the peer's address, a path, "stdout of ..." */
};

/* The userdata rem.stream. */
typedef struct rem_lstream {
  rem_stream *s;  /* NULL: closed (or closing) */
} rem_lstream;

/* ---- stream.c ---------------------------------------------------------------------- */
/* Pushes a new, closed stream userdata. */
rem_lstream *rem__stream_push(lua_State *L);
/* A new stream core with its handle initialised on st's loop (uv_tcp_init or uv_pipe_init);
 * NULL with *rc set on failure. The caller attaches it (ls->s = s) at once. */
rem_stream *rem__stream_new(rem_state *st, int kind, int *rc);
/* Points `ls` at `s` (both fresh). */
void rem__stream_attach(rem_lstream *ls, rem_stream *s);
/* Closes a stream at once, without waiting or flushing (a connection whose handler never
 * ran, a pipe of a process that failed to start); the close callback frees it. */
void rem__stream_close_now(rem_stream *s);
/* Detaches and closes the stream of `ls` and arms an uncancellable wait of `t` for the
 * close callback (the caller then awaits). Returns 0 when there was nothing to close. */
int rem__stream_close_wait(rem_ltask *t, rem_lstream *ls);
/* Completion of connect_req: wakes s->connector. */
void rem__stream_on_connect(uv_connect_t *req, int status);
/* Starts the stream's life as a connection (TCP_NODELAY for TCP unless nodelay is 0). */
void rem__stream_connected(rem_stream *s, int nodelay);
/* lua_CFunction (stream): closes without raising a failure of an earlier write (for the
 * streams rem closes on the user's behalf: a connection's after its handler, a process's
 * pipes). May suspend. */
int rem__stream_release(lua_State *L);
/* The open stream at idx for UV_INHERIT_STREAM, or NULL. */
rem_stream *rem__stream_test(lua_State *L, int idx);
void rem__open_stream(lua_State *L, rem_state *st);

/* ---- server.c ---------------------------------------------------------------------- */
/* The listening handle's union as a server sees it. */
typedef union rem_listen_handle {
  uv_handle_t handle;
  uv_stream_t stream;
  uv_tcp_t tcp;
  uv_pipe_t pipe;
} rem_listen_handle;
typedef struct rem_server_opts {
  int backlog;
  int max_connections;  /* 0: no limit */
  int nodelay;
} rem_server_opts;
/* Pushes a closed server userdata (whose handler is the function at `handler_idx`) and
 * returns the handle to bind, initialised on the loop, or NULL with *rc. */
rem_lserver *rem__server_push(lua_State *L, rem_state *st, int kind, int handler_idx,
                              const rem_server_opts *opts);
uv_handle_t *rem__server_handle(rem_lserver *srv, int *rc);
/* After a successful bind, with the server userdata on top of the stack: listens and starts
 * serving, owned by task `t`. Returns 0 or a UV_E* code (then call rem__server_abort).
 * `path`: a Unix server's socket file, removed when it stops (NULL for TCP). */
int rem__server_start(lua_State *L, rem_lserver *srv, rem_ltask *t, const char *path);
/* Closes the handle of a server that failed to start (no wait). */
void rem__server_abort(rem_lserver *srv);
/* A connection the server accepted was closed. Called with the closing task's thread. */
void rem__server_conn_closed(lua_State *L, rem_lserver *srv);
void rem__open_server(lua_State *L, rem_state *st);

/* ---- dns.c ------------------------------------------------------------------------- */
/* Starts resolving `host` (and `service`, or NULL) for stream sockets: pushes a request
 * userdata and arms a cancellable wait of `t`. Returns 0, or a UV_E* code (nothing pushed,
 * no wait armed). */
int rem__dns_start(lua_State *L, rem_ltask *t, const char *host, const char *service);
/* In the continuation: the outcome of the request at idx (a negative code, or 0 and the
 * list, owned by the request userdata until rem__dns_done). A request whose wait was
 * interrupted is abandoned: a later callback frees it. */
int rem__dns_result(lua_State *L, int idx, struct addrinfo **res);
void rem__dns_abandon(lua_State *L, int idx);
void rem__dns_done(lua_State *L, int idx);
/* "host:port" or "[v6]:port" for messages. */
void rem__format_addr(const struct sockaddr *sa, char *out, size_t size);
void rem__open_dns(lua_State *L, rem_state *st);

/* ---- io.c -------------------------------------------------------------------------- */
/* The no-op abort of cancellable I/O waits (the continuation undoes the operation). */
void rem__io_abort(rem_task_t *task);
/* After a suspension: the wake status (clears a cancellation so the caller may clean up
 * before raising it with rem__io_raise_cancel). */
int rem__io_woke(lua_State *L, rem_ltask **t);
int rem__io_raise_cancel(lua_State *L);
/* Raises rem.Error{code = uv_err_name(rc)} with message "<fname>: <what>: <strerror>". */
int rem__io_error(lua_State *L, int rc, const char *fname, const char *what);
/* Options: opts at idx must be nil or a table; fields are numbers or nil. */
void rem__check_opts(lua_State *L, int idx, const char *fname);
double rem__opt_number(lua_State *L, int idx, const char *field, double dflt,
                       const char *fname);
int rem__opt_boolean(lua_State *L, int idx, const char *field, int dflt, const char *fname);
/* Warns through Lua's warn: "rem: " followed by the formatted text. */
void rem__io_warn(lua_State *L, const char *fmt, ...);
void rem__open_tcp(lua_State *L, rem_state *st);
void rem__open_unix(lua_State *L, rem_state *st);
void rem__open_process(lua_State *L, rem_state *st);

#endif
