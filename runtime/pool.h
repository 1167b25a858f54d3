/* Exit pools (gather_cm): enter many members concurrently, exit them concurrently.
 *
 *   idle --enter--> entering --all entered--> entered --exit--> exiting --> idle
 *                      |                                           ^
 *                      +--one failed: cancel the pending enters, roll back (exit) the
 *                         members that entered, with the first failure; the enter fails
 *
 * A member is anything with three ops (rem_pool_member_ops_t): enter, exit(err) and an
 * optional cancel of an enter in progress. Each op starts the work and returns; the work ends
 * with rem_pool_entered / rem_pool_exited, called from inside the op (synchronous) or later
 * from any callback (a libuv timer, a task). C members need nothing else: no task, no Lua.
 * The Lua bindings make Lua values members by running their enter and exit in a task each;
 * runtime/collection.c makes managers members (a collection is a pool of managers).
 *
 * The rules, for enter and exit alike:
 *  - every op of one pool operation is started before the pool waits for any (a member
 *    that fails synchronously stops the starting: the rest are never entered);
 *  - a member whose enter failed is not exited (its enter cleaned up after itself);
 *  - when an enter fails, the enters in progress are cancelled (each member at most once),
 *    and once all have ended, the members that entered are exited with the first failure
 *    (in time). The pool's enter then fails with the first failure's code and a payload
 *    made by the fold hook from the list of failures: the enter failures (in member order,
 *    or in the order they happened with `time_order`), then the rollback's exit failures in
 *    member order;
 *  - cancellations are absorbed when something else failed; when nothing else did, the
 *    enter fails with UV_ECANCELED and the first cancellation's payload (the pool was
 *    cancelled, not broken; a rollback failure then gets that cancellation as context);
 *  - exiting gives every member the same error (code 0: none); the failures, in member
 *    order, fail the exit (the fold hook gets the error in flight as context). The exit
 *    suppresses the error (`suppressed`) only if one came in, there are members, none
 *    failed and every one suppressed.
 *
 * Payloads are opaque (the Lua bindings store registry references to error values); who
 * owns them is said below. Memory is the caller's: members and the array of pointers to
 * them; the pool allocates only its list of failures.
 */
#ifndef REM_POOL_H
#define REM_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "errlist.h"

typedef struct rem_pool rem_pool_t;
typedef struct rem_pool_member rem_pool_member_t;

typedef struct rem_pool_member_ops {
  /* Starts entering. Ends with rem_pool_entered(m, status, payload). */
  void (*enter)(rem_pool_member_t *m);
  /* Starts exiting with the error in flight: `err` 0 for none, else its code, and `payload`
   * describing it (borrowed until this exit ends; also in m->pool->exit_err/payload). Ends
   * with rem_pool_exited. Not called for a member whose enter failed. */
  void (*exit)(rem_pool_member_t *m, int err, intptr_t payload);
  /* Optional: asks an enter in progress to stop early; called at most once per enter. The
   * enter still ends with rem_pool_entered (usually UV_ECANCELED), now or later. */
  void (*cancel)(rem_pool_member_t *m);
} rem_pool_member_ops_t;

struct rem_pool_member {
  const rem_pool_member_ops_t *ops;
  rem_pool_t *pool;       /* the pool whose operations hold it, from its enter until the
                             operation that ends it (failed enter, exit) settles; NULL: free */
  int status;             /* how its latest op ended */
  intptr_t payload;       /* ... a failure's payload, while the pool holds it */
  unsigned entered : 1;
  unsigned busy : 1;      /* an op is in progress */
  unsigned cancelled : 1; /* its enter was asked to stop */
  unsigned suppressed : 1;/* its latest exit suppressed the error */
  void *data;             /* the embedder's */
};

typedef struct rem_pool_hooks {
  /* Makes one payload of the failures of an operation (the Lua bindings build an
   * rem.ErrorGroup). Takes over the payloads in `errors`; may take the list itself (moving
   * it out and leaving `errors` empty). `context`: the error the exit ran for, or the
   * cancellation that stopped the enter (borrowed), or 0. May be NULL: the list then stays
   * readable in `failures` until the next operation, and the payload reported is 0. */
  intptr_t (*fold)(rem_pool_t *p, rem_errlist_t *errors, intptr_t context);
  /* Frees a payload the pool will not report (absorbed cancellations). May be NULL. */
  void (*drop)(rem_pool_t *p, intptr_t payload);
} rem_pool_hooks_t;

/* The completion of rem_pool_enter / rem_pool_exit: `status` 0 or the failure's code;
 * `payload` (now the callee's) describes a failure. The pool is idle or entered again, and
 * may be entered, exited or deinitialised from inside the callback. */
typedef void (*rem_pool_cb)(rem_pool_t *p, int status, intptr_t payload, void *arg);

typedef enum rem_pool_state {
  REM_POOL_IDLE,
  REM_POOL_ENTERING,   /* also while rolling back a failed enter */
  REM_POOL_ENTERED,
  REM_POOL_EXITING
} rem_pool_state_t;

struct rem_pool {
  const rem_pool_hooks_t *hooks;
  rem_pool_member_t *const *members;
  size_t n;
  rem_pool_state_t state;
  int time_order;         /* list enter failures in the order they happened */
  int suppressed;         /* the latest exit suppressed the error that came in */
  int exit_err;           /* the error the exits in progress run for, and its payload */
  intptr_t exit_payload;
  rem_errlist_t failures;
  /* Internal. */
  size_t pending;         /* ops in flight, +1 while a loop over the members runs */
  int failing;            /* an enter failed: the rest are cancelled, then a rollback */
  int rollback;           /* the exits in progress roll back a failed enter */
  size_t enter_failures;  /* how many of `failures` are the enter's */
  rem_err_t first;        /* the first enter failure (borrowed from `failures`) */
  rem_err_t cancel;       /* the first cancellation (owned) */
  size_t refused;         /* the member found in another pool's hands, or SIZE_MAX */
  rem_pool_cb cb;
  void *cb_arg;
  void *data;             /* the embedder's */
};

/* Initialises a member (idle); `ops` (enter and exit required) must outlive it. */
void rem_pool_member_init(rem_pool_member_t *m, const rem_pool_member_ops_t *ops);
/* Ends the member's enter: `status` 0 (entered) or how it failed, with `payload` (handed
 * over). Returns UV_EINVAL when the member is not entering. */
int rem_pool_entered(rem_pool_member_t *m, int status, intptr_t payload);
/* Ends the member's exit: `status` 0 (then `suppressed`: it swallowed the error) or how it
 * failed, with `payload` (handed over). Either way the member is no longer entered.
 * Returns UV_EINVAL when the member is not exiting. */
int rem_pool_exited(rem_pool_member_t *m, int status, intptr_t payload, int suppressed);

/* Initialises an idle pool with no members; `hooks` may be NULL. */
void rem_pool_init(rem_pool_t *p, const rem_pool_hooks_t *hooks);
/* Sets the members (the array is read during every operation, so it and the members must
 * outlive the pool's use of them). Returns UV_EBUSY unless the pool is idle. */
int rem_pool_set(rem_pool_t *p, rem_pool_member_t *const *members, size_t n);
/* Frees the list of failures, dropping what the pool still holds. Members left entered stay
 * so. Not during an operation. */
void rem_pool_deinit(rem_pool_t *p);

/* Starts entering every member. Returns 0 (then `cb` runs exactly once, maybe before this
 * returns), UV_EALREADY when entered, UV_EBUSY during an operation. A member that is in
 * another pool's hands fails this enter with UV_EBUSY. */
int rem_pool_enter(rem_pool_t *p, rem_pool_cb cb, void *arg);
/* Starts exiting every member with the error in flight (`err` 0: none; `payload` borrowed
 * until `cb` runs). Returns 0 (then `cb` runs exactly once), UV_EINVAL when the pool is not
 * entered, UV_EBUSY during an operation. */
int rem_pool_exit(rem_pool_t *p, int err, intptr_t payload, rem_pool_cb cb, void *arg);
/* Asks the enters in progress to stop (a no-op in any other state): they end, the members
 * that entered are rolled back, and the enter fails with the cancellation. */
void rem_pool_cancel(rem_pool_t *p);

#endif
