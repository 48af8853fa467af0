/* fuzz_tar.c - libFuzzer target: a tar stream straight into the tar reader
 * and the layer index, as unpack_stream() in src/layer.c drives them.
 *
 * Input: an uncompressed tar.  Every entry is read to its end and added to
 * an sf_index (path normalisation, whiteouts, hard links); errors are the
 * expected outcome for most inputs, only crashes, sanitizer reports and
 * leaks count.  The finished index goes through sf_index_save and
 * sf_index_load, which must accept what save wrote.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "error.h"
#include "index.h"
#include "reader.h"
#include "tar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DATA_ALIGN 4096u

static unsigned char buf[64 * 1024];

static void index_roundtrip(const struct sf_index *idx)
{
	struct sf_error err = { 0 };
	struct sf_index *back = NULL;
	int fd = memfd_create("fuzz-index", MFD_CLOEXEC);

	if (fd < 0)
		return;
	if (sf_index_save(idx, fd, &err) == 0) {
		if (sf_index_load(fd, &back, &err) < 0)
			abort(); /* the cache could not reload its own index */
		if (back->n_inodes != idx->n_inodes || back->n_dentries != idx->n_dentries)
			abort();
		sf_index_free(back);
	}
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sf_mem_reader m;
	struct sf_reader src = sf_mem_reader_init(&m, data, size);
	struct sf_error err = { 0 };
	struct sf_tar *t = NULL;
	struct sf_index *idx;
	const struct sf_tar_entry *e;
	uint64_t data_end = 0;
	bool failed = false;
	int more;

	/* Odd lengths also exercise short reads from the source. */
	if (size & 1)
		m.max_step = 1 + size % 509;
	if (sf_tar_new(src, &t) < 0)
		return 0;
	idx = sf_index_new();
	if (!idx) {
		sf_tar_free(t);
		return 0;
	}
	while (!failed && (more = sf_tar_next(t, &e, &err)) == 1) {
		uint64_t base = (data_end + DATA_ALIGN - 1) & ~(uint64_t)(DATA_ALIGN - 1);
		uint64_t off = 0;
		ssize_t n;

		if (e->type == SF_TAR_REG) {
			while ((n = sf_tar_read_data(t, &off, buf, sizeof(buf), &err)) > 0) {
				if (off + (uint64_t)n > e->size) {
					failed = true; /* layer.c refuses this too */
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
	if (!failed)
		index_roundtrip(idx);
	sf_index_free(idx);
	sf_tar_free(t);
	return 0;
}
