/* Exit stacks (contextlib's ExitStack) for C: cleanups that run newest first, each seeing the
 * error in flight as the ones before it left it.
 *
 * An entry is an exit callback and its data. Unwinding calls the exits LIFO with the error in
 * flight (code 0: none); each exit completes exactly once, from inside its callback or later
 * (from any libuv callback), with rem_exitstack_exit_done (it returned, maybe suppressing the
 * error) or rem_exitstack_exit_raise (it failed: its error replaces the one in flight, which
 * the `chain` hook may make the new error's context). Unwinding is a loop, never a recursion:
 * exits that complete at once run one after another in one frame, and a late completion goes
 * on from its own callback, so any number of entries unwinds in constant C stack.
 *
 * Errors are rem_err_t as in errlist.h: a negative code and a payload the stack never looks
 * at. The stack holds the payload of the error in flight; it hands it back through the hooks
 * when the error is suppressed or replaced, and to the caller when unwinding ends.
 *
 * Embedders that must run each exit themselves (the Lua bindings, whose exits yield the
 * coroutine and so cannot be called from inside a C loop) drive the same state machine step
 * by step: rem_exitstack_begin, then rem_exitstack_next / exit_done|exit_raise until next
 * says there is nothing left, then rem_exitstack_end. The stack never allocates while
 * unwinding; it is the caller's memory, and may be unwound again (reused) once it ended.
 */
#ifndef REM_EXITSTACK_H
#define REM_EXITSTACK_H

#include <stddef.h>
#include <stdint.h>

#include "errlist.h"

typedef struct rem_exitstack rem_exitstack_t;

/* Runs one exit with the error in flight (err->code 0: none). Must lead, now or later, to
 * exactly one rem_exitstack_exit_done or rem_exitstack_exit_raise on `stack`. */
typedef void (*rem_exit_cb)(rem_exitstack_t *stack, void *data, const rem_err_t *err);
/* rem_exitstack_unwind is over: `suppressed` when an error came in and none is left; `err` is
 * what remains in flight (code 0: none), its payload now the callee's. The stack is idle
 * again: the callback may push, unwind again, or deinit and free it. */
typedef void (*rem_exitstack_done_cb)(rem_exitstack_t *stack, int suppressed,
                                      const rem_err_t *err);
/* An exit raised `raised` while `old` was in flight (old->code 0: none). The hook takes over
 * old's payload: typically it records old as raised's context unless raised already has one
 * (the innermost frame that catches an error sets its context). It may rewrite *raised. */
typedef void (*rem_exitstack_chain_cb)(rem_exitstack_t *stack, rem_err_t *raised,
                                       const rem_err_t *old);
/* An exit suppressed `err`: its payload is the hook's now. */
typedef void (*rem_exitstack_drop_cb)(rem_exitstack_t *stack, const rem_err_t *err);

typedef struct rem_exit {
  rem_exit_cb cb;   /* NULL: an exit that does nothing (or one the embedder runs itself) */
  void *data;
} rem_exit_t;

typedef enum rem_exitstack_state {
  REM_EXITSTACK_IDLE,
  REM_EXITSTACK_UNWINDING,  /* between two exits */
  REM_EXITSTACK_IN_EXIT     /* an exit was handed out and has not completed */
} rem_exitstack_state_t;

struct rem_exitstack {
  rem_exit_t *entries;     /* bottom first */
  size_t len;
  size_t cap;
  rem_err_t err;           /* in flight while unwinding */
  rem_exitstack_chain_cb chain;   /* optional hooks, set by the embedder */
  rem_exitstack_drop_cb drop;
  rem_exitstack_done_cb done;     /* rem_exitstack_unwind's */
  rem_exitstack_state_t state;
  unsigned had_error : 1;  /* an error came in */
  unsigned driven : 1;     /* unwound by rem_exitstack_unwind (not step by step) */
  unsigned driving : 1;    /* rem_exitstack_unwind's loop is on the C stack */
  unsigned completed : 1;  /* the exit handed out by that loop has completed */
  void *data;              /* the embedder's */
};

void rem_exitstack_init(rem_exitstack_t *stack);
/* Frees the entry array; entries that never ran are dropped without running. */
void rem_exitstack_deinit(rem_exitstack_t *stack);

/* Makes room for `n` more entries, so that many pushes cannot fail (reserve before acquiring
 * what the entry will release). Returns 0 or UV_ENOMEM. */
int rem_exitstack_reserve(rem_exitstack_t *stack, size_t n);
/* Pushes an exit on top; allowed while unwinding (it runs next). Returns 0 or UV_ENOMEM. */
int rem_exitstack_push(rem_exitstack_t *stack, rem_exit_cb cb, void *data);
/* pop_all: moves every entry of `from` to `to` (initialised, idle and empty), in order;
 * `from` is left empty and usable. Returns 0, UV_EBUSY while `from` unwinds, or UV_EINVAL. */
int rem_exitstack_move(rem_exitstack_t *to, rem_exitstack_t *from);

/* Unwinds with `err` in flight (NULL or code 0: none), calling each entry's callback; `done`
 * runs once the stack is empty — from inside this call when every exit completed at once.
 * Returns 0, UV_EBUSY if the stack is already unwinding, UV_EINVAL without `done`. */
int rem_exitstack_unwind(rem_exitstack_t *stack, const rem_err_t *err,
                         rem_exitstack_done_cb done);

/* Step by step. begin: as rem_exitstack_unwind without calling anything (0 or UV_EBUSY).
 * next: pops the top entry into *exit and returns 1 (the error to give it is stack->err),
 * or returns 0 when nothing is left. end: returns `suppressed` and hands over the error left
 * in flight, the stack idle again (UV_EINVAL if an exit is still running). */
int rem_exitstack_begin(rem_exitstack_t *stack, const rem_err_t *err);
int rem_exitstack_next(rem_exitstack_t *stack, rem_exit_t *exit);
int rem_exitstack_end(rem_exitstack_t *stack, rem_err_t *err);

/* Completes the running exit: it returned; `suppress` nonzero drops the error in flight.
 * Returns 0, or UV_EINVAL when no exit is running. */
int rem_exitstack_exit_done(rem_exitstack_t *stack, int suppress);
/* Completes the running exit: it failed with (code, payload), code < 0, which replaces the
 * error in flight (see the chain hook). Returns 0, or UV_EINVAL (no exit running, code >= 0). */
int rem_exitstack_exit_raise(rem_exitstack_t *stack, int code, intptr_t payload);

#endif
