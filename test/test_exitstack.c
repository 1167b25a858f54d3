/* The exit stack (runtime/exitstack.c) driven from C: exits that complete at once and exits
 * that complete later from libuv timers, in one LIFO order, with the error in flight threaded
 * through them, suppressed, replaced and chained. */
#include "exitstack.h"
#include "helpers.h"

/* An error value: the payload is a pointer to one of these. */
typedef struct terr {
  const char *name;
  struct terr *context;
  int settled;  /* its context was decided by the innermost stack that caught it */
} terr_t;

#define TEST_EFAILED (-1000)

static terr_t *payload_err(const rem_err_t *e) {
  return e->code ? (terr_t *)e->payload : NULL;
}
static const char *err_name(const rem_err_t *e) {
  return e->code ? payload_err(e)->name : "nil";
}

typedef enum { ACT_RETURN, ACT_SUPPRESS, ACT_RAISE } action_t;

typedef struct texit {
  fx_t *fx;
  const char *name;
  action_t action;
  terr_t *raise;          /* for ACT_RAISE */
  int async;              /* complete from a uv timer after `delay` ms */
  uint64_t delay;
  uv_timer_t timer;
  rem_exitstack_t *stack;
  int runs;
} texit_t;

typedef struct outcome {
  int calls;
  int suppressed;
  rem_err_t err;
} outcome_t;

/* Every test's stack carries its fixture and outcome. */
typedef struct tstack {
  rem_exitstack_t xs;
  fx_t *fx;
  outcome_t out;
} tstack_t;

static tstack_t *ts_of(rem_exitstack_t *s) {
  return REM_CONTAINER_OF(s, tstack_t, xs);
}

static void on_chain(rem_exitstack_t *s, rem_err_t *raised, const rem_err_t *old) {
  terr_t *e = payload_err(raised);
  fx_log(ts_of(s)->fx, "chain(%s<-%s)", e->name, err_name(old));
  if (!e->settled) {  /* the innermost catcher decides, once */
    e->context = payload_err(old);
    e->settled = 1;
  }
}

static void on_drop(rem_exitstack_t *s, const rem_err_t *err) {
  fx_log(ts_of(s)->fx, "drop(%s)", err_name(err));
}

static void on_done(rem_exitstack_t *s, int suppressed, const rem_err_t *err) {
  tstack_t *ts = ts_of(s);
  ts->out.calls++;
  ts->out.suppressed = suppressed;
  ts->out.err = *err;
  fx_log(ts->fx, "done(%s%s)", err_name(err), suppressed ? ",suppressed" : "");
}

static void ts_init(tstack_t *ts, fx_t *fx) {
  memset(ts, 0, sizeof *ts);
  rem_exitstack_init(&ts->xs);
  ts->xs.chain = on_chain;
  ts->xs.drop = on_drop;
  ts->fx = fx;
}

static void complete(texit_t *x) {
  x->runs++;
  if (x->action == ACT_RAISE)
    assert_int_equal(rem_exitstack_exit_raise(x->stack, TEST_EFAILED, (intptr_t)x->raise), 0);
  else
    assert_int_equal(rem_exitstack_exit_done(x->stack, x->action == ACT_SUPPRESS), 0);
}

static void on_timer(uv_timer_t *timer) {
  texit_t *x = timer->data;
  fx_log(x->fx, "%s:late", x->name);
  uv_close((uv_handle_t *)timer, NULL);
  complete(x);
}

static void run_exit(rem_exitstack_t *s, void *data, const rem_err_t *err) {
  texit_t *x = data;
  x->stack = s;
  fx_log(x->fx, "%s(%s)", x->name, err_name(err));
  if (!x->async) {
    complete(x);
    return;
  }
  assert_int_equal(uv_timer_init(&x->fx->loop, &x->timer), 0);
  x->timer.data = x;
  assert_int_equal(uv_timer_start(&x->timer, on_timer, x->delay, 0), 0);
}

static void tx(texit_t *x, fx_t *fx, const char *name, action_t action, terr_t *raise) {
  memset(x, 0, sizeof *x);
  x->fx = fx;
  x->name = name;
  x->action = action;
  x->raise = raise;
}

static void push(tstack_t *ts, texit_t *x) {
  assert_int_equal(rem_exitstack_push(&ts->xs, run_exit, x), 0);
}

static rem_err_t errv(terr_t *e) {
  rem_err_t v = {TEST_EFAILED, (intptr_t)e};
  return v;
}

/* SEMANTICS 1: LIFO, nothing in flight. */
static void test_lifo_sync(void **state) {
  fx_t *fx = *state;
  tstack_t ts;
  texit_t x[4];
  ts_init(&ts, fx);
  const char *names[] = {"e1", "e2", "e3", "e4"};
  for (int i = 0; i < 4; i++) {
    tx(&x[i], fx, names[i], ACT_RETURN, NULL);
    push(&ts, &x[i]);
  }
  assert_int_equal(ts.xs.len, 4);
  assert_int_equal(rem_exitstack_unwind(&ts.xs, NULL, on_done), 0);
  /* Every exit completed at once: done ran inside the call. */
  assert_string_equal(fx->log, "e4(nil) e3(nil) e2(nil) e1(nil) done(nil)");
  assert_int_equal(ts.out.calls, 1);
  assert_int_equal(ts.xs.len, 0);
  assert_int_equal(ts.xs.state, REM_EXITSTACK_IDLE);
  rem_exitstack_deinit(&ts.xs);
  fx_close(fx);
}

/* SEMANTICS 3: bottom to top ok, suppressor, expects K, expects K; K comes in. */
static void test_suppress(void **state) {
  fx_t *fx = *state;
  tstack_t ts;
  texit_t ok, sup, a, b;
  terr_t K = {"K", NULL, 0};
  ts_init(&ts, fx);
  tx(&ok, fx, "ok", ACT_RETURN, NULL);
  tx(&sup, fx, "sup", ACT_SUPPRESS, NULL);
  tx(&a, fx, "a", ACT_RETURN, NULL);
  tx(&b, fx, "b", ACT_RETURN, NULL);
  push(&ts, &ok);
  push(&ts, &sup);
  push(&ts, &a);
  push(&ts, &b);
  rem_err_t k = errv(&K);
  assert_int_equal(rem_exitstack_unwind(&ts.xs, &k, on_done), 0);
  assert_string_equal(fx->log, "b(K) a(K) sup(K) drop(K) ok(nil) done(nil,suppressed)");
  assert_int_equal(ts.out.suppressed, 1);
  assert_int_equal(ts.out.err.code, 0);
  rem_exitstack_deinit(&ts.xs);
  fx_close(fx);
}

/* SEMANTICS 5: bottom to top raise T, raise V, suppressor, raise I, observer; K comes in. */
static void test_replace_and_chain(void **state) {
  fx_t *fx = *state;
  tstack_t ts;
  texit_t rt, rv, sup, ri, obs;
  terr_t K = {"K", NULL, 0}, T = {"T", NULL, 0}, V = {"V", NULL, 0}, I = {"I", NULL, 0};
  ts_init(&ts, fx);
  tx(&rt, fx, "rT", ACT_RAISE, &T);
  tx(&rv, fx, "rV", ACT_RAISE, &V);
  tx(&sup, fx, "sup", ACT_SUPPRESS, NULL);
  tx(&ri, fx, "rI", ACT_RAISE, &I);
  tx(&obs, fx, "obs", ACT_RETURN, NULL);
  push(&ts, &rt);
  push(&ts, &rv);
  push(&ts, &sup);
  push(&ts, &ri);
  push(&ts, &obs);
  rem_err_t k = errv(&K);
  assert_int_equal(rem_exitstack_unwind(&ts.xs, &k, on_done), 0);
  assert_string_equal(fx->log,
                      "obs(K) rI(K) chain(I<-K) sup(I) drop(I) rV(nil) chain(V<-nil) "
                      "rT(V) chain(T<-V) done(T)");
  assert_int_equal(ts.out.suppressed, 0);
  assert_ptr_equal(payload_err(&ts.out.err), &T);
  assert_ptr_equal(T.context, &V);
  assert_ptr_equal(I.context, &K);
  assert_null(V.context);  /* raised after a suppression: no context */
  assert_true(V.settled);
  rem_exitstack_deinit(&ts.xs);
  fx_close(fx);
}

/* SEMANTICS 10 in C: exits completing at once and from uv timers, in one LIFO order, with
 * late ones raising and suppressing; the loop closes clean afterwards. */
static void test_async_mixed(void **state) {
  fx_t *fx = *state;
  tstack_t ts;
  texit_t x[6];
  terr_t K = {"K", NULL, 0}, R = {"R", NULL, 0};
  ts_init(&ts, fx);
  tx(&x[0], fx, "s0", ACT_RETURN, NULL);
  tx(&x[1], fx, "a1", ACT_RETURN, NULL);       /* sees R */
  x[1].async = 1, x[1].delay = 5;
  tx(&x[2], fx, "a2", ACT_RAISE, &R);          /* late raise while nothing is in flight */
  x[2].async = 1, x[2].delay = 1;
  tx(&x[3], fx, "s3", ACT_RETURN, NULL);
  tx(&x[4], fx, "a4", ACT_SUPPRESS, NULL);     /* late suppression of K */
  x[4].async = 1, x[4].delay = 10;
  tx(&x[5], fx, "s5", ACT_RETURN, NULL);
  for (int i = 0; i < 6; i++) push(&ts, &x[i]);
  rem_err_t k = errv(&K);
  assert_int_equal(rem_exitstack_unwind(&ts.xs, &k, on_done), 0);
  /* s5 ran at once, a4 is waiting for its timer: nothing else may run before it. */
  assert_string_equal(fx->log, "s5(K) a4(K)");
  assert_int_equal(ts.out.calls, 0);
  assert_int_equal(ts.xs.state, REM_EXITSTACK_IN_EXIT);
  /* A second unwind or a pop_all while it unwinds is refused. */
  tstack_t other;
  ts_init(&other, fx);
  assert_int_equal(rem_exitstack_unwind(&ts.xs, NULL, on_done), UV_EBUSY);
  assert_int_equal(rem_exitstack_move(&other.xs, &ts.xs), UV_EBUSY);
  fx_run(fx);
  assert_string_equal(fx->log,
                      "s5(K) a4(K) a4:late drop(K) s3(nil) a2(nil) a2:late chain(R<-nil) "
                      "a1(R) a1:late s0(R) done(R)");
  assert_int_equal(ts.out.calls, 1);
  assert_int_equal(ts.out.suppressed, 0);  /* K was suppressed, but R is in flight */
  assert_ptr_equal(payload_err(&ts.out.err), &R);
  assert_null(R.context);
  for (int i = 0; i < 6; i++) assert_int_equal(x[i].runs, 1);
  rem_exitstack_deinit(&ts.xs);
  rem_exitstack_deinit(&other.xs);
  fx_close(fx);
}

/* An exit may complete later with the error suppressed, leaving the stack's answer
 * "suppressed" (SEMANTICS 4), or replace it. */
static void test_async_suppress_answer(void **state) {
  fx_t *fx = *state;
  tstack_t ts;
  texit_t a, b;
  terr_t K = {"K", NULL, 0}, N = {"N", NULL, 0};
  ts_init(&ts, fx);
  tx(&a, fx, "sup", ACT_SUPPRESS, NULL);
  a.async = 1;
  tx(&b, fx, "rN", ACT_RAISE, &N);
  b.async = 1;
  push(&ts, &a);
  push(&ts, &b);
  rem_err_t k = errv(&K);
  assert_int_equal(rem_exitstack_unwind(&ts.xs, &k, on_done), 0);
  fx_run(fx);
  /* N replaced K (K its context), then N was suppressed: an error came in, none is left. */
  assert_string_equal(fx->log,
                      "rN(K) rN:late chain(N<-K) sup(N) sup:late drop(N) done(nil,suppressed)");
  assert_int_equal(ts.out.suppressed, 1);
  assert_ptr_equal(N.context, &K);
  /* Without an error coming in, the answer is never "suppressed". */
  fx_log_reset(fx);
  a.runs = 0;
  push(&ts, &a);
  assert_int_equal(rem_exitstack_unwind(&ts.xs, NULL, on_done), 0);
  fx_run(fx);
  assert_string_equal(fx->log, "sup(nil) sup:late done(nil)");
  assert_int_equal(ts.out.suppressed, 0);
  rem_exitstack_deinit(&ts.xs);
  fx_close(fx);
}

/* Deep stacks: the loop is iterative, so a million exits need no C stack. */
typedef struct counter {
  size_t next_expected;
  size_t ran;
  uv_timer_t *timer;
  rem_exitstack_t *stack;
} counter_t;

static void count_exit(rem_exitstack_t *s, void *data, const rem_err_t *err) {
  counter_t *c = s->data;
  (void)err;
  size_t i = (size_t)(uintptr_t)data;
  assert_int_equal(i, c->next_expected);  /* LIFO */
  c->next_expected--;
  c->ran++;
  rem_exitstack_exit_done(s, 0);
}

static void count_done(rem_exitstack_t *s, int suppressed, const rem_err_t *err) {
  (void)suppressed;
  (void)err;
  tstack_t *ts = ts_of(s);
  ts->out.calls++;
}

static void test_deep_sync(void **state) {
  fx_t *fx = *state;
  const size_t n = 1000000;
  tstack_t ts;
  counter_t c = {n - 1, 0, NULL, NULL};
  ts_init(&ts, fx);
  ts.xs.data = &c;
  assert_int_equal(rem_exitstack_reserve(&ts.xs, n), 0);
  size_t cap = ts.xs.cap;
  for (size_t i = 0; i < n; i++)
    assert_int_equal(rem_exitstack_push(&ts.xs, count_exit, (void *)(uintptr_t)i), 0);
  assert_int_equal(ts.xs.cap, cap);  /* reserved: no reallocation */
  assert_int_equal(rem_exitstack_unwind(&ts.xs, NULL, count_done), 0);
  assert_int_equal(c.ran, n);
  assert_int_equal(ts.out.calls, 1);
  rem_exitstack_deinit(&ts.xs);
  fx_close(fx);
}

static void on_deep_timer(uv_timer_t *timer) {
  counter_t *c = timer->data;
  rem_exitstack_exit_done(c->stack, 0);  /* goes on with the next exits from here */
}

static void deep_async_exit(rem_exitstack_t *s, void *data, const rem_err_t *err) {
  counter_t *c = s->data;
  (void)err;
  size_t i = (size_t)(uintptr_t)data;
  assert_int_equal(i, c->next_expected);
  c->next_expected--;
  c->ran++;
  if (i % 2 == 0) {  /* every other one completes on a later loop iteration */
    c->stack = s;
    assert_int_equal(uv_timer_start(c->timer, on_deep_timer, 0, 0), 0);
    return;
  }
  rem_exitstack_exit_done(s, 0);
}

static void test_deep_async(void **state) {
  fx_t *fx = *state;
  const size_t n = 20000;
  tstack_t ts;
  uv_timer_t timer;
  counter_t c = {n - 1, 0, &timer, NULL};
  assert_int_equal(uv_timer_init(&fx->loop, &timer), 0);
  timer.data = &c;
  ts_init(&ts, fx);
  ts.xs.data = &c;
  for (size_t i = 0; i < n; i++)
    assert_int_equal(rem_exitstack_push(&ts.xs, deep_async_exit, (void *)(uintptr_t)i), 0);
  assert_int_equal(rem_exitstack_unwind(&ts.xs, NULL, count_done), 0);
  assert_int_equal(ts.out.calls, 0);
  fx_run(fx);
  assert_int_equal(c.ran, n);
  assert_int_equal(ts.out.calls, 1);
  uv_close((uv_handle_t *)&timer, NULL);
  rem_exitstack_deinit(&ts.xs);
  fx_close(fx);
}

/* SEMANTICS 7: pop_all moves every entry; later entries stay on the old stack. */
static void test_move(void **state) {
  fx_t *fx = *state;
  tstack_t old, moved;
  texit_t a, b, c;
  ts_init(&old, fx);
  ts_init(&moved, fx);
  tx(&a, fx, "a", ACT_RETURN, NULL);
  tx(&b, fx, "b", ACT_RETURN, NULL);
  tx(&c, fx, "c", ACT_RETURN, NULL);
  push(&old, &a);
  push(&old, &b);
  assert_int_equal(rem_exitstack_move(&moved.xs, &old.xs), 0);
  assert_int_equal(old.xs.len, 0);
  assert_int_equal(moved.xs.len, 2);
  assert_int_equal(rem_exitstack_move(&moved.xs, &moved.xs), UV_EINVAL);
  assert_int_equal(rem_exitstack_move(&moved.xs, &old.xs), UV_EINVAL);  /* `to` not empty */
  push(&old, &c);
  assert_int_equal(rem_exitstack_unwind(&old.xs, NULL, on_done), 0);
  assert_string_equal(fx->log, "c(nil) done(nil)");
  fx_log_reset(fx);
  assert_int_equal(rem_exitstack_unwind(&moved.xs, NULL, on_done), 0);
  assert_string_equal(fx->log, "b(nil) a(nil) done(nil)");
  rem_exitstack_deinit(&old.xs);
  rem_exitstack_deinit(&moved.xs);
  fx_close(fx);
}

/* SEMANTICS 8: each entry runs once; the stack is reusable after unwinding. */
static void test_reuse(void **state) {
  fx_t *fx = *state;
  tstack_t ts;
  texit_t a, b;
  ts_init(&ts, fx);
  tx(&a, fx, "a", ACT_RETURN, NULL);
  tx(&b, fx, "b", ACT_RETURN, NULL);
  push(&ts, &a);
  assert_int_equal(rem_exitstack_unwind(&ts.xs, NULL, on_done), 0);
  assert_int_equal(rem_exitstack_unwind(&ts.xs, NULL, on_done), 0);  /* runs nothing */
  push(&ts, &b);
  assert_int_equal(rem_exitstack_unwind(&ts.xs, NULL, on_done), 0);
  assert_string_equal(fx->log, "a(nil) done(nil) done(nil) b(nil) done(nil)");
  assert_int_equal(a.runs, 1);
  assert_int_equal(b.runs, 1);
  rem_exitstack_deinit(&ts.xs);
  fx_close(fx);
}

/* An exit that pushes another: the new one runs next. */
typedef struct pusher {
  texit_t self;
  texit_t *child;
} pusher_t;

static void pushing_exit(rem_exitstack_t *s, void *data, const rem_err_t *err) {
  pusher_t *p = data;
  fx_log(p->self.fx, "%s(%s)", p->self.name, err_name(err));
  assert_int_equal(rem_exitstack_push(s, run_exit, p->child), 0);
  rem_exitstack_exit_done(s, 0);
}

static void test_push_while_unwinding(void **state) {
  fx_t *fx = *state;
  tstack_t ts;
  texit_t a, child;
  pusher_t p;
  ts_init(&ts, fx);
  tx(&a, fx, "a", ACT_RETURN, NULL);
  tx(&child, fx, "child", ACT_RETURN, NULL);
  tx(&p.self, fx, "pusher", ACT_RETURN, NULL);
  p.child = &child;
  push(&ts, &a);
  assert_int_equal(rem_exitstack_push(&ts.xs, pushing_exit, &p), 0);
  assert_int_equal(rem_exitstack_unwind(&ts.xs, NULL, on_done), 0);
  assert_string_equal(fx->log, "pusher(nil) child(nil) a(nil) done(nil)");
  rem_exitstack_deinit(&ts.xs);
  fx_close(fx);
}

/* The step-by-step API, as the Lua bindings use it, and its misuse. */
static void test_step_by_step(void **state) {
  fx_t *fx = *state;
  tstack_t ts;
  terr_t K = {"K", NULL, 0}, E = {"E", NULL, 0};
  ts_init(&ts, fx);
  assert_int_equal(rem_exitstack_exit_done(&ts.xs, 0), UV_EINVAL);  /* nothing running */
  assert_int_equal(rem_exitstack_end(&ts.xs, NULL), UV_EINVAL);
  for (uintptr_t i = 1; i <= 3; i++)
    assert_int_equal(rem_exitstack_push(&ts.xs, NULL, (void *)i), 0);
  rem_err_t k = errv(&K);
  assert_int_equal(rem_exitstack_begin(&ts.xs, &k), 0);
  assert_int_equal(rem_exitstack_begin(&ts.xs, NULL), UV_EBUSY);
  rem_exit_t x;
  assert_int_equal(rem_exitstack_next(&ts.xs, &x), 1);
  assert_int_equal((uintptr_t)x.data, 3);
  assert_int_equal(rem_exitstack_next(&ts.xs, &x), 0);  /* one at a time */
  assert_int_equal(rem_exitstack_end(&ts.xs, NULL), UV_EINVAL);
  assert_int_equal(rem_exitstack_exit_raise(&ts.xs, 0, 0), UV_EINVAL);
  assert_int_equal(rem_exitstack_exit_raise(&ts.xs, TEST_EFAILED, (intptr_t)&E), 0);
  assert_ptr_equal(payload_err(&ts.xs.err), &E);
  assert_int_equal(rem_exitstack_next(&ts.xs, &x), 1);
  assert_int_equal((uintptr_t)x.data, 2);
  assert_int_equal(rem_exitstack_exit_done(&ts.xs, 1), 0);
  assert_int_equal(rem_exitstack_next(&ts.xs, &x), 1);
  assert_int_equal((uintptr_t)x.data, 1);
  assert_int_equal(ts.xs.err.code, 0);  /* the exit below sees nothing in flight */
  assert_int_equal(rem_exitstack_exit_done(&ts.xs, 1), 0);
  assert_int_equal(rem_exitstack_next(&ts.xs, &x), 0);
  rem_err_t left;
  assert_int_equal(rem_exitstack_end(&ts.xs, &left), 1);
  assert_int_equal(left.code, 0);
  assert_string_equal(fx->log, "chain(E<-K) drop(E)");
  assert_ptr_equal(E.context, &K);
  rem_exitstack_deinit(&ts.xs);
  fx_close(fx);
}

/* The done callback owns the stack: it may free it. */
static void free_in_done(rem_exitstack_t *s, int suppressed, const rem_err_t *err) {
  (void)suppressed;
  int *flag = s->data;
  *flag = err->code;
  rem_exitstack_deinit(s);
  free(s);
}

static void test_done_may_free(void **state) {
  fx_t *fx = *state;
  rem_exitstack_t *s = malloc(sizeof *s);
  assert_non_null(s);
  rem_exitstack_init(s);
  int seen = 1;
  s->data = &seen;
  texit_t a;
  tx(&a, fx, "a", ACT_RETURN, NULL);
  a.async = 1;
  assert_int_equal(rem_exitstack_push(s, run_exit, &a), 0);
  assert_int_equal(rem_exitstack_unwind(s, NULL, free_in_done), 0);
  fx_run(fx);
  assert_int_equal(seen, 0);
  assert_string_equal(fx->log, "a(nil) a:late");
  fx_close(fx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      FX_TEST(test_lifo_sync),
      FX_TEST(test_suppress),
      FX_TEST(test_replace_and_chain),
      FX_TEST(test_async_mixed),
      FX_TEST(test_async_suppress_answer),
      FX_TEST(test_deep_sync),
      FX_TEST(test_deep_async),
      FX_TEST(test_move),
      FX_TEST(test_reuse),
      FX_TEST(test_push_while_unwinding),
      FX_TEST(test_step_by_step),
      FX_TEST(test_done_may_free),
  };
  return cmocka_run_group_tests_name("exitstack", tests, NULL, NULL);
}
