/* ref.c - image references, the way Docker and podman read them.
 *
 * A reference is  [host[:port]/]path[:tag][@sha256:hex].  The first path
 * component is the registry host only when it looks like one: it contains a
 * '.' or a ':' (port, IPv6 "[::1]:5000") or is exactly "localhost";
 * otherwise the registry is docker.io, where a single-component repository
 * lives under "library/" ("debian" -> docker.io/library/debian).  The aliases
 * index.docker.io and docker.io are one registry, spelled docker.io.
 *
 * Parsing goes from the right: '@' splits off the digest, then a ':' after
 * the last '/' splits off the tag, then the host is split off the name.
 * Each part is checked against the distribution/reference grammar:
 *   path component  [a-z0-9]+ ( ( '.' | '_' | '__' | '-'+ ) [a-z0-9]+ )*
 *   host component  [A-Za-z0-9] | [A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]
 *   tag             [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
 *   digest          sha256:<64 lowercase hex>  (the only algorithm we fetch)
 * and the whole name (host + '/' + path) is at most 255 bytes.  Every
 * rejection quotes the reference and says what is wrong with it.
 */
#include "ref.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "digest.h"

#define SF_REF_INPUT_MAX 1024	/* longest string we even look at */
#define SF_REF_NAME_MAX 255	/* host + '/' + path, as in distribution */
#define SF_REF_TAG_MAX 128
#define SF_REF_PORT_MAX 65535
#define SF_REF_QUOTE_MAX 300	/* how much of a bad reference a message quotes */

#define DOCKER_HUB "docker.io"
#define DOCKER_HUB_API "registry-1.docker.io"
#define DOCKER_HUB_LEGACY "index.docker.io"
#define DOCKER_HUB_LIBRARY "library/"

/* n bytes of s (up to a NUL), made printable, for messages. */
static const char *quote(const char *s, size_t n, char *buf, size_t len)
{
	size_t i = 0;

	for (; i < n && s[i] && i + 1 < len; i++)
		buf[i] = isprint((unsigned char)s[i]) ? s[i] : '?';
	buf[i] = '\0';
	return buf;
}

__attribute__((format(printf, 3, 4)))
static sf_ret bad_ref(struct sf_error *err, const char *s, const char *fmt, ...)
{
	char what[SF_ERROR_MSG_MAX / 2];
	char quoted[SF_REF_QUOTE_MAX + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	quote(s, SF_REF_QUOTE_MAX, quoted, sizeof(quoted));
	return sf_fail(err, EINVAL, "invalid reference \"%s\": %s", quoted, what);
}

static char *dup_range(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (!p)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
	return isalnum((unsigned char)c) != 0;
}

static bool all_hex64(const char *s, size_t n)
{
	if (n != 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)s[i]))
			return false;
	return true;
}

/* Length of a separator at p ("." "_" "__" "-"+), 0 when none. */
static size_t separator_len(const char *p, const char *end)
{
	size_t n = 0;

	if (*p == '.')
		return 1;
	if (*p == '_')
		return (p + 1 < end && p[1] == '_') ? 2 : 1;
	while (p + n < end && p[n] == '-')
		n++;
	return n;
}

/* One path component [s, end): alnum runs joined by single separators. */
static bool path_component_valid(const char *s, const char *end)
{
	const char *p = s;

	while (p < end) {
		if (!is_lower_alnum(*p))
			return false;
		while (p < end && is_lower_alnum(*p))
			p++;
		if (p == end)
			return true;
		p += separator_len(p, end);
		if (p == end || !is_lower_alnum(*p))
			return false;
	}
	return p > s;
}

static sf_ret check_path(const char *s, const char *path, struct sf_error *err)
{
	char q[SF_REF_QUOTE_MAX + 1];
	const char *p = path;

	if (!*path)
		return bad_ref(err, s, "repository name is empty");
	for (const char *c = path; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			return bad_ref(err, s, "repository name must be lowercase");
	while (*p) {
		const char *end = strchr(p, '/');
		if (!end)
			end = p + strlen(p);
		if (end == p)
			return bad_ref(err, s, "repository name has an empty path component");
		if (!path_component_valid(p, end))
			return bad_ref(err, s, "invalid repository name component \"%s\"",
				       quote(p, (size_t)(end - p), q, sizeof(q)));
		p = *end ? end + 1 : end;
		if (*p == '\0' && end[0] == '/')
			return bad_ref(err, s, "repository name ends with '/'");
	}
	return 0;
}

/* [s, end) is a DNS-ish name: components of alnum and inner '-', by '.'. */
static bool hostname_valid(const char *s, const char *end)
{
	const char *p = s;

	if (p == end)
		return false;
	while (p < end) {
		const char *c = p;
		while (p < end && *p != '.')
			p++;
		if (p == c || !is_alnum(*c) || !is_alnum(p[-1]))
			return false;
		for (const char *q = c; q < p; q++)
			if (!is_alnum(*q) && *q != '-')
				return false;
		if (p < end && ++p == end)
			return false; /* trailing '.' */
	}
	return true;
}

/* Parse the n bytes at s (no brackets) as an IPv6 address. */
static bool ipv6_parse(const char *s, size_t n, struct in6_addr *a)
{
	char buf[INET6_ADDRSTRLEN + 1];

	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return inet_pton(AF_INET6, buf, a) == 1;
}

static bool ipv6_valid(const char *s, size_t n)
{
	struct in6_addr a;

	return ipv6_parse(s, n, &a);
}

static bool port_valid(const char *p)
{
	long v = 0;

	if (!*p || strlen(p) > 5)
		return false;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (*p - '0');
	}
	return v >= 1 && v <= SF_REF_PORT_MAX;
}

/* host := hostname | '[' ipv6 ']', optionally ':' port. */
static sf_ret check_host(const char *s, const char *host, struct sf_error *err)
{
	char q[SF_REF_QUOTE_MAX + 1];
	const char *end;

	quote(host, SF_REF_QUOTE_MAX, q, sizeof(q));
	if (host[0] == '[') {
		const char *close = strchr(host, ']');
		if (!close || !ipv6_valid(host + 1, (size_t)(close - host - 1)))
			return bad_ref(err, s, "invalid IPv6 registry address \"%s\"", q);
		end = close + 1;
		if (*end && *end != ':')
			return bad_ref(err, s, "invalid registry host \"%s\"", q);
	} else {
		end = strchr(host, ':');
		if (!end)
			end = host + strlen(host);
		if (!hostname_valid(host, end))
			return bad_ref(err, s, "invalid registry host \"%s\"", q);
	}
	if (*end == ':' && !port_valid(end + 1))
		return bad_ref(err, s, "invalid registry port in \"%s\"", q);
	return 0;
}

static sf_ret check_tag(const char *s, const char *tag, struct sf_error *err)
{
	size_t n = strlen(tag);

	if (n == 0)
		return bad_ref(err, s, "empty tag");
	if (n > SF_REF_TAG_MAX)
		return bad_ref(err, s, "tag longer than %d characters", SF_REF_TAG_MAX);
	if (!is_alnum(tag[0]) && tag[0] != '_')
		return bad_ref(err, s, "tag must start with a letter, digit or '_'");
	for (const char *p = tag; *p; p++)
		if (!is_alnum(*p) && *p != '_' && *p != '.' && *p != '-')
			return bad_ref(err, s, "invalid character '%c' in tag",
				       isprint((unsigned char)*p) ? *p : '?');
	return 0;
}

static sf_ret check_digest(const char *s, const char *digest, struct sf_error *err)
{
	const char *colon = strchr(digest, ':');

	if (!colon || colon == digest)
		return bad_ref(err, s, "digest must look like sha256:<64 hex digits>");
	if ((size_t)(colon - digest) != 6 || strncmp(digest, "sha256", 6) != 0)
		return bad_ref(err, s, "unsupported digest algorithm \"%.*s\" (only sha256)",
			       (int)(colon - digest), digest);
	if (!sf_digest_valid(digest))
		return bad_ref(err, s, "invalid sha256 digest (want 64 lowercase hex digits)");
	return 0;
}

/* Does the first component of a name (up to its first '/') name a host? */
static bool looks_like_host(const char *name, size_t n)
{
	if (n == 9 && strncmp(name, "localhost", 9) == 0)
		return true;
	return memchr(name, '.', n) || memchr(name, ':', n);
}

static bool is_docker_hub(const char *host)
{
	return strcasecmp(host, DOCKER_HUB) == 0 || strcasecmp(host, DOCKER_HUB_LEGACY) == 0;
}

/* Split "name" into registry and repository, normalising docker.io. */
static sf_ret split_name(const char *s, const char *name, struct sf_ref *out,
			 struct sf_error *err)
{
	const char *slash = strchr(name, '/');
	const char *path = name;
	sf_ret ret;

	if (slash && looks_like_host(name, (size_t)(slash - name))) {
		out->registry = dup_range(name, (size_t)(slash - name));
		if (!out->registry)
			return -ENOMEM;
		ret = check_host(s, out->registry, err);
		if (ret < 0)
			return ret;
		path = slash + 1;
	}
	if (!out->registry || is_docker_hub(out->registry)) {
		free(out->registry);
		out->registry = strdup(DOCKER_HUB);
		if (!out->registry)
			return -ENOMEM;
	}
	ret = check_path(s, path, err);
	if (ret < 0)
		return ret;
	if (strcmp(out->registry, DOCKER_HUB) == 0 && !strchr(path, '/')) {
		out->repository = malloc(strlen(DOCKER_HUB_LIBRARY) + strlen(path) + 1);
		if (out->repository)
			strcat(strcpy(out->repository, DOCKER_HUB_LIBRARY), path);
	} else {
		out->repository = strdup(path);
	}
	return out->repository ? 0 : -ENOMEM;
}

/* Split "name[:tag]" at a ':' after the last '/', fill tag, return name. */
static sf_ret split_tag(const char *s, char *name_tag, struct sf_ref *out,
			struct sf_error *err)
{
	char *slash = strrchr(name_tag, '/');
	char *colon = strrchr(slash ? slash : name_tag, ':');
	sf_ret ret;

	if (!colon)
		return 0;
	*colon = '\0';
	ret = check_tag(s, colon + 1, err);
	if (ret < 0)
		return ret;
	out->tag = strdup(colon + 1);
	return out->tag ? 0 : -ENOMEM;
}

static sf_ret parse_parts(const char *s, char *work, struct sf_ref *out, struct sf_error *err)
{
	char *at = strchr(work, '@');
	sf_ret ret;

	if (at) {
		*at = '\0';
		ret = check_digest(s, at + 1, err);
		if (ret < 0)
			return ret;
		out->digest = strdup(at + 1);
		if (!out->digest)
			return -ENOMEM;
	}
	ret = split_tag(s, work, out, err);
	if (ret < 0)
		return ret;
	if (!*work)
		return bad_ref(err, s, "repository name is empty");
	ret = split_name(s, work, out, err);
	if (ret < 0)
		return ret;
	if (strlen(out->registry) + 1 + strlen(out->repository) > SF_REF_NAME_MAX)
		return bad_ref(err, s, "repository name longer than %d characters",
			       SF_REF_NAME_MAX);
	if (!out->tag && !out->digest && !(out->tag = strdup("latest")))
		return -ENOMEM;
	return 0;
}

sf_ret sf_ref_parse(const char *s, struct sf_ref *out, struct sf_error *err)
{
	_cleanup_free_ char *work = NULL;
	sf_ret ret;

	memset(out, 0, sizeof(*out));
	if (!s || !*s)
		return bad_ref(err, s ? s : "", "empty reference");
	if (strlen(s) > SF_REF_INPUT_MAX)
		return bad_ref(err, s, "longer than %d characters", SF_REF_INPUT_MAX);
	if (all_hex64(s, strlen(s)))
		return bad_ref(err, s, "a 64-digit hex string is an image ID, not a repository name");
	work = strdup(s);
	if (!work)
		return -ENOMEM;
	ret = parse_parts(s, work, out, err);
	if (ret < 0)
		sf_ref_clear(out);
	if (ret == -ENOMEM)
		sf_fail(err, ENOMEM, "out of memory parsing a reference");
	return ret;
}

void sf_ref_clear(struct sf_ref *ref)
{
	if (!ref)
		return;
	free(ref->registry);
	free(ref->repository);
	free(ref->tag);
	free(ref->digest);
	memset(ref, 0, sizeof(*ref));
}

char *sf_ref_format(const struct sf_ref *ref)
{
	const char *tag = ref->tag ? ref->tag : "";
	const char *dg = ref->digest ? ref->digest : "";
	size_t n = strlen(ref->registry) + strlen(ref->repository) + strlen(tag) +
		   strlen(dg) + 4;
	char *s = malloc(n);

	if (!s)
		return NULL;
	snprintf(s, n, "%s/%s%s%s%s%s", ref->registry, ref->repository, *tag ? ":" : "", tag,
		 *dg ? "@" : "", dg);
	return s;
}

char *sf_ref_api_host(const struct sf_ref *ref)
{
	if (strcmp(ref->registry, DOCKER_HUB) == 0)
		return strdup(DOCKER_HUB_API);
	return strdup(ref->registry);
}

static bool ipv6_is_loopback(const char *s, size_t n)
{
	struct in6_addr a;

	if (!ipv6_parse(s, n, &a))
		return false;
	if (IN6_IS_ADDR_LOOPBACK(&a))
		return true;
	return IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127;
}

static bool ipv4_is_loopback(const char *s, size_t n)
{
	char buf[INET_ADDRSTRLEN + 1];
	struct in_addr a;

	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return inet_pton(AF_INET, buf, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

bool sf_ref_is_loopback(const struct sf_ref *ref)
{
	const char *h = ref->registry;
	size_t n;

	if (!h)
		return false;
	if (h[0] == '[') {
		const char *close = strchr(h, ']');
		return close && ipv6_is_loopback(h + 1, (size_t)(close - h - 1));
	}
	n = strcspn(h, ":");
	if (n == 9 && strncasecmp(h, "localhost", 9) == 0)
		return true;
	return ipv4_is_loopback(h, n);
}
