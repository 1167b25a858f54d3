/* What a fold hook and a drop hook saw, for the C tests of the runtime's error lists in
 * collections and pools: how many folds, the last fold's payloads, codes and context, and
 * every payload dropped. The fold returns 1000 + the number of folds (the "group"). */
#ifndef REM_TEST_ERRBOOK_H
#define REM_TEST_ERRBOOK_H

#include <stddef.h>
#include <stdint.h>

#include "errlist.h"

typedef struct errbook {
  int folds;
  size_t nfolded;
  intptr_t folded[32];
  int codes[32];
  intptr_t context;
  size_t ndropped;
  intptr_t dropped[32];
} errbook_t;

static inline intptr_t errbook_fold(errbook_t *b, const rem_errlist_t *errors,
                                    intptr_t context) {
  b->folds++;
  b->nfolded = errors->len;
  for (size_t i = 0; i < errors->len && i < 32; i++) {
    b->folded[i] = errors->items[i].payload;
    b->codes[i] = errors->items[i].code;
  }
  b->context = context;
  return 1000 + b->folds;
}

static inline void errbook_drop(errbook_t *b, intptr_t payload) {
  if (b->ndropped < 32) b->dropped[b->ndropped] = payload;
  b->ndropped++;
}

#endif
