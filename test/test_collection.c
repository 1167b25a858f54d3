/* Collections (runtime/collection.c) over C test managers, without Lua: concurrent acquire,
 * cancellation of the pending children and rollback on failure, concurrent release, and
 * how failures are collected and folded. */
#include "errbook.h"
#include "manager_fixture.h"

typedef struct res {
  int calls;
  int status;
} res_t;

static void res_cb(rem_manager_t *m, int status, void *arg) {
  (void)m;
  res_t *r = arg;
  r->calls++;
  r->status = status;
}

/* Payload bookkeeping for the hooks: which payloads were folded, dropped, and the context. */
static errbook_t book;

static intptr_t book_fold(rem_collection_t *c, const rem_errlist_t *errors, intptr_t context) {
  (void)c;
  return errbook_fold(&book, errors, context);
}

static void book_drop(rem_collection_t *c, intptr_t payload) {
  (void)c;
  errbook_drop(&book, payload);
}

static const rem_collection_hooks_t book_hooks = {book_fold, book_drop};

typedef struct kids {
  tmgr_t m[12];
  rem_manager_t *ptr[12];
  char names[12][4];
  size_t n;
} kids_t;

static void kids_init(kids_t *k, fx_t *fx, size_t n, tstep_t acq, tstep_t rel) {
  k->n = n;
  for (size_t i = 0; i < n; i++) {
    snprintf(k->names[i], sizeof k->names[i], "%c", (char)('a' + i));
    tm_init(&k->m[i], fx, k->names[i], acq, rel);
    k->ptr[i] = &k->m[i].m;
  }
}

static void kids_close(kids_t *k) {
  for (size_t i = 0; i < k->n; i++) {
    tm_assert_balanced(&k->m[i]);
    tm_close(&k->m[i]);
  }
}

static int setup(void **state) {
  memset(&book, 0, sizeof book);
  return fx_setup(state);
}

#define TEST(f) cmocka_unit_test_setup_teardown(f, setup, fx_teardown)

static void test_empty_is_a_noop(void **state) {
  fx_t *fx = *state;
  rem_collection_t c;
  rem_collection_init(&c, &book_hooks);
  res_t r = {0, -1};
  assert_int_equal(rem_manager_acquire(&c.manager, res_cb, &r), 0);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, 0);
  assert_int_equal(c.manager.state, REM_MANAGER_ACQUIRED);
  assert_int_equal(rem_manager_release(&c.manager, 0, 0, res_cb, &r), 0);
  assert_int_equal(r.calls, 2);
  assert_int_equal(r.status, 0);
  assert_int_equal(c.manager.state, REM_MANAGER_IDLE);
  assert_int_equal(book.folds, 0);
  rem_collection_deinit(&c);
  fx_close(fx);
}

static void test_concurrent_acquire_and_release(void **state) {
  fx_t *fx = *state;
  kids_t k;
  kids_init(&k, fx, 10, (tstep_t)LATER_OK(50), (tstep_t)LATER_OK(50));
  rem_collection_t c;
  rem_collection_init(&c, &book_hooks);
  assert_int_equal(rem_collection_set(&c, k.ptr, k.n), 0);
  res_t r = {0, -1};
  uv_update_time(&fx->loop);
  uint64_t t0 = uv_now(&fx->loop);
  assert_int_equal(rem_manager_acquire(&c.manager, res_cb, &r), 0);
  /* Every child started before any finished. */
  assert_string_equal(fx->log, "a+ b+ c+ d+ e+ f+ g+ h+ i+ j+");
  assert_int_equal(rem_collection_set(&c, k.ptr, k.n), UV_EBUSY);
  fx_run(fx);
  uint64_t took = fx_elapsed(fx, t0);
  assert_true(took >= 50 && took < 250);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, 0);
  for (size_t i = 0; i < k.n; i++) assert_int_equal(k.m[i].m.state, REM_MANAGER_ACQUIRED);

  fx_log_reset(fx);
  t0 = uv_now(&fx->loop);
  assert_int_equal(rem_manager_release(&c.manager, 0, 0, res_cb, &r), 0);
  assert_string_equal(fx->log, "a- b- c- d- e- f- g- h- i- j-");
  fx_run(fx);
  took = fx_elapsed(fx, t0);
  assert_true(took >= 50 && took < 250);
  assert_int_equal(r.calls, 2);
  assert_int_equal(r.status, 0);
  assert_int_equal(c.manager.state, REM_MANAGER_IDLE);
  assert_int_equal(book.folds, 0);
  kids_close(&k);
  rem_collection_deinit(&c);
  fx_close(fx);
}

/* SEMANTICS 23: a acquires, b fails with E while c is still acquiring. */
static void test_partial_failure_cancels_and_rolls_back(void **state) {
  fx_t *fx = *state;
  kids_t k;
  kids_init(&k, fx, 3, (tstep_t)LATER_OK(10), (tstep_t)LATER_OK(5));
  k.m[1].acq = (tstep_t){30, UV_EIO, 11};
  k.m[2].acq = (tstep_t)LATER_OK(500);
  k.m[2].cancel_payload = 12;
  rem_collection_t c;
  rem_collection_init(&c, &book_hooks);
  rem_collection_set(&c, k.ptr, k.n);
  res_t r = {0, -1};
  uint64_t t0 = uv_now(&fx->loop);
  assert_int_equal(rem_manager_acquire(&c.manager, res_cb, &r), 0);
  fx_run(fx);
  assert_true(fx_elapsed(fx, t0) < 300);
  /* b's failure cancels c (released on error with its cancellation), then a is rolled back
   * with b's failure; b itself was released on error by its own state machine. */
  assert_string_equal(fx->log, "a+ b+ c+ b-EIO c! c-ECANCELED a-EIO");
  assert_int_equal(k.m[0].last_err_payload, 11);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, UV_EIO);
  assert_int_equal(c.manager.state, REM_MANAGER_IDLE);
  assert_int_equal(c.manager.acquire_status, UV_EIO);
  assert_int_equal(c.manager.acquire_payload, 0);
  /* The group holds exactly E; the cancellation was absorbed (dropped). */
  assert_int_equal(book.folds, 1);
  assert_int_equal(book.nfolded, 1);
  assert_int_equal(book.folded[0], 11);
  assert_int_equal(book.codes[0], UV_EIO);
  assert_int_equal(book.context, 0);
  assert_int_equal(book.ndropped, 1);
  assert_int_equal(book.dropped[0], 12);
  assert_int_equal(c.manager.release_status, UV_EIO);
  assert_int_equal(c.manager.release_payload, 1001);
  for (size_t i = 0; i < 3; i++) assert_int_equal(k.m[i].releases, 1);
  kids_close(&k);
  rem_collection_deinit(&c);
  fx_close(fx);
}

static void test_rollback_failures_join_the_group(void **state) {
  fx_t *fx = *state;
  kids_t k;
  kids_init(&k, fx, 4, (tstep_t)LATER_OK(5), (tstep_t)LATER_OK(5));
  k.m[2].acq = (tstep_t){20, UV_EIO, 21};
  k.m[3].rel = (tstep_t){1, UV_EPIPE, 31};    /* rollback failures, in children order */
  k.m[0].rel = (tstep_t){8, UV_EBADF, 30};
  rem_collection_t c;
  rem_collection_init(&c, &book_hooks);
  rem_collection_set(&c, k.ptr, k.n);
  res_t r = {0, -1};
  assert_int_equal(rem_manager_acquire(&c.manager, res_cb, &r), 0);
  fx_run(fx);
  assert_int_equal(r.status, UV_EIO);
  assert_int_equal(book.nfolded, 3);
  assert_int_equal(book.folded[0], 21);  /* the acquire error first, never hidden */
  assert_int_equal(book.folded[1], 30);
  assert_int_equal(book.folded[2], 31);
  assert_int_equal(book.codes[1], UV_EBADF);
  assert_int_equal(c.manager.release_status, UV_EIO);
  for (size_t i = 0; i < 4; i++) assert_int_equal(k.m[i].releases, 1);
  kids_close(&k);
  rem_collection_deinit(&c);
  fx_close(fx);
}

/* SEMANTICS 24: release failures in children order, the others released anyway, and the
 * error in flight is the group's context. */
static void test_release_failures_in_children_order(void **state) {
  fx_t *fx = *state;
  kids_t k;
  kids_init(&k, fx, 4, (tstep_t)NOW_OK, (tstep_t)LATER_OK(2));
  k.m[1].rel = (tstep_t){30, UV_EPIPE, 41};
  k.m[3].rel = (tstep_t){-1, UV_EBADF, 43};   /* fails first */
  rem_collection_t c;
  rem_collection_init(&c, &book_hooks);
  rem_collection_set(&c, k.ptr, k.n);
  res_t r = {0, -1};
  assert_int_equal(rem_manager_acquire(&c.manager, res_cb, &r), 0);
  assert_int_equal(r.status, 0);
  assert_int_equal(rem_manager_release(&c.manager, UV_ETIMEDOUT, 99, res_cb, &r), 0);
  fx_run(fx);
  for (size_t i = 0; i < 4; i++) {
    assert_int_equal(k.m[i].last_err, UV_ETIMEDOUT);
    assert_int_equal(k.m[i].last_err_payload, 99);
  }
  assert_int_equal(r.calls, 2);
  assert_int_equal(r.status, UV_EPIPE);
  assert_int_equal(book.nfolded, 2);
  assert_int_equal(book.folded[0], 41);
  assert_int_equal(book.folded[1], 43);
  assert_int_equal(book.context, 99);
  assert_int_equal(c.manager.release_payload, 1001);
  kids_close(&k);
  rem_collection_deinit(&c);
  fx_close(fx);
}

/* Without hooks the failures stay readable in `failures`. */
static void test_without_hooks(void **state) {
  fx_t *fx = *state;
  kids_t k;
  kids_init(&k, fx, 3, (tstep_t)NOW_OK, (tstep_t)NOW_OK);
  k.m[0].rel = (tstep_t){-1, UV_EPIPE, 7};
  k.m[2].rel = (tstep_t){-1, UV_EIO, 8};
  rem_collection_t c;
  rem_collection_init(&c, NULL);
  rem_collection_set(&c, k.ptr, k.n);
  res_t r = {0, -1};
  assert_int_equal(rem_manager_acquire(&c.manager, res_cb, &r), 0);
  assert_int_equal(rem_manager_release(&c.manager, 0, 0, res_cb, &r), 0);
  assert_int_equal(r.status, UV_EPIPE);
  assert_int_equal(c.manager.release_payload, 0);
  assert_int_equal(c.failures.len, 2);
  assert_int_equal(c.failures.items[0].payload, 7);
  assert_int_equal(c.failures.items[1].code, UV_EIO);
  kids_close(&k);
  rem_collection_deinit(&c);
  assert_int_equal(c.failures.len, 0);
  fx_close(fx);
}

/* Cancelling the collection's acquire: the pending children are cancelled, the acquired
 * ones rolled back, and the collection fails with the cancellation itself, not a group. */
static void test_cancelled_collection(void **state) {
  fx_t *fx = *state;
  kids_t k;
  kids_init(&k, fx, 3, (tstep_t)LATER_OK(200), (tstep_t)LATER_OK(1));
  k.m[0].acq = (tstep_t)NOW_OK;
  k.m[1].cancel_payload = 51;
  k.m[2].cancel_payload = 52;
  rem_collection_t c;
  rem_collection_init(&c, &book_hooks);
  rem_collection_set(&c, k.ptr, k.n);
  res_t r = {0, -1};
  assert_int_equal(rem_manager_acquire(&c.manager, res_cb, &r), 0);
  rem_manager_cancel(&c.manager);
  fx_run(fx);
  assert_string_equal(fx->log, "a+ b+ c+ b! b-ECANCELED c! c-ECANCELED a-ECANCELED");
  assert_int_equal(k.m[0].last_err_payload, 51);
  assert_int_equal(r.status, UV_ECANCELED);
  assert_int_equal(c.manager.release_status, UV_ECANCELED);
  assert_int_equal(c.manager.release_payload, 51);
  assert_int_equal(book.folds, 0);
  assert_int_equal(book.ndropped, 1);
  assert_int_equal(book.dropped[0], 52);
  kids_close(&k);
  rem_collection_deinit(&c);
  fx_close(fx);
}

/* A synchronous failure stops the start loop: later children are never started. */
static void test_sync_failure_stops_starting(void **state) {
  fx_t *fx = *state;
  kids_t k;
  kids_init(&k, fx, 4, (tstep_t)NOW_OK, (tstep_t)NOW_OK);
  k.m[0].acq = (tstep_t)LATER_OK(50);
  k.m[1].acq = (tstep_t){-1, UV_EIO, 61};
  rem_collection_t c;
  rem_collection_init(&c, &book_hooks);
  rem_collection_set(&c, k.ptr, k.n);
  res_t r = {0, -1};
  assert_int_equal(rem_manager_acquire(&c.manager, res_cb, &r), 0);
  fx_run(fx);
  assert_string_equal(fx->log, "a+ b+ b-EIO a! a-ECANCELED");
  assert_int_equal(k.m[2].acquires, 0);
  assert_int_equal(k.m[3].acquires, 0);
  assert_int_equal(r.status, UV_EIO);
  assert_int_equal(book.nfolded, 1);
  assert_int_equal(book.folded[0], 61);
  kids_close(&k);
  rem_collection_deinit(&c);
  fx_close(fx);
}

/* A child whose release on error fails reports that failure; its acquire error is dropped
 * (the embedder's release failure carries it). A child already acquired elsewhere fails the
 * acquisition with UV_EALREADY. */
static void test_child_rollback_failure_and_busy_child(void **state) {
  fx_t *fx = *state;
  kids_t k;
  kids_init(&k, fx, 2, (tstep_t){2, UV_EIO, 71}, (tstep_t){1, UV_EPIPE, 72});
  rem_collection_t c;
  rem_collection_init(&c, &book_hooks);
  rem_manager_t *one[] = {k.ptr[0]};
  rem_collection_set(&c, one, 1);
  res_t r = {0, -1};
  assert_int_equal(rem_manager_acquire(&c.manager, res_cb, &r), 0);
  fx_run(fx);
  assert_int_equal(r.status, UV_EPIPE);
  assert_int_equal(book.nfolded, 1);
  assert_int_equal(book.folded[0], 72);
  assert_int_equal(book.ndropped, 1);
  assert_int_equal(book.dropped[0], 71);

  k.m[1].acq = (tstep_t)NOW_OK;
  k.m[1].rel = (tstep_t)NOW_OK;
  assert_int_equal(rem_manager_acquire(k.ptr[1], NULL, NULL), 0);
  rem_manager_t *busy[] = {k.ptr[1]};
  rem_collection_set(&c, busy, 1);
  memset(&book, 0, sizeof book);
  assert_int_equal(rem_manager_acquire(&c.manager, res_cb, &r), 0);
  assert_int_equal(r.status, UV_EALREADY);
  assert_int_equal(book.nfolded, 1);
  assert_int_equal(book.codes[0], UV_EALREADY);
  assert_int_equal(k.m[1].m.state, REM_MANAGER_ACQUIRED);  /* not ours to release */
  assert_int_equal(rem_manager_release(k.ptr[1], 0, 0, NULL, NULL), 0);
  kids_close(&k);
  rem_collection_deinit(&c);
  fx_close(fx);
}

/* Collections nest: an inner collection is a child like any other. */
static void test_nested(void **state) {
  fx_t *fx = *state;
  kids_t k;
  kids_init(&k, fx, 4, (tstep_t)LATER_OK(10), (tstep_t)LATER_OK(10));
  k.m[3].acq = (tstep_t){20, UV_EIO, 81};
  rem_collection_t inner, outer;
  rem_collection_init(&inner, &book_hooks);
  rem_collection_init(&outer, &book_hooks);
  rem_manager_t *inner_kids[] = {k.ptr[0], k.ptr[1]};
  rem_manager_t *outer_kids[] = {&inner.manager, k.ptr[2], k.ptr[3]};
  rem_collection_set(&inner, inner_kids, 2);
  rem_collection_set(&outer, outer_kids, 3);
  res_t r = {0, -1};
  assert_int_equal(rem_manager_acquire(&outer.manager, res_cb, &r), 0);
  fx_run(fx);
  assert_int_equal(r.status, UV_EIO);
  /* The inner collection was acquired, then rolled back with its children. */
  assert_int_equal(inner.manager.attempts, 1);
  assert_int_equal(inner.manager.releases, 1);
  assert_int_equal(k.m[0].last_err, UV_EIO);
  assert_int_equal(book.folds, 1);
  assert_int_equal(book.folded[0], 81);

  /* And a clean round trip. */
  k.m[3].acq = (tstep_t)LATER_OK(1);
  memset(&book, 0, sizeof book);
  assert_int_equal(rem_manager_acquire(&outer.manager, res_cb, &r), 0);
  fx_run(fx);
  assert_int_equal(r.status, 0);
  assert_int_equal(inner.manager.state, REM_MANAGER_ACQUIRED);
  assert_int_equal(rem_manager_release(&outer.manager, 0, 0, res_cb, &r), 0);
  fx_run(fx);
  assert_int_equal(r.status, 0);
  assert_int_equal(inner.manager.state, REM_MANAGER_IDLE);
  assert_int_equal(book.folds, 0);
  kids_close(&k);
  rem_collection_deinit(&inner);
  rem_collection_deinit(&outer);
  fx_close(fx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    TEST(test_empty_is_a_noop),
    TEST(test_concurrent_acquire_and_release),
    TEST(test_partial_failure_cancels_and_rolls_back),
    TEST(test_rollback_failures_join_the_group),
    TEST(test_release_failures_in_children_order),
    TEST(test_without_hooks),
    TEST(test_cancelled_collection),
    TEST(test_sync_failure_stops_starting),
    TEST(test_child_rollback_failure_and_busy_child),
    TEST(test_nested),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
