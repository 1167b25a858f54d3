/* The deadline heap (runtime/timers.c): many rem_timer_t behind one uv_timer_t. */
#include <math.h>

#include "helpers.h"

#define NT 300

typedef struct entry {
  rem_timer_t timer;
  fx_t *fx;
  int id;
  uint64_t timeout;
  uint64_t started_at;
  int fired;
  struct ctx *ctx;
} entry_t;

typedef struct ctx {
  entry_t e[NT];
  int order[NT];
  int n;
  int restart_left;  /* for the self-restarting timer */
} ctx_t;

/* Deterministic pseudo-random numbers (no dependence on rand()'s implementation). */
static uint32_t rng_state = 12345u;
static uint32_t rng(void) {
  rng_state = rng_state * 1103515245u + 12345u;
  return (rng_state >> 16) & 0x7fffu;
}

static void on_fire(rem_timer_t *timer) {
  entry_t *e = REM_CONTAINER_OF(timer, entry_t, timer);
  /* Never early, never twice, and idle inside its own callback. */
  assert_true(uv_now(&e->fx->loop) >= e->started_at + e->timeout);
  assert_false(rem_timer_active(timer));
  e->fired++;
  e->ctx->order[e->ctx->n++] = e->id;
}

static void ctx_init(ctx_t *c, fx_t *fx) {
  memset(c, 0, sizeof *c);
  for (int i = 0; i < NT; i++) {
    c->e[i].fx = fx;
    c->e[i].id = i;
    c->e[i].ctx = c;
    rem_timer_init(&c->e[i].timer);
  }
}

static void start(fx_t *fx, entry_t *e, uint64_t timeout, rem_timer_cb cb) {
  e->timeout = timeout;
  e->started_at = uv_now(&fx->loop);
  assert_int_equal(rem_timer_start(&fx->sched.timers, &e->timer, timeout, cb), 0);
  assert_true(rem_timer_active(&e->timer));
}

/* The heap property and the back-pointers hold. */
static void check_heap(const rem_timers_t *timers) {
  for (size_t i = 0; i < timers->len; i++) {
    const rem_timer_t *t = timers->heap[i];
    assert_int_equal(t->index, i);
    if (i == 0) continue;
    const rem_timer_t *p = timers->heap[(i - 1) / 2];
    assert_true(p->due < t->due || (p->due == t->due && p->seq < t->seq));
  }
}

/* Sorts ids by (timeout, id): all were started at the same loop time, in id order. */
static const ctx_t *sort_ctx;
static int by_due_then_start(const void *a, const void *b) {
  const entry_t *x = &sort_ctx->e[*(const int *)a], *y = &sort_ctx->e[*(const int *)b];
  if (x->timeout != y->timeout) return x->timeout < y->timeout ? -1 : 1;
  return x->id < y->id ? -1 : x->id > y->id;
}

static void check_order(const ctx_t *c, const int *ids, int n) {
  int *want = malloc((size_t)n * sizeof *want);
  assert_non_null(want);
  memcpy(want, ids, (size_t)n * sizeof *want);
  sort_ctx = c;
  qsort(want, (size_t)n, sizeof *want, by_due_then_start);
  assert_int_equal(c->n, n);
  for (int i = 0; i < n; i++) assert_int_equal(c->order[i], want[i]);
  free(want);
}

static void test_many_fire_in_due_then_start_order(void **state) {
  fx_t *fx = *state;
  static ctx_t c;
  ctx_init(&c, fx);
  int ids[NT];
  for (int i = 0; i < NT; i++) {
    start(fx, &c.e[i], rng() % 25, on_fire); /* many ties on purpose */
    ids[i] = i;
    if (i % 17 == 0) check_heap(&fx->sched.timers);
  }
  check_heap(&fx->sched.timers);
  assert_int_equal(fx->sched.timers.len, NT);
  assert_true(fx_timer_active(fx));
  fx_run(fx);
  check_order(&c, ids, NT);
  for (int i = 0; i < NT; i++) assert_int_equal(c.e[i].fired, 1);
  assert_int_equal(fx->sched.timers.len, 0);
  assert_false(fx_timer_active(fx));
  fx_close(fx);
}

static void test_stopped_timers_never_fire(void **state) {
  fx_t *fx = *state;
  static ctx_t c;
  ctx_init(&c, fx);
  rem_timers_t *timers = &fx->sched.timers;
  for (int i = 0; i < 100; i++) start(fx, &c.e[i], 1 + rng() % 20, on_fire);

  int stopped[100] = {0};
  /* The root (the earliest), the last slot of the array, then every third one. */
  entry_t *root = REM_CONTAINER_OF(timers->heap[0], entry_t, timer);
  rem_timer_stop(timers, &root->timer);
  stopped[root->id] = 1;
  check_heap(timers);
  entry_t *last = REM_CONTAINER_OF(timers->heap[timers->len - 1], entry_t, timer);
  rem_timer_stop(timers, &last->timer);
  stopped[last->id] = 1;
  check_heap(timers);
  for (int i = 0; i < 100; i += 3) {
    rem_timer_stop(timers, &c.e[i].timer);
    stopped[i] = 1;
    check_heap(timers);
  }
  /* Stopping an idle timer is a no-op. */
  size_t len = timers->len;
  rem_timer_stop(timers, &root->timer);
  rem_timer_stop(timers, &c.e[0].timer);
  assert_int_equal(timers->len, len);

  int ids[100], n = 0;
  for (int i = 0; i < 100; i++) {
    assert_int_equal(rem_timer_active(&c.e[i].timer), !stopped[i]);
    if (!stopped[i]) ids[n++] = i;
  }
  assert_int_equal((size_t)n, timers->len);
  fx_run(fx);
  check_order(&c, ids, n);
  for (int i = 0; i < 100; i++) assert_int_equal(c.e[i].fired, !stopped[i]);
  fx_close(fx);
}

/* A callback that stops a timer due in the same pass, and restarts itself twice. */
static void on_fire_stop_peer(rem_timer_t *timer) {
  entry_t *e = REM_CONTAINER_OF(timer, entry_t, timer);
  on_fire(timer);
  rem_timer_stop(&e->fx->sched.timers, &e->ctx->e[e->id + 1].timer);
}
static void on_fire_restart(rem_timer_t *timer) {
  entry_t *e = REM_CONTAINER_OF(timer, entry_t, timer);
  on_fire(timer);
  if (e->ctx->restart_left-- > 0) start(e->fx, e, 2, on_fire_restart);
}

static void test_restart_after_stop(void **state) {
  fx_t *fx = *state;
  static ctx_t c;
  ctx_init(&c, fx);
  rem_timers_t *timers = &fx->sched.timers;
  start(fx, &c.e[0], 5, on_fire);
  start(fx, &c.e[1], 10, on_fire);
  start(fx, &c.e[2], 1, on_fire);
  rem_timer_stop(timers, &c.e[0].timer);
  rem_timer_stop(timers, &c.e[2].timer);
  start(fx, &c.e[0], 20, on_fire); /* later now */
  start(fx, &c.e[2], 0, on_fire);  /* earlier now */
  /* e3 fires first and stops e4, due at the same time but started after it. */
  start(fx, &c.e[3], 0, on_fire_stop_peer);
  start(fx, &c.e[4], 0, on_fire);
  c.restart_left = 2;
  start(fx, &c.e[5], 15, on_fire_restart);
  check_heap(timers);
  fx_run(fx);
  /* e2 was restarted before e3 started: (0, seq) order. */
  assert_true(c.n >= 4);
  assert_int_equal(c.order[0], 2);
  assert_int_equal(c.order[1], 3);
  assert_int_equal(c.order[2], 1);
  assert_int_equal(c.order[3], 5);
  /* e5 fires three times in all (15, +2, +2 ms) and e0 (20 ms) once, in some interleaving
   * that depends only on loop time; count them. */
  assert_int_equal(c.n, 7);
  assert_int_equal(c.e[0].fired, 1);
  assert_int_equal(c.e[1].fired, 1);
  assert_int_equal(c.e[2].fired, 1);
  assert_int_equal(c.e[3].fired, 1);
  assert_int_equal(c.e[4].fired, 0);
  assert_int_equal(c.e[5].fired, 3);
  assert_int_equal(c.restart_left, -1);
  assert_false(fx_timer_active(fx));
  fx_close(fx);
}

static void test_timer_ms_rounding(void **state) {
  (void)state;
  assert_int_equal(rem_timer_ms(0.0015), 2);
  assert_int_equal(rem_timer_ms(0.001), 1);
  assert_int_equal(rem_timer_ms(0.0001), 1);   /* rounded up: a sleep never ends early */
  assert_int_equal(rem_timer_ms(1e-300), 1);
  assert_int_equal(rem_timer_ms(1.1), 1100);
  assert_int_equal(rem_timer_ms(2.5), 2500);
  assert_int_equal(rem_timer_ms(0.0), 0);
  assert_int_equal(rem_timer_ms(-0.0), 0);
  assert_int_equal(rem_timer_ms(-1.0), 0);
  assert_int_equal(rem_timer_ms(-INFINITY), 0);
  assert_int_equal(rem_timer_ms(NAN), 0);
  assert_int_equal(rem_timer_ms(-NAN), 0);
  assert_true(rem_timer_ms(INFINITY) == UINT64_MAX);
  assert_true(rem_timer_ms(1e300) == UINT64_MAX);
  assert_true(rem_timer_ms(2e16) == UINT64_MAX);       /* 2e19 ms > 2^64 - 1 */
  assert_true(rem_timer_ms(1e16) == 10000000000000000000u); /* fits: exact */
}

/* The near timer, when it fires, checks the far one is still armed and stops it. */
static void on_fire_stop_far(rem_timer_t *timer) {
  entry_t *e = REM_CONTAINER_OF(timer, entry_t, timer);
  on_fire(timer);
  entry_t *far = &e->ctx->e[e->id + 1];
  assert_true(rem_timer_active(&far->timer));
  assert_ptr_equal(e->fx->sched.timers.heap[0], &far->timer);
  rem_timer_stop(&e->fx->sched.timers, &far->timer);
}

static void test_huge_timeout_saturates(void **state) {
  fx_t *fx = *state;
  static ctx_t c;
  ctx_init(&c, fx);
  start(fx, &c.e[1], UINT64_MAX, on_fire);
  assert_true(c.e[1].timer.due == UINT64_MAX); /* no wrap-around into the past */
  assert_true(fx_timer_active(fx));
  start(fx, &c.e[0], 1, on_fire_stop_far);
  assert_ptr_equal(fx->sched.timers.heap[0], &c.e[0].timer);
  fx_run(fx); /* e0 fires and stops e1: nothing is left */
  assert_int_equal(c.e[0].fired, 1);
  assert_int_equal(c.e[1].fired, 0);
  assert_false(fx_timer_active(fx));
  fx_close(fx);
}

static void test_handle_inactive_when_heap_empty(void **state) {
  fx_t *fx = *state;
  static ctx_t c;
  ctx_init(&c, fx);
  rem_timers_t *timers = &fx->sched.timers;
  assert_false(fx_timer_active(fx));

  /* Stopping the only timer leaves nothing to keep the loop alive. */
  start(fx, &c.e[0], 60000, on_fire);
  assert_true(fx_timer_active(fx));
  rem_timer_stop(timers, &c.e[0].timer);
  assert_int_equal(timers->len, 0);
  assert_false(fx_timer_active(fx));

  /* The same with several, stopped root first. */
  start(fx, &c.e[0], 60000, on_fire);
  start(fx, &c.e[1], 30000, on_fire);
  start(fx, &c.e[2], 90000, on_fire);
  rem_timer_stop(timers, &c.e[1].timer);
  assert_true(fx_timer_active(fx));
  rem_timer_stop(timers, &c.e[2].timer);
  rem_timer_stop(timers, &c.e[0].timer);
  assert_false(fx_timer_active(fx));

  /* So the loop ends at once instead of waiting for a deadline nobody wants. */
  uint64_t t0 = uv_now(&fx->loop);
  fx_run(fx);
  assert_true(fx_elapsed(fx, t0) < 1000);
  assert_int_equal(c.n, 0);

  /* After the last timer fires, the handle is inactive too. */
  start(fx, &c.e[3], 1, on_fire);
  fx_run(fx);
  assert_int_equal(c.e[3].fired, 1);
  assert_false(fx_timer_active(fx));
  fx_close(fx);
}

static void test_close_drops_started_timers(void **state) {
  fx_t *fx = *state;
  static ctx_t c;
  ctx_init(&c, fx);
  for (int i = 0; i < 5; i++) start(fx, &c.e[i], (uint64_t)i, on_fire);
  fx_close(fx); /* closes with five timers armed: none fires, all become idle */
  assert_int_equal(c.n, 0);
  for (int i = 0; i < 5; i++) assert_false(rem_timer_active(&c.e[i].timer));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      FX_TEST(test_many_fire_in_due_then_start_order),
      FX_TEST(test_stopped_timers_never_fire),
      FX_TEST(test_restart_after_stop),
      cmocka_unit_test(test_timer_ms_rounding),
      FX_TEST(test_huge_timeout_saturates),
      FX_TEST(test_handle_inactive_when_heap_empty),
      FX_TEST(test_close_drops_started_timers),
  };
  return cmocka_run_group_tests_name("timers", tests, NULL, NULL);
}
