#include "task.h"

#include "group.h"

void rem_task_init(rem_task_t *task, rem_sched_t *sched, rem_scope_t *parent,
                   rem_task_run_cb run) {
  task->sched = sched;
  rem_scope_init(&task->root, sched, parent);
  task->scope = &task->root;
  task->unwind_boundary = NULL;
  rem_list_init(&task->link);
  rem_list_init(&task->scope_link);
  rem_list_push_back(&task->root.tasks, &task->scope_link);
  rem_timer_init(&task->timer);
  task->run = run;
  task->abort = NULL;
  task->interrupt = NULL;
  task->group = NULL;
  rem_waitq_init(&task->joiners);
  task->state = REM_TASK_NEW;
  task->wake_status = 0;
  task->status = 0;
  task->data = NULL;
}

void rem_task_start(rem_task_t *task) {
  task->sched->live++;
  rem__sched_enqueue(task->sched, task);
}

void rem_task_finish(rem_task_t *task, int status, intptr_t payload) {
  /* Scopes left pushed (a group never closed) are dropped so nothing points into them. */
  while (task->scope != &task->root) {
    rem_scope_t *scope = task->scope;
    rem_timer_stop(&task->sched->timers, &scope->deadline);
    rem_task_pop_scope(task, scope);
  }
  rem_list_remove(&task->scope_link);
  rem_scope_deinit(&task->root);
  rem_list_remove(&task->link);
  rem_timer_stop(&task->sched->timers, &task->timer);
  task->state = REM_TASK_DONE;
  task->status = status;
  task->sched->live--;
  /* Joiners read task->status; their own wake is not a cancellation. */
  rem_waitq_wake_all(&task->joiners, 0);
  if (task->group) rem__group_child_done(task->group, task, status, payload);
}

void rem_task_wait(rem_task_t *task, rem_task_abort_cb abort) {
  task->state = REM_TASK_WAITING;
  task->abort = abort;
}

void rem_task_wake(rem_task_t *task, int status) {
  if (task->state != REM_TASK_WAITING) return;
  rem_list_remove(&task->link);
  task->abort = NULL;
  task->wake_status = status;
  rem__sched_enqueue(task->sched, task);
}

void rem_task_reschedule(rem_task_t *task) {
  task->wake_status = 0;
  rem__sched_enqueue(task->sched, task);
}

static void on_sleep_done(rem_timer_t *timer) {
  rem_task_wake(REM_CONTAINER_OF(timer, rem_task_t, timer), 0);
}

static void abort_sleep(rem_task_t *task) {
  rem_timer_stop(&task->sched->timers, &task->timer);
}

int rem_task_sleep(rem_task_t *task, uint64_t ms) {
  int rc = rem_timer_start(&task->sched->timers, &task->timer, ms, on_sleep_done);
  if (rc) return rc;
  rem_task_wait(task, abort_sleep);
  return 0;
}

void rem_waitq_init(rem_waitq_t *q) {
  rem_list_init(&q->waiters);
}

static void abort_waitq(rem_task_t *task) {
  rem_list_remove(&task->link);
}

void rem_task_wait_on(rem_task_t *task, rem_waitq_t *q, int cancellable) {
  rem_list_push_back(&q->waiters, &task->link);
  rem_task_wait(task, cancellable ? abort_waitq : NULL);
}

void rem_waitq_wake_all(rem_waitq_t *q, int status) {
  rem_list_t *node;
  while ((node = rem_list_pop_front(&q->waiters)) != NULL)
    rem_task_wake(REM_CONTAINER_OF(node, rem_task_t, link), status);
}

const rem_scope_t *rem_task_cancelled_by(const rem_task_t *task) {
  for (const rem_scope_t *s = task->scope; s; s = s->parent) {
    if (s == task->unwind_boundary) return NULL;
    if (s->cancelled) return s;
    if (s->shielded) return NULL;
  }
  return NULL;
}

int rem_task_cancelled(const rem_task_t *task) {
  return rem_task_cancelled_by(task) != NULL;
}

void rem_task_cancel(rem_task_t *task) {
  if (task->state == REM_TASK_DONE) return;
  rem_scope_cancel(&task->root);
}

void rem__task_interrupt(rem_task_t *task) {
  if (task->state != REM_TASK_WAITING || !task->abort) return;
  if (!rem_task_cancelled(task)) return;
  if (task->interrupt && !task->interrupt(task)) return;
  task->abort(task);
  rem_task_wake(task, UV_ECANCELED);
}

void rem_task_push_scope(rem_task_t *task, rem_scope_t *scope) {
  rem_list_remove(&task->scope_link);
  rem_list_push_back(&scope->tasks, &task->scope_link);
  task->scope = scope;
}

int rem_task_pop_scope(rem_task_t *task, rem_scope_t *scope) {
  if (task->scope != scope || scope == &task->root) return UV_EINVAL;
  if (task->unwind_boundary == scope) task->unwind_boundary = scope->parent;
  rem_list_remove(&task->scope_link);
  rem_scope_t *outer = scope->parent ? scope->parent : &task->root;
  rem_list_push_back(&outer->tasks, &task->scope_link);
  task->scope = outer;
  return 0;
}
