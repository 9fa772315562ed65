/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for sov/metrics.h: registration, the Prometheus text rendering and atomic updates. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sov/metrics.h"

#define assert_contains(hay, needle)                                                               \
    do {                                                                                           \
        const char *h_ = (hay), *n_ = (needle);                                                    \
        if (!h_ || !strstr(h_, n_))                                                                \
            fail_msg("'%s' does not contain '%s'", h_ ? h_ : "(null)", n_);                        \
    } while (0)

/* Renders the registry and cuts off the process_* families that every render ends with. */
static void render_own(SovBuf *out)
{
    char *proc;

    sov_buf_reset(out);
    assert_int_equal(sov_metrics_render(out), 0);
    assert_non_null(out->ptr);
    proc = strstr(out->ptr, "# HELP process_start_time_seconds ");
    assert_non_null(proc);
    out->len = (size_t)(proc - out->ptr);
    out->ptr[out->len] = '\0';
}

static size_t count_substr(const char *s, const char *needle)
{
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static int reset(void **state)
{
    sov_metrics_reset();
    return 0;
}

static void test_empty_registry(void **state)
{
    SovBuf out = SOV_BUF_INIT;

    render_own(&out);
    assert_string_equal(out.ptr, "");
    /* The process families are always there. */
    sov_buf_reset(&out);
    sov_metrics_render(&out);
    assert_contains(out.ptr, "# TYPE process_start_time_seconds gauge\n");
    assert_contains(out.ptr, "# TYPE process_resident_memory_bytes gauge\n");
    sov_buf_release(&out);
}

static void test_counter_render(void **state)
{
    SovBuf out = SOV_BUF_INIT;
    SovMetric *ok = sov_metrics_counter("t_requests_total", "Requests served.", "code=\"200\"");
    SovMetric *err = sov_metrics_counter("t_requests_total", "Requests served.", "code=\"500\"");
    SovMetric *plain = sov_metrics_counter("t_events_total", "Events.", NULL);

    assert_non_null(ok);
    assert_non_null(err);
    assert_non_null(plain);
    assert_ptr_not_equal(ok, err);
    sov_counter_add(ok, 3);
    sov_counter_add(ok, 2);
    sov_counter_add(err, 1);
    assert_int_equal(sov_metric_value(ok), 5);
    assert_int_equal(sov_metric_value(plain), 0);
    render_own(&out);
    assert_string_equal(out.ptr, "# HELP t_requests_total Requests served.\n"
                                 "# TYPE t_requests_total counter\n"
                                 "t_requests_total{code=\"200\"} 5\n"
                                 "t_requests_total{code=\"500\"} 1\n"
                                 "# HELP t_events_total Events.\n"
                                 "# TYPE t_events_total counter\n"
                                 "t_events_total 0\n");
    sov_buf_release(&out);
}

static void test_counter_large(void **state)
{
    SovBuf out = SOV_BUF_INIT;
    SovMetric *m = sov_metrics_counter("t_bytes_total", "Bytes.", "");

    sov_counter_add(m, UINT64_MAX - 1);
    sov_counter_add(m, 1);
    render_own(&out);
    assert_contains(out.ptr, "\nt_bytes_total 18446744073709551615\n");
    sov_buf_release(&out);
}

static void test_gauge_render(void **state)
{
    SovBuf out = SOV_BUF_INIT;
    SovMetric *g = sov_metrics_gauge("t_connections", "Open connections.", "svc=\"s3\"");

    assert_non_null(g);
    sov_gauge_set(g, 10);
    sov_gauge_add(g, 5);
    sov_gauge_add(g, -20);
    render_own(&out);
    assert_string_equal(out.ptr, "# HELP t_connections Open connections.\n"
                                 "# TYPE t_connections gauge\n"
                                 "t_connections{svc=\"s3\"} -5\n");
    sov_gauge_set(g, 7);
    assert_int_equal(sov_metric_value(g), 7);
    sov_buf_release(&out);
}

static void test_histogram_render(void **state)
{
    static const double bounds[] = {0.5, 1, 2.5};
    SovBuf out = SOV_BUF_INIT;
    SovMetric *h = sov_metrics_histogram("t_latency_seconds", "Latency.", "route=\"/x\"", bounds,
                                         ELEMENTSOF(bounds));

    assert_non_null(h);
    sov_histogram_observe(h, 0.25);
    sov_histogram_observe(h, 0.5); /* le is inclusive */
    sov_histogram_observe(h, 0.75);
    sov_histogram_observe(h, 0.75);
    sov_histogram_observe(h, 3);
    assert_int_equal(sov_metric_value(h), 5);
    render_own(&out);
    assert_string_equal(out.ptr, "# HELP t_latency_seconds Latency.\n"
                                 "# TYPE t_latency_seconds histogram\n"
                                 "t_latency_seconds_bucket{route=\"/x\",le=\"0.5\"} 2\n"
                                 "t_latency_seconds_bucket{route=\"/x\",le=\"1\"} 4\n"
                                 "t_latency_seconds_bucket{route=\"/x\",le=\"2.5\"} 4\n"
                                 "t_latency_seconds_bucket{route=\"/x\",le=\"+Inf\"} 5\n"
                                 "t_latency_seconds_sum{route=\"/x\"} 5.25\n"
                                 "t_latency_seconds_count{route=\"/x\"} 5\n");
    sov_buf_release(&out);
}

static void test_histogram_no_labels(void **state)
{
    static const double bounds[] = {1, 2};
    SovBuf out = SOV_BUF_INIT;
    SovMetric *h = sov_metrics_histogram("t_size", "Sizes.", NULL, bounds, 2);

    render_own(&out);
    assert_string_equal(out.ptr, "# HELP t_size Sizes.\n"
                                 "# TYPE t_size histogram\n"
                                 "t_size_bucket{le=\"1\"} 0\n"
                                 "t_size_bucket{le=\"2\"} 0\n"
                                 "t_size_bucket{le=\"+Inf\"} 0\n"
                                 "t_size_sum 0\n"
                                 "t_size_count 0\n");
    sov_histogram_observe(h, 1.5);
    sov_histogram_observe(h, 100);
    render_own(&out);
    assert_contains(out.ptr, "t_size_bucket{le=\"1\"} 0\n"
                             "t_size_bucket{le=\"2\"} 1\n"
                             "t_size_bucket{le=\"+Inf\"} 2\n"
                             "t_size_sum 101.5\n"
                             "t_size_count 2\n");
    sov_buf_release(&out);
}

static void test_histogram_default_buckets(void **state)
{
    SovBuf out = SOV_BUF_INIT;
    SovMetric *h = sov_metrics_histogram("t_default", "Default buckets.", NULL, NULL, 0);

    assert_non_null(h);
    sov_histogram_observe(h, 0.003);
    render_own(&out);
    /* 16 bounds plus +Inf; the observation lands from le=0.005 on. */
    assert_int_equal(count_substr(out.ptr, "t_default_bucket{"), 17);
    assert_contains(out.ptr, "t_default_bucket{le=\"0.0001\"} 0\n");
    assert_contains(out.ptr, "t_default_bucket{le=\"10\"} 1\n");
    assert_contains(out.ptr, "t_default_bucket{le=\"+Inf\"} 1\n");
    assert_contains(out.ptr, "t_default_count 1\n");
    sov_buf_release(&out);
}

/* Regression, fixed (src/core/metrics.c, sov_metrics_render()): bucket bounds are printed with
 * "%.17g", so a bound of 0.1 renders as le="0.10000000000000001" (and 0.005, 0.025, 0.05, 0.25
 * likewise in the default buckets). Prometheus client libraries print the shortest representation
 * that round-trips (Go: strconv.FormatFloat(b, 'g', -1, 64)), and a query such as
 * `sov_http_request_duration_seconds_bucket{le="0.1"}` only matches that spelling. This test
 * fails until the bounds are rendered as le="0.1". */
static void test_regression_histogram_le_shortest(void **state)
{
    static const double bounds[] = {0.1, 0.25};
    SovBuf out = SOV_BUF_INIT;
    bool ok_01, ok_025;

    sov_metrics_histogram("t_le", "Bounds.", NULL, bounds, ELEMENTSOF(bounds));
    render_own(&out);
    ok_01 = strstr(out.ptr, "t_le_bucket{le=\"0.1\"} 0\n") != NULL;
    ok_025 = strstr(out.ptr, "t_le_bucket{le=\"0.25\"} 0\n") != NULL;
    if (!ok_01)
        print_error("%s", out.ptr);
    sov_buf_release(&out);
    if (!ok_01)
        fail_msg("a bucket bound of 0.1 is not rendered as le=\"0.1\"");
    assert_true(ok_025);
}

static void test_help_type_once_per_family(void **state)
{
    SovBuf out = SOV_BUF_INIT;
    char labels[32];

    for (int i = 0; i < 5; i++) {
        snprintf(labels, sizeof(labels), "shard=\"%d\"", i);
        sov_counter_add(sov_metrics_counter("t_ops_total", "Operations.", labels), (uint64_t)i);
    }
    sov_metrics_gauge("t_other", "Other.", NULL);
    render_own(&out);
    assert_int_equal(count_substr(out.ptr, "# HELP t_ops_total "), 1);
    assert_int_equal(count_substr(out.ptr, "# TYPE t_ops_total counter\n"), 1);
    assert_int_equal(count_substr(out.ptr, "\nt_ops_total{shard="), 5);
    assert_contains(out.ptr, "t_ops_total{shard=\"4\"} 4\n");
    /* The family's lines come together, before the next family. */
    assert_true(strstr(out.ptr, "t_ops_total{shard=\"4\"}") < strstr(out.ptr, "# HELP t_other"));
    sov_buf_release(&out);
}

static void test_idempotent_registration(void **state)
{
    static const double bounds[] = {1};
    SovMetric *a = sov_metrics_counter("t_same_total", "Same.", "x=\"1\"");
    SovMetric *b = sov_metrics_counter("t_same_total", "Same.", "x=\"1\"");
    SovMetric *c = sov_metrics_counter("t_same_total", "Same.", "x=\"2\"");
    SovMetric *g1 = sov_metrics_gauge("t_same_gauge", "G.", NULL);
    SovMetric *g2 = sov_metrics_gauge("t_same_gauge", "G.", "");
    SovMetric *h1 = sov_metrics_histogram("t_same_hist", "H.", NULL, bounds, 1);
    SovMetric *h2 = sov_metrics_histogram("t_same_hist", "H.", NULL, bounds, 1);
    SovBuf out = SOV_BUF_INIT;

    assert_non_null(a);
    assert_ptr_equal(a, b);
    assert_ptr_not_equal(a, c);
    assert_ptr_equal(g1, g2); /* NULL labels and "" are the same series */
    assert_ptr_equal(h1, h2);
    sov_counter_add(a, 1);
    sov_counter_add(b, 1);
    assert_int_equal(sov_metric_value(a), 2);
    render_own(&out);
    assert_int_equal(count_substr(out.ptr, "t_same_total{x=\"1\"}"), 1);
    sov_buf_release(&out);
}

static void test_type_clash(void **state)
{
    SovBuf out = SOV_BUF_INIT;

    assert_non_null(sov_metrics_counter("t_clash", "Clash.", NULL));
    assert_null(sov_metrics_gauge("t_clash", "Clash.", NULL));
    assert_null(sov_metrics_gauge("t_clash", "Clash.", "other=\"labels\""));
    assert_null(sov_metrics_histogram("t_clash", "Clash.", NULL, NULL, 0));
    /* Updates through a NULL metric are ignored rather than crashing. */
    sov_gauge_set(NULL, 1);
    sov_counter_add(NULL, 1);
    sov_histogram_observe(NULL, 1);
    assert_int_equal(sov_metric_value(NULL), 0);
    render_own(&out);
    assert_string_equal(out.ptr, "# HELP t_clash Clash.\n# TYPE t_clash counter\nt_clash 0\n");
    sov_buf_release(&out);
}

static void test_escape_label(void **state)
{
    SovBuf out = SOV_BUF_INIT;

    assert_int_equal(sov_metrics_escape_label(&out, SOV_STR("plain/path")), 0);
    assert_string_equal(out.ptr, "plain/path");
    sov_buf_reset(&out);
    assert_int_equal(sov_metrics_escape_label(&out, SOV_STR("a\"b\\c\nd")), 0);
    assert_string_equal(out.ptr, "a\\\"b\\\\c\\nd");
    sov_buf_reset(&out);
    assert_int_equal(sov_metrics_escape_label(&out, SOV_STR("")), 0);
    assert_int_equal(out.len, 0);

    /* An escaped value used as a label renders as a well-formed series. */
    SovBuf labels = SOV_BUF_INIT;
    sov_buf_puts(&labels, "route=\"");
    sov_metrics_escape_label(&labels, SOV_STR("/{bucket}/\"x\""));
    sov_buf_putc(&labels, '"');
    sov_counter_add(sov_metrics_counter("t_escaped_total", "Escaped.", labels.ptr), 1);
    render_own(&out);
    assert_contains(out.ptr, "t_escaped_total{route=\"/{bucket}/\\\"x\\\"\"} 1\n");

    /* The limit of the output buffer is reported. */
    SovBuf small;
    sov_buf_init(&small, 3);
    assert_int_equal(sov_metrics_escape_label(&small, SOV_STR("ab\"")), -E2BIG);
    sov_buf_release(&small);
    sov_buf_release(&labels);
    sov_buf_release(&out);
}

#define THREADS    4
#define ITERATIONS 100000

static void *hammer(void *arg)
{
    static const double bounds[] = {1, 2};
    SovMetric **seen = arg;

    /* Each thread registers for itself, so registration races as well. */
    SovMetric *c = sov_metrics_counter("t_race_total", "Race.", "k=\"v\"");
    SovMetric *g = sov_metrics_gauge("t_race_gauge", "Race.", NULL);
    SovMetric *h = sov_metrics_histogram("t_race_hist", "Race.", NULL, bounds, 2);
    *seen = c;
    for (int i = 0; i < ITERATIONS; i++) {
        sov_counter_add(c, 1);
        sov_gauge_add(g, i % 2 ? 1 : -1);
        sov_histogram_observe(h, (double)(i % 3));
    }
    return NULL;
}

static void test_concurrent_updates(void **state)
{
    pthread_t th[THREADS];
    SovMetric *seen[THREADS];
    SovBuf out = SOV_BUF_INIT;
    char want[128];

    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer, &seen[i]), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    for (int i = 1; i < THREADS; i++)
        assert_ptr_equal(seen[i], seen[0]);
    assert_int_equal(sov_metric_value(seen[0]), THREADS * ITERATIONS);

    render_own(&out);
    snprintf(want, sizeof(want), "t_race_total{k=\"v\"} %d\n", THREADS * ITERATIONS);
    assert_contains(out.ptr, want);
    assert_contains(out.ptr, "\nt_race_gauge 0\n");
    assert_int_equal(count_substr(out.ptr, "# TYPE t_race_total counter\n"), 1);
    assert_int_equal(count_substr(out.ptr, "t_race_total{"), 1);
    /* Observations of 0, 1, 2 in turn: every count and the sum are exact. */
    int n0 = THREADS * ((ITERATIONS + 2) / 3), n1 = THREADS * ((ITERATIONS + 1) / 3),
        n2 = THREADS * (ITERATIONS / 3);
    snprintf(want, sizeof(want), "t_race_hist_bucket{le=\"1\"} %d\n", n0 + n1);
    assert_contains(out.ptr, want);
    snprintf(want, sizeof(want), "t_race_hist_bucket{le=\"2\"} %d\n", n0 + n1 + n2);
    assert_contains(out.ptr, want);
    snprintf(want, sizeof(want), "t_race_hist_sum %d\n", n1 + 2 * n2);
    assert_contains(out.ptr, want);
    snprintf(want, sizeof(want), "t_race_hist_count %d\n", THREADS * ITERATIONS);
    assert_contains(out.ptr, want);
    sov_buf_release(&out);
}

static void test_reset_forgets(void **state)
{
    SovBuf out = SOV_BUF_INIT;
    SovMetric *m = sov_metrics_counter("t_forget_total", "F.", NULL);

    sov_counter_add(m, 9);
    sov_metrics_reset();
    render_own(&out);
    assert_string_equal(out.ptr, "");
    /* After a reset, the same name may come back with another type. */
    assert_non_null(sov_metrics_gauge("t_forget_total", "F.", NULL));
    m = sov_metrics_counter("t_forget_total2", "F.", NULL);
    assert_int_equal(sov_metric_value(m), 0);
    sov_buf_release(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_empty_registry, reset, reset),
        cmocka_unit_test_setup_teardown(test_counter_render, reset, reset),
        cmocka_unit_test_setup_teardown(test_counter_large, reset, reset),
        cmocka_unit_test_setup_teardown(test_gauge_render, reset, reset),
        cmocka_unit_test_setup_teardown(test_histogram_render, reset, reset),
        cmocka_unit_test_setup_teardown(test_histogram_no_labels, reset, reset),
        cmocka_unit_test_setup_teardown(test_histogram_default_buckets, reset, reset),
        cmocka_unit_test_setup_teardown(test_regression_histogram_le_shortest, reset, reset),
        cmocka_unit_test_setup_teardown(test_help_type_once_per_family, reset, reset),
        cmocka_unit_test_setup_teardown(test_idempotent_registration, reset, reset),
        cmocka_unit_test_setup_teardown(test_type_clash, reset, reset),
        cmocka_unit_test_setup_teardown(test_escape_label, reset, reset),
        cmocka_unit_test_setup_teardown(test_concurrent_updates, reset, reset),
        cmocka_unit_test_setup_teardown(test_reset_forgets, reset, reset),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
