/* Read buffers: the bytes a stream received and nobody consumed yet.
 *
 * One contiguous block with a start and an end offset: libuv reads into the free tail,
 * readers consume from the front. It grows geometrically when a reader needs more than it
 * holds (a long line, read("a")) and gives its memory back once emptied if it grew large,
 * so a thousand idle connections do not each keep a big block. The caller owns the struct.
 */
#ifndef REM_RBUF_H
#define REM_RBUF_H

#include <stddef.h>
#include <sys/types.h>

typedef struct rem_rbuf {
  char *data;
  size_t start;  /* first unread byte */
  size_t end;    /* one past the last unread byte */
  size_t cap;
} rem_rbuf_t;

void rem_rbuf_init(rem_rbuf_t *buf);
void rem_rbuf_free(rem_rbuf_t *buf);

static inline size_t rem_rbuf_len(const rem_rbuf_t *buf) {
  return buf->end - buf->start;
}
static inline const char *rem_rbuf_peek(const rem_rbuf_t *buf) {
  return buf->data + buf->start;
}

/* Makes at least `min` bytes free after the unread ones (moving them to the front or
 * growing). Returns the free tail and its size in `*avail`, or NULL when out of memory. */
char *rem_rbuf_reserve(rem_rbuf_t *buf, size_t min, size_t *avail);
/* The `n` bytes after the unread ones were filled. */
void rem_rbuf_commit(rem_rbuf_t *buf, size_t n);
/* Drops the first `n` unread bytes. */
void rem_rbuf_consume(rem_rbuf_t *buf, size_t n);
/* Offset (from the first unread byte) of the first `c` at or after `from`, or -1. */
ssize_t rem_rbuf_find(const rem_rbuf_t *buf, char c, size_t from);

#endif
