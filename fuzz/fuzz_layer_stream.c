/* fuzz_layer_stream.c - libFuzzer target: the whole unpack stack of a layer,
 * decompressor -> tar reader -> index, as unpack_stream() in src/layer.c.
 *
 * Input: byte 0 picks the compression (% 3: none, gzip, zstd), the rest is
 * the compressed layer.  Like layer.c, after the tar ends both the
 * uncompressed and the compressed stream are read to their ends.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "decompress.h"
#include "error.h"
#include "index.h"
#include "reader.h"
#include "tar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DATA_ALIGN 4096u

static unsigned char buf[64 * 1024];

static ssize_t drain(struct sf_reader r, struct sf_error *err)
{
	ssize_t n;

	while ((n = sf_read(r, buf, sizeof(buf), err)) > 0)
		;
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum sf_compression comps[] = { SF_COMP_NONE, SF_COMP_GZIP, SF_COMP_ZSTD };
	struct sf_mem_reader m;
	struct sf_reader src;
	struct sf_error err = { 0 };
	struct sf_decompressor *dec = NULL;
	struct sf_tar *t = NULL;
	struct sf_index *idx = NULL;
	const struct sf_tar_entry *e;
	uint64_t data_end = 0;
	int more = 0;
	bool failed = false;

	if (size < 1)
		return 0;
	src = sf_mem_reader_init(&m, data + 1, size - 1);
	/* bit 7 of the selector: short reads from the source */
	if (data[0] & 0x80)
		m.max_step = 1 + size % 1021;
	if (sf_decompressor_new(comps[(data[0] & 0x7f) % 3], src, &dec, &err) < 0)
		return 0;
	if (sf_tar_new(sf_decompressor_reader(dec), &t) < 0)
		goto out;
	idx = sf_index_new();
	if (!idx)
		goto out;
	while (!failed && (more = sf_tar_next(t, &e, &err)) == 1) {
		uint64_t base = (data_end + DATA_ALIGN - 1) & ~(uint64_t)(DATA_ALIGN - 1);
		uint64_t off = 0;
		ssize_t n;

		if (e->type == SF_TAR_REG) {
			while ((n = sf_tar_read_data(t, &off, buf, sizeof(buf), &err)) > 0) {
				if (off + (uint64_t)n > e->size) {
					failed = true;
					break;
				}
			}
			if (n < 0)
				failed = true;
			if (e->size)
				data_end = base + e->size;
		}
		if (!failed && sf_index_add(idx, e, e->type == SF_TAR_REG && e->size ? base : 0,
					    &err) < 0)
			failed = true;
	}
	if (!failed && more == 0 && drain(sf_decompressor_reader(dec), &err) == 0)
		(void)drain(src, &err);
out:
	sf_index_free(idx);
	sf_tar_free(t);
	sf_decompressor_free(dec);
	return 0;
}
