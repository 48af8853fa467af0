#include "reader.h"

#include <errno.h>

ssize_t sf_read_full(struct sf_reader r, void *buf, size_t len, struct sf_error *err)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = sf_read(r, (char *)buf + got, len - got, err);
		if (n < 0)
			return n;
		if (n == 0) {
			if (got == 0)
				return 0;
			return sf_fail(err, EIO, "truncated stream: wanted %zu bytes, got %zu", len, got);
		}
		got += (size_t)n;
	}
	return (ssize_t)got;
}

static ssize_t mem_read(void *ctx, void *buf, size_t len, struct sf_error *err)
{
	struct sf_mem_reader *m = ctx;
	size_t left = m->len - m->pos;

	(void)err;
	if (len > left)
		len = left;
	if (m->max_step && len > m->max_step)
		len = m->max_step;
	memcpy(buf, m->data + m->pos, len);
	m->pos += len;
	return (ssize_t)len;
}

struct sf_reader sf_mem_reader_init(struct sf_mem_reader *m, const void *data, size_t len)
{
	m->data = data;
	m->len = len;
	m->pos = 0;
	m->max_step = 0;
	return (struct sf_reader){ .read = mem_read, .ctx = m };
}
