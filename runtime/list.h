/* Intrusive circular doubly linked lists (libuv's queue, with names).
 * A node is embedded in the owner struct; REM_CONTAINER_OF gets the owner back.
 * Nothing here allocates. */
#ifndef REM_LIST_H
#define REM_LIST_H

#include <stddef.h>

typedef struct rem_list {
  struct rem_list *next;
  struct rem_list *prev;
} rem_list_t;

#define REM_CONTAINER_OF(ptr, type, field) \
  ((type *)((char *)(ptr) - offsetof(type, field)))

static inline void rem_list_init(rem_list_t *head) {
  head->next = head;
  head->prev = head;
}

static inline int rem_list_empty(const rem_list_t *head) {
  return head->next == head;
}

/* A node that is linked nowhere points to itself, so removing it twice is safe. */
static inline void rem_list_remove(rem_list_t *node) {
  node->prev->next = node->next;
  node->next->prev = node->prev;
  node->next = node;
  node->prev = node;
}

static inline void rem_list_push_back(rem_list_t *head, rem_list_t *node) {
  node->prev = head->prev;
  node->next = head;
  head->prev->next = node;
  head->prev = node;
}

static inline rem_list_t *rem_list_pop_front(rem_list_t *head) {
  rem_list_t *n = head->next;
  if (n == head) return NULL;
  rem_list_remove(n);
  return n;
}

/* Moves every node of `from` to the end of `to`; `from` ends empty. */
static inline void rem_list_splice(rem_list_t *to, rem_list_t *from) {
  if (rem_list_empty(from)) return;
  from->next->prev = to->prev;
  to->prev->next = from->next;
  from->prev->next = to;
  to->prev = from->prev;
  rem_list_init(from);
}

#endif
