/* test_ref.c - reference parsing and normalisation.
 *
 * Two tables: references that parse, with the four fields and the
 * normalised string they must give, and references that must be refused,
 * with a fragment of the message that must say why.  Then the small
 * helpers: API host and loopback detection.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>

#include "error.h"
#include "ref.h"

#define D64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define DG "sha256:" D64

struct good {
	const char *in;
	const char *registry, *repository, *tag, *digest;
	const char *formatted;
};

static const struct good goods[] = {
	{ "debian", "docker.io", "library/debian", "latest", NULL,
	  "docker.io/library/debian:latest" },
	{ "debian:bookworm", "docker.io", "library/debian", "bookworm", NULL,
	  "docker.io/library/debian:bookworm" },
	{ "library/debian", "docker.io", "library/debian", "latest", NULL,
	  "docker.io/library/debian:latest" },
	{ "docker.io/debian", "docker.io", "library/debian", "latest", NULL,
	  "docker.io/library/debian:latest" },
	{ "index.docker.io/debian:12", "docker.io", "library/debian", "12", NULL,
	  "docker.io/library/debian:12" },
	{ "docker.io/library/debian", "docker.io", "library/debian", "latest", NULL,
	  "docker.io/library/debian:latest" },
	{ "bitnami/redis:7.2", "docker.io", "bitnami/redis", "7.2", NULL,
	  "docker.io/bitnami/redis:7.2" },
	{ "quay.io/podman/stable", "quay.io", "podman/stable", "latest", NULL,
	  "quay.io/podman/stable:latest" },
	{ "ghcr.io/a/b/c/d:v1.0.0-rc.1", "ghcr.io", "a/b/c/d", "v1.0.0-rc.1", NULL,
	  "ghcr.io/a/b/c/d:v1.0.0-rc.1" },
	{ "localhost/foo", "localhost", "foo", "latest", NULL, "localhost/foo:latest" },
	{ "localhost:5000/foo/bar:t", "localhost:5000", "foo/bar", "t", NULL,
	  "localhost:5000/foo/bar:t" },
	{ "127.0.0.1:5000/x/y:t", "127.0.0.1:5000", "x/y", "t", NULL,
	  "127.0.0.1:5000/x/y:t" },
	{ "[::1]:5000/x", "[::1]:5000", "x", "latest", NULL, "[::1]:5000/x:latest" },
	{ "[fe80::1]/x:1", "[fe80::1]", "x", "1", NULL, "[fe80::1]/x:1" },
	{ "registry.example.com:443/team/app", "registry.example.com:443", "team/app", "latest",
	  NULL, "registry.example.com:443/team/app:latest" },
	{ "My-Registry.Example.com/app", "My-Registry.Example.com", "app", "latest", NULL,
	  "My-Registry.Example.com/app:latest" },
	{ "debian@" DG, "docker.io", "library/debian", NULL, DG, "docker.io/library/debian@" DG },
	{ "debian:12@" DG, "docker.io", "library/debian", "12", DG,
	  "docker.io/library/debian:12@" DG },
	{ "localhost:5000/x@" DG, "localhost:5000", "x", NULL, DG, "localhost:5000/x@" DG },
	{ "a.b/c-d_e.f__g--h:T_a.g-1", "a.b", "c-d_e.f__g--h", "T_a.g-1", NULL,
	  "a.b/c-d_e.f__g--h:T_a.g-1" },
	{ "x:_tag", "docker.io", "library/x", "_tag", NULL, "docker.io/library/x:_tag" },
	{ "localhost:5000", "docker.io", "library/localhost", "5000", NULL,
	  "docker.io/library/localhost:5000" },
	{ "foo/bar/baz", "docker.io", "foo/bar/baz", "latest", NULL,
	  "docker.io/foo/bar/baz:latest" },
	{ "0/1", "docker.io", "0/1", "latest", NULL, "docker.io/0/1:latest" },
	/* IPv6 hosts with tag, digest, both */
	{ "[2001:db8::1]:5000/ns/x:1@" DG, "[2001:db8::1]:5000", "ns/x", "1", DG,
	  "[2001:db8::1]:5000/ns/x:1@" DG },
	{ "[::1]/x@" DG, "[::1]", "x", NULL, DG, "[::1]/x@" DG },
	{ "[::ffff:127.0.0.1]:5000/x", "[::ffff:127.0.0.1]:5000", "x", "latest", NULL,
	  "[::ffff:127.0.0.1]:5000/x:latest" },
	/* tag + digest on a registry with a port and a deep path */
	{ "r.example:443/a/b/c:v2@" DG, "r.example:443", "a/b/c", "v2", DG,
	  "r.example:443/a/b/c:v2@" DG },
};

struct bad {
	const char *in;
	const char *why; /* must appear in the message */
};

static const struct bad bads[] = {
	{ "", "empty reference" },
	{ "Foo", "repository name must be lowercase" },
	{ "docker.io/Library/debian", "repository name must be lowercase" },
	{ "foo:", "empty tag" },
	{ ":tag", "repository name is empty" },
	{ "foo:-tag", "tag must start" },
	{ "foo:.tag", "tag must start" },
	{ "foo:ta+g", "invalid character '+' in tag" },
	{ "foo/", "ends with '/'" },
	{ "/foo", "empty path component" },
	{ "foo//bar", "empty path component" },
	{ "example.com/", "repository name is empty" },
	{ "foo..bar", "invalid repository name component \"foo..bar\"" },
	{ "foo___bar", "invalid repository name component" },
	{ "-foo", "invalid repository name component" },
	{ "foo-", "invalid repository name component" },
	{ "foo.", "invalid repository name component" },
	{ "fo o", "invalid repository name component" },
	{ "foo@sha256:abc", "invalid sha256 digest" },
	{ "foo@sha256:" D64 "0", "invalid sha256 digest" },
	{ "foo@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
	  "invalid sha256 digest" },
	{ "foo@sha512:" D64 D64, "unsupported digest algorithm \"sha512\"" },
	{ "foo@" D64, "digest must look like" },
	{ "foo@", "digest must look like" },
	{ D64, "image ID" },
	{ "localhost:0/x", "invalid registry port" },
	{ "localhost:65536/x", "invalid registry port" },
	{ "localhost:50a/x", "invalid registry port" },
	{ "host.:5000/x", "invalid registry host" },
	{ "-host.com/x", "invalid registry host" },
	{ "ho_st.com/x", "invalid registry host" },
	{ "[::1/x", "invalid IPv6 registry address" },
	{ "[zz::1]:5000/x", "invalid IPv6 registry address" },
	{ "[::1]x/y", "invalid registry host" },
	{ "a:b:c/x", "invalid registry port" },
	{ "foo\n", "invalid repository name component" },
	{ "[]:5000/x", "invalid IPv6 registry address" },
	{ "[::1]:/x", "invalid registry port" },
	{ "foo:tag@", "digest must look like" },
	{ "foo@" DG ":tag", "invalid sha256 digest" },
	{ "foo:t@g@" DG, "unsupported digest algorithm" },
};

static void check_good(const struct good *g)
{
	struct sf_error err = { 0 };
	struct sf_ref ref;
	char *s;
	int ret = sf_ref_parse(g->in, &ref, &err);

	if (ret != 0)
		fail_msg("\"%s\" failed: %s", g->in, err.msg);
	assert_string_equal(ref.registry, g->registry);
	assert_string_equal(ref.repository, g->repository);
	if (g->tag)
		assert_string_equal(ref.tag, g->tag);
	else
		assert_null(ref.tag);
	if (g->digest)
		assert_string_equal(ref.digest, g->digest);
	else
		assert_null(ref.digest);
	s = sf_ref_format(&ref);
	assert_string_equal(s, g->formatted);
	free(s);
	sf_ref_clear(&ref);
}

static void test_valid_refs(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(goods) / sizeof(goods[0]); i++)
		check_good(&goods[i]);
}

/* The normalised form parses back to itself. */
static void test_format_roundtrip(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
		struct sf_ref a, b;
		char *s;
		assert_int_equal(sf_ref_parse(goods[i].in, &a, NULL), 0);
		s = sf_ref_format(&a);
		assert_int_equal(sf_ref_parse(s, &b, NULL), 0);
		assert_string_equal(a.registry, b.registry);
		assert_string_equal(a.repository, b.repository);
		free(s);
		sf_ref_clear(&a);
		sf_ref_clear(&b);
	}
}

static void check_bad(const struct bad *b)
{
	struct sf_error err = { 0 };
	struct sf_ref ref;
	int ret = sf_ref_parse(b->in, &ref, &err);

	if (ret != -EINVAL)
		fail_msg("\"%s\" gave %d, want -EINVAL", b->in, ret);
	assert_int_equal(err.code, EINVAL);
	if (!strstr(err.msg, b->why))
		fail_msg("\"%s\": message \"%s\" lacks \"%s\"", b->in, err.msg, b->why);
	assert_null(strchr(err.msg, '\n'));
	assert_null(ref.registry);
	assert_null(ref.repository);
	assert_null(ref.tag);
	assert_null(ref.digest);
}

static void test_invalid_refs(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++)
		check_bad(&bads[i]);
}

static void test_message_quotes_ref(void **state)
{
	struct sf_error err = { 0 };
	struct sf_ref ref;

	(void)state;
	assert_int_equal(sf_ref_parse("Foo", &ref, &err), -EINVAL);
	assert_string_equal(err.msg, "invalid reference \"Foo\": repository name must be lowercase");
	assert_int_equal(sf_ref_parse(NULL, &ref, &err), -EINVAL);
	assert_int_equal(sf_ref_parse("x", &ref, NULL), 0); /* err may be NULL */
	sf_ref_clear(&ref);
	assert_int_equal(sf_ref_parse("X", &ref, NULL), -EINVAL);
}

static void test_length_limits(void **state)
{
	char name[400], tag[200];
	struct sf_error err = { 0 };
	struct sf_ref ref;

	(void)state;
	/* docker.io/library/ + 237 = 255: the longest name allowed */
	memset(name, 'a', 237);
	name[237] = '\0';
	assert_int_equal(sf_ref_parse(name, &ref, &err), 0);
	sf_ref_clear(&ref);
	name[237] = 'a';
	name[238] = '\0';
	assert_int_equal(sf_ref_parse(name, &ref, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "longer than 255"));

	memset(tag, 'a', 128);
	snprintf(name, sizeof(name), "x:%.128s", tag);
	assert_int_equal(sf_ref_parse(name, &ref, &err), 0);
	sf_ref_clear(&ref);
	snprintf(name, sizeof(name), "x:%.128sb", tag);
	assert_int_equal(sf_ref_parse(name, &ref, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "tag longer than 128"));
}

static void test_huge_input(void **state)
{
	size_t n = 100000;
	char *s = malloc(n + 1);
	struct sf_error err = { 0 };
	struct sf_ref ref;

	(void)state;
	memset(s, 'a', n);
	s[n] = '\0';
	assert_int_equal(sf_ref_parse(s, &ref, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "longer than"));
	assert_true(strlen(err.msg) < 600); /* the quote is bounded */
	free(s);
}

static void test_nonprintable_quoted_safely(void **state)
{
	struct sf_error err = { 0 };
	struct sf_ref ref;

	(void)state;
	assert_int_equal(sf_ref_parse("fo\x1b[31mo", &ref, &err), -EINVAL);
	assert_null(strchr(err.msg, '\x1b'));
}

static char *api_host(const char *s)
{
	struct sf_ref ref;
	char *h;

	assert_int_equal(sf_ref_parse(s, &ref, NULL), 0);
	h = sf_ref_api_host(&ref);
	sf_ref_clear(&ref);
	return h;
}

static void test_api_host(void **state)
{
	char *h;

	(void)state;
	h = api_host("debian");
	assert_string_equal(h, "registry-1.docker.io");
	free(h);
	h = api_host("index.docker.io/x/y");
	assert_string_equal(h, "registry-1.docker.io");
	free(h);
	h = api_host("quay.io/x/y");
	assert_string_equal(h, "quay.io");
	free(h);
	h = api_host("[::1]:5000/x");
	assert_string_equal(h, "[::1]:5000");
	free(h);
}

static bool loopback(const char *s)
{
	struct sf_ref ref;
	bool r;

	assert_int_equal(sf_ref_parse(s, &ref, NULL), 0);
	r = sf_ref_is_loopback(&ref);
	sf_ref_clear(&ref);
	return r;
}

static void test_loopback(void **state)
{
	(void)state;
	assert_true(loopback("localhost/x"));
	assert_true(loopback("localhost:5000/x"));
	assert_true(loopback("127.0.0.1/x"));
	assert_true(loopback("127.0.0.1:5055/x"));
	assert_true(loopback("127.1.2.3:1/x"));
	assert_true(loopback("[::1]/x"));
	assert_true(loopback("[::1]:5000/x"));
	assert_true(loopback("[0:0:0:0:0:0:0:1]:5000/x"));
	assert_true(loopback("[::ffff:127.0.0.1]:5000/x"));
	assert_false(loopback("debian"));
	assert_false(loopback("128.0.0.1/x"));
	assert_false(loopback("10.127.0.1:5000/x"));
	assert_false(loopback("127.0.0.1.example.com/x"));
	assert_false(loopback("localhost.example.com/x"));
	assert_false(loopback("[::2]:5000/x"));
	assert_false(loopback("quay.io/x"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_refs),
		cmocka_unit_test(test_format_roundtrip),
		cmocka_unit_test(test_invalid_refs),
		cmocka_unit_test(test_message_quotes_ref),
		cmocka_unit_test(test_length_limits),
		cmocka_unit_test(test_huge_input),
		cmocka_unit_test(test_nonprintable_quoted_safely),
		cmocka_unit_test(test_api_host),
		cmocka_unit_test(test_loopback),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
