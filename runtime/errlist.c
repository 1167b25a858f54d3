#include "errlist.h"

#include <stdlib.h>
#include <uv.h>

void rem_errlist_init(rem_errlist_t *list) {
  list->items = NULL;
  list->len = list->cap = 0;
}

int rem_errlist_push(rem_errlist_t *list, int code, intptr_t payload) {
  if (list->len == list->cap) {
    size_t cap = list->cap ? list->cap * 2 : 4;
    rem_err_t *items = realloc(list->items, cap * sizeof *items);
    if (!items) return UV_ENOMEM;
    list->items = items;
    list->cap = cap;
  }
  list->items[list->len].code = code;
  list->items[list->len].payload = payload;
  list->len++;
  return 0;
}

void rem_errlist_clear(rem_errlist_t *list, void (*release)(intptr_t payload, void *ud),
                       void *ud) {
  if (release)
    for (size_t i = 0; i < list->len; i++) release(list->items[i].payload, ud);
  free(list->items);
  rem_errlist_init(list);
}
