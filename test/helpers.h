/* Shared fixture of the runtime's C tests: a uv_loop_t, a rem_sched_t on it and an event log.
 *
 * Each test gets a fresh fixture (fx_setup), drives its tasks with uv_run or
 * rem_sched_run_ready, and ends with fx_close: the scheduler is closed, the loop runs until
 * the close callback fired, and the loop must close with nothing left on it (as libuv's own
 * tests do). fx_teardown only cleans up after a test that failed before fx_close.
 *
 * Tasks are ttask_t: a rem_task_t and the few fields a test's state machine needs. Everything
 * here is static inline so each test file uses what it needs without unused warnings.
 */
#ifndef REM_TEST_HELPERS_H
#define REM_TEST_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "rem.h"

typedef struct fx {
  uv_loop_t loop;
  rem_sched_t sched;
  int close_cbs;     /* times rem_sched_close's callback ran */
  int loop_closed;
  size_t log_len;
  char log[16384];   /* space-separated events, in order */
} fx_t;

#if defined(__GNUC__)
#define FX_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define FX_PRINTF(f, a)
#endif

static inline void fx_log(fx_t *fx, const char *fmt, ...) FX_PRINTF(2, 3);
static inline void fx_log(fx_t *fx, const char *fmt, ...) {
  size_t room = sizeof fx->log - fx->log_len;
  if (fx->log_len > 0 && room > 1) {
    fx->log[fx->log_len++] = ' ';
    fx->log[fx->log_len] = '\0';
    room--;
  }
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(fx->log + fx->log_len, room, fmt, ap);
  va_end(ap);
  assert_true(n >= 0 && (size_t)n < room); /* the log is big enough for every test */
  fx->log_len += (size_t)n;
}

static inline void fx_log_reset(fx_t *fx) {
  fx->log_len = 0;
  fx->log[0] = '\0';
}

static inline int fx_setup(void **state) {
  fx_t *fx = calloc(1, sizeof *fx);
  if (!fx) return -1;
  if (uv_loop_init(&fx->loop) != 0) {
    free(fx);
    return -1;
  }
  if (rem_sched_init(&fx->sched, &fx->loop) != 0) {
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    uv_loop_close(&fx->loop);
    free(fx);
    return -1;
  }
  fx->sched.data = fx;
  *state = fx;
  return 0;
}

static inline void fx_on_sched_closed(rem_sched_t *sched) {
  fx_t *fx = sched->data;
  fx->close_cbs++;
}

/* Runs the loop until nothing is left to do. */
static inline void fx_run(fx_t *fx) {
  assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
}

/* Ends a test: every task finished, the scheduler closes, the loop closes clean. */
static inline void fx_close(fx_t *fx) {
  assert_int_equal(fx->sched.live, 0);
  rem_sched_close(&fx->sched, fx_on_sched_closed);
  assert_int_equal(fx->close_cbs, 0); /* two-phase: never from inside rem_sched_close */
  assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(fx->close_cbs, 1);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  fx->loop_closed = 1;
}

static inline int fx_teardown(void **state) {
  fx_t *fx = *state;
  if (!fx->loop_closed) {
    if (fx->close_cbs == 0 && !uv_is_closing((uv_handle_t *)&fx->sched.idle))
      rem_sched_close(&fx->sched, fx_on_sched_closed);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    (void)uv_loop_close(&fx->loop);
  }
  free(fx);
  return 0;
}

#define FX_TEST(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)

/* Loop time elapsed since `t0` (ms), after refreshing the loop's clock. */
static inline uint64_t fx_elapsed(fx_t *fx, uint64_t t0) {
  uv_update_time(&fx->loop);
  return uv_now(&fx->loop) - t0;
}

/* The sched's uv timer and idle handles. */
static inline int fx_timer_active(fx_t *fx) {
  return uv_is_active((uv_handle_t *)&fx->sched.timers.handle);
}
static inline int fx_idle_active(fx_t *fx) {
  return uv_is_active((uv_handle_t *)&fx->sched.idle);
}

/* A test task: a small state machine in `run`, moved on by `step`. */
typedef struct ttask {
  rem_task_t task;
  fx_t *fx;
  const char *name;
  int step;
  uint64_t ms;        /* a duration the task uses */
  int status;         /* the status it finishes with */
  intptr_t payload;
  void *peer;         /* what it acts on (another task, a queue, a scope, a group) */
  int wakes;          /* runs after the first */
  int last_wake;      /* wake_status seen at the latest run */
} ttask_t;

static inline ttask_t *tt(rem_task_t *task) {
  return REM_CONTAINER_OF(task, ttask_t, task);
}

static inline void tt_init(ttask_t *t, fx_t *fx, rem_scope_t *parent, const char *name,
                           rem_task_run_cb run) {
  memset(t, 0, sizeof *t);
  rem_task_init(&t->task, &fx->sched, parent, run);
  t->fx = fx;
  t->name = name;
  t->task.data = t;
}

/* Called at the top of a run callback: counts the wake and returns the task. */
static inline ttask_t *tt_enter(rem_task_t *task) {
  ttask_t *t = tt(task);
  if (t->step > 0) t->wakes++;
  t->last_wake = task->wake_status;
  return t;
}

/* A short name for a wake status in the logs. */
static inline const char *st_name(int status) {
  return status == 0 ? "ok" : uv_err_name(status);
}

#endif
