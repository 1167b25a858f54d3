#include "exitstack.h"

#include <stdlib.h>
#include <uv.h>

static const rem_err_t no_error = {0, 0};

void rem_exitstack_init(rem_exitstack_t *stack) {
  stack->entries = NULL;
  stack->len = stack->cap = 0;
  stack->err = no_error;
  stack->chain = NULL;
  stack->drop = NULL;
  stack->done = NULL;
  stack->state = REM_EXITSTACK_IDLE;
  stack->had_error = 0;
  stack->driven = 0;
  stack->driving = 0;
  stack->completed = 0;
  stack->data = NULL;
}

void rem_exitstack_deinit(rem_exitstack_t *stack) {
  free(stack->entries);
  stack->entries = NULL;
  stack->len = stack->cap = 0;
}

int rem_exitstack_reserve(rem_exitstack_t *stack, size_t n) {
  if (stack->cap - stack->len >= n) return 0;
  if (n > ((size_t)-1) / sizeof *stack->entries / 2 - stack->len) return UV_ENOMEM;
  size_t cap = stack->cap ? stack->cap : 8;
  while (cap - stack->len < n) cap *= 2;
  rem_exit_t *entries = realloc(stack->entries, cap * sizeof *entries);
  if (!entries) return UV_ENOMEM;
  stack->entries = entries;
  stack->cap = cap;
  return 0;
}

int rem_exitstack_push(rem_exitstack_t *stack, rem_exit_cb cb, void *data) {
  if (stack->len == stack->cap) {  /* the common case, room, without the call */
    int rc = rem_exitstack_reserve(stack, 1);
    if (rc) return rc;
  }
  stack->entries[stack->len].cb = cb;
  stack->entries[stack->len].data = data;
  stack->len++;
  return 0;
}

int rem_exitstack_move(rem_exitstack_t *to, rem_exitstack_t *from) {
  if (from->state != REM_EXITSTACK_IDLE) return UV_EBUSY;
  if (to == from || to->state != REM_EXITSTACK_IDLE || to->len != 0) return UV_EINVAL;
  free(to->entries);
  to->entries = from->entries;
  to->len = from->len;
  to->cap = from->cap;
  from->entries = NULL;
  from->len = from->cap = 0;
  return 0;
}

int rem_exitstack_begin(rem_exitstack_t *stack, const rem_err_t *err) {
  if (stack->state != REM_EXITSTACK_IDLE) return UV_EBUSY;
  stack->state = REM_EXITSTACK_UNWINDING;
  stack->err = err ? *err : no_error;
  stack->had_error = stack->err.code != 0;
  stack->driven = 0;
  return 0;
}

int rem_exitstack_next(rem_exitstack_t *stack, rem_exit_t *exit) {
  if (stack->state != REM_EXITSTACK_UNWINDING || stack->len == 0) return 0;
  *exit = stack->entries[--stack->len];
  stack->state = REM_EXITSTACK_IN_EXIT;
  return 1;
}

int rem_exitstack_end(rem_exitstack_t *stack, rem_err_t *err) {
  if (stack->state != REM_EXITSTACK_UNWINDING) return UV_EINVAL;
  int suppressed = stack->had_error && stack->err.code == 0;
  if (err) *err = stack->err;
  stack->err = no_error;
  stack->had_error = 0;
  stack->driven = 0;
  stack->state = REM_EXITSTACK_IDLE;
  return suppressed;
}

/* The loop of rem_exitstack_unwind. An exit that completes inside its callback only sets
 * `completed`, and the loop goes on; one that completes later calls this again from its own
 * callback. Either way no exit runs below another's frame. */
static void drive(rem_exitstack_t *stack) {
  rem_exit_t exit;
  stack->driving = 1;
  while (rem_exitstack_next(stack, &exit)) {
    stack->completed = 0;
    if (exit.cb)
      exit.cb(stack, exit.data, &stack->err);
    else
      rem_exitstack_exit_done(stack, 0);
    if (!stack->completed) {  /* it completes later */
      stack->driving = 0;
      return;
    }
  }
  stack->driving = 0;
  rem_exitstack_done_cb done = stack->done;
  stack->done = NULL;
  rem_err_t err;
  int suppressed = rem_exitstack_end(stack, &err);
  done(stack, suppressed, &err);  /* last: it may free the stack */
}

int rem_exitstack_unwind(rem_exitstack_t *stack, const rem_err_t *err,
                         rem_exitstack_done_cb done) {
  if (!done) return UV_EINVAL;
  int rc = rem_exitstack_begin(stack, err);
  if (rc) return rc;
  stack->driven = 1;
  stack->done = done;
  drive(stack);
  return 0;
}

/* The running exit has completed: go on with the next one. */
static void completed(rem_exitstack_t *stack) {
  stack->state = REM_EXITSTACK_UNWINDING;
  if (!stack->driven) return;         /* the step-by-step caller goes on */
  if (stack->driving)
    stack->completed = 1;             /* inside the exit's callback: the loop goes on */
  else
    drive(stack);                     /* a late completion */
}

int rem_exitstack_exit_done(rem_exitstack_t *stack, int suppress) {
  if (stack->state != REM_EXITSTACK_IN_EXIT) return UV_EINVAL;
  if (suppress && stack->err.code != 0) {
    rem_err_t dropped = stack->err;
    stack->err = no_error;
    if (stack->drop) stack->drop(stack, &dropped);
  }
  completed(stack);
  return 0;
}

int rem_exitstack_exit_raise(rem_exitstack_t *stack, int code, intptr_t payload) {
  if (stack->state != REM_EXITSTACK_IN_EXIT || code >= 0) return UV_EINVAL;
  rem_err_t raised = {code, payload};
  rem_err_t old = stack->err;
  if (stack->chain) stack->chain(stack, &raised, &old);
  stack->err = raised;
  completed(stack);
  return 0;
}
