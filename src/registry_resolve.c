/* registry_resolve.c - resolve a reference to an image: manifest (an index
 * narrowed to this platform), config, layers; and rebuild an image from
 * saved documents.
 *
 * Whatever was fetched by digest is checked against it; a manifest fetched
 * by tag is recorded under the sha256 of its bytes.  The config blob is
 * checked against its digest and size, and its diff_ids are paired with
 * the layers.
 *
 * Mirrors: the endpoints (registry-private.h) are tried in order, the
 * registry itself last; the first one that yields a complete, verified
 * image becomes r->ep, which transfers then take for the blobs.  Each try
 * works on its endpoint alone and r->ep is published once, at the end, so
 * transfers running meanwhile never see an endpoint that did not serve the
 * image (registry.h, sf_registry_endpoint).  A mirror's failure (missing
 * image, unreachable, bad data) only moves on to the next endpoint; the
 * error reported is the registry's own.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "registry-private.h"

#include <errno.h>
#include <string.h>

#include "digest.h"

#define xfmt sf_reg_xfmt
#define oom sf_reg_oom

/* ---- resolve ---- */

struct fetched {
	char *body;
	size_t len;
	char digest[SF_DIGEST_STR_LEN + 1]; /* sha256 of body */
};

static sf_ret verify_digest(struct sf_registry *r, const char *what, struct fetched *f,
			    const char *expect, struct sf_error *err)
{
	sf_sha256_buf(f->body ? f->body : "", f->len, f->digest);
	if (!expect || strcmp(expect, f->digest) == 0)
		return 0;
	return sf_fail(err, EIO, "%s: %s digest mismatch: expected %s, got %s", r->ref_str, what,
		       expect, f->digest);
}

/* GET a manifest from ep by tag or digest; expect = the digest it must have. */
static sf_ret fetch_manifest(struct sf_endpoint *ep, const char *reference, const char *expect,
			     struct fetched *f, struct sf_manifest *m, struct sf_error *err)
{
	struct sf_registry *r = ep->reg;
	_cleanup_free_ char *url = xfmt("%s/v2/%s/manifests/%s", ep->base, ep->repository,
					reference);
	_cleanup_free_ char *what = NULL;
	struct http_resp resp = { 0 };
	bool child = expect && (!r->ref.digest || strcmp(expect, r->ref.digest));
	sf_ret ret;

	if (!url || !(what = child ? xfmt("manifest %s: ", expect) : strdup("")))
		return oom(err);
	ret = sf_reg_get(r, ep, url, ACCEPT_MANIFEST, &resp, err);
	if (ret == 0)
		ret = sf_reg_check_status(r, ep, &resp, what, err);
	f->body = steal_pointer(&resp.body);
	f->len = resp.len;
	if (ret == 0)
		ret = verify_digest(r, "manifest", f, expect, err);
	if (ret == 0) {
		ret = sf_manifest_parse(resp.content_type, f->body, f->len, m, err);
		if (ret < 0)
			sf_error_prefix(err, "%s: manifest %s", r->ref_str, f->digest);
	}
	sf_reg_resp_clear(&resp);
	return ret;
}

static sf_ret follow_index(struct sf_endpoint *ep, struct fetched *doc, struct sf_manifest *m,
			   struct sf_error *err)
{
	struct sf_registry *r = ep->reg;
	struct sf_platform want = { r->os, r->arch, r->variant };
	const struct sf_index_entry *e;
	struct sf_manifest child = { 0 };
	struct fetched cf = { 0 };
	_cleanup_free_ char *digest = NULL;
	sf_ret ret = sf_index_select(m, &want, &e, err);

	if (ret < 0) {
		sf_error_prefix(err, "%s", r->ref_str);
		return ret;
	}
	if (e->desc.size > SF_RESPONSE_MAX)
		return sf_fail(err, EFBIG, "%s: manifest %s is %llu bytes, over the limit",
			       r->ref_str, e->desc.digest, (unsigned long long)e->desc.size);
	digest = strdup(e->desc.digest);
	if (!digest)
		return oom(err);
	ret = fetch_manifest(ep, digest, digest, &cf, &child, err);
	if (ret == 0 && cf.len != e->desc.size)
		ret = sf_fail(err, EIO, "%s: manifest %s is %zu bytes, the index says %llu",
			      r->ref_str, digest, cf.len, (unsigned long long)e->desc.size);
	if (ret == 0 && child.kind != SF_KIND_IMAGE)
		ret = sf_fail(err, ENOTSUP, "%s: index entry %s is itself an index "
			      "(nested indexes are not supported)", r->ref_str, digest);
	if (ret < 0) {
		free(cf.body);
		sf_manifest_clear(&child);
		return ret;
	}
	sf_manifest_clear(m);
	*m = child;
	free(doc->body);
	*doc = cf;
	return 0;
}

static sf_ret resolve_manifest(struct sf_endpoint *ep, struct sf_image *img,
			       struct sf_manifest *m, struct sf_error *err)
{
	const struct sf_ref *ref = &ep->reg->ref;
	const char *reference = ref->digest ? ref->digest : ref->tag;
	struct fetched f = { 0 };
	sf_ret ret = fetch_manifest(ep, reference, ref->digest, &f, m, err);

	if (ret == 0 && m->kind == SF_KIND_INDEX)
		ret = follow_index(ep, &f, m, err);
	if (ret == 0) {
		img->manifest_digest = strdup(f.digest);
		img->manifest_json = f.body ? steal_pointer(&f.body) : strdup("");
		if (!img->manifest_digest || !img->manifest_json)
			ret = oom(err);
	}
	free(f.body);
	return ret;
}

static sf_ret fetch_config(struct sf_endpoint *ep, struct sf_image *img,
			   const struct sf_manifest *m, struct fetched *f, struct sf_error *err)
{
	struct sf_registry *r = ep->reg;
	const struct sf_descriptor *c = &m->config;
	_cleanup_free_ char *url = sf_endpoint_blob_url(ep, c->digest);
	struct http_resp resp = { 0 };
	sf_ret ret;

	if (c->size > SF_RESPONSE_MAX)
		return sf_fail(err, EFBIG, "%s: config %s is %llu bytes, over the limit of %u",
			       r->ref_str, c->digest, (unsigned long long)c->size, SF_RESPONSE_MAX);
	if (!url)
		return oom(err);
	ret = sf_reg_get(r, ep, url, NULL, &resp, err);
	if (ret == 0)
		ret = sf_reg_check_status(r, ep, &resp, "config blob: ", err);
	f->body = steal_pointer(&resp.body);
	f->len = resp.len;
	sf_reg_resp_clear(&resp);
	if (ret == 0)
		ret = verify_digest(r, "config", f, c->digest, err);
	if (ret == 0 && f->len != c->size)
		ret = sf_fail(err, EIO, "%s: config %s is %zu bytes, the manifest says %llu",
			      r->ref_str, c->digest, f->len, (unsigned long long)c->size);
	if (ret == 0 && !(img->config_digest = strdup(c->digest)))
		ret = oom(err);
	return ret;
}

static sf_ret fill_layer(const char *ref_str, struct sf_layer_desc *l,
			 struct sf_descriptor *d, char **diff_id, struct sf_error *err)
{
	sf_ret ret;

	l->digest = steal_pointer(&d->digest);
	l->media_type = steal_pointer(&d->media_type);
	l->size = d->size;
	l->diff_id = steal_pointer(diff_id);
	ret = sf_compression_from_media_type(l->media_type, &l->compression, err);
	if (ret < 0)
		sf_error_prefix(err, "%s: layer %s", ref_str, l->digest);
	return ret;
}

static sf_ret fill_layers(const char *ref_str, struct sf_image *img, struct sf_manifest *m,
			  struct sf_image_config *cfg, struct sf_error *err)
{
	img->layers = calloc(m->n_layers ? m->n_layers : 1, sizeof(*img->layers));
	if (!img->layers)
		return oom(err);
	for (size_t i = 0; i < m->n_layers; i++) {
		img->n_layers++;
		sf_ret ret =
			fill_layer(ref_str, &img->layers[i], &m->layers[i], &cfg->diff_ids[i], err);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static sf_ret resolve_config(struct sf_endpoint *ep, struct sf_image *img,
			     struct sf_manifest *m, struct sf_error *err)
{
	struct sf_registry *r = ep->reg;
	struct sf_image_config cfg = { 0 };
	struct fetched f = { 0 };
	sf_ret ret = fetch_config(ep, img, m, &f, err);

	if (ret == 0) {
		ret = sf_config_parse(f.body, f.len, m->n_layers, &cfg, err);
		if (ret < 0)
			sf_error_prefix(err, "%s: config %s", r->ref_str, m->config.digest);
	}
	if (ret == 0)
		ret = fill_layers(r->ref_str, img, m, &cfg, err);
	if (ret == 0)
		img->config_json = steal_pointer(&f.body);
	sf_image_config_clear(&cfg);
	free(f.body);
	return ret;
}

static sf_ret resolve_at(struct sf_endpoint *ep, struct sf_image *img, struct sf_error *err)
{
	struct sf_manifest m = { 0 };
	sf_ret ret = 0;

	memset(img, 0, sizeof(*img));
	img->ref = strdup(ep->reg->ref_str);
	if (!img->ref)
		ret = oom(err);
	if (ret == 0)
		ret = resolve_manifest(ep, img, &m, err);
	if (ret == 0)
		ret = resolve_config(ep, img, &m, err);
	sf_manifest_clear(&m);
	if (ret < 0)
		sf_image_clear(img);
	return ret;
}

sf_ret sf_registry_resolve(struct sf_registry *r, struct sf_image *img, struct sf_error *err)
{
	sf_ret ret = -ENOENT;

	for (size_t i = 0; i < r->n_eps; i++) {
		struct sf_endpoint *ep = &r->eps[i];
		struct sf_error e = { 0 };

		ret = resolve_at(ep, img, &e);
		if (ret == 0) {
			__atomic_store_n(&r->ep, ep, __ATOMIC_RELEASE);
			return 0;
		}
		if (err)
			*err = e;
		if (ep->mirror)
			sf_error_prefix(err, "%s", ep->peer); /* if it was the last one */
	}
	return ret;
}

/* The documents were checked when they were first fetched; check their
 * digests again anyway, since they come back from a file. */
static sf_ret image_from_documents(struct sf_image *img, const char *manifest_digest,
				   const char *manifest_json, const char *config_json,
				   struct sf_manifest *m, struct sf_error *err)
{
	struct sf_image_config cfg = { 0 };
	char got[SF_DIGEST_STR_LEN + 1];
	sf_ret ret;

	sf_sha256_buf(manifest_json, strlen(manifest_json), got);
	if (strcmp(got, manifest_digest) != 0)
		return sf_fail(err, EIO, "%s: saved manifest does not match %s", img->ref,
			       manifest_digest);
	ret = sf_manifest_parse(NULL, manifest_json, strlen(manifest_json), m, err);
	if (ret == 0 && m->kind != SF_KIND_IMAGE)
		ret = sf_fail(err, EBADMSG, "%s: saved manifest is not an image manifest", img->ref);
	if (ret < 0)
		return ret;
	sf_sha256_buf(config_json, strlen(config_json), got);
	if (strcmp(got, m->config.digest) != 0)
		return sf_fail(err, EIO, "%s: saved config does not match %s", img->ref,
			       m->config.digest);
	ret = sf_config_parse(config_json, strlen(config_json), m->n_layers, &cfg, err);
	if (ret == 0)
		ret = fill_layers(img->ref, img, m, &cfg, err);
	sf_image_config_clear(&cfg);
	return ret;
}

sf_ret sf_image_from_documents(const char *ref, const char *manifest_digest,
			       const char *manifest_json, const char *config_json,
			       struct sf_image *img, struct sf_error *err)
{
	struct sf_manifest m = { 0 };
	sf_ret ret;

	memset(img, 0, sizeof(*img));
	img->ref = strdup(ref);
	img->manifest_digest = strdup(manifest_digest);
	img->manifest_json = strdup(manifest_json);
	img->config_json = strdup(config_json);
	if (!img->ref || !img->manifest_digest || !img->manifest_json || !img->config_json)
		ret = oom(err);
	else
		ret = image_from_documents(img, manifest_digest, manifest_json, config_json, &m,
					   err);
	if (ret == 0 && !(img->config_digest = strdup(m.config.digest)))
		ret = oom(err);
	sf_manifest_clear(&m);
	if (ret < 0)
		sf_image_clear(img);
	return ret;
}

void sf_image_clear(struct sf_image *img)
{
	if (!img)
		return;
	free(img->ref);
	free(img->manifest_digest);
	free(img->manifest_json);
	free(img->config_digest);
	free(img->config_json);
	for (size_t i = 0; i < img->n_layers; i++) {
		free(img->layers[i].digest);
		free(img->layers[i].media_type);
		free(img->layers[i].diff_id);
	}
	free(img->layers);
	memset(img, 0, sizeof(*img));
}

