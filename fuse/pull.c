/* pull.c - `soci-fuse pull REF`: the mount pipeline without FUSE.
 *
 * Resolves the reference, sets up the layers and starts the fetcher and
 * the layer threads exactly as a mount does (mount.c's sf_mount_prepare
 * and sf_mount_start_pull), then watches them until every layer is
 * COMPLETE (verified and renamed into the cache) or one FAILED.  So a
 * later mount of the same reference with the same cache is served from
 * the cache at once, and offline.
 *
 * Progress: on a terminal, one bar per layer redrawn in place every
 * REDRAW_TTY seconds; otherwise plain lines: one when a layer starts and
 * when it ends, and one per fetching layer every REDRAW_PLAIN seconds, so
 * logs of a CI job stay short.  When a layer fails the other layers are
 * cancelled (their partial work is removed, as a mount's would be) and
 * the command exits 1 with the layer's error.
 */
#include "pull.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "progress.h"
#include "rootfs.h"

#define REDRAW_TTY 0.1
#define REDRAW_PLAIN 5.0
#define BAR_MIN 10
#define BAR_MAX 40

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	interrupted = sig;
}

/* What the watcher knows of one layer between two looks. */
struct watch {
	enum sf_layer_state shown; /* the state a line was printed for */
	bool was_cached;	   /* complete before the pull started */
	double t_start;		   /* when it was first seen fetching */
	double t_end;
	struct sf_rate rate;
};

struct sample {
	enum sf_layer_state st;
	uint64_t fetched, unpacked;
};

static struct sample take_sample(struct sf_layer *l)
{
	struct sample s = { .st = sf_layer_state(l) };

	pthread_mutex_lock(&l->blob.lock);
	s.fetched = s.st == SF_LAYER_COMPLETE ? l->desc->size : l->blob.fetched;
	pthread_mutex_unlock(&l->blob.lock);
	s.unpacked = atomic_load(&l->unpacked);
	return s;
}

static int term_width(void)
{
	struct winsize ws;

	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 40)
		return ws.ws_col;
	return 80;
}

/* "sha256:0123456789ab" (the digest's first 12 hex digits). */
static void short_digest(const char *d, char out[20])
{
	snprintf(out, 20, "%.19s", d);
}

static void draw_bar(FILE *f, struct sf_layer *l, const struct sample *s, struct watch *w,
		     int width)
{
	char dg[20], a[16], b[16], c[16], r[16];
	int bar = width - 70, fill;
	uint64_t size = l->desc->size;

	short_digest(l->desc->digest, dg);
	bar = bar < BAR_MIN ? BAR_MIN : bar > BAR_MAX ? BAR_MAX : bar;
	fill = size ? (int)((double)s->fetched / (double)size * bar) : bar;
	if (s->st == SF_LAYER_COMPLETE)
		fill = bar;
	fprintf(f, "\r\033[K%2u %s [", l->number, dg);
	for (int i = 0; i < bar; i++)
		fputc(i < fill ? '#' : i == fill ? '>' : '.', f);
	sf_format_bytes(s->fetched, a, sizeof(a));
	sf_format_bytes(size, b, sizeof(b));
	sf_format_bytes(s->unpacked, c, sizeof(c));
	sf_format_bytes((uint64_t)w->rate.rate, r, sizeof(r));
	switch (s->st) {
	case SF_LAYER_COMPLETE:
		fprintf(f, "] %s %s\n", b,
			w->was_cached ? "cached" : "done");
		break;
	case SF_LAYER_FAILED:
		fprintf(f, "] %s/%s failed\n", a, b);
		break;
	case SF_LAYER_FETCHING:
		fprintf(f, "] %s/%s unpacked %s %s/s\n", a, b, c, r);
		break;
	default:
		fprintf(f, "] %s %s\n", b, sf_layer_state_name(s->st));
		break;
	}
}

static void plain_line(FILE *f, struct sf_layer *l, const struct sample *s, struct watch *w)
{
	char a[16], b[16], c[16], r[16];
	double secs = (w->t_end ? w->t_end : sf_now()) - w->t_start;

	sf_format_bytes(s->fetched, a, sizeof(a));
	sf_format_bytes(l->desc->size, b, sizeof(b));
	sf_format_bytes(s->unpacked, c, sizeof(c));
	switch (s->st) {
	case SF_LAYER_COMPLETE:
		if (w->was_cached) {
			fprintf(f, "layer %u %s: already in the cache\n", l->number, l->desc->digest);
			break;
		}
		sf_format_bytes(secs > 0 ? (uint64_t)((double)s->fetched / secs) : 0, r,
				sizeof(r));
		fprintf(f, "layer %u %s: complete, %s fetched, %s unpacked in %.1f s (%s/s)\n",
			l->number, l->desc->digest, b, c, secs, r);
		break;
	case SF_LAYER_FETCHING:
		sf_format_bytes((uint64_t)w->rate.rate, r, sizeof(r));
		fprintf(f, "layer %u %s: %s/%s fetched, %s unpacked, %s/s\n", l->number,
			l->desc->digest, a, b, c, r);
		break;
	case SF_LAYER_WAITING:
		fprintf(f, "layer %u %s: waiting for another process pulling it\n", l->number,
			l->desc->digest);
		break;
	default: /* failures are printed once all threads are done */
		break;
	}
	fflush(f);
}

/* One look at every layer; prints what changed.  Returns the number of
 * layers still running, and counts failures in *failed. */
static unsigned watch_once(struct mount_state *m, struct watch *w, bool tty, bool redrawn,
			   bool periodic, unsigned *failed)
{
	unsigned n = (unsigned)m->img.n_layers, running = 0;
	double now = sf_now();
	int width = tty ? term_width() : 0;

	*failed = 0;
	if (tty && redrawn && n)
		fprintf(stderr, "\033[%uA", n);
	for (unsigned i = 0; i < n; i++) {
		struct sf_layer *l = &m->layers[i];
		struct sample s = take_sample(l);

		if ((s.st == SF_LAYER_COMPLETE || s.st == SF_LAYER_FAILED) && w[i].t_end == 0)
			w[i].t_end = now;
		sf_rate_update(&w[i].rate, s.fetched, now);
		if (s.st == SF_LAYER_FAILED)
			(*failed)++;
		else if (s.st != SF_LAYER_COMPLETE)
			running++;
		if (tty) {
			draw_bar(stderr, l, &s, &w[i], width);
		} else if ((s.st != w[i].shown && s.st != SF_LAYER_WAITING) ||
			   (periodic && (s.st == SF_LAYER_FETCHING || s.st == SF_LAYER_WAITING))) {
			/* (waiting for the cache lock is shown only when it lasts) */
			plain_line(stdout, l, &s, &w[i]);
		}
		w[i].shown = s.st;
	}
	fflush(stderr);
	return running;
}

static void install_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

static void cancel_all(struct mount_state *m)
{
	for (unsigned i = 0; i < m->n_layers_ready; i++)
		m->layers[i].cancel = true;
	sf_fetcher_stop(m->fetcher);
}

int sf_pull_main(const struct sf_mount_opts *o)
{
	struct mount_state m = { 0 };
	struct sf_error err = { 0 };
	struct watch *w = NULL;
	bool tty = isatty(STDERR_FILENO) && getenv("TERM") && strcmp(getenv("TERM"), "dumb");
	double t0 = sf_now(), last_plain = t0;
	unsigned running = 1, failed = 0;
	uint64_t total = 0, unpacked = 0;
	char a[16], b[16];
	int rc;
	sf_ret r;

	rc = sf_mount_prepare(&m, o);
	if (rc)
		goto out;
	w = calloc(m.img.n_layers ? m.img.n_layers : 1, sizeof(*w));
	if (!w) {
		rc = sf_cmd_fail("out of memory");
		goto out;
	}
	for (unsigned i = 0; i < m.img.n_layers; i++) {
		w[i].was_cached = sf_layer_state(&m.layers[i]) == SF_LAYER_COMPLETE;
		w[i].shown = SF_LAYER_PENDING;
		w[i].t_start = t0; /* every layer thread starts right away */
		total += m.img.layers[i].size;
	}
	printf("pulling %s (%s, %zu layers)\n", m.img.ref ? m.img.ref : o->ref,
	       sf_format_bytes(total, a, sizeof(a)), m.img.n_layers);
	fflush(stdout);
	install_signals();
	r = sf_mount_start_pull(&m, o, &err);
	if (r < 0) {
		rc = sf_cmd_fail("%s", sf_error_text(&err, r));
		goto out;
	}
	for (bool drawn = false; !interrupted;) {
		double now = sf_now();
		bool periodic = now - last_plain >= REDRAW_PLAIN;
		struct timespec nap = { 0, tty ? (long)(REDRAW_TTY * 1e9) : 100000000L };

		if (periodic)
			last_plain = now;
		running = watch_once(&m, w, tty, drawn, periodic, &failed);
		drawn = true;
		if (running == 0 || failed)
			break;
		nanosleep(&nap, NULL);
	}
	if (interrupted || failed)
		cancel_all(&m);
	for (unsigned i = 0; i < m.n_layers_ready; i++)
		sf_layer_stop(&m.layers[i]);
	if (interrupted) {
		fprintf(stderr, "soci-fuse: pull interrupted\n");
		rc = 128 + interrupted;
		goto out;
	}
	/* report every failure, not the cancellations it caused */
	for (unsigned i = 0; i < m.img.n_layers; i++) {
		struct sf_layer *l = &m.layers[i];
		if (sf_layer_state(l) == SF_LAYER_FAILED && l->err.code != ECANCELED)
			rc = sf_cmd_fail("%s", l->err.msg);
		unpacked += atomic_load(&l->unpacked);
	}
	if (rc == 0 && failed)
		rc = sf_cmd_fail("pull of %s failed", o->ref);
	if (rc == 0)
		printf("pulled %s: %s fetched, %s unpacked in %.2f s\n",
		       m.img.ref ? m.img.ref : o->ref, sf_format_bytes(total, a, sizeof(a)),
		       sf_format_bytes(unpacked, b, sizeof(b)), sf_now() - t0);
out:
	free(w);
	sf_mount_state_free(&m);
	return rc;
}

int sf_status_main(const char *mnt)
{
	char path[PATH_MAX + 32];
	char buf[65536];
	ssize_t n;
	int fd;

	if (sf_rootfs_is_rootfs(mnt)) {
		/* a rootfs DIR: its layers are mounted at a private dir */
		if (sf_rootfs_layers_mount(mnt, path, sizeof(path) - 8) < 0)
			return sf_cmd_fail("%s: cannot find the layers' mount", mnt);
		strcat(path, "/status");
	} else {
		snprintf(path, sizeof(path), "%s/status", mnt);
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return sf_cmd_fail("%s: not a soci-fuse mount (%s: %s)", mnt, path,
				   strerror(errno));
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
			break;
	close(fd);
	if (n < 0)
		return sf_cmd_fail("%s: %s", path, strerror(errno));
	return fflush(stdout) == 0 ? 0 : 1;
}
