#include "collection.h"

#include <stdlib.h>
#include <uv.h>

#include "list.h"

#define COLL(m) REM_CONTAINER_OF(m, rem_collection_t, manager)
#define COLL_OF_POOL(p) REM_CONTAINER_OF(p, rem_collection_t, pool)
#define SLOT(m) REM_CONTAINER_OF(m, rem_collection_slot_t, member)

static void drop(rem_collection_t *c, intptr_t payload) {
  if (payload && c->hooks && c->hooks->drop) c->hooks->drop(c, payload);
}

static void drop_one(intptr_t payload, void *ud) {
  drop(ud, payload);
}

/* ---- the pool's hooks: the collection's, or the list kept in `failures` ----------------- */

static intptr_t pool_fold(rem_pool_t *p, rem_errlist_t *errors, intptr_t context) {
  rem_collection_t *c = COLL_OF_POOL(p);
  if (c->hooks && c->hooks->fold) return c->hooks->fold(c, errors, context);
  rem_errlist_clear(&c->failures, drop_one, c);
  c->failures = *errors;  /* stays readable until the next operation */
  rem_errlist_init(errors);
  return 0;
}

static void pool_drop(rem_pool_t *p, intptr_t payload) {
  drop(COLL_OF_POOL(p), payload);
}

static const rem_pool_hooks_t pool_hooks = {pool_fold, pool_drop};

/* ---- a child as a pool member --------------------------------------------------------- */

static void on_child_acquired(rem_manager_t *child, int status, void *arg) {
  rem_pool_member_t *m = &((rem_collection_slot_t *)arg)->member;
  if (status == 0) {
    rem_pool_entered(m, 0, 0);
  } else if (child->release_status != 0) {
    /* Its release on error failed: that failure stands for both. */
    drop(COLL_OF_POOL(m->pool), child->acquire_payload);
    rem_pool_entered(m, child->release_status, child->release_payload);
  } else {
    rem_pool_entered(m, status, child->acquire_payload);
  }
}

static void on_child_released(rem_manager_t *child, int status, void *arg) {
  rem_pool_exited(&((rem_collection_slot_t *)arg)->member, status,
                  status ? child->release_payload : 0, 0);
}

static void child_enter(rem_pool_member_t *m) {
  rem_collection_slot_t *s = SLOT(m);
  int rc = rem_manager_acquire(s->child, on_child_acquired, s);
  if (rc) rem_pool_entered(m, rc, 0);  /* already acquired or busy elsewhere */
}

static void child_exit(rem_pool_member_t *m, int err, intptr_t payload) {
  rem_collection_slot_t *s = SLOT(m);
  int rc = rem_manager_release(s->child, err, payload, on_child_released, s);
  if (rc) rem_pool_exited(m, rc, 0, 0);  /* released behind the collection's back */
}

static void child_cancel(rem_pool_member_t *m) {
  rem_manager_cancel(SLOT(m)->child);
}

static const rem_pool_member_ops_t child_ops = {child_enter, child_exit, child_cancel};

/* ---- the collection ------------------------------------------------------------------- */

void rem_collection_init(rem_collection_t *c, const rem_collection_hooks_t *hooks) {
  rem_manager_init(&c->manager, &rem_collection_ops);
  c->hooks = hooks;
  c->children = NULL;
  c->nchildren = 0;
  rem_pool_init(&c->pool, &pool_hooks);
  c->pool.time_order = 1;
  c->slots = NULL;
  c->nslots = 0;
  c->rollback = 0;
  c->rollback_status = 0;
  c->rollback_payload = 0;
  rem_errlist_init(&c->failures);
  c->data = NULL;
}

int rem_collection_set(rem_collection_t *c, rem_manager_t *const *children, size_t n) {
  rem_manager_state_t state = c->manager.state;
  if (state == REM_MANAGER_ACQUIRED || state == REM_MANAGER_RELEASING ||
      c->pool.state != REM_POOL_IDLE)
    return UV_EBUSY;
  c->children = children;
  c->nchildren = n;
  return 0;
}

static void free_slots(rem_collection_t *c) {
  free(c->slots);
  c->slots = NULL;
  c->nslots = 0;
  rem_pool_set(&c->pool, NULL, 0);
}

void rem_collection_deinit(rem_collection_t *c) {
  free_slots(c);
  rem_pool_deinit(&c->pool);
  rem_errlist_clear(&c->failures, drop_one, c);
  drop(c, c->rollback_payload);
  c->rollback = 0;
  c->rollback_payload = 0;
}

static void on_entered(rem_pool_t *p, int status, intptr_t payload, void *arg) {
  (void)p;
  rem_collection_t *c = arg;
  if (status == 0) {
    rem_manager_done(&c->manager, 0, 0);
    return;
  }
  /* The pool has rolled back already; the manager goes on with its release on error,
   * which reports the rollback's outcome. */
  c->rollback = 1;
  c->rollback_status = status;
  c->rollback_payload = payload;
  rem_manager_done(&c->manager, status, 0);
}

void rem_collection_start_acquire(rem_collection_t *c) {
  rem_errlist_clear(&c->failures, drop_one, c);
  free_slots(c);
  size_t n = c->nchildren;
  if (n > 0) {
    /* The slots and the pool's pointers to them, in one block. */
    c->slots = malloc(n * (sizeof *c->slots + sizeof(rem_pool_member_t *)));
    if (!c->slots) {
      rem_manager_done(&c->manager, UV_ENOMEM, 0);
      return;
    }
  }
  rem_pool_member_t **members = n ? (rem_pool_member_t **)(c->slots + n) : NULL;
  for (size_t i = 0; i < n; i++) {
    rem_pool_member_init(&c->slots[i].member, &child_ops);
    c->slots[i].child = c->children[i];
    members[i] = &c->slots[i].member;
  }
  c->nslots = n;
  c->rollback = 0;
  rem_pool_set(&c->pool, members, n);
  rem_pool_enter(&c->pool, on_entered, c);
}

void rem_collection_cancel(rem_collection_t *c) {
  rem_pool_cancel(&c->pool);
}

static void on_exited(rem_pool_t *p, int status, intptr_t payload, void *arg) {
  (void)p;
  rem_collection_t *c = arg;
  free_slots(c);
  rem_manager_done(&c->manager, status, payload);
}

void rem_collection_start_release(rem_collection_t *c, int err, intptr_t payload) {
  if (c->rollback) {
    intptr_t outcome = c->rollback_payload;
    c->rollback = 0;
    c->rollback_payload = 0;
    free_slots(c);
    rem_manager_done(&c->manager, c->rollback_status, outcome);
    return;
  }
  rem_errlist_clear(&c->failures, drop_one, c);
  if (c->pool.state != REM_POOL_ENTERED) {
    /* Nothing was acquired (the embedder's acquire failed before it started). */
    free_slots(c);
    rem_manager_done(&c->manager, 0, 0);
    return;
  }
  rem_pool_exit(&c->pool, err, payload, on_exited, c);
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
