#include "group.h"

void rem_group_init(rem_group_t *group, rem_task_t *owner) {
  rem_scope_init(&group->scope, owner->sched, owner->scope);
  group->owner = owner;
  group->children = 0;
  rem_waitq_init(&group->idle);
  rem_errlist_init(&group->errors);
  group->closing = 0;
  group->closed = 0;
  rem_task_push_scope(owner, &group->scope);
}

int rem_group_spawn(rem_group_t *group, rem_task_t *child) {
  if (group->closed) return UV_EINVAL;
  /* The child was initialised as a root; hang its scope below the group's. */
  rem_scope_set_parent(&child->root, &group->scope);
  child->group = group;
  group->children++;
  rem_task_start(child);
  return 0;
}

static void record(rem_group_t *group, int status, intptr_t payload) {
  /* Out of memory here loses only the record; the scope is cancelled all the same. */
  (void)rem_errlist_push(&group->errors, status, payload);
  rem_scope_cancel(&group->scope);
}

void rem_group_body_failed(rem_group_t *group, int status, intptr_t payload) {
  if (status == 0 || status == UV_ECANCELED) return;
  record(group, status, payload);
}

void rem__group_child_done(rem_group_t *group, rem_task_t *child, int status,
                           intptr_t payload) {
  child->group = NULL;
  if (status != 0 && status != UV_ECANCELED) record(group, status, payload);
  if (--group->children == 0) rem_waitq_wake_all(&group->idle, 0);
}

int rem_group_close_wait(rem_group_t *group) {
  group->closing = 1;
  if (group->children == 0) return 0;
  rem_task_wait_on(group->owner, &group->idle, 0);
  return 1;
}

int rem_group_close_end(rem_group_t *group) {
  if (group->closed) return 0;
  int rc = 0;
  rem_task_t *owner = group->owner;
  if (owner->state != REM_TASK_DONE) {
    int on_chain = 0;
    for (rem_scope_t *s = owner->scope; s; s = s->parent)
      if (s == &group->scope) on_chain = 1;
    if (on_chain) {
      /* Closed before scopes opened inside it: drop those first, and say so. */
      while (owner->scope != &group->scope) {
        rem_timer_stop(&owner->sched->timers, &owner->scope->deadline);
        rem_task_pop_scope(owner, owner->scope);
        rc = UV_EINVAL;
      }
      rem_task_pop_scope(owner, &group->scope);
    }
  }
  group->closed = 1;
  group->closing = 0;
  rem_scope_deinit(&group->scope);
  return rc;
}
