/* Resource managers (aiorem's ResourceManager) as a state machine.
 *
 *   idle --acquire--> acquiring --ok--> acquired --release--> releasing --> idle
 *                         |                                       ^
 *                         +--failed (or cancelled)-- release on error
 *
 * The embedder says what acquiring and releasing do (rem_manager_ops_t); the runtime says
 * when, and guarantees that every acquisition attempt ends in exactly one release: a failed
 * acquire is followed by a release on the error path before the operation completes, and a
 * manager cannot be acquired twice or released when it is not acquired.
 *
 * An op starts the work and returns; the work ends with rem_manager_done(), called from
 * inside the op (synchronous) or later from any callback (a libuv timer, a task). The
 * operation's completion callback then runs once. Payloads are opaque to the runtime (the
 * Lua bindings store registry references to error values); who owns them is said below.
 * Memory is the caller's; nothing here allocates.
 */
#ifndef REM_MANAGER_H
#define REM_MANAGER_H

#include <stdint.h>

typedef struct rem_manager rem_manager_t;

/* The completion of rem_manager_acquire / rem_manager_release. `status` is 0, or how the
 * acquire failed (the manager is idle again, its release on error done), or how the release
 * failed. `arg` is what the caller passed. The manager may be acquired or released again
 * from inside the callback. */
typedef void (*rem_manager_cb)(rem_manager_t *m, int status, void *arg);

typedef struct rem_manager_ops {
  /* Starts acquiring. Ends with rem_manager_done(m, status, payload). */
  void (*acquire)(rem_manager_t *m);
  /* Starts releasing. `err` is 0 for a normal release, else the error in flight (the
   * failed acquire's, or what the caller gave to rem_manager_release) and `payload`
   * describes it (borrowed until this release ends). Ends with rem_manager_done. */
  void (*release)(rem_manager_t *m, int err, intptr_t payload);
  /* Optional: asks an acquire in progress to stop early. It still ends with
   * rem_manager_done (usually UV_ECANCELED), now or later. */
  void (*cancel)(rem_manager_t *m);
  /* Optional: told that an operation ended (the manager is idle or acquired again), just
   * before the completion callback. Lets an embedder that drives the ops notice the end of
   * an operation somebody else started. */
  void (*settled)(rem_manager_t *m, int status);
} rem_manager_ops_t;

typedef enum rem_manager_state {
  REM_MANAGER_IDLE,
  REM_MANAGER_ACQUIRING,
  REM_MANAGER_ACQUIRED,
  REM_MANAGER_RELEASING
} rem_manager_state_t;

struct rem_manager {
  const rem_manager_ops_t *ops;
  rem_manager_state_t state;
  rem_manager_cb cb;          /* the operation in progress */
  void *cb_arg;
  int error;                  /* the error the release in progress runs for (0: none) */
  intptr_t error_payload;
  /* How the last operation ended. After a failed acquire: the acquire's failure and the
   * release on error's outcome; after a release: release_* only. The payloads belong to
   * whoever started the operation once its callback runs. */
  int acquire_status;
  intptr_t acquire_payload;
  int release_status;
  intptr_t release_payload;
  unsigned long attempts;     /* acquisitions started */
  unsigned long releases;     /* releases finished (normal or on error) */
  void *data;                 /* the embedder's */
};

/* Initialises an idle manager; `ops` (acquire and release required) must outlive it. */
void rem_manager_init(rem_manager_t *m, const rem_manager_ops_t *ops);

/* Starts acquiring. Returns 0 (then `cb` runs exactly once, maybe before this returns),
 * UV_EALREADY when the manager is acquired, UV_EBUSY while an operation is in progress. */
int rem_manager_acquire(rem_manager_t *m, rem_manager_cb cb, void *arg);

/* Starts releasing an acquired manager: a normal release when `err` is 0, else on the error
 * path with `err`/`payload` (borrowed until `cb` runs). Returns 0 (then `cb` runs exactly
 * once), UV_EINVAL when the manager is not acquired, UV_EBUSY while an operation runs. */
int rem_manager_release(rem_manager_t *m, int err, intptr_t payload, rem_manager_cb cb,
                        void *arg);

/* Asks an acquire in progress to stop (the ops' cancel); a no-op in any other state. */
void rem_manager_cancel(rem_manager_t *m);

/* Reports the end of the op in progress with `status` (0 for success) and a `payload`
 * describing a failure (handed over to the runtime). A failed acquire goes on with the
 * release on error; the rest complete the operation. Returns UV_EINVAL when no op runs. */
int rem_manager_done(rem_manager_t *m, int status, intptr_t payload);

#endif
