/* regconf.c - registries.conf mirrors and certs.d CA certificates; see
 * regconf.h for what is read and how references match.
 *
 * The TOML reader is a single pass over the text with a cursor (struct
 * toml); every value is parsed fully (so syntax errors anywhere are
 * reported) but only strings and booleans of the keys we know are kept.
 * Invariants: `cur` is the [[registry]] the following keys belong to (or
 * NULL), `mir` the [[registry.mirror]] of it (or NULL), `other` is set
 * inside any other table, whose keys are ignored.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "regconf.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define KEY_MAX 256
#define ARRAY_DEPTH_MAX 16

static sf_ret oom(struct sf_error *err)
{
	return sf_fail(err, ENOMEM, "out of memory");
}

/* ---- the TOML subset ---- */

enum vtype { T_STRING, T_BOOL, T_INT, T_ARRAY };

struct value {
	enum vtype type;
	char *s;
	bool b;
};

struct toml {
	const char *p;
	const char *name;
	int line;
	struct sf_regconf *c;
	struct sf_regconf_entry *cur;
	struct sf_mirror *mir;
	bool other;
	struct sf_error *err;
};

static sf_ret bad(struct toml *t, const char *what)
{
	return sf_fail(t->err, EINVAL, "%s: line %d: %s", t->name, t->line, what);
}

static void skip_ws(struct toml *t)
{
	while (*t->p == ' ' || *t->p == '\t')
		t->p++;
}

/* Whitespace, comments and newlines (inside arrays). */
static void skip_all(struct toml *t)
{
	for (;;) {
		skip_ws(t);
		if (*t->p == '#')
			while (*t->p && *t->p != '\n')
				t->p++;
		if (*t->p == '\r' && t->p[1] == '\n')
			t->p++;
		if (*t->p != '\n')
			return;
		t->p++;
		t->line++;
	}
}

static bool bare_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '_' || ch == '-';
}

static void put_utf8(char **w, uint32_t cp)
{
	char *o = *w;

	if (cp < 0x80) {
		*o++ = (char)cp;
	} else if (cp < 0x800) {
		*o++ = (char)(0xc0 | (cp >> 6));
		*o++ = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		*o++ = (char)(0xe0 | (cp >> 12));
		*o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
		*o++ = (char)(0x80 | (cp & 0x3f));
	} else {
		*o++ = (char)(0xf0 | (cp >> 18));
		*o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
		*o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
		*o++ = (char)(0x80 | (cp & 0x3f));
	}
	*w = o;
}

static sf_ret escape(struct toml *t, char **w)
{
	char ch = *t->p++;
	int n = 0;
	uint32_t cp = 0;

	switch (ch) {
	case 'b': *(*w)++ = '\b'; return 0;
	case 't': *(*w)++ = '\t'; return 0;
	case 'n': *(*w)++ = '\n'; return 0;
	case 'f': *(*w)++ = '\f'; return 0;
	case 'r': *(*w)++ = '\r'; return 0;
	case '"': *(*w)++ = '"'; return 0;
	case '\\': *(*w)++ = '\\'; return 0;
	case 'u': n = 4; break;
	case 'U': n = 8; break;
	default: return bad(t, "unknown escape in a string");
	}
	for (int i = 0; i < n; i++, t->p++) {
		char h = *t->p;
		int d = h >= '0' && h <= '9' ? h - '0'
			: h >= 'a' && h <= 'f' ? h - 'a' + 10
			: h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
		if (d < 0)
			return bad(t, "bad \\u escape");
		cp = cp * 16 + (uint32_t)d;
	}
	if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return bad(t, "bad \\u escape");
	put_utf8(w, cp);
	return 0;
}

/* A basic ("...") or literal ('...') one-line string; *out new. */
static sf_ret string(struct toml *t, char **out)
{
	char q = *t->p++;
	const char *end;
	char *w;
	sf_ret r;

	if (*t->p == q && t->p[1] == q)
		return bad(t, "multi-line strings are not supported");
	end = t->p;
	while (*end && *end != q && *end != '\n')
		end += (q == '"' && *end == '\\' && end[1]) ? 2 : 1;
	if (*end != q)
		return bad(t, "unterminated string");
	*out = w = malloc((size_t)(end - t->p) * 2 + 1); /* \u escapes grow by at most 2x */
	if (!w)
		return oom(t->err);
	while (t->p < end) {
		if (q == '"' && *t->p == '\\') {
			t->p++;
			r = escape(t, &w);
			if (r < 0) {
				free(*out);
				*out = NULL;
				return r;
			}
		} else {
			*w++ = *t->p++;
		}
	}
	*w = '\0';
	t->p++;
	return 0;
}

static sf_ret value(struct toml *t, struct value *v, int depth);

static sf_ret array(struct toml *t, int depth)
{
	struct value v;
	sf_ret r;

	if (depth > ARRAY_DEPTH_MAX)
		return bad(t, "arrays nested too deep");
	t->p++;
	for (;;) {
		skip_all(t);
		if (*t->p == ']') {
			t->p++;
			return 0;
		}
		r = value(t, &v, depth + 1);
		if (r < 0)
			return r;
		free(v.s);
		skip_all(t);
		if (*t->p == ',')
			t->p++;
		else if (*t->p != ']')
			return bad(t, "expected ',' or ']' in an array");
	}
}

static sf_ret value(struct toml *t, struct value *v, int depth)
{
	memset(v, 0, sizeof(*v));
	if (*t->p == '"' || *t->p == '\'') {
		v->type = T_STRING;
		return string(t, &v->s);
	}
	if (*t->p == '[') {
		v->type = T_ARRAY;
		return array(t, depth);
	}
	if (!strncmp(t->p, "true", 4) && !bare_char(t->p[4])) {
		v->type = T_BOOL;
		v->b = true;
		t->p += 4;
		return 0;
	}
	if (!strncmp(t->p, "false", 5) && !bare_char(t->p[5])) {
		v->type = T_BOOL;
		t->p += 5;
		return 0;
	}
	if (*t->p == '+' || *t->p == '-' || (*t->p >= '0' && *t->p <= '9')) {
		const char *s = t->p + (*t->p == '+' || *t->p == '-');
		if (!(*s >= '0' && *s <= '9'))
			return bad(t, "bad number");
		while ((*s >= '0' && *s <= '9') || *s == '_')
			s++;
		v->type = T_INT;
		t->p = s;
		return 0;
	}
	if (*t->p == '{')
		return bad(t, "inline tables are not supported");
	return bad(t, "expected a string, boolean, integer or array");
}

/* A dotted key ("a.b", "a.\"b c\""), joined with '.' into buf. */
static sf_ret key(struct toml *t, char *buf, size_t len)
{
	size_t n = 0;
	sf_ret r;

	for (;;) {
		char *part = NULL;
		const char *s;
		size_t pl;

		skip_ws(t);
		if (*t->p == '"' || *t->p == '\'') {
			r = string(t, &part);
			if (r < 0)
				return r;
			s = part;
			pl = strlen(part);
		} else {
			s = t->p;
			while (bare_char(*t->p))
				t->p++;
			pl = (size_t)(t->p - s);
			if (!pl)
				return bad(t, "expected a key");
		}
		if (n + pl + 2 > len) {
			free(part);
			return bad(t, "key too long");
		}
		if (n)
			buf[n++] = '.';
		memcpy(buf + n, s, pl);
		n += pl;
		buf[n] = '\0';
		free(part);
		skip_ws(t);
		if (*t->p != '.')
			return 0;
		t->p++;
	}
}

static sf_ret end_of_line(struct toml *t)
{
	skip_ws(t);
	if (*t->p == '#')
		while (*t->p && *t->p != '\n')
			t->p++;
	if (*t->p == '\r')
		t->p++;
	if (*t->p && *t->p != '\n')
		return bad(t, "unexpected text after a value");
	return 0;
}

static void *grow(void *arr, size_t n, size_t size)
{
	return realloc(arr, (n + 1) * size);
}

static sf_ret header(struct toml *t)
{
	bool aot = t->p[1] == '[';
	char k[KEY_MAX];
	sf_ret r;

	t->p += aot ? 2 : 1;
	r = key(t, k, sizeof(k));
	if (r < 0)
		return r;
	if (*t->p != ']' || (aot && t->p[1] != ']'))
		return bad(t, "unterminated table header");
	t->p += aot ? 2 : 1;
	t->other = false;
	t->mir = NULL;
	if (aot && !strcmp(k, "registry")) {
		struct sf_regconf_entry *a = grow(t->c->regs, t->c->n, sizeof(*a));
		if (!a)
			return oom(t->err);
		t->c->regs = a;
		t->cur = &a[t->c->n++];
		memset(t->cur, 0, sizeof(*t->cur));
	} else if (aot && !strcmp(k, "registry.mirror")) {
		struct sf_mirror *m;
		if (!t->cur)
			return bad(t, "[[registry.mirror]] before any [[registry]]");
		m = grow(t->cur->mirrors, t->cur->n_mirrors, sizeof(*m));
		if (!m)
			return oom(t->err);
		t->cur->mirrors = m;
		t->mir = &m[t->cur->n_mirrors++];
		memset(t->mir, 0, sizeof(*t->mir));
	} else if (!strcmp(k, "registry") || !strcmp(k, "registry.mirror")) {
		return bad(t, "[registry] must be an array of tables: [[registry]]");
	} else {
		t->cur = NULL;
		t->other = true;
	}
	return end_of_line(t);
}

static sf_ret want(struct toml *t, const struct value *v, enum vtype type, const char *k)
{
	char msg[KEY_MAX + 40];

	if (v->type == type)
		return 0;
	snprintf(msg, sizeof(msg), "\"%s\" must be a %s", k, type == T_BOOL ? "boolean" : "string");
	return bad(t, msg);
}

/* Store v under key k of the current table; steals v->s when kept. */
static sf_ret assign(struct toml *t, const char *k, struct value *v)
{
	char **sp = NULL;
	bool *bp = NULL;
	sf_ret r;

	if (t->mir) {
		if (!strcmp(k, "location"))
			sp = &t->mir->location;
		else if (!strcmp(k, "pull-from-mirror"))
			sp = &t->mir->pull_from;
		else if (!strcmp(k, "insecure"))
			bp = &t->mir->insecure;
	} else if (t->cur) {
		if (!strcmp(k, "prefix"))
			sp = &t->cur->prefix;
		else if (!strcmp(k, "location"))
			sp = &t->cur->location;
		else if (!strcmp(k, "insecure"))
			bp = &t->cur->insecure;
		else if (!strcmp(k, "blocked"))
			bp = &t->cur->blocked;
		else if (!strcmp(k, "mirror-by-digest-only"))
			bp = &t->cur->mirror_by_digest_only;
	}
	if (sp) {
		r = want(t, v, T_STRING, k);
		if (r < 0)
			return r;
		free(*sp);
		*sp = v->s;
		v->s = NULL;
	} else if (bp) {
		r = want(t, v, T_BOOL, k);
		if (r < 0)
			return r;
		*bp = v->b;
	}
	return 0;
}

static sf_ret keyval(struct toml *t)
{
	char k[KEY_MAX];
	struct value v;
	sf_ret r = key(t, k, sizeof(k));

	if (r < 0)
		return r;
	if (*t->p != '=')
		return bad(t, "expected '=' after a key");
	t->p++;
	skip_ws(t);
	r = value(t, &v, 0);
	if (r == 0 && !t->other)
		r = assign(t, k, &v);
	free(v.s);
	return r < 0 ? r : end_of_line(t);
}

static sf_ret check_entries(struct toml *t)
{
	for (size_t i = 0; i < t->c->n; i++) {
		struct sf_regconf_entry *e = &t->c->regs[i];
		if (!e->location && !e->prefix)
			return sf_fail(t->err, EINVAL, "%s: [[registry]] #%zu has neither prefix "
				       "nor location", t->name, i + 1);
		if (!e->prefix && !(e->prefix = strdup(e->location)))
			return oom(t->err);
		for (size_t m = 0; m < e->n_mirrors; m++) {
			const char *pf = e->mirrors[m].pull_from;
			if (!e->mirrors[m].location || !*e->mirrors[m].location)
				return sf_fail(t->err, EINVAL, "%s: a mirror of \"%s\" has no location",
					       t->name, e->prefix);
			if (pf && strcmp(pf, "all") && strcmp(pf, "digest-only") &&
			    strcmp(pf, "tag-only"))
				return sf_fail(t->err, EINVAL, "%s: pull-from-mirror \"%.40s\" is not "
					       "all, digest-only or tag-only", t->name, pf);
		}
	}
	return 0;
}

sf_ret sf_regconf_parse(const char *text, const char *name, struct sf_regconf *out,
			struct sf_error *err)
{
	struct toml t = { .p = text, .name = name, .line = 1, .c = out, .err = err };
	sf_ret r = 0;

	memset(out, 0, sizeof(*out));
	for (;;) {
		skip_all(&t);
		if (!*t.p)
			break;
		r = *t.p == '[' ? header(&t) : keyval(&t);
		if (r < 0)
			break;
	}
	if (r == 0)
		r = check_entries(&t);
	if (r < 0)
		sf_regconf_clear(out);
	return r;
}

static sf_ret read_file(const char *path, size_t max, bool must_exist, char **out, size_t *len,
			struct sf_error *err)
{
	FILE *f = fopen(path, "re");
	char *buf;
	size_t n;

	*out = NULL;
	*len = 0;
	if (!f) {
		if (errno == ENOENT && !must_exist)
			return 0;
		return sf_fail(err, errno, "%s: %s", path, strerror(errno));
	}
	buf = malloc(max + 1);
	if (!buf) {
		fclose(f);
		return oom(err);
	}
	n = fread(buf, 1, max + 1, f);
	if (ferror(f) || n > max) {
		int e = ferror(f) ? EIO : EFBIG;
		fclose(f);
		free(buf);
		return sf_fail(err, e, "%s: %s", path,
			       e == EFBIG ? "file too large" : "read error");
	}
	fclose(f);
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

sf_ret sf_regconf_load(const char *path, bool must_exist, struct sf_regconf *out,
		       struct sf_error *err)
{
	_cleanup_free_ char *text = NULL;
	size_t len;
	sf_ret r = read_file(path, SF_REGCONF_MAX, must_exist, &text, &len, err);

	memset(out, 0, sizeof(*out));
	if (r < 0 || !text)
		return r;
	if (strlen(text) != len)
		return sf_fail(err, EINVAL, "%s: contains a NUL byte", path);
	return sf_regconf_parse(text, path, out, err);
}

static void entry_clear(struct sf_regconf_entry *e)
{
	free(e->prefix);
	free(e->location);
	for (size_t m = 0; m < e->n_mirrors; m++) {
		free(e->mirrors[m].location);
		free(e->mirrors[m].pull_from);
	}
	free(e->mirrors);
	memset(e, 0, sizeof(*e));
}

/* Move the entries of add into c (add is left empty). */
static sf_ret merge(struct sf_regconf *c, struct sf_regconf *add, struct sf_error *err)
{
	for (size_t i = 0; i < add->n; i++) {
		struct sf_regconf_entry *e = &add->regs[i], *slot = NULL;
		for (size_t k = 0; k < c->n && !slot; k++)
			if (!strcmp(c->regs[k].prefix, e->prefix))
				slot = &c->regs[k];
		if (!slot) {
			struct sf_regconf_entry *a = grow(c->regs, c->n, sizeof(*a));
			if (!a)
				return oom(err);
			c->regs = a;
			slot = &c->regs[c->n++];
			memset(slot, 0, sizeof(*slot));
		}
		entry_clear(slot);
		*slot = *e;
		memset(e, 0, sizeof(*e));
	}
	sf_regconf_clear(add);
	return 0;
}

static int conf_name(const struct dirent *d)
{
	size_t l = strlen(d->d_name);

	return d->d_name[0] != '.' && l > 5 && !strcmp(d->d_name + l - 5, ".conf");
}

sf_ret sf_regconf_load_all(const char *path, bool must_exist, struct sf_regconf *out,
			   struct sf_error *err)
{
	_cleanup_free_ char *dir = NULL;
	struct dirent **names = NULL;
	int n;
	sf_ret r = sf_regconf_load(path, must_exist, out, err);

	if (r < 0)
		return r;
	if (asprintf(&dir, "%s.d", path) < 0) {
		sf_regconf_clear(out);
		return oom(err);
	}
	n = scandir(dir, &names, conf_name, alphasort);
	for (int i = 0; i < n; i++) {
		_cleanup_free_ char *p = NULL;
		struct sf_regconf add;
		if (r == 0 && asprintf(&p, "%s/%s", dir, names[i]->d_name) < 0)
			r = oom(err);
		if (r == 0)
			r = sf_regconf_load(p, true, &add, err);
		if (r == 0)
			r = merge(out, &add, err);
		free(names[i]);
	}
	free(names);
	if (r < 0)
		sf_regconf_clear(out);
	return r;
}

void sf_regconf_clear(struct sf_regconf *c)
{
	for (size_t i = 0; c && i < c->n; i++)
		entry_clear(&c->regs[i]);
	if (c) {
		free(c->regs);
		memset(c, 0, sizeof(*c));
	}
}

/* ---- matching ---- */

/* Length of the matched part of "registry/repository" (name), or 0. */
static size_t match_len(const char *prefix, const char *name, const char *registry)
{
	size_t pl = strlen(prefix);

	if (!strncmp(prefix, "*.", 2)) {
		size_t rl = strlen(registry);
		if (strchr(prefix, '/') || rl <= pl - 1 ||
		    strcmp(registry + rl - (pl - 1), prefix + 1))
			return 0;
		return rl;
	}
	if (strncmp(prefix, name, pl) || (name[pl] && name[pl] != '/'))
		return 0;
	return pl;
}

const struct sf_regconf_entry *sf_regconf_find(const struct sf_regconf *c, const char *registry,
					       const char *repository)
{
	const struct sf_regconf_entry *best = NULL;
	size_t best_len = 0, n = strlen(registry) + strlen(repository) + 2;
	char *name = malloc(n);

	if (!name)
		return NULL;
	snprintf(name, n, "%s/%s", registry, repository);
	for (size_t i = 0; c && i < c->n; i++) {
		size_t l = match_len(c->regs[i].prefix, name, registry);
		if (l > best_len) {
			best = &c->regs[i];
			best_len = l;
		}
	}
	free(name);
	return best;
}

sf_ret sf_regconf_rewrite(const struct sf_regconf_entry *e, const char *loc,
			  const char *registry, const char *repository, char **host,
			  char **repo, struct sf_error *err)
{
	size_t n = strlen(registry) + strlen(repository) + 2, ml;
	_cleanup_free_ char *name = malloc(n), *full = NULL;
	const char *rest, *slash;

	*host = *repo = NULL;
	if (!name)
		return oom(err);
	snprintf(name, n, "%s/%s", registry, repository);
	ml = match_len(e->prefix, name, registry);
	rest = name + ml; /* "" or "/..." */
	if (asprintf(&full, "%s%s", loc, rest) < 0)
		return oom(err);
	slash = strchr(full, '/');
	if (!slash || slash == full || !slash[1])
		return sf_fail(err, EINVAL, "registries.conf: location \"%.200s\" for %s leaves no "
			       "repository", loc, name);
	*host = strndup(full, (size_t)(slash - full));
	*repo = strdup(slash + 1);
	if (!*host || !*repo) {
		free(*host);
		free(*repo);
		*host = *repo = NULL;
		return oom(err);
	}
	return 0;
}

/* ---- certs.d ---- */

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static sf_ret append(char **pem, size_t *len, const char *data, size_t n, struct sf_error *err)
{
	char *p;

	if (*len + n + 2 > SF_CA_PEM_MAX)
		return sf_fail(err, EFBIG, "CA certificates larger than %u bytes", SF_CA_PEM_MAX);
	p = realloc(*pem, *len + n + 2);
	if (!p)
		return oom(err);
	memcpy(p + *len, data, n);
	*len += n;
	p[(*len)++] = '\n';
	p[*len] = '\0';
	*pem = p;
	return 0;
}

#define PEM_CERT_BEGIN "-----BEGIN CERTIFICATE-----"

/* Append path's PEM text.  A file without a PEM certificate would make
 * curl refuse the whole bundle later ("error importing CA certificate
 * blob", naming neither file nor cause): strict (--tls-ca) names the file
 * now; in certs.d such a file is skipped, as containers/image's
 * AppendCertsFromPEM ignores it. */
static sf_ret append_file(const char *path, bool strict, char **pem, size_t *len,
			  struct sf_error *err)
{
	_cleanup_free_ char *text = NULL;
	size_t n;
	sf_ret r = read_file(path, SF_CA_PEM_MAX, true, &text, &n, err);

	if (r == 0 && !memmem(text, n, PEM_CERT_BEGIN, strlen(PEM_CERT_BEGIN)))
		return strict ? sf_fail(err, EINVAL, "%s: no PEM certificate (" PEM_CERT_BEGIN
					") in it", path)
			      : 0;
	if (r == 0)
		r = append(pem, len, text, n, err);
	return r;
}

/* Every *.crt of dir, in name order. */
static sf_ret append_dir(const char *dir, char **pem, size_t *len, struct sf_error *err)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0;
	sf_ret r = 0;

	if (!d)
		return errno == ENOENT || errno == ENOTDIR ? 0
			: sf_fail(err, errno, "%s: %s", dir, strerror(errno));
	while (r == 0 && (de = readdir(d))) {
		size_t l = strlen(de->d_name);
		char **nn;
		if (l < 5 || strcmp(de->d_name + l - 4, ".crt"))
			continue;
		nn = realloc(names, (n + 1) * sizeof(*names));
		if (!nn || !(nn[n] = strdup(de->d_name)))
			r = oom(err);
		if (nn)
			names = nn;
		if (r == 0)
			n++;
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), by_name);
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *p = NULL;
		if (r == 0 && asprintf(&p, "%s/%s", dir, names[i]) < 0)
			r = oom(err);
		if (r == 0)
			r = append_file(p, false, pem, len, err);
		free(names[i]);
	}
	free(names);
	return r;
}

sf_ret sf_certs_for_host(const char *host, const char *dirs, const char *extra, char **pem,
			 size_t *len, struct sf_error *err)
{
	_cleanup_free_ char *list = NULL;
	char *save = NULL, *root;
	sf_ret r = 0;

	*pem = NULL;
	*len = 0;
	if (!dirs)
		dirs = getenv("SOCI_FUSE_CERTS_DIRS");
	if (!dirs)
		dirs = SF_CERTS_DIRS_DEFAULT;
	list = strdup(dirs);
	if (!list)
		return oom(err);
	if (strchr(host, '/') || !strcmp(host, "..") || !strcmp(host, "."))
		return sf_fail(err, EINVAL, "invalid registry host \"%.200s\"", host);
	for (root = strtok_r(list, ":", &save); root && r == 0; root = strtok_r(NULL, ":", &save)) {
		_cleanup_free_ char *d = NULL;
		if (asprintf(&d, "%s/%s", root, host) < 0)
			return oom(err);
		r = append_dir(d, pem, len, err);
	}
	if (r == 0 && extra)
		r = append_file(extra, true, pem, len, err);
	if (r < 0) {
		free(*pem);
		*pem = NULL;
		*len = 0;
	}
	return r;
}
