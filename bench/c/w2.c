/* W2 in plain C: an exit stack of 1,000 entries (500 entered trivial managers and 500
 * callbacks, interleaved), unwound LIFO with the error in flight; 200 times. Prints ns per
 * entry (push + unwind). Timed REPS times after one warm-up. */
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#define ENTRIES 1000
#define TIMES 200
#define REPS 5

typedef struct entry {
  int (*exit)(void *data, int err);  /* returns nonzero to suppress err */
  void *data;
} entry;

typedef struct stack {
  entry *e;
  size_t len, cap;
} stack;

static void push(stack *s, int (*fn)(void *, int), void *data) {
  if (s->len == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 16;
    s->e = realloc(s->e, s->cap * sizeof *s->e);
    if (!s->e) abort();
  }
  s->e[s->len++] = (entry){fn, data};
}

static int unwind(stack *s, int err) {
  while (s->len > 0) {
    entry e = s->e[--s->len];
    if (e.exit(e.data, err)) err = 0;
  }
  return err;
}

enum { IDLE, ACQUIRED };
typedef struct mgr {
  int state;
} mgr;

static int mgr_exit(void *data, int err) {
  mgr *m = data;
  m->state = IDLE;
  free(m);
  (void)err;
  return 0;
}

static volatile long calls;
static int callback(void *data, int err) {
  (void)data;
  (void)err;
  calls++;
  return 0;
}

static void run(void) {
  for (int t = 0; t < TIMES; t++) {
    stack s = {0};
    for (int i = 0; i < ENTRIES / 2; i++) {
      mgr *m = malloc(sizeof *m);
      if (!m) abort();
      m->state = ACQUIRED;
      push(&s, mgr_exit, m);
      push(&s, callback, NULL);
    }
    unwind(&s, 0);
    free(s.e);
  }
}

int main(void) {
  run();
  uint64_t t0 = uv_hrtime();
  for (int r = 0; r < REPS; r++) run();
  uint64_t t1 = uv_hrtime();
  printf("RESULT %.2f\n", (double)(t1 - t0) / ((double)ENTRIES * TIMES * REPS));
  return 0;
}
