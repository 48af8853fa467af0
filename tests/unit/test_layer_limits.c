/* Unit tests for the per-layer limits: option parsing and the expansion
 * ceiling (the layer pipeline enforcing them is tested by hostile.sh). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "layer_limits.h"

static void test_defaults_and_parsing(void **state)
{
	struct sf_limits l = SF_LIMITS_DEFAULTS;

	(void)state;
	assert_int_equal(l.max_layer_size, SF_LIMITS_DEFAULT_MAX_LAYER_SIZE);
	assert_int_equal(sf_limits_set(&l, "max-layer-size", "3G"), 0);
	assert_int_equal(l.max_layer_size, 3ull << 30);
	assert_int_equal(sf_limits_set(&l, "max-layer-size", "5MiB"), 0);
	assert_int_equal(l.max_layer_size, 5ull << 20);
	assert_int_equal(sf_limits_set(&l, "max-expansion-ratio", "50"), 0);
	assert_int_equal(l.max_expansion_ratio, 50);
	assert_int_equal(sf_limits_set(&l, "max-entries", "1000000"), 0);
	assert_int_equal(l.max_entries, 1000000);
	/* refused: zero, negative, junk, suffix on a count, overflow, unknown */
	assert_int_equal(sf_limits_set(&l, "max-entries", "0"), -EINVAL);
	assert_int_equal(sf_limits_set(&l, "max-entries", "-3"), -EINVAL);
	assert_int_equal(sf_limits_set(&l, "max-entries", "12x"), -EINVAL);
	assert_int_equal(sf_limits_set(&l, "max-expansion-ratio", "5K"), -EINVAL);
	assert_int_equal(sf_limits_set(&l, "max-layer-size", "99999999999T"), -EINVAL);
	assert_int_equal(sf_limits_set(&l, "max-layer-size", "18446744073709551616"), -EINVAL);
	assert_int_equal(sf_limits_set(&l, "max-foo", "1"), -EINVAL);
	assert_int_equal(l.max_entries, 1000000); /* unchanged by the failures */
}

static void test_max_expanded(void **state)
{
	struct sf_limits l = SF_LIMITS_DEFAULTS;

	(void)state;
	l.max_expansion_ratio = 10;
	/* tiny blobs always get the slack */
	assert_int_equal(sf_limits_max_expanded(&l, 0), SF_LIMITS_EXPANSION_SLACK);
	assert_int_equal(sf_limits_max_expanded(&l, 100), SF_LIMITS_EXPANSION_SLACK);
	assert_int_equal(sf_limits_max_expanded(&l, 1ull << 30), 10ull << 30);
	/* no overflow */
	l.max_expansion_ratio = UINT64_MAX;
	assert_int_equal(sf_limits_max_expanded(&l, 3), UINT64_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_and_parsing),
		cmocka_unit_test(test_max_expanded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
