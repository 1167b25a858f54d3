/* The scheduler: which tasks run next, and the deadline heap.
 *
 * A scheduler is bound to one uv_loop_t it does not own. Tasks made ready are queued and
 * run from a uv_idle_t callback, so nothing is ever resumed from inside another task (no
 * re-entrancy) and the loop does not block in poll while work is queued. Its handles are
 * active only while there is work, so a loop with nothing for rem to do can end.
 */
#ifndef REM_SCHED_H
#define REM_SCHED_H

#include <stddef.h>
#include <uv.h>

#include "list.h"
#include "timers.h"

typedef struct rem_sched rem_sched_t;
typedef void (*rem_sched_close_cb)(rem_sched_t *sched);

struct rem_sched {
  uv_loop_t *loop;
  uv_idle_t idle;        /* active while `ready` is not empty */
  rem_timers_t timers;   /* sleeps and scope deadlines */
  rem_list_t ready;      /* rem_task_t.link, in wake order */
  size_t live;           /* tasks started and not yet finished */
  int pending_closes;    /* handles whose close callback has not run yet */
  rem_sched_close_cb close_cb;
  void *data;            /* the embedder's */
};

/* Binds `sched` (caller-owned memory) to `loop`. Returns 0 or a UV_E* code. */
int rem_sched_init(rem_sched_t *sched, uv_loop_t *loop);

/* Closes the scheduler's handles; `cb` runs once both close callbacks have, after which the
 * caller may free `sched`. Tasks must all have finished. */
void rem_sched_close(rem_sched_t *sched, rem_sched_close_cb cb);

/* Internal: puts `task` at the end of the ready queue. */
struct rem_task;
void rem__sched_enqueue(rem_sched_t *sched, struct rem_task *task);

/* Runs at most the tasks that are ready now (those they wake wait for the next turn).
 * Called by the idle handle; exposed for hosts that drive tasks themselves. */
void rem_sched_run_ready(rem_sched_t *sched);

#endif
