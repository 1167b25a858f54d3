/* Task groups (runtime/group.c): failure cancels the rest, close waits, errors collected. */
#include "helpers.h"

#define NKIDS 10000

/* A child: sleeps `ms` unless 0, then finishes with `status`. As an embedder does, it checks
 * for cancellation at its suspension point (before sleeping), and a cancelled sleep makes it
 * finish with UV_ECANCELED; a child that never suspends finishes with its own status. */
static void run_child(rem_task_t *task) {
  ttask_t *t = tt_enter(task);
  int status = t->status;
  if (t->step++ == 0 && t->ms > 0) {
    if (!rem_task_cancelled(task)) {
      assert_int_equal(rem_task_sleep(task, t->ms), 0);
      return;
    }
    status = UV_ECANCELED;
  } else if (task->wake_status == UV_ECANCELED) {
    status = UV_ECANCELED;
  }
  fx_log(t->fx, "%s:%s", t->name, st_name(status));
  rem_task_finish(task, status, t->payload);
}

typedef struct gctx {
  rem_group_t g;
  ttask_t *kids;
  int n;
  uint64_t body_ms;   /* the owner's body sleeps this long after spawning (0: no body wait) */
  int body_status;    /* reported with rem_group_body_failed after spawning, if not 0 */
  intptr_t body_payload;
  int close_waited;   /* what rem_group_close_wait returned */
  int released;
  intptr_t released_sum;
} gctx_t;

static void release_payload(intptr_t payload, void *ud) {
  gctx_t *c = ud;
  c->released++;
  c->released_sum += payload;
}

static void log_errors(fx_t *fx, const rem_errlist_t *errors) {
  fx_log(fx, "errors=[");
  for (size_t i = 0; i < errors->len; i++)
    fx_log(fx, "%s/%ld", uv_err_name(errors->items[i].code), (long)errors->items[i].payload);
  fx_log(fx, "]");
}

/* The owner: opens the group, spawns the kids, runs its body (a sleep, a failure), closes
 * the group (waiting for the kids), logs the errors, clears them and finishes. */
static void run_owner(rem_task_t *task) {
  ttask_t *t = tt_enter(task);
  gctx_t *c = t->peer;
  switch (t->step++) {
    case 0:
      rem_group_init(&c->g, task);
      for (int i = 0; i < c->n; i++)
        assert_int_equal(rem_group_spawn(&c->g, &c->kids[i].task), 0);
      assert_int_equal(c->g.children, (size_t)c->n);
      if (c->body_status) {
        rem_group_body_failed(&c->g, c->body_status, c->body_payload);
        assert_true(rem_task_cancelled(task));
      }
      if (c->body_ms) {
        assert_int_equal(rem_task_sleep(task, c->body_ms), 0);
        return;
      }
      /* fallthrough */
    case 1:
      if (t->step == 2) fx_log(t->fx, "o-body:%s", st_name(task->wake_status));
      t->step = 2;
      c->close_waited = rem_group_close_wait(&c->g);
      if (c->close_waited) {
        assert_int_equal(task->state, REM_TASK_WAITING);
        assert_null(task->abort); /* not cancellable */
        return;
      }
      /* fallthrough */
    default:
      assert_int_equal(c->g.children, 0);
      assert_int_equal(task->wake_status, 0);
      fx_log(t->fx, "o-closed:");
      log_errors(t->fx, &c->g.errors);
      assert_int_equal(rem_group_close_end(&c->g), 0);
      assert_ptr_equal(task->scope, &task->root);
      assert_true(c->g.closed);
      rem_errlist_clear(&c->g.errors, release_payload, c);
      rem_task_finish(task, 0, 0);
  }
}

static void kid_init(fx_t *fx, ttask_t *k, const char *name, uint64_t ms, int status,
                     intptr_t payload) {
  tt_init(k, fx, NULL, name, run_child);
  k->ms = ms;
  k->status = status;
  k->payload = payload;
}

static void owner_start(fx_t *fx, ttask_t *o, gctx_t *c) {
  tt_init(o, fx, NULL, "o", run_owner);
  o->peer = c;
  rem_task_start(&o->task);
}

static void test_failing_child_cancels_siblings_and_body(void **state) {
  fx_t *fx = *state;
  ttask_t kids[3], o;
  kid_init(fx, &kids[0], "c0", 60000, 0, 0);
  kid_init(fx, &kids[1], "c1", 60000, 0, 0);
  kid_init(fx, &kids[2], "f", 2, UV_EIO, 77);
  gctx_t c = {.kids = kids, .n = 3, .body_ms = 60000};
  owner_start(fx, &o, &c);
  uint64_t t0 = uv_now(&fx->loop);
  fx_run(fx);
  assert_string_equal(fx->log,
                      "f:EIO o-body:ECANCELED c0:ECANCELED c1:ECANCELED "
                      "o-closed: errors=[ EIO/77 ]");
  assert_true(fx_elapsed(fx, t0) < 5000);
  assert_int_equal(c.close_waited, 1);
  assert_int_equal(c.released, 1);
  assert_int_equal(c.released_sum, 77);
  assert_int_equal(kids[0].task.status, UV_ECANCELED);
  assert_int_equal(kids[2].task.status, UV_EIO);
  fx_close(fx);
}

static void test_close_waits_for_last_child(void **state) {
  fx_t *fx = *state;
  ttask_t kids[3], o;
  kid_init(fx, &kids[0], "k3", 3, 0, 0);
  kid_init(fx, &kids[1], "k1", 1, 0, 0);
  kid_init(fx, &kids[2], "k2", 2, 0, 0);
  gctx_t c = {.kids = kids, .n = 3};
  owner_start(fx, &o, &c);
  fx_run(fx);
  /* Leaving the body does not cancel the children: they all end normally. */
  assert_string_equal(fx->log, "k1:ok k2:ok k3:ok o-closed: errors=[ ]");
  assert_int_equal(c.close_waited, 1);
  assert_int_equal(c.released, 0);
  fx_close(fx);
}

static void test_close_with_no_children_does_not_wait(void **state) {
  fx_t *fx = *state;
  ttask_t o;
  gctx_t c = {.n = 0};
  owner_start(fx, &o, &c);
  fx_run(fx);
  assert_string_equal(fx->log, "o-closed: errors=[ ]");
  assert_int_equal(c.close_waited, 0);
  assert_int_equal(o.wakes, 0);
  fx_close(fx);
}

/* Children that fail in turn: every failure is recorded, in order, with its payload;
 * cancellations and successes are not. */
static void test_errors_recorded_in_order(void **state) {
  fx_t *fx = *state;
  ttask_t kids[6], o;
  kid_init(fx, &kids[0], "a", 0, UV_EIO, 101);
  kid_init(fx, &kids[1], "b", 0, 0, 102);
  kid_init(fx, &kids[2], "c", 0, UV_EPIPE, 103);
  kid_init(fx, &kids[3], "d", 0, UV_ECANCELED, 104);
  kid_init(fx, &kids[4], "e", 0, UV_ENOENT, 105);
  kid_init(fx, &kids[5], "s", 60000, 0, 106); /* cancelled by a's failure */
  gctx_t c = {.kids = kids, .n = 6};
  owner_start(fx, &o, &c);
  fx_run(fx);
  assert_string_equal(fx->log,
                      "a:EIO b:ok c:EPIPE d:ECANCELED e:ENOENT s:ECANCELED "
                      "o-closed: errors=[ EIO/101 EPIPE/103 ENOENT/105 ]");
  assert_int_equal(c.released, 3);
  assert_int_equal(c.released_sum, 101 + 103 + 105);
  assert_null(c.g.errors.items);
  assert_int_equal(c.g.errors.len, 0);
  fx_close(fx);
}

static void test_body_failed_records_and_cancels(void **state) {
  fx_t *fx = *state;
  ttask_t kids[2], o;
  kid_init(fx, &kids[0], "c0", 60000, 0, 0);
  kid_init(fx, &kids[1], "c1", 60000, 0, 0);
  gctx_t c = {.kids = kids, .n = 2, .body_status = UV_EBUSY, .body_payload = 9};
  owner_start(fx, &o, &c);
  rem_sched_run_ready(&fx->sched); /* the owner spawns, fails its body and starts closing */
  assert_int_equal(c.g.errors.len, 1);
  /* A body ending normally or by cancellation records nothing. */
  rem_group_body_failed(&c.g, 0, 1);
  rem_group_body_failed(&c.g, UV_ECANCELED, 2);
  assert_int_equal(c.g.errors.len, 1);
  fx_run(fx);
  /* The children were cancelled before they even ran: they never sleep. */
  assert_string_equal(fx->log, "c0:ECANCELED c1:ECANCELED o-closed: errors=[ EBUSY/9 ]");
  assert_int_equal(kids[0].wakes, 0);
  assert_false(rem_timer_active(&kids[0].task.timer));
  fx_close(fx);
}

/* A failure arriving while the owner is closing: the close wait is not interrupted. */
static void test_failure_while_closing(void **state) {
  fx_t *fx = *state;
  ttask_t kids[3], o;
  kid_init(fx, &kids[0], "c0", 60000, 0, 0);
  kid_init(fx, &kids[1], "f1", 1, UV_EIO, 1);
  kid_init(fx, &kids[2], "c2", 60000, UV_EPIPE, 2); /* cancelled before it would fail */
  gctx_t c = {.kids = kids, .n = 3};
  owner_start(fx, &o, &c);
  fx_run(fx);
  assert_string_equal(fx->log, "f1:EIO c0:ECANCELED c2:ECANCELED o-closed: errors=[ EIO/1 ]");
  assert_int_equal(o.wakes, 1); /* once: when the last child ended */
  fx_close(fx);
}

/* Cancelling the owner reaches the children through the group; the owner's close still
 * waits for them. */
static void run_owner_canceller(rem_task_t *task) {
  ttask_t *t = tt_enter(task);
  ttask_t *owner = t->peer;
  fx_log(t->fx, "cancel-owner");
  rem_task_cancel(&owner->task);
  assert_int_equal(owner->task.state, REM_TASK_WAITING);
  rem_task_finish(task, 0, 0);
}

static void test_owner_cancel_reaches_children(void **state) {
  fx_t *fx = *state;
  ttask_t kids[2], o, k;
  kid_init(fx, &kids[0], "c0", 60000, 0, 0);
  kid_init(fx, &kids[1], "c1", 60000, 0, 0);
  gctx_t c = {.kids = kids, .n = 2};
  owner_start(fx, &o, &c);
  rem_sched_run_ready(&fx->sched);
  rem_sched_run_ready(&fx->sched);
  tt_init(&k, fx, NULL, "k", run_owner_canceller);
  k.peer = &o;
  rem_task_start(&k.task);
  fx_run(fx);
  assert_string_equal(fx->log, "cancel-owner c0:ECANCELED c1:ECANCELED o-closed: errors=[ ]");
  fx_close(fx);
}

static void run_spawn_after_close(rem_task_t *task) {
  ttask_t *t = tt_enter(task);
  gctx_t *c = t->peer;
  rem_group_init(&c->g, task);
  assert_int_equal(rem_group_close_wait(&c->g), 0);
  assert_int_equal(rem_group_close_end(&c->g), 0);
  assert_int_equal(rem_group_close_end(&c->g), 0); /* idempotent */
  size_t live = t->fx->sched.live;
  assert_int_equal(rem_group_spawn(&c->g, &c->kids[0].task), UV_EINVAL);
  assert_int_equal(c->kids[0].task.state, REM_TASK_NEW); /* not started */
  assert_null(c->kids[0].task.group);
  assert_int_equal(t->fx->sched.live, live);
  assert_int_equal(c->g.children, 0);
  fx_log(t->fx, "refused");
  rem_task_finish(task, 0, 0);
}

static void test_spawn_after_close_is_refused(void **state) {
  fx_t *fx = *state;
  ttask_t kid, o;
  kid_init(fx, &kid, "kid", 0, 0, 0);
  gctx_t c = {.kids = &kid, .n = 1};
  tt_init(&o, fx, NULL, "o", run_spawn_after_close);
  o.peer = &c;
  rem_task_start(&o.task);
  fx_run(fx);
  assert_string_equal(fx->log, "refused");
  fx_close(fx);
}

/* Closing out of order: a scope opened inside the group is still open. The close reports
 * it and pops both, so the owner never points into the group's memory. */
static void run_close_out_of_order(rem_task_t *task) {
  ttask_t *t = tt_enter(task);
  gctx_t *c = t->peer;
  rem_scope_t inner;
  rem_group_init(&c->g, task);
  rem_scope_init(&inner, task->sched, task->scope);
  rem_task_push_scope(task, &inner);
  assert_int_equal(rem_group_close_wait(&c->g), 0);
  assert_int_equal(rem_group_close_end(&c->g), UV_EINVAL);
  assert_ptr_equal(task->scope, &task->root); /* both popped */
  assert_int_equal(rem_group_close_end(&c->g), 0); /* closing again is a no-op */
  assert_int_equal(rem_group_spawn(&c->g, &c->kids[0].task), UV_EINVAL);
  rem_scope_deinit(&inner);
  fx_log(t->fx, "einval");
  rem_task_finish(task, 0, 0);
  assert_ptr_equal(task->scope, &task->root);
}

static void test_close_end_out_of_order(void **state) {
  fx_t *fx = *state;
  ttask_t kid, o;
  kid_init(fx, &kid, "kid", 0, 0, 0);
  gctx_t c = {.kids = &kid, .n = 1};
  tt_init(&o, fx, NULL, "o", run_close_out_of_order);
  o.peer = &c;
  rem_task_start(&o.task);
  fx_run(fx);
  assert_string_equal(fx->log, "einval");
  rem_scope_deinit(&c.g.scope);
  fx_close(fx);
}

/* Many children, sleeping, checkpointing or finishing at once. */
static int kids_done;
static void run_many_child(rem_task_t *task) {
  ttask_t *t = tt_enter(task);
  if (t->step++ == 0) {
    switch (t->ms % 3) {
      case 0: assert_int_equal(rem_task_sleep(task, t->ms % 7), 0); return;
      case 1: rem_task_reschedule(task); return;
      default: break;
    }
  }
  assert_int_equal(task->wake_status, 0);
  kids_done++;
  rem_task_finish(task, 0, 0);
}

static void test_ten_thousand_children(void **state) {
  fx_t *fx = *state;
  ttask_t *kids = calloc(NKIDS, sizeof *kids);
  assert_non_null(kids);
  for (int i = 0; i < NKIDS; i++) {
    tt_init(&kids[i], fx, NULL, "k", run_many_child);
    kids[i].ms = (uint64_t)i;
  }
  ttask_t o;
  gctx_t c = {.kids = kids, .n = NKIDS};
  kids_done = 0;
  owner_start(fx, &o, &c);
  rem_sched_run_ready(&fx->sched);
  assert_int_equal(fx->sched.live, NKIDS + 1);
  fx_run(fx);
  assert_string_equal(fx->log, "o-closed: errors=[ ]");
  assert_int_equal(kids_done, NKIDS);
  assert_int_equal(c.g.children, 0);
  assert_int_equal(fx->sched.live, 0);
  assert_int_equal(fx->sched.timers.len, 0);
  for (int i = 0; i < NKIDS; i++) {
    assert_int_equal(kids[i].task.state, REM_TASK_DONE);
    assert_null(kids[i].task.group);
  }
  free(kids);
  fx_close(fx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      FX_TEST(test_failing_child_cancels_siblings_and_body),
      FX_TEST(test_close_waits_for_last_child),
      FX_TEST(test_close_with_no_children_does_not_wait),
      FX_TEST(test_errors_recorded_in_order),
      FX_TEST(test_body_failed_records_and_cancels),
      FX_TEST(test_failure_while_closing),
      FX_TEST(test_owner_cancel_reaches_children),
      FX_TEST(test_spawn_after_close_is_refused),
      FX_TEST(test_close_end_out_of_order),
      FX_TEST(test_ten_thousand_children),
  };
  return cmocka_run_group_tests_name("group", tests, NULL, NULL);
}
