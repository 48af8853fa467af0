/* progress.h - transfer rates and human-readable sizes for progress output
 * (`soci-fuse pull` bars, <mnt>/status).
 *
 * A rate is an exponentially weighted moving average of the byte count's
 * growth between samples, so one slow or fast interval does not make the
 * shown rate jump; samples closer than SF_RATE_MIN_INTERVAL apart are
 * folded into the next one (status files can be read in bursts).
 */
#ifndef SF_PROGRESS_H
#define SF_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

#define SF_RATE_MIN_INTERVAL 0.2 /* seconds */
#define SF_RATE_HALF_LIFE 2.0	 /* seconds for a sample's weight to halve */

struct sf_rate {
	double last_t;	     /* time of the last folded sample; 0 = none yet */
	uint64_t last_bytes; /* byte count at last_t */
	double rate;	     /* bytes per second */
};

/* Seconds on the monotonic clock. */
double sf_now(void);
/* Fold in a sample (bytes so far, at time now); returns the current rate. */
double sf_rate_update(struct sf_rate *r, uint64_t bytes, double now);
/* "1.5 GB", "12.0 MB", "512 B" (decimal units, as registries and curl show
 * them); writes at most len bytes, returns buf. */
char *sf_format_bytes(uint64_t n, char *buf, size_t len);

#endif
