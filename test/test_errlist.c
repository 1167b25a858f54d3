/* Error lists (runtime/errlist.c): ordered entries, one release per entry. */
#include "helpers.h"

typedef struct released {
  intptr_t seen[256];
  int n;
} released_t;

static void release(intptr_t payload, void *ud) {
  released_t *r = ud;
  assert_true(r->n < 256);
  r->seen[r->n++] = payload;
}

static void test_push_keeps_order(void **state) {
  (void)state;
  rem_errlist_t list;
  rem_errlist_init(&list);
  assert_null(list.items);
  assert_int_equal(list.len, 0);
  for (int i = 0; i < 100; i++) /* past several growths */
    assert_int_equal(rem_errlist_push(&list, i % 2 ? UV_EIO : UV_EPIPE, 1000 + i), 0);
  assert_int_equal(list.len, 100);
  assert_true(list.cap >= 100);
  for (int i = 0; i < 100; i++) {
    assert_int_equal(list.items[i].code, i % 2 ? UV_EIO : UV_EPIPE);
    assert_int_equal(list.items[i].payload, 1000 + i);
  }
  released_t r = {{0}, 0};
  rem_errlist_clear(&list, release, &r);
  assert_int_equal(r.n, 100);
  for (int i = 0; i < 100; i++) assert_int_equal(r.seen[i], 1000 + i);
  assert_null(list.items);
  assert_int_equal(list.len, 0);
  assert_int_equal(list.cap, 0);
}

static void test_clear_releases_once(void **state) {
  (void)state;
  rem_errlist_t list;
  rem_errlist_init(&list);
  released_t r = {{0}, 0};
  rem_errlist_clear(&list, release, &r); /* empty: nothing to release */
  assert_int_equal(r.n, 0);

  assert_int_equal(rem_errlist_push(&list, UV_EIO, 7), 0);
  assert_int_equal(rem_errlist_push(&list, UV_EIO, 7), 0); /* same payload twice: two calls */
  assert_int_equal(rem_errlist_push(&list, UV_ENOENT, -3), 0);
  rem_errlist_clear(&list, release, &r);
  assert_int_equal(r.n, 3);
  assert_int_equal(r.seen[0], 7);
  assert_int_equal(r.seen[1], 7);
  assert_int_equal(r.seen[2], -3);
  rem_errlist_clear(&list, release, &r); /* cleared already: no second release */
  assert_int_equal(r.n, 3);

  /* Usable again after a clear; a NULL release only frees. */
  assert_int_equal(rem_errlist_push(&list, UV_EBUSY, 11), 0);
  assert_int_equal(list.len, 1);
  assert_int_equal(list.items[0].payload, 11);
  rem_errlist_clear(&list, NULL, NULL);
  assert_int_equal(list.len, 0);
  assert_null(list.items);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_push_keeps_order),
      cmocka_unit_test(test_clear_releases_once),
  };
  return cmocka_run_group_tests_name("errlist", tests, NULL, NULL);
}
