/* Tasks: the scheduling state of one strand of work, without its stack.
 *
 * The runtime does not know what a task runs: `run` is called whenever the task is picked
 * from the ready queue, and the embedder resumes its coroutine (Lua) or state machine (C)
 * there. A task waits for one thing at a time: a sleep, a wait queue, or anything the
 * embedder arms with rem_task_wait and completes with rem_task_wake. A cancellable wait
 * carries an abort callback that undoes the wait when a cancellation interrupts it; the
 * task is then woken with UV_ECANCELED.
 */
#ifndef REM_TASK_H
#define REM_TASK_H

#include <stdint.h>

#include "list.h"
#include "scheduler.h"
#include "scope.h"
#include "timers.h"

typedef struct rem_task rem_task_t;
typedef struct rem_group rem_group_t;

typedef void (*rem_task_run_cb)(rem_task_t *task);
typedef void (*rem_task_abort_cb)(rem_task_t *task);
/* Asked before a cancellation interrupts a wait; return 0 to let the wait go on (the
 * embedder knows the task is in cleanup, e.g. inside a Lua __close). */
typedef int (*rem_task_interrupt_cb)(rem_task_t *task);

typedef enum rem_task_state {
  REM_TASK_NEW,      /* initialised, not started */
  REM_TASK_READY,    /* in the ready queue */
  REM_TASK_RUNNING,  /* its run callback is executing */
  REM_TASK_WAITING,  /* waiting for a wake */
  REM_TASK_DONE
} rem_task_state_t;

typedef struct rem_waitq {
  rem_list_t waiters;   /* rem_task_t.link */
} rem_waitq_t;

struct rem_task {
  rem_sched_t *sched;
  rem_scope_t root;               /* the task's own scope: rem_task_cancel cancels it */
  rem_scope_t *scope;             /* innermost scope */
  rem_scope_t *unwind_boundary;   /* while an error unwinds: this scope and those outside
                                     it do not cancel (cleanup is shielded) */
  rem_list_t link;                /* in the ready queue or in a wait queue */
  rem_list_t scope_link;          /* in scope->tasks */
  rem_timer_t timer;              /* rem_task_sleep */
  rem_task_run_cb run;
  rem_task_abort_cb abort;        /* non-NULL while in a cancellable wait */
  rem_task_interrupt_cb interrupt;
  rem_group_t *group;             /* the group that spawned it, or NULL */
  rem_waitq_t joiners;            /* woken when it finishes */
  rem_task_state_t state;
  int wake_status;                /* what the last wake said: 0, UV_ECANCELED, ... */
  int status;                     /* once DONE: 0, UV_ECANCELED or another error code */
  void *data;                     /* the embedder's */
};

/* Initialises a task (caller-owned memory) whose root scope hangs below `parent` (NULL for
 * an independent task). */
void rem_task_init(rem_task_t *task, rem_sched_t *sched, rem_scope_t *parent,
                   rem_task_run_cb run);
/* Queues the task's first run. */
void rem_task_start(rem_task_t *task);
/* Ends the task with `status`: pops its scopes, wakes its joiners, tells its group
 * (`payload` goes into the group's error list when `status` is a failure). */
void rem_task_finish(rem_task_t *task, int status, intptr_t payload);

/* Arms a wait; `abort` NULL makes it uncancellable. The embedder then suspends the task. */
void rem_task_wait(rem_task_t *task, rem_task_abort_cb abort);
/* Completes the current wait with `status` and queues the task. */
void rem_task_wake(rem_task_t *task, int status);
/* Queues a running task to run again after the others that are ready (a checkpoint). */
void rem_task_reschedule(rem_task_t *task);
/* Waits `ms` of loop time (cancellable). Returns 0 or UV_ENOMEM. */
int rem_task_sleep(rem_task_t *task, uint64_t ms);

void rem_waitq_init(rem_waitq_t *q);
/* Waits on `q` until rem_waitq_wake_all; cancellable when `cancellable`. */
void rem_task_wait_on(rem_task_t *task, rem_waitq_t *q, int cancellable);
void rem_waitq_wake_all(rem_waitq_t *q, int status);

/* Nonzero when a scope on the task's chain is cancelled with no shield (and no unwind
 * boundary) in between. */
int rem_task_cancelled(const rem_task_t *task);
/* The scope whose cancellation reaches the task (the innermost one), or NULL. */
const rem_scope_t *rem_task_cancelled_by(const rem_task_t *task);
void rem_task_cancel(rem_task_t *task);

/* Makes `scope` (initialised with the task's innermost scope as parent) the innermost. */
void rem_task_push_scope(rem_task_t *task, rem_scope_t *scope);
/* Pops `scope`, which must be the innermost: returns UV_EINVAL otherwise. */
int rem_task_pop_scope(rem_task_t *task, rem_scope_t *scope);

/* Internal: interrupts the task's wait if it is now cancelled. */
void rem__task_interrupt(rem_task_t *task);

#endif
