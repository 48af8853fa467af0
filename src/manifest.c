/* manifest.c - registry JSON documents, parsed strictly, with no network.
 *
 * What kind of document a manifest GET returned is decided by, in order:
 * the document's own mediaType, the response's Content-Type, and its
 * structure ("manifests" -> index, "config"/"layers" -> image).  The
 * mediaType and the Content-Type must not disagree, and an image manifest
 * may not carry "manifests" nor an index "config"/"layers": an ambiguous
 * document is refused rather than read one way here and another way by
 * whoever checked it (the OCI "confused mediaType" advisory).  Docker
 * schema 1 is refused by name, it has no config and no diff_ids.
 *
 * Every member is read through a helper that checks its JSON type, so a
 * hostile document gets an error naming the field, never a crash.  Size,
 * array length and string limits come from manifest.h; jansson itself
 * bounds nesting depth (2048) and rejects NUL bytes in strings, and we ask
 * it to reject duplicate keys.
 *
 * The platform choice follows containerd: exact os/arch, variant when
 * asked for ("v8" is arm64's implicit variant), attestation entries
 * (os "unknown") skipped, an entry without platform only as the fallback.
 *
 * The WWW-Authenticate parser is RFC 7235 shaped: a scheme token, then
 * name=token or name="quoted-string" parameters separated by commas; a
 * token not followed by '=' starts the next challenge.
 */
#include "manifest.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>

#include "digest.h"

#define SF_PLATFORM_FIELD_MAX 64	/* os, architecture, variant */
#define SF_QUOTE_MAX 120		/* how much of a bad value a message shows */
#define SF_PLATFORM_LIST_MAX 512	/* "available: ..." in a no-match message */
#define SF_REGISTRY_ERRORS_MAX 4	/* error entries joined into one line */
#define BAD_DOC EBADMSG			/* errno for a malformed document */

#define SF_MT_DOCKER_SCHEMA1 "application/vnd.docker.distribution.manifest.v1+json"
#define SF_MT_DOCKER_SCHEMA1_SIGNED "application/vnd.docker.distribution.manifest.v1+prettyjws"

/* Copy s for a message: printable ASCII only, bounded. */
static const char *printable(const char *s, char *buf, size_t len)
{
	size_t i = 0;

	for (; s && *s && i + 1 < len; s++, i++)
		buf[i] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
	buf[i] = '\0';
	return buf;
}

static sf_ret oom(struct sf_error *err)
{
	return sf_fail(err, ENOMEM, "out of memory");
}

static sf_ret load_json(const void *data, size_t len, const char *what, json_t **out,
			struct sf_error *err)
{
	char text[SF_QUOTE_MAX];
	json_error_t je;

	*out = NULL;
	if (len > SF_MANIFEST_MAX_SIZE)
		return sf_fail(err, EFBIG, "%s is %zu bytes, more than the limit of %u", what, len,
			       SF_MANIFEST_MAX_SIZE);
	if (!data || len == 0)
		return sf_fail(err, BAD_DOC, "%s is empty", what);
	*out = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
	if (!*out)
		return sf_fail(err, BAD_DOC, "%s is not valid JSON: %s (line %d)", what,
			       printable(je.text, text, sizeof(text)), je.line);
	if (!json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		return sf_fail(err, BAD_DOC, "%s is not a JSON object", what);
	}
	return 0;
}

/* String member: *out = NULL when absent (error when required). */
static sf_ret get_string(json_t *obj, const char *key, const char *where, bool required,
			 const char **out, struct sf_error *err)
{
	json_t *v = json_object_get(obj, key);

	*out = NULL;
	if (!v && !required)
		return 0;
	if (!v)
		return sf_fail(err, BAD_DOC, "%s%s%s: missing", where, *where ? "." : "", key);
	if (!json_is_string(v))
		return sf_fail(err, BAD_DOC, "%s%s%s: not a string", where, *where ? "." : "", key);
	*out = json_string_value(v);
	return 0;
}

static sf_ret dup_string(json_t *obj, const char *key, const char *where, bool required,
			 size_t max, char **out, struct sf_error *err)
{
	const char *s;
	sf_ret ret = get_string(obj, key, where, required, &s, err);

	*out = NULL;
	if (ret < 0 || !s)
		return ret;
	if (strlen(s) > max)
		return sf_fail(err, BAD_DOC, "%s.%s: longer than %zu characters", where, key, max);
	if (required && !*s)
		return sf_fail(err, BAD_DOC, "%s.%s: empty", where, key);
	*out = strdup(s);
	return *out ? 0 : oom(err);
}

static sf_ret dup_digest(const char *s, const char *where, char **out, struct sf_error *err)
{
	char q[SF_QUOTE_MAX];

	if (!sf_digest_valid(s))
		return sf_fail(err, BAD_DOC, "%s: invalid digest \"%s\" (want sha256:<64 hex>)",
			       where, printable(s, q, sizeof(q)));
	*out = strdup(s);
	return *out ? 0 : oom(err);
}

static sf_ret get_size(json_t *obj, const char *where, uint64_t *out, struct sf_error *err)
{
	json_t *v = json_object_get(obj, "size");

	if (!v)
		return sf_fail(err, BAD_DOC, "%s.size: missing", where);
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return sf_fail(err, BAD_DOC, "%s.size: not a non-negative integer", where);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static sf_ret parse_descriptor(json_t *d, const char *where, struct sf_descriptor *out,
			       struct sf_error *err)
{
	char dw[64];
	const char *digest;
	sf_ret ret;

	if (!json_is_object(d))
		return sf_fail(err, BAD_DOC, "%s: not an object", where);
	ret = dup_string(d, "mediaType", where, true, SF_MEDIA_TYPE_MAX, &out->media_type, err);
	if (ret == 0)
		ret = get_string(d, "digest", where, true, &digest, err);
	snprintf(dw, sizeof(dw), "%s.digest", where);
	if (ret == 0)
		ret = dup_digest(digest, dw, &out->digest, err);
	if (ret == 0)
		ret = get_size(d, where, &out->size, err);
	return ret;
}

static void descriptor_clear(struct sf_descriptor *d)
{
	free(d->media_type);
	free(d->digest);
	memset(d, 0, sizeof(*d));
}

static enum sf_manifest_kind kind_of(const char *mt)
{
	if (!mt)
		return 0;
	if (!strcmp(mt, SF_MT_OCI_MANIFEST) || !strcmp(mt, SF_MT_DOCKER_MANIFEST))
		return SF_KIND_IMAGE;
	if (!strcmp(mt, SF_MT_OCI_INDEX) || !strcmp(mt, SF_MT_DOCKER_LIST))
		return SF_KIND_INDEX;
	return 0;
}

bool sf_media_type_is_image_manifest(const char *media_type)
{
	return kind_of(media_type) == SF_KIND_IMAGE;
}

static bool is_schema1(const char *mt)
{
	return mt && (!strcmp(mt, SF_MT_DOCKER_SCHEMA1) || !strcmp(mt, SF_MT_DOCKER_SCHEMA1_SIGNED));
}

/* "Application/JSON; charset=utf-8" -> "application/json". */
static void content_type_base(const char *ct, char *buf, size_t len)
{
	size_t i = 0;

	buf[0] = '\0';
	if (!ct)
		return;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	for (; *ct && *ct != ';' && *ct != ' ' && *ct != '\t' && i + 1 < len; ct++)
		buf[i++] = (char)tolower((unsigned char)*ct);
	buf[i] = '\0';
}

static sf_ret schema1_error(struct sf_error *err)
{
	return sf_fail(err, ENOTSUP,
		       "Docker schema 1 manifest: this deprecated format is not supported, "
		       "re-push the image with a current docker, podman or skopeo");
}

static sf_ret check_schema_version(json_t *root, struct sf_error *err)
{
	json_t *v = json_object_get(root, "schemaVersion");

	if (!v)
		return sf_fail(err, BAD_DOC, "schemaVersion: missing");
	if (!json_is_integer(v))
		return sf_fail(err, BAD_DOC, "schemaVersion: not an integer");
	if (json_integer_value(v) == 1)
		return schema1_error(err);
	if (json_integer_value(v) != 2)
		return sf_fail(err, ENOTSUP, "unsupported schemaVersion %lld (want 2)",
			       (long long)json_integer_value(v));
	return 0;
}

static enum sf_manifest_kind kind_from_structure(json_t *root)
{
	if (json_object_get(root, "manifests"))
		return SF_KIND_INDEX;
	if (json_object_get(root, "config") || json_object_get(root, "layers"))
		return SF_KIND_IMAGE;
	return 0;
}

static sf_ret detect_kind(const char *ct, const char *mt, json_t *root, struct sf_manifest *out,
			  struct sf_error *err)
{
	enum sf_manifest_kind kd = kind_of(mt), kc = kind_of(ct);
	char q[SF_QUOTE_MAX];
	const char *chosen = mt;

	if (mt && !kd)
		return sf_fail(err, ENOTSUP, "unsupported media type \"%s\" "
			       "(not an image manifest or index)", printable(mt, q, sizeof(q)));
	if (kd && kc && kd != kc)
		return sf_fail(err, BAD_DOC, "Content-Type %s disagrees with the document's "
			       "mediaType %s", ct, mt);
	out->kind = kd ? kd : kc ? kc : kind_from_structure(root);
	if (!out->kind)
		return sf_fail(err, BAD_DOC, "neither an image manifest nor an index "
			       "(no mediaType, no config, layers or manifests)");
	if (!chosen)
		chosen = kc ? ct : out->kind == SF_KIND_INDEX ? SF_MT_OCI_INDEX : SF_MT_OCI_MANIFEST;
	out->media_type = strdup(chosen);
	return out->media_type ? 0 : oom(err);
}

static sf_ret check_config_type(const struct sf_descriptor *c, struct sf_error *err)
{
	char q[SF_QUOTE_MAX];

	if (!strcmp(c->media_type, SF_MT_OCI_CONFIG) || !strcmp(c->media_type, SF_MT_DOCKER_CONFIG))
		return 0;
	return sf_fail(err, ENOTSUP, "not a container image: config media type \"%s\" "
		       "(an OCI artifact?)", printable(c->media_type, q, sizeof(q)));
}

static sf_ret get_array(json_t *root, const char *key, size_t max, json_t **out,
			struct sf_error *err)
{
	*out = json_object_get(root, key);
	if (!*out)
		return sf_fail(err, BAD_DOC, "%s: missing", key);
	if (!json_is_array(*out))
		return sf_fail(err, BAD_DOC, "%s: not an array", key);
	if (json_array_size(*out) > max)
		return sf_fail(err, E2BIG, "%s: %zu entries, more than the limit of %zu", key,
			       json_array_size(*out), max);
	return 0;
}

static sf_ret parse_layers(json_t *layers, struct sf_manifest *out, struct sf_error *err)
{
	size_t n = json_array_size(layers);
	char where[32];

	out->layers = calloc(n ? n : 1, sizeof(*out->layers));
	if (!out->layers)
		return oom(err);
	for (size_t i = 0; i < n; i++) {
		snprintf(where, sizeof(where), "layers[%zu]", i);
		out->n_layers++;
		sf_ret ret = parse_descriptor(json_array_get(layers, i), where, &out->layers[i], err);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static sf_ret parse_image(json_t *root, struct sf_manifest *out, struct sf_error *err)
{
	json_t *layers;
	sf_ret ret;

	if (json_object_get(root, "manifests"))
		return sf_fail(err, BAD_DOC, "image manifest also has \"manifests\" (ambiguous)");
	if (!json_object_get(root, "config"))
		return sf_fail(err, BAD_DOC, "config: missing");
	ret = parse_descriptor(json_object_get(root, "config"), "config", &out->config, err);
	if (ret == 0)
		ret = check_config_type(&out->config, err);
	if (ret == 0)
		ret = get_array(root, "layers", SF_MANIFEST_MAX_LAYERS, &layers, err);
	if (ret == 0)
		ret = parse_layers(layers, out, err);
	return ret;
}

static sf_ret parse_platform(json_t *e, const char *where, struct sf_index_entry *out,
			     struct sf_error *err)
{
	json_t *p = json_object_get(e, "platform");
	char pw[48];
	sf_ret ret;

	if (!p)
		return 0;
	snprintf(pw, sizeof(pw), "%s.platform", where);
	if (!json_is_object(p))
		return sf_fail(err, BAD_DOC, "%s: not an object", pw);
	out->has_platform = true;
	ret = dup_string(p, "os", pw, true, SF_PLATFORM_FIELD_MAX, &out->os, err);
	if (ret == 0)
		ret = dup_string(p, "architecture", pw, true, SF_PLATFORM_FIELD_MAX, &out->arch, err);
	if (ret == 0)
		ret = dup_string(p, "variant", pw, false, SF_PLATFORM_FIELD_MAX, &out->variant, err);
	return ret;
}

static sf_ret parse_entries(json_t *arr, struct sf_manifest *out, struct sf_error *err)
{
	size_t n = json_array_size(arr);
	char where[32];

	out->entries = calloc(n ? n : 1, sizeof(*out->entries));
	if (!out->entries)
		return oom(err);
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(arr, i);
		snprintf(where, sizeof(where), "manifests[%zu]", i);
		out->n_entries++;
		sf_ret ret = parse_descriptor(e, where, &out->entries[i].desc, err);
		if (ret == 0)
			ret = parse_platform(e, where, &out->entries[i], err);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static sf_ret parse_index(json_t *root, struct sf_manifest *out, struct sf_error *err)
{
	json_t *arr;
	sf_ret ret;

	if (json_object_get(root, "config") || json_object_get(root, "layers"))
		return sf_fail(err, BAD_DOC, "index also has \"config\" or \"layers\" (ambiguous)");
	ret = get_array(root, "manifests", SF_INDEX_MAX_ENTRIES, &arr, err);
	if (ret == 0)
		ret = parse_entries(arr, out, err);
	return ret;
}

static sf_ret parse_root(const char *ct, json_t *root, struct sf_manifest *out,
			 struct sf_error *err)
{
	const char *mt;
	sf_ret ret = get_string(root, "mediaType", "", false, &mt, err);

	if (ret < 0)
		return ret;
	if (is_schema1(mt))
		return schema1_error(err);
	ret = check_schema_version(root, err);
	if (ret == 0)
		ret = detect_kind(ct, mt, root, out, err);
	if (ret < 0)
		return ret;
	return out->kind == SF_KIND_IMAGE ? parse_image(root, out, err)
					  : parse_index(root, out, err);
}

sf_ret sf_manifest_parse(const char *content_type, const void *data, size_t len,
			 struct sf_manifest *out, struct sf_error *err)
{
	char ct[SF_MEDIA_TYPE_MAX + 1];
	json_t *root;
	sf_ret ret;

	memset(out, 0, sizeof(*out));
	content_type_base(content_type, ct, sizeof(ct));
	if (is_schema1(ct))
		return schema1_error(err);
	ret = load_json(data, len, "manifest", &root, err);
	if (ret < 0)
		return ret;
	ret = parse_root(ct, root, out, err);
	json_decref(root);
	if (ret < 0)
		sf_manifest_clear(out);
	return ret;
}

void sf_manifest_clear(struct sf_manifest *m)
{
	if (!m)
		return;
	free(m->media_type);
	descriptor_clear(&m->config);
	for (size_t i = 0; i < m->n_layers; i++)
		descriptor_clear(&m->layers[i]);
	free(m->layers);
	for (size_t i = 0; i < m->n_entries; i++) {
		descriptor_clear(&m->entries[i].desc);
		free(m->entries[i].os);
		free(m->entries[i].arch);
		free(m->entries[i].variant);
	}
	free(m->entries);
	memset(m, 0, sizeof(*m));
}

/* ---- platform selection ---- */

static const struct {
	const char *machine, *goarch;
} goarch_map[] = {
	{ "x86_64", "amd64" },	 { "amd64", "amd64" },	   { "aarch64", "arm64" },
	{ "arm64", "arm64" },	 { "armv8l", "arm" },	   { "armv7l", "arm" },
	{ "armv7", "arm" },	 { "armv6l", "arm" },	   { "armv5tel", "arm" },
	{ "arm", "arm" },	 { "i386", "386" },	   { "i486", "386" },
	{ "i586", "386" },	 { "i686", "386" },	   { "ppc64le", "ppc64le" },
	{ "ppc64", "ppc64" },	 { "s390x", "s390x" },	   { "riscv64", "riscv64" },
	{ "loongarch64", "loong64" }, { "mips64", "mips64" }, { "mips", "mips" },
};

const char *sf_platform_goarch(const char *machine)
{
	for (size_t i = 0; machine && i < sizeof(goarch_map) / sizeof(goarch_map[0]); i++)
		if (!strcmp(machine, goarch_map[i].machine))
			return goarch_map[i].goarch;
	return NULL;
}

static const char *compiled_arch(void)
{
#if defined(__x86_64__)
	return "amd64";
#elif defined(__aarch64__)
	return "arm64";
#elif defined(__arm__)
	return "arm";
#elif defined(__i386__)
	return "386";
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return "ppc64le";
#elif defined(__s390x__)
	return "s390x";
#elif defined(__riscv) && __riscv_xlen == 64
	return "riscv64";
#else
	return "unknown";
#endif
}

const char *sf_platform_default_arch(void)
{
	struct utsname u;
	const char *a = NULL;

	if (uname(&u) == 0)
		a = sf_platform_goarch(u.machine);
	return a ? a : compiled_arch();
}

/* arm64's only variant is v8: "v8" and no variant are the same thing. */
static const char *norm_variant(const char *arch, const char *variant)
{
	if (!variant)
		return "";
	if (!strcmp(arch, "arm64") && !strcmp(variant, "v8"))
		return "";
	return variant;
}

static bool platform_match(const struct sf_index_entry *e, const struct sf_platform *w)
{
	if (!e->has_platform || strcmp(e->os, w->os) || strcmp(e->arch, w->arch))
		return false;
	if (!w->variant)
		return true;
	return !strcmp(norm_variant(w->arch, w->variant), norm_variant(e->arch, e->variant));
}

static void list_platforms(const struct sf_manifest *idx, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < idx->n_entries; i++) {
		const struct sf_index_entry *e = &idx->entries[i];
		char one[3 * SF_PLATFORM_FIELD_MAX + 8];
		if (!e->has_platform || !strcmp(e->os, "unknown") ||
		    !sf_media_type_is_image_manifest(e->desc.media_type))
			continue;
		snprintf(one, sizeof(one), "%s%s/%s%s%s", used ? ", " : "", e->os, e->arch,
			 e->variant ? "/" : "", e->variant ? e->variant : "");
		if (used + strlen(one) + 5 >= len) {
			snprintf(buf + used, len - used, ", ...");
			return;
		}
		used += (size_t)snprintf(buf + used, len - used, "%s", one);
	}
	if (!used)
		snprintf(buf, len, "none");
}

static sf_ret no_match(const struct sf_manifest *idx, const struct sf_platform *w,
		       struct sf_error *err)
{
	char avail[SF_PLATFORM_LIST_MAX], q[SF_PLATFORM_LIST_MAX];
	char want[3 * SF_QUOTE_MAX + 8];

	snprintf(want, sizeof(want), "%s/%s%s%s", w->os, w->arch, w->variant ? "/" : "",
		 w->variant ? w->variant : "");
	list_platforms(idx, avail, sizeof(avail));
	return sf_fail(err, ENOENT, "no manifest for %s in the index (available: %s)",
		       printable(want, q, sizeof(q)), printable(avail, avail, sizeof(avail)));
}

sf_ret sf_index_select(const struct sf_manifest *index, const struct sf_platform *want,
		       const struct sf_index_entry **out, struct sf_error *err)
{
	struct sf_platform w = { "linux", NULL, NULL };
	const struct sf_index_entry *fallback = NULL;

	*out = NULL;
	if (index->kind != SF_KIND_INDEX)
		return sf_fail(err, EINVAL, "not an index");
	if (want)
		w = *want;
	w.os = w.os ? w.os : "linux";
	w.arch = w.arch ? w.arch : sf_platform_default_arch();
	for (size_t i = 0; i < index->n_entries; i++) {
		const struct sf_index_entry *e = &index->entries[i];
		if (!sf_media_type_is_image_manifest(e->desc.media_type))
			continue;
		if (!e->has_platform && !fallback)
			fallback = e;
		if (e->has_platform && strcmp(e->os, "unknown") && platform_match(e, &w)) {
			*out = e;
			return 0;
		}
	}
	*out = fallback;
	return fallback ? 0 : no_match(index, &w, err);
}

/* ---- image config ---- */

static sf_ret parse_diff_ids(json_t *arr, size_t n_layers, struct sf_image_config *out,
			     struct sf_error *err)
{
	size_t n = json_array_size(arr);
	char where[40];

	if (n != n_layers)
		return sf_fail(err, BAD_DOC, "config lists %zu diff_ids but the manifest has "
			       "%zu layers", n, n_layers);
	out->diff_ids = calloc(n ? n : 1, sizeof(*out->diff_ids));
	if (!out->diff_ids)
		return oom(err);
	for (size_t i = 0; i < n; i++) {
		json_t *v = json_array_get(arr, i);
		snprintf(where, sizeof(where), "rootfs.diff_ids[%zu]", i);
		if (!json_is_string(v))
			return sf_fail(err, BAD_DOC, "config: %s: not a string", where);
		out->n_diff_ids++;
		sf_ret ret = dup_digest(json_string_value(v), where, &out->diff_ids[i], err);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static sf_ret parse_rootfs(json_t *root, size_t n_layers, struct sf_image_config *out,
			   struct sf_error *err)
{
	json_t *rootfs = json_object_get(root, "rootfs"), *ids;
	const char *type;
	sf_ret ret;

	if (!rootfs)
		return sf_fail(err, BAD_DOC, "config: rootfs: missing");
	if (!json_is_object(rootfs))
		return sf_fail(err, BAD_DOC, "config: rootfs: not an object");
	ret = get_string(rootfs, "type", "config: rootfs", false, &type, err);
	if (ret < 0)
		return ret;
	if (type && strcmp(type, "layers"))
		return sf_fail(err, BAD_DOC, "config: rootfs.type is not \"layers\"");
	ids = json_object_get(rootfs, "diff_ids");
	if (!ids)
		return sf_fail(err, BAD_DOC, "config: rootfs.diff_ids: missing");
	if (!json_is_array(ids))
		return sf_fail(err, BAD_DOC, "config: rootfs.diff_ids: not an array");
	return parse_diff_ids(ids, n_layers, out, err);
}

sf_ret sf_config_parse(const void *data, size_t len, size_t n_layers,
		       struct sf_image_config *out, struct sf_error *err)
{
	json_t *root;
	sf_ret ret;

	memset(out, 0, sizeof(*out));
	ret = load_json(data, len, "config", &root, err);
	if (ret < 0)
		return ret;
	ret = parse_rootfs(root, n_layers, out, err);
	json_decref(root);
	if (ret < 0)
		sf_image_config_clear(out);
	return ret;
}

void sf_image_config_clear(struct sf_image_config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_diff_ids; i++)
		free(c->diff_ids[i]);
	free(c->diff_ids);
	memset(c, 0, sizeof(*c));
}

/* ---- WWW-Authenticate ---- */

static bool is_tchar(char c)
{
	return c && (isalnum((unsigned char)c) || strchr("!#$%&'*+-.^_`|~", c));
}

static size_t token_len(const char *p)
{
	size_t n = 0;

	while (is_tchar(p[n]))
		n++;
	return n;
}

static const char *skip_ws(const char *p, bool commas)
{
	while (*p == ' ' || *p == '\t' || (commas && *p == ','))
		p++;
	return p;
}

/* p is at '"': unescape up to the closing quote, return the position after. */
static sf_ret take_quoted(const char **p, char **out, struct sf_error *err)
{
	const char *s = *p + 1;
	char *v = malloc(strlen(s) + 1), *w = v;

	if (!v)
		return oom(err);
	while (*s && *s != '"') {
		if (*s == '\\' && s[1])
			s++;
		*w++ = *s++;
	}
	*w = '\0';
	if (*s != '"') {
		free(v);
		return sf_fail(err, EINVAL, "WWW-Authenticate: unterminated quoted string");
	}
	*p = s + 1;
	*out = v;
	return 0;
}

/* A quoted string, or (leniently) anything up to a comma or white space:
 * some servers send realm=https://... unquoted. */
static sf_ret take_value(const char **p, char **out, struct sf_error *err)
{
	size_t n;

	if (**p == '"')
		return take_quoted(p, out, err);
	n = strcspn(*p, ", \t\"");
	*out = strndup(*p, n);
	*p += n;
	return *out ? 0 : oom(err);
}

static void set_param(struct sf_auth_challenge *c, const char *name, size_t n, char *value)
{
	char **slot = NULL;

	if (n == 5 && !strncasecmp(name, "realm", 5))
		slot = &c->realm;
	else if (n == 7 && !strncasecmp(name, "service", 7))
		slot = &c->service;
	else if (n == 5 && !strncasecmp(name, "scope", 5))
		slot = &c->scope;
	else if (n == 5 && !strncasecmp(name, "error", 5))
		slot = &c->error;
	if (slot && !*slot)
		*slot = value;
	else
		free(value);
}

/* Parameters of one challenge; stops at the start of the next challenge. */
static sf_ret parse_params(const char **pp, struct sf_auth_challenge *c, struct sf_error *err)
{
	const char *p = *pp;

	for (;;) {
		const char *name = p = skip_ws(p, true), *q;
		size_t n = token_len(name);
		char *value;
		if (!*p)
			break;
		if (n == 0)
			return sf_fail(err, EINVAL, "WWW-Authenticate: unexpected '%c'",
				       isprint((unsigned char)*p) ? *p : '?');
		q = skip_ws(name + n, false);
		if (*q != '=')
			break; /* a token alone: the next challenge's scheme */
		q = skip_ws(q + 1, false);
		sf_ret ret = take_value(&q, &value, err);
		if (ret < 0)
			return ret;
		set_param(c, name, n, value);
		p = q;
	}
	*pp = p;
	return 0;
}

static sf_ret parse_challenge(const char **pp, struct sf_auth_challenge *c, struct sf_error *err)
{
	const char *p = skip_ws(*pp, true);
	size_t n = token_len(p);

	memset(c, 0, sizeof(*c));
	if (n == 0)
		return sf_fail(err, EINVAL, "WWW-Authenticate: no authentication scheme");
	c->scheme = strndup(p, n);
	if (!c->scheme)
		return oom(err);
	p += n;
	if (*p && *p != ' ' && *p != '\t' && *p != ',')
		return sf_fail(err, EINVAL, "WWW-Authenticate: malformed scheme");
	*pp = p;
	return parse_params(pp, c, err);
}

static bool is_bearer(const struct sf_auth_challenge *c)
{
	return c->scheme && !strcasecmp(c->scheme, "Bearer");
}

sf_ret sf_parse_www_authenticate(const char *value, struct sf_auth_challenge *out,
				 struct sf_error *err)
{
	const char *p = value;

	memset(out, 0, sizeof(*out));
	if (!value || !*skip_ws(value, true))
		return sf_fail(err, EINVAL, "WWW-Authenticate: empty");
	if (strlen(value) > SF_WWW_AUTH_MAX)
		return sf_fail(err, EINVAL, "WWW-Authenticate: longer than %d bytes", SF_WWW_AUTH_MAX);
	while (*skip_ws(p, true)) {
		struct sf_auth_challenge c;
		sf_ret ret = parse_challenge(&p, &c, err);
		if (ret < 0) {
			sf_auth_challenge_clear(&c);
			sf_auth_challenge_clear(out);
			return ret;
		}
		if (!out->scheme || (!is_bearer(out) && is_bearer(&c))) {
			sf_auth_challenge_clear(out);
			*out = c;
		} else {
			sf_auth_challenge_clear(&c);
		}
	}
	return 0;
}

void sf_auth_challenge_clear(struct sf_auth_challenge *c)
{
	if (!c)
		return;
	free(c->scheme);
	free(c->realm);
	free(c->service);
	free(c->scope);
	free(c->error);
	memset(c, 0, sizeof(*c));
}

/* ---- token endpoint ---- */

static bool token_chars_ok(const char *t)
{
	for (; *t; t++)
		if (*t < 0x21 || *t > 0x7e)
			return false;
	return true;
}

/* A member that is absent or "" yields NULL; a non-string is an error. */
static sf_ret token_member(json_t *root, const char *key, const char **out,
			   struct sf_error *err)
{
	sf_ret ret = get_string(root, key, "token response", false, out, err);

	if (ret == 0 && *out && !**out)
		*out = NULL;
	return ret;
}

sf_ret sf_parse_token_response(const void *data, size_t len, char **token,
			       struct sf_error *err)
{
	const char *t = NULL;
	json_t *root;
	sf_ret ret;

	*token = NULL;
	ret = load_json(data, len, "token response", &root, err);
	if (ret == 0)
		ret = token_member(root, "token", &t, err);
	if (ret == 0 && !t)
		ret = token_member(root, "access_token", &t, err);
	if (ret == 0 && !t)
		ret = sf_fail(err, BAD_DOC, "token response has no token");
	if (ret == 0 && strlen(t) > SF_TOKEN_MAX_LEN)
		ret = sf_fail(err, BAD_DOC, "token is longer than %d bytes", SF_TOKEN_MAX_LEN);
	if (ret == 0 && !token_chars_ok(t))
		ret = sf_fail(err, BAD_DOC, "token contains characters not allowed in a header");
	if (ret == 0 && !(*token = strdup(t)))
		ret = oom(err);
	json_decref(root);
	return ret;
}

/* ---- registry error body ---- */

static void append_error(json_t *e, char *buf, size_t buflen)
{
	json_t *m = json_object_get(e, "message"), *c = json_object_get(e, "code");
	const char *s = NULL;
	char q[SF_QUOTE_MAX];
	size_t used = strlen(buf);

	if (json_is_string(m) && *json_string_value(m))
		s = json_string_value(m);
	else if (json_is_string(c) && *json_string_value(c))
		s = json_string_value(c);
	if (!s)
		return;
	snprintf(buf + used, buflen - used, "%s%s", used ? "; " : "", printable(s, q, sizeof(q)));
}

bool sf_parse_registry_error(const void *data, size_t len, char *buf, size_t buflen)
{
	json_t *root, *errors;

	if (!buflen)
		return false;
	buf[0] = '\0';
	if (load_json(data, len, "error body", &root, NULL) < 0)
		return false;
	errors = json_object_get(root, "errors");
	for (size_t i = 0; json_is_array(errors) && i < json_array_size(errors) &&
			   i < SF_REGISTRY_ERRORS_MAX; i++) {
		json_t *e = json_array_get(errors, i);
		if (json_is_object(e))
			append_error(e, buf, buflen);
	}
	json_decref(root);
	return buf[0] != '\0';
}
