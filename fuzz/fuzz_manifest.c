/* fuzz_manifest.c - libFuzzer target: the registry's JSON documents.
 *
 * Input: byte 0 picks the response's Content-Type (one of the SF_MT_* types,
 * with or without parameters, a foreign type, or none), byte 1 the layer
 * count sf_config_parse expects when the document is not an image manifest,
 * the rest is the document.  It goes through sf_manifest_parse, then
 * sf_index_select for several platforms when it is an index, and
 * sf_config_parse (with the manifest's layer count when it is one).  What
 * the parsers promise about a success (valid digests, limits, the chosen
 * entry is one of the index's) is checked with abort().
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const content_types[] = {
	NULL,
	SF_MT_OCI_MANIFEST,
	SF_MT_OCI_INDEX,
	SF_MT_DOCKER_MANIFEST,
	SF_MT_DOCKER_LIST,
	SF_MT_OCI_CONFIG,
	SF_MT_DOCKER_CONFIG,
	SF_MT_OCI_MANIFEST "; charset=utf-8",
	SF_MT_DOCKER_LIST " ; q=1",
	"application/vnd.docker.distribution.manifest.v1+prettyjws",
	"application/json",
	"",
};

static const struct sf_platform platforms[] = {
	{ NULL, NULL, NULL },
	{ "linux", "amd64", NULL },
	{ "linux", "arm64", "v8" },
	{ "linux", "arm", "v7" },
	{ "windows", "amd64", NULL },
};

static void check_digest(const char *d)
{
	if (!d || strncmp(d, "sha256:", 7) != 0 || strlen(d) != 7 + 64)
		abort();
	for (const char *p = d + 7; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			abort();
}

static void check_manifest(const struct sf_manifest *m)
{
	if (!m->media_type)
		abort();
	if (m->kind == SF_KIND_IMAGE) {
		if (m->n_layers > SF_MANIFEST_MAX_LAYERS || (m->n_layers && !m->layers))
			abort();
		check_digest(m->config.digest);
		for (size_t i = 0; i < m->n_layers; i++)
			check_digest(m->layers[i].digest);
	} else if (m->kind == SF_KIND_INDEX) {
		if (m->n_entries > SF_INDEX_MAX_ENTRIES || (m->n_entries && !m->entries))
			abort();
		for (size_t i = 0; i < m->n_entries; i++)
			check_digest(m->entries[i].desc.digest);
	} else {
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const size_t n_ct = sizeof(content_types) / sizeof(content_types[0]);
	struct sf_manifest m;
	struct sf_image_config c;
	struct sf_error err = { 0 };
	size_t n_layers;

	if (size < 2)
		return 0;
	n_layers = data[1];
	if (sf_manifest_parse(content_types[data[0] % n_ct], data + 2, size - 2, &m, &err) == 0) {
		check_manifest(&m);
		if (m.kind == SF_KIND_IMAGE) {
			n_layers = m.n_layers;
		} else {
			for (size_t i = 0; i < sizeof(platforms) / sizeof(platforms[0]); i++) {
				const struct sf_index_entry *e = NULL;

				memset(&err, 0, sizeof(err));
				if (sf_index_select(&m, &platforms[i], &e, &err) == 0 &&
				    (!e || e < m.entries || e >= m.entries + m.n_entries))
					abort();
			}
		}
	}
	sf_manifest_clear(&m);
	memset(&err, 0, sizeof(err));
	if (sf_config_parse(data + 2, size - 2, n_layers, &c, &err) == 0) {
		if (c.n_diff_ids != n_layers)
			abort();
		for (size_t i = 0; i < c.n_diff_ids; i++)
			check_digest(c.diff_ids[i]);
	}
	sf_image_config_clear(&c);
	return 0;
}
