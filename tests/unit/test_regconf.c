/* test_regconf.c - registries.conf (the TOML subset, matching, location
 * rewriting), certs.d lookup, and the registry client's token lifetime and
 * header redaction.
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
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "regconf.h"
#include "registry-private.h"

static const char *conf =
	"# a typical file\n"
	"unqualified-search-registries = [\"docker.io\", 'quay.io',\n"
	"    \"x.io\",   # comment in an array\n"
	"]\n"
	"short-name-mode = \"enforcing\"\n"
	"\n"
	"[aliases]\n"
	"\"fedora\" = \"registry.fedoraproject.org/fedora\"\n"
	"\n"
	"[[registry]]\n"
	"prefix = \"docker.io\"\n"
	"location = \"docker.io\"\n"
	"\n"
	"[[registry.mirror]]\n"
	"location = \"mirror.local:5000/hub\"\n"
	"insecure = true\n"
	"\n"
	"[[registry.mirror]]\n"
	"location = 'second.local'\n"
	"pull-from-mirror = \"digest-only\"\n"
	"\n"
	"[[registry]]\n"
	"prefix = \"docker.io/team\"\n"
	"location = \"harbor.corp/proxy-team\"\n"
	"blocked = false\n"
	"\n"
	"[[registry]]\n"
	"location = \"quay.io\"\n"
	"mirror-by-digest-only = true\n"
	"[[registry.mirror]]\n"
	"location = \"q\\u002emirror\"   # escaped dot\n"
	"\n"
	"[[registry]]\n"
	"prefix = \"*.corp.example\"\n"
	"location = \"\"\n"
	"blocked = true\n";

static void test_parse(void **state)
{
	struct sf_regconf c;
	struct sf_error e = { 0 };

	(void)state;
	if (sf_regconf_parse(conf, "t.conf", &c, &e) < 0)
		fail_msg("%s", e.msg);
	assert_int_equal(c.n, 4);
	assert_string_equal(c.regs[0].prefix, "docker.io");
	assert_int_equal(c.regs[0].n_mirrors, 2);
	assert_string_equal(c.regs[0].mirrors[0].location, "mirror.local:5000/hub");
	assert_true(c.regs[0].mirrors[0].insecure);
	assert_string_equal(c.regs[0].mirrors[1].location, "second.local");
	assert_string_equal(c.regs[0].mirrors[1].pull_from, "digest-only");
	assert_string_equal(c.regs[1].location, "harbor.corp/proxy-team");
	assert_string_equal(c.regs[2].prefix, "quay.io"); /* defaults to location */
	assert_true(c.regs[2].mirror_by_digest_only);
	assert_string_equal(c.regs[2].mirrors[0].location, "q.mirror");
	assert_true(c.regs[3].blocked);
	sf_regconf_clear(&c);
}

static void test_match(void **state)
{
	struct sf_regconf c;
	const struct sf_regconf_entry *e;
	char *host, *repo;

	(void)state;
	assert_int_equal(sf_regconf_parse(conf, "t.conf", &c, NULL), 0);
	e = sf_regconf_find(&c, "docker.io", "library/debian");
	assert_ptr_equal(e, &c.regs[0]);
	assert_int_equal(sf_regconf_rewrite(e, e->mirrors[0].location, "docker.io",
					    "library/debian", &host, &repo, NULL), 0);
	assert_string_equal(host, "mirror.local:5000");
	assert_string_equal(repo, "hub/library/debian");
	free(host);
	free(repo);
	/* the longest prefix wins, on a path boundary */
	e = sf_regconf_find(&c, "docker.io", "team/app");
	assert_ptr_equal(e, &c.regs[1]);
	assert_int_equal(sf_regconf_rewrite(e, e->location, "docker.io", "team/app", &host,
					    &repo, NULL), 0);
	assert_string_equal(host, "harbor.corp");
	assert_string_equal(repo, "proxy-team/app");
	free(host);
	free(repo);
	assert_ptr_equal(sf_regconf_find(&c, "docker.io", "teamwork/app"), &c.regs[0]);
	/* wildcard hosts */
	assert_ptr_equal(sf_regconf_find(&c, "a.b.corp.example", "x"), &c.regs[3]);
	assert_null(sf_regconf_find(&c, "corp.example", "x"));
	assert_null(sf_regconf_find(&c, "docker.iox", "x"));
	assert_null(sf_regconf_find(&c, "ghcr.io", "x"));
	sf_regconf_clear(&c);
}

struct bad {
	const char *text, *why;
};

static const struct bad bads[] = {
	{ "[[registry]]\nlocation = \"x\" junk\n", "line 2: unexpected text" },
	{ "[[registry]]\nlocation = \"x\n", "line 2: unterminated string" },
	{ "[[registry]]\nlocation = x\n", "line 2: expected a string" },
	{ "[[registry]]\nlocation = true\n", "\"location\" must be a string" },
	{ "[[registry]]\ninsecure = \"yes\"\n", "\"insecure\" must be a boolean" },
	{ "[registry]\nlocation = \"x\"\n", "must be an array of tables" },
	{ "[[registry.mirror]]\nlocation = \"x\"\n", "before any [[registry]]" },
	{ "[[registry]]\nprefix = \"a\"\n[[registry.mirror]]\ninsecure = true\n",
	  "has no location" },
	{ "[[registry]]\nblocked = true\n", "neither prefix nor location" },
	{ "a = [1, 2\n", "expected ',' or ']'" },
	{ "a = {b = 1}\n", "inline tables" },
	{ "a = \"\"\"x\"\"\"\n", "multi-line strings" },
	{ "a = \"\\q\"\n", "unknown escape" },
	{ "a = \"\\ud800\"\n", "bad \\u escape" },
	{ "= 1\n", "expected a key" },
	{ "[[registry]\n", "unterminated table header" },
	{ "[[registry]]\nprefix = \"a\"\n[[registry.mirror]]\nlocation = \"m\"\n"
	  "pull-from-mirror = \"sometimes\"\n", "pull-from-mirror" },
	{ "a = [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]\n", "nested too deep" },
};

static void test_bad(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		struct sf_regconf c;
		struct sf_error e = { 0 };
		if (sf_regconf_parse(bads[i].text, "b.conf", &c, &e) != -EINVAL)
			fail_msg("#%zu parsed", i);
		if (!strstr(e.msg, bads[i].why) || strncmp(e.msg, "b.conf", 6))
			fail_msg("#%zu: \"%s\" lacks \"%s\"", i, e.msg, bads[i].why);
		assert_int_equal(c.n, 0);
	}
}

static void test_load(void **state)
{
	struct sf_regconf c;
	struct sf_error e = { 0 };

	(void)state;
	assert_int_equal(sf_regconf_load("/nonexistent/registries.conf", false, &c, &e), 0);
	assert_int_equal(c.n, 0);
	assert_int_equal(sf_regconf_load("/nonexistent/registries.conf", true, &c, &e), -ENOENT);
	assert_non_null(strstr(e.msg, "/nonexistent/registries.conf"));
}

static void put(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* a stand-in PEM certificate (only the BEGIN line is looked at) */
#define C(x) "-----BEGIN CERTIFICATE-----" x

static void test_certs(void **state)
{
	char dir[] = "/tmp/sf-test-certs.XXXXXX", p[512], roots[1100], cmd[600];
	struct sf_error e = { 0 };
	char *pem;
	size_t len;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(p, sizeof(p), "%s/a", dir);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/a/h:5000", dir);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/a/h:5000/2.crt", dir);
	put(p, C("TWO"));
	snprintf(p, sizeof(p), "%s/a/h:5000/1.crt", dir);
	put(p, C("ONE"));
	snprintf(p, sizeof(p), "%s/a/h:5000/client.key", dir); /* not a CA */
	put(p, "KEY");
	snprintf(p, sizeof(p), "%s/b", dir);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/b/h:5000", dir);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/b/h:5000/x.crt", dir);
	put(p, C("THREE"));
	snprintf(p, sizeof(p), "%s/extra.pem", dir);
	put(p, C("EXTRA"));
	snprintf(roots, sizeof(roots), "%s/none:%s/a:%s/b", dir, dir, dir);
	assert_int_equal(sf_certs_for_host("h:5000", roots, p, &pem, &len, &e), 0);
	assert_string_equal(pem, C("ONE") "\n" C("TWO") "\n" C("THREE") "\n" C("EXTRA") "\n");
	assert_int_equal(len, strlen(pem));
	free(pem);
	assert_int_equal(sf_certs_for_host("other:1", roots, NULL, &pem, &len, &e), 0);
	assert_null(pem);
	setenv("SOCI_FUSE_CERTS_DIRS", roots, 1);
	assert_int_equal(sf_certs_for_host("h:5000", NULL, NULL, &pem, &len, &e), 0);
	assert_string_equal(pem, C("ONE") "\n" C("TWO") "\n" C("THREE") "\n");
	free(pem);
	unsetenv("SOCI_FUSE_CERTS_DIRS");
	assert_int_equal(sf_certs_for_host("h:5000", roots, "/nonexistent.pem", &pem, &len, &e),
			 -ENOENT);
	assert_non_null(strstr(e.msg, "/nonexistent.pem"));
	/* --tls-ca without a certificate in it: an error naming the file
	 * (curl would only say "error importing CA certificate blob") */
	snprintf(p, sizeof(p), "%s/key.pem", dir);
	put(p, "-----BEGIN PRIVATE KEY-----");
	assert_int_equal(sf_certs_for_host("h:5000", roots, p, &pem, &len, &e), -EINVAL);
	assert_non_null(strstr(e.msg, p));
	/* ... but a certs.d *.crt without one is skipped, as podman does */
	snprintf(p, sizeof(p), "%s/a/h:5000/3-der.crt", dir);
	put(p, "\x30\x82");
	assert_int_equal(sf_certs_for_host("h:5000", roots, NULL, &pem, &len, &e), 0);
	assert_string_equal(pem, C("ONE") "\n" C("TWO") "\n" C("THREE") "\n");
	free(pem);
	assert_int_equal(sf_certs_for_host("../etc", roots, NULL, &pem, &len, &e), -EINVAL);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* Drop-ins in <path>.d override entries by prefix, in name order. */
static void test_dropins(void **state)
{
	char dir[] = "/tmp/sf-test-dropin.XXXXXX", main_conf[300], p[400], cmd[300];
	struct sf_regconf c;
	struct sf_error e = { 0 };

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(main_conf, sizeof(main_conf), "%s/registries.conf", dir);
	put(main_conf, "[[registry]]\nlocation = \"docker.io\"\n[[registry.mirror]]\n"
		       "location = \"old.mirror\"\n[[registry]]\nlocation = \"quay.io\"\n");
	assert_int_equal(sf_regconf_load_all(main_conf, true, &c, &e), 0); /* no .d dir */
	assert_int_equal(c.n, 2);
	sf_regconf_clear(&c);
	snprintf(p, sizeof(p), "%s/registries.conf.d", dir);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/registries.conf.d/20-add.conf", dir);
	put(p, "[[registry]]\nlocation = \"ghcr.io\"\n");
	snprintf(p, sizeof(p), "%s/registries.conf.d/10-hub.conf", dir);
	put(p, "[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n"
	       "[[registry.mirror]]\nlocation = \"new.mirror\"\n");
	snprintf(p, sizeof(p), "%s/registries.conf.d/notes.txt", dir);
	put(p, "not toml at all [[[");
	if (sf_regconf_load_all(main_conf, true, &c, &e) < 0)
		fail_msg("%s", e.msg);
	assert_int_equal(c.n, 3);
	assert_string_equal(c.regs[0].prefix, "docker.io");
	assert_int_equal(c.regs[0].n_mirrors, 1);
	assert_string_equal(c.regs[0].mirrors[0].location, "new.mirror");
	assert_string_equal(c.regs[1].prefix, "quay.io");
	assert_string_equal(c.regs[2].prefix, "ghcr.io");
	sf_regconf_clear(&c);
	snprintf(p, sizeof(p), "%s/registries.conf.d/30-bad.conf", dir);
	put(p, "[[registry]]\nlocation = 1\n");
	assert_int_equal(sf_regconf_load_all(main_conf, true, &c, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "30-bad.conf: line 2"));
	assert_int_equal(c.n, 0);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static void test_token_lifetime(void **state)
{
	char body[200], when[40];
	time_t now = time(NULL) - 20;

	(void)state;
	assert_int_equal(sf_reg_token_lifetime_ms("{\"token\":\"t\"}", 13), 60000);
	snprintf(body, sizeof(body), "{\"token\":\"t\",\"expires_in\":300}");
	assert_int_equal(sf_reg_token_lifetime_ms(body, strlen(body)), 300000);
	snprintf(body, sizeof(body), "{\"expires_in\":99999999}");
	assert_int_equal(sf_reg_token_lifetime_ms(body, strlen(body)), 86400000);
	snprintf(body, sizeof(body), "{\"expires_in\":120.0}");
	assert_int_equal(sf_reg_token_lifetime_ms(body, strlen(body)), 120000);
	snprintf(body, sizeof(body), "{\"expires_in\":1e300}");
	assert_int_equal(sf_reg_token_lifetime_ms(body, strlen(body)), 86400000);
	snprintf(body, sizeof(body), "{\"expires_in\":\"300\"}");
	assert_int_equal(sf_reg_token_lifetime_ms(body, strlen(body)), 60000);
	snprintf(body, sizeof(body), "{\"expires_in\":-5}");
	assert_int_equal(sf_reg_token_lifetime_ms(body, strlen(body)), 60000);
	/* issued 20 s ago: at most 280 s left (however slow this machine is) */
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S.123Z", gmtime(&now));
	snprintf(body, sizeof(body), "{\"expires_in\":300,\"issued_at\":\"%s\"}", when);
	assert_in_range(sf_reg_token_lifetime_ms(body, strlen(body)), 200000, 281000);
	/* implausible issued_at (clock skew, in the future, garbage): ignored */
	snprintf(body, sizeof(body), "{\"expires_in\":300,\"issued_at\":\"2001-01-01T00:00:00Z\"}");
	assert_int_equal(sf_reg_token_lifetime_ms(body, strlen(body)), 300000);
	snprintf(body, sizeof(body), "{\"expires_in\":300,\"issued_at\":\"2999-01-01T00:00:00Z\"}");
	assert_int_equal(sf_reg_token_lifetime_ms(body, strlen(body)), 300000);
	snprintf(body, sizeof(body), "{\"expires_in\":300,\"issued_at\":\"yesterday\"}");
	assert_int_equal(sf_reg_token_lifetime_ms(body, strlen(body)), 300000);
	assert_int_equal(sf_reg_token_lifetime_ms("not json", 8), 60000);
}

static void test_redact(void **state)
{
	char out[64];

	(void)state;
	sf_reg_redact("Authorization: Bearer abc.def.ghi", out, sizeof(out));
	assert_string_equal(out, "Authorization: Bearer <redacted>");
	sf_reg_redact("authorization: Basic YWxpY2U6cHc=", out, sizeof(out));
	assert_string_equal(out, "authorization: Basic <redacted>");
	sf_reg_redact("Authorization: secret", out, sizeof(out));
	assert_string_equal(out, "Authorization: <redacted>");
	sf_reg_redact("Accept: x", out, sizeof(out));
	assert_string_equal(out, "Accept: x");
}

/* A registry handle holding a password makes the process non-dumpable and
 * sets its core size limit to 0 (no core file with the password in it, also
 * with fs.suid_dumpable=2); one without credentials does neither. */
static void test_no_core_dump(void **state)
{
	char authfile[] = "/tmp/sf-test-auth.XXXXXX";
	int fd = mkstemp(authfile);
	struct sf_registry_opts o = { .registries_conf = "/dev/null", .certs_dirs = "/nonexistent",
				      .authfile = authfile };
	struct sf_error e = { 0 };
	struct sf_registry *r;
	struct sf_ref ref;
	struct rlimit core = { 1, 1 };
	int asan = 0;

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "{}", 2), 2);
	close(fd);
#if defined(__SANITIZE_ADDRESS__)
	asan = 1;
#endif
	assert_int_equal(sf_ref_parse("127.0.0.1:1/x:y", &ref, &e), 0);
	/* a core limit above 0 (when the hard limit allows) for the handle to lower */
	assert_int_equal(getrlimit(RLIMIT_CORE, &core), 0);
	core.rlim_cur = core.rlim_max;
	assert_int_equal(setrlimit(RLIMIT_CORE, &core), 0);
	assert_int_equal(sf_registry_new(&ref, &o, &r, &e), 0);
	assert_int_equal(prctl(PR_GET_DUMPABLE), 1);
	assert_int_equal(getrlimit(RLIMIT_CORE, &core), 0);
	assert_int_equal(core.rlim_cur, core.rlim_max); /* untouched without a password */
	sf_registry_free(r);
	o.creds = "user:password";
	if (sf_registry_new(&ref, &o, &r, &e) < 0)
		fail_msg("%s", e.msg);
	assert_int_equal(prctl(PR_GET_DUMPABLE), asan ? 1 : 0);
	assert_int_equal(getrlimit(RLIMIT_CORE, &core), 0);
	assert_int_equal(core.rlim_cur, 0);
	assert_int_equal(core.rlim_max, 0);
	sf_registry_free(r);
	sf_ref_clear(&ref);
	unlink(authfile);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),	       cmocka_unit_test(test_match),
		cmocka_unit_test(test_bad),	       cmocka_unit_test(test_load),
		cmocka_unit_test(test_certs),	       cmocka_unit_test(test_token_lifetime),
		cmocka_unit_test(test_redact),	       cmocka_unit_test(test_no_core_dump),
		cmocka_unit_test(test_dropins),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
