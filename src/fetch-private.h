/* fetch-private.h - internals shared by the modules of the fetcher.
 *
 * fetch.c is the core (the thread, scheduling, retries, the public API);
 * fetch_http.c reads response headers and judges an answer before its body
 * is stored.  Both run on the fetcher thread only.  Nothing outside those
 * two files includes this.
 */
#ifndef SF_FETCH_PRIVATE_H
#define SF_FETCH_PRIVATE_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fetch.h"

#define AUTH_HEADER_MAX 8192
#define WHY_MAX 256

enum chunk_state { CH_READY = 0, CH_BACKOFF, CH_RUNNING, CH_DONE };

struct chunk {
	uint64_t done;	/* [off, off + done) is written */
	int64_t due_ms; /* CH_BACKOFF: monotonic time it may start */
	int tries;	/* failed attempts charged to the retry budget */
	int auth_tries;	  /* 401s since the blob last made progress (auth_oks) */
	uint64_t auth_oks; /* bstate.oks at the last of them */
	int hops; /* redirects followed since this chunk last got data */
	enum chunk_state state;
};

/* Fetcher-private state of one blob (sf_blob.priv). */
struct bstate {
	struct sf_blob *b;
	struct bstate *next_pending;
	/* Where every request of this blob goes, with that host's TLS settings
	 * and token: taken once when the blob is added, so a resolve that
	 * switches the registry to another mirror meanwhile cannot give a
	 * chunk one host's URL and another's credentials. */
	struct sf_endpoint *ep;
	char *url;	/* the registry's blob URL (on ep) */
	char *loc;	/* where it redirected to (reused for every chunk), or NULL */
	int refusals;	/* store refusals since any chunk of the blob last got data */
	uint64_t oks;	/* answers judged V_OK so far: the blob's progress */
	uint64_t cs;			/* chunk size */
	uint64_t nchunks, head, next;	/* see the invariants above */
	struct chunk *chunks;
	uint64_t contig; /* the fetcher's copy of b->contiguous */
	int running;	 /* transfers in flight */
	bool stream;	 /* no range support: one streamed GET */
	struct chunk sc; /* retry state of the streamed GET */
};

/* What to do with a response body; decided before its first byte. */
enum verdict {
	V_UNSET = 0, /* no final response seen yet */
	V_OK,	     /* write it */
	V_DISCARD,   /* error status: swallow the body, act on completion */
	V_NORANGE,   /* 200 to a Range request: abort, switch to stream mode */
	V_BAD,	     /* unusable answer (x->why says why): abort, retry */
};

struct xfer {
	CURL *easy;
	bool busy;
	int slot; /* the connslots slot it holds while busy, or -1 */
	struct bstate *bs;
	struct chunk *c;   /* a chunk of bs, or &bs->sc in stream mode */
	uint64_t from, to; /* requested blob bytes [from, to) */
	uint64_t pos;	   /* chunk: next offset to write; stream: body bytes seen */
	uint64_t skip;	   /* stream: body bytes below this are on disk already */
	struct curl_slist *hdrs;
	enum verdict verdict;
	int werr; /* errno of a failed spool write */
	long status;
	long retry_after_s; /* -1 when absent or unparsable */
	bool to_store;	    /* sent to bs->loc, another origin: no Authorization */
	char crange[128];
	char www_auth[2048];
	char why[WHY_MAX];
	char errbuf[CURL_ERROR_SIZE];
	char auth[AUTH_HEADER_MAX]; /* the Authorization line this request used */
};
static inline bool is_stream_xfer(const struct xfer *x)
{
	return x->c == &x->bs->sc;
}

/* ---- fetch_http.c ---- */

/* Forget the headers of the previous response (redirect, 100, new request). */
void fetch_response_reset(struct xfer *x);
/* CURLOPT_HEADERFUNCTION: records Content-Range, WWW-Authenticate and
 * Retry-After of the current response in x (ud). */
size_t fetch_on_header(char *buf, size_t size, size_t n, void *ud);
/* Decide about the final response; V_UNSET when there is none yet.  Sets
 * x->status, and x->why for V_BAD. */
enum verdict fetch_judge(struct xfer *x);
/* The errno for a final HTTP error status. */
int fetch_http_errno(long status);
/* 301, 302, 303, 307, 308. */
bool fetch_is_redirect(long status);
/* Same scheme, host and port. */
bool fetch_same_origin(const char *a, const char *b);
/* x got a redirect: point x->bs->loc at its target (absolute, http or
 * https).  -errno with x->why set when it cannot be followed. */
int fetch_follow(struct xfer *x);

#endif
