/* stop.c - the first stop signal unmounts, and the daemon serves on until
 * the kernel ends the connection; the second forces (stop.h says why).
 *
 * The handler only counts and writes a byte to a pipe: unmounting and
 * logging happen on a thread of their own, which blocks the stop signals so
 * that they reach the threads of the session loop.  Forcing is
 * fuse_session_exit plus making sure the loop's own thread wakes up: it
 * sleeps in sem_wait until a signal interrupts it or a worker ends
 * (libfuse 3.14's fuse_session_loop_mt), and a signal sent to the process
 * may be delivered to any thread that does not block it. */
#include "stop.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <syslog.h>
#include <unistd.h>

/* How long the connection may take to end after the unmount before the
 * daemon logs that something still uses it. */
#define SF_STOP_NOTICE_MS 1000

static const int stop_signals[] = { SIGTERM, SIGINT, SIGHUP };

static struct sf_stop *_Atomic the_stop; /* the handler's: one per process */

static void on_stop_signal(int sig)
{
	struct sf_stop *st = atomic_load(&the_stop);
	int saved = errno;

	if (!st)
		return;
	if (atomic_fetch_add(&st->requests, 1) == 0) {
		(void)!write(st->pipe[1], "", 1);
	} else {
		fuse_session_exit(st->se);
		if (!pthread_equal(pthread_self(), st->main))
			pthread_kill(st->main, sig); /* re-enters here on it, and stops */
	}
	errno = saved;
}

static void set_handlers(void (*handler)(int))
{
	struct sigaction sa = { .sa_handler = handler }; /* no SA_RESTART: reads end EINTR */

	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(stop_signals) / sizeof(stop_signals[0]); i++)
		sigaction(stop_signals[i], &sa, NULL);
}

/* Unmount, lazily when something in this namespace still uses the mount
 * (EBUSY); EINVAL: somebody else unmounted it already.  The connection
 * ends once nothing uses it any more.  Returns false when it cannot be
 * unmounted (not root: EPERM). */
static bool unmount(const char *mnt)
{
	if (umount2(mnt, UMOUNT_NOFOLLOW) == 0 || errno == EINVAL)
		return true;
	if (errno == EBUSY && umount2(mnt, MNT_DETACH | UMOUNT_NOFOLLOW) == 0)
		return true;
	syslog(LOG_ERR, "cannot unmount %s: %s; stopping at once", mnt, strerror(errno));
	return false;
}

/* Sleep until a byte arrives or ms pass (-1: forever); true when the loop
 * has ended meanwhile. */
static bool wait_quit(struct sf_stop *st, int ms)
{
	struct pollfd p = { .fd = st->pipe[0], .events = POLLIN };
	char c;

	if (atomic_load(&st->quit))
		return true;
	if (poll(&p, 1, ms) > 0)
		while (read(st->pipe[0], &c, 1) == 1)
			;
	return atomic_load(&st->quit);
}

static void *stop_run(void *arg)
{
	struct sf_stop *st = arg;

	while (!atomic_load(&st->requests))
		if (wait_quit(st, -1))
			return NULL;
	if (!unmount(st->mountpoint)) {
		pthread_kill(st->main, SIGTERM); /* a second request: forces */
		return NULL;
	}
	if (!wait_quit(st, SF_STOP_NOTICE_MS))
		syslog(LOG_WARNING,
		       "unmounted %s; it is still in use (containers running on its layers, or "
		       "open files): serving until they are gone; signal again to stop at once",
		       st->mountpoint);
	return NULL;
}

static sf_ret start_thread(struct sf_stop *st)
{
	sigset_t block, old;
	int e;

	sigemptyset(&block);
	for (size_t i = 0; i < sizeof(stop_signals) / sizeof(stop_signals[0]); i++)
		sigaddset(&block, stop_signals[i]);
	pthread_sigmask(SIG_BLOCK, &block, &old); /* inherited by the thread only */
	e = pthread_create(&st->thread, NULL, stop_run, st);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return -e;
}

sf_ret sf_stop_start(struct sf_stop *st, struct fuse_session *se, const char *mountpoint)
{
	sf_ret r;

	*st = (struct sf_stop){ .se = se, .mountpoint = mountpoint, .main = pthread_self() };
	if (pipe2(st->pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		return -errno;
	r = start_thread(st);
	if (r < 0) {
		close(st->pipe[0]);
		close(st->pipe[1]);
		return r;
	}
	signal(SIGPIPE, SIG_IGN);
	atomic_store(&the_stop, st);
	set_handlers(on_stop_signal);
	return 0;
}

void sf_stop_end(struct sf_stop *st)
{
	set_handlers(SIG_DFL);
	atomic_store(&the_stop, NULL);
	atomic_store(&st->quit, true);
	(void)!write(st->pipe[1], "", 1);
	pthread_join(st->thread, NULL);
	close(st->pipe[0]);
	close(st->pipe[1]);
}
