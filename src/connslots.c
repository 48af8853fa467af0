/* connslots.c - see connslots.h. */
#include "connslots.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

/* One family of lock files: locks/<prefix>.<i>, opened on first use. */
struct lockset {
	const char *prefix;
	int *fd;    /* -1: not opened yet */
	bool *held; /* by this process */
};

struct sf_connslots {
	char *dir;
	unsigned total;
	struct lockset slots, members;
	unsigned nheld;	  /* slots held */
	int member;	  /* index of the members lock we hold, or -1 */
	unsigned share;	  /* slots this process may hold */
	int64_t share_at; /* when share was counted (ms), 0: never */
	unsigned next;	  /* where the next search for a free slot starts */
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool lockset_init(struct lockset *ls, const char *prefix, unsigned total)
{
	ls->prefix = prefix;
	ls->fd = malloc(total * sizeof(*ls->fd));
	ls->held = calloc(total, sizeof(*ls->held));
	if (!ls->fd || !ls->held)
		return false;
	for (unsigned i = 0; i < total; i++)
		ls->fd[i] = -1;
	return true;
}

static void lockset_free(struct lockset *ls, unsigned total)
{
	if (ls->fd)
		for (unsigned i = 0; i < total; i++)
			if (ls->fd[i] >= 0)
				close(ls->fd[i]); /* drops a held lock too */
	free(ls->fd);
	free(ls->held);
}

/* Try to lock locks/<prefix>.<i> without waiting. */
static bool try_lock(struct sf_connslots *s, struct lockset *ls, unsigned i)
{
	if (ls->fd[i] < 0) {
		char path[4096];

		snprintf(path, sizeof(path), "%s/%s.%u", s->dir, ls->prefix, i);
		ls->fd[i] = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (ls->fd[i] < 0)
			return false;
	}
	if (flock(ls->fd[i], LOCK_EX | LOCK_NB) < 0)
		return false;
	ls->held[i] = true;
	return true;
}

static void unlock(struct lockset *ls, unsigned i)
{
	flock(ls->fd[i], LOCK_UN);
	ls->held[i] = false;
}

sf_ret sf_connslots_open(const char *dir, unsigned total, struct sf_connslots **out,
			 struct sf_error *err)
{
	struct sf_connslots *s;

	*out = NULL;
	if (total < 1 || total > SF_CONNSLOTS_MAX_TOTAL)
		return sf_fail(err, EINVAL, "connection limit %u is not in [1, %u]", total,
			       SF_CONNSLOTS_MAX_TOTAL);
	s = calloc(1, sizeof(*s));
	if (!s)
		return sf_fail(err, ENOMEM, "out of memory");
	s->total = total;
	s->member = -1;
	s->next = (unsigned)getpid() % total; /* processes start apart */
	s->dir = strdup(dir);
	if (!s->dir || !lockset_init(&s->slots, "conn", total) ||
	    !lockset_init(&s->members, "fetcher", total)) {
		sf_connslots_free(s);
		return sf_fail(err, ENOMEM, "out of memory");
	}
	*out = s;
	return 0;
}

void sf_connslots_free(struct sf_connslots *s)
{
	if (!s)
		return;
	lockset_free(&s->slots, s->total);
	lockset_free(&s->members, s->total);
	free(s->dir);
	free(s);
}

void sf_connslots_want(struct sf_connslots *s, bool want)
{
	if (want == (s->member >= 0))
		return;
	if (!want) {
		unlock(&s->members, (unsigned)s->member);
		s->member = -1;
		return;
	}
	for (unsigned k = 0; k < s->total; k++) {
		unsigned j = (s->next + k) % s->total;
		if (try_lock(s, &s->members, j)) {
			s->member = (int)j;
			break;
		}
	}
	s->share_at = 0; /* count again with us among them */
}

/* Competitors: members locks someone holds (us included).  A lock found
 * free is taken and given back at once; a process that wanted it just
 * then tries the next one. */
static unsigned count_members(struct sf_connslots *s)
{
	unsigned n = s->member >= 0 ? 1 : 0;

	for (unsigned j = 0; j < s->total; j++) {
		if (s->members.held[j])
			continue;
		if (try_lock(s, &s->members, j))
			unlock(&s->members, j);
		else if (s->members.fd[j] >= 0)
			n++; /* EWOULDBLOCK: another process holds it */
	}
	return n ? n : 1;
}

static unsigned share(struct sf_connslots *s)
{
	int64_t now = now_ms();

	if (!s->share_at || now - s->share_at >= SF_CONNSLOTS_RECOUNT_MS) {
		unsigned n = count_members(s);
		s->share = s->total / n ? s->total / n : 1;
		s->share_at = now;
	}
	return s->share;
}

int sf_connslots_take(struct sf_connslots *s)
{
	if (s->nheld >= share(s))
		return -1;
	for (unsigned k = 0; k < s->total; k++) {
		unsigned i = (s->next + k) % s->total;
		if (!s->slots.held[i] && try_lock(s, &s->slots, i)) {
			s->nheld++;
			s->next = (i + 1) % s->total;
			return (int)i;
		}
	}
	return -1;
}

void sf_connslots_give(struct sf_connslots *s, int slot)
{
	if (slot < 0 || (unsigned)slot >= s->total || !s->slots.held[slot])
		return;
	unlock(&s->slots, (unsigned)slot);
	s->nheld--;
}

unsigned sf_connslots_held(const struct sf_connslots *s)
{
	return s->nheld;
}
