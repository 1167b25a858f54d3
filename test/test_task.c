/* Tasks (runtime/task.c): sleeping, cancellation of waits, wait queues and joiners. */
#include "helpers.h"

/* Sleeps `ms`, then logs how it woke and finishes with `status`. */
static void run_sleeper(rem_task_t *task) {
  ttask_t *t = tt_enter(task);
  if (t->step++ == 0) {
    t->payload = (intptr_t)uv_now(&t->fx->loop);
    assert_int_equal(rem_task_sleep(task, t->ms), 0);
    assert_int_equal(task->state, REM_TASK_WAITING);
    assert_true(rem_timer_active(&task->timer));
    return;
  }
  fx_log(t->fx, "%s:%s", t->name, st_name(task->wake_status));
  assert_false(rem_timer_active(&task->timer));
  if (task->wake_status == 0) /* never early */
    assert_true(uv_now(&t->fx->loop) >= (uint64_t)t->payload + t->ms);
  rem_task_finish(task, t->status, 0);
}

static void test_sleepers_wake_in_order_of_duration(void **state) {
  fx_t *fx = *state;
  static const char *names[] = {"s30", "s10", "s20", "s0", "s10b", "s1"};
  static const uint64_t ms[] = {30, 10, 20, 0, 10, 1};
  ttask_t t[6];
  for (int i = 0; i < 6; i++) {
    tt_init(&t[i], fx, NULL, names[i], run_sleeper);
    t[i].ms = ms[i];
    rem_task_start(&t[i].task);
  }
  fx_run(fx);
  /* Equal durations wake in the order they started sleeping. */
  assert_string_equal(fx->log, "s0:ok s1:ok s10:ok s10b:ok s20:ok s30:ok");
  assert_int_equal(fx->sched.timers.len, 0);
  fx_close(fx);
}

/* Cancels the task in `peer` and checks at once that its sleep was undone. */
static void run_canceller(rem_task_t *task) {
  ttask_t *t = tt_enter(task);
  rem_task_t *victim = &((ttask_t *)t->peer)->task;
  fx_log(t->fx, "%s-cancels", t->name);
  rem_task_cancel(victim);
  assert_true(victim->root.cancelled);
  assert_true(rem_task_cancelled(victim));
  assert_int_equal(victim->state, REM_TASK_READY); /* woken synchronously, runs later */
  assert_int_equal(victim->wake_status, UV_ECANCELED);
  assert_null(victim->abort);
  assert_false(rem_timer_active(&victim->timer));
  assert_int_equal(t->fx->sched.timers.len, 0);
  assert_false(fx_timer_active(t->fx)); /* nothing keeps the loop waiting for the sleep */
  rem_task_finish(task, 0, 0);
}

static void test_cancel_sleeping_task(void **state) {
  fx_t *fx = *state;
  ttask_t s, k;
  tt_init(&s, fx, NULL, "s", run_sleeper);
  tt_init(&k, fx, NULL, "k", run_canceller);
  s.ms = 60000;
  s.status = UV_ECANCELED;
  k.peer = &s;
  rem_task_start(&s.task);
  rem_task_start(&k.task);
  uint64_t t0 = uv_now(&fx->loop);
  fx_run(fx);
  assert_string_equal(fx->log, "k-cancels s:ECANCELED");
  assert_true(fx_elapsed(fx, t0) < 5000); /* promptly, not after the minute */
  assert_int_equal(s.task.status, UV_ECANCELED);
  assert_int_equal(s.wakes, 1);
  /* Cancelling a finished task is a no-op. */
  rem_task_cancel(&s.task);
  assert_int_equal(s.task.state, REM_TASK_DONE);
  fx_close(fx);
}

/* Logs whether it is cancelled on its first run, then finishes. */
static void run_check_cancelled(rem_task_t *task) {
  ttask_t *t = tt_enter(task);
  fx_log(t->fx, "%s:cancelled=%d", t->name, rem_task_cancelled(task));
  rem_task_finish(task, rem_task_cancelled(task) ? UV_ECANCELED : 0, 0);
}

static void test_cancel_before_first_run(void **state) {
  fx_t *fx = *state;
  ttask_t a, b;
  tt_init(&a, fx, NULL, "a", run_check_cancelled);
  tt_init(&b, fx, NULL, "b", run_check_cancelled);
  rem_task_cancel(&a.task); /* not started yet: only marks it */
  assert_int_equal(a.task.state, REM_TASK_NEW);
  rem_task_start(&a.task);
  rem_task_start(&b.task);
  rem_task_cancel(&a.task); /* idempotent, and a ready task is not woken twice */
  fx_run(fx);
  assert_string_equal(fx->log, "a:cancelled=1 b:cancelled=0");
  assert_int_equal(a.task.status, UV_ECANCELED);
  assert_int_equal(b.task.status, 0);
  fx_close(fx);
}

/* Waits on the queue in `peer` (cancellable unless `status` says otherwise), logs the wake. */
#define UNCANCELLABLE 1
static void run_queue_waiter(rem_task_t *task) {
  ttask_t *t = tt_enter(task);
  if (t->step++ == 0) {
    rem_task_wait_on(task, t->peer, t->status != UNCANCELLABLE);
    assert_int_equal(task->state, REM_TASK_WAITING);
    return;
  }
  fx_log(t->fx, "%s:%s", t->name, st_name(task->wake_status));
  rem_task_finish(task, 0, 0);
}

/* Step 0: sleep 1 ms so every waiter is parked. Step 1: wake the queue with UV_EOF. */
static void run_queue_waker(rem_task_t *task) {
  ttask_t *t = tt_enter(task);
  if (t->step++ == 0) {
    assert_int_equal(rem_task_sleep(task, 1), 0);
    return;
  }
  rem_waitq_t *q = t->peer;
  fx_log(t->fx, "wake-all");
  rem_waitq_wake_all(q, UV_EOF);
  assert_true(rem_list_empty(&q->waiters));
  rem_waitq_wake_all(q, UV_EIO); /* empty: nothing happens */
  rem_task_finish(task, 0, 0);
}

static void test_waitq_wakes_all_with_status(void **state) {
  fx_t *fx = *state;
  rem_waitq_t q;
  rem_waitq_init(&q);
  static const char *names[] = {"w0", "w1", "w2"};
  ttask_t w[3], k;
  for (int i = 0; i < 3; i++) {
    tt_init(&w[i], fx, NULL, names[i], run_queue_waiter);
    w[i].peer = &q;
    rem_task_start(&w[i].task);
  }
  tt_init(&k, fx, NULL, "k", run_queue_waker);
  k.peer = &q;
  rem_task_start(&k.task);
  fx_run(fx);
  assert_string_equal(fx->log, "wake-all w0:EOF w1:EOF w2:EOF");
  for (int i = 0; i < 3; i++) assert_int_equal(w[i].wakes, 1);
  fx_close(fx);
}

/* Cancels the two waiters in `peer` (an array), then wakes the queue. */
typedef struct cancel_ctx {
  ttask_t *cancellable, *uncancellable;
  rem_waitq_t *q;
} cancel_ctx_t;

static void run_cancel_then_wake(rem_task_t *task) {
  ttask_t *t = tt_enter(task);
  cancel_ctx_t *c = t->peer;
  if (t->step++ == 0) {
    fx_log(t->fx, "cancel-both");
    rem_task_cancel(&c->cancellable->task);
    rem_task_cancel(&c->uncancellable->task);
    /* The cancellable one left the queue; the other is still waiting in it. */
    assert_int_equal(c->cancellable->task.state, REM_TASK_READY);
    assert_int_equal(c->uncancellable->task.state, REM_TASK_WAITING);
    assert_ptr_equal(c->q->waiters.next, &c->uncancellable->task.link);
    assert_ptr_equal(c->q->waiters.prev, &c->uncancellable->task.link);
    assert_true(rem_task_cancelled(&c->uncancellable->task));
    assert_int_equal(rem_task_sleep(task, 2), 0);
    return;
  }
  fx_log(t->fx, "wake-all");
  rem_waitq_wake_all(c->q, 0);
  rem_task_finish(task, 0, 0);
}

static void test_cancellable_and_uncancellable_waits(void **state) {
  fx_t *fx = *state;
  rem_waitq_t q;
  rem_waitq_init(&q);
  ttask_t c, u, k;
  tt_init(&c, fx, NULL, "c", run_queue_waiter);
  tt_init(&u, fx, NULL, "u", run_queue_waiter);
  tt_init(&k, fx, NULL, "k", run_cancel_then_wake);
  c.peer = u.peer = &q;
  u.status = UNCANCELLABLE;
  cancel_ctx_t ctx = {&c, &u, &q};
  k.peer = &ctx;
  rem_task_start(&c.task);
  rem_task_start(&u.task);
  rem_task_start(&k.task);
  fx_run(fx);
  /* The uncancellable wait ends only with the wake, and with the wake's status. */
  assert_string_equal(fx->log, "cancel-both c:ECANCELED wake-all u:ok");
  fx_close(fx);
}

/* Waits for the task in `peer` to finish through its joiners queue (skips it if done). */
static void run_joiner(rem_task_t *task) {
  ttask_t *t = tt_enter(task);
  rem_task_t *target = &((ttask_t *)t->peer)->task;
  if (t->step++ == 0 && target->state != REM_TASK_DONE) {
    rem_task_wait_on(task, &target->joiners, 1);
    return;
  }
  assert_int_equal(target->state, REM_TASK_DONE);
  fx_log(t->fx, "%s:wake=%s,status=%s", t->name, t->step > 1 ? st_name(task->wake_status) : "-",
         st_name(target->status));
  rem_task_finish(task, 0, 0);
}

static void test_joiners_woken_when_target_finishes(void **state) {
  fx_t *fx = *state;
  ttask_t target, j1, j2, late;
  tt_init(&target, fx, NULL, "t", run_sleeper);
  target.ms = 2;
  target.status = UV_EIO;
  tt_init(&j1, fx, NULL, "j1", run_joiner);
  tt_init(&j2, fx, NULL, "j2", run_joiner);
  j1.peer = j2.peer = &target;
  rem_task_start(&j1.task); /* joiners may wait before the task even started */
  rem_sched_run_ready(&fx->sched);
  rem_task_start(&target.task);
  rem_task_start(&j2.task);
  fx_run(fx);
  /* The joiners' wake is 0: the outcome is the target's status, so a joiner never mistakes
   * the target's failure or cancellation for its own. */
  assert_string_equal(fx->log, "t:ok j1:wake=ok,status=EIO j2:wake=ok,status=EIO");
  assert_int_equal(target.task.status, UV_EIO);
  assert_true(rem_list_empty(&target.task.joiners.waiters));
  /* Joining a finished task does not wait. */
  tt_init(&late, fx, NULL, "late", run_joiner);
  late.peer = &target;
  rem_task_start(&late.task);
  fx_run(fx);
  assert_string_equal(fx->log,
                      "t:ok j1:wake=ok,status=EIO j2:wake=ok,status=EIO late:wake=-,status=EIO");
  fx_close(fx);
}

static void test_joiner_of_cancelled_task_is_not_cancelled(void **state) {
  fx_t *fx = *state;
  ttask_t target, j, k;
  tt_init(&target, fx, NULL, "t", run_sleeper);
  target.ms = 60000;
  target.status = UV_ECANCELED;
  tt_init(&j, fx, NULL, "j", run_joiner);
  j.peer = &target;
  tt_init(&k, fx, NULL, "k", run_canceller);
  k.peer = &target;
  rem_task_start(&target.task);
  rem_task_start(&j.task);
  rem_task_start(&k.task);
  fx_run(fx);
  assert_string_equal(fx->log, "k-cancels t:ECANCELED j:wake=ok,status=ECANCELED");
  assert_false(rem_task_cancelled(&j.task));
  fx_close(fx);
}

/* A joiner cancelled while waiting leaves the joiners queue; the target is unaffected. */
static void test_cancelled_joiner_leaves_queue(void **state) {
  fx_t *fx = *state;
  ttask_t target, j;
  tt_init(&target, fx, NULL, "t", run_sleeper);
  target.ms = 3;
  tt_init(&j, fx, NULL, "j", run_queue_waiter);
  j.peer = &target.task.joiners;
  rem_task_start(&target.task);
  rem_task_start(&j.task);
  rem_sched_run_ready(&fx->sched); /* target sleeps, j waits on its joiners */
  assert_false(rem_list_empty(&target.task.joiners.waiters));
  rem_task_cancel(&j.task);
  assert_true(rem_list_empty(&target.task.joiners.waiters));
  assert_int_equal(target.task.state, REM_TASK_WAITING);
  fx_run(fx);
  assert_string_equal(fx->log, "j:ECANCELED t:ok");
  assert_int_equal(target.task.status, 0);
  fx_close(fx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      FX_TEST(test_sleepers_wake_in_order_of_duration),
      FX_TEST(test_cancel_sleeping_task),
      FX_TEST(test_cancel_before_first_run),
      FX_TEST(test_waitq_wakes_all_with_status),
      FX_TEST(test_cancellable_and_uncancellable_waits),
      FX_TEST(test_joiners_woken_when_target_finishes),
      FX_TEST(test_joiner_of_cancelled_task_is_not_cancelled),
      FX_TEST(test_cancelled_joiner_leaves_queue),
  };
  return cmocka_run_group_tests_name("task", tests, NULL, NULL);
}
