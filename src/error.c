#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

sf_ret sf_fail(struct sf_error *err, int code, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
		err->code = code;
	}
	return -code;
}

void sf_error_prefix(struct sf_error *err, const char *fmt, ...)
{
	char prefix[SF_ERROR_MSG_MAX];
	char joined[2 * SF_ERROR_MSG_MAX + 4];
	va_list ap;

	if (!err)
		return;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	snprintf(joined, sizeof(joined), "%s: %s", prefix, err->msg);
	memcpy(err->msg, joined, sizeof(err->msg) - 1); /* truncate, keep the NUL */
	err->msg[sizeof(err->msg) - 1] = '\0';
}

const char *sf_error_text(const struct sf_error *err, sf_ret ret)
{
	if (err && err->msg[0])
		return err->msg;
	return strerror(ret < 0 ? -ret : ret);
}
