/* The manager state machine (runtime/manager.c) driven by C ops, without Lua. */
#include "manager_fixture.h"

static void test_sync_acquire_release(void **state) {
  fx_t *fx = *state;
  tmgr_t a;
  tm_init(&a, fx, "a", (tstep_t)NOW_OK, (tstep_t)NOW_OK);
  assert_int_equal(a.m.state, REM_MANAGER_IDLE);
  assert_int_equal(rem_manager_acquire(&a.m, tm_cb, &a), 0);
  /* Completed from inside the op: callback already ran. */
  assert_int_equal(a.cb_calls, 1);
  assert_int_equal(a.cb_status, 0);
  assert_int_equal(a.m.state, REM_MANAGER_ACQUIRED);
  assert_int_equal(rem_manager_release(&a.m, 0, 0, tm_cb, &a), 0);
  assert_int_equal(a.cb_calls, 2);
  assert_int_equal(a.cb_status, 0);
  assert_int_equal(a.last_err, 0);
  assert_int_equal(a.on_error, 0);
  assert_int_equal(a.settled, 2);
  assert_string_equal(fx->log, "a+ a-");
  tm_assert_balanced(&a);
  tm_close(&a);
  fx_close(fx);
}

static void test_async_from_timers(void **state) {
  fx_t *fx = *state;
  tmgr_t a;
  tm_init(&a, fx, "a", (tstep_t)LATER_OK(20), (tstep_t)LATER_OK(10));
  uint64_t t0 = uv_now(&fx->loop);
  assert_int_equal(rem_manager_acquire(&a.m, tm_cb, &a), 0);
  assert_int_equal(a.m.state, REM_MANAGER_ACQUIRING);
  assert_int_equal(a.cb_calls, 0);
  /* Busy: neither a second acquire nor a release. */
  assert_int_equal(rem_manager_acquire(&a.m, tm_cb, &a), UV_EBUSY);
  assert_int_equal(rem_manager_release(&a.m, 0, 0, tm_cb, &a), UV_EBUSY);
  fx_run(fx);
  assert_true(fx_elapsed(fx, t0) >= 20);
  assert_int_equal(a.cb_calls, 1);
  assert_int_equal(a.m.state, REM_MANAGER_ACQUIRED);
  assert_int_equal(rem_manager_release(&a.m, 0, 0, tm_cb, &a), 0);
  assert_int_equal(a.m.state, REM_MANAGER_RELEASING);
  assert_int_equal(rem_manager_release(&a.m, 0, 0, tm_cb, &a), UV_EBUSY);
  fx_run(fx);
  assert_int_equal(a.cb_calls, 2);
  assert_int_equal(a.cb_status, 0);
  tm_assert_balanced(&a);
  tm_close(&a);
  fx_close(fx);
}

static void test_failed_acquire_releases_on_error(void **state) {
  fx_t *fx = *state;
  tmgr_t a;
  tm_init(&a, fx, "a", (tstep_t){5, UV_EIO, 42}, (tstep_t)LATER_OK(5));
  assert_int_equal(rem_manager_acquire(&a.m, tm_cb, &a), 0);
  fx_run(fx);
  /* The release on error ran with the acquire's failure before the caller heard of it. */
  assert_string_equal(fx->log, "a+ a-EIO");
  assert_int_equal(a.last_err, UV_EIO);
  assert_int_equal(a.last_err_payload, 42);
  assert_int_equal(a.cb_calls, 1);
  assert_int_equal(a.cb_status, UV_EIO);
  assert_int_equal(a.m.acquire_status, UV_EIO);
  assert_int_equal(a.m.acquire_payload, 42);
  assert_int_equal(a.m.release_status, 0);
  assert_int_equal(a.m.release_payload, 0);
  assert_int_equal(a.settled, 1);
  tm_assert_balanced(&a);
  /* Idle again: it may be acquired anew. */
  a.acq = (tstep_t)NOW_OK;
  assert_int_equal(rem_manager_acquire(&a.m, tm_cb, &a), 0);
  assert_int_equal(a.m.state, REM_MANAGER_ACQUIRED);
  assert_int_equal(rem_manager_release(&a.m, 0, 0, NULL, NULL), 0);
  fx_run(fx);
  tm_assert_balanced(&a);
  tm_close(&a);
  fx_close(fx);
}

static void test_failed_acquire_and_failed_rollback(void **state) {
  fx_t *fx = *state;
  tmgr_t a;
  tm_init(&a, fx, "a", (tstep_t){-1, UV_EIO, 1}, (tstep_t){3, UV_EPIPE, 2});
  assert_int_equal(rem_manager_acquire(&a.m, tm_cb, &a), 0);
  assert_int_equal(a.m.state, REM_MANAGER_RELEASING);
  fx_run(fx);
  assert_int_equal(a.cb_status, UV_EIO);
  assert_int_equal(a.m.acquire_status, UV_EIO);
  assert_int_equal(a.m.acquire_payload, 1);
  assert_int_equal(a.m.release_status, UV_EPIPE);
  assert_int_equal(a.m.release_payload, 2);
  tm_assert_balanced(&a);
  tm_close(&a);
  fx_close(fx);
}

static void test_release_on_error_and_failing_release(void **state) {
  fx_t *fx = *state;
  tmgr_t a;
  tm_init(&a, fx, "a", (tstep_t)NOW_OK, (tstep_t){2, UV_EPIPE, 9});
  assert_int_equal(rem_manager_acquire(&a.m, tm_cb, &a), 0);
  assert_int_equal(rem_manager_release(&a.m, UV_ETIMEDOUT, 77, tm_cb, &a), 0);
  assert_int_equal(a.m.error, UV_ETIMEDOUT);
  assert_int_equal(a.m.error_payload, 77);
  fx_run(fx);
  assert_string_equal(fx->log, "a+ a-ETIMEDOUT");
  assert_int_equal(a.last_err_payload, 77);
  assert_int_equal(a.cb_status, UV_EPIPE);
  assert_int_equal(a.m.release_status, UV_EPIPE);
  assert_int_equal(a.m.release_payload, 9);
  assert_int_equal(a.m.acquire_status, 0);
  assert_int_equal(a.m.error, 0);
  tm_assert_balanced(&a);
  tm_close(&a);
  fx_close(fx);
}

static void test_misuse(void **state) {
  fx_t *fx = *state;
  tmgr_t a;
  tm_init(&a, fx, "a", (tstep_t)NOW_OK, (tstep_t)NOW_OK);
  assert_int_equal(rem_manager_release(&a.m, 0, 0, tm_cb, &a), UV_EINVAL);
  assert_int_equal(rem_manager_done(&a.m, 0, 0), UV_EINVAL);
  assert_int_equal(rem_manager_acquire(&a.m, tm_cb, &a), 0);
  assert_int_equal(rem_manager_acquire(&a.m, tm_cb, &a), UV_EALREADY);
  assert_int_equal(rem_manager_done(&a.m, 0, 0), UV_EINVAL);
  rem_manager_cancel(&a.m);  /* not acquiring: a no-op */
  assert_int_equal(a.cancels, 0);
  assert_int_equal(rem_manager_release(&a.m, 0, 0, tm_cb, &a), 0);
  assert_int_equal(rem_manager_release(&a.m, 0, 0, tm_cb, &a), UV_EINVAL);
  /* Refused calls ran no op and no callback. */
  assert_int_equal(a.cb_calls, 2);
  assert_string_equal(fx->log, "a+ a-");
  tm_assert_balanced(&a);
  tm_close(&a);
  fx_close(fx);
}

static void test_cancel_acquire(void **state) {
  fx_t *fx = *state;
  tmgr_t a;
  tm_init(&a, fx, "a", (tstep_t)LATER_OK(1000), (tstep_t)LATER_OK(1));
  a.cancel_payload = 5;
  uint64_t t0 = uv_now(&fx->loop);
  assert_int_equal(rem_manager_acquire(&a.m, tm_cb, &a), 0);
  rem_manager_cancel(&a.m);
  /* Cancelled like a failure: released on the error path with the cancellation. */
  assert_int_equal(a.m.state, REM_MANAGER_RELEASING);
  assert_int_equal(a.last_err, UV_ECANCELED);
  assert_int_equal(a.last_err_payload, 5);
  fx_run(fx);
  assert_true(fx_elapsed(fx, t0) < 500);
  assert_string_equal(fx->log, "a+ a! a-ECANCELED");
  assert_int_equal(a.cb_status, UV_ECANCELED);
  tm_assert_balanced(&a);
  tm_close(&a);
  fx_close(fx);
}

/* The callback may start the next operation at once: the state is final before it runs. */
static int rounds;
static void reacquire_cb(rem_manager_t *m, int status, void *arg) {
  tmgr_t *a = arg;
  assert_int_equal(status, 0);
  if (m->state == REM_MANAGER_ACQUIRED) {
    assert_int_equal(rem_manager_release(m, 0, 0, reacquire_cb, a), 0);
  } else if (++rounds < 3) {
    assert_int_equal(m->state, REM_MANAGER_IDLE);
    assert_int_equal(rem_manager_acquire(m, reacquire_cb, a), 0);
  }
}

static void test_callback_starts_next_operation(void **state) {
  fx_t *fx = *state;
  tmgr_t a;
  tm_init(&a, fx, "a", (tstep_t)LATER_OK(1), (tstep_t)NOW_OK);
  rounds = 0;
  assert_int_equal(rem_manager_acquire(&a.m, reacquire_cb, &a), 0);
  fx_run(fx);
  assert_int_equal(rounds, 3);
  assert_string_equal(fx->log, "a+ a- a+ a- a+ a-");
  assert_int_equal(a.m.attempts, 3);
  tm_assert_balanced(&a);
  tm_close(&a);
  fx_close(fx);
}

/* Many managers with random timings and outcomes: each attempt ends in one release. */
static uint32_t seed = 2463534242u;
static uint32_t xorshift(void) {
  seed ^= seed << 13;
  seed ^= seed >> 17;
  seed ^= seed << 5;
  return seed;
}

static void test_random_exactly_once(void **state) {
  fx_t *fx = *state;
  enum { N = 64 };
  static tmgr_t ms[N];
  static char names[N][24];
  for (int i = 0; i < N; i++) {
    snprintf(names[i], sizeof names[i], "m%d", i);
    int fail_acq = xorshift() % 3 == 0, fail_rel = xorshift() % 4 == 0;
    tstep_t acq = {(int)(xorshift() % 6) - 1, fail_acq ? UV_EIO : 0, fail_acq ? i + 1 : 0};
    tstep_t rel = {(int)(xorshift() % 6) - 1, fail_rel ? UV_EPIPE : 0, fail_rel ? i + 100 : 0};
    tm_init(&ms[i], fx, names[i], acq, rel);
    assert_int_equal(rem_manager_acquire(&ms[i].m, tm_cb, &ms[i]), 0);
    if (xorshift() % 4 == 0) rem_manager_cancel(&ms[i].m);
  }
  fx_run(fx);
  for (int i = 0; i < N; i++) {
    if (ms[i].m.state == REM_MANAGER_ACQUIRED)
      assert_int_equal(rem_manager_release(&ms[i].m, 0, 0, tm_cb, &ms[i]), 0);
  }
  fx_run(fx);
  for (int i = 0; i < N; i++) {
    tm_assert_balanced(&ms[i]);
    assert_int_equal(ms[i].releases, 1);
    tm_close(&ms[i]);
  }
  fx_log_reset(fx);
  fx_close(fx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    FX_TEST(test_sync_acquire_release),
    FX_TEST(test_async_from_timers),
    FX_TEST(test_failed_acquire_releases_on_error),
    FX_TEST(test_failed_acquire_and_failed_rollback),
    FX_TEST(test_release_on_error_and_failing_release),
    FX_TEST(test_misuse),
    FX_TEST(test_cancel_acquire),
    FX_TEST(test_callback_starts_next_operation),
    FX_TEST(test_random_exactly_once),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
