/* error.h - the project's error convention.
 *
 * Internal functions return sf_ret: 0 on success or a negative errno.  When a
 * failure has something to tell the user, the function also fills a
 * struct sf_error (may be NULL when the caller does not care) with one line
 * naming what is wrong (ref, layer digest, tar entry).  Callers higher up may
 * prefix context; the message is printed once, at the top.  A negative errno
 * becomes positive exactly once, at fuse_reply_err().
 */
#ifndef SF_ERROR_H
#define SF_ERROR_H

#include <stddef.h>
#include <stdlib.h>

typedef int sf_ret; /* 0 or -errno */

#define SF_ERROR_MSG_MAX 1024

struct sf_error {
	int code;		    /* positive errno, 0 when unset */
	char msg[SF_ERROR_MSG_MAX]; /* one line, no trailing newline */
};

/* Record a failure and return -code.  err may be NULL. */
sf_ret sf_fail(struct sf_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prepend "context: " to an existing message (no-op when err is NULL). */
void sf_error_prefix(struct sf_error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Message to show the user: err->msg, or strerror(-ret) when no message. */
const char *sf_error_text(const struct sf_error *err, sf_ret ret);

/* Cleanup helpers (GCC/clang): free on every path, move ownership out. */
static inline void sf_freep(void *p)
{
	free(*(void **)p);
}
#define _cleanup_free_ __attribute__((cleanup(sf_freep)))

static inline void *sf_steal_pointer(void *pp)
{
	void **p = pp;
	void *v = *p;
	*p = NULL;
	return v;
}
#define steal_pointer(pp) sf_steal_pointer(pp)

#endif
