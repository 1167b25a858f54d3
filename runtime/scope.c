#include "scope.h"

#include "task.h"

void rem_scope_init(rem_scope_t *scope, rem_sched_t *sched, rem_scope_t *parent) {
  scope->sched = sched;
  scope->parent = parent;
  rem_list_init(&scope->children);
  rem_list_init(&scope->child_link);
  rem_list_init(&scope->tasks);
  rem_timer_init(&scope->deadline);
  scope->cancelled = 0;
  scope->shielded = 0;
  scope->expired = 0;
  scope->tag = 0;
  if (parent) rem_list_push_back(&parent->children, &scope->child_link);
}

void rem_scope_deinit(rem_scope_t *scope) {
  rem_timer_stop(&scope->sched->timers, &scope->deadline);
  rem_list_t *node;
  while ((node = rem_list_pop_front(&scope->children)) != NULL)
    REM_CONTAINER_OF(node, rem_scope_t, child_link)->parent = NULL;
  rem_list_remove(&scope->child_link);
  scope->parent = NULL;
}

void rem_scope_set_parent(rem_scope_t *scope, rem_scope_t *parent) {
  rem_list_remove(&scope->child_link);
  scope->parent = parent;
  if (parent) rem_list_push_back(&parent->children, &scope->child_link);
}

/* Interrupts the waiting tasks below `scope`. A shielded child stops the walk: nothing
 * below it sees this cancellation. */
static void interrupt_tree(rem_scope_t *scope) {
  rem_list_t *node, *next;
  for (node = scope->tasks.next; node != &scope->tasks; node = next) {
    next = node->next;
    rem__task_interrupt(REM_CONTAINER_OF(node, rem_task_t, scope_link));
  }
  for (node = scope->children.next; node != &scope->children; node = next) {
    next = node->next;
    rem_scope_t *child = REM_CONTAINER_OF(node, rem_scope_t, child_link);
    if (!child->shielded) interrupt_tree(child);
  }
}

void rem_scope_cancel(rem_scope_t *scope) {
  if (scope->cancelled) return;
  scope->cancelled = 1;
  rem_timer_stop(&scope->sched->timers, &scope->deadline);
  interrupt_tree(scope);
}

static void on_deadline(rem_timer_t *timer) {
  rem_scope_t *scope = REM_CONTAINER_OF(timer, rem_scope_t, deadline);
  scope->expired = 1;
  rem_scope_cancel(scope);
}

int rem_scope_set_deadline(rem_scope_t *scope, uint64_t ms) {
  if (scope->cancelled) return 0;
  rem_timer_stop(&scope->sched->timers, &scope->deadline);
  return rem_timer_start(&scope->sched->timers, &scope->deadline, ms, on_deadline);
}
