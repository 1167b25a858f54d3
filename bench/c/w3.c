/* W3 in plain C: `w3 PORT`. 10 rounds of: connect 1,000 TCP connections to the echo server
 * concurrently; once all are up, write 64 bytes on each and read the 64-byte echo; once all
 * echoes are in, close all concurrently and wait for every close callback. Prints ms per
 * round. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define CONNS 1000
#define ROUNDS 10
#define MSG 64

typedef struct conn {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_write_t write;
  size_t got;
  char buf[MSG];
} conn;

static uv_loop_t *loop;
static struct sockaddr_in addr;
static conn *conns[CONNS];
static int pending, round_no, failed;
static char payload[MSG];

static void start_round(void);

static void fail(const char *what, int rc) {
  fprintf(stderr, "w3: %s: %s\n", what, uv_strerror(rc));
  failed = 1;
  exit(1);
}

static void on_closed(uv_handle_t *h) {
  free(h->data);
  if (--pending == 0 && ++round_no < ROUNDS) start_round();
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  conn *c = h->data;
  *buf = uv_buf_init(c->buf + c->got, (unsigned)(MSG - c->got));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  (void)buf;
  conn *c = s->data;
  if (n < 0) fail("read", (int)n);
  c->got += (size_t)n;
  if (c->got < MSG) return;
  uv_read_stop(s);
  if (memcmp(c->buf, payload, MSG) != 0) fail("echo", UV_EINVAL);
  if (--pending > 0) return;
  /* Every echo is in: exit all concurrently. */
  pending = CONNS;
  for (int i = 0; i < CONNS; i++) uv_close((uv_handle_t *)&conns[i]->tcp, on_closed);
}

static void on_written(uv_write_t *req, int status) {
  (void)req;
  if (status) fail("write", status);
}

static void on_connected(uv_connect_t *req, int status) {
  (void)req;
  if (status) fail("connect", status);
  if (--pending > 0) return;
  /* Every connection is up: the body writes on each and reads each echo. */
  pending = CONNS;
  for (int i = 0; i < CONNS; i++) {
    conn *c = conns[i];
    uv_buf_t b = uv_buf_init(payload, MSG);
    int rc = uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (rc) fail("write", rc);
    rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc) fail("read_start", rc);
  }
}

static void start_round(void) {
  pending = CONNS;
  for (int i = 0; i < CONNS; i++) {
    conn *c = calloc(1, sizeof *c);
    if (!c) abort();
    conns[i] = c;
    uv_tcp_init(loop, &c->tcp);
    c->tcp.data = c;
    uv_tcp_nodelay(&c->tcp, 1);
    int rc = uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&addr,
                            on_connected);
    if (rc) fail("connect", rc);
  }
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: w3 PORT\n");
    return 2;
  }
  for (int i = 0; i < MSG; i++) payload[i] = (char)('a' + i % 26);
  loop = uv_default_loop();
  uv_ip4_addr("127.0.0.1", atoi(argv[1]), &addr);
  uint64_t t0 = uv_hrtime();
  start_round();
  uv_run(loop, UV_RUN_DEFAULT);
  uint64_t t1 = uv_hrtime();
  if (failed || round_no != ROUNDS) return 1;
  uv_loop_close(loop);
  printf("RESULT %.3f\n", (double)(t1 - t0) / 1e6 / ROUNDS);
  return 0;
}
