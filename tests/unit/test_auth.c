/* test_auth.c - credential lookup: auth files, their precedence and key
 * forms, and credential helpers (fake helper scripts on PATH).
 *
 * Every test runs in a fresh temp dir that is HOME, with XDG_*, DOCKER_CONFIG
 * and REGISTRY_AUTH_FILE pointing into it or unset, so the machine's own
 * files are never read.
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
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "error.h"

static char dir[256];
static char *saved_path;

static void put(const char *rel, const char *text, int mode)
{
	char p[512], *slash;
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	for (slash = strchr(p + strlen(dir) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		mkdir(p, 0700);
		*slash = '/';
	}
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	chmod(p, (mode_t)mode);
}

static int setup(void **state)
{
	char path[1024];

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/sf-test-auth.XXXXXX");
	assert_non_null(mkdtemp(dir));
	setenv("HOME", dir, 1);
	unsetenv("XDG_RUNTIME_DIR");
	unsetenv("XDG_CONFIG_HOME");
	unsetenv("DOCKER_CONFIG");
	unsetenv("REGISTRY_AUTH_FILE");
	if (!saved_path)
		saved_path = strdup(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	snprintf(path, sizeof(path), "%s/bin:%s", dir, saved_path);
	setenv("PATH", path, 1);
	return 0;
}

static int teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

/* base64("alice:s3cret") = YWxpY2U6czNjcmV0, base64("bob:pw") = Ym9iOnB3 */
#define ALICE "YWxpY2U6czNjcmV0"
#define BOB "Ym9iOnB3"

static void lookup(const struct sf_auth_opts *o, const char *reg, const char *repo,
		   struct sf_creds *c)
{
	struct sf_error e = { 0 };
	sf_ret r = sf_auth_lookup(o, reg, repo, c, &e);

	if (r < 0)
		fail_msg("lookup %s/%s: %s", reg, repo, e.msg);
}

static void expect_user(const struct sf_creds *c, const char *user, const char *pass)
{
	assert_non_null(c->username);
	assert_string_equal(c->username, user);
	assert_string_equal(c->password, pass);
}

static void test_decode(void **state)
{
	char *u, *p;
	struct sf_error e = { 0 };

	(void)state;
	assert_int_equal(sf_auth_decode_basic(ALICE, &u, &p, &e), 0);
	assert_string_equal(u, "alice");
	assert_string_equal(p, "s3cret");
	free(u);
	free(p);
	/* "a:b:c" -> the password keeps its colons */
	assert_int_equal(sf_auth_decode_basic("YTpiOmM=", &u, &p, &e), 0);
	assert_string_equal(u, "a");
	assert_string_equal(p, "b:c");
	free(u);
	free(p);
	assert_int_equal(sf_auth_decode_basic("bm9jb2xvbg==", &u, &p, &e), -EINVAL); /* "nocolon" */
	assert_non_null(strstr(e.msg, "user:password"));
	assert_int_equal(sf_auth_decode_basic("!!!!", &u, &p, &e), -EINVAL);
	assert_int_equal(sf_auth_decode_basic("abc", &u, &p, &e), -EINVAL);
	assert_int_equal(sf_auth_decode_basic("", &u, &p, &e), -EINVAL);
	/* found by fuzz_regconf: all padding wrote before the buffer */
	assert_int_equal(sf_auth_decode_basic("====", &u, &p, &e), -EINVAL);
	assert_int_equal(sf_auth_decode_basic("YQ==YQ==", &u, &p, &e), -EINVAL);
	assert_int_equal(sf_auth_decode_basic("YTpi===", &u, &p, &e), -EINVAL);
	assert_int_equal(sf_auth_decode_basic("YT\npYg==", &u, &p, &e), -EINVAL);
}

static void test_keys(void **state)
{
	struct sf_auth_opts o = { 0 };
	struct sf_creds c;
	char file[300];

	(void)state;
	snprintf(file, sizeof(file), "%s/auth.json", dir);
	o.authfile = file;
	put("auth.json",
	    "{\"auths\": {"
	    " \"reg.example:5000\": {\"auth\": \"" ALICE "\"},"
	    " \"reg.example:5000/team\": {\"auth\": \"" BOB "\"},"
	    " \"https://index.docker.io/v1/\": {\"auth\": \"" BOB "\"},"
	    " \"quay.io\": {\"identitytoken\": \"idtok\"},"
	    " \"ns.example/team\": {\"auth\": \"" BOB "\"},"
	    " \"http://url.example:5000/v2/\": {\"auth\": \"" ALICE "\"}"
	    "}}",
	    0600);
	lookup(&o, "reg.example:5000", "other/app", &c);
	expect_user(&c, "alice", "s3cret");
	assert_string_equal(c.source, file);
	sf_creds_clear(&c);
	/* the more specific key wins */
	lookup(&o, "reg.example:5000", "team/app", &c);
	expect_user(&c, "bob", "pw");
	sf_creds_clear(&c);
	/* a key is a path prefix, not a string prefix */
	lookup(&o, "reg.example:5000", "teamwork/app", &c);
	expect_user(&c, "alice", "s3cret");
	sf_creds_clear(&c);
	/* docker's legacy key for docker.io */
	lookup(&o, "docker.io", "library/debian", &c);
	expect_user(&c, "bob", "pw");
	sf_creds_clear(&c);
	lookup(&o, "quay.io", "x/y", &c);
	assert_null(c.username);
	assert_string_equal(c.identity_token, "idtok");
	sf_creds_clear(&c);
	/* a namespace key matches that namespace only: bob's team login is
	 * not sent for another repository of the registry */
	lookup(&o, "ns.example", "team/app", &c);
	expect_user(&c, "bob", "pw");
	sf_creds_clear(&c);
	lookup(&o, "ns.example", "other/app", &c);
	assert_false(sf_creds_present(&c));
	sf_creds_clear(&c);
	/* a URL-form key (docker login of old) is its host */
	lookup(&o, "url.example:5000", "a/b", &c);
	expect_user(&c, "alice", "s3cret");
	sf_creds_clear(&c);
	/* another port is another registry */
	lookup(&o, "reg.example:5001", "team/app", &c);
	assert_false(sf_creds_present(&c));
	sf_creds_clear(&c);
}

static void test_precedence(void **state)
{
	struct sf_auth_opts o = { 0 };
	struct sf_creds c;
	char p[300];

	(void)state;
	put(".docker/config.json", "{\"auths\": {\"r.io\": {\"auth\": \"" BOB "\"}}}", 0600);
	lookup(&o, "r.io", "a", &c);
	expect_user(&c, "bob", "pw");
	sf_creds_clear(&c);
	/* $XDG_RUNTIME_DIR/containers/auth.json comes before docker's file */
	put("run/containers/auth.json", "{\"auths\": {\"r.io\": {\"auth\": \"" ALICE "\"}}}",
	    0600);
	snprintf(p, sizeof(p), "%s/run", dir);
	setenv("XDG_RUNTIME_DIR", p, 1);
	lookup(&o, "r.io", "a", &c);
	expect_user(&c, "alice", "s3cret");
	sf_creds_clear(&c);
	/* ... but a file that lacks the host passes on to the next one */
	lookup(&o, "docker.io", "library/x", &c);
	assert_false(sf_creds_present(&c));
	put(".docker/config.json", "{\"auths\": {\"r.io\": {\"auth\": \"" BOB "\"},"
				   " \"other.io\": {\"auth\": \"" BOB "\"}}}", 0600);
	lookup(&o, "other.io", "a", &c);
	expect_user(&c, "bob", "pw");
	sf_creds_clear(&c);
	/* $REGISTRY_AUTH_FILE: only that file */
	put("env.json", "{\"auths\": {}}", 0600);
	snprintf(p, sizeof(p), "%s/env.json", dir);
	setenv("REGISTRY_AUTH_FILE", p, 1);
	lookup(&o, "r.io", "a", &c);
	assert_false(sf_creds_present(&c));
	/* --authfile over $REGISTRY_AUTH_FILE */
	put("flag.json", "{\"auths\": {\"r.io\": {\"auth\": \"" BOB "\"}}}", 0600);
	snprintf(p, sizeof(p), "%s/flag.json", dir);
	o.authfile = p;
	lookup(&o, "r.io", "a", &c);
	expect_user(&c, "bob", "pw");
	sf_creds_clear(&c);
	/* --creds over everything */
	o.creds = "carol:pa:ss";
	lookup(&o, "r.io", "a", &c);
	expect_user(&c, "carol", "pa:ss");
	sf_creds_clear(&c);
	/* a legacy ~/.dockercfg (no "auths" level) is the last resort */
	unsetenv("REGISTRY_AUTH_FILE");
	o.authfile = NULL;
	o.creds = NULL;
	put(".dockercfg", "{\"legacy.io\": {\"auth\": \"" ALICE "\"}}", 0600);
	lookup(&o, "legacy.io", "a", &c);
	expect_user(&c, "alice", "s3cret");
	sf_creds_clear(&c);
}

static void test_bad_files(void **state)
{
	struct sf_auth_opts o = { 0 };
	struct sf_creds c;
	struct sf_error e = { 0 };
	char file[300];

	(void)state;
	snprintf(file, sizeof(file), "%s/auth.json", dir);
	o.authfile = file;
	/* a missing --authfile is an error (as in podman); $REGISTRY_AUTH_FILE is not */
	assert_int_equal(sf_auth_lookup(&o, "r.io", "a", &c, &e), -ENOENT);
	assert_non_null(strstr(e.msg, file));
	setenv("REGISTRY_AUTH_FILE", file, 1);
	o.authfile = NULL;
	assert_int_equal(sf_auth_lookup(&o, "r.io", "a", &c, &e), 0);
	assert_false(sf_creds_present(&c));
	o.authfile = file;
	put("auth.json", "{\"auths\": {\"r.io\": {\"auth\": \"bm9jb2xvbg==\"}}", 0600);
	assert_true(sf_auth_lookup(&o, "r.io", "a", &c, &e) < 0);
	assert_non_null(strstr(e.msg, file));
	put("auth.json", "{\"auths\": {\"r.io\": {\"auth\": \"bm9jb2xvbg==\"}}}", 0600);
	assert_int_equal(sf_auth_lookup(&o, "r.io", "a", &c, &e), -EINVAL);
	assert_non_null(strstr(e.msg, file));
	assert_non_null(strstr(e.msg, "r.io"));
	assert_null(strstr(e.msg, "bm9jb2xvbg"));
	assert_false(sf_creds_present(&c));
	put("auth.json", "[1]", 0600);
	assert_int_equal(sf_auth_lookup(&o, "r.io", "a", &c, &e), -EINVAL);
	o.creds = "nocolon";
	assert_int_equal(sf_auth_lookup(&o, "r.io", "a", &c, &e), -EINVAL);
}

/* A helper that answers per host: the protocol's three outcomes. */
#define HELPER                                                                              \
	"#!/bin/sh\n"                                                                       \
	"[ \"$1\" = get ] || exit 3\n"                                                      \
	"read -r host\n"                                                                    \
	"case $host in\n"                                                                   \
	"r.io) echo '{\"ServerURL\":\"r.io\",\"Username\":\"hlp\",\"Secret\":\"hs\"}' ;;\n" \
	"tok.io) echo '{\"Username\":\"<token>\",\"Secret\":\"refresh\"}' ;;\n"            \
	"https://index.docker.io/v1/) echo '{\"Username\":\"dh\",\"Secret\":\"dp\"}' ;;\n" \
	"broken.io) echo 'no json' ;;\n"                                                    \
	"fail.io) echo 'keychain locked' >&2; exit 1 ;;\n"                                 \
	"slow.io) exec sleep 600 ;;\n"                                                      \
	"mute.io) echo '{\"Username\":\"u\",\"Secret\":\"s\"}'; exec sleep 5 >&- ;;\n"      \
	"*) echo 'credentials not found in native keychain'; exit 1 ;;\n"                   \
	"esac\n"

static void test_helpers(void **state)
{
	struct sf_auth_opts o = { 0 };
	struct sf_creds c;
	struct sf_error e = { 0 };
	char file[300];

	(void)state;
	snprintf(file, sizeof(file), "%s/auth.json", dir);
	o.authfile = file;
	put("bin/docker-credential-fake", HELPER, 0755);
	put("auth.json",
	    "{\"credHelpers\": {\"r.io\": \"fake\", \"tok.io\": \"fake\", \"none.io\": \"fake\","
	    " \"broken.io\": \"fake\", \"fail.io\": \"fake\", \"gone.io\": \"absent\","
	    " \"bad.io\": \"../x\"},"
	    " \"auths\": {\"none.io\": {\"auth\": \"" ALICE "\"}, \"x.io\": {\"auth\": \"" BOB "\"}},"
	    " \"credsStore\": \"fake\"}",
	    0600);
	lookup(&o, "r.io", "a", &c);
	expect_user(&c, "hlp", "hs");
	assert_string_equal(c.source, "docker-credential-fake");
	sf_creds_clear(&c);
	lookup(&o, "tok.io", "a", &c);
	assert_null(c.username);
	assert_string_equal(c.identity_token, "refresh");
	sf_creds_clear(&c);
	/* credHelpers decides alone: "not found" there means none, auths unread */
	lookup(&o, "none.io", "a", &c);
	assert_false(sf_creds_present(&c));
	/* auths before credsStore */
	lookup(&o, "x.io", "a", &c);
	expect_user(&c, "bob", "pw");
	sf_creds_clear(&c);
	/* credsStore for everything else; docker.io asked as docker's index URL */
	lookup(&o, "docker.io", "library/debian", &c);
	expect_user(&c, "dh", "dp");
	sf_creds_clear(&c);
	lookup(&o, "unknown.io", "a", &c);
	assert_false(sf_creds_present(&c));
	assert_int_equal(sf_auth_lookup(&o, "broken.io", "a", &c, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "docker-credential-fake"));
	assert_int_equal(sf_auth_lookup(&o, "fail.io", "a", &c, &e), -EACCES);
	assert_non_null(strstr(e.msg, "fail.io"));
	assert_int_equal(sf_auth_lookup(&o, "gone.io", "a", &c, &e), -ENOENT);
	assert_non_null(strstr(e.msg, "docker-credential-absent"));
	assert_int_equal(sf_auth_lookup(&o, "bad.io", "a", &c, &e), -EINVAL);
	/* a helper that hangs is killed at the timeout */
	put("auth.json", "{\"credsStore\": \"fake\"}", 0600);
	o.helper_timeout_ms = 300;
	assert_int_equal(sf_auth_lookup(&o, "slow.io", "a", &c, &e), -ETIMEDOUT);
	assert_non_null(strstr(e.msg, "did not answer"));
	assert_false(sf_creds_present(&c));
	/* one that answers, closes its stdout and does not exit: the timeout
	 * covers the wait for its exit too (it is killed, not waited for 5 s) */
	assert_int_equal(sf_auth_lookup(&o, "mute.io", "a", &c, &e), -ETIMEDOUT);
	assert_non_null(strstr(e.msg, "did not exit"));
	assert_false(sf_creds_present(&c));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_decode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_precedence, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_helpers, setup, teardown),
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);

	free(saved_path);
	return r;
}
