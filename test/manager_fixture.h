/* Test managers for the C tests of runtime/manager.c and runtime/collection.c.
 *
 * A tmgr_t is a rem_manager_t whose acquire and release each end as scripted: now
 * (delay < 0, from inside the op) or after `delay` ms from its own uv_timer_t, with a
 * status and a payload. Cancelling an acquire in progress stops the timer and ends it with
 * UV_ECANCELED at once. Every op is counted and logged ("a+" acquire, "a-" release,
 * "a-EIO" release on error, "a!" cancel) so tests assert on the order of events.
 * tm_close closes the timer (two-phase: the loop must run before the test ends).
 */
#ifndef REM_TEST_MANAGER_FIXTURE_H
#define REM_TEST_MANAGER_FIXTURE_H

#include "helpers.h"
#include "collection.h"
#include "manager.h"

typedef struct tstep {
  int delay;        /* ms; < 0: complete synchronously */
  int status;
  intptr_t payload;
} tstep_t;

#define NOW_OK {-1, 0, 0}
#define LATER_OK(ms) {(ms), 0, 0}

typedef struct tmgr {
  rem_manager_t m;
  fx_t *fx;
  const char *name;
  tstep_t acq, rel;
  intptr_t cancel_payload;
  uv_timer_t timer;
  const tstep_t *step;   /* what the timer completes */
  int acquires, releases, on_error, cancels, settled;
  int last_err;          /* what the latest release was given */
  intptr_t last_err_payload;
  int cb_calls, cb_status;
} tmgr_t;

static inline void tm_log_step(tmgr_t *t, const char *what, int err) {
  if (err)
    fx_log(t->fx, "%s%s%s", t->name, what, uv_err_name(err));
  else
    fx_log(t->fx, "%s%s", t->name, what);
}

static inline void tm_on_timer(uv_timer_t *timer) {
  tmgr_t *t = timer->data;
  const tstep_t *step = t->step;
  t->step = NULL;
  rem_manager_done(&t->m, step->status, step->payload);
}

static inline void tm_begin(tmgr_t *t, const tstep_t *step) {
  if (step->delay < 0) {
    rem_manager_done(&t->m, step->status, step->payload);
    return;
  }
  t->step = step;
  assert_int_equal(uv_timer_start(&t->timer, tm_on_timer, (uint64_t)step->delay, 0), 0);
}

static inline void tm_acquire(rem_manager_t *m) {
  tmgr_t *t = m->data;
  t->acquires++;
  tm_log_step(t, "+", 0);
  tm_begin(t, &t->acq);
}

static inline void tm_release(rem_manager_t *m, int err, intptr_t payload) {
  tmgr_t *t = m->data;
  t->releases++;
  if (err) t->on_error++;
  t->last_err = err;
  t->last_err_payload = payload;
  tm_log_step(t, "-", err);
  tm_begin(t, &t->rel);
}

static inline void tm_cancel(rem_manager_t *m) {
  tmgr_t *t = m->data;
  t->cancels++;
  tm_log_step(t, "!", 0);
  if (!t->step) return;  /* nothing to stop: it ends as it would have */
  uv_timer_stop(&t->timer);
  t->step = NULL;
  rem_manager_done(&t->m, UV_ECANCELED, t->cancel_payload);
}

static inline void tm_settled(rem_manager_t *m, int status) {
  tmgr_t *t = m->data;
  (void)status;
  t->settled++;
}

static const rem_manager_ops_t tm_ops = {tm_acquire, tm_release, tm_cancel, tm_settled};

static inline void tm_init(tmgr_t *t, fx_t *fx, const char *name, tstep_t acq, tstep_t rel) {
  memset(t, 0, sizeof *t);
  rem_manager_init(&t->m, &tm_ops);
  t->m.data = t;
  t->fx = fx;
  t->name = name;
  t->acq = acq;
  t->rel = rel;
  assert_int_equal(uv_timer_init(&fx->loop, &t->timer), 0);
  t->timer.data = t;
}

static inline void tm_close(tmgr_t *t) {
  uv_close((uv_handle_t *)&t->timer, NULL);
}

/* A completion callback that records into the tmgr_t given as `arg` (or nothing). */
static inline void tm_cb(rem_manager_t *m, int status, void *arg) {
  (void)m;
  tmgr_t *t = arg;
  if (!t) return;
  t->cb_calls++;
  t->cb_status = status;
}

/* The exactly-once invariant of a manager at rest: every attempt ended in one release. */
static inline void tm_assert_balanced(const tmgr_t *t) {
  assert_int_equal(t->m.state, REM_MANAGER_IDLE);
  assert_int_equal(t->acquires, t->releases);
  assert_int_equal(t->m.attempts, t->m.releases);
}

#endif
