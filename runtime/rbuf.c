#include "rbuf.h"

#include <stdlib.h>
#include <string.h>

/* An emptied buffer larger than this is freed rather than kept for the next read. */
#define RBUF_KEEP (64 * 1024)
#define RBUF_MIN (16 * 1024)

void rem_rbuf_init(rem_rbuf_t *buf) {
  buf->data = NULL;
  buf->start = buf->end = buf->cap = 0;
}

void rem_rbuf_free(rem_rbuf_t *buf) {
  free(buf->data);
  rem_rbuf_init(buf);
}

char *rem_rbuf_reserve(rem_rbuf_t *buf, size_t min, size_t *avail) {
  size_t len = rem_rbuf_len(buf);
  if (buf->cap - buf->end < min) {
    if (buf->start > 0) {  /* compact first: the consumed front is free space too */
      memmove(buf->data, buf->data + buf->start, len);
      buf->start = 0;
      buf->end = len;
    }
    if (buf->cap - len < min) {
      size_t cap = buf->cap ? buf->cap : RBUF_MIN;
      while (cap - len < min) {
        if (cap > (size_t)-1 / 2) return NULL;
        cap *= 2;
      }
      char *data = realloc(buf->data, cap);
      if (!data) return NULL;
      buf->data = data;
      buf->cap = cap;
    }
  }
  *avail = buf->cap - buf->end;
  return buf->data + buf->end;
}

void rem_rbuf_commit(rem_rbuf_t *buf, size_t n) {
  buf->end += n;
}

void rem_rbuf_consume(rem_rbuf_t *buf, size_t n) {
  buf->start += n;
  if (buf->start < buf->end) return;
  buf->start = buf->end = 0;
  if (buf->cap > RBUF_KEEP) rem_rbuf_free(buf);
}

ssize_t rem_rbuf_find(const rem_rbuf_t *buf, char c, size_t from) {
  size_t len = rem_rbuf_len(buf);
  if (from >= len) return -1;
  const char *p = memchr(rem_rbuf_peek(buf) + from, c, len - from);
  return p ? (ssize_t)(p - rem_rbuf_peek(buf)) : -1;
}
