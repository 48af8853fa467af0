/* Unit tests for connslots.c: the cache-wide connection limit.  Two
 * connslots objects in one process stand for two processes (flock locks
 * belong to open file descriptions, so they conflict like processes do);
 * a forked child shows that a dead process's slots come back. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "connslots.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/sf-test-connslots.XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd);
}

static struct sf_connslots *open_slots(unsigned total)
{
	struct sf_error err = { 0 };
	struct sf_connslots *s;

	assert_int_equal(sf_connslots_open(dir, total, &s, &err), 0);
	return s;
}

static void test_alone_takes_every_slot(void **state)
{
	struct sf_connslots *a = open_slots(4);
	int got[4];

	(void)state;
	sf_connslots_want(a, true);
	for (int i = 0; i < 4; i++)
		assert_true((got[i] = sf_connslots_take(a)) >= 0);
	assert_int_equal(sf_connslots_take(a), -1);
	assert_int_equal(sf_connslots_held(a), 4);
	sf_connslots_give(a, got[2]);
	assert_int_equal(sf_connslots_take(a), got[2]);
	sf_connslots_free(a);
}

static void test_bad_total(void **state)
{
	struct sf_error err = { 0 };
	struct sf_connslots *s;

	(void)state;
	assert_int_equal(sf_connslots_open(dir, 0, &s, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "connection limit"));
	assert_int_equal(sf_connslots_open(dir, SF_CONNSLOTS_MAX_TOTAL + 1, &s, &err), -EINVAL);
}

/* A holds every slot; B arrives.  Neither gets more than half once A has
 * recounted: A's next free slot goes to B, not back to A. */
static void test_newcomer_gets_a_fair_share(void **state)
{
	struct sf_connslots *a = open_slots(4), *b = open_slots(4);
	int held[4];

	(void)state;
	sf_connslots_want(a, true);
	for (int i = 0; i < 4; i++)
		held[i] = sf_connslots_take(a);
	sf_connslots_want(b, true);
	assert_int_equal(sf_connslots_take(b), -1); /* all four are A's */
	usleep((SF_CONNSLOTS_RECOUNT_MS + 100) * 1000);
	sf_connslots_give(a, held[0]); /* a transfer of A ends */
	assert_int_equal(sf_connslots_take(a), -1); /* A: 3 held, share 2 */
	assert_true(sf_connslots_take(b) >= 0);
	sf_connslots_give(a, held[1]);
	assert_true(sf_connslots_take(b) >= 0);
	assert_int_equal(sf_connslots_take(b), -1); /* B: at its share */
	assert_int_equal(sf_connslots_held(a) + sf_connslots_held(b), 4);
	/* B leaves: A may have them all again after a recount */
	sf_connslots_free(b);
	usleep((SF_CONNSLOTS_RECOUNT_MS + 100) * 1000);
	assert_true(sf_connslots_take(a) >= 0);
	assert_true(sf_connslots_take(a) >= 0);
	assert_int_equal(sf_connslots_held(a), 4);
	sf_connslots_free(a);
}

/* kill -9 of a process holding slots gives them back: the kernel drops
 * its flocks. */
static void test_dead_process_leaks_nothing(void **state)
{
	struct sf_connslots *a;
	int pipefd[2], status;
	pid_t pid;
	char c;

	(void)state;
	assert_int_equal(pipe(pipefd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct sf_connslots *child = open_slots(3);
		sf_connslots_want(child, true);
		while (sf_connslots_take(child) >= 0)
			;
		(void)!write(pipefd[1], "x", 1);
		pause();
		_exit(0);
	}
	assert_int_equal(read(pipefd[0], &c, 1), 1);
	a = open_slots(3);
	sf_connslots_want(a, true);
	assert_int_equal(sf_connslots_take(a), -1);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	usleep((SF_CONNSLOTS_RECOUNT_MS + 100) * 1000);
	for (int i = 0; i < 3; i++)
		assert_true(sf_connslots_take(a) >= 0);
	sf_connslots_free(a);
	close(pipefd[0]);
	close(pipefd[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_alone_takes_every_slot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_total, setup, teardown),
		cmocka_unit_test_setup_teardown(test_newcomer_gets_a_fair_share, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dead_process_leaks_nothing, setup, teardown),
	};

	alarm(120);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
