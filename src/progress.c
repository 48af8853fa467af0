/* progress.c - see progress.h. */
#include "progress.h"

#include <stdio.h>
#include <time.h>

double sf_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double sf_rate_update(struct sf_rate *r, uint64_t bytes, double now)
{
	double dt, inst, w;

	if (r->last_t == 0 || bytes < r->last_bytes) {
		r->last_t = now;
		r->last_bytes = bytes;
		return r->rate;
	}
	dt = now - r->last_t;
	if (dt < SF_RATE_MIN_INTERVAL)
		return r->rate;
	inst = (double)(bytes - r->last_bytes) / dt;
	/* weight of the old average after dt seconds: about 1/2 after a
	 * half-life (a rational stand-in for 2^(-dt/h); no libm needed) */
	w = SF_RATE_HALF_LIFE / (SF_RATE_HALF_LIFE + dt);
	r->rate = r->rate == 0 ? inst : w * r->rate + (1 - w) * inst;
	r->last_t = now;
	r->last_bytes = bytes;
	return r->rate;
}

char *sf_format_bytes(uint64_t n, char *buf, size_t len)
{
	static const char *units[] = { "kB", "MB", "GB", "TB", "PB" };
	double v = (double)n;
	unsigned u = 0;

	if (n < 1000) {
		snprintf(buf, len, "%u B", (unsigned)n);
		return buf;
	}
	v /= 1000;
	while (v >= 999.95 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1000;
		u++;
	}
	snprintf(buf, len, "%.1f %s", v, units[u]);
	return buf;
}
