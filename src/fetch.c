/* fetch.c - parallel chunked blob download; the contract is in fetch.h.
 *
 * The scheduler
 * -------------
 * One thread (fetcher_main) owns the CURLM, every easy handle and every
 * piece of fetcher-private state below.  Other threads only touch three
 * things: the pending queue (sf_fetcher_add, under f->lock, followed by
 * curl_multi_wakeup), the cancel queue (sf_fetcher_cancel, likewise) and
 * the public progress fields of a blob (under b->lock).  No libcurl call
 * and no change to an adopted blob happens anywhere else, and nothing that
 * ends a transfer runs inside a libcurl callback:
 * the callbacks only write bytes and record verdicts; xfer_done() acts on
 * them once curl_multi_info_read() reports the transfer finished.
 *
 * A blob's bytes [start, size) are cut into chunks of chunk_size (the
 * last one shorter); chunk i covers [start + i*cs, ...).  Each chunk has
 * `done`, the length of its prefix that is written to the spool fd.  A
 * chunk's transfer always asks for exactly the missing part, bytes
 * [off + done, off + len), so a body cut short resumes where it stopped
 * and no byte is written twice.  Invariants per blob (struct bstate):
 *
 *   head <= next <= nchunks.  Chunks below `head` are complete; chunks at
 *   or above `next` have never been requested.  Chunks are first issued in
 *   order (next only grows), so everything started but not yet contiguous
 *   lies in [head, next).
 *
 *   next - head <= window.  A new chunk is issued only while fewer than
 *   `window` chunks sit in [head, next), in flight, waiting for a retry or
 *   done out of order.  Retries of chunks already in that range do not
 *   need room in the window and are preferred over new chunks, lowest
 *   offset first, because the unpacker is waiting for the lowest bytes.
 *
 *   contig == offset of chunk `head` + its `done` (or size when head ==
 *   nchunks).  Since the head chunk is written sequentially, the published
 *   b->contiguous advances with every write to it, not only at chunk
 *   boundaries, so the unpacker streams behind the download.  It is only
 *   ever raised, under b->lock, followed by a broadcast.
 *
 *   inflight == number of busy xfers <= connections, over all blobs.
 *   schedule() hands free slots out round-robin over the active blobs, one
 *   chunk per blob per turn, so a large blob cannot starve a small one.
 *   With a cache-wide limit (connslots.h) a transfer also needs one of the
 *   cache's connection slots, taken when it starts and given back when it
 *   ends; when none is free the loop polls again after SLOT_POLL_MS.
 *
 * Chunk states: READY (may start now), BACKOFF (may start at due_ms),
 * RUNNING (an xfer owns it), DONE.  An aborted transfer returns its chunk
 * to READY.  Timers are not separate objects: the poll timeout is the
 * earliest due_ms of a BACKOFF chunk (only when a slot is free, otherwise
 * the loop would spin), and curl_multi_poll() also honours libcurl's own
 * timers.
 *
 * Answers are judged before the first body byte is stored (fetch_judge()
 * in fetch_http.c, with the header parsing): a
 * chunk needs 206 with Content-Range exactly "bytes a-b/size" for what was
 * asked.  A 200 means the server ignores Range: the blob switches to
 * stream mode, where all its chunk transfers are dropped and a single GET
 * without Range re-reads the blob from byte 0, discarding the body below
 * contig and writing from there on sequentially (bstate.sc holds the retry
 * state of that GET; contig is then simply its write position).
 *
 * Failures: 401 asks the registry for a new token and retries at once (at
 * most AUTH_RETRIES times per chunk without progress of the blob in
 * between, and without consuming the retry budget);
 * 408, 429, 5xx, a wrong Content-Range, a short body and transport errors
 * consume one of `retries` and wait (Retry-After for 429, else jittered
 * exponential backoff); any other status, a spool write error or an
 * exhausted budget ends the blob with an error naming blob and registry.
 * Ending a blob (blob_end) first detaches all its transfers, so after
 * `finished` is set the fetcher never touches the blob again.
 *
 * Cancelling one blob (sf_fetcher_cancel): a blob still in the pending
 * queue was never seen by the thread, so the caller unlinks it there and
 * ends it itself.  Otherwise the caller queues a cancel_req on its stack
 * and sleeps on the blob's cond; the thread, at the top of each loop turn
 * (after adopt, so a blob taken from the pending queue is active by then),
 * ends the blob if it is still active (blob_end: transfers removed from
 * the multi handle, -ECANCELED) and sets req->done under b->lock.  The
 * exiting thread serves the last requests after cancel_all and sets
 * `exited`, after which nothing is queued.  The caller holds b->lock from
 * its "unfinished?" check until it queued, and whoever finishes a blob
 * needs b->lock, so f is alive whenever the caller touches it; a finished
 * blob never makes the caller touch f, even after sf_fetcher_free.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fetch-private.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "connslots.h"

#define BACKOFF_BASE_MS 100
#define BACKOFF_MAX_MS 5000
#define RETRY_AFTER_MAX_MS 30000
#define AUTH_RETRIES 3 /* re-authentications per chunk */
#define IDLE_POLL_MS 1000
#define CURL_BUFFER_SIZE (256L * 1024)
#define STALL_SECONDS 30L /* less than 1 byte/s for this long: retry */
#define MAX_REDIRECTS 5	 /* per chunk, in a row (a redirect loop) */
#define MAX_STORE_REFUSALS 16 /* per blob, without any data in between */
#define SLOT_POLL_MS 50 /* waiting for a cache-wide connection slot */

/* One sf_fetcher_cancel() call waiting for the thread; on its stack. */
struct cancel_req {
	struct sf_blob *b;
	struct cancel_req *next;
	bool done; /* under b->lock: the fetcher is through with b */
};

struct sf_fetcher {
	uint64_t chunk_size;
	int conns, window, retries;
	CURLM *multi;
	pthread_t thread;

	pthread_mutex_t lock; /* guards pending, cancels, stop and exited */
	struct bstate *pending, *pending_tail;
	struct cancel_req *cancels;
	bool stop;
	bool exited; /* the thread serves no more cancel requests */
	bool joined; /* sf_fetcher_stop has run (or is running) */

	/* fetcher thread only */
	struct bstate **active;
	size_t nactive, cap, rr;
	struct xfer *xfers;
	int inflight;
	uint64_t rng;
	struct sf_connslots *slots; /* NULL: no cache-wide limit */
	bool slot_starved;	    /* work waits for a cache-wide slot */
};

/* ---- small helpers ---- */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t rng_next(struct sf_fetcher *f)
{
	/* xorshift64: jitter only, quality does not matter */
	f->rng ^= f->rng << 13;
	f->rng ^= f->rng >> 7;
	f->rng ^= f->rng << 17;
	return f->rng;
}

/* Equal jitter: a delay in [d/2, d], d = base * 2^(tries-1) capped. */
static int64_t backoff_ms(struct sf_fetcher *f, int tries)
{
	int shift = tries > 1 ? tries - 1 : 0;
	int64_t d = BACKOFF_MAX_MS;

	if (shift < 16)
		d = (int64_t)BACKOFF_BASE_MS << shift;
	if (d > BACKOFF_MAX_MS)
		d = BACKOFF_MAX_MS;
	return d / 2 + (int64_t)(rng_next(f) % (uint64_t)(d / 2 + 1));
}

static uint64_t chunk_off(const struct bstate *bs, uint64_t i)
{
	return bs->b->start + i * bs->cs;
}

static uint64_t chunk_len(const struct bstate *bs, uint64_t i)
{
	uint64_t off = chunk_off(bs, i);
	uint64_t left = bs->b->size - off;

	return left < bs->cs ? left : bs->cs;
}

static int write_all(int fd, const char *buf, size_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, buf, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		buf += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* ---- publishing progress (the only writes to the public fields) ---- */

/* Chunk mode: move head over complete chunks and recompute contig. */
static void advance(struct bstate *bs)
{
	while (bs->head < bs->nchunks &&
	       bs->chunks[bs->head].done == chunk_len(bs, bs->head))
		bs->head++;
	if (bs->next < bs->head) /* chunks found present at the start are skipped */
		bs->next = bs->head;
	if (bs->head == bs->nchunks)
		bs->contig = bs->b->size;
	else
		bs->contig = chunk_off(bs, bs->head) + bs->chunks[bs->head].done;
}

static void publish(struct bstate *bs, uint64_t written)
{
	struct sf_blob *b = bs->b;

	pthread_mutex_lock(&b->lock);
	b->fetched += written;
	b->downloaded += written;
	if (b->fetched < bs->contig) /* stream mode rewrites nothing twice in fetched */
		b->fetched = bs->contig;
	if (bs->contig > b->contiguous) {
		b->contiguous = bs->contig;
		pthread_cond_broadcast(&b->cond);
	}
	pthread_mutex_unlock(&b->lock);
}

/* Mark b finished, with an error when ret < 0; the caller holds b->lock. */
static void blob_finish_locked(struct sf_blob *b, sf_ret ret, const char *msg)
{
	b->priv = NULL;
	if (ret < 0) {
		b->error = ret;
		sf_fail(&b->err, -ret, "%s", msg);
	}
	b->finished = true;
	pthread_cond_broadcast(&b->cond);
}

/* Mark b finished.  Used before and after the fetcher adopted it; the
 * caller must hold no reference to b afterwards. */
static void blob_finish(struct sf_blob *b, sf_ret ret, const char *msg)
{
	pthread_mutex_lock(&b->lock);
	blob_finish_locked(b, ret, msg);
	pthread_mutex_unlock(&b->lock);
}

static void blob_message(const struct sf_blob *b, char *out, size_t len, const char *fmt,
			 va_list ap) __attribute__((format(printf, 4, 0)));
static void blob_message(const struct sf_blob *b, char *out, size_t len, const char *fmt,
			 va_list ap)
{
	char detail[SF_ERROR_MSG_MAX / 2]; /* leaves room for digest and registry */

	vsnprintf(detail, sizeof(detail), fmt, ap);
	snprintf(out, len, "blob %s from %s: %s", b->digest, sf_registry_name(b->reg), detail);
}

/* Finish a blob the thread never saw; `locked`: the caller holds b->lock. */
static void blob_finish_early(struct sf_blob *b, bool locked, sf_ret ret, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void blob_finish_early(struct sf_blob *b, bool locked, sf_ret ret, const char *fmt, ...)
{
	char msg[SF_ERROR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	blob_message(b, msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (locked)
		blob_finish_locked(b, ret, msg);
	else
		blob_finish(b, ret, msg);
}

/* ---- libcurl callbacks (fetcher thread, inside curl_multi_perform) ---- */

static size_t chunk_body(struct xfer *x, const char *data, size_t len)
{
	uint64_t room = x->to - x->pos;
	size_t take = len < room ? len : (size_t)room;
	int r = write_all(x->bs->b->fd, data, take, x->pos);

	if (r < 0) {
		x->werr = -r;
		return 0;
	}
	x->pos += take;
	x->c->done += take;
	if (take > 0 && x->bs->b->chunk_done) {
		uint64_t i = (uint64_t)(x->c - x->bs->chunks);
		if (x->c->done == chunk_len(x->bs, i))
			x->bs->b->chunk_done(x->bs->b->hook_arg, chunk_off(x->bs, i),
					     chunk_len(x->bs, i));
	}
	advance(x->bs);
	publish(x->bs, take);
	if (take < len) {
		snprintf(x->why, sizeof(x->why), "body longer than the requested range");
		x->verdict = V_BAD;
		return 0;
	}
	return len;
}

static size_t stream_body(struct xfer *x, const char *data, size_t len)
{
	struct bstate *bs = x->bs;
	uint64_t o = x->pos, from;
	int r;

	if (len > bs->b->size - o) {
		snprintf(x->why, sizeof(x->why), "body longer than the blob size %" PRIu64,
			 bs->b->size);
		x->verdict = V_BAD;
		return 0;
	}
	x->pos += len;
	if (x->pos <= x->skip)
		return len; /* already contiguous on disk */
	from = o < x->skip ? x->skip : o;
	r = write_all(bs->b->fd, data + (from - o), (size_t)(x->pos - from), from);
	if (r < 0) {
		x->werr = -r;
		return 0;
	}
	bs->contig = x->pos;
	publish(bs, 0);
	return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
	struct xfer *x = ud;
	size_t len = size * n;

	if (x->verdict == V_UNSET) {
		x->verdict = fetch_judge(x);
		if (x->verdict == V_OK) { /* the URL works */
			x->c->hops = 0;
			x->bs->refusals = 0;
			x->bs->oks++;
		}
	}
	switch (x->verdict) {
	case V_OK:
		return is_stream_xfer(x) ? stream_body(x, data, len) : chunk_body(x, data, len);
	case V_DISCARD:
		return len;
	default:
		return 0; /* abort the transfer; xfer_done() reads the verdict */
	}
}

/* ---- transfers ---- */

static sf_ret xfer_options(struct xfer *x)
{
	CURL *e = x->easy;
	char range[64];

	const char *url = x->bs->loc ? x->bs->loc : x->bs->url;

	/* Redirects are ours (fetch_follow): the target is kept for the other
	 * chunks, and the Authorization header goes to the registry's origin
	 * only, never to the object store or CDN a blob is redirected to. */
	x->to_store = !fetch_same_origin(url, x->bs->url);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, NULL); /* raw bytes, ranges of them */
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, fetch_on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_PRIVATE, x);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
	if (!is_stream_xfer(x)) {
		snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64, x->from, x->to - 1);
		curl_easy_setopt(e, CURLOPT_RANGE, range);
	}
	x->auth[0] = '\0';
	if (!x->to_store)
		sf_endpoint_auth_header(x->bs->ep, x->auth, sizeof(x->auth));
	if (x->auth[0]) {
		x->hdrs = curl_slist_append(NULL, x->auth);
		if (!x->hdrs)
			return -ENOMEM;
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
	}
	return 0;
}

/* Configure x->easy from scratch for x's request. */
static sf_ret xfer_prepare(struct xfer *x)
{
	if (!x->easy) {
		x->easy = curl_easy_init();
		if (!x->easy)
			return -ENOMEM;
	}
	curl_easy_reset(x->easy); /* keeps the connection cache; clears old options */
	curl_easy_setopt(x->easy, CURLOPT_BUFFERSIZE, CURL_BUFFER_SIZE);
	curl_easy_setopt(x->easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(x->easy, CURLOPT_LOW_SPEED_TIME, STALL_SECONDS);
	sf_endpoint_setup_curl(x->bs->ep, x->easy); /* may override the two above */
	return xfer_options(x);
}

static struct xfer *xfer_free_slot(struct sf_fetcher *f)
{
	for (int i = 0; i < f->conns; i++)
		if (!f->xfers[i].busy)
			return &f->xfers[i];
	return NULL;
}

static void xfer_detach(struct sf_fetcher *f, struct xfer *x)
{
	curl_multi_remove_handle(f->multi, x->easy);
	curl_slist_free_all(x->hdrs);
	x->hdrs = NULL;
	x->busy = false;
	if (f->slots)
		sf_connslots_give(f->slots, x->slot);
	x->slot = -1;
	f->inflight--;
	x->bs->running--;
	if (x->c->state == CH_RUNNING)
		x->c->state = CH_READY;
}

static void xfer_init_request(struct xfer *x, struct bstate *bs, struct chunk *c)
{
	x->bs = bs;
	x->c = c;
	x->verdict = V_UNSET;
	x->werr = 0;
	x->status = 0;
	x->why[0] = '\0';
	x->errbuf[0] = '\0';
	x->hdrs = NULL;
	fetch_response_reset(x);
	if (is_stream_xfer(x)) {
		x->from = 0;
		x->to = bs->b->size;
		x->pos = 0;
		x->skip = bs->contig;
	} else {
		uint64_t i = (uint64_t)(c - bs->chunks);
		x->from = chunk_off(bs, i) + c->done;
		x->to = chunk_off(bs, i) + chunk_len(bs, i);
		x->pos = x->from;
		x->skip = 0;
	}
}

static void blob_fail(struct sf_fetcher *f, struct bstate *bs, sf_ret ret, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Start c's transfer holding cache-wide slot `slot` (-1: none); on failure
 * the slot is given back and the blob is failed (and bs freed). */
static sf_ret xfer_start(struct sf_fetcher *f, struct bstate *bs, struct chunk *c, int slot)
{
	struct xfer *x = xfer_free_slot(f);
	sf_ret r;

	if (!x) /* cannot happen: callers check inflight < conns */
		return -EAGAIN;
	xfer_init_request(x, bs, c);
	r = xfer_prepare(x);
	if (r == 0 && curl_multi_add_handle(f->multi, x->easy) != CURLM_OK)
		r = -ENOMEM;
	if (r < 0) {
		curl_slist_free_all(x->hdrs);
		x->hdrs = NULL;
		if (f->slots)
			sf_connslots_give(f->slots, slot);
		blob_fail(f, bs, r, "cannot start a transfer: %s", strerror(-r));
		return r;
	}
	x->slot = slot;
	x->busy = true;
	c->state = CH_RUNNING;
	f->inflight++;
	bs->running++;
	return 0;
}

/* ---- ending blobs ---- */

static void abort_xfers(struct sf_fetcher *f, struct bstate *bs)
{
	for (int i = 0; i < f->conns; i++)
		if (f->xfers[i].busy && f->xfers[i].bs == bs)
			xfer_detach(f, &f->xfers[i]);
}

static void remove_active(struct sf_fetcher *f, struct bstate *bs)
{
	for (size_t i = 0; i < f->nactive; i++) {
		if (f->active[i] != bs)
			continue;
		memmove(&f->active[i], &f->active[i + 1], (f->nactive - i - 1) * sizeof(*f->active));
		f->nactive--;
		if (i < f->rr)
			f->rr--;
		return;
	}
}

static void bstate_free(struct bstate *bs)
{
	if (!bs)
		return;
	free(bs->url);
	free(bs->loc);
	free(bs->chunks);
	free(bs);
}

/* Detach everything of bs, free it, then publish the outcome. */
static void blob_end(struct sf_fetcher *f, struct bstate *bs, sf_ret ret, const char *msg)
{
	struct sf_blob *b = bs->b;

	abort_xfers(f, bs);
	remove_active(f, bs);
	bstate_free(bs);
	blob_finish(b, ret, msg);
}

static void blob_fail(struct sf_fetcher *f, struct bstate *bs, sf_ret ret, const char *fmt, ...)
{
	char msg[SF_ERROR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	blob_message(bs->b, msg, sizeof(msg), fmt, ap);
	va_end(ap);
	blob_end(f, bs, ret, msg);
}

/* ---- reacting to a finished transfer ---- */

/* Charge one failed attempt to c; wait delay_ms (< 0: backoff) or fail. */
static void retry(struct sf_fetcher *f, struct bstate *bs, struct chunk *c, int64_t delay_ms,
		  const char *why)
{
	if (++c->tries > f->retries) {
		blob_fail(f, bs, -EIO, "%s after %d retries", why, f->retries);
		return;
	}
	if (delay_ms < 0)
		delay_ms = backoff_ms(f, c->tries);
	c->state = CH_BACKOFF;
	c->due_ms = now_ms() + delay_ms;
}

static void on_unauthorized(struct sf_fetcher *f, struct xfer *x)
{
	struct sf_error e = { 0 };
	sf_ret r;

	/* The budget stops tokens that never work: 401s with no progress of the
	 * blob in between.  Data since this chunk's last 401 shows the tokens
	 * do work and this one was revoked or expired; a registry that revokes
	 * every token at once can make one chunk meet several such 401s in a
	 * row while the other chunks move on. */
	if (x->c->auth_oks != x->bs->oks) {
		x->c->auth_oks = x->bs->oks;
		x->c->auth_tries = 0;
	}
	if (++x->c->auth_tries > AUTH_RETRIES) {
		blob_fail(f, x->bs, -EACCES,
			  "HTTP 401 after %d re-authentications without progress", AUTH_RETRIES);
		return;
	}
	r = sf_endpoint_reauth(x->bs->ep, x->www_auth[0] ? x->www_auth : NULL, x->auth, &e);
	if (r < 0) {
		blob_fail(f, x->bs, r, "authentication failed: %s", sf_error_text(&e, r));
		return;
	}
	x->c->state = CH_READY; /* again, right away, with the new token */
}

/* The object store refused a URL the registry redirected us to: it has
 * expired (signed URLs last minutes).  Ask the registry again.  Bounded per
 * blob, not per chunk: parallel chunks share (and use up) one URL, so a
 * chunk may meet several expired ones while the blob makes progress. */
static void on_store_refused(struct sf_fetcher *f, struct xfer *x)
{
	struct bstate *bs = x->bs;

	x->c->hops = 0; /* the redirect chain ended in an answer */
	if (++bs->refusals > MAX_STORE_REFUSALS) {
		blob_fail(f, bs, -fetch_http_errno(x->status),
			  "HTTP %ld from the blob store, %d times without progress", x->status,
			  MAX_STORE_REFUSALS);
		return;
	}
	if (bs->loc) { /* unless another chunk already installed a fresh one */
		char *used = NULL;
		curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &used);
		if (used && !strcmp(used, bs->loc)) {
			free(bs->loc);
			bs->loc = NULL;
		}
	}
	x->c->state = CH_READY;
}

static void on_redirect(struct sf_fetcher *f, struct xfer *x)
{
	int r;

	if (++x->c->hops > MAX_REDIRECTS) {
		blob_fail(f, x->bs, -EIO, "more than %d redirects", MAX_REDIRECTS);
		return;
	}
	r = fetch_follow(x);
	if (r < 0) {
		blob_fail(f, x->bs, r, "%s", r == -ENOMEM ? "out of memory" : x->why);
		return;
	}
	x->c->state = CH_READY;
}

static void on_http_error(struct sf_fetcher *f, struct xfer *x)
{
	char why[WHY_MAX];
	int64_t delay = -1;

	if (x->to_store && (x->status == 400 || x->status == 401 || x->status == 403 ||
			    x->status == 404)) {
		on_store_refused(f, x);
		return;
	}
	/* 401; or 403 without a challenge to a request with a token (ECR) */
	if (x->status == 401 || (x->status == 403 && !x->www_auth[0] && x->auth[0])) {
		on_unauthorized(f, x);
		return;
	}
	snprintf(why, sizeof(why), "HTTP %ld", x->status);
	if (x->status == 429 && x->retry_after_s >= 0)
		delay = x->retry_after_s * 1000 > RETRY_AFTER_MAX_MS ? RETRY_AFTER_MAX_MS
								      : x->retry_after_s * 1000;
	if (x->status == 408 || x->status == 429 || x->status >= 500)
		retry(f, x->bs, x->c, delay, why);
	else
		blob_fail(f, x->bs, -fetch_http_errno(x->status), "%s", why);
}

static void on_transport_error(struct sf_fetcher *f, struct xfer *x, CURLcode rc)
{
	char why[WHY_MAX];

	snprintf(why, sizeof(why), "%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
	if (rc == CURLE_TOO_MANY_REDIRECTS || rc == CURLE_UNSUPPORTED_PROTOCOL ||
	    rc == CURLE_URL_MALFORMAT)
		blob_fail(f, x->bs, -EIO, "%s", why);
	else
		retry(f, x->bs, x->c, -1, why);
}

static void switch_to_stream(struct sf_fetcher *f, struct bstate *bs)
{
	abort_xfers(f, bs);
	bs->stream = true;
	memset(&bs->sc, 0, sizeof(bs->sc));
}

/* The transfer is over: complete, or judge why not. */
static void xfer_done(struct sf_fetcher *f, struct xfer *x, CURLcode rc)
{
	struct bstate *bs = x->bs;
	struct chunk *c = x->c;
	char why[WHY_MAX];

	xfer_detach(f, x); /* x's fields stay valid until the next xfer_start */
	if (x->werr) {
		blob_fail(f, bs, -x->werr, "writing the spool file: %s", strerror(x->werr));
		return;
	}
	if (!bs->stream && c->done == chunk_len(bs, (uint64_t)(c - bs->chunks)))
		c->state = CH_DONE;
	if (bs->contig == bs->b->size) {
		blob_end(f, bs, 0, NULL);
		return;
	}
	if (c->state == CH_DONE)
		return;
	if (x->verdict == V_UNSET)
		x->verdict = fetch_judge(x); /* a response without body */
	if (x->verdict == V_NORANGE)
		switch_to_stream(f, bs);
	else if (x->verdict == V_BAD)
		retry(f, bs, c, -1, x->why);
	else if (x->verdict == V_DISCARD && fetch_is_redirect(x->status))
		on_redirect(f, x);
	else if (x->verdict == V_DISCARD && (x->status >= 400 || rc == CURLE_OK))
		on_http_error(f, x);
	else if (rc != CURLE_OK)
		on_transport_error(f, x, rc);
	else {
		snprintf(why, sizeof(why), "short body: got %" PRIu64 " of %" PRIu64 " bytes",
			 x->pos - x->from, x->to - x->from);
		retry(f, bs, c, -1, why);
	}
}

static void drain(struct sf_fetcher *f)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(f->multi, &left))) {
		CURL *easy = m->easy_handle;
		CURLcode rc = m->data.result;
		char *p = NULL;
		struct xfer *x;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, &p);
		x = (struct xfer *)(void *)p;
		if (x && x->busy && x->easy == easy) /* not aborted meanwhile */
			xfer_done(f, x, rc);
	}
}

/* ---- scheduling ---- */

static bool chunk_ready(const struct chunk *c, int64_t now)
{
	return c->state == CH_READY || (c->state == CH_BACKOFF && c->due_ms <= now);
}

/* The next chunk of bs to start, or NULL. */
static struct chunk *pick(struct sf_fetcher *f, struct bstate *bs, int64_t now)
{
	if (bs->stream)
		return bs->running == 0 && chunk_ready(&bs->sc, now) ? &bs->sc : NULL;
	for (uint64_t i = bs->head; i < bs->next; i++)
		if (chunk_ready(&bs->chunks[i], now))
			return &bs->chunks[i];
	while (bs->next < bs->nchunks && bs->next - bs->head < (uint64_t)f->window) {
		struct chunk *c = &bs->chunks[bs->next++];
		if (c->state != CH_DONE) /* DONE here: present in the spool already */
			return c;
	}
	return NULL;
}

/* Fill free slots round-robin, one chunk per blob per turn. */
static void schedule(struct sf_fetcher *f)
{
	int64_t now = now_ms();
	size_t idle = 0; /* blobs in a row with nothing to start */

	f->slot_starved = false;
	if (f->slots) /* compete for the cache's slots only with work to do */
		sf_connslots_want(f->slots, f->nactive > 0);
	while (f->inflight < f->conns && f->nactive > 0 && idle < f->nactive) {
		size_t i = f->rr % f->nactive;
		struct bstate *bs = f->active[i];
		struct chunk *c = pick(f, bs, now);
		int slot = -1;

		f->rr = i + 1;
		if (!c) {
			idle++;
			continue;
		}
		idle = 0;
		if (f->slots && (slot = sf_connslots_take(f->slots)) < 0) {
			f->slot_starved = true;
			break;
		}
		xfer_start(f, bs, c, slot); /* on failure bs is gone, rr adjusted */
	}
}

static void earliest_due(const struct chunk *c, int64_t *due)
{
	if (c->state == CH_BACKOFF && c->due_ms < *due)
		*due = c->due_ms;
}

static int poll_timeout(struct sf_fetcher *f)
{
	int64_t now = now_ms(), due = now + IDLE_POLL_MS;

	if (f->inflight >= f->conns)
		return IDLE_POLL_MS; /* a finishing transfer wakes us */
	if (f->slot_starved)
		due = now + SLOT_POLL_MS; /* another process may give one back */
	for (size_t i = 0; i < f->nactive; i++) {
		struct bstate *bs = f->active[i];
		if (bs->stream) {
			earliest_due(&bs->sc, &due);
			continue;
		}
		for (uint64_t k = bs->head; k < bs->next; k++)
			earliest_due(&bs->chunks[k], &due);
	}
	return due <= now ? 0 : (int)(due - now);
}

/* ---- the thread ---- */

/* Move queued blobs to the active set.  Returns true when asked to stop. */
static bool adopt(struct sf_fetcher *f)
{
	struct bstate *list, *bs;
	bool stop;

	pthread_mutex_lock(&f->lock);
	list = f->pending;
	f->pending = f->pending_tail = NULL;
	stop = f->stop;
	pthread_mutex_unlock(&f->lock);

	while ((bs = list)) {
		list = bs->next_pending;
		if (f->nactive == f->cap) {
			size_t cap = f->cap ? 2 * f->cap : 16;
			struct bstate **a = realloc(f->active, cap * sizeof(*a));
			if (!a) {
				blob_fail(f, bs, -ENOMEM, "out of memory");
				continue;
			}
			f->active = a;
			f->cap = cap;
		}
		f->active[f->nactive++] = bs;
	}
	return stop;
}

static void cancel_list(struct sf_fetcher *f, struct bstate *list)
{
	struct bstate *bs;

	while ((bs = list)) {
		list = bs->next_pending;
		blob_fail(f, bs, -ECANCELED, "download cancelled");
	}
}

static void cancel_all(struct sf_fetcher *f)
{
	struct bstate *list;

	while (f->nactive > 0)
		blob_fail(f, f->active[f->nactive - 1], -ECANCELED, "download cancelled");
	pthread_mutex_lock(&f->lock);
	list = f->pending;
	f->pending = f->pending_tail = NULL;
	pthread_mutex_unlock(&f->lock);
	cancel_list(f, list);
}

/* Serve the queued sf_fetcher_cancel() calls: end their blobs if still
 * active, then release the callers.  `last`: the thread is exiting, so no
 * request may be queued after these. */
static void serve_cancels(struct sf_fetcher *f, bool last)
{
	struct cancel_req *list, *req;

	pthread_mutex_lock(&f->lock);
	list = f->cancels;
	f->cancels = NULL;
	if (last)
		f->exited = true;
	pthread_mutex_unlock(&f->lock);

	while ((req = list)) {
		struct sf_blob *b = req->b;

		list = req->next; /* req is gone once done is set */
		for (size_t i = 0; i < f->nactive; i++) {
			if (f->active[i]->b == b) {
				blob_fail(f, f->active[i], -ECANCELED, "download cancelled");
				break;
			}
		}
		/* not active: finished already, b->finished is set */
		pthread_mutex_lock(&b->lock);
		req->done = true;
		pthread_cond_broadcast(&b->cond);
		pthread_mutex_unlock(&b->lock);
	}
}

static void *fetcher_main(void *arg)
{
	struct sf_fetcher *f = arg;
	int running;

	while (!adopt(f)) {
		serve_cancels(f, false);
		schedule(f);
		curl_multi_perform(f->multi, &running);
		drain(f);
		schedule(f);
		curl_multi_poll(f->multi, NULL, 0, poll_timeout(f), NULL);
	}
	cancel_all(f);
	serve_cancels(f, true);
	return NULL;
}

/* ---- public API ---- */

void sf_blob_init(struct sf_blob *b)
{
	memset(b, 0, sizeof(*b));
	b->fd = -1;
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cond, NULL);
}

void sf_blob_destroy(struct sf_blob *b)
{
	pthread_cond_destroy(&b->cond);
	pthread_mutex_destroy(&b->lock);
}

int64_t sf_blob_wait(struct sf_blob *b, uint64_t want)
{
	int64_t ret;

	pthread_mutex_lock(&b->lock);
	while (b->contiguous < want && !b->finished)
		pthread_cond_wait(&b->cond, &b->lock);
	if (b->contiguous >= want || b->error == 0)
		ret = (int64_t)b->contiguous;
	else
		ret = b->error;
	pthread_mutex_unlock(&b->lock);
	return ret;
}

static sf_ret check_opts(const struct sf_fetch_opts *o, struct sf_error *err)
{
	if (o && (o->connections < 0 || o->window < 0 || o->retries < 0))
		return sf_fail(err, EINVAL, "fetch options: negative connections, window or retries");
	return 0;
}

static void apply_opts(struct sf_fetcher *f, const struct sf_fetch_opts *o)
{
	f->chunk_size = o && o->chunk_size ? o->chunk_size : SF_FETCH_DEFAULT_CHUNK_SIZE;
	f->conns = o && o->connections ? o->connections : SF_FETCH_DEFAULT_CONNECTIONS;
	f->window = o && o->window ? o->window : SF_FETCH_DEFAULT_WINDOW;
	/* By default one blob may use every connection: with the window below
	 * the connection count, an image whose bytes are mostly in one layer
	 * (model weights) left connections idle once the small layers were
	 * done (bench: 8 of 16 in use for the 1.2 GB layer).  The spool is on
	 * disk, so this costs disk space ahead (conns x chunk), not memory. */
	if (!(o && o->window) && f->window < f->conns)
		f->window = f->conns;
	f->retries = o && o->retries ? o->retries : SF_FETCH_DEFAULT_RETRIES;
}

static void fetcher_destroy(struct sf_fetcher *f)
{
	if (f->xfers)
		for (int i = 0; i < f->conns; i++)
			if (f->xfers[i].easy)
				curl_easy_cleanup(f->xfers[i].easy);
	if (f->multi)
		curl_multi_cleanup(f->multi);
	sf_connslots_free(f->slots);
	pthread_mutex_destroy(&f->lock);
	free(f->xfers);
	free(f->active);
	free(f);
}

static sf_ret multi_new(struct sf_fetcher *f)
{
	f->multi = curl_multi_init();
	if (!f->multi)
		return -ENOMEM;
	/* One transfer per connection, also on HTTP/2: parallel TCP streams are
	 * the point of chunking. */
	curl_multi_setopt(f->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
	/* Keep idle connections for reuse: registry + blob CDN per slot. */
	curl_multi_setopt(f->multi, CURLMOPT_MAXCONNECTS, 2L * f->conns);
	return 0;
}

sf_ret sf_fetcher_new(const struct sf_fetch_opts *opts, struct sf_fetcher **out,
		      struct sf_error *err)
{
	struct sf_fetcher *f;
	sf_ret r = check_opts(opts, err);
	int e;

	if (r < 0)
		return r;
	f = calloc(1, sizeof(*f));
	if (!f)
		return sf_fail(err, ENOMEM, "fetcher: out of memory");
	pthread_mutex_init(&f->lock, NULL);
	apply_opts(f, opts);
	f->rng = (uint64_t)now_ms() ^ (uint64_t)(uintptr_t)f ^ 0x9e3779b97f4a7c15ull;
	f->xfers = calloc((size_t)f->conns, sizeof(*f->xfers));
	if (!f->xfers || multi_new(f) < 0) {
		fetcher_destroy(f);
		return sf_fail(err, ENOMEM, "fetcher: out of memory");
	}
	for (int i = 0; i < f->conns; i++)
		f->xfers[i].slot = -1;
	if (opts && opts->slots_dir) {
		r = sf_connslots_open(opts->slots_dir,
				      opts->cache_connections ? (unsigned)opts->cache_connections
							      : SF_CONNSLOTS_DEFAULT_TOTAL,
				      &f->slots, err);
		if (r < 0) {
			fetcher_destroy(f);
			return r;
		}
	}
	e = pthread_create(&f->thread, NULL, fetcher_main, f);
	if (e == 0)
		pthread_setname_np(f->thread, "sf-fetch");
	if (e) {
		fetcher_destroy(f);
		return sf_fail(err, e, "fetcher: cannot start thread: %s", strerror(e));
	}
	*out = f;
	return 0;
}

/* Resume: ask the owner which chunk prefixes are in the spool already; a
 * chunk then only fetches the rest, a whole one is DONE and never issued. */
static void mark_present(struct bstate *bs)
{
	struct sf_blob *b = bs->b;
	uint64_t reused = 0;

	for (uint64_t i = 0; i < bs->nchunks; i++) {
		struct chunk *c = &bs->chunks[i];
		c->done = b->present(b->hook_arg, chunk_off(bs, i), chunk_len(bs, i));
		if (c->done > chunk_len(bs, i))
			c->done = chunk_len(bs, i);
		if (c->done == chunk_len(bs, i))
			c->state = CH_DONE;
		reused += c->done;
	}
	advance(bs);
	pthread_mutex_lock(&b->lock);
	b->reused = reused;
	b->fetched = b->start + reused;
	if (bs->contig > b->contiguous)
		b->contiguous = bs->contig;
	pthread_mutex_unlock(&b->lock);
}

/* Fetcher-private state for b, or NULL with b finished (nothing to do or
 * an error). */
static struct bstate *bstate_new(struct sf_fetcher *f, struct sf_blob *b)
{
	struct bstate *bs;

	if (b->start > b->size) {
		blob_finish_early(b, false, -EINVAL,
				  "resume offset %" PRIu64 " beyond the blob size %" PRIu64, b->start,
				  b->size);
		return NULL;
	}
	if (b->start == b->size) {
		blob_finish(b, 0, NULL);
		return NULL;
	}
	bs = calloc(1, sizeof(*bs));
	if (bs) {
		bs->b = b;
		bs->cs = f->chunk_size;
		bs->nchunks = (b->size - b->start + bs->cs - 1) / bs->cs;
		bs->contig = b->start;
		bs->ep = sf_registry_endpoint(b->reg); /* once: see bstate.ep */
		bs->url = sf_endpoint_blob_url(bs->ep, b->digest);
		bs->chunks = calloc((size_t)bs->nchunks, sizeof(*bs->chunks));
	}
	if (!bs || !bs->url || !bs->chunks) {
		bstate_free(bs);
		blob_finish_early(b, false, -ENOMEM, "out of memory");
		return NULL;
	}
	if (b->present)
		mark_present(bs);
	if (bs->contig == b->size) { /* everything was there */
		bstate_free(bs);
		blob_finish(b, 0, NULL);
		return NULL;
	}
	return bs;
}

void sf_fetcher_add(struct sf_fetcher *f, struct sf_blob *b)
{
	struct bstate *bs;

	if (b->start <= b->size) {
		pthread_mutex_lock(&b->lock);
		b->contiguous = b->start;
		b->fetched = b->start;
		pthread_mutex_unlock(&b->lock);
	}
	bs = bstate_new(f, b);
	if (!bs)
		return;
	pthread_mutex_lock(&b->lock);
	b->priv = bs;
	pthread_mutex_unlock(&b->lock);

	pthread_mutex_lock(&f->lock);
	if (f->stop) {
		/* stopped: nothing more will be fetched; the thread never saw bs */
		pthread_mutex_unlock(&f->lock);
		pthread_mutex_lock(&b->lock);
		b->priv = NULL;
		bstate_free(bs);
		blob_finish_early(b, true, -ECANCELED, "download cancelled");
		pthread_mutex_unlock(&b->lock);
		return;
	}
	if (f->pending_tail)
		f->pending_tail->next_pending = bs;
	else
		f->pending = bs;
	f->pending_tail = bs;
	pthread_mutex_unlock(&f->lock);
	curl_multi_wakeup(f->multi);
}

/* Take b's bstate out of the pending queue, if it is there; under f->lock. */
static struct bstate *unqueue_pending(struct sf_fetcher *f, struct sf_blob *b)
{
	struct bstate *prev = NULL;

	for (struct bstate *bs = f->pending; bs; prev = bs, bs = bs->next_pending) {
		if (bs->b != b)
			continue;
		if (prev)
			prev->next_pending = bs->next_pending;
		else
			f->pending = bs->next_pending;
		if (f->pending_tail == bs)
			f->pending_tail = prev;
		return bs;
	}
	return NULL;
}

void sf_fetcher_cancel(struct sf_fetcher *f, struct sf_blob *b)
{
	struct cancel_req req = { .b = b };
	struct bstate *bs;
	bool queued = false;

	pthread_mutex_lock(&b->lock);
	if (b->finished || !b->priv) { /* over, or never added: do not touch f */
		pthread_mutex_unlock(&b->lock);
		return;
	}
	/* b is unfinished and we hold b->lock, which whoever finishes it (the
	 * thread, or sf_fetcher_free for late additions) needs: f is alive
	 * until we let go.  Lock order: b->lock, then f->lock. */
	pthread_mutex_lock(&f->lock);
	bs = unqueue_pending(f, b);
	if (!bs && !f->exited) {
		req.next = f->cancels;
		f->cancels = &req;
		queued = true;
		curl_multi_wakeup(f->multi); /* under f->lock: f cannot go away meanwhile */
	}
	pthread_mutex_unlock(&f->lock);
	if (bs) { /* the thread never saw it: ours to end, before anyone sees b again */
		bstate_free(bs);
		blob_finish_early(b, true, -ECANCELED, "download cancelled");
	}
	while (queued && !req.done)
		pthread_cond_wait(&b->cond, &b->lock);
	pthread_mutex_unlock(&b->lock);
}

void sf_fetcher_stop(struct sf_fetcher *f)
{
	struct bstate *list;
	bool joined;

	if (!f)
		return;
	pthread_mutex_lock(&f->lock);
	f->stop = true;
	joined = f->joined;
	f->joined = true;
	pthread_mutex_unlock(&f->lock);
	if (joined)
		return;
	curl_multi_wakeup(f->multi);
	pthread_join(f->thread, NULL);
	/* blobs added while the thread was exiting */
	pthread_mutex_lock(&f->lock);
	list = f->pending;
	f->pending = f->pending_tail = NULL;
	pthread_mutex_unlock(&f->lock);
	cancel_list(f, list);
}

void sf_fetcher_free(struct sf_fetcher *f)
{
	if (!f)
		return;
	sf_fetcher_stop(f);
	fetcher_destroy(f);
}
