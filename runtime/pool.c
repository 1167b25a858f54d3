#include "pool.h"

#include <stdint.h>
#include <uv.h>

static void drop(rem_pool_t *p, intptr_t payload) {
  if (payload && p->hooks && p->hooks->drop) p->hooks->drop(p, payload);
}

static void drop_one(intptr_t payload, void *ud) {
  drop(ud, payload);
}

static void push(rem_pool_t *p, int code, intptr_t payload) {
  if (rem_errlist_push(&p->failures, code, payload) == 0) return;
  drop(p, payload);  /* out of memory: the failure is lost, its code still reported */
  if (p->first.payload == payload) p->first.payload = 0;
}

void rem_pool_member_init(rem_pool_member_t *m, const rem_pool_member_ops_t *ops) {
  m->ops = ops;
  m->pool = NULL;
  m->status = 0;
  m->payload = 0;
  m->entered = m->busy = m->cancelled = m->suppressed = 0;
  m->data = NULL;
}

void rem_pool_init(rem_pool_t *p, const rem_pool_hooks_t *hooks) {
  p->hooks = hooks;
  p->members = NULL;
  p->n = 0;
  p->state = REM_POOL_IDLE;
  p->time_order = 0;
  p->suppressed = 0;
  p->exit_err = 0;
  p->exit_payload = 0;
  rem_errlist_init(&p->failures);
  p->pending = 0;
  p->failing = 0;
  p->rollback = 0;
  p->enter_failures = 0;
  p->first = (rem_err_t){0, 0};
  p->cancel = (rem_err_t){0, 0};
  p->refused = SIZE_MAX;
  p->cb = NULL;
  p->cb_arg = NULL;
  p->data = NULL;
}

int rem_pool_set(rem_pool_t *p, rem_pool_member_t *const *members, size_t n) {
  if (p->state != REM_POOL_IDLE) return UV_EBUSY;
  p->members = members;
  p->n = n;
  return 0;
}

void rem_pool_deinit(rem_pool_t *p) {
  rem_errlist_clear(&p->failures, drop_one, p);
  drop(p, p->cancel.payload);
  p->cancel = (rem_err_t){0, 0};
}

static void settle(rem_pool_t *p);

/* `pending` counts member ops in flight plus one for each loop over the members that is
 * running: members may complete synchronously, and the pool must not settle (and call back
 * an embedder that may free it) under a loop. */
static void hold(rem_pool_t *p) {
  p->pending++;
}
static void unhold(rem_pool_t *p) {
  if (--p->pending == 0) settle(p);
}

/* The state is final before anyone is told, so the callback may start the next operation;
 * nothing touches `p` after it. */
static void complete(rem_pool_t *p, rem_pool_state_t state, int status, intptr_t payload) {
  rem_pool_cb cb = p->cb;
  void *arg = p->cb_arg;
  p->state = state;
  p->cb = NULL;
  p->cb_arg = NULL;
  p->exit_err = 0;
  p->exit_payload = 0;
  if (cb) cb(p, status, payload, arg);
}

/* ---- entering ------------------------------------------------------------------------- */

static void cancel_busy(rem_pool_t *p) {
  hold(p);
  for (size_t i = 0; i < p->n; i++) {
    rem_pool_member_t *m = p->members[i];
    if (!m->busy || m->entered || m->cancelled || m->pool != p) continue;
    m->cancelled = 1;
    if (m->ops->cancel) m->ops->cancel(m);
  }
  unhold(p);
}

/* The first failure cancels the enters still in progress (and stops the start loop). */
static void fail(rem_pool_t *p) {
  if (p->failing) return;
  p->failing = 1;
  cancel_busy(p);
}

/* A failed enter (m NULL: the member at p->refused, which another pool holds): a cancellation
 * is kept if it is the first, else absorbed; a failure is listed now (time order) or when
 * the enter settles (member order). */
static void enter_failed(rem_pool_t *p, rem_pool_member_t *m, int status, intptr_t payload) {
  if (m) {
    m->status = status;
    m->payload = 0;
  }
  if (status == UV_ECANCELED) {
    if (p->cancel.code == 0)
      p->cancel = (rem_err_t){status, payload};
    else
      drop(p, payload);
  } else {
    if (p->first.code == 0) p->first = (rem_err_t){status, payload};
    if (p->time_order)
      push(p, status, payload);
    else if (m)
      m->payload = payload;
  }
  fail(p);
}

int rem_pool_entered(rem_pool_member_t *m, int status, intptr_t payload) {
  rem_pool_t *p = m->pool;
  if (!p || !m->busy || m->entered || p->state != REM_POOL_ENTERING || p->rollback)
    return UV_EINVAL;
  m->busy = 0;
  /* m->pool stays set until the pool settles: it marks the members of this operation. */
  if (status == 0) {
    m->entered = 1;  /* even when failing: the rollback exits it */
    m->status = 0;
  } else {
    enter_failed(p, m, status, payload);
  }
  unhold(p);
  return 0;
}

/* An operation starts: the previous one's failures go (a fold-less embedder had them). */
static void begin(rem_pool_t *p, rem_pool_state_t state, rem_pool_cb cb, void *arg) {
  rem_errlist_clear(&p->failures, drop_one, p);
  p->state = state;
  p->cb = cb;
  p->cb_arg = arg;
  p->failing = 0;
  p->rollback = 0;
  p->suppressed = 0;
  p->enter_failures = 0;
}

int rem_pool_enter(rem_pool_t *p, rem_pool_cb cb, void *arg) {
  if (p->state == REM_POOL_ENTERED) return UV_EALREADY;
  if (p->state != REM_POOL_IDLE) return UV_EBUSY;
  begin(p, REM_POOL_ENTERING, cb, arg);
  p->first = (rem_err_t){0, 0};
  p->cancel = (rem_err_t){0, 0};
  p->refused = SIZE_MAX;
  hold(p);
  for (size_t i = 0; i < p->n && !p->failing; i++) {
    rem_pool_member_t *m = p->members[i];
    if (m->pool) {  /* in another pool's hands, or listed twice: not ours to touch */
      p->refused = i;
      enter_failed(p, NULL, UV_EBUSY, 0);
      continue;
    }
    m->pool = p;
    m->busy = 1;
    m->entered = m->cancelled = m->suppressed = 0;
    m->status = 0;
    m->payload = 0;
    hold(p);
    m->ops->enter(m);
  }
  unhold(p);
  return 0;
}

void rem_pool_cancel(rem_pool_t *p) {
  if (p->state == REM_POOL_ENTERING && !p->rollback) cancel_busy(p);
}

/* ---- exiting -------------------------------------------------------------------------- */

int rem_pool_exited(rem_pool_member_t *m, int status, intptr_t payload, int suppressed) {
  rem_pool_t *p = m->pool;
  if (!p || !m->busy || !m->entered) return UV_EINVAL;
  m->busy = 0;
  m->entered = 0;
  m->status = status;
  m->payload = status ? payload : 0;
  m->suppressed = status == 0 && suppressed;
  unhold(p);
  return 0;
}

/* Exits every entered member with (err, payload); the pool's state says what for. */
static void start_exits(rem_pool_t *p, int err, intptr_t payload) {
  p->exit_err = err;
  p->exit_payload = payload;
  hold(p);
  for (size_t i = 0; i < p->n; i++) {
    rem_pool_member_t *m = p->members[i];
    if (!m->entered || m->busy || m->pool != p) continue;
    m->busy = 1;
    m->status = 0;
    m->payload = 0;
    m->suppressed = 0;
    hold(p);
    m->ops->exit(m, err, payload);
  }
  unhold(p);
}

int rem_pool_exit(rem_pool_t *p, int err, intptr_t payload, rem_pool_cb cb, void *arg) {
  if (p->state == REM_POOL_IDLE) return UV_EINVAL;
  if (p->state != REM_POOL_ENTERED) return UV_EBUSY;
  begin(p, REM_POOL_EXITING, cb, arg);
  start_exits(p, err, payload);
  return 0;
}

/* ---- the end of a step ---------------------------------------------------------------- */

static intptr_t fold(rem_pool_t *p, intptr_t context) {
  if (!p->hooks || !p->hooks->fold) return 0;  /* the list stays for the caller to read */
  intptr_t payload = p->hooks->fold(p, &p->failures, context);
  rem_errlist_clear(&p->failures, NULL, NULL);  /* the fold took the payloads */
  return payload;
}

static void settle_enter(rem_pool_t *p) {
  if (!p->failing) {
    complete(p, REM_POOL_ENTERED, 0, 0);
    return;
  }
  /* The members that failed are done with: listed (member order) and let go. */
  for (size_t i = 0; i < p->n; i++) {
    rem_pool_member_t *m = p->members[i];
    if (i == p->refused && !p->time_order) push(p, UV_EBUSY, 0);
    if (m->pool != p || m->entered || m->busy) continue;
    m->pool = NULL;
    if (!p->time_order && m->status != UV_ECANCELED) push(p, m->status, m->payload);
    m->payload = 0;
  }
  p->enter_failures = p->failures.len;
  p->rollback = 1;
  /* The members that entered are rolled back with the failure that stopped the enter. */
  rem_err_t why = p->first.code ? p->first : p->cancel;
  start_exits(p, why.code, why.payload);
}

static void settle_exit(rem_pool_t *p) {
  int all_suppressed = 1;
  for (size_t i = 0; i < p->n; i++) {
    rem_pool_member_t *m = p->members[i];
    if (m->pool != p || m->busy) continue;  /* not exited by this operation */
    m->pool = NULL;
    if (m->status) {
      push(p, m->status, m->payload);
      m->payload = 0;
    } else if (!m->suppressed) {
      all_suppressed = 0;
    }
  }
  int rollback = p->rollback;
  p->rollback = 0;
  p->failing = 0;
  int status = 0;
  intptr_t payload = 0;
  rem_err_t cancel = p->cancel;
  p->cancel = (rem_err_t){0, 0};
  if (rollback && p->failures.len == 0) {
    /* Only cancelled, and rolled back cleanly: the cancellation itself propagates. */
    status = cancel.code;
    payload = cancel.payload;
    cancel.payload = 0;
  } else if (p->failures.len > 0) {
    status = p->failures.items[0].code;
    intptr_t context = p->exit_payload;
    if (rollback)  /* the enter failures are listed; a lone cancellation is the context */
      context = p->enter_failures == 0 ? cancel.payload : 0;
    payload = fold(p, context);
  } else {
    p->suppressed = p->exit_err != 0 && p->n > 0 && all_suppressed;
  }
  drop(p, cancel.payload);
  complete(p, REM_POOL_IDLE, status, payload);
}

static void settle(rem_pool_t *p) {
  if (p->state == REM_POOL_ENTERING && !p->rollback)
    settle_enter(p);
  else
    settle_exit(p);
}
