/* test_fetch.c - the parallel chunked fetcher against an in-process HTTP/1.1
 * server with switchable misbehaviour, and a fake registry. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fetch.h"
#include "http_util.h"

#define KiB 1024u
#define MiB (1024u * 1024u)
#define CS (64 * KiB) /* chunk size used by most tests */
#define BIG (3 * MiB + 777)
#define MAX_BLOBS 8
#define LOG_MAX 8192

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ */
/* Fake registry (the six functions fetch.c uses)                      */
/* ------------------------------------------------------------------ */

/* A fake endpoint is a view of one fake registry; sf_registry_endpoint()
 * hands out another registry's when `moved_to` is set, as a resolve that
 * switched to another mirror would. */
struct sf_endpoint {
	struct sf_registry *r;
};

struct sf_registry {
	char base[128]; /* "http://127.0.0.1:port" */
	char name[64];
	pthread_mutex_t lock;
	char token[64];	      /* current token, "" = anonymous */
	const char *grant;    /* token reauth hands out */
	int reauth_calls;     /* all calls */
	int refreshes;	      /* calls that actually fetched a token */
	char last_www[256];
	/* a gate: while `hold`, reauth (on the fetcher thread) blocks */
	pthread_cond_t cond;
	bool hold, holding;
	struct sf_endpoint self;
	struct sf_registry *moved_to; /* under lock */
	int endpoint_calls;	      /* sf_registry_endpoint() calls, under lock */
};

struct sf_endpoint *sf_registry_endpoint(struct sf_registry *r)
{
	struct sf_endpoint *ep;

	pthread_mutex_lock(&r->lock);
	ep = r->moved_to ? &r->moved_to->self : &r->self;
	r->endpoint_calls++;
	pthread_mutex_unlock(&r->lock);
	return ep;
}

char *sf_endpoint_blob_url(struct sf_endpoint *ep, const char *digest)
{
	char *s = NULL;

	if (asprintf(&s, "%s/v2/test/blobs/%s", ep->r->base, digest) < 0)
		return NULL;
	return s;
}

void sf_endpoint_auth_header(struct sf_endpoint *ep, char *buf, size_t len)
{
	struct sf_registry *r = ep->r;

	pthread_mutex_lock(&r->lock);
	if (r->token[0])
		snprintf(buf, len, "Authorization: Bearer %s", r->token);
	else
		buf[0] = '\0';
	pthread_mutex_unlock(&r->lock);
}

sf_ret sf_endpoint_reauth(struct sf_endpoint *ep, const char *www_authenticate,
			  const char *failed_header, struct sf_error *err)
{
	struct sf_registry *r = ep->r;
	char cur[256];

	(void)err;
	pthread_mutex_lock(&r->lock);
	r->holding = true;
	pthread_cond_broadcast(&r->cond);
	while (r->hold)
		pthread_cond_wait(&r->cond, &r->lock);
	r->holding = false;
	r->reauth_calls++;
	snprintf(r->last_www, sizeof(r->last_www), "%s", www_authenticate);
	if (r->token[0])
		snprintf(cur, sizeof(cur), "Authorization: Bearer %s", r->token);
	else
		cur[0] = '\0';
	if (strcmp(cur, failed_header) == 0) { /* not refreshed since: do it */
		r->refreshes++;
		snprintf(r->token, sizeof(r->token), "%s", r->grant ? r->grant : "secret");
	}
	pthread_mutex_unlock(&r->lock);
	return 0;
}

void sf_endpoint_setup_curl(struct sf_endpoint *ep, void *curl_easy)
{
	(void)ep;
	curl_easy_setopt((CURL *)curl_easy, CURLOPT_CONNECTTIMEOUT, 5L);
}

const char *sf_registry_name(const struct sf_registry *r)
{
	return r->name;
}

static void reg_init(struct sf_registry *r, int port)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	snprintf(r->base, sizeof(r->base), "http://127.0.0.1:%d", port);
	snprintf(r->name, sizeof(r->name), "127.0.0.1:%d", port);
	r->self.r = r;
}

static void reg_destroy(struct sf_registry *r)
{
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
}

/* Wait until the fetcher thread is stuck in r's reauth gate. */
static void reg_wait_holding(struct sf_registry *r)
{
	pthread_mutex_lock(&r->lock);
	while (!r->holding)
		pthread_cond_wait(&r->cond, &r->lock);
	pthread_mutex_unlock(&r->lock);
}

static void reg_release(struct sf_registry *r)
{
	pthread_mutex_lock(&r->lock);
	r->hold = false;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

/* ------------------------------------------------------------------ */
/* In-process HTTP/1.1 server                                          */
/* ------------------------------------------------------------------ */

struct srv_blob {
	char digest[80];
	uint8_t *data;
	size_t size;
	bool stall; /* like srv.stall, for this blob only */
};

struct req_log {
	bool ranged;
	uint64_t a, b; /* inclusive; b = UINT64_MAX for "a-" */
	int status;
};

struct srv {
	int lfd, port;
	pthread_t accept_thread;
	bool started;
	atomic_bool stop;
	pthread_mutex_t lock; /* everything below */
	pthread_t *threads;
	size_t nthreads, capthreads;
	struct srv_blob blobs[MAX_BLOBS];
	int nblobs;

	/* behaviour: set before srv_start */
	int fail_503;	    /* answer the first N requests 503 */
	bool always_503;
	int ratelimit;	    /* answer the first N requests 429, Retry-After: retry_after */
	char retry_after[64]; /* "" = "1" */
	int close_mid;	    /* close the first N bodies half way */
	int bad_crange;	    /* first N 206 answers carry a wrong Content-Range */
	bool ignore_range;  /* always 200 with the whole blob */
	bool slow_even;	    /* delay bodies of even chunks (of chunk_size) */
	uint64_t chunk_size;
	bool stall;	    /* send headers and a little body, then nothing */
	const char *require_auth; /* "Bearer secret" */
	struct srv *redirect_to;
	int force_status;   /* e.g. 404 */
	int fail_403;	    /* answer the first N requests 403 (an expired signed URL) */
	int flap;	    /* the first N requests, in turn: 401 (the token was revoked),
			     * half a body, 401, ... */

	/* observations */
	int nreq, n200, n206, saw_auth, inflight, max_inflight;
	int bad_auth; /* requests with an Authorization that is not require_auth */
	struct req_log log[LOG_MAX];
	int nlog;
	uint64_t finished_from[LOG_MAX]; /* range starts, in order of finishing */
	int nfinished;
};

/* Read a server observation under its lock (connection threads update them). */
#define SRV(s, expr)                                   \
	({                                             \
		pthread_mutex_lock(&(s)->lock);        \
		__typeof__(expr) srv_v_ = (expr);      \
		pthread_mutex_unlock(&(s)->lock);      \
		srv_v_;                                \
	})

static uint8_t *gen_data(uint64_t seed, size_t size)
{
	uint8_t *d = malloc(size ? size : 1);
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;

	assert_non_null(d);
	for (size_t i = 0; i < size; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		d[i] = (uint8_t)(x >> 24);
	}
	return d;
}

static struct srv_blob *srv_add_blob(struct srv *s, uint64_t seed, size_t size)
{
	struct srv_blob *b = &s->blobs[s->nblobs++];

	snprintf(b->digest, sizeof(b->digest), "sha256:%016" PRIx64 "%048x", seed, 0);
	b->data = gen_data(seed, size);
	b->size = size;
	return b;
}

static struct srv *srv_new(void)
{
	struct srv *s = calloc(1, sizeof(*s));
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int one = 1;

	assert_non_null(s);
	pthread_mutex_init(&s->lock, NULL);
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(s->lfd >= 0);
	setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(s->lfd, 64), 0);
	assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&sa, &sl), 0);
	s->port = ntohs(sa.sin_port);
	return s;
}

static bool send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

static bool send_fmt(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool send_fmt(int fd, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return send_all(fd, buf, (size_t)n);
}

/* Sleep up to ms, returning early (false) when the server stops or the
 * peer closed the connection. */
static bool idle_wait(struct srv *s, int fd, int ms)
{
	int64_t end = mono_ms() + ms;

	while (mono_ms() < end) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char c;
		if (atomic_load(&s->stop))
			return false;
		if (poll(&p, 1, 10) > 0 && recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) <= 0)
			return false;
	}
	return true;
}

struct request {
	char path[512];
	char range[128];
	char auth[256];
	bool has_range, has_auth;
};

struct plan {
	enum { P_404, P_401, P_503, P_429, P_REDIRECT, P_416, P_FULL, P_RANGE, P_403 } kind;
	uint64_t a, b; /* bytes to send, inclusive */
	struct srv_blob *blob;
	bool close_mid, bad_crange, slow, stall;
	int status;
};

static bool parse_range(const char *r, uint64_t size, uint64_t *a, uint64_t *b)
{
	char *end;

	if (strncmp(r, "bytes=", 6) != 0)
		return false;
	*a = strtoull(r + 6, &end, 10);
	if (*end != '-')
		return false;
	if (end[1] == '\0')
		*b = size - 1;
	else
		*b = strtoull(end + 1, &end, 10);
	return *a <= *b && *b < size;
}

static struct srv_blob *find_blob(struct srv *s, const char *path)
{
	const char *prefix = "/v2/test/blobs/";

	if (strncmp(path, prefix, strlen(prefix)) != 0)
		return NULL;
	for (int i = 0; i < s->nblobs; i++)
		if (strcmp(path + strlen(prefix), s->blobs[i].digest) == 0)
			return &s->blobs[i];
	return NULL;
}

static bool auth_ok(struct srv *s, const struct request *rq)
{
	return !s->require_auth || (rq->has_auth && strcmp(rq->auth, s->require_auth) == 0);
}

/* Decide the answer; called under s->lock. */
static struct plan make_plan(struct srv *s, const struct request *rq)
{
	struct plan p = { .blob = find_blob(s, rq->path) };
	bool revoked = false, cut = false;

	if (p.blob && s->flap > 0) {
		revoked = s->flap % 2 == 0;
		cut = !revoked;
		s->flap--;
	}

	if (!p.blob || s->force_status == 404)
		p.kind = P_404;
	else if (!auth_ok(s, rq) || revoked)
		p.kind = P_401;
	else if (s->redirect_to)
		p.kind = P_REDIRECT;
	else if (s->fail_403 > 0 && s->fail_403--)
		p.kind = P_403;
	else if (s->always_503 || (s->fail_503 > 0 && s->fail_503--))
		p.kind = P_503;
	else if (s->ratelimit > 0 && s->ratelimit--)
		p.kind = P_429;
	else if (!rq->has_range || s->ignore_range) {
		p.kind = P_FULL;
		p.a = 0;
		p.b = p.blob->size - 1;
	} else if (!parse_range(rq->range, p.blob->size, &p.a, &p.b))
		p.kind = P_416;
	else
		p.kind = P_RANGE;
	if (p.kind == P_FULL || p.kind == P_RANGE) {
		p.close_mid = (s->close_mid > 0 && s->close_mid--) || cut;
		p.bad_crange = p.kind == P_RANGE && s->bad_crange > 0 && s->bad_crange--;
		p.slow = s->slow_even && (p.a / s->chunk_size) % 2 == 0;
		p.stall = s->stall || p.blob->stall;
	}
	return p;
}

static void log_request(struct srv *s, const struct request *rq, const struct plan *p)
{
	static const int status[] = { 404, 401, 503, 429, 307, 416, 200, 206, 403 };
	struct req_log *l;

	s->nreq++;
	s->saw_auth += rq->has_auth;
	s->bad_auth += rq->has_auth && !auth_ok(s, rq);
	s->n200 += p->kind == P_FULL;
	s->n206 += p->kind == P_RANGE;
	if (s->nlog == LOG_MAX)
		return;
	l = &s->log[s->nlog++];
	l->ranged = rq->has_range;
	l->a = 0;
	l->b = UINT64_MAX;
	l->status = status[p->kind];
	if (rq->has_range) {
		char *end;
		l->a = strtoull(rq->range + 6, &end, 10);
		if (*end == '-' && end[1])
			l->b = strtoull(end + 1, NULL, 10);
	}
}

static bool send_body(struct srv *s, int fd, const struct plan *p)
{
	uint64_t len = p->b - p->a + 1, sent = 0;
	const uint8_t *data = p->blob->data + p->a;

	if (p->slow && !idle_wait(s, fd, 40))
		return false;
	if (p->close_mid)
		len /= 2;
	if (p->stall) {
		send_all(fd, data, len < 1000 ? len : 1000);
		idle_wait(s, fd, 60000);
		return false;
	}
	while (sent < len) {
		uint64_t n = len - sent < 65536 ? len - sent : 65536;
		if (!send_all(fd, data + sent, n))
			return false;
		sent += n;
	}
	return !p->close_mid;
}

static bool send_data(struct srv *s, int fd, const struct plan *p)
{
	uint64_t len = p->b - p->a + 1;

	if (p->kind == P_FULL) {
		if (!send_fmt(fd, "HTTP/1.1 200 OK\r\nContent-Length: %" PRIu64
				  "\r\nContent-Type: application/octet-stream\r\n\r\n", len))
			return false;
	} else if (!send_fmt(fd, "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes %" PRIu64
				 "-%" PRIu64 "/%zu\r\nContent-Length: %" PRIu64 "\r\n\r\n",
			     p->a + p->bad_crange, p->b, p->blob->size, len)) {
		return false;
	}
	return send_body(s, fd, p);
}

static bool respond(struct srv *s, int fd, const struct request *rq, const struct plan *p)
{
	switch (p->kind) {
	case P_404:
		return send_fmt(fd, "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found");
	case P_401:
		return send_fmt(fd, "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://"
				    "127.0.0.1:%d/token\",service=\"test\",scope=\"repository:test:pull\""
				    "\r\nContent-Length: 5\r\n\r\ndenied", s->port);
	case P_503:
		return send_fmt(fd, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy");
	case P_429:
		return send_fmt(fd, "HTTP/1.1 429 Too Many Requests\r\nRetry-After: %s\r\n"
				    "Content-Length: 4\r\n\r\nslow",
				s->retry_after[0] ? s->retry_after : "1");
	case P_REDIRECT:
		return send_fmt(fd, "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:%d%s"
				    "\r\nContent-Length: 0\r\n\r\n", s->redirect_to->port, rq->path);
	case P_403:
		return send_fmt(fd, "HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\n\r\nexpired");
	case P_416:
		return send_fmt(fd, "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\n\r\n");
	default:
		return send_data(s, fd, p);
	}
}

static void handle(struct srv *s, int fd, const struct request *rq, bool *keep)
{
	struct plan p;

	pthread_mutex_lock(&s->lock);
	p = make_plan(s, rq);
	log_request(s, rq, &p);
	if (++s->inflight > s->max_inflight)
		s->max_inflight = s->inflight;
	pthread_mutex_unlock(&s->lock);

	*keep = respond(s, fd, rq, &p);

	pthread_mutex_lock(&s->lock);
	s->inflight--;
	if (*keep && p.kind == P_RANGE && s->nfinished < LOG_MAX)
		s->finished_from[s->nfinished++] = p.a;
	pthread_mutex_unlock(&s->lock);
}

static void header_copy(const char *line, const char *name, char *out, size_t len, bool *has)
{
	size_t nl = strlen(name);

	if (strncasecmp(line, name, nl) != 0 || line[nl] != ':')
		return;
	line += nl + 1;
	while (*line == ' ')
		line++;
	snprintf(out, len, "%s", line);
	*has = true;
}

/* Parse a NUL-terminated request head with lines ending "\r\n". */
static bool parse_request(char *head, struct request *rq)
{
	char method[16];
	char *line, *save = NULL;

	memset(rq, 0, sizeof(*rq));
	line = strtok_r(head, "\r\n", &save);
	if (!line || sscanf(line, "%15s %511s", method, rq->path) != 2)
		return false;
	while ((line = strtok_r(NULL, "\r\n", &save))) {
		header_copy(line, "Range", rq->range, sizeof(rq->range), &rq->has_range);
		header_copy(line, "Authorization", rq->auth, sizeof(rq->auth), &rq->has_auth);
	}
	return strcmp(method, "GET") == 0;
}

struct conn {
	struct srv *s;
	int fd;
};

/* Read one request head into buf; false on close/stop. */
static bool read_head(struct srv *s, int fd, char *buf, size_t cap, size_t *have, char **end)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		buf[*have] = '\0';
		*end = strstr(buf, "\r\n\r\n");
		if (*end)
			return true;
		if (atomic_load(&s->stop) || *have + 1 >= cap)
			return false;
		if (poll(&p, 1, 20) <= 0)
			continue;
		n = recv(fd, buf + *have, cap - 1 - *have, 0);
		if (n <= 0)
			return false;
		*have += (size_t)n;
	}
}

static void *conn_main(void *arg)
{
	struct conn *c = arg;
	char buf[16384];
	size_t have = 0;
	char *end;
	bool keep = true;

	while (keep && read_head(c->s, c->fd, buf, sizeof(buf), &have, &end)) {
		struct request rq;
		size_t used = (size_t)(end + 4 - buf);

		*end = '\0';
		if (!parse_request(buf, &rq))
			break;
		handle(c->s, c->fd, &rq, &keep);
		memmove(buf, buf + used, have - used);
		have -= used;
	}
	close(c->fd);
	free(c);
	return NULL;
}

static void *accept_main(void *arg)
{
	struct srv *s = arg;

	while (!atomic_load(&s->stop)) {
		struct pollfd p = { .fd = s->lfd, .events = POLLIN };
		struct timeval tv = { 2, 0 };
		struct conn *c;
		int fd;

		if (poll(&p, 1, 20) <= 0)
			continue;
		fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		c = malloc(sizeof(*c));
		c->s = s;
		c->fd = fd;
		pthread_mutex_lock(&s->lock);
		if (s->nthreads == s->capthreads) {
			s->capthreads = s->capthreads ? 2 * s->capthreads : 64;
			s->threads = realloc(s->threads, s->capthreads * sizeof(*s->threads));
		}
		pthread_create(&s->threads[s->nthreads++], NULL, conn_main, c);
		pthread_mutex_unlock(&s->lock);
	}
	return NULL;
}

static void srv_start(struct srv *s)
{
	assert_int_equal(pthread_create(&s->accept_thread, NULL, accept_main, s), 0);
	s->started = true;
}

static void srv_stop(struct srv *s)
{
	atomic_store(&s->stop, true);
	if (s->started)
		pthread_join(s->accept_thread, NULL);
	for (size_t i = 0; i < s->nthreads; i++) /* accept thread is gone: no lock needed */
		pthread_join(s->threads[i], NULL);
	close(s->lfd);
	for (int i = 0; i < s->nblobs; i++)
		free(s->blobs[i].data);
	free(s->threads);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* ------------------------------------------------------------------ */
/* Test blobs and watchers                                             */
/* ------------------------------------------------------------------ */

struct tblob {
	struct sf_blob b;
	struct srv_blob *src;
	char digest[80];
	/* watcher thread: waits with sf_blob_wait and checks the bytes */
	pthread_t watcher;
	int64_t result;	 /* last sf_blob_wait value */
	bool monotonic;	 /* contiguous never went down */
	bool bytes_ok;	 /* [start, contiguous) matched whenever it was reported */
	int wakeups;
};

/* prefix: bytes [0, start) are filled with 0xA5, not with blob data, so a
 * test can see that the fetcher never rewrote them. */
static void tblob_init(struct tblob *t, struct sf_registry *reg, struct srv_blob *src,
		       uint64_t start)
{
	char path[] = "/tmp/test_fetch.XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	unlink(path);
	memset(t, 0, sizeof(*t));
	if (start) {
		uint8_t *fill = malloc(start);
		memset(fill, 0xA5, start);
		assert_int_equal(pwrite(fd, fill, start, 0), (ssize_t)start);
		free(fill);
	}
	t->src = src;
	snprintf(t->digest, sizeof(t->digest), "%s", src->digest);
	sf_blob_init(&t->b);
	t->b.reg = reg;
	t->b.digest = t->digest;
	t->b.size = src->size;
	t->b.fd = fd;
	t->b.start = start;
	t->monotonic = true;
	t->bytes_ok = true;
}

static void tblob_destroy(struct tblob *t)
{
	if (t->b.fd >= 0)
		close(t->b.fd);
	sf_blob_destroy(&t->b);
}

static bool range_matches(struct tblob *t, uint64_t from, uint64_t to)
{
	uint8_t *buf;
	bool ok;

	if (to <= from)
		return true;
	buf = malloc(to - from);
	ok = pread(t->b.fd, buf, to - from, (off_t)from) == (ssize_t)(to - from) &&
	     memcmp(buf, t->src->data + from, to - from) == 0;
	free(buf);
	return ok;
}

static void *watcher_main(void *arg)
{
	struct tblob *t = arg;
	uint64_t prev = t->b.start;

	for (;;) {
		int64_t r = sf_blob_wait(&t->b, prev + 1);
		t->result = r;
		t->wakeups++;
		if (r < 0)
			break;
		if ((uint64_t)r < prev)
			t->monotonic = false;
		if (!range_matches(t, prev, (uint64_t)r))
			t->bytes_ok = false;
		if ((uint64_t)r > prev)
			prev = (uint64_t)r;
		if (prev >= t->b.size)
			break;
	}
	/* contiguous == size comes a moment before finished: wait for it too */
	pthread_mutex_lock(&t->b.lock);
	while (!t->b.finished)
		pthread_cond_wait(&t->b.cond, &t->b.lock);
	pthread_mutex_unlock(&t->b.lock);
	return NULL;
}

static void watch(struct tblob *t)
{
	assert_int_equal(pthread_create(&t->watcher, NULL, watcher_main, t), 0);
}

static void assert_complete(struct tblob *t)
{
	uint8_t *buf = malloc(t->b.size ? t->b.size : 1);

	pthread_join(t->watcher, NULL);
	assert_true(t->b.finished);
	if (t->b.error)
		fail_msg("blob failed: %s", t->b.err.msg);
	assert_int_equal(t->result, (int64_t)t->b.size);
	assert_true(t->monotonic);
	assert_true(t->bytes_ok);
	assert_int_equal(t->b.contiguous, t->b.size);
	assert_int_equal(t->b.fetched, t->b.size);
	assert_int_equal(pread(t->b.fd, buf, t->b.size, 0), (ssize_t)t->b.size);
	assert_int_equal(lseek(t->b.fd, 0, SEEK_END), (off_t)t->b.size);
	/* the resumed prefix is untouched, the rest is the blob */
	for (uint64_t i = 0; i < t->b.start; i++)
		if (buf[i] != 0xA5)
			fail_msg("prefix byte %" PRIu64 " was rewritten", i);
	assert_memory_equal(buf + t->b.start, t->src->data + t->b.start, t->b.size - t->b.start);
	free(buf);
}

static void assert_failed(struct tblob *t, int err, const char *needle)
{
	pthread_join(t->watcher, NULL);
	if (getenv("TEST_FETCH_VERBOSE"))
		fprintf(stderr, "    message: %s\n", t->b.err.msg);
	assert_true(t->b.finished);
	assert_int_equal(t->b.error, err);
	assert_int_equal(t->result, err);
	assert_non_null(strstr(t->b.err.msg, t->b.digest));
	assert_non_null(strstr(t->b.err.msg, sf_registry_name(t->b.reg)));
	if (!strstr(t->b.err.msg, needle))
		fail_msg("\"%s\" not in \"%s\"", needle, t->b.err.msg);
}

static struct sf_fetcher *fetcher(uint64_t cs, int conns, int window, int retries)
{
	struct sf_fetch_opts o = { .chunk_size = cs, .connections = conns, .window = window,
				   .retries = retries };
	struct sf_error err = { 0 };
	struct sf_fetcher *f = NULL;

	assert_int_equal(sf_fetcher_new(&o, &f, &err), 0);
	return f;
}

/* The common shape: one server, one blob of `size`, one fetcher. */
struct one {
	struct srv *s;
	struct sf_registry reg;
	struct tblob t;
	struct sf_fetcher *f;
};

static void one_setup(struct one *o, size_t size)
{
	o->s = srv_new();
	o->s->chunk_size = CS;
	srv_add_blob(o->s, 1, size);
	reg_init(&o->reg, o->s->port);
}

static void one_run(struct one *o, uint64_t start, int conns, int window, int retries)
{
	srv_start(o->s);
	tblob_init(&o->t, &o->reg, &o->s->blobs[0], start);
	o->f = fetcher(CS, conns, window, retries);
	watch(&o->t);
	sf_fetcher_add(o->f, &o->t.b);
}

/* Tear down after assert_complete/assert_failed (which joined the watcher). */
static void one_finish(struct one *o)
{
	sf_fetcher_free(o->f);
	srv_stop(o->s);
	tblob_destroy(&o->t);
	reg_destroy(&o->reg);
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */
/* ------------------------------------------------------------------ */

static void test_basic(void **state)
{
	struct one o;

	(void)state;
	one_setup(&o, BIG);
	one_run(&o, 0, 4, 4, 0);
	assert_complete(&o.t);
	assert_true(o.t.wakeups > 1); /* it streamed, not one jump at the end */
	assert_int_equal(SRV(o.s, o.s->n200), 0);
	assert_true(SRV(o.s, o.s->max_inflight) <= 4);
	one_finish(&o);
}

static bool has_inversion(struct srv *s)
{
	bool inv = false;

	pthread_mutex_lock(&s->lock);
	for (int i = 1; i < s->nfinished; i++)
		if (s->finished_from[i] < s->finished_from[i - 1])
			inv = true;
	pthread_mutex_unlock(&s->lock);
	return inv;
}

static void test_out_of_order(void **state)
{
	struct one o;

	(void)state;
	one_setup(&o, BIG);
	o.s->slow_even = true;
	one_run(&o, 0, 4, 4, 0);
	assert_complete(&o.t);
	assert_true(has_inversion(o.s));
	assert_true(SRV(o.s, o.s->max_inflight) <= 4);
	one_finish(&o);
}

static void test_window(void **state)
{
	struct one o;

	(void)state;
	one_setup(&o, 1 * MiB);
	o.s->slow_even = true;
	one_run(&o, 0, 8, 2, 0);
	assert_complete(&o.t);
	assert_true(SRV(o.s, o.s->max_inflight) <= 2);
	one_finish(&o);
}

static void test_many_blobs(void **state)
{
	static const size_t sizes[] = { 0, 1000, 4 * CS, BIG, 700001, 1 };
	enum { N = sizeof(sizes) / sizeof(sizes[0]) };
	struct srv *s = srv_new();
	struct sf_registry reg;
	struct tblob t[N];
	struct sf_fetcher *f;

	(void)state;
	s->chunk_size = CS;
	s->slow_even = true;
	for (int i = 0; i < N; i++)
		srv_add_blob(s, 100 + (uint64_t)i, sizes[i]);
	reg_init(&reg, s->port);
	srv_start(s);
	f = fetcher(CS, 3, 4, 0);
	for (int i = 0; i < N; i++) {
		tblob_init(&t[i], &reg, &s->blobs[i], 0);
		watch(&t[i]);
		sf_fetcher_add(f, &t[i].b);
	}
	for (int i = 0; i < N; i++)
		assert_complete(&t[i]);
	assert_true(SRV(s, s->max_inflight) <= 3);
	sf_fetcher_free(f);
	srv_stop(s);
	for (int i = 0; i < N; i++)
		tblob_destroy(&t[i]);
	reg_destroy(&reg);
}

static void test_no_range(void **state)
{
	struct one o;

	(void)state;
	one_setup(&o, BIG);
	o.s->ignore_range = true;
	one_run(&o, 0, 4, 4, 0);
	assert_complete(&o.t);
	assert_true(SRV(o.s, o.s->n200) >= 2); /* the refused range GET(s), then the stream */
	assert_int_equal(SRV(o.s, o.s->n206), 0);
	one_finish(&o);
}

static void test_no_range_resume(void **state)
{
	struct one o;

	(void)state;
	one_setup(&o, BIG);
	o.s->ignore_range = true;
	one_run(&o, 1 * MiB + 3, 4, 4, 0); /* the stream must skip the prefix */
	assert_complete(&o.t);
	one_finish(&o);
}

static void test_small_no_range(void **state)
{
	struct one o;

	(void)state;
	one_setup(&o, 5000); /* one chunk = whole blob: a 200 is the answer */
	o.s->ignore_range = true;
	one_run(&o, 0, 4, 4, 0);
	assert_complete(&o.t);
	assert_int_equal(SRV(o.s, o.s->nreq), 1);
	one_finish(&o);
}

static void test_resume(void **state)
{
	struct one o;
	uint64_t start = 1 * MiB + 1000;
	bool first = false;

	(void)state;
	one_setup(&o, BIG);
	one_run(&o, start, 4, 4, 0);
	assert_complete(&o.t);
	pthread_mutex_lock(&o.s->lock);
	for (int i = 0; i < o.s->nlog; i++) {
		assert_true(o.s->log[i].ranged);
		assert_true(o.s->log[i].a >= start);
		first |= o.s->log[i].a == start;
	}
	assert_true(first);
	pthread_mutex_unlock(&o.s->lock);
	one_finish(&o);
}

/* Resume from a chunk map: ranges the owner reports present are not
 * fetched, a chunk whose prefix is present fetches only its rest, and
 * chunk_done reports exactly the chunks that were fetched. */
struct present_map {
	uint64_t r[2][2]; /* two present ranges [a, b) */
	pthread_mutex_t lock;
	int done_calls;
	uint64_t done_bytes;
	bool done_aligned;
};

static uint64_t pm_present(void *arg, uint64_t off, uint64_t len)
{
	struct present_map *m = arg;

	for (int i = 0; i < 2; i++)
		if (m->r[i][0] <= off && off < m->r[i][1])
			return m->r[i][1] - off < len ? m->r[i][1] - off : len;
	return 0;
}

static void pm_chunk_done(void *arg, uint64_t off, uint64_t len)
{
	struct present_map *m = arg;

	pthread_mutex_lock(&m->lock);
	m->done_calls++;
	m->done_bytes += len;
	if (off % CS != 0)
		m->done_aligned = false;
	pthread_mutex_unlock(&m->lock);
}

static void test_resume_present(void **state)
{
	struct present_map m = { .r = { { 0, 5 * CS }, { 8 * CS, 12 * CS + 500 } },
				 .done_aligned = true };
	uint64_t reused = 5 * CS + 4 * CS + 500;
	uint64_t nchunks = (BIG + CS - 1) / CS;
	struct one o;

	(void)state;
	pthread_mutex_init(&m.lock, NULL);
	one_setup(&o, BIG);
	srv_start(o.s);
	tblob_init(&o.t, &o.reg, &o.s->blobs[0], 0);
	for (int i = 0; i < 2; i++) /* what an earlier pull left */
		assert_int_equal(pwrite(o.t.b.fd, o.s->blobs[0].data + m.r[i][0],
					m.r[i][1] - m.r[i][0], (off_t)m.r[i][0]),
				 (ssize_t)(m.r[i][1] - m.r[i][0]));
	o.t.b.present = pm_present;
	o.t.b.chunk_done = pm_chunk_done;
	o.t.b.hook_arg = &m;
	o.f = fetcher(CS, 4, 4, 0);
	watch(&o.t);
	sf_fetcher_add(o.f, &o.t.b);
	assert_complete(&o.t);
	assert_int_equal(o.t.b.reused, reused);
	assert_int_equal(o.t.b.downloaded, BIG - reused);
	pthread_mutex_lock(&o.s->lock);
	for (int i = 0; i < o.s->nlog; i++) {
		uint64_t a = o.s->log[i].a;
		assert_true(o.s->log[i].ranged);
		assert_false(a < 5 * CS);
		assert_false(a >= 8 * CS && a < 12 * CS + 500);
		if (a / CS == 12)
			assert_int_equal(a, 12 * CS + 500);
	}
	pthread_mutex_unlock(&o.s->lock);
	/* chunks 5..7 and 12..end were completed by this fetch */
	assert_int_equal(m.done_calls, (int)(nchunks - 9));
	assert_int_equal(m.done_bytes, BIG - 9 * CS);
	assert_true(m.done_aligned);
	one_finish(&o);
	pthread_mutex_destroy(&m.lock);
}

/* Everything present: finished at once, nothing requested. */
static void test_resume_all_present(void **state)
{
	struct present_map m = { .r = { { 0, BIG }, { 0, 0 } } };
	struct one o;

	(void)state;
	pthread_mutex_init(&m.lock, NULL);
	one_setup(&o, BIG);
	srv_start(o.s);
	tblob_init(&o.t, &o.reg, &o.s->blobs[0], 0);
	assert_int_equal(pwrite(o.t.b.fd, o.s->blobs[0].data, BIG, 0), (ssize_t)BIG);
	o.t.b.present = pm_present;
	o.t.b.hook_arg = &m;
	o.f = fetcher(CS, 4, 4, 0);
	watch(&o.t);
	sf_fetcher_add(o.f, &o.t.b);
	assert_complete(&o.t);
	assert_int_equal(SRV(o.s, o.s->nreq), 0);
	assert_int_equal(o.t.b.downloaded, 0);
	one_finish(&o);
	pthread_mutex_destroy(&m.lock);
}

static void test_503_then_ok(void **state)
{
	struct one o;

	(void)state;
	one_setup(&o, BIG);
	o.s->fail_503 = 4;
	one_run(&o, 0, 4, 4, 0);
	assert_complete(&o.t);
	assert_int_equal(SRV(o.s, o.s->nreq), (BIG + CS - 1) / CS + 4);
	one_finish(&o);
}

static void test_429_retry_after(void **state)
{
	struct one o;
	int64_t t0 = mono_ms();

	(void)state;
	one_setup(&o, 512 * KiB);
	o.s->ratelimit = 1;
	one_run(&o, 0, 4, 4, 0);
	assert_complete(&o.t);
	assert_true(mono_ms() - t0 >= 950);
	one_finish(&o);
}

/* Retry-After as an HTTP-date (RFC 9110 10.2.3) is honoured too: the
 * retry waits for that second, not for the ~100 ms of a backoff. */
static void test_429_retry_after_date(void **state)
{
	struct one o;
	time_t when = time(NULL) + 2; /* 1..2 s from when the fetcher reads it */
	int64_t t0 = mono_ms();

	(void)state;
	one_setup(&o, 512 * KiB);
	o.s->ratelimit = 1;
	strftime(o.s->retry_after, sizeof(o.s->retry_after), "%a, %d %b %Y %H:%M:%S GMT",
		 gmtime(&when));
	one_run(&o, 0, 4, 4, 0);
	assert_complete(&o.t);
	assert_true(mono_ms() - t0 >= 900);
	one_finish(&o);
}

/* The forms of Retry-After, parsed the same for documents and blobs. */
static void test_retry_after_parse(void **state)
{
	time_t now = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */

	(void)state;
	assert_int_equal(sf_http_retry_after("0", now), 0);
	assert_int_equal(sf_http_retry_after("120", now), 120);
	assert_int_equal(sf_http_retry_after("99999999999999999999", now),
			 SF_HTTP_RETRY_AFTER_CLAMP_S);
	/* IMF-fixdate, RFC 850, asctime, all 10 s after `now` */
	assert_int_equal(sf_http_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now), 10);
	assert_int_equal(sf_http_retry_after("Sunday, 06-Nov-94 08:49:47 GMT", now), 10);
	assert_int_equal(sf_http_retry_after("Sun Nov  6 08:49:47 1994", now), 10);
	assert_int_equal(sf_http_retry_after("Sat, 05 Nov 1994 08:49:37 GMT", now), 0); /* past */
	assert_int_equal(sf_http_retry_after("", now), -1);
	assert_int_equal(sf_http_retry_after("-5", now), -1);
	assert_int_equal(sf_http_retry_after("1.5", now), -1);
	assert_int_equal(sf_http_retry_after("soon", now), -1);
}

static void test_close_mid_body(void **state)
{
	struct one o;
	bool resumed = false;

	(void)state;
	one_setup(&o, BIG);
	o.s->close_mid = 3;
	one_run(&o, 0, 4, 4, 0);
	assert_complete(&o.t);
	/* some retry asked only for the missing tail of a chunk */
	pthread_mutex_lock(&o.s->lock);
	for (int i = 0; i < o.s->nlog; i++) {
		struct req_log *l = &o.s->log[i];
		if (l->a % CS != 0 && (l->b + 1 == BIG || (l->b + 1) % CS == 0))
			resumed = true;
	}
	pthread_mutex_unlock(&o.s->lock);
	assert_true(resumed);
	one_finish(&o);
}

static void test_bad_content_range(void **state)
{
	struct one o;

	(void)state;
	one_setup(&o, BIG);
	o.s->bad_crange = 2;
	one_run(&o, 0, 4, 4, 0);
	assert_complete(&o.t);
	assert_int_equal(SRV(o.s, o.s->nreq), (BIG + CS - 1) / CS + 2);
	one_finish(&o);
}

static void test_size_mismatch(void **state)
{
	struct one o;

	(void)state;
	one_setup(&o, BIG);
	srv_start(o.s);
	tblob_init(&o.t, &o.reg, &o.s->blobs[0], 0);
	o.t.b.size = BIG - 10; /* the manifest disagrees with the server */
	o.f = fetcher(CS, 4, 4, 1);
	watch(&o.t);
	sf_fetcher_add(o.f, &o.t.b);
	assert_failed(&o.t, -EIO, "bad Content-Range");
	assert_non_null(strstr(o.t.b.err.msg, "after 1 retries"));
	one_finish(&o);
}

static void test_auth(void **state)
{
	struct one o;

	(void)state;
	one_setup(&o, BIG);
	o.s->require_auth = "Bearer secret";
	one_run(&o, 0, 4, 4, 0);
	assert_complete(&o.t);
	assert_int_equal(o.reg.refreshes, 1);
	assert_true(o.reg.reauth_calls >= 1);
	assert_non_null(strstr(o.reg.last_www, "Bearer realm="));
	one_finish(&o);
}

static void test_auth_denied(void **state)
{
	struct one o;
	int64_t t0 = mono_ms();

	(void)state;
	one_setup(&o, BIG);
	o.s->require_auth = "Bearer secret";
	o.reg.grant = "wrong";
	one_run(&o, 0, 4, 4, 0);
	assert_failed(&o.t, -EACCES, "HTTP 401");
	assert_true(mono_ms() - t0 < 3000);
	one_finish(&o);
}

/* A resolve that switches the registry to another endpoint (the store
 * re-resolving a tag, another mirror answering first) while a blob is being
 * fetched changes neither where its remaining chunks go nor which token
 * they carry: a chunk for endpoint A never goes out with B's credentials. */
static void test_endpoint_kept(void **state)
{
	struct one o;
	struct srv *b = srv_new();
	struct sf_registry reg_b;
	uint64_t at_switch;

	(void)state;
	one_setup(&o, BIG);
	o.s->require_auth = "Bearer a-token";
	o.s->slow_even = true; /* ~1 s in all: the switch lands mid-blob */
	snprintf(o.reg.token, sizeof(o.reg.token), "a-token");
	b->chunk_size = CS;
	b->require_auth = "Bearer b-token";
	srv_add_blob(b, 1, BIG);
	srv_start(b);
	reg_init(&reg_b, b->port);
	snprintf(reg_b.token, sizeof(reg_b.token), "b-token");
	one_run(&o, 0, 2, 4, 0);
	assert_true(sf_blob_wait(&o.t.b, CS) >= (int64_t)CS);
	pthread_mutex_lock(&o.reg.lock);
	o.reg.moved_to = &reg_b;
	pthread_mutex_unlock(&o.reg.lock);
	pthread_mutex_lock(&o.t.b.lock);
	at_switch = o.t.b.contiguous;
	pthread_mutex_unlock(&o.t.b.lock);
	assert_complete(&o.t);
	if (at_switch >= BIG)
		fail_msg("the blob was complete before the switch: nothing was tested");
	assert_int_equal(SRV(o.s, o.s->bad_auth), 0);
	assert_int_equal(SRV(o.s, o.s->n206), (BIG + CS - 1) / CS);
	assert_int_equal(SRV(b, b->nreq), 0);
	assert_int_equal(o.reg.reauth_calls + reg_b.reauth_calls, 0);
	assert_int_equal(o.reg.endpoint_calls, 1); /* taken once, when added */
	one_finish(&o);
	srv_stop(b);
	reg_destroy(&reg_b);
}

/* 401s with progress in between are revocations, not a refusal: one chunk
 * meeting more of them than the auth budget (3) still completes. */
static void test_auth_revoked_repeatedly(void **state)
{
	struct one o;

	(void)state;
	one_setup(&o, CS); /* one chunk: every 401 is on it */
	o.s->flap = 8;	   /* 4 x (401, half a body) */
	snprintf(o.reg.token, sizeof(o.reg.token), "secret");
	one_run(&o, 0, 1, 4, 0);
	assert_complete(&o.t);
	assert_int_equal(o.reg.reauth_calls, 4);
	one_finish(&o);
}

static void test_redirect_drops_auth(void **state)
{
	struct one o;
	struct srv *cdn = srv_new();

	(void)state;
	one_setup(&o, BIG);
	cdn->chunk_size = CS;
	srv_add_blob(cdn, 1, BIG);
	srv_start(cdn);
	o.s->require_auth = "Bearer secret";
	o.s->redirect_to = cdn;
	snprintf(o.reg.token, sizeof(o.reg.token), "secret");
	one_run(&o, 0, 4, 4, 0);
	assert_complete(&o.t);
	assert_true(SRV(o.s, o.s->saw_auth) > 0);
	assert_true(SRV(cdn, cdn->n206) > 0);
	assert_int_equal(SRV(cdn, cdn->saw_auth), 0); /* the token stayed with the registry */
	one_finish(&o);
	srv_stop(cdn);
}

/* The redirect target is kept for the blob: the registry sees at most one
 * request per connection (those in flight before the first 307 came back). */
static void test_redirect_reused(void **state)
{
	struct one o;
	struct srv *cdn = srv_new();

	(void)state;
	one_setup(&o, BIG);
	cdn->chunk_size = CS;
	srv_add_blob(cdn, 1, BIG);
	srv_start(cdn);
	o.s->redirect_to = cdn;
	one_run(&o, 0, 4, 4, 0);
	assert_complete(&o.t);
	assert_true(SRV(o.s, o.s->nreq) <= 4);
	assert_int_equal(SRV(cdn, cdn->n206), (BIG + CS - 1) / CS);
	one_finish(&o);
	srv_stop(cdn);
}

/* The store refuses its URLs (expired): back to the registry for a fresh
 * redirect, without charging the retry budget (retries = 1 here). */
static void test_redirect_expired(void **state)
{
	struct one o;
	struct srv *cdn = srv_new();

	(void)state;
	one_setup(&o, BIG);
	cdn->chunk_size = CS;
	cdn->fail_403 = 3;
	srv_add_blob(cdn, 1, BIG);
	srv_start(cdn);
	o.s->require_auth = "Bearer secret";
	o.s->redirect_to = cdn;
	snprintf(o.reg.token, sizeof(o.reg.token), "secret");
	one_run(&o, 0, 4, 4, 1);
	assert_complete(&o.t);
	assert_true(SRV(o.s, o.s->nreq) >= 2); /* re-resolved */
	assert_int_equal(SRV(cdn, cdn->saw_auth), 0);
	assert_int_equal(o.reg.reauth_calls, 0); /* a store 403 is not an auth problem */
	one_finish(&o);
	srv_stop(cdn);
}

/* A store that refuses every URL: a clean failure after a bounded number of
 * fresh redirects. */
static void test_redirect_always_refused(void **state)
{
	struct one o;
	struct srv *cdn = srv_new();

	(void)state;
	one_setup(&o, BIG);
	cdn->chunk_size = CS;
	cdn->fail_403 = 1000000;
	srv_add_blob(cdn, 1, BIG);
	srv_start(cdn);
	o.s->redirect_to = cdn;
	one_run(&o, 0, 4, 4, 1);
	assert_failed(&o.t, -EACCES, "HTTP 403 from the blob store");
	one_finish(&o);
	srv_stop(cdn);
}

/* A registry that redirects to itself: the loop ends at the redirect limit. */
static void test_redirect_loop(void **state)
{
	struct one o;

	(void)state;
	one_setup(&o, BIG);
	o.s->redirect_to = o.s;
	one_run(&o, 0, 4, 4, 1);
	assert_failed(&o.t, -EIO, "more than 5 redirects");
	one_finish(&o);
}

static void test_permanent_failure(void **state)
{
	struct one o;
	int64_t t0 = mono_ms();

	(void)state;
	one_setup(&o, BIG);
	o.s->always_503 = true;
	one_run(&o, 0, 4, 4, 2);
	assert_failed(&o.t, -EIO, "HTTP 503 after 2 retries");
	assert_true(mono_ms() - t0 < 3000);
	one_finish(&o);
}

static void test_not_found(void **state)
{
	struct one o;

	(void)state;
	one_setup(&o, BIG);
	o.s->force_status = 404;
	one_run(&o, 0, 4, 4, 0);
	assert_failed(&o.t, -ENOENT, "HTTP 404");
	one_finish(&o);
}

static void test_connect_refused(void **state)
{
	struct one o;
	struct srv *dead = srv_new();

	(void)state;
	one_setup(&o, BIG);
	reg_destroy(&o.reg);
	reg_init(&o.reg, dead->port);
	srv_stop(dead); /* closes the listening socket: nothing on that port */
	one_run(&o, 0, 2, 2, 1);
	assert_failed(&o.t, -EIO, "after 1 retries");
	one_finish(&o);
}

static void test_write_error(void **state)
{
	struct one o;

	(void)state;
	one_setup(&o, BIG);
	srv_start(o.s);
	tblob_init(&o.t, &o.reg, &o.s->blobs[0], 0);
	close(o.t.b.fd);
	o.t.b.fd = open("/dev/full", O_RDWR | O_CLOEXEC);
	assert_true(o.t.b.fd >= 0);
	o.f = fetcher(CS, 4, 4, 0);
	watch(&o.t);
	sf_fetcher_add(o.f, &o.t.b);
	assert_failed(&o.t, -ENOSPC, strerror(ENOSPC));
	one_finish(&o);
}

static void test_cancel(void **state)
{
	struct one o;
	int64_t t0;

	(void)state;
	one_setup(&o, BIG);
	o.s->stall = true;
	one_run(&o, 0, 4, 4, 0);
	assert_true(sf_blob_wait(&o.t.b, 1) >= 1); /* data is flowing, then stops */
	t0 = mono_ms();
	sf_fetcher_free(o.f);
	assert_true(mono_ms() - t0 < 2000);
	assert_failed(&o.t, -ECANCELED, "cancelled");
	srv_stop(o.s);
	tblob_destroy(&o.t);
	reg_destroy(&o.reg);
}

/* Wait (up to 5 s) until the server has no request in progress: the
 * connections of aborted transfers were closed. */
static bool srv_idle(struct srv *s)
{
	int64_t end = mono_ms() + 5000;

	while (SRV(s, s->inflight) > 0) {
		if (mono_ms() > end)
			return false;
		usleep(10000);
	}
	return true;
}

static void assert_cancelled(struct tblob *t)
{
	assert_failed(t, -ECANCELED, "download cancelled");
	assert_int_equal(t->b.err.code, ECANCELED);
}

/* One blob stalls mid-download and is cancelled; the others, in flight on
 * the same fetcher, are not disturbed. */
static void test_cancel_one(void **state)
{
	static const size_t sizes[] = { BIG, BIG, 700001 };
	enum { N = sizeof(sizes) / sizeof(sizes[0]) };
	struct srv *s = srv_new();
	struct sf_registry reg;
	struct tblob t[N];
	struct sf_fetcher *f;
	uint64_t fetched;
	int64_t t0;

	(void)state;
	s->chunk_size = CS;
	s->slow_even = true;
	for (int i = 0; i < N; i++)
		srv_add_blob(s, 200 + (uint64_t)i, sizes[i]);
	s->blobs[0].stall = true;
	reg_init(&reg, s->port);
	srv_start(s);
	f = fetcher(CS, 8, 4, 0);
	for (int i = 0; i < N; i++) {
		tblob_init(&t[i], &reg, &s->blobs[i], 0);
		watch(&t[i]);
		sf_fetcher_add(f, &t[i].b);
	}
	assert_true(sf_blob_wait(&t[0].b, 1) >= 1); /* data came, then stopped */
	t0 = mono_ms();
	sf_fetcher_cancel(f, &t[0].b);
	assert_true(mono_ms() - t0 < 2000);
	assert_true(t[0].b.finished); /* on return, not some time later */
	assert_cancelled(&t[0]);
	fetched = t[0].b.fetched;
	sf_fetcher_cancel(f, &t[0].b); /* again: a no-op */
	assert_int_equal(t[0].b.error, -ECANCELED);
	for (int i = 1; i < N; i++)
		assert_complete(&t[i]);
	assert_true(srv_idle(s)); /* the stalled transfers were aborted */
	assert_int_equal(t[0].b.fetched, fetched);
	sf_fetcher_free(f);
	srv_stop(s);
	for (int i = 0; i < N; i++)
		tblob_destroy(&t[i]);
	reg_destroy(&reg);
}

static void test_cancel_finished(void **state)
{
	struct one o;
	struct tblob never;

	(void)state;
	one_setup(&o, 512 * KiB);
	one_run(&o, 0, 4, 4, 0);
	assert_complete(&o.t);
	sf_fetcher_cancel(o.f, &o.t.b);
	sf_fetcher_cancel(o.f, &o.t.b);
	assert_true(o.t.b.finished);
	assert_int_equal(o.t.b.error, 0);
	assert_int_equal(sf_blob_wait(&o.t.b, UINT64_MAX), 512 * KiB);
	/* never added: nothing happens to it */
	tblob_init(&never, &o.reg, &o.s->blobs[0], 0);
	sf_fetcher_cancel(o.f, &never.b);
	assert_false(never.b.finished);
	assert_int_equal(never.b.error, 0);
	tblob_destroy(&never);
	sf_fetcher_free(o.f);
	/* a finished blob does not even look at the fetcher (what layer threads
	 * outliving the fetcher rely on) */
	sf_fetcher_cancel(o.f, &o.t.b);
	assert_int_equal(o.t.b.error, 0);
	srv_stop(o.s);
	tblob_destroy(&o.t);
	reg_destroy(&o.reg);
}

/* Still in the pending queue: the fetcher thread is stuck (in a reauth), so
 * the caller must end the blob itself. */
static void test_cancel_pending(void **state)
{
	struct one o;
	struct srv *s2 = srv_new();
	struct sf_registry reg2;
	struct tblob q;
	int64_t t0;

	(void)state;
	one_setup(&o, 512 * KiB);
	o.s->require_auth = "Bearer secret";
	o.reg.hold = true;
	srv_add_blob(s2, 7, 512 * KiB);
	reg_init(&reg2, s2->port);
	srv_start(s2);
	one_run(&o, 0, 4, 4, 0);
	reg_wait_holding(&o.reg); /* the fetcher thread is blocked now */
	tblob_init(&q, &reg2, &s2->blobs[0], 0);
	watch(&q);
	sf_fetcher_add(o.f, &q.b);
	t0 = mono_ms();
	sf_fetcher_cancel(o.f, &q.b);
	assert_true(mono_ms() - t0 < 2000);
	assert_true(q.b.finished);
	assert_cancelled(&q);
	reg_release(&o.reg);
	assert_complete(&o.t);
	one_finish(&o);
	assert_int_equal(SRV(s2, s2->nreq), 0);
	srv_stop(s2);
	tblob_destroy(&q);
	reg_destroy(&reg2);
}

/* Adopted but not started: the only connection is busy with a stalled blob. */
static void test_cancel_not_started(void **state)
{
	struct one o;
	struct srv *s2 = srv_new();
	struct sf_registry reg2;
	struct tblob q;
	int64_t t0;

	(void)state;
	one_setup(&o, BIG);
	o.s->blobs[0].stall = true;
	srv_add_blob(s2, 8, 512 * KiB);
	reg_init(&reg2, s2->port);
	srv_start(s2);
	one_run(&o, 0, 1, 4, 0);
	assert_true(sf_blob_wait(&o.t.b, 1) >= 1); /* the connection is taken */
	tblob_init(&q, &reg2, &s2->blobs[0], 0);
	watch(&q);
	sf_fetcher_add(o.f, &q.b);
	usleep(50000); /* let the thread adopt it */
	t0 = mono_ms();
	sf_fetcher_cancel(o.f, &q.b);
	assert_cancelled(&q);
	sf_fetcher_cancel(o.f, &o.t.b);
	assert_true(mono_ms() - t0 < 2000);
	assert_cancelled(&o.t);
	assert_int_equal(SRV(s2, s2->nreq), 0);
	assert_true(srv_idle(o.s));
	one_finish(&o);
	srv_stop(s2);
	tblob_destroy(&q);
	reg_destroy(&reg2);
}

struct cancel_call {
	struct sf_fetcher *f;
	struct sf_blob *b;
};

static void *cancel_main(void *arg)
{
	struct cancel_call *c = arg;

	sf_fetcher_cancel(c->f, c->b);
	return NULL;
}

static void *free_main(void *arg)
{
	sf_fetcher_free(arg);
	return NULL;
}

/* A cancel request is queued while the fetcher is shutting down: the
 * exiting thread must still answer it. */
static void test_cancel_at_shutdown(void **state)
{
	struct one o;
	struct srv *s2 = srv_new();
	struct sf_registry reg2;
	struct tblob a;
	struct cancel_call call;
	pthread_t canceller, freer;

	(void)state;
	one_setup(&o, BIG);
	o.s->blobs[0].stall = true;
	s2->chunk_size = CS;
	s2->require_auth = "Bearer secret";
	srv_add_blob(s2, 9, 512 * KiB);
	reg_init(&reg2, s2->port);
	reg2.hold = true;
	srv_start(s2);
	one_run(&o, 0, 8, 4, 0);
	assert_true(sf_blob_wait(&o.t.b, 1) >= 1);
	tblob_init(&a, &reg2, &s2->blobs[0], 0);
	watch(&a);
	sf_fetcher_add(o.f, &a.b);
	reg_wait_holding(&reg2); /* the fetcher thread is blocked now */
	call = (struct cancel_call){ .f = o.f, .b = &o.t.b };
	assert_int_equal(pthread_create(&canceller, NULL, cancel_main, &call), 0);
	assert_int_equal(pthread_create(&freer, NULL, free_main, o.f), 0);
	usleep(300000); /* both are waiting for the thread */
	reg_release(&reg2);
	pthread_join(canceller, NULL);
	pthread_join(freer, NULL);
	assert_cancelled(&o.t);
	assert_cancelled(&a);
	srv_stop(o.s);
	tblob_destroy(&o.t);
	reg_destroy(&o.reg);
	srv_stop(s2);
	tblob_destroy(&a);
	reg_destroy(&reg2);
}

static void test_trivial_blobs(void **state)
{
	struct one o;
	struct tblob bad;

	(void)state;
	one_setup(&o, 4096);
	srv_start(o.s);
	o.f = fetcher(CS, 4, 4, 0);
	/* already complete: start == size */
	tblob_init(&o.t, &o.reg, &o.s->blobs[0], 4096);
	watch(&o.t);
	sf_fetcher_add(o.f, &o.t.b);
	pthread_join(o.t.watcher, NULL);
	assert_true(o.t.b.finished);
	assert_int_equal(o.t.b.error, 0);
	assert_int_equal(sf_blob_wait(&o.t.b, 4096), 4096);
	/* start beyond size */
	tblob_init(&bad, &o.reg, &o.s->blobs[0], 0);
	bad.b.start = 5000;
	watch(&bad);
	sf_fetcher_add(o.f, &bad.b);
	assert_failed(&bad, -EINVAL, "beyond");
	tblob_destroy(&bad);
	assert_int_equal(SRV(o.s, o.s->nreq), 0);
	one_finish(&o);
}

static void test_bad_opts(void **state)
{
	struct sf_fetch_opts o = { .connections = -1 };
	struct sf_error err = { 0 };
	struct sf_fetcher *f = NULL;

	(void)state;
	assert_int_equal(sf_fetcher_new(&o, &f, &err), -EINVAL);
	assert_null(f);
	assert_non_null(strstr(err.msg, "connections"));
	assert_int_equal(sf_fetcher_new(NULL, &f, &err), 0); /* all defaults */
	sf_fetcher_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_out_of_order),
		cmocka_unit_test(test_window),
		cmocka_unit_test(test_many_blobs),
		cmocka_unit_test(test_no_range),
		cmocka_unit_test(test_no_range_resume),
		cmocka_unit_test(test_small_no_range),
		cmocka_unit_test(test_resume),
		cmocka_unit_test(test_resume_present),
		cmocka_unit_test(test_resume_all_present),
		cmocka_unit_test(test_503_then_ok),
		cmocka_unit_test(test_429_retry_after),
		cmocka_unit_test(test_429_retry_after_date),
		cmocka_unit_test(test_retry_after_parse),
		cmocka_unit_test(test_close_mid_body),
		cmocka_unit_test(test_bad_content_range),
		cmocka_unit_test(test_size_mismatch),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_auth_denied),
		cmocka_unit_test(test_auth_revoked_repeatedly),
		cmocka_unit_test(test_endpoint_kept),
		cmocka_unit_test(test_redirect_drops_auth),
		cmocka_unit_test(test_redirect_reused),
		cmocka_unit_test(test_redirect_expired),
		cmocka_unit_test(test_redirect_always_refused),
		cmocka_unit_test(test_redirect_loop),
		cmocka_unit_test(test_permanent_failure),
		cmocka_unit_test(test_not_found),
		cmocka_unit_test(test_connect_refused),
		cmocka_unit_test(test_write_error),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_cancel_one),
		cmocka_unit_test(test_cancel_finished),
		cmocka_unit_test(test_cancel_pending),
		cmocka_unit_test(test_cancel_not_started),
		cmocka_unit_test(test_cancel_at_shutdown),
		cmocka_unit_test(test_trivial_blobs),
		cmocka_unit_test(test_bad_opts),
	};
	int rc;

	alarm(120); /* a hang is a failure, not a stuck CI job */
	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	curl_global_cleanup();
	return rc;
}
