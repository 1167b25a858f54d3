/* Collections (aiorem's ResourceManagerCollection): a manager over child managers.
 *
 * Acquiring acquires every child concurrently. When one fails, the acquires still in
 * progress are cancelled (rem_manager_cancel); once all have ended, the collection's own
 * acquire fails and its release on error rolls back the children that did acquire (each
 * released on the error path with the first failure). Releasing releases every acquired
 * child concurrently; a failing child does not stop the others.
 *
 * The failures of one operation are kept in `failures`: the acquire failures in the order
 * they happened, then the release failures in children order. Cancellations are absorbed
 * when something else failed; when nothing else did, the collection fails with
 * UV_ECANCELED and the first cancellation's payload (it was cancelled, not broken). A
 * child whose release on error failed reports that failure only (its acquire failure is
 * dropped: the embedder's release failure is expected to carry it, as Lua's context does).
 *
 * A failed operation reports the first failure's code. Its payload is what the fold hook
 * makes of the list (the Lua bindings build an rem.ErrorGroup); without a fold hook it is 0
 * and the list stays readable in `failures` until the next operation. A failed acquire
 * itself reports payload 0: the failures are folded into the payload of the rollback that
 * follows, so that rollback failures join them.
 */
#ifndef REM_COLLECTION_H
#define REM_COLLECTION_H

#include <stddef.h>
#include <stdint.h>

#include "errlist.h"
#include "manager.h"

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

/* One child in the current acquisition. */
typedef struct rem_collection_slot {
  rem_collection_t *coll;
  rem_manager_t *child;
  int acquired;       /* acquired by this collection, not released yet */
  int busy;           /* an operation on the child is in progress */
  int status;         /* how its release ended */
  intptr_t payload;
} rem_collection_slot_t;

enum { REM_COLLECTION_NONE, REM_COLLECTION_ACQUIRING, REM_COLLECTION_RELEASING };

struct rem_collection {
  rem_manager_t manager;           /* acquire and release the collection through it */
  const rem_collection_hooks_t *hooks;
  rem_manager_t *const *children;  /* for the next acquisition (rem_collection_set) */
  size_t nchildren;
  rem_collection_slot_t *slots;    /* the current acquisition's children (allocated) */
  size_t nslots;
  size_t pending;                  /* child operations in flight, +1 while a loop runs */
  int phase;
  int failing;                     /* the acquisition failed: the rest are cancelled */
  int rollback;                    /* the next release rolls back a failed acquisition */
  int err;                         /* the error the release runs for */
  intptr_t err_payload;
  rem_errlist_t failures;
  rem_errlist_t cancels;           /* absorbed cancellations */
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
