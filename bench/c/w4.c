/* W4 in plain C: 100,000 members entered concurrently, each enter a 10 ms libuv timer; once
 * all have entered, all are exited concurrently (each exit closes its timer handle; done when
 * every close callback has run). Prints the wall time in ms. */
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#define MEMBERS 100000

typedef struct member {
  uv_timer_t timer;
} member;

static uv_loop_t *loop;
static member *members[MEMBERS];
static int pending;

static void on_closed(uv_handle_t *h) {
  free(h->data);
  pending--;
}

static void on_entered(uv_timer_t *t) {
  (void)t;
  if (--pending > 0) return;
  /* Every member entered: exit them all. */
  pending = MEMBERS;
  for (int i = 0; i < MEMBERS; i++) uv_close((uv_handle_t *)&members[i]->timer, on_closed);
}

int main(void) {
  loop = uv_default_loop();
  for (int i = 0; i < MEMBERS; i++) {  /* the members exist before, as in the other programs */
    member *m = malloc(sizeof *m);
    if (!m) abort();
    members[i] = m;
    uv_timer_init(loop, &m->timer);
    m->timer.data = m;
  }
  uv_update_time(loop);
  uint64_t t0 = uv_hrtime();
  pending = MEMBERS;
  for (int i = 0; i < MEMBERS; i++) uv_timer_start(&members[i]->timer, on_entered, 10, 0);
  uv_run(loop, UV_RUN_DEFAULT);
  uint64_t t1 = uv_hrtime();
  if (pending != 0) return 1;
  uv_loop_close(loop);
  printf("RESULT %.3f\n", (double)(t1 - t0) / 1e6);
  return 0;
}
