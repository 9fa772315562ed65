/* SPDX-License-Identifier: Apache-2.0 */
/* Method + path pattern routing and per-route request metrics. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http-int.h"

SovRouter *sov_router_new(void)
{
    return calloc(1, sizeof(SovRouter));
}

static bool pattern_valid(const char *p)
{
    if (*p != '/')
        return false;
    for (const char *s = p; *s; s++) {
        if (*s == '}')
            return false;
        if (*s != '{')
            continue;
        /* A parameter is a whole segment with a non-empty name and no '/' or '{' inside. */
        const char *end = strchr(s, '}');
        if (!end || s[-1] != '/' || (end[1] != '/' && end[1] != '\0'))
            return false;
        if (end - s - 1 - (end[-1] == '+') <= 0 || memchr(s + 1, '/', (size_t)(end - s - 1)) ||
            memchr(s + 1, '{', (size_t)(end - s - 1)))
            return false;
        if (end[-1] == '+' && end[1] != '\0')
            return false; /* greedy parameter only at the end */
        s = end;
    }
    return true;
}

int sov_router_add(SovRouter *r, const char *method, const char *pattern, unsigned flags,
                   SovHttpHandler h, void *userdata)
{
    Route *routes, *rt;

    if (!pattern_valid(pattern))
        return -EINVAL;
    routes = realloc(r->routes, (r->n + 1) * sizeof(*routes));
    if (!routes)
        return -ENOMEM;
    r->routes = routes;
    rt = &routes[r->n];
    *rt = (Route){.method = strdup(method),
                  .pattern = strdup(pattern),
                  .flags = flags,
                  .handler = h,
                  .userdata = userdata};
    if (!rt->method || !rt->pattern) {
        free(rt->method);
        free(rt->pattern);
        return -ENOMEM;
    }
    r->n++;
    return 0;
}

SovRouter *sov_router_free(SovRouter *r)
{
    if (!r)
        return NULL;
    for (size_t i = 0; i < r->n; i++) {
        free(r->routes[i].method);
        free(r->routes[i].pattern);
    }
    free(r->routes);
    free(r);
    return NULL;
}

/* Matches one pattern against a path. */
static bool pattern_match(const char *pat, SovStr path, RouteParam *params, size_t *np)
{
    const char *p = pat;
    size_t i = 0, n = 0;

    while (*p) {
        if (*p == '{') {
            const char *end = strchr(p, '}');
            bool greedy = end[-1] == '+';
            size_t start = i;
            if (greedy) {
                i = path.len;
            } else {
                while (i < path.len && path.ptr[i] != '/')
                    i++;
                if (i == start)
                    return false; /* a single-segment parameter is never empty */
            }
            if (n < ROUTE_MAX_PARAMS) {
                params[n].name = p + 1;
                params[n].name_len = (size_t)(end - p - 1 - (greedy ? 1 : 0));
                params[n].value = (SovStr){path.ptr + start, i - start};
                n++;
            }
            p = end + 1;
            continue;
        }
        if (i >= path.len || path.ptr[i] != *p)
            return false;
        i++;
        p++;
    }
    if (i != path.len)
        return false;
    *np = n;
    return true;
}

const Route *router_match(const SovRouter *r, SovStr method, SovStr path, RouteParam *params,
                          size_t *ret_nparams, bool *ret_path_matched)
{
    *ret_path_matched = false;
    for (size_t k = 0; r && k < r->n; k++) {
        const Route *rt = &r->routes[k];
        size_t np = 0;
        if (!pattern_match(rt->pattern, path, params, &np))
            continue;
        *ret_path_matched = true;
        if (strcmp(rt->method, "*") != 0 && !sov_str_eq(sov_str(rt->method), method))
            continue;
        *ret_nparams = np;
        return rt;
    }
    return NULL;
}

void route_stats_record(RouteStats *st, const char *svc, const char *route, int status,
                        double seconds)
{
    SovMetric *m = NULL;

    for (size_t i = 0; i < ROUTE_STATUS_SLOTS; i++) {
        int cur = __atomic_load_n(&st->status[i], __ATOMIC_ACQUIRE);
        if (cur == status) {
            /* The status is published before its counter: in the instant between, the
             * request counts under the catch-all series below. */
            m = __atomic_load_n(&st->count[i], __ATOMIC_ACQUIRE);
            break;
        }
        if (cur == 0) {
            int expected = 0;
            if (__atomic_compare_exchange_n(&st->status[i], &expected, status, false,
                                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
                SovBuf labels = SOV_BUF_INIT;
                sov_buf_printf(&labels, "svc=\"%s\",route=\"", svc);
                sov_metrics_escape_label(&labels, sov_str(route));
                sov_buf_printf(&labels, "\",status=\"%d\"", status);
                m = sov_metrics_counter("sov_http_requests_total",
                                        "HTTP requests by route and status.", labels.ptr);
                sov_buf_release(&labels);
                __atomic_store_n(&st->count[i], m, __ATOMIC_RELEASE);
                break;
            }
            if (expected == status) {
                m = __atomic_load_n(&st->count[i], __ATOMIC_ACQUIRE);
                break;
            }
        }
    }
    if (!m) /* more distinct statuses than slots, or the series is being made */
        m = sov_metrics_counter("sov_http_requests_other_total",
                                "HTTP requests not counted under their route and status.", NULL);
    sov_counter_add(m, 1);

    m = __atomic_load_n(&st->latency, __ATOMIC_ACQUIRE);
    if (!m) {
        SovBuf labels = SOV_BUF_INIT;
        sov_buf_printf(&labels, "svc=\"%s\",route=\"", svc);
        sov_metrics_escape_label(&labels, sov_str(route));
        sov_buf_putc(&labels, '"');
        m = sov_metrics_histogram("sov_http_request_duration_seconds",
                                  "HTTP request latency from headers to response end.", labels.ptr,
                                  NULL, 0);
        sov_buf_release(&labels);
        /* Registration is idempotent, so two racing threads store the same series. */
        __atomic_store_n(&st->latency, m, __ATOMIC_RELEASE);
    }
    sov_histogram_observe(m, seconds);
}

/* ---- the operations routes every daemon serves ---- */

static void ops_healthz(SovHttpReq *req, void *ud)
{
    sov_http_respond(req, 200, "text/plain; charset=utf-8", "ok\n", 3);
}

static void ops_metrics(SovHttpReq *req, void *ud)
{
    SovBuf out = SOV_BUF_INIT;
    sov_metrics_render(&out);
    sov_http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", out.ptr, out.len);
    sov_buf_release(&out);
}

int sov_router_add_ops(SovRouter *r)
{
    int ret = sov_router_add(r, "GET", "/healthz", 0, ops_healthz, NULL);
    if (ret == 0)
        ret = sov_router_add(r, "HEAD", "/healthz", 0, ops_healthz, NULL);
    if (ret == 0)
        ret = sov_router_add(r, "GET", "/metrics", 0, ops_metrics, NULL);
    return ret;
}
