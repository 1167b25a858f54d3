/* rem's C runtime without Lua: an exit pool of TCP connections and an exit stack.
 *
 * A C program on its own libuv loop connects 8 clients to a listener of its own, all at
 * once, through a rem_pool (each member's enter is a uv_tcp_connect, its exit a uv_close),
 * and keeps its cleanups on a rem_exitstack: the pool's exit above the listener's close,
 * so unwinding closes the connections (concurrently) before the listener. A second round
 * has one member connect to a port nobody listens on: the pool's enter fails, the members
 * that had connected are closed again (rolled back), and the stack still unwinds. Nothing
 * is left on the loop at the end.
 *
 *   build/pool-stack
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "rem.h"

enum { N = 8 };

typedef struct conn {
  rem_pool_member_t member;
  uv_tcp_t tcp;
  uv_connect_t req;
  struct sockaddr_in to;
} conn_t;

static uv_loop_t loop;
static uv_tcp_t listener;
static int accepted_open;
static int connected, closed;  /* members, this round */
static int round_no;

/* ---- the listener: accepts and closes what it accepted when the peer closes ---------- */

static void on_accepted_closed(uv_handle_t *h) {
  free(h);
  accepted_open--;
}

static void on_peer_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  (void)buf;
  if (n < 0) uv_close((uv_handle_t *)s, on_accepted_closed);  /* the client closed */
}

static void alloc_buf(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  static char scratch[64];
  (void)h;
  (void)size;
  *buf = uv_buf_init(scratch, sizeof scratch);
}

static void on_connection(uv_stream_t *server, int status) {
  if (status < 0) return;
  uv_tcp_t *peer = malloc(sizeof *peer);
  uv_tcp_init(&loop, peer);
  if (uv_accept(server, (uv_stream_t *)peer) == 0) {
    accepted_open++;
    uv_read_start((uv_stream_t *)peer, alloc_buf, on_peer_read);
  } else {
    uv_close((uv_handle_t *)peer, on_accepted_closed);
    accepted_open++;
  }
}

/* ---- pool members: enter connects, exit closes ---------------------------------------- */

static void on_connected(uv_connect_t *req, int status) {
  conn_t *c = req->data;
  if (status == 0) {
    connected++;
    rem_pool_entered(&c->member, 0, 0);
    return;
  }
  /* A failed enter cleans up after itself; it is not exited. */
  c->member.data = (void *)(intptr_t)status;
  uv_close((uv_handle_t *)&c->tcp, NULL);
  rem_pool_entered(&c->member, status, 0);
}

static void conn_enter(rem_pool_member_t *m) {
  conn_t *c = (conn_t *)m;
  uv_tcp_init(&loop, &c->tcp);
  c->tcp.data = c;
  c->req.data = c;
  int rc = uv_tcp_connect(&c->req, &c->tcp, (const struct sockaddr *)&c->to, on_connected);
  if (rc) {
    uv_close((uv_handle_t *)&c->tcp, NULL);
    rem_pool_entered(m, rc, 0);
  }
}

static void on_conn_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  closed++;
  rem_pool_exited(&c->member, 0, 0, 0);
}

static void conn_exit(rem_pool_member_t *m, int err, intptr_t payload) {
  (void)err;
  (void)payload;
  uv_close((uv_handle_t *)&((conn_t *)m)->tcp, on_conn_closed);
}

static const rem_pool_member_ops_t conn_ops = {conn_enter, conn_exit, NULL};

/* ---- exits on the stack ---------------------------------------------------------------- */

static void on_listener_closed(uv_handle_t *h) {
  rem_exitstack_exit_done(h->data, 0);
}

static void exit_close_listener(rem_exitstack_t *stack, void *data, const rem_err_t *err) {
  (void)err;
  listener.data = stack;
  uv_close((uv_handle_t *)data, on_listener_closed);
}

static void on_pool_exited(rem_pool_t *p, int status, intptr_t payload, void *arg) {
  (void)payload;
  (void)p;
  printf("round %d: pool exited (status %d): %d connections closed, concurrently\n",
         round_no, status, closed);
  rem_exitstack_exit_done(arg, 0);
}

static void exit_pool(rem_exitstack_t *stack, void *data, const rem_err_t *err) {
  rem_pool_exit(data, err->code, err->payload, on_pool_exited, stack);
}

static void on_unwound(rem_exitstack_t *stack, int suppressed, const rem_err_t *err) {
  (void)stack;
  printf("round %d: stack unwound (error %s, suppressed %d): the listener closed last\n",
         round_no, err->code ? uv_err_name(err->code) : "none", suppressed);
}

/* ---- the two rounds --------------------------------------------------------------------- */

static conn_t conns[N];
static rem_pool_member_t *members[N];
static rem_pool_t pool;
static rem_exitstack_t stack;

static void start_round(void);

static void on_pool_entered(rem_pool_t *p, int status, intptr_t payload, void *arg) {
  (void)payload;
  (void)arg;
  if (status == 0) {
    printf("round %d: %d connections entered at once\n", round_no, N);
    rem_exitstack_push(&stack, exit_pool, p);  /* released before the listener */
  } else {
    printf("round %d: the pool's enter failed with %s; the %d members that had connected "
           "were closed again (%d)\n", round_no, uv_err_name(status), connected, closed);
  }
  rem_exitstack_unwind(&stack, NULL, on_unwound);
}

static void start_round(void) {
  struct sockaddr_in addr;
  int namelen = sizeof addr;
  uv_tcp_init(&loop, &listener);
  uv_ip4_addr("127.0.0.1", 0, &addr);
  uv_tcp_bind(&listener, (const struct sockaddr *)&addr, 0);
  uv_listen((uv_stream_t *)&listener, 64, on_connection);
  uv_tcp_getsockname(&listener, (struct sockaddr *)&addr, &namelen);
  rem_exitstack_push(&stack, exit_close_listener, &listener);
  for (int i = 0; i < N; i++) {
    rem_pool_member_init(&conns[i].member, &conn_ops);
    conns[i].to = addr;
    members[i] = &conns[i].member;
  }
  if (round_no == 2) uv_ip4_addr("127.0.0.1", 1, &conns[N / 2].to);  /* nobody listens */
  rem_pool_set(&pool, members, N);
  rem_pool_enter(&pool, on_pool_entered, NULL);
}

int main(void) {
  uv_loop_init(&loop);
  rem_exitstack_init(&stack);
  rem_pool_init(&pool, NULL);
  for (round_no = 1; round_no <= 2; round_no++) {
    connected = closed = 0;
    start_round();
    uv_run(&loop, UV_RUN_DEFAULT);
    printf("round %d: the server side saw every client go: %d accepted left open\n",
           round_no, accepted_open);
  }
  rem_pool_deinit(&pool);
  rem_exitstack_deinit(&stack);
  int rc = uv_loop_close(&loop);
  printf("loop closed %s\n", rc == 0 ? "clean" : "with handles left");
  return rc == 0 ? 0 : 1;
}
