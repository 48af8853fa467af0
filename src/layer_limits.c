/* layer_limits.c - see layer_limits.h. */
#include "layer_limits.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int parse_u64(const char *s, int shift_ok, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	if (shift_ok) {
		switch (*end) {
		case 'k': case 'K': shift = 10; end++; break;
		case 'm': case 'M': shift = 20; end++; break;
		case 'g': case 'G': shift = 30; end++; break;
		case 't': case 'T': shift = 40; end++; break;
		default: break;
		}
		if (shift && *end == 'i')
			end++;
		if (*end == 'B')
			end++;
	}
	if (*end || v == 0 || v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

int sf_limits_set(struct sf_limits *l, const char *opt, const char *val)
{
	if (strcmp(opt, "max-layer-size") == 0)
		return parse_u64(val, 1, &l->max_layer_size);
	if (strcmp(opt, "max-expansion-ratio") == 0)
		return parse_u64(val, 0, &l->max_expansion_ratio);
	if (strcmp(opt, "max-entries") == 0)
		return parse_u64(val, 0, &l->max_entries);
	return -EINVAL;
}

uint64_t sf_limits_max_expanded(const struct sf_limits *l, uint64_t blob_size)
{
	uint64_t max = UINT64_MAX;

	if (!blob_size || l->max_expansion_ratio <= UINT64_MAX / blob_size)
		max = blob_size * l->max_expansion_ratio;
	return max > SF_LIMITS_EXPANSION_SLACK ? max : SF_LIMITS_EXPANSION_SLACK;
}
