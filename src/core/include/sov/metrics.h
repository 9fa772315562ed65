/* SPDX-License-Identifier: Apache-2.0 */
/* Process-wide Prometheus metrics registry: counters, gauges and histograms, each series a
 * metric name plus a fixed label string. Registration takes a lock and is idempotent (the same
 * name and labels give the same series); updates are lock-free atomics, safe from any loop
 * thread. sov_metrics_render() writes the text exposition format (version 0.0.4). */
#ifndef SOV_METRICS_H
#define SOV_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "sov/buf.h"

typedef struct SovMetric SovMetric;

/* labels is the inside of the braces, already escaped, e.g. `route="/healthz",status="200"`,
 * or NULL. Returns NULL only when memory runs out or the name is reused with another type. */
SovMetric *sov_metrics_counter(const char *name, const char *help, const char *labels);
SovMetric *sov_metrics_gauge(const char *name, const char *help, const char *labels);
/* bounds: strictly increasing upper bounds (le); NULL uses the default latency buckets. */
SovMetric *sov_metrics_histogram(const char *name, const char *help, const char *labels,
                                 const double *bounds, size_t nbounds);

void sov_counter_add(SovMetric *m, uint64_t v);
void sov_gauge_set(SovMetric *m, int64_t v);
void sov_gauge_add(SovMetric *m, int64_t v);
void sov_histogram_observe(SovMetric *m, double v);
uint64_t sov_metric_value(const SovMetric *m); /* counter value / gauge value / histogram count */

/* Escapes a label value (backslash, quote, newline) into out. */
int sov_metrics_escape_label(SovBuf *out, SovStr value);
int sov_metrics_render(SovBuf *out);
/* Frees every series; for tests and leak checkers at exit. */
void sov_metrics_reset(void);

#endif
