/* fuzz_regconf.c - libFuzzer target: registries.conf (the TOML subset),
 * reference matching and location rewriting; plus the small parsers of
 * registry credentials (base64 "auth") and token lifetimes.
 *
 * Input: a registries.conf document (cut at the first NUL).  A document
 * that parses must have a prefix on every entry and a location on every
 * mirror; every rewrite of a matching reference must give a host without
 * '/' and a non-empty repository.  The same bytes are also fed to the
 * base64 decoder and the token lifetime parser, which must not crash and
 * must keep lifetimes within (0, a day].
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "error.h"
#include "regconf.h"
#include "registry-private.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const refs[][2] = {
	{ "docker.io", "library/debian" }, { "quay.io", "a/b" }, { "h:5000", "x" },
	{ "a.b.corp.example", "team/app" }, { "[::1]:5000", "ns/x" },
};

static void check_entry(const struct sf_regconf_entry *e, const char *reg, const char *repo)
{
	char *host, *r;

	if (!e->prefix)
		abort();
	for (size_t m = 0; m <= e->n_mirrors; m++) {
		const char *loc = m < e->n_mirrors ? e->mirrors[m].location
						   : (e->location ? e->location : e->prefix);
		if (!loc)
			abort();
		if (sf_regconf_rewrite(e, loc, reg, repo, &host, &r, NULL) < 0)
			continue;
		if (!*host || strchr(host, '/') || !*r)
			abort();
		free(host);
		free(r);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), *u, *p;
	struct sf_regconf c;
	int64_t life;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (sf_regconf_parse(s, "fuzz", &c, NULL) == 0) {
		for (size_t i = 0; i < sizeof(refs) / sizeof(refs[0]); i++) {
			const struct sf_regconf_entry *e = sf_regconf_find(&c, refs[i][0], refs[i][1]);
			if (e)
				check_entry(e, refs[i][0], refs[i][1]);
		}
		sf_regconf_clear(&c);
	}
	if (sf_auth_decode_basic(s, &u, &p, NULL) == 0) {
		if (!u || !p)
			abort();
		free(u);
		free(p);
	}
	life = sf_reg_token_lifetime_ms(s, strlen(s));
	if (life <= 0 || life > 86400000)
		abort();
	free(s);
	return 0;
}
