/* Error lists: the failures an error group collects, in order.
 *
 * Each entry is a negative code and an opaque payload the caller interprets (the Lua
 * bindings store a registry reference to the error value). The list owns only its array.
 */
#ifndef REM_ERRLIST_H
#define REM_ERRLIST_H

#include <stddef.h>
#include <stdint.h>

typedef struct rem_err {
  int code;
  intptr_t payload;
} rem_err_t;

typedef struct rem_errlist {
  rem_err_t *items;
  size_t len;
  size_t cap;
} rem_errlist_t;

void rem_errlist_init(rem_errlist_t *list);
/* Appends; returns 0 or UV_ENOMEM (the list is unchanged then). */
int rem_errlist_push(rem_errlist_t *list, int code, intptr_t payload);
/* Frees the array; calls `release(payload)` for each entry first when not NULL. */
void rem_errlist_clear(rem_errlist_t *list, void (*release)(intptr_t payload, void *ud),
                       void *ud);

#endif
