/* The scheduler (runtime/scheduler.c): the ready queue, batches, the idle handle, `live`. */
#include "helpers.h"

/* Logs its name and finishes. */
static void run_once(rem_task_t *task) {
  ttask_t *t = tt_enter(task);
  fx_log(t->fx, "%s", t->name);
  rem_task_finish(task, 0, 0);
}

static void test_fifo_order_of_readiness(void **state) {
  fx_t *fx = *state;
  static const char *names[] = {"t0", "t1", "t2", "t3", "t4"};
  ttask_t t[5];
  for (int i = 0; i < 5; i++) tt_init(&t[i], fx, NULL, names[i], run_once);
  assert_int_equal(fx->sched.live, 0);
  assert_false(fx_idle_active(fx));
  for (int i = 0; i < 5; i++) {
    assert_int_equal(t[i].task.state, REM_TASK_NEW);
    rem_task_start(&t[i].task);
    assert_int_equal(t[i].task.state, REM_TASK_READY);
    assert_int_equal(fx->sched.live, (size_t)i + 1);
  }
  assert_true(fx_idle_active(fx));
  fx_run(fx);
  assert_string_equal(fx->log, "t0 t1 t2 t3 t4");
  for (int i = 0; i < 5; i++) {
    assert_int_equal(t[i].task.state, REM_TASK_DONE);
    assert_int_equal(t[i].task.status, 0);
  }
  assert_int_equal(fx->sched.live, 0);
  assert_false(fx_idle_active(fx));
  fx_close(fx);
}

/* `ms` checkpoints, logging each step, then finishes. */
static void run_checkpoints(rem_task_t *task) {
  ttask_t *t = tt_enter(task);
  assert_int_equal(task->state, REM_TASK_RUNNING);
  if (t->step > 0) assert_int_equal(task->wake_status, 0);
  fx_log(t->fx, "%s%d", t->name, t->step);
  if ((uint64_t)t->step++ < t->ms) {
    rem_task_reschedule(task);
    assert_int_equal(task->state, REM_TASK_READY);
    return;
  }
  rem_task_finish(task, 0, 0);
}

static void test_reschedule_lets_others_run_first(void **state) {
  fx_t *fx = *state;
  ttask_t a, b, c;
  tt_init(&a, fx, NULL, "a", run_checkpoints);
  tt_init(&b, fx, NULL, "b", run_checkpoints);
  tt_init(&c, fx, NULL, "c", run_checkpoints);
  a.ms = 2;
  b.ms = 0;
  c.ms = 1;
  rem_task_start(&a.task);
  rem_task_start(&b.task);
  rem_task_start(&c.task);
  fx_run(fx);
  assert_string_equal(fx->log, "a0 b0 c0 a1 c1 a2");
  assert_int_equal(a.wakes, 2);
  fx_close(fx);
}

/* w: waits on the queue, then logs and finishes when woken. */
static void run_waiter(rem_task_t *task) {
  ttask_t *t = tt_enter(task);
  if (t->step++ == 0) {
    fx_log(t->fx, "%s-waits", t->name);
    rem_task_wait_on(task, t->peer, 1);
    return;
  }
  fx_log(t->fx, "%s-woke:%s", t->name, st_name(task->wake_status));
  rem_task_finish(task, 0, 0);
}

/* Wakes the queue in `peer`, then checkpoints once. */
static void run_waker(rem_task_t *task) {
  ttask_t *t = tt_enter(task);
  fx_log(t->fx, "%s%d", t->name, t->step);
  if (t->step++ == 0) {
    rem_waitq_wake_all(t->peer, UV_EOF);
    rem_task_reschedule(task);
    return;
  }
  rem_task_finish(task, 0, 0);
}

/* Driven batch by batch with rem_sched_run_ready, as a host without the idle handle would. */
static void test_woken_during_batch_runs_next_batch(void **state) {
  fx_t *fx = *state;
  rem_waitq_t q;
  rem_waitq_init(&q);
  ttask_t w, a, b;
  tt_init(&w, fx, NULL, "w", run_waiter);
  tt_init(&a, fx, NULL, "a", run_waker);
  tt_init(&b, fx, NULL, "b", run_once);
  w.peer = a.peer = &q;

  rem_sched_run_ready(&fx->sched); /* nothing ready: a no-op */
  assert_false(fx_idle_active(fx));

  rem_task_start(&w.task);
  rem_sched_run_ready(&fx->sched);
  assert_string_equal(fx->log, "w-waits");
  assert_int_equal(w.task.state, REM_TASK_WAITING);
  assert_false(fx_idle_active(fx));

  rem_task_start(&a.task);
  rem_task_start(&b.task);
  rem_sched_run_ready(&fx->sched);
  /* a woke w and checkpointed; b still ran in this batch, w and a wait for the next. */
  assert_string_equal(fx->log, "w-waits a0 b");
  assert_int_equal(w.task.state, REM_TASK_READY);
  assert_int_equal(a.task.state, REM_TASK_READY);
  assert_true(fx_idle_active(fx));
  assert_int_equal(fx->sched.live, 2);

  rem_sched_run_ready(&fx->sched);
  assert_string_equal(fx->log, "w-waits a0 b w-woke:EOF a1");
  assert_false(fx_idle_active(fx));
  assert_int_equal(fx->sched.live, 0);
  fx_run(fx); /* nothing left: returns at once */
  fx_close(fx);
}

/* Sleeps `ms`, logging what `live` and the idle handle say. */
static void run_sleep_then_finish(rem_task_t *task) {
  ttask_t *t = tt_enter(task);
  fx_t *fx = t->fx;
  if (t->step++ == 0) {
    fx_log(fx, "%s:live=%zu", t->name, fx->sched.live);
    assert_int_equal(rem_task_sleep(task, t->ms), 0);
    return;
  }
  fx_log(fx, "%s-woke:live=%zu", t->name, fx->sched.live);
  rem_task_finish(task, 0, 0);
  fx_log(fx, "%s-done:live=%zu", t->name, fx->sched.live);
}

static void test_idle_inactive_while_only_sleeping(void **state) {
  fx_t *fx = *state;
  ttask_t s;
  tt_init(&s, fx, NULL, "s", run_sleep_then_finish);
  s.ms = 5;
  rem_task_start(&s.task);
  assert_true(fx_idle_active(fx));
  assert_false(fx_timer_active(fx));
  rem_sched_run_ready(&fx->sched);
  /* Only a timer is pending: the loop may block in poll. */
  assert_false(fx_idle_active(fx));
  assert_true(fx_timer_active(fx));
  assert_int_equal(s.task.state, REM_TASK_WAITING);
  fx_run(fx);
  assert_string_equal(fx->log, "s:live=1 s-woke:live=1 s-done:live=0");
  assert_false(fx_idle_active(fx));
  assert_false(fx_timer_active(fx));
  fx_close(fx);
}

static void test_live_counts(void **state) {
  fx_t *fx = *state;
  ttask_t t[3];
  static const char *names[] = {"x", "y", "z"};
  for (int i = 0; i < 3; i++) {
    tt_init(&t[i], fx, NULL, names[i], run_sleep_then_finish);
    t[i].ms = (uint64_t)(3 - i); /* z wakes first */
  }
  /* Initialised tasks are not live; started ones are, until they finish. */
  assert_int_equal(fx->sched.live, 0);
  for (int i = 0; i < 3; i++) rem_task_start(&t[i].task);
  assert_int_equal(fx->sched.live, 3);
  fx_run(fx);
  assert_string_equal(fx->log,
                      "x:live=3 y:live=3 z:live=3 "
                      "z-woke:live=3 z-done:live=2 "
                      "y-woke:live=2 y-done:live=1 "
                      "x-woke:live=1 x-done:live=0");
  fx_close(fx);
}

/* A task started from inside another's run joins the queue behind those already ready. */
static void run_spawner(rem_task_t *task) {
  ttask_t *t = tt_enter(task);
  fx_log(t->fx, "%s", t->name);
  rem_task_start(&((ttask_t *)t->peer)->task);
  rem_task_finish(task, 0, 0);
}

static void test_started_while_running_queues_behind(void **state) {
  fx_t *fx = *state;
  ttask_t p, q, kid;
  tt_init(&p, fx, NULL, "p", run_spawner);
  tt_init(&q, fx, NULL, "q", run_once);
  tt_init(&kid, fx, NULL, "kid", run_once);
  p.peer = &kid;
  rem_task_start(&p.task);
  rem_task_start(&q.task);
  fx_run(fx);
  assert_string_equal(fx->log, "p q kid");
  fx_close(fx);
}

/* rem_task_wake on a task that is not waiting does nothing (no double queueing). */
static void test_wake_when_not_waiting_is_ignored(void **state) {
  fx_t *fx = *state;
  ttask_t a;
  tt_init(&a, fx, NULL, "a", run_once);
  rem_task_start(&a.task);
  rem_task_wake(&a.task, UV_EIO); /* READY: ignored */
  assert_int_equal(a.task.wake_status, 0);
  fx_run(fx);
  assert_string_equal(fx->log, "a");
  rem_task_wake(&a.task, UV_EIO); /* DONE: ignored */
  assert_int_equal(a.task.state, REM_TASK_DONE);
  assert_false(fx_idle_active(fx));
  fx_close(fx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      FX_TEST(test_fifo_order_of_readiness),
      FX_TEST(test_reschedule_lets_others_run_first),
      FX_TEST(test_woken_during_batch_runs_next_batch),
      FX_TEST(test_idle_inactive_while_only_sleeping),
      FX_TEST(test_live_counts),
      FX_TEST(test_started_while_running_queues_behind),
      FX_TEST(test_wake_when_not_waiting_is_ignored),
  };
  return cmocka_run_group_tests_name("sched", tests, NULL, NULL);
}
