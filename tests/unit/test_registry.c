/* test_registry.c - the registry client's endpoints against two in-process
 * registries: a mirror and the registry behind it, each with its own Basic
 * login (from an auth file) and each able to lose the image on demand.
 *
 * What is proven: a resolve publishes the endpoint that served the image
 * only once it succeeded (a failed one keeps the previous); an endpoint a
 * transfer took keeps its URL and credentials when a later resolve
 * switches the handle to the other host; and readers that take endpoints
 * while resolves switch them back and forth always see one host's URL with
 * that host's credentials (under ThreadSanitizer: without a data race).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
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

#include "digest.h"
#include "ref.h"
#include "registry.h"

#define REPO "test/img"
#define LAYER_DIGEST "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define DIFF_ID "sha256:2222222222222222222222222222222222222222222222222222222222222222"
/* base64("alice:pw-a"), base64("bob:pw-b") */
#define ALICE "Authorization: Basic YWxpY2U6cHctYQ=="
#define BOB "Authorization: Basic Ym9iOnB3LWI="
#define FLIPS 12

/* ---- a tiny registry: one request per connection ---- */

struct reg_srv {
	int lfd, port;
	pthread_t thread;
	atomic_bool stop;
	atomic_bool lost;  /* manifests answer 404 */
	atomic_int throttle; /* answer this many requests 429 with Retry-After: retry_after */
	char retry_after[64];
	const char *login; /* the Authorization line it accepts */
	atomic_int requests, denied;
};

static char manifest[1024], config[512], config_digest[SF_DIGEST_STR_LEN + 1];

static void make_documents(void)
{
	snprintf(config, sizeof(config),
		 "{\"architecture\":\"amd64\",\"os\":\"linux\","
		 "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" DIFF_ID "\"]}}");
	sf_sha256_buf(config, strlen(config), config_digest);
	snprintf(manifest, sizeof(manifest),
		 "{\"schemaVersion\":2,"
		 "\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
		 "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
		 "\"digest\":\"%s\",\"size\":%zu},\"layers\":[{\"mediaType\":"
		 "\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"" LAYER_DIGEST
		 "\",\"size\":100}]}",
		 config_digest, strlen(config));
}

static void reply(int fd, const char *status, const char *extra, const char *body)
{
	char head[512];
	int n = snprintf(head, sizeof(head), "HTTP/1.1 %s\r\n%sContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n", status, extra, strlen(body));

	if (send(fd, head, (size_t)n, MSG_NOSIGNAL) == n)
		send(fd, body, strlen(body), MSG_NOSIGNAL);
}

static void serve_one(struct reg_srv *s, int fd)
{
	char buf[8192], path[512] = "", *auth;
	size_t have = 0;
	ssize_t n;

	while (have < sizeof(buf) - 1 && !memmem(buf, have, "\r\n\r\n", 4)) {
		n = recv(fd, buf + have, sizeof(buf) - 1 - have, 0);
		if (n <= 0)
			return;
		have += (size_t)n;
	}
	buf[have] = '\0';
	atomic_fetch_add(&s->requests, 1);
	sscanf(buf, "GET %511s", path);
	auth = strcasestr(buf, "\r\nAuthorization:");
	if (!auth || strncmp(auth + 2, s->login, strlen(s->login)) != 0 ||
	    auth[2 + strlen(s->login)] != '\r') {
		atomic_fetch_add(&s->denied, !!auth);
		reply(fd, "401 Unauthorized", "WWW-Authenticate: Basic realm=\"test\"\r\n", "");
	} else if (atomic_load(&s->throttle) > 0) {
		char h[128];
		atomic_fetch_sub(&s->throttle, 1);
		snprintf(h, sizeof(h), "Retry-After: %s\r\n", s->retry_after);
		reply(fd, "429 Too Many Requests", h, "");
	} else if (strstr(path, "/manifests/") && atomic_load(&s->lost)) {
		reply(fd, "404 Not Found", "Content-Type: application/json\r\n",
		      "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"gone\"}]}");
	} else if (strstr(path, "/manifests/")) {
		reply(fd, "200 OK", "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n",
		      manifest);
	} else if (strstr(path, config_digest)) {
		reply(fd, "200 OK", "", config);
	} else {
		reply(fd, "404 Not Found", "", "");
	}
}

static void *srv_main(void *arg)
{
	struct reg_srv *s = arg;

	while (!atomic_load(&s->stop)) {
		struct pollfd p = { .fd = s->lfd, .events = POLLIN };
		int fd;

		if (poll(&p, 1, 20) <= 0)
			continue;
		fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		serve_one(s, fd);
		close(fd);
	}
	return NULL;
}

static void srv_start(struct reg_srv *s, const char *login)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);

	memset(s, 0, sizeof(*s));
	s->login = login;
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(s->lfd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(s->lfd, 64), 0);
	assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&sa, &sl), 0);
	s->port = ntohs(sa.sin_port);
	assert_int_equal(pthread_create(&s->thread, NULL, srv_main, s), 0);
}

static void srv_stop(struct reg_srv *s)
{
	atomic_store(&s->stop, true);
	pthread_join(s->thread, NULL);
	close(s->lfd);
}

/* ---- fixture: mirror + registry, registries.conf, auth file ---- */

struct fix {
	struct reg_srv mirror, upstream;
	char dir[64], conf[128], authfile[128];
	struct sf_registry *r;
};

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void fix_setup(struct fix *x)
{
	struct sf_registry_opts o = { .certs_dirs = "/nonexistent" };
	struct sf_error e = { 0 };
	struct sf_ref ref;
	char text[1024], name[128];

	make_documents();
	srv_start(&x->mirror, ALICE);
	srv_start(&x->upstream, BOB);
	snprintf(x->dir, sizeof(x->dir), "/tmp/sf-test-registry.XXXXXX");
	assert_non_null(mkdtemp(x->dir));
	snprintf(x->conf, sizeof(x->conf), "%s/registries.conf", x->dir);
	snprintf(text, sizeof(text),
		 "[[registry]]\nlocation = \"127.0.0.1:%d\"\n"
		 "[[registry.mirror]]\nlocation = \"127.0.0.1:%d\"\n",
		 x->upstream.port, x->mirror.port);
	write_file(x->conf, text);
	snprintf(x->authfile, sizeof(x->authfile), "%s/auth.json", x->dir);
	snprintf(text, sizeof(text),
		 "{\"auths\": {\"127.0.0.1:%d\": {\"auth\": \"YWxpY2U6cHctYQ==\"},"
		 " \"127.0.0.1:%d\": {\"auth\": \"Ym9iOnB3LWI=\"}}}",
		 x->mirror.port, x->upstream.port);
	write_file(x->authfile, text);
	o.registries_conf = x->conf;
	o.authfile = x->authfile;
	snprintf(name, sizeof(name), "127.0.0.1:%d/" REPO ":latest", x->upstream.port);
	assert_int_equal(sf_ref_parse(name, &ref, &e), 0);
	if (sf_registry_new(&ref, &o, &x->r, &e) < 0)
		fail_msg("%s", e.msg);
	sf_ref_clear(&ref);
}

static void fix_teardown(struct fix *x)
{
	char cmd[128];

	sf_registry_free(x->r);
	srv_stop(&x->mirror);
	srv_stop(&x->upstream);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", x->dir);
	assert_int_equal(system(cmd), 0);
}

static sf_ret resolve(struct fix *x)
{
	struct sf_image img = { 0 };
	struct sf_error e = { 0 };
	sf_ret r = sf_registry_resolve(x->r, &img, &e);

	if (r == 0)
		assert_int_equal(img.n_layers, 1);
	sf_image_clear(&img);
	return r;
}

static int url_port(struct sf_endpoint *ep)
{
	char *url = sf_endpoint_blob_url(ep, LAYER_DIGEST);
	int port = 0;

	assert_non_null(url);
	assert_int_equal(sscanf(url, "http://127.0.0.1:%d/v2/" REPO "/blobs/", &port), 1);
	free(url);
	return port;
}

/* ---- tests ---- */

static void test_endpoint_switch(void **state)
{
	struct fix x;
	struct sf_endpoint *m, *u;
	char hdr[8192];

	(void)state;
	fix_setup(&x);
	assert_int_equal(resolve(&x), 0);
	m = sf_registry_endpoint(x.r);
	assert_int_equal(url_port(m), x.mirror.port);
	sf_endpoint_auth_header(m, hdr, sizeof(hdr));
	assert_string_equal(hdr, ALICE);

	/* the mirror loses the image: the registry serves it, and the
	 * endpoint a transfer took before still is the mirror, with its login */
	atomic_store(&x.mirror.lost, true);
	assert_int_equal(resolve(&x), 0);
	u = sf_registry_endpoint(x.r);
	assert_ptr_not_equal(u, m);
	assert_int_equal(url_port(u), x.upstream.port);
	sf_endpoint_auth_header(u, hdr, sizeof(hdr));
	assert_string_equal(hdr, BOB);
	assert_int_equal(url_port(m), x.mirror.port);
	sf_endpoint_auth_header(m, hdr, sizeof(hdr));
	assert_string_equal(hdr, ALICE);

	/* nobody has it: the resolve fails and leaves the endpoint alone
	 * (it does not end on the last one it tried) */
	atomic_store(&x.mirror.lost, false);
	assert_int_equal(resolve(&x), 0);
	assert_ptr_equal(sf_registry_endpoint(x.r), m);
	atomic_store(&x.mirror.lost, true);
	atomic_store(&x.upstream.lost, true);
	assert_int_equal(resolve(&x), -ENOENT);
	assert_ptr_equal(sf_registry_endpoint(x.r), m);
	assert_int_equal(atomic_load(&x.mirror.denied) + atomic_load(&x.upstream.denied), 0);
	fix_teardown(&x);
}

struct reader {
	struct fix *x;
	atomic_bool stop;
	atomic_int seen_mirror, seen_upstream;
	int mismatches;
};

/* What a transfer does: take an endpoint, then its URL and its header. */
static void *reader_main(void *arg)
{
	struct reader *rd = arg;
	char hdr[8192];

	while (!atomic_load(&rd->stop)) {
		struct sf_endpoint *ep = sf_registry_endpoint(rd->x->r);
		int port = url_port(ep);

		sf_endpoint_auth_header(ep, hdr, sizeof(hdr));
		atomic_fetch_add(port == rd->x->mirror.port ? &rd->seen_mirror : &rd->seen_upstream,
				 1);
		if (hdr[0] && strcmp(hdr, port == rd->x->mirror.port ? ALICE : BOB))
			rd->mismatches++;
	}
	return NULL;
}

static void test_resolve_while_transfers_run(void **state)
{
	struct fix x;
	struct reader rd = { .x = &x };
	pthread_t t;

	(void)state;
	fix_setup(&x);
	assert_int_equal(resolve(&x), 0);
	assert_int_equal(pthread_create(&t, NULL, reader_main, &rd), 0);
	for (int i = 0; i < FLIPS; i++) {
		atomic_int *seen = i % 2 == 0 ? &rd.seen_upstream : &rd.seen_mirror;
		int before;

		atomic_store(&x.mirror.lost, i % 2 == 0);
		assert_int_equal(resolve(&x), 0);
		assert_int_equal(url_port(sf_registry_endpoint(x.r)),
				 i % 2 == 0 ? x.upstream.port : x.mirror.port);
		/* the reader has taken the new endpoint before the next flip */
		before = atomic_load(seen);
		while (atomic_load(seen) == before)
			usleep(1000);
	}
	atomic_store(&rd.stop, true);
	pthread_join(t, NULL);
	assert_int_equal(rd.mismatches, 0);
	assert_int_equal(atomic_load(&x.mirror.denied) + atomic_load(&x.upstream.denied), 0);
	fix_teardown(&x);
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Manifest requests honour a Retry-After HTTP-date too (they used to take
 * a date for garbage and retry after the 250 ms backoff). */
static void test_retry_after_date(void **state)
{
	struct fix x;
	time_t when = time(NULL) + 2; /* 1..2 s from when the client reads it */
	int64_t t0 = mono_ms();

	(void)state;
	fix_setup(&x);
	strftime(x.mirror.retry_after, sizeof(x.mirror.retry_after),
		 "%a, %d %b %Y %H:%M:%S GMT", gmtime(&when));
	atomic_store(&x.mirror.throttle, 1);
	assert_int_equal(resolve(&x), 0);
	assert_int_equal(url_port(sf_registry_endpoint(x.r)), x.mirror.port);
	assert_true(mono_ms() - t0 >= 900);
	fix_teardown(&x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_endpoint_switch),
		cmocka_unit_test(test_resolve_while_transfers_run),
		cmocka_unit_test(test_retry_after_date),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
