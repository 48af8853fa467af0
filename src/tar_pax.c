/* tar_pax.c - PAX extended headers of the tar reader (see tar.c).
 *
 * The records of consecutive 'x' headers, gathered by tar.c, are split and
 * checked here and applied to the next entry: path, linkpath, size, uid,
 * gid, mtime (with fractions), xattrs (SCHILY.xattr.* raw,
 * LIBARCHIVE.xattr.* URL-encoded name and base64 value).  GNU.sparse.*
 * records are handed to tar_sparse.c.
 */
#include "tar-private.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define XATTR_NAME_MAX_LEN 255 /* Linux XATTR_NAME_MAX */
#define NSEC_PER_SEC 1000000000u
#define NSEC_DIGITS 9

/* ---- PAX records ---- */

bool tar_pax_key_is(const struct pax_rec *r, const char *key)
{
	return r->klen == strlen(key) && memcmp(r->key, key, r->klen) == 0;
}

static bool key_has_prefix(const struct pax_rec *r, const char *prefix)
{
	size_t n = strlen(prefix);
	return r->klen >= n && memcmp(r->key, prefix, n) == 0;
}

/* Split the next "<len> key=value\n" record off [*p, end).  1: a record,
 * 0: no more records, < 0: malformed. */
static sf_ret pax_next(struct sf_tar *t, const char **p, const char *end, struct pax_rec *rec)
{
	const char *s = *p, *q = s, *body, *eq;
	size_t left = (size_t)(end - s), hlen;
	uint64_t len;

	if (left == 0)
		return 0;
	while (q < end && *q >= '0' && *q <= '9')
		q++;
	if (q == s || q == end || *q != ' ')
		return tar_fail(t, EIO, "malformed PAX record length");
	if (!tar_parse_dec(s, (size_t)(q - s), SF_TAR_MAX_PAX, &len))
		return tar_fail(t, EIO, "PAX record length %.*s exceeds limit",
				(int)(q - s < QUOTE_MAX ? q - s : QUOTE_MAX), s);
	if (len > left)
		return tar_fail(t, EIO, "PAX record length %" PRIu64 " exceeds header size", len);
	hlen = (size_t)(q + 1 - s);
	if (len < hlen + 2 || s[len - 1] != '\n')
		return tar_fail(t, EIO, "PAX record length %" PRIu64 " does not match its record",
				len);
	body = s + hlen;
	eq = memchr(body, '=', (size_t)(s + len - 1 - body));
	if (!eq || eq == body || memchr(body, '\0', (size_t)(eq - body)))
		return tar_fail(t, EIO, "malformed PAX record key");
	rec->key = body;
	rec->klen = (size_t)(eq - body);
	rec->val = eq + 1;
	rec->vlen = (size_t)(s + len - 1 - rec->val);
	*p = s + len;
	return 1;
}

/* First pass: check the framing and learn the entry's name for messages. */
static sf_ret pax_scan_name(struct sf_tar *t)
{
	const char *p = t->pax_buf, *end = t->pax_buf + t->pax_len;
	struct pax_rec path = { 0 }, sname = { 0 }, rec;
	sf_ret r;

	while ((r = pax_next(t, &p, end, &rec)) > 0) {
		if (tar_pax_key_is(&rec, "path"))
			path = rec;
		else if (tar_pax_key_is(&rec, "GNU.sparse.name"))
			sname = rec;
	}
	if (r < 0)
		return r;
	if (sname.vlen)
		tar_set_ename(t, sname.val, sname.vlen);
	else if (path.vlen)
		tar_set_ename(t, path.val, path.vlen);
	return 0;
}

/* A path-like value; empty means "use the header's" (POSIX). */
sf_ret tar_pax_string(struct sf_tar *t, const struct pax_rec *r, char **out)
{
	char *s;

	free(*out);
	*out = NULL;
	if (r->vlen == 0)
		return 0;
	if (r->vlen > SF_TAR_MAX_PATH)
		return tar_fail(t, EIO, "PAX %.*s longer than %d bytes", (int)r->klen, r->key,
				SF_TAR_MAX_PATH);
	if (memchr(r->val, '\0', r->vlen))
		return tar_fail(t, EIO, "NUL byte in PAX %.*s", (int)r->klen, r->key);
	s = malloc(r->vlen + 1);
	if (!s)
		return tar_no_memory(t);
	memcpy(s, r->val, r->vlen);
	s[r->vlen] = '\0';
	*out = s;
	return 0;
}

static sf_ret pax_number(struct sf_tar *t, const struct pax_rec *r, uint64_t max, bool *has,
			 uint64_t *out)
{
	char q[QUOTE_MAX];

	*has = false;
	if (r->vlen == 0)
		return 0;
	if (!tar_parse_dec(r->val, r->vlen, max, out))
		return tar_fail(t, EIO, "invalid PAX %.*s '%s'", (int)r->klen, r->key,
				tar_quote(q, r->val, r->vlen));
	*has = true;
	return 0;
}

/* "[-]sec[.frac]"; negative times are floored: -1.5 is sec -2 + 0.5e9 ns. */
static bool parse_pax_time(const char *s, size_t n, int64_t *sec, uint32_t *nsec)
{
	bool neg = n > 0 && s[0] == '-';
	const char *dot;
	uint64_t whole, frac = 0;
	size_t i, wlen;

	if (neg) {
		s++;
		n--;
	}
	dot = memchr(s, '.', n);
	wlen = dot ? (size_t)(dot - s) : n;
	if (!tar_parse_dec(s, wlen, INT64_MAX, &whole))
		return false;
	for (i = wlen + (dot ? 1 : 0); i < n; i++) {
		unsigned d = (unsigned char)s[i] - '0';
		if (d > 9)
			return false;
		if (i - wlen <= NSEC_DIGITS)
			frac = frac * 10 + d;
	}
	for (i = dot ? n - wlen - 1 : 0; i < NSEC_DIGITS; i++)
		frac *= 10;
	if (neg && frac) {
		*sec = -(int64_t)whole - 1;
		*nsec = (uint32_t)(NSEC_PER_SEC - frac);
	} else {
		*sec = neg ? -(int64_t)whole : (int64_t)whole;
		*nsec = (uint32_t)frac;
	}
	return true;
}

static sf_ret pax_mtime(struct sf_tar *t, const struct pax_rec *r)
{
	char q[QUOTE_MAX];

	t->pax.has_mtime = false;
	if (r->vlen == 0)
		return 0;
	if (!parse_pax_time(r->val, r->vlen, &t->pax.mtime_sec, &t->pax.mtime_nsec))
		return tar_fail(t, EIO, "invalid PAX mtime '%s'", tar_quote(q, r->val, r->vlen));
	t->pax.has_mtime = true;
	return 0;
}

/* ---- xattrs ---- */

static sf_ret xattr_set(struct sf_tar *t, char *name, unsigned char *value, size_t len)
{
	struct sf_tar_entry *e = &t->entry;
	size_t i;

	for (i = 0; i < e->n_xattrs; i++)
		if (strcmp(e->xattrs[i].name, name) == 0)
			break;
	if (i == e->n_xattrs) {
		if (e->n_xattrs >= SF_TAR_MAX_XATTRS) {
			free(name);
			free(value);
			return tar_fail(t, EIO, "more than %d xattrs", SF_TAR_MAX_XATTRS);
		}
		if (e->n_xattrs == t->xattr_cap) {
			size_t cap = t->xattr_cap ? 2 * t->xattr_cap : 8;
			struct sf_tar_xattr *v = realloc(e->xattrs, cap * sizeof(*v));
			if (!v) {
				free(name);
				free(value);
				return tar_no_memory(t);
			}
			e->xattrs = v;
			t->xattr_cap = cap;
		}
		e->n_xattrs++;
	} else {
		free(e->xattrs[i].name);
		free(e->xattrs[i].value);
	}
	e->xattrs[i] = (struct sf_tar_xattr){ .name = name, .value = value, .len = len };
	return 0;
}

static sf_ret xattr_check(struct sf_tar *t, const char *name, size_t nlen, size_t vlen)
{
	char q[QUOTE_MAX];

	if (nlen == 0 || nlen > XATTR_NAME_MAX_LEN || memchr(name, '\0', nlen))
		return tar_fail(t, EIO, "invalid xattr name");
	if (vlen > SF_TAR_MAX_XATTR_VALUE)
		return tar_fail(t, EIO, "xattr %s value of %zu bytes exceeds limit %d",
				tar_quote(q, name, nlen), vlen, SF_TAR_MAX_XATTR_VALUE);
	return 0;
}

static sf_ret pax_schily_xattr(struct sf_tar *t, const struct pax_rec *r, size_t plen)
{
	const char *name = r->key + plen;
	size_t nlen = r->klen - plen;
	char *n;
	unsigned char *v;
	sf_ret ret = xattr_check(t, name, nlen, r->vlen);

	if (ret < 0)
		return ret;
	n = tar_memdup_str(name, nlen);
	v = malloc(r->vlen ? r->vlen : 1);
	if (!n || !v) {
		free(n);
		free(v);
		return tar_no_memory(t);
	}
	memcpy(v, r->val, r->vlen);
	return xattr_set(t, n, v, r->vlen);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* %XX-decode s into out (at least n + 1 bytes).  Returns the length or -1. */
static ssize_t url_decode(const char *s, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int hi, lo;
		if (s[i] != '%') {
			out[o++] = s[i];
			continue;
		}
		if (n - i < 3)
			return -1;
		hi = hexval(s[i + 1]);
		lo = hexval(s[i + 2]);
		if (hi < 0 || lo < 0)
			return -1;
		out[o++] = (char)(hi << 4 | lo);
		i += 2;
	}
	out[o] = '\0';
	return (ssize_t)o;
}

static int b64val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Decoded length of base64 s (padding optional), or -1 when invalid. */
static ssize_t b64_len(const char *s, size_t *n)
{
	size_t pad = 0;

	while (*n > 0 && s[*n - 1] == '=' && pad < 2) {
		(*n)--;
		pad++;
	}
	if (*n % 4 == 1)
		return -1;
	for (size_t i = 0; i < *n; i++)
		if (b64val(s[i]) < 0)
			return -1;
	return (ssize_t)(*n / 4 * 3 + (*n % 4 ? *n % 4 - 1 : 0));
}

static void b64_decode(const char *s, size_t n, unsigned char *out)
{
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		acc = acc << 6 | (uint32_t)b64val(s[i]);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
}

/* LIBARCHIVE.xattr.<url-encoded name>=<base64 value> */
static sf_ret pax_libarchive_xattr(struct sf_tar *t, const struct pax_rec *r, size_t plen)
{
	size_t enlen = r->klen - plen, vlen = r->vlen;
	ssize_t nlen, dlen = b64_len(r->val, &vlen);
	char *name;
	unsigned char *v;
	sf_ret ret;

	if (dlen < 0)
		return tar_fail(t, EIO, "malformed LIBARCHIVE.xattr value");
	name = malloc(enlen + 1);
	if (!name)
		return tar_no_memory(t);
	nlen = url_decode(r->key + plen, enlen, name);
	ret = nlen < 0 ? tar_fail(t, EIO, "malformed LIBARCHIVE.xattr name")
		       : xattr_check(t, name, (size_t)nlen, (size_t)dlen);
	if (ret < 0) {
		free(name);
		return ret;
	}
	v = malloc(dlen ? (size_t)dlen : 1);
	if (!v) {
		free(name);
		return tar_no_memory(t);
	}
	b64_decode(r->val, vlen, v);
	return xattr_set(t, name, v, (size_t)dlen);
}

/* ---- applying the records ---- */

static sf_ret pax_apply(struct sf_tar *t, const struct pax_rec *r)
{
	static const char schily[] = "SCHILY.xattr.", libarchive[] = "LIBARCHIVE.xattr.";
	struct pax_info *x = &t->pax;

	if (tar_pax_key_is(r, "path"))
		return tar_pax_string(t, r, &x->path);
	if (tar_pax_key_is(r, "linkpath"))
		return tar_pax_string(t, r, &x->linkpath);
	if (tar_pax_key_is(r, "size"))
		return pax_number(t, r, INT64_MAX, &x->has_size, &x->size);
	if (tar_pax_key_is(r, "uid"))
		return pax_number(t, r, INT64_MAX, &x->has_uid, &x->uid);
	if (tar_pax_key_is(r, "gid"))
		return pax_number(t, r, INT64_MAX, &x->has_gid, &x->gid);
	if (tar_pax_key_is(r, "mtime"))
		return pax_mtime(t, r);
	if (key_has_prefix(r, schily))
		return pax_schily_xattr(t, r, sizeof(schily) - 1);
	if (key_has_prefix(r, libarchive))
		return pax_libarchive_xattr(t, r, sizeof(libarchive) - 1);
	if (key_has_prefix(r, "GNU.sparse."))
		return tar_pax_sparse(t, r);
	return 0; /* uname, gname, atime, ctime, comment, charset, ...: ignored */
}

sf_ret tar_parse_pax(struct sf_tar *t)
{
	const char *p, *end;
	struct pax_rec rec;
	sf_ret r;

	if (!t->pax_buf)
		return 0;
	p = t->pax_buf;
	end = p + t->pax_len;
	r = pax_scan_name(t);
	if (r < 0)
		return r;
	while ((r = pax_next(t, &p, end, &rec)) > 0) {
		r = pax_apply(t, &rec);
		if (r < 0)
			return r;
	}
	return r;
}
