#include "scheduler.h"

#include "task.h"

static void on_idle(uv_idle_t *idle) {
  rem_sched_run_ready(idle->data);
}

int rem_sched_init(rem_sched_t *sched, uv_loop_t *loop) {
  sched->loop = loop;
  rem_list_init(&sched->ready);
  sched->live = 0;
  sched->pending_closes = 0;
  sched->close_cb = NULL;
  int rc = uv_idle_init(loop, &sched->idle);
  if (rc) return rc;
  sched->idle.data = sched;
  rc = rem_timers_init(&sched->timers, loop);
  if (rc) {
    uv_close((uv_handle_t *)&sched->idle, NULL);
    return rc;
  }
  return 0;
}

void rem__sched_enqueue(rem_sched_t *sched, rem_task_t *task) {
  task->state = REM_TASK_READY;
  rem_list_push_back(&sched->ready, &task->link);
  if (!uv_is_active((uv_handle_t *)&sched->idle)) uv_idle_start(&sched->idle, on_idle);
}

void rem_sched_run_ready(rem_sched_t *sched) {
  /* Only the tasks ready now: those they wake run next turn, after I/O is polled. */
  rem_list_t batch;
  rem_list_init(&batch);
  rem_list_splice(&batch, &sched->ready);
  rem_list_t *node;
  while ((node = rem_list_pop_front(&batch)) != NULL) {
    rem_task_t *task = REM_CONTAINER_OF(node, rem_task_t, link);
    task->state = REM_TASK_RUNNING;
    task->run(task);
  }
  if (rem_list_empty(&sched->ready)) uv_idle_stop(&sched->idle);
}

static void on_closed(uv_handle_t *handle) {
  rem_sched_t *sched = handle->data;
  if (--sched->pending_closes == 0 && sched->close_cb) sched->close_cb(sched);
}

void rem_sched_close(rem_sched_t *sched, rem_sched_close_cb cb) {
  sched->close_cb = cb;
  sched->pending_closes = 2;
  rem_timers_deinit(&sched->timers);
  sched->timers.handle.data = sched;
  uv_close((uv_handle_t *)&sched->idle, on_closed);
  uv_close((uv_handle_t *)&sched->timers.handle, on_closed);
}
