#include "collection.h"

#include <stdlib.h>
#include <uv.h>

#include "list.h"

#define COLL(m) REM_CONTAINER_OF(m, rem_collection_t, manager)

static void drop(rem_collection_t *c, intptr_t payload) {
  if (payload && c->hooks && c->hooks->drop) c->hooks->drop(c, payload);
}

static void drop_one(intptr_t payload, void *ud) {
  drop(ud, payload);
}

static void clear(rem_collection_t *c, rem_errlist_t *list) {
  rem_errlist_clear(list, drop_one, c);
}

static void push(rem_collection_t *c, rem_errlist_t *list, int code, intptr_t payload) {
  if (rem_errlist_push(list, code, payload) != 0) drop(c, payload);  /* out of memory */
}

void rem_collection_init(rem_collection_t *c, const rem_collection_hooks_t *hooks) {
  rem_manager_init(&c->manager, &rem_collection_ops);
  c->hooks = hooks;
  c->children = NULL;
  c->nchildren = 0;
  c->slots = NULL;
  c->nslots = 0;
  c->pending = 0;
  c->phase = REM_COLLECTION_NONE;
  c->failing = 0;
  c->rollback = 0;
  c->err = 0;
  c->err_payload = 0;
  rem_errlist_init(&c->failures);
  rem_errlist_init(&c->cancels);
  c->data = NULL;
}

int rem_collection_set(rem_collection_t *c, rem_manager_t *const *children, size_t n) {
  rem_manager_state_t state = c->manager.state;
  if (state == REM_MANAGER_ACQUIRED || state == REM_MANAGER_RELEASING ||
      c->phase != REM_COLLECTION_NONE)
    return UV_EBUSY;
  c->children = children;
  c->nchildren = n;
  return 0;
}

void rem_collection_deinit(rem_collection_t *c) {
  free(c->slots);
  c->slots = NULL;
  c->nslots = 0;
  clear(c, &c->failures);
  clear(c, &c->cancels);
}

static void settle(rem_collection_t *c);

/* `pending` counts child operations in flight plus one for each loop over the slots that
 * is running: children may complete synchronously, and the collection must not settle (and
 * free its slots) under a loop. */
static void hold(rem_collection_t *c) {
  c->pending++;
}
static void unhold(rem_collection_t *c) {
  if (--c->pending == 0) settle(c);
}

/* ---- acquiring ------------------------------------------------------------------------ */

static void cancel_busy(rem_collection_t *c) {
  hold(c);
  for (size_t i = 0; i < c->nslots; i++)
    if (c->slots[i].busy) rem_manager_cancel(c->slots[i].child);
  unhold(c);
}

/* The first failure cancels the acquires still in progress (and stops the start loop). */
static void fail(rem_collection_t *c) {
  if (c->failing) return;
  c->failing = 1;
  cancel_busy(c);
}

static void on_acquired(rem_manager_t *child, int status, void *arg) {
  rem_collection_slot_t *s = arg;
  rem_collection_t *c = s->coll;
  s->busy = 0;
  if (status == 0) {
    s->acquired = 1;  /* even when failing: the rollback releases it */
  } else if (child->release_status != 0) {
    drop(c, child->acquire_payload);
    push(c, &c->failures, child->release_status, child->release_payload);
    fail(c);
  } else if (status == UV_ECANCELED) {
    push(c, &c->cancels, status, child->acquire_payload);
    fail(c);
  } else {
    push(c, &c->failures, status, child->acquire_payload);
    fail(c);
  }
  unhold(c);
}

void rem_collection_start_acquire(rem_collection_t *c) {
  clear(c, &c->failures);
  clear(c, &c->cancels);
  free(c->slots);
  c->slots = NULL;
  c->nslots = 0;
  size_t n = c->nchildren;
  if (n > 0) {
    c->slots = calloc(n, sizeof *c->slots);
    if (!c->slots) {
      rem_manager_done(&c->manager, UV_ENOMEM, 0);
      return;
    }
  }
  c->nslots = n;
  for (size_t i = 0; i < n; i++) {
    c->slots[i].coll = c;
    c->slots[i].child = c->children[i];
  }
  c->phase = REM_COLLECTION_ACQUIRING;
  c->failing = 0;
  c->rollback = 0;
  hold(c);
  for (size_t i = 0; i < n && !c->failing; i++) {
    rem_collection_slot_t *s = &c->slots[i];
    s->busy = 1;
    hold(c);
    int rc = rem_manager_acquire(s->child, on_acquired, s);
    if (rc) {
      /* Already acquired or busy elsewhere: a failure of this acquisition. */
      s->busy = 0;
      push(c, &c->failures, rc, 0);
      fail(c);
      unhold(c);
    }
  }
  unhold(c);
}

void rem_collection_cancel(rem_collection_t *c) {
  if (c->phase == REM_COLLECTION_ACQUIRING) cancel_busy(c);
}

/* ---- releasing ------------------------------------------------------------------------ */

static void on_released(rem_manager_t *child, int status, void *arg) {
  rem_collection_slot_t *s = arg;
  s->busy = 0;
  s->acquired = 0;
  s->status = status;
  s->payload = status ? child->release_payload : 0;
  unhold(s->coll);
}

void rem_collection_start_release(rem_collection_t *c, int err, intptr_t payload) {
  if (!c->rollback) {
    clear(c, &c->failures);
    clear(c, &c->cancels);
  }
  c->phase = REM_COLLECTION_RELEASING;
  c->err = err;
  c->err_payload = payload;
  /* A rollback releases each child with the failure that stopped the acquisition. */
  if (c->rollback && c->failures.len > 0) {
    err = c->failures.items[0].code;
    payload = c->failures.items[0].payload;
  } else if (c->rollback && c->cancels.len > 0) {
    err = c->cancels.items[0].code;
    payload = c->cancels.items[0].payload;
  }
  hold(c);
  for (size_t i = 0; i < c->nslots; i++) {
    rem_collection_slot_t *s = &c->slots[i];
    s->status = 0;
    s->payload = 0;
    if (!s->acquired) continue;
    s->busy = 1;
    hold(c);
    int rc = rem_manager_release(s->child, err, payload, on_released, s);
    if (rc) {
      /* Released behind the collection's back: report it, in its place. */
      s->busy = 0;
      s->acquired = 0;
      s->status = rc;
      unhold(c);
    }
  }
  unhold(c);
}

/* ---- the end of a step ---------------------------------------------------------------- */

static intptr_t fold(rem_collection_t *c, intptr_t context) {
  if (!c->hooks || !c->hooks->fold) return 0;  /* the list stays for the caller to read */
  intptr_t payload = c->hooks->fold(c, &c->failures, context);
  rem_errlist_clear(&c->failures, NULL, NULL);  /* the fold took the payloads */
  return payload;
}

static void settle_acquire(rem_collection_t *c) {
  c->phase = REM_COLLECTION_NONE;
  if (!c->failing) {
    rem_manager_done(&c->manager, 0, 0);
    return;
  }
  c->rollback = 1;
  int status = c->failures.len ? c->failures.items[0].code : UV_ECANCELED;
  rem_manager_done(&c->manager, status, 0);  /* the manager goes on with the rollback */
}

static void settle_release(rem_collection_t *c) {
  size_t acquire_failures = c->failures.len;
  for (size_t i = 0; i < c->nslots; i++)
    if (c->slots[i].status) push(c, &c->failures, c->slots[i].status, c->slots[i].payload);
  free(c->slots);
  c->slots = NULL;
  c->nslots = 0;
  c->phase = REM_COLLECTION_NONE;
  int rollback = c->rollback;
  c->rollback = 0;
  c->failing = 0;
  int status = 0;
  intptr_t payload = 0;
  if (rollback && c->failures.len == 0 && c->cancels.len > 0) {
    /* Only cancelled, and rolled back cleanly: the cancellation itself propagates. */
    status = UV_ECANCELED;
    payload = c->cancels.items[0].payload;
    c->cancels.items[0].payload = 0;
  } else if (c->failures.len > 0) {
    status = c->failures.items[0].code;
    intptr_t context = c->err_payload;
    if (rollback)  /* the acquire failures are listed; a lone cancellation is the context */
      context = acquire_failures == 0 && c->cancels.len > 0 ? c->cancels.items[0].payload : 0;
    payload = fold(c, context);
  }
  clear(c, &c->cancels);
  c->err = 0;
  c->err_payload = 0;
  rem_manager_done(&c->manager, status, payload);
}

static void settle(rem_collection_t *c) {
  if (c->phase == REM_COLLECTION_ACQUIRING)
    settle_acquire(c);
  else if (c->phase == REM_COLLECTION_RELEASING)
    settle_release(c);
}

/* ---- default ops ---------------------------------------------------------------------- */

static void ops_acquire(rem_manager_t *m) {
  rem_collection_start_acquire(COLL(m));
}
static void ops_release(rem_manager_t *m, int err, intptr_t payload) {
  rem_collection_start_release(COLL(m), err, payload);
}
static void ops_cancel(rem_manager_t *m) {
  rem_collection_cancel(COLL(m));
}

const rem_manager_ops_t rem_collection_ops = {ops_acquire, ops_release, ops_cancel, NULL};
