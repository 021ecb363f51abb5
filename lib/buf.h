/* buf: a growable byte string (qmail's stralloc, Postfix's vstring).
 * Always kept NUL-terminated so s can be used as a C string when the
 * content has no NULs. Allocation failure is fatal (exit 111). */
#ifndef MX_BUF_H
#define MX_BUF_H
#include <stddef.h>

struct buf {
	char *s;
	size_t len;
	size_t cap;
};
#define BUF_INIT { NULL, 0, 0 }

void buf_reserve(struct buf *b, size_t extra);
void buf_add(struct buf *b, const void *p, size_t n);
void buf_adds(struct buf *b, const char *s);
void buf_addc(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_set(struct buf *b, const char *s);
void buf_clear(struct buf *b);
void buf_free(struct buf *b);

/* xmalloc family: die(111) on failure. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t sz);
void *xreallocarray(void *p, size_t n, size_t sz);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
#endif
