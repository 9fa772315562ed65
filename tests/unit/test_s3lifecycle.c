/* SPDX-License-Identifier: Apache-2.0 */
/* When a lifecycle action falls due: with real days, at the midnight UTC after creation + days
 * (as AWS counts, and as x-amz-expiration promises); with short test days, exactly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../src/s3/lifecycle-int.h"

#define DAY INT64_C(86400000)
/* 2026-12-02T00:00:00Z */
#define MIDNIGHT (INT64_C(1796169600) * 1000)

static void test_real_days_end_at_the_next_midnight(void **state)
{
    (void)state;
    int64_t half_past_ten = MIDNIGHT + (10 * 3600 + 30 * 60) * INT64_C(1000);
    assert_int_equal(s3_lifecycle_due_ms(half_past_ten, 3, DAY), MIDNIGHT + 4 * DAY);
    assert_int_equal(s3_lifecycle_due_ms(MIDNIGHT + 1, 3, DAY), MIDNIGHT + 4 * DAY);
    assert_int_equal(s3_lifecycle_due_ms(MIDNIGHT + DAY - 1, 1, DAY), MIDNIGHT + 2 * DAY);
    /* created at midnight exactly: that midnight days later */
    assert_int_equal(s3_lifecycle_due_ms(MIDNIGHT, 3, DAY), MIDNIGHT + 3 * DAY);
    assert_int_equal(s3_lifecycle_due_ms(MIDNIGHT + 5, 0, DAY), MIDNIGHT + DAY);
}

static void test_short_days_are_exact(void **state)
{
    (void)state;
    assert_int_equal(s3_lifecycle_due_ms(MIDNIGHT + 1234, 3, 1000), MIDNIGHT + 4234);
    assert_int_equal(s3_lifecycle_due_ms(MIDNIGHT + 1, 2, 3600000), MIDNIGHT + 1 + 7200000);
}

static void test_the_largest_days_do_not_overflow(void **state)
{
    (void)state;
    int64_t at = s3_lifecycle_due_ms(MIDNIGHT + 1, INT32_MAX, DAY);
    assert_true(at > MIDNIGHT + (int64_t)INT32_MAX * DAY);
    assert_int_equal(at % DAY, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_days_end_at_the_next_midnight),
        cmocka_unit_test(test_short_days_are_exact),
        cmocka_unit_test(test_the_largest_days_do_not_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
