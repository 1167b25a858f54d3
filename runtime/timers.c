#include "timers.h"

#include <math.h>
#include <stdlib.h>

static int before(const rem_timer_t *a, const rem_timer_t *b) {
  if (a->due != b->due) return a->due < b->due;
  return a->seq < b->seq;
}

static void place(rem_timers_t *timers, size_t i, rem_timer_t *t) {
  timers->heap[i] = t;
  t->index = i;
}

static void sift_up(rem_timers_t *timers, size_t i) {
  rem_timer_t *t = timers->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!before(t, timers->heap[parent])) break;
    place(timers, i, timers->heap[parent]);
    i = parent;
  }
  place(timers, i, t);
}

static void sift_down(rem_timers_t *timers, size_t i) {
  rem_timer_t *t = timers->heap[i];
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= timers->len) break;
    if (child + 1 < timers->len && before(timers->heap[child + 1], timers->heap[child]))
      child++;
    if (!before(timers->heap[child], t)) break;
    place(timers, i, timers->heap[child]);
    i = child;
  }
  place(timers, i, t);
}

/* Re-arms the uv_timer for the earliest entry, or stops it when none is left, so an idle
 * scheduler keeps no active handle on the loop. */
static void rearm(rem_timers_t *timers);

static void on_uv_timer(uv_timer_t *handle) {
  rem_timers_t *timers = handle->data;
  uint64_t now = uv_now(handle->loop);
  /* Fire everything due; callbacks may start or stop other timers. */
  while (timers->len > 0 && timers->heap[0]->due <= now) {
    rem_timer_t *t = timers->heap[0];
    rem_timer_stop(timers, t);
    t->cb(t);
  }
  rearm(timers);
}

static void rearm(rem_timers_t *timers) {
  if (timers->len == 0) {
    uv_timer_stop(&timers->handle);
    return;
  }
  uint64_t now = uv_now(timers->handle.loop);
  uint64_t due = timers->heap[0]->due;
  uv_timer_start(&timers->handle, on_uv_timer, due > now ? due - now : 0, 0);
}

int rem_timers_init(rem_timers_t *timers, uv_loop_t *loop) {
  timers->heap = NULL;
  timers->len = timers->cap = 0;
  timers->seq = 0;
  int rc = uv_timer_init(loop, &timers->handle);
  timers->handle.data = timers;
  return rc;
}

void rem_timers_deinit(rem_timers_t *timers) {
  for (size_t i = 0; i < timers->len; i++) timers->heap[i]->index = REM_TIMER_IDLE;
  free(timers->heap);
  timers->heap = NULL;
  timers->len = timers->cap = 0;
}

int rem_timer_start(rem_timers_t *timers, rem_timer_t *timer, uint64_t timeout_ms,
                    rem_timer_cb cb) {
  if (timers->len == timers->cap) {
    size_t cap = timers->cap ? timers->cap * 2 : 64;
    rem_timer_t **heap = realloc(timers->heap, cap * sizeof *heap);
    if (!heap) return UV_ENOMEM;
    timers->heap = heap;
    timers->cap = cap;
  }
  uint64_t now = uv_now(timers->handle.loop);
  timer->due = timeout_ms > UINT64_MAX - now ? UINT64_MAX : now + timeout_ms;
  timer->seq = timers->seq++;
  timer->cb = cb;
  timers->heap[timers->len] = timer;
  timer->index = timers->len++;
  sift_up(timers, timer->index);
  if (timers->heap[0] == timer) rearm(timers);
  return 0;
}

void rem_timer_stop(rem_timers_t *timers, rem_timer_t *timer) {
  size_t i = timer->index;
  if (i == REM_TIMER_IDLE) return;
  timer->index = REM_TIMER_IDLE;
  rem_timer_t *last = timers->heap[--timers->len];
  if (timers->len == 0) uv_timer_stop(&timers->handle);  /* nothing left: no active handle */
  if (i == timers->len) return;
  place(timers, i, last);
  sift_up(timers, i);
  sift_down(timers, last->index);
  /* The uv_timer may now fire early for a stopped entry; on_uv_timer then just re-arms. */
}

uint64_t rem_timer_ms(double seconds) {
  if (!(seconds > 0)) return 0;
  double ms = ceil(seconds * 1000.0);
  if (ms >= 18446744073709549568.0) return UINT64_MAX;
  return (uint64_t)ms;
}
