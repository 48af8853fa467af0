#include "digest.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

/* struct sf_sha256 is just the EVP context; the type keeps OpenSSL out of
 * every header. */
struct sf_sha256 {
	EVP_MD_CTX *ctx;
};

struct sf_sha256 *sf_sha256_new(void)
{
	struct sf_sha256 *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->ctx = EVP_MD_CTX_new();
	if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
		sf_sha256_free(h);
		return NULL;
	}
	return h;
}

void sf_sha256_update(struct sf_sha256 *h, const void *data, size_t len)
{
	EVP_DigestUpdate(h->ctx, data, len);
}

static void format_digest(const unsigned char md[32], char out[SF_DIGEST_STR_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";

	memcpy(out, "sha256:", 7);
	for (int i = 0; i < 32; i++) {
		out[7 + 2 * i] = hex[md[i] >> 4];
		out[8 + 2 * i] = hex[md[i] & 15];
	}
	out[SF_DIGEST_STR_LEN] = '\0';
}

void sf_sha256_final(struct sf_sha256 *h, char out[SF_DIGEST_STR_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	EVP_DigestFinal_ex(h->ctx, md, &len);
	format_digest(md, out);
}

void sf_sha256_free(struct sf_sha256 *h)
{
	if (!h)
		return;
	EVP_MD_CTX_free(h->ctx);
	free(h);
}

void sf_sha256_buf(const void *data, size_t len, char out[SF_DIGEST_STR_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
	format_digest(md, out);
}

bool sf_digest_valid(const char *s)
{
	if (!s || strncmp(s, "sha256:", 7) != 0 || strlen(s) != SF_DIGEST_STR_LEN)
		return false;
	for (const char *p = s + 7; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

const char *sf_digest_hex(const char *digest)
{
	return digest + 7;
}
