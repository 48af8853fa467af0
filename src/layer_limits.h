/* layer_limits.h - what one layer may cost: the knobs a user can turn.
 *
 * The tar reader and the index have fixed limits on single objects (a path,
 * a PAX header, an xattr: SF_TAR_MAX_*, SF_INDEX_MAX_*).  These are the
 * limits on a whole layer, where a sane value depends on the images one
 * runs, so `mount` and `rootfs` take them as options:
 *   --max-layer-size SIZE      compressed blob size the manifest may claim
 *   --max-expansion-ratio N    uncompressed bytes per compressed byte, a
 *                              decompression bomb's tell; the first
 *                              SF_LIMITS_EXPANSION_SLACK bytes are always
 *                              allowed, so tiny layers of zeros pass
 *   --max-entries N            tar entries in one layer
 * A layer over a limit fails (state "failed", the reason in status, EIO on
 * every request) and never reaches the cache's layers/ directory.
 */
#ifndef SF_LAYER_LIMITS_H
#define SF_LAYER_LIMITS_H

#include <stdint.h>

#define SF_LIMITS_DEFAULT_MAX_LAYER_SIZE (64ull << 30)	    /* 64 GiB */
#define SF_LIMITS_DEFAULT_MAX_EXPANSION_RATIO 1000ull	    /* gzip's ceiling is ~1032 */
#define SF_LIMITS_DEFAULT_MAX_ENTRIES (4ull * 1024 * 1024) /* Debian's largest images: ~0.5M */
/* Always allowed, whatever the ratio: zstd packs a file of zeros (a
 * preallocated database, a disk image) far beyond any sane ratio, and a
 * valid image must not be refused for it; 1 GiB of zeros in the cache is
 * no threat. */
#define SF_LIMITS_EXPANSION_SLACK (1ull << 30)

struct sf_limits {
	uint64_t max_layer_size;
	uint64_t max_expansion_ratio;
	uint64_t max_entries;
};

#define SF_LIMITS_DEFAULTS                                                                  \
	((struct sf_limits){ .max_layer_size = SF_LIMITS_DEFAULT_MAX_LAYER_SIZE,             \
			     .max_expansion_ratio = SF_LIMITS_DEFAULT_MAX_EXPANSION_RATIO,   \
			     .max_entries = SF_LIMITS_DEFAULT_MAX_ENTRIES })

/* Set the limit named by the long option `opt` ("max-layer-size", ...) from
 * the text `val` (sizes take K/M/G/T suffixes).  Returns 0, or -EINVAL for an
 * unknown option or a value that is not a positive number. */
int sf_limits_set(struct sf_limits *l, const char *opt, const char *val);

/* Most uncompressed bytes allowed for a blob of `blob_size` bytes. */
uint64_t sf_limits_max_expanded(const struct sf_limits *l, uint64_t blob_size);

#endif
