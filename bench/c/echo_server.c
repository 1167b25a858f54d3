/* The W3 echo server: libuv, one process shared by every client run of `make bench`.
 *
 *   echo_server BASE COUNT
 *
 * listens on 127.0.0.1:BASE .. BASE+COUNT-1 (one fresh port per client run, so that the
 * TIME_WAIT sockets of one run never collide with the next), prints "READY" once every port
 * is bound, and echoes whatever it reads until SIGTERM/SIGINT, when it closes everything and
 * exits 0. Exits 2 at once when a port cannot be bound (the script picks another base). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct conn {
  uv_tcp_t tcp;
  char buf[4096];
} conn;

typedef struct wreq {
  uv_write_t req;
  char data[];
} wreq;

static uv_loop_t *loop;
static uv_tcp_t *servers;
static int nservers;
static uv_signal_t sigterm, sigint;

static void on_conn_closed(uv_handle_t *h) { free(h->data); }

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  conn *c = h->data;
  *buf = uv_buf_init(c->buf, sizeof c->buf);
}

static void on_written(uv_write_t *req, int status) {
  (void)status;
  free(req);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  if (n > 0) {
    wreq *w = malloc(sizeof *w + (size_t)n);
    if (!w) abort();
    memcpy(w->data, buf->base, (size_t)n);
    uv_buf_t out = uv_buf_init(w->data, (unsigned)n);
    if (uv_write(&w->req, s, &out, 1, on_written)) free(w);
  } else if (n < 0) {
    uv_close((uv_handle_t *)s, on_conn_closed);
  }
}

static void on_connection(uv_stream_t *server, int status) {
  if (status < 0) return;
  conn *c = malloc(sizeof *c);
  if (!c) abort();
  uv_tcp_init(loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) == 0) {
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  } else {
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
  }
}

static void close_any(uv_handle_t *h, void *arg) {
  (void)arg;
  if (uv_is_closing(h)) return;
  uv_close(h, h->type == UV_TCP && h->data ? on_conn_closed : NULL);
}

static void on_signal(uv_signal_t *s, int signum) {
  (void)s;
  (void)signum;
  uv_walk(loop, close_any, NULL);  /* the loop then ends */
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: echo_server BASE COUNT\n");
    return 2;
  }
  int base = atoi(argv[1]), count = atoi(argv[2]);
  if (base < 1024 || count < 1 || base + count > 32768) {
    fprintf(stderr, "echo_server: ports must lie in 1024..32767\n");
    return 2;
  }
  loop = uv_default_loop();
  servers = calloc((size_t)count, sizeof *servers);
  for (int i = 0; i < count; i++) {
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", base + i, &addr);
    uv_tcp_init(loop, &servers[i]);
    servers[i].data = NULL;
    int rc = uv_tcp_bind(&servers[i], (const struct sockaddr *)&addr, 0);
    if (!rc) rc = uv_listen((uv_stream_t *)&servers[i], 4096, on_connection);
    if (rc) {
      fprintf(stderr, "echo_server: port %d: %s\n", base + i, uv_strerror(rc));
      return 2;
    }
    nservers++;
  }
  uv_signal_init(loop, &sigterm);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_signal_init(loop, &sigint);
  uv_signal_start(&sigint, on_signal, SIGINT);
  printf("READY\n");
  fflush(stdout);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  free(servers);
  return 0;
}
