/* W1 in plain C: 200,000 sequential enter+exit of a trivial manager (a fresh one each time),
 * with the state checks and the ops called through pointers, as a C program would. Prints
 * ns per enter+exit. The timed loop runs REPS times after one warm-up. */
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#define N 200000
#define REPS 5

enum { IDLE, ACQUIRING, ACQUIRED, RELEASING };

typedef struct mgr mgr;
typedef struct mgr_ops {
  int (*acquire)(mgr *m);
  int (*release)(mgr *m, int err);
} mgr_ops;
struct mgr {
  const mgr_ops *ops;
  int state;
};

static int nop_acquire(mgr *m) { (void)m; return 0; }
static int nop_release(mgr *m, int err) { (void)m; return err; }
static const mgr_ops trivial = {nop_acquire, nop_release};
static const mgr_ops *volatile ops_ptr = &trivial;  /* keeps the calls indirect */

static mgr *mgr_new(void) {
  mgr *m = malloc(sizeof *m);
  if (!m) abort();
  m->ops = ops_ptr;
  m->state = IDLE;
  return m;
}

static int enter(mgr *m) {
  if (m->state != IDLE) return -1;
  m->state = ACQUIRING;
  int rc = m->ops->acquire(m);
  if (rc) {
    m->state = RELEASING;
    m->ops->release(m, rc);
    m->state = IDLE;
    return rc;
  }
  m->state = ACQUIRED;
  return 0;
}

static int exit_(mgr *m, int err) {
  if (m->state != ACQUIRED) return -1;
  m->state = RELEASING;
  int rc = m->ops->release(m, err);
  m->state = IDLE;
  return rc;
}

static long run(void) {
  long failures = 0;
  for (int i = 0; i < N; i++) {
    mgr *m = mgr_new();
    failures += enter(m) != 0;
    failures += exit_(m, 0) != 0;
    free(m);
  }
  return failures;
}

int main(void) {
  long failures = run();
  uint64_t t0 = uv_hrtime();
  for (int r = 0; r < REPS; r++) failures += run();
  uint64_t t1 = uv_hrtime();
  if (failures) return 1;
  printf("RESULT %.2f\n", (double)(t1 - t0) / ((double)N * REPS));
  return 0;
}
