/* Deadlines without a libuv handle each.
 *
 * Every sleeping task and every scope with a deadline needs a timer. One uv_timer_t per
 * scheduler fires the earliest entry of a binary min-heap of rem_timer_t, which callers
 * embed in their own structs: starting or stopping a timer never allocates (the heap's
 * array grows geometrically) and nothing needs a two-phase close. Ties fire in start order.
 */
#ifndef REM_TIMERS_H
#define REM_TIMERS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct rem_timer rem_timer_t;
typedef void (*rem_timer_cb)(rem_timer_t *timer);

struct rem_timer {
  uint64_t due;    /* loop time (ms) at which it fires */
  uint64_t seq;    /* start order, breaks ties */
  size_t index;    /* position in the heap; REM_TIMER_IDLE when not started */
  rem_timer_cb cb;
};

#define REM_TIMER_IDLE ((size_t)-1)

typedef struct rem_timers {
  uv_timer_t handle;
  rem_timer_t **heap;
  size_t len;
  size_t cap;
  uint64_t seq;
} rem_timers_t;

/* Initialises the heap and its uv_timer on `loop`. Returns 0 or a UV_E* code. */
int rem_timers_init(rem_timers_t *timers, uv_loop_t *loop);
/* Frees the heap; the caller closes `timers->handle` (two-phase) itself. Entries still
 * started are dropped without firing. */
void rem_timers_deinit(rem_timers_t *timers);

static inline void rem_timer_init(rem_timer_t *timer) {
  timer->index = REM_TIMER_IDLE;
  timer->cb = NULL;
}
static inline int rem_timer_active(const rem_timer_t *timer) {
  return timer->index != REM_TIMER_IDLE;
}

/* Fires `cb(timer)` after `timeout_ms` of loop time. The timer must not be active.
 * Returns 0 or UV_ENOMEM. */
int rem_timer_start(rem_timers_t *timers, rem_timer_t *timer, uint64_t timeout_ms,
                    rem_timer_cb cb);
/* Stops an active timer; a no-op on an idle one. */
void rem_timer_stop(rem_timers_t *timers, rem_timer_t *timer);

/* Milliseconds from now for `seconds`, rounded up so a sleep never ends early;
 * negative and NaN give 0, huge values saturate. */
uint64_t rem_timer_ms(double seconds);

#endif
