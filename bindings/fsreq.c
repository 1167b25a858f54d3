/* Awaiting libuv fs requests from a task, and giving them up safely.
 *
 * An fs request runs on libuv's threadpool. A task waiting for one may be cancelled; it
 * then gives the request up ("abandons" it): uv_cancel stops it only while it is still
 * queued, so the request's memory stays with its owner until its callback, which sees that
 * nobody waits any more and discards or undoes the result (closes an fd an abandoned open
 * returned). While an abandoned request finishes, a hold (a runtime task that does nothing
 * but wait, uncancellably) keeps rem.run going, so when rem.run returns every fd it opened
 * is closed. The other side of that guarantee: a request libuv cannot stop once it runs
 * and that never ends by itself (a read of a pipe nobody writes to, an open of a FIFO with
 * no writer) keeps rem.run waiting; rem.fs is for files, streams are for pipes.
 *
 * The waiting task is found through its own list link, put in `waiting` while it waits: an
 * abort callback only gets the task, and the link is free while the task waits.
 */
#include "internal.h"

void rem__fsreq_init(rem_fsreq *r, rem_state *st, void (*abandon)(rem_fsreq *r)) {
  r->st = st;
  r->holding = 0;
  r->abandon = abandon;
  r->loop = st->loop;
  rem_list_init(&r->waiting);
  r->req.data = r;
}

static void abort_fsreq(rem_task_t *task) {
  rem_list_t *head = task->link.next;  /* the only node of a `waiting` list is the task */
  rem_fsreq *r = REM_CONTAINER_OF(head, rem_fsreq, waiting);
  rem_list_remove(&task->link);
  uv_cancel((uv_req_t *)&r->req);  /* fails once it runs: the callback then discards */
  rem__fsreq_hold(r);
  if (r->abandon) r->abandon(r);
}

int rem__fsreq_await(lua_State *L, rem_fsreq *r, rem_ltask *t, int cancellable,
                     lua_KContext ctx, lua_KFunction k) {
  rem_list_push_back(&r->waiting, &t->rt.link);
  rem_task_wait(&t->rt, cancellable ? abort_fsreq : NULL);
  return rem__await(L, t, ctx, k);
}

int rem__fsreq_waited(const rem_fsreq *r) {
  return !rem_list_empty(&r->waiting);
}

void rem__fsreq_wake(rem_fsreq *r) {
  if (rem_list_empty(&r->waiting)) return;
  rem_task_t *task = REM_CONTAINER_OF(r->waiting.next, rem_task_t, link);
  rem_task_wake(task, 0);  /* unlinks it */
}

void rem__fsreq_detach(rem_fsreq *r) {
  if (!rem_list_empty(&r->waiting)) rem_list_remove(r->waiting.next);
}

static void hold_run(rem_task_t *task) {
  rem_task_wait(task, NULL);  /* until rem__fsreq_release finishes it */
}

void rem__fsreq_hold(rem_fsreq *r) {
  /* Only rem.run waits for tasks: on a host's loop nothing needs holding, and the state
   * may be closing (lua_close) while the request finishes. */
  if (r->holding || !r->st->running) return;
  rem_task_init(&r->hold, &r->st->sched, NULL, hold_run);
  rem_task_start(&r->hold);
  r->holding = 1;
}

void rem__fsreq_release(rem_fsreq *r) {
  if (!r->holding) return;
  r->holding = 0;
  rem_task_finish(&r->hold, 0, 0);
}

void rem__push_fs_error(lua_State *L, int rc, const char *fname, const char *path) {
  rem__push_error(L, uv_err_name(rc), "%s: %s: %s", fname, path, uv_strerror(rc));
  lua_pushstring(L, path);
  lua_setfield(L, -2, "path");
}

int rem__fs_error(lua_State *L, int rc, const char *fname, const char *path) {
  rem__push_fs_error(L, rc, fname, path);
  return lua_error(L);
}
