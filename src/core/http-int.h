/* SPDX-License-Identifier: Apache-2.0 */
/* Private layouts shared by the HTTP server, router and client. */
#ifndef SOV_HTTP_INT_H
#define SOV_HTTP_INT_H

#include <llhttp.h>

#include "sov/http.h"
#include "sov/metrics.h"

#define ROUTE_MAX_PARAMS   8
#define ROUTE_STATUS_SLOTS 24

typedef struct Route Route;

/* Per-route metrics: one counter per status code seen (slots claimed lock-free) and one
 * latency histogram. */
typedef struct RouteStats {
    int status[ROUTE_STATUS_SLOTS];
    SovMetric *count[ROUTE_STATUS_SLOTS];
    SovMetric *latency;
} RouteStats;

struct Route {
    char *method;
    char *pattern;
    unsigned flags;
    SovHttpHandler handler;
    void *userdata;
    RouteStats stats;
};

struct SovRouter {
    Route *routes;
    size_t n;
    RouteStats unmatched;
};

typedef struct RouteParam {
    const char *name; /* points into the route pattern (not NUL-terminated at name_len) */
    size_t name_len;
    SovStr value;
} RouteParam;

/* Finds the route for method+path; fills params. *ret_path_matched tells a 405 from a 404. */
const Route *router_match(const SovRouter *r, SovStr method, SovStr path, RouteParam *params,
                          size_t *ret_nparams, bool *ret_path_matched);
void route_stats_record(RouteStats *st, const char *svc, const char *route, int status,
                        double seconds);

#endif
