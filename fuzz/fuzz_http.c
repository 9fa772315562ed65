/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for the HTTP/1.1 server: each input is sent over a real loopback TCP
 * connection to a SovHttpServer on a libuv loop, so llhttp, the connection state machine,
 * limits, buffered and streaming bodies (with pause/resume), pipelining and the response
 * writers all run as they do in a daemon. The server must never crash, and whatever it sends
 * back must start with an HTTP/1.1 status line. When the server closes in an orderly way, the
 * whole reply must also parse as a sequence of HTTP/1.1 responses (llhttp in response mode),
 * with no body after a response to HEAD: the handlers and the error page note, in order, which
 * responses answer a HEAD request on the current connection. FUZZ_HTTP_FRAMING=0 turns this
 * second check off.
 *
 * Input layout: the first byte chooses how the rest is cut into two or three writes, with the
 * loop run in between so that the server parses each piece separately (requests split inside
 * the request line, a header or a chunk size); the remaining bytes are the request stream.
 * After the last write the client half-closes and reads until the server closes. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <llhttp.h>
#include <uv.h>

#include "sov/http.h"

#define RESP_MAX       (256 * 1024) /* response bytes kept for checking */
#define WAIT_MS        500          /* longest wait for the server to close, per input */
#define DRAIN_MS       100          /* longest wait for the server to drop the connection */
#define PENDING_MAX    64           /* paused uploads waiting for their resume */
#define EXPECT_MAX     256          /* responses noted per input */
#define INPUT_MAX      (256 * 1024) /* bigger inputs teach nothing and slow the run */
#define STATUS_PREFIX  "HTTP/1.1 "
#define STATUS_LINE_SZ 13 /* "HTTP/1.1 200 " */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uv_loop_t loop;
static SovHttpServer *server;
static int server_port;
static uv_idle_t resumer;
static SovHttpReq *pending[PENDING_MAX];
static size_t npending;
static bool debug;   /* FUZZ_HTTP_DEBUG=1: print each response, to study a reproducer */
static bool framing; /* check response framing (FUZZ_HTTP_FRAMING=0 turns it off) */

/* Responses the server was asked to send on the current client's connection, in order: true
 * for a response to HEAD (headers only). */
static int client_port;
static bool expect_head[EXPECT_MAX];
static size_t nexpect;
static bool expect_overflow;

static void on_resume(uv_idle_t *h);

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- handlers ---- */

/* Notes a response about to be produced for req (handlers and the error page call it). */
static void note_response(SovHttpReq *req)
{
    const char *peer = sov_http_req_peer(req);
    const char *colon = peer ? strrchr(peer, ':') : NULL;

    if (!colon || atoi(colon + 1) != client_port)
        return; /* a connection left over from an earlier input */
    if (nexpect == EXPECT_MAX) {
        expect_overflow = true;
        return;
    }
    expect_head[nexpect++] = sov_http_req_is_head(req);
}

static void error_page(SovHttpReq *req, int status, const char *message, void *ud)
{
    note_response(req);
    sov_http_respond(req, status, "text/plain", message, strlen(message));
}

static void h_hello(SovHttpReq *req, void *ud)
{
    static const char body[] = "Hello from sovcloud\n";
    note_response(req);
    sov_http_respond(req, 200, "text/plain", body, sizeof(body) - 1);
}

static void h_echo(SovHttpReq *req, void *ud)
{
    SovStr body = sov_http_req_body(req);
    SovStr ct = sov_http_req_header(req, "content-type");

    if (ct.ptr)
        sov_http_resp_header(req, "X-Echo-Content-Type", ct);
    note_response(req);
    sov_http_respond(req, 200, "application/octet-stream", body.ptr, body.len);
}

static void h_item(SovHttpReq *req, void *ud)
{
    SovStr id = sov_http_req_param(req, "id");
    note_response(req);
    sov_http_respond(req, 200, "text/plain", id.ptr, id.len);
}

/* A streamed response: chunked for HTTP/1.1, close-delimited for HTTP/1.0. */
static void h_chunked(SovHttpReq *req, void *ud)
{
    static const char a[] = "first piece\n", b[] = "second\n";

    note_response(req);
    if (sov_http_resp_start(req, 200, -1) < 0)
        return;
    if (sov_http_resp_write(req, a, sizeof(a) - 1, NULL, NULL) < 0 ||
        sov_http_resp_write(req, b, sizeof(b) - 1, NULL, NULL) < 0)
        return;
    sov_http_resp_end(req);
}

/* PUT /upload: counts the streamed body and answers with its size. Every other piece pauses
 * the body and resumes it from the next loop iteration, the way a handler waiting on disk
 * would. The state is malloc'd so that LeakSanitizer notices if neither on_end nor on_error
 * runs. */
typedef struct Upload {
    uint64_t bytes;
    unsigned pieces;
} Upload;

static int up_data(SovHttpReq *req, const char *p, size_t n, void *ud)
{
    Upload *u = ud;

    u->bytes += n;
    if (u->pieces++ % 2 == 1 && npending < PENDING_MAX) {
        sov_http_req_ref(req);
        sov_http_req_pause(req);
        pending[npending++] = req;
        uv_idle_start(&resumer, on_resume);
    }
    return 0;
}

static void up_end(SovHttpReq *req, void *ud)
{
    Upload *u = ud;
    char body[64];
    int n = snprintf(body, sizeof(body), "{\"bytes\":%llu}\n", (unsigned long long)u->bytes);

    note_response(req);
    sov_http_respond(req, 200, "application/json", body, (size_t)n);
    free(u);
}

static void up_error(SovHttpReq *req, int err, void *ud)
{
    free(ud);
}

static void h_upload(SovHttpReq *req, void *ud)
{
    static const SovHttpBodyCallbacks cbs = {up_data, up_end, up_error};
    Upload *u;

    /* ?early answers before the body is read, leaving the server to discard it. */
    if (sov_str_eq(sov_http_req_query(req), SOV_STR("early"))) {
        note_response(req);
        sov_http_respond(req, 201, "text/plain", "early\n", 6);
        return;
    }
    u = calloc(1, sizeof(*u));
    if (!u) {
        sov_http_respond_error(req, 503, "out of memory");
        return;
    }
    if (sov_http_req_read_body(req, &cbs, u) < 0) {
        free(u);
        sov_http_respond_error(req, 500, "cannot read body");
    }
}

static void on_resume(uv_idle_t *h)
{
    size_t n = npending;

    npending = 0;
    uv_idle_stop(h);
    for (size_t i = 0; i < n; i++) {
        SovHttpReq *req = pending[i];
        if (!sov_http_req_is_closed(req))
            sov_http_req_resume(req);
        sov_http_req_unref(req);
    }
}

/* ---- setup ---- */

static int setup(void)
{
    static SovHttpServerConfig cfg;
    SovRouter *router;
    int fd, r;

    /* The server writes to sockets the client may already have closed. */
    signal(SIGPIPE, SIG_IGN);
    debug = getenv("FUZZ_HTTP_DEBUG") != NULL;
    framing = !getenv("FUZZ_HTTP_FRAMING") || strcmp(getenv("FUZZ_HTTP_FRAMING"), "0") != 0;
    if (uv_loop_init(&loop) < 0)
        return -1;
    uv_idle_init(&loop, &resumer);

    router = sov_router_new();
    if (!router)
        return -1;
    if (sov_router_add(router, "GET", "/hello", 0, h_hello, NULL) < 0 ||
        sov_router_add(router, "HEAD", "/hello", 0, h_hello, NULL) < 0 ||
        sov_router_add(router, "POST", "/echo", 0, h_echo, NULL) < 0 ||
        sov_router_add(router, "PUT", "/upload", SOV_ROUTE_STREAM, h_upload, NULL) < 0 ||
        sov_router_add(router, "GET", "/items/{id}", 0, h_item, NULL) < 0 ||
        sov_router_add(router, "*", "/chunked/{rest+}", 0, h_chunked, NULL) < 0)
        return -1;

    sov_http_limits_default(&cfg.limits);
    cfg.limits.max_header_bytes = 2048;
    cfg.limits.max_headers = 20;
    cfg.limits.max_url = 512;
    cfg.limits.max_buffered_body = 4096;
    cfg.limits.max_body = 65536;
    cfg.limits.header_timeout_ms = 2000;
    cfg.limits.body_timeout_ms = 2000;
    cfg.limits.idle_timeout_ms = 2000;
    cfg.limits.max_connections = 1000;
    cfg.router = router;
    cfg.svc = "fuzz";
    cfg.access_log = false;
    cfg.error_page = error_page;

    server = sov_http_server_new(&loop, &cfg);
    if (!server)
        return -1;
    r = sov_listen_tcp("127.0.0.1", 0, false, &fd, &server_port);
    if (r < 0 || sov_http_server_listen_fd(server, fd) < 0)
        return -1;
    return 0;
}

/* ---- one input ---- */

typedef struct Client {
    int fd;
    bool eof;   /* no more bytes will come */
    bool reset; /* ended by an error rather than an orderly close */
    bool truncated;
    char *resp;
    size_t len;
} Client;

/* Reads what the server has sent so far without blocking. */
static void client_poll(Client *cl)
{
    char tmp[16384];

    while (!cl->eof) {
        ssize_t n = recv(cl->fd, tmp, sizeof(tmp), MSG_DONTWAIT);
        if (n > 0) {
            size_t keep = SOV_MIN((size_t)n, RESP_MAX - cl->len);
            memcpy(cl->resp + cl->len, tmp, keep);
            cl->len += keep;
            cl->truncated |= keep < (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        /* 0 is an orderly close; an error (a reset) ends the response as well. */
        cl->eof = true;
        cl->reset = n < 0;
    }
}

static void spin(Client *cl, unsigned rounds)
{
    for (unsigned i = 0; i < rounds; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        client_poll(cl);
    }
}

/* Sends one piece, running the loop whenever the socket buffer is full. */
static void client_send(Client *cl, const uint8_t *p, size_t n)
{
    uint64_t deadline = now_ms() + WAIT_MS;

    while (n > 0 && !cl->eof) {
        ssize_t w = send(cl->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR)
            return; /* the server closed: the rest cannot be delivered */
        if (now_ms() > deadline)
            return;
        spin(cl, 1);
    }
}

/* Connects to the server. The socket is non-blocking (every send and recv here must not
 * block the loop's only thread), and libFuzzer's timer signals may interrupt the wait. */
static int client_connect(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct sockaddr_in me;
    socklen_t len = sizeof(me);
    struct pollfd pfd;
    int fd, err = 0, r;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        goto fail;
    sin.sin_port = htons((uint16_t)server_port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
        if (errno != EINPROGRESS && errno != EINTR)
            goto fail;
        pfd = (struct pollfd){.fd = fd, .events = POLLOUT};
        do
            r = poll(&pfd, 1, WAIT_MS);
        while (r < 0 && errno == EINTR);
        len = sizeof(err);
        if (r <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            goto fail;
        if (err != 0) {
            errno = err;
            goto fail;
        }
    }
    len = sizeof(me);
    if (getsockname(fd, (struct sockaddr *)&me, &len) < 0)
        goto fail;
    client_port = ntohs(me.sin_port);
    return fd;
fail:
    fprintf(stderr, "fuzz_http: cannot connect to the server: %m\n");
    abort();
}

static _Noreturn void violation(const Client *cl, const char *why)
{
    fprintf(stderr, "fuzz_http: %s; the server sent %zu bytes:\n%.*s\n", why, cl->len, (int)cl->len,
            cl->resp);
    __builtin_trap();
}

/* Whatever the server sent must start with a status line: "HTTP/1.1 ", three digits, a
 * space. A reset may cut a response short, so a shorter reply must be a prefix of one. */
static void check_status_line(const Client *cl)
{
    size_t n = SOV_MIN(cl->len, (size_t)STATUS_LINE_SZ);

    if (memcmp(cl->resp, STATUS_PREFIX, SOV_MIN(n, sizeof(STATUS_PREFIX) - 1)) != 0)
        violation(cl, "reply does not start with HTTP/1.1");
    for (size_t i = sizeof(STATUS_PREFIX) - 1; i < n && i < STATUS_LINE_SZ - 1; i++)
        if (cl->resp[i] < '0' || cl->resp[i] > '9')
            violation(cl, "status code is not three digits");
    if (n == STATUS_LINE_SZ && cl->resp[STATUS_LINE_SZ - 1] != ' ')
        violation(cl, "no space after the status code");
}

typedef struct Framing {
    size_t next;  /* next entry of expect_head */
    bool unknown; /* a response nobody noted: framing cannot be judged */
} Framing;

static int framing_headers_complete(llhttp_t *p)
{
    Framing *f = p->data;

    if (llhttp_get_status_code(p) < 200)
        return 0; /* 100 Continue comes from the server itself, ahead of the response */
    if (f->next >= nexpect) {
        f->unknown = true;
        return 0;
    }
    return expect_head[f->next++] ? 1 : 0; /* 1: a response to HEAD has no body */
}

/* After an orderly close, the reply must be whole responses, each framed by its headers. */
static void check_framing(const Client *cl)
{
    static llhttp_settings_t settings;
    static bool settings_ready;
    Framing f = {0};
    llhttp_t p;
    llhttp_errno_t err;

    if (!framing || !cl->eof || cl->reset || cl->truncated || expect_overflow)
        return;
    if (!settings_ready) {
        llhttp_settings_init(&settings);
        settings.on_headers_complete = framing_headers_complete;
        settings_ready = true;
    }
    llhttp_init(&p, HTTP_RESPONSE, &settings);
    p.data = &f;
    err = llhttp_execute(&p, cl->resp, cl->len);
    if (f.unknown)
        return;
    if (err != HPE_OK) {
        fprintf(stderr, "fuzz_http: response parse error %s at byte %zu: %s\n",
                llhttp_errno_name(err), (size_t)(llhttp_get_error_pos(&p) - cl->resp),
                llhttp_get_error_reason(&p));
        violation(cl, "reply is not a sequence of HTTP/1.1 responses");
    }
    if (llhttp_finish(&p) != HPE_OK && !f.unknown)
        violation(cl, "connection closed in the middle of a response");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    Client cl = {.fd = -1};
    size_t n, cut1, cut2;
    uint64_t deadline;
    uint8_t ctl;

    if (!ready) {
        if (setup() < 0) {
            fprintf(stderr, "fuzz_http: cannot start the server\n");
            abort();
        }
        ready = true;
    }
    if (size < 1 || size > INPUT_MAX)
        return 0;
    ctl = data[0];
    data++;
    n = size - 1;
    /* bit 0: three pieces; bits 1-5: first cut at k/31 of the input; bits 6-7: second cut
     * 1/5 to 4/5 of the way through the rest. */
    cut1 = n * ((ctl >> 1) & 0x1f) / 31;
    cut2 = (ctl & 1) ? cut1 + (n - cut1) * ((size_t)(ctl >> 6) + 1) / 5 : n;

    cl.resp = malloc(RESP_MAX);
    if (!cl.resp)
        abort();
    cl.fd = client_connect();
    nexpect = 0;
    expect_overflow = false;

    /* Accept, then a read per piece: three rounds each let the server see every piece
     * in its own read. */
    spin(&cl, 3);
    client_send(&cl, data, cut1);
    spin(&cl, 3);
    client_send(&cl, data + cut1, cut2 - cut1);
    spin(&cl, 3);
    client_send(&cl, data + cut2, n - cut2);
    shutdown(cl.fd, SHUT_WR);

    deadline = now_ms() + WAIT_MS;
    while (!cl.eof && now_ms() < deadline)
        spin(&cl, 1);
    if (debug)
        fprintf(stderr, "fuzz_http: %s after %zu response bytes:\n%.*s\n",
                cl.eof ? "closed" : "timed out", cl.len, (int)cl.len, cl.resp);
    check_status_line(&cl);
    check_framing(&cl);

    /* Let the server drop its side before the next input, so inputs stay independent. */
    close(cl.fd);
    deadline = now_ms() + DRAIN_MS;
    while (sov_http_server_connections(server) > 0 && now_ms() < deadline)
        uv_run(&loop, UV_RUN_NOWAIT);
    free(cl.resp);
    return 0;
}
