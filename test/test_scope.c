/* Cancellation scopes (runtime/scope.c and the scope half of runtime/task.c): propagation,
 * shields, deadlines, the interrupt hook, unwind boundaries, push/pop discipline. */
#include "helpers.h"

#define NS 4

/* What a test's tasks share: the scopes a task pushes, and which of them to shield. */
typedef struct sctx {
  rem_scope_t s[NS];
  int n;               /* scopes the sleeper pushes */
  unsigned shield;     /* bit i: s[i] is shielded */
  uint64_t deadline[NS];
  ttask_t *victim;
  int interrupts;      /* calls of the interrupt hook */
  int interrupt_ret;
} sctx_t;

/* The index of `s` in ctx->s, -1 for a task's root, -2 for NULL. */
static int scope_id(const sctx_t *c, const rem_task_t *task, const rem_scope_t *s) {
  if (!s) return -2;
  if (s == &task->root) return -1;
  for (int i = 0; i < NS; i++)
    if (s == &c->s[i]) return i;
  fail_msg("unknown scope");
  return -3;
}

static const char *scope_name(const sctx_t *c, const rem_task_t *task, const rem_scope_t *s) {
  static const char *names[] = {"s0", "s1", "s2", "s3"};
  int id = scope_id(c, task, s);
  return id == -2 ? "none" : id == -1 ? "root" : names[id];
}

/* Pushes ctx->n scopes (with shields and deadlines), sleeps `ms`; once woken logs how and by
 * which scope it is cancelled, pops and deinitialises the scopes innermost first, logging
 * whether it is still cancelled after each pop. */
static void run_scoped_sleeper(rem_task_t *task) {
  ttask_t *t = tt_enter(task);
  sctx_t *c = t->peer;
  if (t->step++ == 0) {
    for (int i = 0; i < c->n; i++) {
      rem_scope_init(&c->s[i], task->sched, task->scope);
      c->s[i].shielded = (c->shield >> i) & 1u;
      rem_task_push_scope(task, &c->s[i]);
      assert_ptr_equal(task->scope, &c->s[i]);
      if (c->deadline[i]) assert_int_equal(rem_scope_set_deadline(&c->s[i], c->deadline[i]), 0);
    }
    assert_int_equal(rem_task_sleep(task, t->ms), 0);
    return;
  }
  fx_log(t->fx, "%s:%s,by=%s", t->name, st_name(task->wake_status),
         scope_name(c, task, rem_task_cancelled_by(task)));
  for (int i = c->n - 1; i >= 0; i--) {
    assert_int_equal(rem_task_pop_scope(task, &c->s[i]), 0);
    rem_scope_deinit(&c->s[i]);
    fx_log(t->fx, "pop%d:%d", i, rem_task_cancelled(task));
  }
  assert_ptr_equal(task->scope, &task->root);
  rem_task_finish(task, task->wake_status, 0);
}

/* Cancels scope s[peer-index] of the victim: `status` holds the index (-1: the task's root). */
static void run_scope_canceller(rem_task_t *task) {
  ttask_t *t = tt_enter(task);
  sctx_t *c = t->peer;
  rem_scope_t *s = t->status < 0 ? &c->victim->task.root : &c->s[t->status];
  fx_log(t->fx, "%s:cancel-%s", t->name, scope_name(c, &c->victim->task, s));
  rem_scope_cancel(s);
  assert_true(s->cancelled);
  rem_scope_cancel(s); /* idempotent */
  rem_task_finish(task, 0, 0);
}

/* Cancels s[status] of the victim, checks that an unrelated sleeper is untouched, then
 * cancels that one too (its root). */
static void run_nested_canceller(rem_task_t *task) {
  ttask_t *t = tt_enter(task);
  sctx_t *c = t->peer;
  ttask_t *other = c->victim + 1; /* the next ttask_t in the test's array */
  fx_log(t->fx, "k:cancel-s%d", t->status);
  rem_scope_cancel(&c->s[t->status]);
  assert_int_equal(c->victim->task.state, REM_TASK_READY);
  assert_int_equal(other->task.state, REM_TASK_WAITING);
  assert_false(rem_task_cancelled(&other->task));
  fx_log(t->fx, "k:cancel-other");
  rem_task_cancel(&other->task);
  rem_task_finish(task, 0, 0);
}

static void test_cancel_propagates_through_nested_scopes(void **state) {
  fx_t *fx = *state;
  sctx_t c = {.n = 3}, oc = {.n = 0};
  ttask_t v[2], k; /* v[0] in three nested scopes, v[1] an unrelated sleeper */
  tt_init(&v[0], fx, NULL, "t", run_scoped_sleeper);
  tt_init(&v[1], fx, NULL, "other", run_scoped_sleeper);
  tt_init(&k, fx, NULL, "k", run_nested_canceller);
  v[0].peer = &c;
  v[1].peer = &oc;
  v[0].ms = v[1].ms = 60000;
  c.victim = &v[0];
  k.peer = &c;
  k.status = 1; /* cancels s1: t waits in s2, inside it */
  rem_task_start(&v[0].task);
  rem_task_start(&v[1].task);
  rem_task_start(&k.task);
  fx_run(fx);
  /* Only s1 is marked; s2 is cancelled through it, s0 and the root are not. */
  assert_string_equal(fx->log,
                      "k:cancel-s1 k:cancel-other t:ECANCELED,by=s1 pop2:1 pop1:0 pop0:0 "
                      "other:ECANCELED,by=root");
  assert_true(c.s[1].cancelled);
  assert_false(c.s[2].cancelled);
  assert_false(c.s[0].cancelled);
  assert_false(v[0].task.root.cancelled);
  fx_close(fx);
}

/* The group owner: opens a scope s0 and a group in it, spawns `n` children running
 * run_scoped_sleeper, closes the group (waiting) and reports. */
typedef struct gctx {
  sctx_t sc;          /* s0 is the owner's scope */
  rem_group_t g;
  ttask_t kids[3];    /* they run run_scoped_sleeper with `sc` (n = 0: no scopes) */
  int n;
} gctx_t;

static void run_group_owner(rem_task_t *task) {
  ttask_t *t = tt_enter(task);
  gctx_t *g = t->peer;
  static const char *names[] = {"c0", "c1", "c2"};
  if (t->step++ == 0) {
    rem_scope_init(&g->sc.s[0], task->sched, task->scope);
    rem_task_push_scope(task, &g->sc.s[0]);
    rem_group_init(&g->g, task);
    assert_ptr_equal(task->scope, &g->g.scope);
    for (int i = 0; i < g->n; i++) {
      tt_init(&g->kids[i], t->fx, NULL, names[i], run_scoped_sleeper);
      g->kids[i].peer = &g->sc;
      g->kids[i].ms = 60000;
      assert_int_equal(rem_group_spawn(&g->g, &g->kids[i].task), 0);
    }
    assert_int_equal(g->g.children, (size_t)g->n);
    assert_int_equal(rem_group_close_wait(&g->g), 1);
    return;
  }
  fx_log(t->fx, "%s:%s,children=%zu,errors=%zu", t->name, st_name(task->wake_status),
         g->g.children, g->g.errors.len);
  assert_int_equal(rem_group_close_end(&g->g), 0);
  assert_int_equal(rem_task_pop_scope(task, &g->sc.s[0]), 0);
  rem_scope_deinit(&g->sc.s[0]);
  rem_errlist_clear(&g->g.errors, NULL, NULL);
  rem_task_finish(task, 0, 0);
}

static void test_cancel_reaches_group_children(void **state) {
  fx_t *fx = *state;
  static gctx_t g;
  memset(&g, 0, sizeof g);
  g.n = 2;
  ttask_t o, k;
  tt_init(&o, fx, NULL, "o", run_group_owner);
  tt_init(&k, fx, NULL, "k", run_scope_canceller);
  o.peer = &g;
  g.sc.victim = &o;
  k.peer = &g.sc;
  k.status = 0; /* the owner's scope, outside the group */
  rem_task_start(&o.task);
  rem_sched_run_ready(&fx->sched); /* o spawns */
  rem_sched_run_ready(&fx->sched); /* the children sleep */
  assert_int_equal(fx->sched.live, 3);
  rem_task_start(&k.task);
  fx_run(fx);
  /* The children see the cancellation as coming from s0, through the group's scope; the
   * owner's close wait is not cancellable and ends when the last child has finished. */
  assert_string_equal(fx->log,
                      "k:cancel-s0 c0:ECANCELED,by=s0 c1:ECANCELED,by=s0 "
                      "o:ok,children=0,errors=0");
  for (int i = 0; i < 2; i++) assert_int_equal(g.kids[i].task.status, UV_ECANCELED);
  fx_close(fx);
}

/* Cancels the victim's root, checks the shield held, waits, then cancels s[status]. */
static void run_shield_tester(rem_task_t *task) {
  ttask_t *t = tt_enter(task);
  sctx_t *c = t->peer;
  rem_task_t *v = &c->victim->task;
  if (t->step++ == 0) {
    fx_log(t->fx, "k:cancel-root");
    rem_task_cancel(v);
    assert_int_equal(v->state, REM_TASK_WAITING);
    assert_false(rem_task_cancelled(v));
    assert_null(rem_task_cancelled_by(v));
    assert_int_equal(rem_task_sleep(task, 2), 0);
    return;
  }
  assert_int_equal(v->state, REM_TASK_WAITING); /* still, after a turn of the loop */
  fx_log(t->fx, "k:cancel-s%d", t->status);
  rem_scope_cancel(&c->s[t->status]);
  assert_int_equal(v->state, REM_TASK_READY);
  rem_task_finish(task, 0, 0);
}

static void test_shield_stops_outer_cancel_not_its_own(void **state) {
  fx_t *fx = *state;
  sctx_t c = {.n = 2, .shield = 1u}; /* s0 shielded, s1 plain inside it */
  ttask_t t, k;
  tt_init(&t, fx, NULL, "t", run_scoped_sleeper);
  tt_init(&k, fx, NULL, "k", run_shield_tester);
  t.peer = k.peer = &c;
  t.ms = 60000;
  c.victim = &t;
  k.status = 0;
  rem_task_start(&t.task);
  rem_task_start(&k.task);
  fx_run(fx);
  /* Inside the shield: only s0's own cancel counts; once s0 is popped the root's does. */
  assert_string_equal(fx->log, "k:cancel-root k:cancel-s0 t:ECANCELED,by=s0 pop1:1 pop0:1");
  fx_close(fx);
}

static void test_deadline_expiry_interrupts(void **state) {
  fx_t *fx = *state;
  /* s0: a far deadline (stopped by deinit); s1: moved from a minute to 5 ms. */
  sctx_t c = {.n = 2, .deadline = {60000, 60000}};
  ttask_t t;
  tt_init(&t, fx, NULL, "t", run_scoped_sleeper);
  t.peer = &c;
  t.ms = 60000;
  rem_task_start(&t.task);
  rem_sched_run_ready(&fx->sched);
  assert_int_equal(fx->sched.timers.len, 3);
  assert_int_equal(rem_scope_set_deadline(&c.s[1], 5), 0); /* moves it */
  assert_int_equal(fx->sched.timers.len, 3);
  uint64_t t0 = uv_now(&fx->loop);
  fx_run(fx);
  assert_string_equal(fx->log, "t:ECANCELED,by=s1 pop1:0 pop0:0");
  assert_true(c.s[1].expired);
  assert_true(c.s[1].cancelled);
  assert_false(c.s[0].expired);
  assert_false(c.s[0].cancelled);
  assert_false(rem_timer_active(&c.s[0].deadline));
  assert_true(fx_elapsed(fx, t0) >= 5);
  assert_true(fx_elapsed(fx, t0) < 5000);
  /* A cancelled scope takes no new deadline. */
  rem_scope_t s;
  rem_scope_init(&s, &fx->sched, NULL);
  rem_scope_cancel(&s);
  assert_int_equal(rem_scope_set_deadline(&s, 1), 0);
  assert_false(rem_timer_active(&s.deadline));
  rem_scope_deinit(&s);
  rem_scope_deinit(&s); /* idempotent */
  fx_close(fx);
}

/* A cancel arriving after the deadline: the scope is not marked expired. */
static void test_cancel_before_deadline_is_not_expiry(void **state) {
  fx_t *fx = *state;
  sctx_t c = {.n = 1, .deadline = {60000}};
  ttask_t t, k;
  tt_init(&t, fx, NULL, "t", run_scoped_sleeper);
  tt_init(&k, fx, NULL, "k", run_scope_canceller);
  t.peer = k.peer = &c;
  t.ms = 60000;
  c.victim = &t;
  k.status = 0;
  rem_task_start(&t.task);
  rem_task_start(&k.task);
  fx_run(fx);
  assert_string_equal(fx->log, "k:cancel-s0 t:ECANCELED,by=s0 pop0:0");
  assert_true(c.s[0].cancelled);
  assert_false(c.s[0].expired);
  fx_close(fx);
}

static int on_interrupt(rem_task_t *task) {
  ttask_t *t = tt(task);
  sctx_t *c = t->peer;
  c->interrupts++;
  fx_log(t->fx, "interrupt:%d", c->interrupt_ret);
  assert_int_equal(task->state, REM_TASK_WAITING);
  assert_true(rem_task_cancelled(task));
  return c->interrupt_ret;
}

/* Step 0: sleeps 10 ms in its root (the hook says "not now"). Step 1: logs, pushes s0 and
 * sleeps a minute (the hook now lets the cancellation in). */
static void run_interruptible(rem_task_t *task) {
  ttask_t *t = tt_enter(task);
  sctx_t *c = t->peer;
  switch (t->step++) {
    case 0:
      task->interrupt = on_interrupt;
      assert_int_equal(rem_task_sleep(task, 10), 0);
      return;
    case 1:
      fx_log(t->fx, "t:%s,cancelled=%d", st_name(task->wake_status), rem_task_cancelled(task));
      rem_scope_init(&c->s[0], task->sched, task->scope);
      c->s[0].shielded = 1; /* the root's cancellation is kept out of this one */
      rem_task_push_scope(task, &c->s[0]);
      assert_int_equal(rem_task_sleep(task, 60000), 0);
      return;
    default:
      fx_log(t->fx, "t:%s", st_name(task->wake_status));
      assert_int_equal(rem_task_pop_scope(task, &c->s[0]), 0);
      rem_scope_deinit(&c->s[0]);
      rem_task_finish(task, 0, 0);
  }
}

/* Step 0: cancels the victim's root (hook returns 0), sleeps 20 ms. Step 1: cancels s0. */
static void run_interrupt_driver(rem_task_t *task) {
  ttask_t *t = tt_enter(task);
  sctx_t *c = t->peer;
  rem_task_t *v = &c->victim->task;
  if (t->step++ == 0) {
    fx_log(t->fx, "k:cancel-root");
    c->interrupt_ret = 0;
    rem_task_cancel(v);
    assert_int_equal(v->state, REM_TASK_WAITING); /* the wait goes on */
    assert_true(rem_timer_active(&v->timer));
    assert_non_null(v->abort);
    assert_int_equal(rem_task_sleep(task, 20), 0);
    return;
  }
  fx_log(t->fx, "k:cancel-s0");
  c->interrupt_ret = 1;
  rem_scope_cancel(&c->s[0]);
  assert_int_equal(v->state, REM_TASK_READY);
  assert_false(rem_timer_active(&v->timer));
  rem_task_finish(task, 0, 0);
}

static void test_interrupt_hook_can_keep_wait(void **state) {
  fx_t *fx = *state;
  sctx_t c = {0};
  ttask_t t, k;
  tt_init(&t, fx, NULL, "t", run_interruptible);
  tt_init(&k, fx, NULL, "k", run_interrupt_driver);
  t.peer = k.peer = &c;
  c.victim = &t;
  rem_task_start(&t.task);
  rem_task_start(&k.task);
  fx_run(fx);
  assert_string_equal(fx->log,
                      "k:cancel-root interrupt:0 t:ok,cancelled=1 "
                      "k:cancel-s0 interrupt:1 t:ECANCELED");
  assert_int_equal(c.interrupts, 2);
  fx_close(fx);
}

/* Checks rem_task_cancelled under an unwind boundary, then sleeps with the boundary set
 * while `peer`'s victim-canceller cancels its root; the sleep is not interrupted. */
static void run_unwinder(rem_task_t *task) {
  ttask_t *t = tt_enter(task);
  sctx_t *c = t->peer;
  rem_scope_t *s = c->s;
  if (t->step++ == 0) {
    for (int i = 0; i < 3; i++) {
      rem_scope_init(&s[i], task->sched, task->scope);
      rem_task_push_scope(task, &s[i]);
    }
    rem_scope_cancel(&s[0]);
    assert_ptr_equal(rem_task_cancelled_by(task), &s[0]);
    task->unwind_boundary = &s[1]; /* s1 and what is outside it no longer cancel */
    assert_false(rem_task_cancelled(task));
    rem_scope_cancel(&s[1]);
    assert_false(rem_task_cancelled(task)); /* the boundary itself neither */
    /* A scope pushed inside the boundary cancels as usual. */
    rem_scope_init(&s[3], task->sched, task->scope);
    rem_task_push_scope(task, &s[3]);
    assert_false(rem_task_cancelled(task));
    rem_scope_cancel(&s[3]);
    assert_ptr_equal(rem_task_cancelled_by(task), &s[3]);
    assert_int_equal(rem_task_pop_scope(task, &s[3]), 0);
    rem_scope_deinit(&s[3]);
    assert_false(rem_task_cancelled(task));
    fx_log(t->fx, "t:sleeps");
    assert_int_equal(rem_task_sleep(task, 5), 0);
    return;
  }
  /* The root's cancellation (by k) did not interrupt the sleep. */
  fx_log(t->fx, "t:%s", st_name(task->wake_status));
  assert_true(task->root.cancelled);
  assert_int_equal(rem_task_pop_scope(task, &s[2]), 0);
  assert_ptr_equal(task->unwind_boundary, &s[1]);
  assert_false(rem_task_cancelled(task));
  assert_int_equal(rem_task_pop_scope(task, &s[1]), 0);
  assert_ptr_equal(task->unwind_boundary, &s[0]); /* moves out with the pop */
  assert_false(rem_task_cancelled(task));
  assert_int_equal(rem_task_pop_scope(task, &s[0]), 0);
  assert_ptr_equal(task->unwind_boundary, &task->root);
  assert_false(rem_task_cancelled(task));
  task->unwind_boundary = NULL; /* unwinding over: the root's cancellation shows again */
  assert_ptr_equal(rem_task_cancelled_by(task), &task->root);
  for (int i = 0; i < 3; i++) rem_scope_deinit(&s[i]);
  rem_task_finish(task, UV_ECANCELED, 0);
}

static void test_unwind_boundary(void **state) {
  fx_t *fx = *state;
  sctx_t c = {0};
  ttask_t t, k;
  tt_init(&t, fx, NULL, "t", run_unwinder);
  tt_init(&k, fx, NULL, "k", run_scope_canceller);
  t.peer = k.peer = &c;
  c.victim = &t;
  k.status = -1;
  rem_task_start(&t.task);
  rem_task_start(&k.task);
  fx_run(fx);
  assert_string_equal(fx->log, "t:sleeps k:cancel-root t:ok");
  assert_int_equal(t.task.status, UV_ECANCELED);
  fx_close(fx);
}

static void run_pop_checker(rem_task_t *task) {
  ttask_t *t = tt_enter(task);
  sctx_t *c = t->peer;
  rem_scope_t *s = c->s;
  rem_scope_init(&s[0], task->sched, task->scope);
  rem_task_push_scope(task, &s[0]);
  rem_scope_init(&s[1], task->sched, task->scope);
  rem_task_push_scope(task, &s[1]);
  assert_ptr_equal(s[1].parent, &s[0]);
  assert_ptr_equal(s[0].parent, &task->root);

  assert_int_equal(rem_task_pop_scope(task, &s[0]), UV_EINVAL);  /* not the innermost */
  assert_int_equal(rem_task_pop_scope(task, &task->root), UV_EINVAL);
  assert_ptr_equal(task->scope, &s[1]);                         /* nothing moved */
  assert_ptr_equal(s[1].tasks.next, &task->scope_link);

  assert_int_equal(rem_task_pop_scope(task, &s[1]), 0);
  assert_ptr_equal(task->scope, &s[0]);
  assert_true(rem_list_empty(&s[1].tasks));
  assert_int_equal(rem_task_pop_scope(task, &s[1]), UV_EINVAL); /* twice */
  assert_int_equal(rem_task_pop_scope(task, &s[0]), 0);
  assert_ptr_equal(task->scope, &task->root);
  assert_ptr_equal(task->root.tasks.next, &task->scope_link);
  assert_int_equal(rem_task_pop_scope(task, &task->root), UV_EINVAL);
  rem_scope_deinit(&s[1]);
  rem_scope_deinit(&s[0]);
  fx_log(t->fx, "done");
  rem_task_finish(task, 0, 0);
}

static void test_pop_scope_must_be_innermost(void **state) {
  fx_t *fx = *state;
  sctx_t c = {0};
  ttask_t t;
  tt_init(&t, fx, NULL, "t", run_pop_checker);
  t.peer = &c;
  rem_task_start(&t.task);
  fx_run(fx);
  assert_string_equal(fx->log, "done");
  fx_close(fx);
}

/* A deinitialised scope's children become roots: its parent's cancellation no longer
 * reaches them. */
static void test_deinit_detaches_children(void **state) {
  fx_t *fx = *state;
  rem_scope_t outer, mid, inner;
  rem_scope_init(&outer, &fx->sched, NULL);
  rem_scope_init(&mid, &fx->sched, &outer);
  rem_scope_init(&inner, &fx->sched, &mid);
  assert_int_equal(rem_scope_set_deadline(&mid, 60000), 0);
  rem_scope_deinit(&mid);
  assert_null(mid.parent);
  assert_null(inner.parent);
  assert_true(rem_list_empty(&outer.children));
  assert_false(rem_timer_active(&mid.deadline));
  assert_false(fx_timer_active(fx));
  rem_scope_cancel(&outer);
  assert_false(inner.cancelled);
  rem_scope_deinit(&inner);
  rem_scope_deinit(&outer);
  fx_close(fx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      FX_TEST(test_cancel_propagates_through_nested_scopes),
      FX_TEST(test_cancel_reaches_group_children),
      FX_TEST(test_shield_stops_outer_cancel_not_its_own),
      FX_TEST(test_deadline_expiry_interrupts),
      FX_TEST(test_cancel_before_deadline_is_not_expiry),
      FX_TEST(test_interrupt_hook_can_keep_wait),
      FX_TEST(test_unwind_boundary),
      FX_TEST(test_pop_scope_must_be_innermost),
      FX_TEST(test_deinit_detaches_children),
  };
  return cmocka_run_group_tests_name("scope", tests, NULL, NULL);
}
