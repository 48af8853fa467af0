/* fuzz_layer_stream.c - libFuzzer target: the whole unpack stack of a layer,
 * decompressor -> tar reader -> index, as unpack_stream() in src/layer.c.
 *
 * Input: byte 0 picks the compression (% 3: none, gzip, zstd), the rest is
 * the compressed layer.  Like layer.c, after the tar ends both the
 * uncompressed and the compressed stream are read to their ends.  Files are
 * placed in the (imaginary) data file with layer.c's sf_index_place_data,
 * and at the end no two extents of the index may overlap or pass the cap:
 * one file must never serve another's bytes.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>

#include "decompress.h"
#include "error.h"
#include "index.h"
#include "reader.h"
#include "tar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned char buf[64 * 1024];

static ssize_t drain(struct sf_reader r, struct sf_error *err)
{
	ssize_t n;

	while ((n = sf_read(r, buf, sizeof(buf), err)) > 0)
		;
	return n;
}

struct extent {
	uint64_t off, size;
};

static int by_off(const void *a, const void *b)
{
	const struct extent *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

/* Every non-empty regular file has an extent of its own (hard links share
 * the inode, so they are one extent). */
static void check_extents(const struct sf_index *idx)
{
	struct extent *v = malloc(((size_t)idx->n_inodes + 1) * sizeof(*v));
	size_t n = 0;

	if (!v)
		return;
	for (uint32_t i = 1; i < idx->n_inodes; i++) {
		const struct sf_inode *ino = &idx->inodes[i];
		if (S_ISREG(ino->mode) && ino->size)
			v[n++] = (struct extent){ ino->data_off, ino->size };
	}
	qsort(v, n, sizeof(*v), by_off);
	for (size_t i = 0; i < n; i++) {
		if (v[i].size > SF_INDEX_MAX_DATA_SIZE ||
		    v[i].off > SF_INDEX_MAX_DATA_SIZE - v[i].size ||
		    (i && v[i - 1].off + v[i - 1].size > v[i].off)) {
			fprintf(stderr, "extent %llu+%llu overlaps or passes the cap\n",
				(unsigned long long)v[i].off, (unsigned long long)v[i].size);
			abort();
		}
	}
	free(v);
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
		uint64_t base = 0, off = 0;
		ssize_t n;

		if (e->type == SF_TAR_REG) {
			if (sf_index_place_data(&data_end, e->size, &base) < 0)
				break; /* layer.c fails the layer here */
			while ((n = sf_tar_read_data(t, &off, buf, sizeof(buf), &err)) > 0) {
				if (off + (uint64_t)n > e->size) {
					failed = true;
					break;
				}
			}
			if (n < 0)
				failed = true;
		}
		if (!failed && sf_index_add(idx, e, base, &err) < 0)
			failed = true;
	}
	if (!failed && more == 0 && drain(sf_decompressor_reader(dec), &err) == 0)
		(void)drain(src, &err);
	check_extents(idx);
out:
	sf_index_free(idx);
	sf_tar_free(t);
	sf_decompressor_free(dec);
	return 0;
}
