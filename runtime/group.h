/* Task groups (nurseries): a scope over a body and the tasks spawned into it.
 *
 * The body runs in the owner task inside the group's scope. A child that fails (any status
 * but 0 and UV_ECANCELED) cancels the scope, so its siblings and the body are cancelled;
 * closing waits for every child and collects the failures. The group never frees anything:
 * its memory, and the payloads of its error list, are the caller's.
 */
#ifndef REM_GROUP_H
#define REM_GROUP_H

#include <stddef.h>

#include "errlist.h"
#include "scope.h"
#include "task.h"

struct rem_group {
  rem_scope_t scope;
  rem_task_t *owner;
  size_t children;      /* started and not finished */
  rem_waitq_t idle;     /* the owner waits here while closing */
  rem_errlist_t errors; /* child failures, in the order they happened */
  int closing;          /* the owner is in rem_group_close_* */
  int closed;           /* spawning is refused */
};

/* Opens a group in `owner` and makes its scope the owner's innermost. */
void rem_group_init(rem_group_t *group, rem_task_t *owner);
/* Hangs `child` (initialised, not started) below the group and starts it.
 * Returns UV_EINVAL once the group is closed. */
int rem_group_spawn(rem_group_t *group, rem_task_t *child);
/* Records a failure of the body (cancelling the children); UV_ECANCELED is absorbed. */
void rem_group_body_failed(rem_group_t *group, int status, intptr_t payload);
/* Starts closing: returns 1 if the owner must wait (it is armed on `idle`, uncancellable,
 * and woken when the last child ends), 0 when nothing is left to wait for. */
int rem_group_close_wait(rem_group_t *group);
/* Finishes closing: pops the scope from the owner, refuses further spawns. Returns 0, or
 * UV_EINVAL when scopes opened inside the group were still open (they are popped too). */
int rem_group_close_end(rem_group_t *group);

/* Internal: a child task ended with `status`; `payload` describes a failure. */
void rem__group_child_done(rem_group_t *group, rem_task_t *child, int status,
                           intptr_t payload);

#endif
