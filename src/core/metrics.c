/* SPDX-License-Identifier: Apache-2.0 */
/* The metrics registry: families (one name, help and type) holding series (one label set).
 * The family and series lists only grow while the process runs; readers walk them without a
 * lock because nodes are fully built before they are published with a release store. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sov/metrics.h"

typedef enum MetricType { M_COUNTER, M_GAUGE, M_HISTOGRAM } MetricType;

struct SovMetric {
    SovMetric *next; /* next series of the family */
    MetricType type;
    char *labels;
    uint64_t value;    /* counter, histogram count; gauge as int64 bits */
    uint64_t sum_bits; /* histogram sum as double bits */
    size_t nbounds;
    double *bounds;
    uint64_t *buckets; /* nbounds counts (non-cumulative); +Inf is value */
};

typedef struct Family {
    struct Family *next;
    char *name;
    char *help;
    MetricType type;
    SovMetric *series;
} Family;

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static Family *families;
static double start_time;

static const double default_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                        0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};

static SovMetric *metric_get(const char *name, const char *help, const char *labels,
                             MetricType type, const double *bounds, size_t nbounds)
{
    Family *f, **fp;
    SovMetric *m, **mp;

    if (!labels)
        labels = "";
    pthread_mutex_lock(&reg_lock);
    if (start_time == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        start_time = (double)ts.tv_sec + ts.tv_nsec / 1e9;
    }
    for (fp = &families; *fp; fp = &(*fp)->next)
        if (strcmp((*fp)->name, name) == 0)
            break;
    f = *fp;
    if (f && f->type != type) {
        pthread_mutex_unlock(&reg_lock);
        return NULL;
    }
    if (!f) {
        f = calloc(1, sizeof(*f));
        if (!f)
            goto oom;
        f->name = strdup(name);
        f->help = strdup(help);
        f->type = type;
        if (!f->name || !f->help) {
            free(f->name);
            free(f->help);
            free(f);
            goto oom;
        }
        __atomic_store_n(fp, f, __ATOMIC_RELEASE);
    }
    for (mp = &f->series; *mp; mp = &(*mp)->next)
        if (strcmp((*mp)->labels, labels) == 0) {
            m = *mp;
            pthread_mutex_unlock(&reg_lock);
            return m;
        }
    m = calloc(1, sizeof(*m));
    if (!m)
        goto oom;
    m->type = type;
    m->labels = strdup(labels);
    if (type == M_HISTOGRAM) {
        if (!bounds) {
            bounds = default_bounds;
            nbounds = ELEMENTSOF(default_bounds);
        }
        m->nbounds = nbounds;
        m->bounds = malloc(nbounds * sizeof(double));
        m->buckets = calloc(nbounds, sizeof(uint64_t));
        if (m->bounds)
            memcpy(m->bounds, bounds, nbounds * sizeof(double));
    }
    if (!m->labels || (type == M_HISTOGRAM && (!m->bounds || !m->buckets))) {
        free(m->labels);
        free(m->bounds);
        free(m->buckets);
        free(m);
        goto oom;
    }
    __atomic_store_n(mp, m, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&reg_lock);
    return m;
oom:
    pthread_mutex_unlock(&reg_lock);
    return NULL;
}

SovMetric *sov_metrics_counter(const char *name, const char *help, const char *labels)
{
    return metric_get(name, help, labels, M_COUNTER, NULL, 0);
}

SovMetric *sov_metrics_gauge(const char *name, const char *help, const char *labels)
{
    return metric_get(name, help, labels, M_GAUGE, NULL, 0);
}

SovMetric *sov_metrics_histogram(const char *name, const char *help, const char *labels,
                                 const double *bounds, size_t nbounds)
{
    return metric_get(name, help, labels, M_HISTOGRAM, bounds, nbounds);
}

void sov_counter_add(SovMetric *m, uint64_t v)
{
    if (m)
        __atomic_fetch_add(&m->value, v, __ATOMIC_RELAXED);
}

void sov_gauge_set(SovMetric *m, int64_t v)
{
    if (m)
        __atomic_store_n(&m->value, (uint64_t)v, __ATOMIC_RELAXED);
}

void sov_gauge_add(SovMetric *m, int64_t v)
{
    if (m)
        __atomic_fetch_add(&m->value, (uint64_t)v, __ATOMIC_RELAXED);
}

void sov_histogram_observe(SovMetric *m, double v)
{
    uint64_t old, upd;
    double sum;

    if (!m)
        return;
    for (size_t i = 0; i < m->nbounds; i++)
        if (v <= m->bounds[i]) {
            __atomic_fetch_add(&m->buckets[i], 1, __ATOMIC_RELAXED);
            break;
        }
    old = __atomic_load_n(&m->sum_bits, __ATOMIC_RELAXED);
    do {
        memcpy(&sum, &old, sizeof(sum));
        sum += v;
        memcpy(&upd, &sum, sizeof(upd));
    } while (!__atomic_compare_exchange_n(&m->sum_bits, &old, upd, true, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
    __atomic_fetch_add(&m->value, 1, __ATOMIC_RELAXED);
}

uint64_t sov_metric_value(const SovMetric *m)
{
    return m ? __atomic_load_n(&m->value, __ATOMIC_RELAXED) : 0;
}

int sov_metrics_escape_label(SovBuf *out, SovStr v)
{
    for (size_t i = 0; i < v.len; i++) {
        char c = v.ptr[i];
        int r = c == '\\'   ? sov_buf_puts(out, "\\\\")
                : c == '"'  ? sov_buf_puts(out, "\\\"")
                : c == '\n' ? sov_buf_puts(out, "\\n")
                            : sov_buf_putc(out, c);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Shortest decimal form that reads back as the same double (0.1, not 0.10000000000000001),
 * as other Prometheus clients print bucket bounds, so `le="0.1"` selects the bucket. */
static void format_double(char *buf, size_t n, double v)
{
    if (isinf(v)) {
        snprintf(buf, n, "%s", v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        char e[40];
        snprintf(e, sizeof(e), "%.*e", prec - 1, v);
        if (strtod(e, NULL) != v)
            continue;
        /* Plain notation for ordinary magnitudes, with exactly the digits that round-trip. */
        int exp = atoi(strchr(e, 'e') + 1);
        if (exp >= -4 && exp < 21)
            snprintf(buf, n, "%.*f", prec - 1 - exp > 0 ? prec - 1 - exp : 0, v);
        else
            snprintf(buf, n, "%s", e);
        return;
    }
    snprintf(buf, n, "%.17g", v);
}

static void put_double(SovBuf *out, double v)
{
    char buf[64];
    format_double(buf, sizeof(buf), v);
    sov_buf_puts(out, buf);
}

static void series_name(SovBuf *out, const char *name, const char *suffix, const char *labels,
                        const char *extra)
{
    sov_buf_printf(out, "%s%s", name, suffix);
    if (*labels || extra) {
        sov_buf_putc(out, '{');
        sov_buf_puts(out, labels);
        if (*labels && extra)
            sov_buf_putc(out, ',');
        if (extra)
            sov_buf_puts(out, extra);
        sov_buf_putc(out, '}');
    }
    sov_buf_putc(out, ' ');
}

static void render_process(SovBuf *out)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "re");

    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    sov_buf_printf(
        out,
        "# HELP process_start_time_seconds Start time of the process since the epoch.\n"
        "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.3f\n"
        "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
        "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %ld\n",
        start_time, rss * sysconf(_SC_PAGESIZE));
}

int sov_metrics_render(SovBuf *out)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};

    for (Family *f = __atomic_load_n(&families, __ATOMIC_ACQUIRE); f;
         f = __atomic_load_n(&f->next, __ATOMIC_ACQUIRE)) {
        sov_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
                       type_names[f->type]);
        for (SovMetric *m = __atomic_load_n(&f->series, __ATOMIC_ACQUIRE); m;
             m = __atomic_load_n(&m->next, __ATOMIC_ACQUIRE)) {
            uint64_t v = __atomic_load_n(&m->value, __ATOMIC_RELAXED);
            if (m->type == M_COUNTER) {
                series_name(out, f->name, "", m->labels, NULL);
                sov_buf_printf(out, "%llu\n", (unsigned long long)v);
            } else if (m->type == M_GAUGE) {
                series_name(out, f->name, "", m->labels, NULL);
                sov_buf_printf(out, "%lld\n", (long long)(int64_t)v);
            } else {
                uint64_t cum = 0, bits = __atomic_load_n(&m->sum_bits, __ATOMIC_RELAXED);
                double sum;
                char le[64];
                memcpy(&sum, &bits, sizeof(sum));
                for (size_t i = 0; i < m->nbounds; i++) {
                    cum += __atomic_load_n(&m->buckets[i], __ATOMIC_RELAXED);
                    char bound[40];
                    format_double(bound, sizeof(bound), m->bounds[i]);
                    snprintf(le, sizeof(le), "le=\"%s\"", bound);
                    series_name(out, f->name, "_bucket", m->labels, le);
                    sov_buf_printf(out, "%llu\n", (unsigned long long)cum);
                }
                /* count is read last-ish, so it can lag buckets; never report +Inf below them */
                if (v < cum)
                    v = cum;
                series_name(out, f->name, "_bucket", m->labels, "le=\"+Inf\"");
                sov_buf_printf(out, "%llu\n", (unsigned long long)v);
                series_name(out, f->name, "_sum", m->labels, NULL);
                put_double(out, sum);
                sov_buf_putc(out, '\n');
                series_name(out, f->name, "_count", m->labels, NULL);
                sov_buf_printf(out, "%llu\n", (unsigned long long)v);
            }
        }
    }
    render_process(out);
    return 0;
}

void sov_metrics_reset(void)
{
    pthread_mutex_lock(&reg_lock);
    for (Family *f = families; f;) {
        Family *fn = f->next;
        for (SovMetric *m = f->series; m;) {
            SovMetric *mn = m->next;
            free(m->labels);
            free(m->bounds);
            free(m->buckets);
            free(m);
            m = mn;
        }
        free(f->name);
        free(f->help);
        free(f);
        f = fn;
    }
    families = NULL;
    pthread_mutex_unlock(&reg_lock);
}
