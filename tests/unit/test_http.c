/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP server and client tests: a real server on a loop thread, driven over loopback TCP with
 * raw bytes, including malformed and hostile input (smuggling attempts, overflows, timeouts). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "sov/crypto.h"
#include "sov/daemon.h"
#include "sov/http.h"
#include "sov/metrics.h"

static int port;
static int listen_fd;
static SovRouter *router;
static SovWorkers *workers;
static SovHttpServer *server;

/* ---- handlers ---- */

static void h_hello(SovHttpReq *req, void *ud)
{
    sov_http_respond(req, 200, "text/plain", "hello\n", 6);
}

static void h_echo(SovHttpReq *req, void *ud)
{
    SovStr b = sov_http_req_body(req);
    sov_http_respond(req, 200, "application/octet-stream", b.ptr, b.len);
}

static void h_param(SovHttpReq *req, void *ud)
{
    SovStr id = sov_http_req_param(req, "id"), rest = sov_http_req_param(req, "rest");
    char out[256];
    int n = snprintf(out, sizeof(out), "id=%.*s rest=%.*s q=%.*s", SOV_STR_ARG(id),
                     SOV_STR_ARG(rest), SOV_STR_ARG(sov_http_req_query(req)));
    sov_http_respond(req, 200, "text/plain", out, (size_t)n);
}

static void h_inject(SovHttpReq *req, void *ud)
{
    int r1 = sov_http_resp_header(req, "X-Bad", SOV_STR("a\r\nSet-Cookie: x=1"));
    int r2 = sov_http_resp_header(req, "Bad Name", SOV_STR("v"));
    int r3 = sov_http_resp_header(req, "X-Good", SOV_STR("fine"));
    char out[64];
    int n = snprintf(out, sizeof(out), "%d %d %d", r1, r2, r3);
    sov_http_respond(req, 200, "text/plain", out, (size_t)n);
}

/* Streaming upload that pauses after every piece and resumes from a timer, counting bytes and
 * hashing them. */
typedef struct Slow {
    uv_timer_t timer;
    SovHttpReq *req;
    SovDigest *d;
    uint64_t bytes;
    unsigned pauses;
} Slow;

static void slow_closed(uv_handle_t *h)
{
    Slow *s = h->data;
    sov_http_req_unref(s->req);
    sov_digest_free(s->d);
    free(s);
}

static void slow_resume(uv_timer_t *t)
{
    Slow *s = t->data;
    sov_http_req_resume(s->req);
}

static int slow_data(SovHttpReq *req, const char *p, size_t n, void *ud)
{
    Slow *s = ud;
    s->bytes += n;
    sov_digest_update(s->d, p, n);
    s->pauses++;
    sov_http_req_pause(req);
    uv_timer_start(&s->timer, slow_resume, 0, 0);
    return 0;
}

static void slow_end(SovHttpReq *req, void *ud)
{
    Slow *s = ud;
    uint8_t dg[32];
    char hex[65], out[160];
    sov_digest_final(s->d, dg);
    sov_hex_encode(dg, 32, hex);
    int n = snprintf(out, sizeof(out), "%llu %s", (unsigned long long)s->bytes, hex);
    sov_http_respond(req, 200, "text/plain", out, (size_t)n);
    uv_close((uv_handle_t *)&s->timer, slow_closed);
}

static void slow_error(SovHttpReq *req, int err, void *ud)
{
    Slow *s = ud;
    uv_close((uv_handle_t *)&s->timer, slow_closed);
}

static void h_slow(SovHttpReq *req, void *ud)
{
    static const SovHttpBodyCallbacks cbs = {slow_data, slow_end, slow_error};
    Slow *s = calloc(1, sizeof(*s));
    uv_loop_t *loop = ud;
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    s->req = req;
    s->d = sov_digest_new(SOV_DIGEST_SHA256);
    sov_http_req_ref(req);
    sov_http_req_read_body(req, &cbs, s);
}

/* Answers 403 without reading the body. */
static void h_deny(SovHttpReq *req, void *ud)
{
    sov_http_respond(req, 403, "text/plain", "denied\n", 7);
}

/* A chunked response of N bytes in 1000-byte writes. */
typedef struct Gen {
    int left;
    char block[1000];
} Gen;

static void gen_next(SovHttpReq *req, int status, void *ud)
{
    Gen *g = ud;
    if (status < 0 || g->left == 0) {
        if (status == 0)
            sov_http_resp_end(req);
        free(g);
        return;
    }
    int n = g->left < 1000 ? g->left : 1000;
    g->left -= n;
    sov_http_resp_write(req, g->block, (size_t)n, gen_next, g);
}

static void h_gen(SovHttpReq *req, void *ud)
{
    Gen *g = malloc(sizeof(*g));
    memset(g->block, 'x', sizeof(g->block));
    g->left = 2500;
    sov_http_resp_start(req, 200, -1);
    gen_next(req, 0, g);
}

/* ---- server on a worker thread ---- */

static void *start_server(uv_loop_t *loop, unsigned idx, void *ud)
{
    SovHttpServerConfig cfg = {.router = router, .svc = "test"};

    sov_router_add(router, "PUT", "/slow", SOV_ROUTE_STREAM, h_slow, loop);
    sov_http_limits_default(&cfg.limits);
    cfg.limits.max_header_bytes = 2048;
    cfg.limits.max_headers = 20;
    cfg.limits.max_url = 512;
    cfg.limits.max_buffered_body = 4096;
    cfg.limits.max_body = 1 << 20;
    cfg.limits.header_timeout_ms = 300;
    cfg.limits.body_timeout_ms = 300;
    cfg.limits.idle_timeout_ms = 300;
    server = sov_http_server_new(loop, &cfg);
    assert_non_null(server);
    assert_int_equal(sov_http_server_listen_fd(server, listen_fd), 0);
    return server;
}

static void server_done(SovHttpServer *s, void *ud)
{
}

static void stop_server(uv_loop_t *loop, void *state, void *ud)
{
    sov_http_server_shutdown(state, server_done, NULL);
}

static void free_server(void *state, void *ud)
{
    sov_http_server_free(state);
}

static int setup(void **st)
{
    router = sov_router_new();
    sov_router_add(router, "GET", "/hello", 0, h_hello, NULL);
    sov_router_add(router, "HEAD", "/hello", 0, h_hello, NULL);
    sov_router_add(router, "POST", "/echo", 0, h_echo, NULL);
    sov_router_add(router, "GET", "/items/{id}/files/{rest+}", 0, h_param, NULL);
    sov_router_add(router, "GET", "/inject", 0, h_inject, NULL);
    sov_router_add(router, "PUT", "/deny", SOV_ROUTE_STREAM, h_deny, NULL);
    sov_router_add(router, "GET", "/gen", 0, h_gen, NULL);
    sov_router_add(router, "HEAD", "/gen", 0, h_gen, NULL);
    sov_router_add(router, "POST", "/items/{id}/files/{rest+}", 0, h_param, NULL);
    if (sov_listen_tcp("127.0.0.1", 0, false, &listen_fd, &port) < 0)
        return -1;
    return sov_workers_start(1, start_server, stop_server, free_server, NULL, &workers);
}

static int teardown(void **st)
{
    sov_workers_stop(workers);
    sov_router_free(router);
    sov_metrics_reset();
    return 0;
}

/* ---- client helpers ---- */

static int connect_srv(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {.tv_sec = 10};
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static void send_str(int fd, const char *s)
{
    size_t n = strlen(s);
    assert_int_equal(send(fd, s, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Reads everything until the server closes (or 10 s pass, which fails the test). */
static char *read_all(int fd, size_t *ret_len)
{
    SovBuf b = SOV_BUF_INIT;
    char tmp[4096];
    ssize_t n;
    while ((n = recv(fd, tmp, sizeof(tmp), 0)) > 0)
        sov_buf_append(&b, tmp, (size_t)n);
    assert_true(n == 0 || errno == ECONNRESET);
    if (ret_len)
        *ret_len = b.len;
    return sov_buf_steal(&b);
}

typedef struct Resp {
    int status;
    char head[4096];
    SovBuf body;
} Resp;

static SovBuf pending; /* bytes read past the last response */

static int fill(int fd)
{
    char tmp[4096];
    ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
    if (n > 0)
        sov_buf_append(&pending, tmp, (size_t)n);
    return (int)n;
}

/* Reads one response (Content-Length or chunked body). Returns 0, or -1 on EOF. */
static int read_resp(int fd, Resp *r, bool head_only_body)
{
    char *end;
    memset(r, 0, sizeof(*r));
    while (!(pending.ptr && (end = strstr(pending.ptr, "\r\n\r\n"))))
        if (fill(fd) <= 0)
            return -1;
    size_t hlen = (size_t)(end - pending.ptr) + 4;
    assert_true(hlen < sizeof(r->head));
    memcpy(r->head, pending.ptr, hlen);
    sov_buf_consume(&pending, hlen);
    assert_int_equal(sscanf(r->head, "HTTP/1.1 %d", &r->status), 1);
    if (head_only_body || r->status == 100 || r->status == 204 || r->status == 304)
        return 0;
    const char *cl = strcasestr(r->head, "\r\ncontent-length: ");
    if (cl) {
        size_t len = strtoul(cl + 18, NULL, 10);
        while (pending.len < len)
            if (fill(fd) <= 0)
                return -1;
        sov_buf_append(&r->body, pending.ptr, len);
        sov_buf_consume(&pending, len);
        return 0;
    }
    assert_non_null(strcasestr(r->head, "\r\ntransfer-encoding: chunked"));
    for (;;) {
        while (!(pending.ptr && strstr(pending.ptr, "\r\n")))
            if (fill(fd) <= 0)
                return -1;
        size_t len = strtoul(pending.ptr, NULL, 16);
        size_t line = (size_t)(strstr(pending.ptr, "\r\n") - pending.ptr) + 2;
        while (pending.len < line + len + 2)
            if (fill(fd) <= 0)
                return -1;
        sov_buf_append(&r->body, pending.ptr + line, len);
        sov_buf_consume(&pending, line + len + 2);
        if (len == 0)
            return 0;
    }
}

static void resp_release(Resp *r)
{
    sov_buf_release(&r->body);
}

static void expect_closed(int fd)
{
    size_t n;
    char *rest = read_all(fd, &n);
    assert_int_equal(n, 0);
    free(rest);
}

static int one_shot(const char *request, Resp *r)
{
    int fd = connect_srv();
    sov_buf_reset(&pending);
    send_str(fd, request);
    int rc = read_resp(fd, r, false);
    return rc < 0 ? -1 : fd;
}

/* ---- tests ---- */

static void test_get(void **st)
{
    Resp r;
    int fd = one_shot("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_memory_equal(r.body.ptr, "hello\n", 6);
    assert_non_null(strstr(r.head, "Content-Length: 6\r\n"));
    assert_non_null(strstr(r.head, "Date: "));
    assert_null(strstr(r.head, "Connection: close"));
    resp_release(&r);
    /* keep-alive: a second request on the same connection */
    send_str(fd, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(fd, &r, false), 0);
    assert_int_equal(r.status, 200);
    resp_release(&r);
    close(fd);
}

static void test_pipelining(void **st)
{
    Resp r;
    int fd = one_shot("GET /hello HTTP/1.1\r\n\r\nPOST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\n"
                      "abcGET /items/7/files/a/b?x=1 HTTP/1.1\r\n\r\nGET /gen HTTP/1.1\r\n\r\n"
                      "GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n",
                      &r);
    assert_int_equal(r.status, 200);
    assert_memory_equal(r.body.ptr, "hello\n", 6);
    resp_release(&r);
    assert_int_equal(read_resp(fd, &r, false), 0);
    assert_int_equal(r.body.len, 3);
    assert_memory_equal(r.body.ptr, "abc", 3);
    resp_release(&r);
    assert_int_equal(read_resp(fd, &r, false), 0);
    assert_string_equal(r.body.ptr, "id=7 rest=a/b q=x=1");
    resp_release(&r);
    assert_int_equal(read_resp(fd, &r, false), 0);
    assert_int_equal(r.body.len, 2500);
    resp_release(&r);
    assert_int_equal(read_resp(fd, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "Connection: close"));
    resp_release(&r);
    expect_closed(fd);
    close(fd);
}

static void test_http10(void **st)
{
    Resp r;
    int fd = one_shot("GET /hello HTTP/1.0\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "Connection: close"));
    resp_release(&r);
    expect_closed(fd);
    close(fd);
    fd = one_shot("GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &r);
    assert_non_null(strstr(r.head, "Connection: keep-alive"));
    resp_release(&r);
    send_str(fd, "GET /hello HTTP/1.0\r\n\r\n");
    assert_int_equal(read_resp(fd, &r, false), 0);
    assert_int_equal(r.status, 200);
    resp_release(&r);
    close(fd);
    /* HTTP/1.0 cannot take a chunked response: the body ends with the connection */
    fd = connect_srv();
    send_str(fd, "GET /gen HTTP/1.0\r\n\r\n");
    size_t n;
    char *all = read_all(fd, &n);
    assert_null(strcasestr(all, "transfer-encoding"));
    assert_true(n > 2500);
    free(all);
    close(fd);
}

static void test_chunked_request(void **st)
{
    Resp r;
    int fd = one_shot("POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nTrailer: x\r\n\r\n",
                      &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, 7);
    assert_memory_equal(r.body.ptr, "abcdefg", 7);
    resp_release(&r);
    close(fd);
}

static void test_trailers_keep_params(void **st)
{
    /* Many trailer fields after a chunked body must not disturb the route parameters the
     * handler reads once the body is in. */
    SovBuf rq = {0};
    sov_buf_puts(&rq, "POST /items/abc/files/x/y.txt HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "3\r\nabc\r\n0\r\n");
    for (int i = 0; i < 15; i++)
        sov_buf_printf(&rq, "X-Trailer-%d: %0100d\r\n", i, i);
    sov_buf_puts(&rq, "\r\n");
    Resp r;
    int fd = one_shot(rq.ptr, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.ptr, "id=abc rest=x/y.txt q=");
    resp_release(&r);
    sov_buf_release(&rq);
    close(fd);
}

static void test_head_streamed(void **st)
{
    /* HEAD of a streamed (chunked) answer: the head names the framing, no chunk follows. */
    Resp r;
    int fd = connect_srv();
    sov_buf_reset(&pending);
    send_str(fd, "HEAD /gen HTTP/1.1\r\n\r\n");
    assert_int_equal(read_resp(fd, &r, true), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strcasestr(r.head, "\r\ntransfer-encoding: chunked"));
    send_str(fd, "GET /hello HTTP/1.1\r\n\r\n");
    assert_int_equal(read_resp(fd, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, 6);
    assert_memory_equal(r.body.ptr, "hello\n", 6);
    resp_release(&r);
    close(fd);
}

static void test_expect_continue(void **st)
{
    Resp r;
    int fd =
        one_shot("POST /echo HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n", &r);
    assert_int_equal(r.status, 100);
    send_str(fd, "wxyz");
    assert_int_equal(read_resp(fd, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_memory_equal(r.body.ptr, "wxyz", 4);
    resp_release(&r);
    close(fd);
    /* too large: a final 413 instead of 100, and the connection closes */
    fd = one_shot("POST /echo HTTP/1.1\r\nContent-Length: 999999\r\nExpect: 100-continue\r\n\r\n",
                  &r);
    assert_int_equal(r.status, 413);
    assert_non_null(strstr(r.head, "Connection: close"));
    resp_release(&r);
    expect_closed(fd);
    close(fd);
    /* an empty streamed body still gets its 100 (botocore waits for it), then the answer */
    fd = one_shot("PUT /slow HTTP/1.1\r\nContent-Length: 0\r\nExpect: 100-continue\r\n\r\n", &r);
    assert_int_equal(r.status, 100);
    assert_int_equal(read_resp(fd, &r, false), 0);
    assert_int_equal(r.status, 200);
    resp_release(&r);
    close(fd);
    /* answered without the 100: the connection closes so no half-sent request lingers */
    fd = one_shot("PUT /deny HTTP/1.1\r\nContent-Length: 0\r\nExpect: 100-continue\r\n\r\n", &r);
    assert_int_equal(r.status, 403);
    assert_non_null(strstr(r.head, "Connection: close"));
    resp_release(&r);
    expect_closed(fd);
    close(fd);
}

static void expect_status_and_close(const char *request, int status)
{
    Resp r;
    int fd = one_shot(request, &r);
    assert_true(fd >= 0);
    if (r.status != status)
        print_message("request %.60s: status %d\n", request, r.status);
    assert_int_equal(r.status, status);
    resp_release(&r);
    expect_closed(fd);
    close(fd);
}

static void test_smuggling(void **st)
{
    /* Content-Length together with Transfer-Encoding */
    expect_status_and_close(
        "POST /echo HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        "0\r\n\r\nGET /hello HTTP/1.1\r\n\r\n",
        400);
    /* two different Content-Lengths */
    expect_status_and_close(
        "POST /echo HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde", 400);
    /* bare LF line endings */
    expect_status_and_close("GET /hello HTTP/1.1\nHost: x\n\n", 400);
    /* a CR in a header value */
    expect_status_and_close("GET /hello HTTP/1.1\r\nX: a\rb\r\n\r\n", 400);
    /* Transfer-Encoding other than chunked last */
    expect_status_and_close(
        "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400);
    /* chunk size that overflows */
    expect_status_and_close("POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "fffffffffffffffffff\r\nx\r\n",
                            400);
    /* obsolete line folding */
    expect_status_and_close("GET /hello HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 400);
    /* space before the colon */
    expect_status_and_close("GET /hello HTTP/1.1\r\nHost : x\r\n\r\n", 400);
    /* negative content length */
    expect_status_and_close("POST /echo HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400);
}

static void test_limits(void **st)
{
    char big[8192];
    /* header bytes over the limit */
    snprintf(big, sizeof(big), "GET /hello HTTP/1.1\r\nX-Big: %03000d\r\n\r\n", 0);
    expect_status_and_close(big, 431);
    /* too many header lines */
    SovBuf b = SOV_BUF_INIT;
    sov_buf_puts(&b, "GET /hello HTTP/1.1\r\n");
    for (int i = 0; i < 30; i++)
        sov_buf_printf(&b, "X-%d: v\r\n", i);
    sov_buf_puts(&b, "\r\n");
    expect_status_and_close(b.ptr, 431);
    sov_buf_release(&b);
    /* URL over the limit */
    snprintf(big, sizeof(big), "GET /%0600d HTTP/1.1\r\n\r\n", 0);
    expect_status_and_close(big, 414);
    /* unsupported version */
    expect_status_and_close("GET /hello HTTP/2.0\r\n\r\n", 505);
    /* buffered body over the limit, announced and chunked */
    expect_status_and_close("POST /echo HTTP/1.1\r\nContent-Length: 5000\r\n\r\n", 413);
    b = (SovBuf)SOV_BUF_INIT;
    sov_buf_puts(&b, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 6; i++) {
        sov_buf_puts(&b, "400\r\n");
        for (int k = 0; k < 1024; k++)
            sov_buf_putc(&b, 'a');
        sov_buf_puts(&b, "\r\n");
    }
    sov_buf_puts(&b, "0\r\n\r\n");
    expect_status_and_close(b.ptr, 413);
    sov_buf_release(&b);
    /* garbage */
    expect_status_and_close("\x01\x02\x03 / HTTP/1.1\r\n\r\n", 400);
}

static void test_timeouts(void **st)
{
    /* headers never finished: 408 once the header timeout passes */
    expect_status_and_close("GET /hello HTTP/1.1\r\nHost:", 408);
    /* body never finished */
    expect_status_and_close("POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", 408);
    /* an idle keep-alive connection is closed without a response */
    int fd = connect_srv();
    expect_closed(fd);
    close(fd);
}

static void test_head_and_errors(void **st)
{
    Resp r;
    int fd = connect_srv();
    sov_buf_reset(&pending);
    send_str(fd, "HEAD /hello HTTP/1.1\r\n\r\n");
    assert_int_equal(read_resp(fd, &r, true), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "Content-Length: 6\r\n"));
    /* no body follows: the next response starts right away */
    send_str(fd, "GET /nope HTTP/1.1\r\n\r\n");
    assert_int_equal(read_resp(fd, &r, false), 0);
    assert_int_equal(r.status, 404);
    assert_non_null(strstr(r.body.ptr, "\"code\":404"));
    resp_release(&r);
    send_str(fd, "DELETE /hello HTTP/1.1\r\n\r\n");
    assert_int_equal(read_resp(fd, &r, false), 0);
    assert_int_equal(r.status, 405);
    resp_release(&r);
    /* response header injection is refused by the API */
    send_str(fd, "GET /inject HTTP/1.1\r\n\r\n");
    assert_int_equal(read_resp(fd, &r, false), 0);
    assert_string_equal(r.body.ptr, "-22 -22 0");
    assert_non_null(strstr(r.head, "X-Good: fine\r\n"));
    assert_null(strstr(r.head, "Set-Cookie"));
    resp_release(&r);
    close(fd);
}

static void test_streaming_upload(void **st)
{
    /* 300 KiB in many writes, paused after every piece: bytes and digest must match */
    size_t total = 300 * 1024;
    char *data = malloc(total);
    uint8_t dg[32];
    char hex[65], expect[128];
    for (size_t i = 0; i < total; i++)
        data[i] = (char)(i * 7);
    sov_sha256(data, total, dg);
    sov_hex_encode(dg, 32, hex);
    snprintf(expect, sizeof(expect), "%zu %s", total, hex);

    int fd = connect_srv();
    char head[128];
    snprintf(head, sizeof(head), "PUT /slow HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", total);
    send_str(fd, head);
    for (size_t off = 0; off < total; off += 10000) {
        size_t n = total - off < 10000 ? total - off : 10000;
        assert_int_equal(send(fd, data + off, n, MSG_NOSIGNAL), (ssize_t)n);
    }
    Resp r;
    sov_buf_reset(&pending);
    assert_int_equal(read_resp(fd, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.ptr, expect);
    resp_release(&r);

    /* the same body chunked */
    send_str(fd, "PUT /slow HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (size_t off = 0; off < total; off += 10000) {
        size_t n = total - off < 10000 ? total - off : 10000;
        char ch[32];
        snprintf(ch, sizeof(ch), "%zx\r\n", n);
        send_str(fd, ch);
        assert_int_equal(send(fd, data + off, n, MSG_NOSIGNAL), (ssize_t)n);
        send_str(fd, "\r\n");
    }
    send_str(fd, "0\r\n\r\n");
    assert_int_equal(read_resp(fd, &r, false), 0);
    assert_string_equal(r.body.ptr, expect);
    resp_release(&r);
    close(fd);
    free(data);
}

static void test_early_response(void **st)
{
    /* The handler refuses without reading a small body: the connection stays usable. */
    Resp r;
    int fd = one_shot(
        "PUT /deny HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcdeGET /hello HTTP/1.1\r\n\r\n", &r);
    assert_int_equal(r.status, 403);
    resp_release(&r);
    assert_int_equal(read_resp(fd, &r, false), 0);
    assert_int_equal(r.status, 200);
    resp_release(&r);
    close(fd);
    /* With Expect: 100-continue the body never comes: the connection closes. */
    fd = one_shot("PUT /deny HTTP/1.1\r\nContent-Length: 500000\r\nExpect: 100-continue\r\n\r\n",
                  &r);
    assert_int_equal(r.status, 403);
    assert_non_null(strstr(r.head, "Connection: close"));
    resp_release(&r);
    expect_closed(fd);
    close(fd);
}

static void test_client(void **st)
{
    SovBuf body;
    int status = 0;
    sov_buf_init(&body, 1 << 20);
    assert_int_equal(
        sov_http_fetch("127.0.0.1", port, "GET", "/hello", SOV_STR_NULL, 5000, &status, &body), 0);
    assert_int_equal(status, 200);
    assert_int_equal(body.len, 6);
    sov_buf_reset(&body);
    assert_int_equal(
        sov_http_fetch("127.0.0.1", port, "GET", "/gen", SOV_STR_NULL, 5000, &status, &body), 0);
    assert_int_equal(body.len, 2500);
    sov_buf_reset(&body);
    assert_int_equal(sov_http_fetch("127.0.0.1", port, "POST", "/echo", SOV_STR("payload"), 5000,
                                    &status, &body),
                     0);
    assert_string_equal(body.ptr, "payload");
    sov_buf_release(&body);
    /* nothing listens on a port we just closed */
    int fd, p;
    assert_int_equal(sov_listen_tcp("127.0.0.1", 0, false, &fd, &p), 0);
    close(fd);
    assert_true(sov_http_fetch("127.0.0.1", p, "GET", "/", SOV_STR_NULL, 5000, &status, NULL) < 0);
}

typedef struct Refused {
    bool returned;
    int calls, err;
} Refused;

static void refused_done(SovHttpClientReq *r, int err, void *ud)
{
    Refused *f = ud;
    assert_true(f->returned); /* not from inside sov_http_client_request */
    f->calls++;
    f->err = err;
}

/* A name the resolver refuses at once still answers through on_done, from the loop. */
static void test_client_refused_name(void **st)
{
    static const SovHttpClientCallbacks cbs = {NULL, NULL, refused_done};
    char name[400];
    memset(name, 'a', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    /* invalid UTF-8 (any libuv with IDNA), a name over 255 bytes (a libuv with the fix for
     * CVE-2024-24806, as Debian 12's; an older one resolves it, and it fails from the loop) */
    const char *hosts[] = {"bad\xff\xfename", name};
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        uv_loop_t loop;
        Refused f = {0};
        assert_int_equal(uv_loop_init(&loop), 0);
        int r = sov_http_client_request(&loop, hosts[i], 80, "GET", "/", NULL, SOV_STR_NULL, 5000,
                                        &cbs, &f);
        f.returned = true;
        assert_int_equal(r, 0);
        assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
        assert_int_equal(f.calls, 1);
        assert_true(f.err < 0 && f.err != -ETIMEDOUT);
        assert_int_equal(uv_loop_close(&loop), 0);
    }
}

static void test_metrics(void **st)
{
    SovBuf b = SOV_BUF_INIT;
    Resp r;
    int fd = one_shot("GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n", &r);
    resp_release(&r);
    expect_closed(fd);
    close(fd);
    sov_metrics_render(&b);
    assert_non_null(
        strstr(b.ptr, "sov_http_requests_total{svc=\"test\",route=\"/hello\",status=\"200\"}"));
    assert_non_null(strstr(
        b.ptr,
        "sov_http_request_duration_seconds_bucket{svc=\"test\",route=\"/hello\",le=\"+Inf\"}"));
    assert_non_null(strstr(b.ptr, "route=\"unmatched\",status=\"404\""));
    sov_buf_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get),
        cmocka_unit_test(test_pipelining),
        cmocka_unit_test(test_http10),
        cmocka_unit_test(test_chunked_request),
        cmocka_unit_test(test_trailers_keep_params),
        cmocka_unit_test(test_head_streamed),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_smuggling),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_head_and_errors),
        cmocka_unit_test(test_streaming_upload),
        cmocka_unit_test(test_early_response),
        cmocka_unit_test(test_client),
        cmocka_unit_test(test_client_refused_name),
        cmocka_unit_test(test_metrics),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
