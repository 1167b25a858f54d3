/* Collections (aiorem's ResourceManagerCollection): a manager over child managers.
 *
 * A collection is an exit pool (runtime/pool.h) whose members are its children: acquiring
 * enters the pool (every child acquired concurrently; when one fails, the acquires still in
 * progress are cancelled with rem_manager_cancel and the children that did acquire are
 * released on the error path with the first failure), releasing exits it (every acquired
 * child released concurrently; a failing child does not stop the others). This file only
 * adapts managers to the pool's member ops and the pool's outcome to the manager's state
 * machine; the rules are the pool's.
 *
 * The failures of one operation: the acquire failures in the order they happened, then the
 * release failures in children order. Cancellations are absorbed when something else
 * failed; when nothing else did, the collection fails with UV_ECANCELED and the first
 * cancellation's payload (it was cancelled, not broken). A child whose release on error
 * failed reports that failure only (its acquire failure is dropped: the embedder's release
 * failure is expected to carry it, as Lua's context does).
 *
 * A failed operation reports the first failure's code. Its payload is what the fold hook
 * makes of the list (the Lua bindings build an rem.ErrorGroup); without a fold hook it is 0
 * and the list stays readable in `failures` until the next operation. A failed acquire
 * itself reports payload 0: the rollback has already run (inside the acquire), and its
 * outcome, the failures folded into one payload, is what the release on error that the
 * manager runs next reports.
 */
#ifndef REM_COLLECTION_H
#define REM_COLLECTION_H

#include <stddef.h>
#include <stdint.h>

#include "errlist.h"
#include "manager.h"
#include "pool.h"

typedef struct rem_collection rem_collection_t;

typedef struct rem_collection_hooks {
  /* Makes one payload of the failures of an operation; takes over the payloads in
   * `errors`. `context`: the error the release ran for (borrowed), or 0 (none, or a rollback,
   * whose list holds the acquire failures themselves). May be NULL. */
  intptr_t (*fold)(rem_collection_t *c, const rem_errlist_t *errors, intptr_t context);
  /* Frees a payload the collection will not report (absorbed cancellations, superseded
   * acquire failures). May be NULL. */
  void (*drop)(rem_collection_t *c, intptr_t payload);
} rem_collection_hooks_t;

/* One child in the current acquisition: a pool member driving the child's manager. */
typedef struct rem_collection_slot {
  rem_pool_member_t member;
  rem_manager_t *child;
} rem_collection_slot_t;

struct rem_collection {
  rem_manager_t manager;           /* acquire and release the collection through it */
  const rem_collection_hooks_t *hooks;
  rem_manager_t *const *children;  /* for the next acquisition (rem_collection_set) */
  size_t nchildren;
  rem_pool_t pool;                 /* the children of the current acquisition */
  rem_collection_slot_t *slots;    /* ... as members (allocated with the pointers to them) */
  size_t nslots;
  int rollback;                    /* the acquire failed: the rollback's outcome, for the */
  int rollback_status;             /* release on error that follows */
  intptr_t rollback_payload;
  rem_errlist_t failures;          /* without a fold hook: the last operation's failures */
  void *data;                      /* the embedder's */
};

/* The ops rem_collection_init installs on `c->manager`. An embedder may install its own
 * (to run code around the steps) that call the three functions below. */
extern const rem_manager_ops_t rem_collection_ops;

/* Initialises an idle collection with no children; `hooks` may be NULL. */
void rem_collection_init(rem_collection_t *c, const rem_collection_hooks_t *hooks);
/* Sets the children of the next acquisition: while idle, or from a custom acquire op before
 * it calls rem_collection_start_acquire. The array is read when the acquisition starts (the
 * managers must outlive their release). Returns UV_EBUSY once the acquisition has started. */
int rem_collection_set(rem_collection_t *c, rem_manager_t *const *children, size_t n);
/* Frees what the collection holds (children left acquired stay so). */
void rem_collection_deinit(rem_collection_t *c);

/* The steps behind rem_collection_ops; each ends with rem_manager_done(&c->manager, ...). */
void rem_collection_start_acquire(rem_collection_t *c);
void rem_collection_start_release(rem_collection_t *c, int err, intptr_t payload);
void rem_collection_cancel(rem_collection_t *c);

#endif
