#include "manager.h"

#include <uv.h>

void rem_manager_init(rem_manager_t *m, const rem_manager_ops_t *ops) {
  m->ops = ops;
  m->state = REM_MANAGER_IDLE;
  m->cb = NULL;
  m->cb_arg = NULL;
  m->error = 0;
  m->error_payload = 0;
  m->acquire_status = 0;
  m->acquire_payload = 0;
  m->release_status = 0;
  m->release_payload = 0;
  m->attempts = 0;
  m->releases = 0;
  m->data = NULL;
}

static int busy(const rem_manager_t *m) {
  return m->state == REM_MANAGER_ACQUIRING || m->state == REM_MANAGER_RELEASING;
}

int rem_manager_acquire(rem_manager_t *m, rem_manager_cb cb, void *arg) {
  if (m->state == REM_MANAGER_ACQUIRED) return UV_EALREADY;
  if (busy(m)) return UV_EBUSY;
  m->state = REM_MANAGER_ACQUIRING;
  m->cb = cb;
  m->cb_arg = arg;
  m->error = 0;
  m->error_payload = 0;
  m->acquire_status = m->release_status = 0;
  m->acquire_payload = m->release_payload = 0;
  m->attempts++;
  m->ops->acquire(m);
  return 0;
}

static void start_release(rem_manager_t *m, int err, intptr_t payload) {
  m->state = REM_MANAGER_RELEASING;
  m->error = err;
  m->error_payload = payload;
  m->ops->release(m, err, payload);
}

int rem_manager_release(rem_manager_t *m, int err, intptr_t payload, rem_manager_cb cb,
                        void *arg) {
  if (m->state == REM_MANAGER_IDLE) return UV_EINVAL;
  if (busy(m)) return UV_EBUSY;
  m->cb = cb;
  m->cb_arg = arg;
  m->acquire_status = m->release_status = 0;
  m->acquire_payload = m->release_payload = 0;
  start_release(m, err, payload);
  return 0;
}

void rem_manager_cancel(rem_manager_t *m) {
  if (m->state == REM_MANAGER_ACQUIRING && m->ops->cancel) m->ops->cancel(m);
}

/* The state is final before anyone is told, so the callback may start the next operation;
 * nothing touches `m` after it (the callback may free it). */
static void complete(rem_manager_t *m, int status) {
  rem_manager_cb cb = m->cb;
  void *arg = m->cb_arg;
  m->cb = NULL;
  m->cb_arg = NULL;
  if (m->ops->settled) m->ops->settled(m, status);
  if (cb) cb(m, status, arg);
}

int rem_manager_done(rem_manager_t *m, int status, intptr_t payload) {
  switch (m->state) {
  case REM_MANAGER_ACQUIRING:
    if (status == 0) {
      m->state = REM_MANAGER_ACQUIRED;
      complete(m, 0);
      return 0;
    }
    /* A failed (or cancelled) acquire is released on the error path before anyone hears of
     * it: the attempt may have acquired part of its resources. */
    m->acquire_status = status;
    m->acquire_payload = payload;
    start_release(m, status, payload);
    return 0;
  case REM_MANAGER_RELEASING:
    m->state = REM_MANAGER_IDLE;
    m->release_status = status;
    m->release_payload = payload;
    m->error = 0;
    m->error_payload = 0;
    m->releases++;
    complete(m, m->acquire_status ? m->acquire_status : status);
    return 0;
  default:
    return UV_EINVAL;
  }
}
