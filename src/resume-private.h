/* resume-private.h - test seam of resume.c. */
#ifndef SF_RESUME_PRIVATE_H
#define SF_RESUME_PRIVATE_H

/* Every fdatasync() of the persister (blob and map) goes through this
 * pointer, fdatasync by default; unit tests swap in a fake that checks
 * the order of syncs and records, or fails.  Set it only while no spool
 * is open. */
extern int (*sf_spool_datasync)(int fd);
/* SF_SPOOL_PERSIST_MS by default; tests make it huge so that a round runs
 * only at SF_SPOOL_PERSIST_BATCH ranges or at close, deterministically. */
extern unsigned sf_spool_persist_ms;

#endif
