/* test_manifest.c - registry JSON documents: manifests, indexes and the
 * platform choice, configs, WWW-Authenticate, token and error bodies.
 *
 * Documents are small literals shaped like what registries really send
 * (Docker Hub, distribution, buildx indexes with attestation entries), plus
 * hostile ones: wrong JSON types at every field, ambiguous documents, more
 * layers than allowed, oversized and deeply nested input.  Every rejection
 * must be a negative errno with a one-line message, never a crash.
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
#include "manifest.h"

#define H1 "1111111111111111111111111111111111111111111111111111111111111111"
#define H2 "2222222222222222222222222222222222222222222222222222222222222222"
#define H3 "3333333333333333333333333333333333333333333333333333333333333333"
#define H4 "4444444444444444444444444444444444444444444444444444444444444444"
#define H5 "5555555555555555555555555555555555555555555555555555555555555555"
#define H6 "6666666666666666666666666666666666666666666666666666666666666666"
#define H7 "7777777777777777777777777777777777777777777777777777777777777777"
#define D1 "sha256:" H1
#define D2 "sha256:" H2
#define D3 "sha256:" H3
#define D4 "sha256:" H4
#define D5 "sha256:" H5
#define D6 "sha256:" H6
#define D7 "sha256:" H7

#define MT_TGZ "application/vnd.oci.image.layer.v1.tar+gzip"
#define MT_DOCKER_TGZ "application/vnd.docker.image.rootfs.diff.tar.gzip"

static const char oci_manifest[] =
	"{\"schemaVersion\":2,"
	"\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
	"\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
	"\"digest\":\"" D1 "\",\"size\":1469},"
	"\"layers\":["
	"{\"mediaType\":\"" MT_TGZ "\",\"digest\":\"" D2 "\",\"size\":29126484},"
	"{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+zstd\",\"digest\":\"" D3
	"\",\"size\":0,\"annotations\":{\"a\":\"b\"}}],"
	"\"annotations\":{\"org.opencontainers.image.created\":\"2024-01-01T00:00:00Z\"}}";

static const char docker_manifest[] =
	"{\n   \"schemaVersion\": 2,\n"
	"   \"mediaType\": \"application/vnd.docker.distribution.manifest.v2+json\",\n"
	"   \"config\": {\n      \"mediaType\": \"application/vnd.docker.container.image.v1+json\",\n"
	"      \"size\": 7023,\n      \"digest\": \"" D1 "\"\n   },\n"
	"   \"layers\": [\n      {\n         \"mediaType\": \"" MT_DOCKER_TGZ "\",\n"
	"         \"size\": 32654,\n         \"digest\": \"" D2 "\"\n      }\n   ]\n}";

/* buildx-style: two images, each with an attestation manifest, listed
 * attestation first to make sure it is skipped. */
static const char buildx_index[] =
	"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
	"\"manifests\":["
	"{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D5
	"\",\"size\":566,\"platform\":{\"architecture\":\"unknown\",\"os\":\"unknown\"},"
	"\"annotations\":{\"vnd.docker.reference.type\":\"attestation-manifest\"}},"
	"{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D1
	"\",\"size\":100,\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}},"
	"{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D2
	"\",\"size\":101,\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\","
	"\"variant\":\"v8\"}},"
	"{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D3
	"\",\"size\":102,\"platform\":{\"architecture\":\"arm\",\"os\":\"linux\","
	"\"variant\":\"v6\"}},"
	"{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D4
	"\",\"size\":103,\"platform\":{\"architecture\":\"arm\",\"os\":\"linux\","
	"\"variant\":\"v7\"}},"
	"{\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"digest\":\"" D6
	"\",\"size\":104,\"platform\":{\"architecture\":\"s390x\",\"os\":\"linux\"}},"
	"{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D7
	"\",\"size\":105,\"platform\":{\"architecture\":\"amd64\",\"os\":\"windows\","
	"\"os.version\":\"10.0.17763.5329\"}}"
	"]}";

static const char docker_list[] =
	"{\"schemaVersion\":2,"
	"\"mediaType\":\"application/vnd.docker.distribution.manifest.list.v2+json\","
	"\"manifests\":["
	"{\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\"digest\":\"" D1
	"\",\"size\":529,\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\"}},"
	"{\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\"digest\":\"" D2
	"\",\"size\":529,\"platform\":{\"architecture\":\"ppc64le\",\"os\":\"linux\"}}]}";

static const char config_two[] =
	"{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":[\"PATH=/bin\"]},"
	"\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" D4 "\",\"" D5 "\"]},"
	"\"history\":[{\"created_by\":\"x\"}]}";

/* ---- helpers ---- */

static int parse(const char *ct, const char *doc, struct sf_manifest *m, struct sf_error *err)
{
	memset(err, 0, sizeof(*err));
	return sf_manifest_parse(ct, doc, strlen(doc), m, err);
}

/* doc must be refused with errno `code` and a message containing `why`. */
static void expect_manifest_error(const char *ct, const char *doc, int code, const char *why)
{
	struct sf_manifest m;
	struct sf_error err;
	int ret = parse(ct, doc, &m, &err);

	if (ret != -code)
		fail_msg("got %d (%s), want %d for %s", ret, err.msg, -code, doc);
	if (!strstr(err.msg, why))
		fail_msg("message \"%s\" lacks \"%s\"", err.msg, why);
	assert_null(strchr(err.msg, '\n'));
	assert_null(m.layers);
	assert_null(m.entries);
	assert_null(m.media_type);
}

static char *replace(const char *doc, const char *from, const char *to)
{
	const char *p = strstr(doc, from);
	size_t n = strlen(doc) - strlen(from) + strlen(to) + 1;
	char *s = malloc(n);

	assert_non_null(p);
	snprintf(s, n, "%.*s%s%s", (int)(p - doc), doc, to, p + strlen(from));
	return s;
}

static void expect_replaced_error(const char *doc, const char *from, const char *to, int code,
				  const char *why)
{
	char *s = replace(doc, from, to);

	expect_manifest_error(NULL, s, code, why);
	free(s);
}

/* ---- image manifests ---- */

static void test_oci_manifest(void **state)
{
	struct sf_manifest m;
	struct sf_error err;

	(void)state;
	assert_int_equal(parse(SF_MT_OCI_MANIFEST, oci_manifest, &m, &err), 0);
	assert_int_equal(m.kind, SF_KIND_IMAGE);
	assert_string_equal(m.media_type, SF_MT_OCI_MANIFEST);
	assert_string_equal(m.config.digest, D1);
	assert_string_equal(m.config.media_type, SF_MT_OCI_CONFIG);
	assert_int_equal(m.config.size, 1469);
	assert_int_equal(m.n_layers, 2);
	assert_string_equal(m.layers[0].digest, D2);
	assert_string_equal(m.layers[0].media_type, MT_TGZ);
	assert_int_equal(m.layers[0].size, 29126484);
	assert_string_equal(m.layers[1].digest, D3);
	assert_int_equal(m.layers[1].size, 0);
	assert_int_equal(m.n_entries, 0);
	sf_manifest_clear(&m);
	sf_manifest_clear(&m); /* idempotent */
}

static void test_docker_manifest(void **state)
{
	struct sf_manifest m;
	struct sf_error err;

	(void)state;
	assert_int_equal(parse(SF_MT_DOCKER_MANIFEST, docker_manifest, &m, &err), 0);
	assert_int_equal(m.kind, SF_KIND_IMAGE);
	assert_string_equal(m.media_type, SF_MT_DOCKER_MANIFEST);
	assert_string_equal(m.config.media_type, SF_MT_DOCKER_CONFIG);
	assert_int_equal(m.n_layers, 1);
	assert_string_equal(m.layers[0].media_type, MT_DOCKER_TGZ);
	assert_int_equal(m.layers[0].size, 32654);
	sf_manifest_clear(&m);
}

static void test_kind_detection(void **state)
{
	char *nomt = replace(oci_manifest,
			     "\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",", "");
	struct sf_manifest m;
	struct sf_error err;

	(void)state;
	/* no mediaType: from the Content-Type (with parameters, any case) */
	assert_int_equal(parse(" Application/VND.docker.distribution.manifest.v2+json; "
			       "charset=utf-8", nomt, &m, &err), 0);
	assert_string_equal(m.media_type, SF_MT_DOCKER_MANIFEST);
	sf_manifest_clear(&m);
	/* neither: from the structure, reported as OCI */
	assert_int_equal(parse("application/json", nomt, &m, &err), 0);
	assert_int_equal(m.kind, SF_KIND_IMAGE);
	assert_string_equal(m.media_type, SF_MT_OCI_MANIFEST);
	sf_manifest_clear(&m);
	assert_int_equal(parse(NULL, nomt, &m, &err), 0);
	sf_manifest_clear(&m);
	/* mediaType and Content-Type agree on kind but not format: fine */
	assert_int_equal(parse(SF_MT_DOCKER_MANIFEST, oci_manifest, &m, &err), 0);
	assert_string_equal(m.media_type, SF_MT_OCI_MANIFEST);
	sf_manifest_clear(&m);
	/* an index served without mediaType is recognised by "manifests" */
	free(nomt);
	nomt = replace(buildx_index, "\"mediaType\":\"application/vnd.oci.image.index.v1+json\",",
		       "");
	assert_int_equal(parse(NULL, nomt, &m, &err), 0);
	assert_int_equal(m.kind, SF_KIND_INDEX);
	assert_string_equal(m.media_type, SF_MT_OCI_INDEX);
	sf_manifest_clear(&m);
	free(nomt);
}

static void test_kind_conflicts(void **state)
{
	(void)state;
	expect_manifest_error(SF_MT_OCI_INDEX, oci_manifest, EBADMSG, "disagrees");
	expect_manifest_error(SF_MT_DOCKER_MANIFEST, buildx_index, EBADMSG, "disagrees");
	expect_replaced_error(oci_manifest, "\"annotations\":{\"org",
			      "\"manifests\":[],\"annotations\":{\"org", EBADMSG, "ambiguous");
	expect_replaced_error(buildx_index, "\"manifests\":[",
			      "\"layers\":[],\"manifests\":[", EBADMSG, "ambiguous");
	expect_replaced_error(oci_manifest, "application/vnd.oci.image.manifest.v1+json",
			      "application/vnd.oci.artifact.manifest.v1+json", ENOTSUP,
			      "unsupported media type");
	expect_manifest_error(NULL, "{\"schemaVersion\":2}", EBADMSG, "neither");
}

static void test_schema1_rejected(void **state)
{
	(void)state;
	expect_manifest_error(NULL,
			      "{\"schemaVersion\":1,\"name\":\"x\",\"tag\":\"y\",\"fsLayers\":[]}",
			      ENOTSUP, "schema 1");
	expect_manifest_error("application/vnd.docker.distribution.manifest.v1+prettyjws",
			      "{\"schemaVersion\":1}", ENOTSUP, "schema 1");
	expect_manifest_error(
		NULL, "{\"mediaType\":\"application/vnd.docker.distribution.manifest.v1+json\"}",
		ENOTSUP, "schema 1");
}

static void test_schema_version(void **state)
{
	(void)state;
	expect_replaced_error(oci_manifest, "\"schemaVersion\":2,", "", EBADMSG,
			      "schemaVersion: missing");
	expect_replaced_error(oci_manifest, "\"schemaVersion\":2", "\"schemaVersion\":\"2\"",
			      EBADMSG, "schemaVersion: not an integer");
	expect_replaced_error(oci_manifest, "\"schemaVersion\":2", "\"schemaVersion\":3",
			      ENOTSUP, "unsupported schemaVersion 3");
	expect_replaced_error(oci_manifest, "\"schemaVersion\":2", "\"schemaVersion\":2.0",
			      EBADMSG, "not an integer");
}

struct swap {
	const char *from, *to, *why;
	int code;
};

static const struct swap bad_fields[] = {
	{ "\"layers\":[", "\"layers\":{},\"x\":[", "layers: not an array", EBADMSG },
	{ "\"layers\":[{", "\"layers\":[7,{", "layers[0]: not an object", EBADMSG },
	{ "\"size\":29126484", "\"size\":\"29126484\"", "layers[0].size: not a non-negative",
	  EBADMSG },
	{ "\"size\":29126484", "\"size\":-1", "layers[0].size: not a non-negative", EBADMSG },
	{ "\"size\":29126484", "\"size\":1.5", "layers[0].size", EBADMSG },
	{ "\"size\":29126484", "\"size\":null", "layers[0].size", EBADMSG },
	{ "\"size\":29126484", "\"size\":99999999999999999999999", "not valid JSON", EBADMSG },
	{ ",\"size\":29126484", "", "layers[0].size: missing", EBADMSG },
	{ "\"digest\":\"" D2 "\"", "\"digest\":12", "layers[0].digest: not a string", EBADMSG },
	{ "\"digest\":\"" D2 "\"", "\"digest\":\"sha256:abc\"", "layers[0].digest: invalid digest",
	  EBADMSG },
	{ "\"digest\":\"" D2 "\"", "\"digest\":\"sha512:" H2 H2 "\"", "invalid digest", EBADMSG },
	{ "\"digest\":\"" D2 "\"", "\"digest\":\"../../etc/passwd\"", "invalid digest", EBADMSG },
	{ "\"mediaType\":\"" MT_TGZ "\"", "\"mediaType\":[]", "layers[0].mediaType: not a string",
	  EBADMSG },
	{ "\"mediaType\":\"" MT_TGZ "\",", "", "layers[0].mediaType: missing", EBADMSG },
	{ "\"mediaType\":\"" MT_TGZ "\"", "\"mediaType\":\"\"", "layers[0].mediaType: empty",
	  EBADMSG },
	{ "\"config\":{", "\"config\":[{", "not valid JSON", EBADMSG },
	{ "\"config\":{\"mediaType\"", "\"config\":\"x\",\"c\":{\"mediaType\"",
	  "config: not an object", EBADMSG },
	{ "\"config\":{\"mediaType\"", "\"c\":{\"mediaType\"", "config: missing", EBADMSG },
	{ "application/vnd.oci.image.config.v1+json", "application/vnd.cncf.helm.config.v1+json",
	  "not a container image", ENOTSUP },
	{ "\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\"", "\"mediaType\":5",
	  "mediaType: not a string", EBADMSG },
	{ "{\"schemaVersion\":2,", "{\"schemaVersion\":2,\"schemaVersion\":2,", "duplicate",
	  EBADMSG },
};

static void test_wrong_types(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_fields) / sizeof(bad_fields[0]); i++)
		expect_replaced_error(oci_manifest, bad_fields[i].from, bad_fields[i].to,
				      bad_fields[i].code, bad_fields[i].why);
}

static void test_not_json(void **state)
{
	struct sf_manifest m;
	struct sf_error err;

	(void)state;
	expect_manifest_error(NULL, "", EBADMSG, "empty");
	expect_manifest_error(NULL, "not json", EBADMSG, "not valid JSON");
	expect_manifest_error(NULL, "[1,2]", EBADMSG, "not a JSON object");
	expect_manifest_error(NULL, "\"x\"", EBADMSG, "not valid JSON"); /* jansson: no scalars */
	expect_manifest_error(NULL, "{\"schemaVersion\":2", EBADMSG, "not valid JSON");
	expect_manifest_error(NULL, "{\"a\":\"\\u0000\"}", EBADMSG, "not valid JSON");
	/* bytes after a NUL are part of the document, not ignored */
	assert_int_equal(sf_manifest_parse(NULL, oci_manifest, sizeof(oci_manifest), &m, &err),
			 -EBADMSG);
	assert_int_equal(sf_manifest_parse(NULL, NULL, 0, &m, &err), -EBADMSG);
}

/* A document of `layers` layers, each distinct. */
static char *many_layers(size_t layers)
{
	size_t cap = 512 + layers * 200, used;
	char *s = malloc(cap);

	assert_non_null(s);
	used = (size_t)snprintf(s, cap, "{\"schemaVersion\":2,\"config\":{\"mediaType\":\""
				SF_MT_OCI_CONFIG "\",\"digest\":\"" D1 "\",\"size\":1},\"layers\":[");
	for (size_t i = 0; i < layers; i++)
		used += (size_t)snprintf(s + used, cap - used,
					 "%s{\"mediaType\":\"" MT_TGZ "\",\"digest\":\"sha256:%064zx\","
					 "\"size\":%zu}", i ? "," : "", i, i);
	snprintf(s + used, cap - used, "]}");
	return s;
}

static void test_layer_limit(void **state)
{
	struct sf_manifest m;
	struct sf_error err;
	char *s = many_layers(SF_MANIFEST_MAX_LAYERS);

	(void)state;
	assert_int_equal(parse(NULL, s, &m, &err), 0);
	assert_int_equal(m.n_layers, SF_MANIFEST_MAX_LAYERS);
	assert_int_equal(m.layers[999].size, 999);
	sf_manifest_clear(&m);
	free(s);
	s = many_layers(SF_MANIFEST_MAX_LAYERS + 1);
	expect_manifest_error(NULL, s, E2BIG, "more than the limit of 1000");
	free(s);
}

static void test_huge_document(void **state)
{
	size_t n = SF_MANIFEST_MAX_SIZE + 1;
	char *s = malloc(n + 1);
	struct sf_manifest m;
	struct sf_error err;

	(void)state;
	memset(s, ' ', n);
	s[0] = '{';
	s[n - 1] = '}';
	s[n] = '\0';
	assert_int_equal(sf_manifest_parse(NULL, s, n, &m, &err), -EFBIG);
	assert_non_null(strstr(err.msg, "more than the limit"));
	/* exactly at the limit is read (and found wanting for other reasons) */
	assert_int_equal(sf_manifest_parse(NULL, s, n - 1, &m, &err), -EBADMSG);
	free(s);
}

static void test_deep_nesting(void **state)
{
	size_t depth = 100000;
	char *s = malloc(2 * depth + 64);
	size_t used = (size_t)sprintf(s, "{\"schemaVersion\":2,\"x\":");

	(void)state;
	memset(s + used, '[', depth);
	memset(s + used + depth, ']', depth);
	strcpy(s + used + 2 * depth, "}");
	expect_manifest_error(NULL, s, EBADMSG, "not valid JSON");
	free(s);
}

/* ---- indexes ---- */

static const struct sf_index_entry *select_ok(const struct sf_manifest *idx, const char *os,
					      const char *arch, const char *variant)
{
	struct sf_platform want = { os, arch, variant };
	const struct sf_index_entry *e = NULL;
	struct sf_error err = { 0 };
	int ret = sf_index_select(idx, &want, &e, &err);

	if (ret != 0)
		fail_msg("select %s/%s/%s: %s", os, arch, variant ? variant : "-", err.msg);
	assert_non_null(e);
	return e;
}

static void test_index_parse(void **state)
{
	struct sf_manifest m;
	struct sf_error err;

	(void)state;
	assert_int_equal(parse(SF_MT_OCI_INDEX, buildx_index, &m, &err), 0);
	assert_int_equal(m.kind, SF_KIND_INDEX);
	assert_int_equal(m.n_entries, 7);
	assert_true(m.entries[0].has_platform);
	assert_string_equal(m.entries[0].os, "unknown");
	assert_string_equal(m.entries[2].variant, "v8");
	assert_null(m.entries[1].variant);
	assert_int_equal(m.entries[4].desc.size, 103);
	assert_null(m.layers);
	sf_manifest_clear(&m);
}

static void test_index_select(void **state)
{
	struct sf_manifest m;
	struct sf_error err;

	(void)state;
	assert_int_equal(parse(NULL, buildx_index, &m, &err), 0);
	assert_string_equal(select_ok(&m, "linux", "amd64", NULL)->desc.digest, D1);
	assert_string_equal(select_ok(&m, NULL, "amd64", NULL)->desc.digest, D1);
	assert_string_equal(select_ok(&m, "windows", "amd64", NULL)->desc.digest, D7);
	/* arm64: v8 is the implicit variant, both spellings match */
	assert_string_equal(select_ok(&m, "linux", "arm64", NULL)->desc.digest, D2);
	assert_string_equal(select_ok(&m, "linux", "arm64", "v8")->desc.digest, D2);
	assert_string_equal(select_ok(&m, "linux", "arm", "v7")->desc.digest, D4);
	assert_string_equal(select_ok(&m, "linux", "arm", "v6")->desc.digest, D3);
	assert_string_equal(select_ok(&m, "linux", "arm", NULL)->desc.digest, D3);
	sf_manifest_clear(&m);

	assert_int_equal(parse(NULL, docker_list, &m, &err), 0);
	/* an entry without variant is arm64/v8 */
	assert_string_equal(select_ok(&m, "linux", "arm64", "v8")->desc.digest, D1);
	assert_string_equal(select_ok(&m, "linux", "ppc64le", NULL)->desc.digest, D2);
	sf_manifest_clear(&m);
}

static void test_index_default_platform(void **state)
{
	struct sf_manifest m;
	struct sf_error err;
	const struct sf_index_entry *e;
	const char *arch = sf_platform_default_arch();

	(void)state;
	assert_int_equal(parse(NULL, buildx_index, &m, &err), 0);
	if (strcmp(arch, "amd64") && strcmp(arch, "arm64")) {
		sf_manifest_clear(&m);
		skip();
	}
	assert_int_equal(sf_index_select(&m, NULL, &e, &err), 0);
	assert_string_equal(e->arch, arch);
	assert_string_equal(e->os, "linux");
	sf_manifest_clear(&m);
}

static void test_index_no_match(void **state)
{
	struct sf_platform want = { "linux", "riscv64", NULL };
	const struct sf_index_entry *e = (void *)1;
	struct sf_manifest m;
	struct sf_error err = { 0 };

	(void)state;
	assert_int_equal(parse(NULL, buildx_index, &m, &err), 0);
	assert_int_equal(sf_index_select(&m, &want, &e, &err), -ENOENT);
	assert_null(e);
	assert_string_equal(err.msg,
			    "no manifest for linux/riscv64 in the index (available: linux/amd64, "
			    "linux/arm64/v8, linux/arm/v6, linux/arm/v7, windows/amd64)");
	/* unknown/unknown is never chosen, not even when asked for */
	want = (struct sf_platform){ "unknown", "unknown", NULL };
	assert_int_equal(sf_index_select(&m, &want, &e, &err), -ENOENT);
	/* nested indexes are not selected */
	want = (struct sf_platform){ "linux", "s390x", NULL };
	assert_int_equal(sf_index_select(&m, &want, &e, &err), -ENOENT);
	/* a variant that is not there */
	want = (struct sf_platform){ "linux", "arm", "v5" };
	assert_int_equal(sf_index_select(&m, &want, &e, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "linux/arm/v5"));
	sf_manifest_clear(&m);
}

static void test_index_fallback_and_empty(void **state)
{
	static const char noplat[] =
		"{\"schemaVersion\":2,\"manifests\":["
		"{\"mediaType\":\"" SF_MT_OCI_MANIFEST "\",\"digest\":\"" D1 "\",\"size\":1,"
		"\"platform\":{\"os\":\"linux\",\"architecture\":\"mips64\"}},"
		"{\"mediaType\":\"" SF_MT_OCI_MANIFEST "\",\"digest\":\"" D2 "\",\"size\":1}]}";
	static const char empty[] = "{\"schemaVersion\":2,\"manifests\":[]}";
	struct sf_platform want = { "linux", "amd64", NULL };
	const struct sf_index_entry *e;
	struct sf_manifest m;
	struct sf_error err;

	(void)state;
	assert_int_equal(parse(NULL, noplat, &m, &err), 0);
	assert_int_equal(sf_index_select(&m, &want, &e, &err), 0);
	assert_string_equal(e->desc.digest, D2);
	assert_false(e->has_platform);
	sf_manifest_clear(&m);
	assert_int_equal(parse(NULL, empty, &m, &err), 0);
	assert_int_equal(sf_index_select(&m, &want, &e, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "(available: none)"));
	sf_manifest_clear(&m);
	/* selecting from an image manifest is a caller bug, not a crash */
	assert_int_equal(parse(NULL, oci_manifest, &m, &err), 0);
	assert_int_equal(sf_index_select(&m, &want, &e, &err), -EINVAL);
	sf_manifest_clear(&m);
}

static const struct swap bad_index_fields[] = {
	{ "\"manifests\":[", "\"manifests\":\"x\",\"a\":[", "manifests: not an array", EBADMSG },
	{ "\"platform\":{\"architecture\":\"unknown\",\"os\":\"unknown\"}",
	  "\"platform\":\"linux/amd64\"", "manifests[0].platform: not an object", EBADMSG },
	{ "{\"architecture\":\"amd64\",\"os\":\"linux\"}", "{\"architecture\":\"amd64\"}",
	  "manifests[1].platform.os: missing", EBADMSG },
	{ "{\"architecture\":\"amd64\",\"os\":\"linux\"}", "{\"architecture\":1,\"os\":\"linux\"}",
	  "manifests[1].platform.architecture: not a string", EBADMSG },
	{ "\"variant\":\"v8\"", "\"variant\":8", "manifests[2].platform.variant: not a string",
	  EBADMSG },
	{ "\"size\":100", "\"size\":-100", "manifests[1].size", EBADMSG },
	{ "\"digest\":\"" D1 "\"", "\"digest\":\"sha256:" H1 "\\n\"", "manifests[1].digest",
	  EBADMSG },
};

static void test_index_wrong_types(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_index_fields) / sizeof(bad_index_fields[0]); i++)
		expect_replaced_error(buildx_index, bad_index_fields[i].from, bad_index_fields[i].to,
				      bad_index_fields[i].code, bad_index_fields[i].why);
}

static void test_index_entry_limit(void **state)
{
	size_t n = SF_INDEX_MAX_ENTRIES + 1, cap = 64 + n * 160, used;
	char *s = malloc(cap);

	(void)state;
	used = (size_t)snprintf(s, cap, "{\"schemaVersion\":2,\"manifests\":[");
	for (size_t i = 0; i < n; i++)
		used += (size_t)snprintf(s + used, cap - used,
					 "%s{\"mediaType\":\"" SF_MT_OCI_MANIFEST
					 "\",\"digest\":\"" D1 "\",\"size\":1}", i ? "," : "");
	snprintf(s + used, cap - used, "]}");
	expect_manifest_error(NULL, s, E2BIG, "manifests: 1001 entries");
	free(s);
}

static void test_goarch(void **state)
{
	(void)state;
	assert_string_equal(sf_platform_goarch("x86_64"), "amd64");
	assert_string_equal(sf_platform_goarch("aarch64"), "arm64");
	assert_string_equal(sf_platform_goarch("armv7l"), "arm");
	assert_string_equal(sf_platform_goarch("i686"), "386");
	assert_string_equal(sf_platform_goarch("ppc64le"), "ppc64le");
	assert_string_equal(sf_platform_goarch("s390x"), "s390x");
	assert_string_equal(sf_platform_goarch("riscv64"), "riscv64");
	assert_null(sf_platform_goarch("vax"));
	assert_null(sf_platform_goarch(NULL));
	assert_non_null(sf_platform_default_arch());
	assert_true(sf_media_type_is_image_manifest(SF_MT_DOCKER_MANIFEST));
	assert_false(sf_media_type_is_image_manifest(SF_MT_OCI_INDEX));
	assert_false(sf_media_type_is_image_manifest(NULL));
}

/* ---- config ---- */

static int config(const char *doc, size_t n_layers, struct sf_image_config *c,
		  struct sf_error *err)
{
	memset(err, 0, sizeof(*err));
	return sf_config_parse(doc, strlen(doc), n_layers, c, err);
}

static void test_config(void **state)
{
	struct sf_image_config c;
	struct sf_error err;

	(void)state;
	assert_int_equal(config(config_two, 2, &c, &err), 0);
	assert_int_equal(c.n_diff_ids, 2);
	assert_string_equal(c.diff_ids[0], D4);
	assert_string_equal(c.diff_ids[1], D5);
	sf_image_config_clear(&c);
	sf_image_config_clear(&c);
	assert_int_equal(config("{\"rootfs\":{\"diff_ids\":[]}}", 0, &c, &err), 0);
	assert_int_equal(c.n_diff_ids, 0);
	sf_image_config_clear(&c);
}

static void expect_config_error(const char *doc, size_t n_layers, const char *why)
{
	struct sf_image_config c;
	struct sf_error err;
	int ret = config(doc, n_layers, &c, &err);

	if (ret >= 0)
		fail_msg("config accepted: %s", doc);
	if (!strstr(err.msg, why))
		fail_msg("message \"%s\" lacks \"%s\"", err.msg, why);
	assert_null(c.diff_ids);
	assert_int_equal(c.n_diff_ids, 0);
}

static void test_config_errors(void **state)
{
	(void)state;
	expect_config_error(config_two, 3, "config lists 2 diff_ids but the manifest has 3 layers");
	expect_config_error(config_two, 1, "config lists 2 diff_ids but the manifest has 1 layers");
	expect_config_error("{}", 0, "rootfs: missing");
	expect_config_error("{\"rootfs\":[]}", 0, "rootfs: not an object");
	expect_config_error("{\"rootfs\":{\"type\":\"layers\"}}", 0, "diff_ids: missing");
	expect_config_error("{\"rootfs\":{\"diff_ids\":\"" D1 "\"}}", 1, "not an array");
	expect_config_error("{\"rootfs\":{\"type\":1,\"diff_ids\":[]}}", 0, "type: not a string");
	expect_config_error("{\"rootfs\":{\"type\":\"x\",\"diff_ids\":[]}}", 0, "not \"layers\"");
	expect_config_error("{\"rootfs\":{\"diff_ids\":[\"" D1 "\",2]}}", 2,
			    "rootfs.diff_ids[1]: not a string");
	expect_config_error("{\"rootfs\":{\"diff_ids\":[\"" D1 "\",\"sha256:xyz\"]}}", 2,
			    "rootfs.diff_ids[1]: invalid digest \"sha256:xyz\"");
	expect_config_error("nope", 0, "config is not valid JSON");
	expect_config_error("", 0, "config is empty");
}

/* ---- WWW-Authenticate ---- */

static void auth_ok(const char *v, const char *scheme, const char *realm, const char *service,
		    const char *scope)
{
	struct sf_auth_challenge c;
	struct sf_error err = { 0 };

	if (sf_parse_www_authenticate(v, &c, &err) != 0)
		fail_msg("%s: %s", v, err.msg);
	assert_string_equal(c.scheme, scheme);
#define CHECK(field)                                   \
	if (field)                                     \
		assert_string_equal(c.field, field);   \
	else                                           \
		assert_null(c.field);
	CHECK(realm)
	CHECK(service)
	CHECK(scope)
#undef CHECK
	sf_auth_challenge_clear(&c);
}

static void test_www_authenticate(void **state)
{
	struct sf_auth_challenge c;
	struct sf_error err;

	(void)state;
	auth_ok("Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
		"scope=\"repository:library/debian:pull\"",
		"Bearer", "https://auth.docker.io/token", "registry.docker.io",
		"repository:library/debian:pull");
	/* unquoted values, odd spacing, case-insensitive names */
	auth_ok("bearer  REALM = https://r.example/t ,  Service=svc", "bearer",
		"https://r.example/t", "svc", NULL);
	/* commas and escapes inside quoted strings */
	auth_ok("Bearer realm=\"https://x/t?a=1,b=2\",scope=\"repository:a/b:pull,push\","
		"service=\"q\\\"uo\\\\te\"",
		"Bearer", "https://x/t?a=1,b=2", "q\"uo\\te", "repository:a/b:pull,push");
	/* unknown parameters ignored; first of a duplicate wins */
	auth_ok("Bearer foo=bar,realm=\"a\",realm=\"b\",error=\"insufficient_scope\"", "Bearer",
		"a", NULL, NULL);
	/* several challenges: Bearer preferred */
	auth_ok("Basic realm=\"Registry\", Bearer realm=\"https://a/t\",service=\"s\"", "Bearer",
		"https://a/t", "s", NULL);
	auth_ok("Negotiate, Bearer realm=\"r\"", "Bearer", "r", NULL, NULL);
	auth_ok("Basic realm=\"Registry Realm\"", "Basic", "Registry Realm", NULL, NULL);
	auth_ok("Bearer", "Bearer", NULL, NULL, NULL);
	auth_ok("Bearer realm=\"\"", "Bearer", "", NULL, NULL);

	assert_int_equal(sf_parse_www_authenticate("Bearer error=\"invalid_token\"", &c, &err), 0);
	assert_string_equal(c.error, "invalid_token");
	sf_auth_challenge_clear(&c);

	assert_int_equal(sf_parse_www_authenticate("", &c, &err), -EINVAL);
	assert_int_equal(sf_parse_www_authenticate(" , ", &c, &err), -EINVAL);
	assert_int_equal(sf_parse_www_authenticate(NULL, &c, &err), -EINVAL);
	assert_int_equal(sf_parse_www_authenticate("Bearer realm=\"abc", &c, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "unterminated"));
	assert_null(c.scheme);
	assert_int_equal(sf_parse_www_authenticate("=realm", &c, &err), -EINVAL);
	assert_int_equal(sf_parse_www_authenticate("Bearer realm=\"a\", =x", &c, &err), -EINVAL);
	assert_int_equal(sf_parse_www_authenticate("Bea\"rer realm=a", &c, &err), -EINVAL);
	assert_int_equal(sf_parse_www_authenticate("Bearer realm=\"a\\", &c, &err), -EINVAL);
}

static void test_www_authenticate_long(void **state)
{
	size_t n = SF_WWW_AUTH_MAX + 10;
	char *s = malloc(n + 1);
	struct sf_auth_challenge c;
	struct sf_error err;

	(void)state;
	memset(s, 'a', n);
	memcpy(s, "Bearer realm=", 13);
	s[n] = '\0';
	assert_int_equal(sf_parse_www_authenticate(s, &c, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "longer than"));
	free(s);
}

/* ---- token endpoint ---- */

static int token(const char *doc, char **t, struct sf_error *err)
{
	memset(err, 0, sizeof(*err));
	return sf_parse_token_response(doc, strlen(doc), t, err);
}

static void test_token_response(void **state)
{
	struct sf_error err;
	char *t;

	(void)state;
	assert_int_equal(token("{\"token\":\"abc.def-ghi_\",\"expires_in\":300,"
			       "\"issued_at\":\"2024-01-01T00:00:00Z\"}", &t, &err), 0);
	assert_string_equal(t, "abc.def-ghi_");
	free(t);
	assert_int_equal(token("{\"access_token\":\"xyz\"}", &t, &err), 0);
	assert_string_equal(t, "xyz");
	free(t);
	assert_int_equal(token("{\"token\":\"one\",\"access_token\":\"two\"}", &t, &err), 0);
	assert_string_equal(t, "one");
	free(t);
	assert_int_equal(token("{\"token\":\"\",\"access_token\":\"two\"}", &t, &err), 0);
	assert_string_equal(t, "two");
	free(t);
}

static void expect_token_error(const char *doc, const char *why)
{
	struct sf_error err;
	char *t = (char *)"x";

	assert_true(token(doc, &t, &err) < 0);
	assert_null(t);
	if (!strstr(err.msg, why))
		fail_msg("message \"%s\" lacks \"%s\"", err.msg, why);
	assert_null(strstr(err.msg, "SECRET"));
}

static void test_token_errors(void **state)
{
	char *big;
	size_t n = SF_TOKEN_MAX_LEN + 1;

	(void)state;
	expect_token_error("{}", "no token");
	expect_token_error("{\"token\":\"\"}", "no token");
	expect_token_error("{\"token\":42}", "token: not a string");
	expect_token_error("{\"access_token\":null}", "access_token: not a string");
	expect_token_error("{\"token\":\"SECRET\\r\\nX-Evil: 1\"}", "not allowed in a header");
	expect_token_error("{\"token\":\"SECRET SECRET\"}", "not allowed in a header");
	expect_token_error("<html>", "not valid JSON");
	big = malloc(n + 32);
	strcpy(big, "{\"token\":\"");
	memset(big + 10, 'A', n);
	strcpy(big + 10 + n, "\"}");
	expect_token_error(big, "longer than 6144");
	free(big);
}

/* ---- registry error bodies ---- */

static void test_registry_error(void **state)
{
	char buf[128];
	const char *b;

	(void)state;
	b = "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"manifest unknown\","
	    "\"detail\":{\"Tag\":\"nope\"}}]}\n";
	assert_true(sf_parse_registry_error(b, strlen(b), buf, sizeof(buf)));
	assert_string_equal(buf, "manifest unknown");
	b = "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required\"},"
	    "{\"code\":\"DENIED\"},{\"message\":7},{\"code\":\"A\\nB\"}]}";
	assert_true(sf_parse_registry_error(b, strlen(b), buf, sizeof(buf)));
	assert_string_equal(buf, "authentication required; DENIED; A?B");
	b = "{\"errors\":[]}";
	assert_false(sf_parse_registry_error(b, strlen(b), buf, sizeof(buf)));
	b = "{\"errors\":\"x\"}";
	assert_false(sf_parse_registry_error(b, strlen(b), buf, sizeof(buf)));
	b = "<html><body>502 Bad Gateway</body></html>";
	assert_false(sf_parse_registry_error(b, strlen(b), buf, sizeof(buf)));
	assert_string_equal(buf, "");
	assert_false(sf_parse_registry_error(NULL, 0, buf, sizeof(buf)));
	b = "{\"errors\":[{\"message\":\"a long message that does not fit\"}]}";
	assert_true(sf_parse_registry_error(b, strlen(b), buf, 8));
	assert_string_equal(buf, "a long ");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_oci_manifest),
		cmocka_unit_test(test_docker_manifest),
		cmocka_unit_test(test_kind_detection),
		cmocka_unit_test(test_kind_conflicts),
		cmocka_unit_test(test_schema1_rejected),
		cmocka_unit_test(test_schema_version),
		cmocka_unit_test(test_wrong_types),
		cmocka_unit_test(test_not_json),
		cmocka_unit_test(test_layer_limit),
		cmocka_unit_test(test_huge_document),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_index_parse),
		cmocka_unit_test(test_index_select),
		cmocka_unit_test(test_index_default_platform),
		cmocka_unit_test(test_index_no_match),
		cmocka_unit_test(test_index_fallback_and_empty),
		cmocka_unit_test(test_index_wrong_types),
		cmocka_unit_test(test_index_entry_limit),
		cmocka_unit_test(test_goarch),
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_www_authenticate),
		cmocka_unit_test(test_www_authenticate_long),
		cmocka_unit_test(test_token_response),
		cmocka_unit_test(test_token_errors),
		cmocka_unit_test(test_registry_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
