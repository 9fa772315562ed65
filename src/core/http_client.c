/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP/1.1 client: one request per connection, response parsed by llhttp and streamed to the
 * caller. Used by services to reach each other over their public APIs and by `sov` for health
 * checks. Response headers are bounded like the server's (16 KiB, 100 lines). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http-int.h"

#define CLIENT_MAX_HEAD (16 * 1024)
#define CLIENT_MAX_HDRS 100

struct SovHttpClientReq {
    uv_loop_t *loop;
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    llhttp_t parser;
    SovHttpClientCallbacks cb;
    void *ud;
    SovBuf out;
    SovBuf head; /* header names and values */
    uint32_t name_off[CLIENT_MAX_HDRS], name_len[CLIENT_MAX_HDRS];
    uint32_t val_off[CLIENT_MAX_HDRS], val_len[CLIENT_MAX_HDRS];
    unsigned nhdrs;
    bool in_field, done, tcp_open, headers_seen;
    int err;
    int handles;
    char rbuf[16 * 1024];
};

/* handles counts what can still call back: open handles and a pending name resolution. */
static bool client_unref(SovHttpClientReq *r)
{
    if (--r->handles > 0)
        return false;
    sov_buf_release(&r->out);
    sov_buf_release(&r->head);
    free(r);
    return true;
}

static void client_handle_closed(uv_handle_t *h)
{
    client_unref(h->data);
}

static void client_finish(SovHttpClientReq *r, int err)
{
    if (r->done)
        return;
    r->done = true;
    if (r->cb.on_done)
        r->cb.on_done(r, err, r->ud);
    uv_close((uv_handle_t *)&r->timer, client_handle_closed);
    if (r->tcp_open)
        uv_close((uv_handle_t *)&r->tcp, client_handle_closed);
}

static int c_on_header_field(llhttp_t *p, const char *at, size_t n)
{
    SovHttpClientReq *r = p->data;
    if (!r->in_field) {
        if (r->nhdrs >= CLIENT_MAX_HDRS)
            return HPE_USER;
        r->name_off[r->nhdrs] = (uint32_t)r->head.len;
        r->name_len[r->nhdrs] = 0;
        r->val_len[r->nhdrs] = 0;
        r->val_off[r->nhdrs] = (uint32_t)r->head.len;
        r->nhdrs++;
        r->in_field = true;
    }
    if (sov_buf_append(&r->head, at, n) < 0)
        return HPE_USER;
    r->name_len[r->nhdrs - 1] += (uint32_t)n;
    return 0;
}

static int c_on_header_value(llhttp_t *p, const char *at, size_t n)
{
    SovHttpClientReq *r = p->data;
    if (r->in_field) {
        r->in_field = false;
        r->val_off[r->nhdrs - 1] = (uint32_t)r->head.len;
    }
    if (sov_buf_append(&r->head, at, n) < 0)
        return HPE_USER;
    r->val_len[r->nhdrs - 1] += (uint32_t)n;
    return 0;
}

static int c_on_headers_complete(llhttp_t *p)
{
    SovHttpClientReq *r = p->data;
    r->headers_seen = true;
    if (r->cb.on_headers)
        r->cb.on_headers(r, p->status_code, r->ud);
    return 0;
}

static int c_on_body(llhttp_t *p, const char *at, size_t n)
{
    SovHttpClientReq *r = p->data;
    if (r->cb.on_body && r->cb.on_body(r, at, n, r->ud) < 0) {
        r->err = -ECANCELED;
        return HPE_USER;
    }
    return 0;
}

static int c_on_message_complete(llhttp_t *p)
{
    SovHttpClientReq *r = p->data;
    client_finish(r, 0);
    return HPE_PAUSED;
}

static const llhttp_settings_t client_settings = {
    .on_header_field = c_on_header_field,
    .on_header_value = c_on_header_value,
    .on_headers_complete = c_on_headers_complete,
    .on_body = c_on_body,
    .on_message_complete = c_on_message_complete,
};

SovStr sov_http_client_resp_header(const SovHttpClientReq *r, const char *name)
{
    SovStr n = sov_str(name);
    for (unsigned i = 0; i < r->nhdrs; i++)
        if (sov_str_eq_ci((SovStr){r->head.ptr + r->name_off[i], r->name_len[i]}, n))
            return (SovStr){r->head.ptr + r->val_off[i], r->val_len[i]};
    return SOV_STR_NULL;
}

static void c_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    SovHttpClientReq *r = h->data;
    b->base = r->rbuf;
    b->len = sizeof(r->rbuf);
}

static void c_on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    SovHttpClientReq *r = st->data;
    llhttp_errno_t e;

    if (r->done)
        return;
    if (n < 0) {
        /* EOF ends a close-delimited body; anything else is an error. */
        if (n == UV_EOF && llhttp_finish(&r->parser) == HPE_OK && r->headers_seen) {
            client_finish(r, 0);
            return;
        }
        client_finish(r, n == UV_EOF ? -ECONNRESET : (int)n);
        return;
    }
    e = llhttp_execute(&r->parser, b->base, (size_t)n);
    if (e != HPE_OK && e != HPE_PAUSED)
        client_finish(r, r->err ? r->err : -EPROTO);
}

static void c_on_write(uv_write_t *w, int status)
{
    SovHttpClientReq *r = w->data;
    if (status < 0)
        client_finish(r, status);
}

static void c_on_connect(uv_connect_t *cr, int status)
{
    SovHttpClientReq *r = cr->data;
    uv_buf_t b;

    if (r->done)
        return;
    if (status < 0) {
        client_finish(r, status);
        return;
    }
    b = uv_buf_init(r->out.ptr, (unsigned)r->out.len);
    r->write.data = r;
    if (uv_write(&r->write, (uv_stream_t *)&r->tcp, &b, 1, c_on_write) < 0 ||
        uv_read_start((uv_stream_t *)&r->tcp, c_alloc, c_on_read) < 0)
        client_finish(r, -EIO);
}

static void c_on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *ai)
{
    SovHttpClientReq *r = g->data;

    if (r->done) {
        uv_freeaddrinfo(ai);
        client_unref(r);
        return;
    }
    r->handles--; /* the resolution is over; the request is still referenced by its timer */
    if (status < 0) {
        client_finish(r, status);
        uv_freeaddrinfo(ai);
        return;
    }
    uv_tcp_init(r->loop, &r->tcp);
    r->tcp.data = r;
    r->tcp_open = true;
    r->handles++;
    uv_tcp_nodelay(&r->tcp, 1);
    r->connect.data = r;
    if (uv_tcp_connect(&r->connect, &r->tcp, ai->ai_addr, c_on_connect) < 0)
        client_finish(r, -ECONNREFUSED);
    uv_freeaddrinfo(ai);
}

static void c_on_timeout(uv_timer_t *t)
{
    client_finish(t->data, -ETIMEDOUT);
}

static void c_on_refused(uv_timer_t *t)
{
    SovHttpClientReq *r = t->data;
    client_finish(r, r->err);
}

int sov_http_client_request(uv_loop_t *loop, const char *host, int port, const char *method,
                            const char *target, const char *const *headers, SovStr body,
                            unsigned timeout_ms, const SovHttpClientCallbacks *cb, void *ud)
{
    SovHttpClientReq *r = calloc(1, sizeof(*r));
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    char portstr[16];
    int e;

    if (!r)
        return -ENOMEM;
    r->loop = loop;
    r->cb = *cb;
    r->ud = ud;
    sov_buf_init(&r->out, 0);
    sov_buf_init(&r->head, CLIENT_MAX_HEAD);
    sov_buf_printf(&r->out, "%s %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n", method,
                   target, host, port);
    for (; headers && *headers; headers++)
        sov_buf_printf(&r->out, "%s\r\n", *headers);
    if (body.len || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0)
        sov_buf_printf(&r->out, "Content-Length: %zu\r\n", body.len);
    sov_buf_puts(&r->out, "\r\n");
    sov_buf_append_str(&r->out, body);
    llhttp_init(&r->parser, HTTP_RESPONSE, &client_settings);
    r->parser.data = r;
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    r->handles = 2; /* timer + pending resolution */
    uv_timer_start(&r->timer, c_on_timeout, timeout_ms, 0);
    snprintf(portstr, sizeof(portstr), "%d", port);
    r->gai.data = r;
    e = uv_getaddrinfo(loop, &r->gai, c_on_resolved, host, portstr, &hints);
    if (e < 0) { /* on_done runs from the loop, not before this returns (the caller may still
                  * be filling in what ud points to) */
        r->handles--;
        r->err = e;
        uv_timer_start(&r->timer, c_on_refused, 0, 0);
    }
    return 0;
}

typedef struct FetchCtx {
    int status;
    int err;
    SovBuf *body;
} FetchCtx;

static void f_headers(SovHttpClientReq *r, int status, void *ud)
{
    ((FetchCtx *)ud)->status = status;
}

static int f_body(SovHttpClientReq *r, const char *p, size_t n, void *ud)
{
    FetchCtx *f = ud;
    return f->body ? sov_buf_append(f->body, p, n) : 0;
}

static void f_done(SovHttpClientReq *r, int err, void *ud)
{
    ((FetchCtx *)ud)->err = err;
}

int sov_http_fetch(const char *host, int port, const char *method, const char *target, SovStr body,
                   unsigned timeout_ms, int *ret_status, SovBuf *ret_body)
{
    return sov_http_fetch_headers(host, port, method, target, NULL, body, timeout_ms, ret_status,
                                  ret_body);
}

int sov_http_fetch_headers(const char *host, int port, const char *method, const char *target,
                           const char *const *headers, SovStr body, unsigned timeout_ms,
                           int *ret_status, SovBuf *ret_body)
{
    static const SovHttpClientCallbacks cbs = {f_headers, f_body, f_done};
    FetchCtx f = {.body = ret_body};
    uv_loop_t loop;
    int r;

    r = uv_loop_init(&loop);
    if (r < 0)
        return r;
    r = sov_http_client_request(&loop, host, port, method, target, headers, body, timeout_ms, &cbs,
                                &f);
    if (r >= 0)
        uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    if (r < 0)
        return r;
    if (f.err < 0)
        return f.err;
    *ret_status = f.status;
    return 0;
}
