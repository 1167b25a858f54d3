/* Cancellation scopes (trio's cancel scopes), with deadlines.
 *
 * Scopes form a tree: a task's innermost scope, then the scopes around it, up through the
 * group that spawned the task into the spawning task's scopes. A task is cancelled when a
 * scope on its chain is cancelled, unless a shielded scope lies between. Cancelling a scope
 * interrupts every waiting task below it (see rem_task_t.interrupt). Memory is the caller's.
 */
#ifndef REM_SCOPE_H
#define REM_SCOPE_H

#include <stdint.h>

#include "list.h"
#include "scheduler.h"
#include "timers.h"

typedef struct rem_scope rem_scope_t;

struct rem_scope {
  rem_sched_t *sched;
  rem_scope_t *parent;     /* NULL at a root, or once the parent was deinitialised */
  rem_list_t children;     /* rem_scope_t.child_link */
  rem_list_t child_link;
  rem_list_t tasks;        /* tasks whose innermost scope this is (rem_task_t.scope_link) */
  rem_timer_t deadline;
  unsigned cancelled : 1;
  unsigned shielded : 1;   /* cancellation of the scopes outside does not reach inside */
  unsigned expired : 1;    /* cancelled because its deadline passed */
  int tag;                 /* the embedder's, 0 from rem_scope_init (the Lua bindings keep
                              how deep in cleanup handlers the scope was opened) */
};

void rem_scope_init(rem_scope_t *scope, rem_sched_t *sched, rem_scope_t *parent);
/* Stops the deadline and unlinks the scope from the tree; child scopes become roots.
 * No task may still have it as its innermost scope. Idempotent. */
void rem_scope_deinit(rem_scope_t *scope);
/* Moves `scope` (and everything below it) under `parent` (NULL: makes it a root), e.g. a
 * task's root scope under the group that spawns it. */
void rem_scope_set_parent(rem_scope_t *scope, rem_scope_t *parent);
/* Cancels the scope and interrupts the waiting tasks below it. Idempotent. */
void rem_scope_cancel(rem_scope_t *scope);
/* Cancels the scope `ms` milliseconds from now (and marks it expired). Returns 0 or
 * UV_ENOMEM. A second call moves the deadline. */
int rem_scope_set_deadline(rem_scope_t *scope, uint64_t ms);

#endif
