/* SPDX-License-Identifier: Apache-2.0 */
/* The HTTP/1.1 server: connection state machine over libuv and llhttp.
 *
 * A connection parses one request at a time. llhttp callbacks only record what they saw and
 * pause the parser at the events that need a decision (headers complete, body pause, message
 * complete); conn_process() then acts on the event outside the parser, so a handler may respond,
 * pause or read the body without re-entering llhttp. Reads land in a per-loop scratch buffer;
 * only bytes left unparsed (a pipelined request behind a response still in progress) are copied
 * to a buffer of the connection's own, so a steady keep-alive load allocates nothing per
 * request. Responses are assembled in the connection's write buffer and leave in one write;
 * pipelined responses produced while a read is processed leave together. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http-int.h"
#include "sov/crypto.h"
#include "sov/log.h"

#define READ_BUF_SIZE  (64 * 1024)
#define DISCARD_BUDGET (1024 * 1024) /* body bytes we read and drop to keep a connection */
#define LINGER_MS      2000
#define SWEEP_MS       250

typedef enum ConnEvent { EV_NONE, EV_HEADERS, EV_MESSAGE, EV_BODY_PAUSE, EV_STOP } ConnEvent;
typedef enum Deadline { DL_NONE, DL_IDLE, DL_HEADER, DL_BODY, DL_WRITE, DL_LINGER } Deadline;
typedef enum BodyMode { BODY_NONE, BODY_BUFFER, BODY_STREAM, BODY_DISCARD, BODY_HOLD } BodyMode;

typedef struct HdrRef {
    uint32_t name_off, name_len, val_off, val_len;
} HdrRef;

typedef struct HttpConn HttpConn;

struct SovHttpReq {
    HttpConn *conn; /* NULL once the connection is gone */
    SovHttpServer *srv;
    int refs;
    SovArena arena;
    /* request head: URL, then header names and values, all in head; offsets in hdrs */
    SovBuf head;
    HdrRef *hdrs;
    uint32_t nhdrs;
    uint32_t url_len;
    bool in_field;
    bool val_at_end; /* the last value span ended where the parser's input ended */
    SovStr method;
    uint8_t http_minor;
    int64_t content_length;
    bool has_body, keep_alive, expect_continue, continue_sent, is_head;
    const Route *route;
    RouteParam params[ROUTE_MAX_PARAMS];
    size_t nparams;
    /* body */
    BodyMode body_mode;
    SovBuf body;
    uint64_t body_bytes;
    uint64_t discard_left;
    bool msg_done;      /* parser saw the end of the message */
    bool body_started;  /* read_body was called */
    bool body_notified; /* on_end or on_error delivered */
    bool paused;
    SovHttpBodyCallbacks cb;
    void *cb_ud;
    /* response */
    int status;
    bool resp_started, resp_done, resp_chunked, resp_close, finished;
    int64_t resp_left; /* bytes of a fixed-length streamed body still to come */
    uint64_t resp_bytes;
    SovBuf resp_headers;
    uint64_t t_start;
    char id[17];
    char peer[64];
};

struct HttpConn {
    uv_tcp_t tcp; /* first: the handle's address is the connection's */
    SovHttpServer *srv;
    HttpConn *prev, *next;
    HttpConn *kick_next;
    llhttp_t parser;
    SovHttpReq *req;
    char *rbuf; /* scratch (while processing a read) or own (holding unparsed bytes) */
    char *own;
    size_t rlen, rpos;
    SovBuf wbuf;
    unsigned writes_pending;
    ConnEvent event;
    int err_status;
    const char *err_msg;
    bool reading, closing, close_after_write, in_process, blocked, kicked, lingering, shut_down,
        headers_pending, resumed;
    Deadline dl;
    uint64_t deadline;
    const char *exec_end; /* end of the bytes handed to llhttp_execute */
    uint64_t gen;         /* counts ended requests: tells callers their request ended under them */
};

struct SovHttpServer {
    uv_loop_t *loop;
    SovHttpServerConfig cfg;
    uv_tcp_t listener;
    bool listening;
    uv_timer_t sweep;
    uv_idle_t kick;
    HttpConn *conns;
    HttpConn *kick_list;
    unsigned nconns;
    char *scratch;
    bool scratch_busy;
    uint64_t next_id;
    uint32_t id_prefix;
    time_t date_sec;
    char date[40];
    bool shutting_down;
    uint64_t shutdown_deadline;
    void (*shutdown_done)(SovHttpServer *s, void *ud);
    void *shutdown_ud;
    int handles_open;
    SovMetric *m_conns, *m_bytes_in, *m_bytes_out, *m_accepted;
};

static void conn_process(HttpConn *c);
static void conn_close(HttpConn *c);
static void conn_flush(HttpConn *c);
static void conn_update_reading(HttpConn *c);
static void req_finish(SovHttpReq *req);
static void req_end(HttpConn *c);
static void conn_kick(HttpConn *c);

void sov_http_limits_default(SovHttpLimits *l)
{
    *l = (SovHttpLimits){
        .max_header_bytes = 16 * 1024,
        .max_headers = 100,
        .max_url = 8 * 1024,
        .max_body = 5ull * 1024 * 1024 * 1024,
        .max_buffered_body = 1024 * 1024,
        .header_timeout_ms = 30000,
        .body_timeout_ms = 30000,
        .idle_timeout_ms = 60000,
        .max_connections = 10000,
        .shutdown_grace_ms = 10000,
    };
}

const char *sov_http_status_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 300:
        return "Multiple Choices";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    case 507:
        return "Insufficient Storage";
    default:
        return "Unknown";
    }
}

/* ---- requests ---- */

static SovHttpReq *req_new(HttpConn *c)
{
    SovHttpServer *s = c->srv;
    SovHttpReq *req = calloc(1, sizeof(*req));

    if (!req)
        return NULL;
    req->hdrs = calloc(s->cfg.limits.max_headers ? s->cfg.limits.max_headers : 1, sizeof(HdrRef));
    if (!req->hdrs) {
        free(req);
        return NULL;
    }
    req->conn = c;
    req->srv = s;
    req->refs = 1;
    sov_arena_init(&req->arena, 0);
    sov_buf_init(&req->head, s->cfg.limits.max_header_bytes);
    sov_buf_init(&req->body, s->cfg.limits.max_buffered_body);
    sov_buf_init(&req->resp_headers, 64 * 1024);
    return req;
}

/* Makes a finished request reusable for the next one on the same connection. */
static void req_reset(SovHttpReq *req)
{
    HdrRef *hdrs = req->hdrs;
    SovBuf head = req->head, body = req->body, rh = req->resp_headers;
    SovArena arena = req->arena;
    HttpConn *c = req->conn;
    SovHttpServer *s = req->srv;

    sov_buf_reset(&head);
    /* Keep small buffers for reuse; give large ones back. */
    if (body.cap > 64 * 1024)
        sov_buf_release(&body);
    sov_buf_reset(&body);
    sov_buf_reset(&rh);
    sov_arena_reset(&arena);
    *req = (SovHttpReq){.conn = c,
                        .srv = s,
                        .refs = 1,
                        .hdrs = hdrs,
                        .head = head,
                        .body = body,
                        .resp_headers = rh,
                        .arena = arena};
}

static void req_free(SovHttpReq *req)
{
    sov_arena_release(&req->arena);
    sov_buf_release(&req->head);
    sov_buf_release(&req->body);
    sov_buf_release(&req->resp_headers);
    free(req->hdrs);
    free(req);
}

void sov_http_req_ref(SovHttpReq *req)
{
    req->refs++;
}

void sov_http_req_unref(SovHttpReq *req)
{
    if (req && --req->refs == 0)
        req_free(req);
}

bool sov_http_req_is_closed(const SovHttpReq *req)
{
    return !req->conn || req->conn->closing;
}

static SovStr head_str(const SovHttpReq *req, uint32_t off, uint32_t len)
{
    return (SovStr){req->head.ptr + off, len};
}

SovStr sov_http_req_method(const SovHttpReq *req)
{
    return req->method;
}

SovStr sov_http_req_target(const SovHttpReq *req)
{
    return head_str(req, 0, req->url_len);
}

SovStr sov_http_req_path(const SovHttpReq *req)
{
    SovStr t = sov_http_req_target(req);
    const char *q = t.len ? memchr(t.ptr, '?', t.len) : NULL;
    if (q)
        t.len = (size_t)(q - t.ptr);
    return t;
}

SovStr sov_http_req_query(const SovHttpReq *req)
{
    SovStr t = sov_http_req_target(req);
    const char *q = t.len ? memchr(t.ptr, '?', t.len) : NULL;
    if (!q)
        return (SovStr){t.ptr, 0};
    return (SovStr){q + 1, t.len - (size_t)(q + 1 - t.ptr)};
}

SovStr sov_http_req_header(const SovHttpReq *req, const char *name)
{
    SovStr n = sov_str(name);
    for (uint32_t i = 0; i < req->nhdrs; i++)
        if (sov_str_eq_ci(head_str(req, req->hdrs[i].name_off, req->hdrs[i].name_len), n))
            return head_str(req, req->hdrs[i].val_off, req->hdrs[i].val_len);
    return SOV_STR_NULL;
}

size_t sov_http_req_header_count(const SovHttpReq *req)
{
    return req->nhdrs;
}

void sov_http_req_header_at(const SovHttpReq *req, size_t i, SovStr *ret_name, SovStr *ret_value)
{
    *ret_name = head_str(req, req->hdrs[i].name_off, req->hdrs[i].name_len);
    *ret_value = head_str(req, req->hdrs[i].val_off, req->hdrs[i].val_len);
}

SovStr sov_http_req_param(const SovHttpReq *req, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < req->nparams; i++)
        if (req->params[i].name_len == n && memcmp(req->params[i].name, name, n) == 0)
            return req->params[i].value;
    return SOV_STR_NULL;
}

SovStr sov_http_req_route(const SovHttpReq *req)
{
    return req->route ? sov_str(req->route->pattern) : SOV_STR("unmatched");
}

int64_t sov_http_req_content_length(const SovHttpReq *req)
{
    return req->content_length;
}

bool sov_http_req_is_head(const SovHttpReq *req)
{
    return req->is_head;
}

SovStr sov_http_req_body(const SovHttpReq *req)
{
    return sov_buf_str(&req->body);
}

SovArena *sov_http_req_arena(SovHttpReq *req)
{
    return &req->arena;
}

const char *sov_http_req_id(SovHttpReq *req)
{
    if (!req->id[0]) {
        uint64_t n = ++req->srv->next_id;
        snprintf(req->id, sizeof(req->id), "%08" PRIx32 "%08" PRIx32, req->srv->id_prefix,
                 (uint32_t)n);
    }
    return req->id;
}

const char *sov_http_req_peer(SovHttpReq *req)
{
    if (!req->peer[0] && req->conn) {
        struct sockaddr_storage ss;
        int len = sizeof(ss);
        char ip[INET6_ADDRSTRLEN] = "?";
        int port = 0;
        if (uv_tcp_getpeername(&req->conn->tcp, (struct sockaddr *)&ss, &len) == 0) {
            if (ss.ss_family == AF_INET) {
                struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
                uv_ip4_name(sin, ip, sizeof(ip));
                port = ntohs(sin->sin_port);
            } else if (ss.ss_family == AF_INET6) {
                struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
                uv_ip6_name(sin6, ip, sizeof(ip));
                port = ntohs(sin6->sin6_port);
            }
        }
        snprintf(req->peer, sizeof(req->peer), "%s:%d", ip, port);
    }
    return req->peer;
}

/* ---- llhttp callbacks: record, check limits, pause at events ---- */

static int fail(HttpConn *c, int status, const char *msg)
{
    c->err_status = status;
    c->err_msg = msg;
    return HPE_USER;
}

static int on_message_begin(llhttp_t *p)
{
    HttpConn *c = p->data;
    SovHttpServer *s = c->srv;

    if (!c->req) {
        c->req = req_new(c);
        if (!c->req)
            return fail(c, 503, "out of memory");
    }
    c->req->t_start = uv_hrtime();
    c->req->content_length = -1;
    c->dl = DL_HEADER;
    c->deadline = uv_now(s->loop) + s->cfg.limits.header_timeout_ms;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    HttpConn *c = p->data;
    SovHttpReq *req = c->req;

    if (req->url_len + n > c->srv->cfg.limits.max_url)
        return fail(c, 414, "request target too long");
    if (sov_buf_append(&req->head, at, n) < 0)
        return fail(c, 431, "request header fields too large");
    req->url_len += (uint32_t)n;
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    HttpConn *c = p->data;
    SovHttpReq *req = c->req;

    if (!req->in_field) {
        if (req->nhdrs >= c->srv->cfg.limits.max_headers)
            return fail(c, 431, "too many header fields");
        req->hdrs[req->nhdrs++] = (HdrRef){.name_off = (uint32_t)req->head.len};
        req->in_field = true;
    }
    if (sov_buf_append(&req->head, at, n) < 0)
        return fail(c, 431, "request header fields too large");
    req->hdrs[req->nhdrs - 1].name_len += (uint32_t)n;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    HttpConn *c = p->data;
    SovHttpReq *req = c->req;
    HdrRef *h = &req->hdrs[req->nhdrs - 1];

    if (req->in_field) {
        req->in_field = false;
        h->val_off = (uint32_t)req->head.len;
    } else if (!req->val_at_end) {
        /* A second span of one value that is not a read boundary: llhttp unfolded an obsolete
         * line fold. RFC 9112 lets a server refuse those, and we do. */
        return fail(c, 400, "obsolete line folding is not allowed");
    }
    req->val_at_end = at + n == c->exec_end;
    if (sov_buf_append(&req->head, at, n) < 0)
        return fail(c, 431, "request header fields too large");
    h->val_len += (uint32_t)n;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    HttpConn *c = p->data;
    SovHttpReq *req = c->req;

    if (p->http_major != 1)
        return fail(c, 505, "only HTTP/1.0 and HTTP/1.1 are supported");
    /* Trim trailing whitespace of values (llhttp already skips the leading one). */
    for (uint32_t i = 0; i < req->nhdrs; i++) {
        HdrRef *h = &req->hdrs[i];
        while (h->val_len && (req->head.ptr[h->val_off + h->val_len - 1] == ' ' ||
                              req->head.ptr[h->val_off + h->val_len - 1] == '\t'))
            h->val_len--;
    }
    /* RFC 9112: no whitespace between a field name and its colon, and no CR/LF inside a value
     * (obsolete line folding is refused rather than unfolded). llhttp 8 lets both through. */
    for (uint32_t i = 0; i < req->nhdrs; i++) {
        const HdrRef *h = &req->hdrs[i];
        for (uint32_t k = 0; k < h->name_len; k++) {
            unsigned char ch = (unsigned char)req->head.ptr[h->name_off + k];
            if (ch <= ' ' || ch >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", ch))
                return fail(c, 400, "invalid header field name");
        }
        if (memchr(req->head.ptr + h->val_off, '\r', h->val_len) ||
            memchr(req->head.ptr + h->val_off, '\n', h->val_len) ||
            memchr(req->head.ptr + h->val_off, '\0', h->val_len))
            return fail(c, 400, "invalid header field value");
    }
    req->method = sov_str(llhttp_method_name((llhttp_method_t)p->method));
    req->is_head = p->method == HTTP_HEAD;
    req->http_minor = p->http_minor;
    req->keep_alive = llhttp_should_keep_alive(p);
    if (p->flags & F_CHUNKED) {
        req->has_body = true;
    } else if (p->flags & F_CONTENT_LENGTH) {
        req->content_length = (int64_t)p->content_length;
        req->has_body = p->content_length > 0;
    } else {
        req->content_length = 0;
    }
    req->expect_continue =
        req->has_body && p->http_minor >= 1 &&
        sov_str_eq_ci(sov_http_req_header(req, "expect"), SOV_STR("100-continue"));
    /* A message without a body completes within this same execute; the headers event is then
     * handled together with the message event, so there is no pause here. */
    if (!req->has_body) {
        c->headers_pending = true;
        return 0;
    }
    c->event = EV_HEADERS;
    return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    HttpConn *c = p->data;
    SovHttpReq *req = c->req;
    SovHttpServer *s = c->srv;

    if (n == 0)
        return 0; /* llhttp flushes an empty span when execute gets no bytes */
    req->body_bytes += n;
    if (c->dl == DL_BODY)
        c->deadline = uv_now(s->loop) + s->cfg.limits.body_timeout_ms;
    switch (req->body_mode) {
    case BODY_BUFFER:
        if (sov_buf_append(&req->body, at, n) < 0)
            return fail(c, 413, "request body too large");
        return 0;
    case BODY_STREAM:
        if (req->body_bytes > s->cfg.limits.max_body)
            return fail(c, 413, "request body too large");
        if (req->cb.on_data(req, at, n, req->cb_ud) < 0) {
            req->resp_close = true;
            c->event = EV_STOP;
            return HPE_PAUSED;
        }
        if (req->paused || !req->conn || c->closing) {
            c->event = EV_BODY_PAUSE;
            return HPE_PAUSED;
        }
        return 0;
    case BODY_DISCARD:
        if (n > req->discard_left) {
            c->event = EV_STOP;
            return HPE_PAUSED;
        }
        req->discard_left -= n;
        return 0;
    default:
        /* BODY_NONE/HOLD: the parser is never fed while the body is held. */
        return fail(c, 500, "internal error");
    }
}

static int on_message_complete(llhttp_t *p)
{
    HttpConn *c = p->data;
    c->req->msg_done = true;
    c->event = EV_MESSAGE;
    return HPE_PAUSED;
}

static const llhttp_settings_t parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- writing ---- */

typedef struct WriteReq {
    uv_write_t w;
    HttpConn *conn;
    char *owned;     /* our copy of the write buffer, or NULL */
    SovHttpReq *req; /* for caller-owned data: callback target (holds a ref) */
    SovHttpWriteCb cb;
    void *ud;
} WriteReq;

static void on_write_done(uv_write_t *w, int status)
{
    WriteReq *wr = (WriteReq *)w;
    HttpConn *c = wr->conn;

    free(wr->owned);
    c->writes_pending--;
    if (wr->req) {
        if (wr->cb)
            wr->cb(wr->req, status < 0 ? -ECONNRESET : 0, wr->ud);
        sov_http_req_unref(wr->req);
    }
    free(wr);
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->dl == DL_WRITE)
        c->deadline = uv_now(c->srv->loop) + c->srv->cfg.limits.body_timeout_ms;
}

static void count_out(HttpConn *c, size_t n)
{
    sov_counter_add(c->srv->m_bytes_out, n);
}

/* Hands the write buffer to the kernel now if nothing is queued, else queues a copy. */
static void conn_flush(HttpConn *c)
{
    WriteReq *wr;
    uv_buf_t b;
    int n = 0;

    if (c->wbuf.len == 0 || c->closing)
        return;
    count_out(c, c->wbuf.len);
    if (c->writes_pending == 0) {
        b = uv_buf_init(c->wbuf.ptr, (unsigned)c->wbuf.len);
        n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n == (int)c->wbuf.len) {
            sov_buf_reset(&c->wbuf);
            return;
        }
        if (n < 0 && n != UV_EAGAIN) {
            conn_close(c);
            return;
        }
        if (n < 0)
            n = 0;
    }
    wr = calloc(1, sizeof(*wr));
    if (!wr) {
        conn_close(c);
        return;
    }
    sov_buf_consume(&c->wbuf, (size_t)n);
    b.len = c->wbuf.len;
    wr->owned = sov_buf_steal(&c->wbuf);
    wr->conn = c;
    b.base = wr->owned;
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_write_done) < 0) {
        free(wr->owned);
        free(wr);
        conn_close(c);
        return;
    }
    c->writes_pending++;
    c->dl = DL_WRITE;
    c->deadline = uv_now(c->srv->loop) + c->srv->cfg.limits.body_timeout_ms;
}

static void on_linger_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

static void on_shutdown(uv_shutdown_t *sr, int status)
{
    HttpConn *c = sr->data;
    free(sr);
    if (status < 0 || c->closing) {
        conn_close(c);
        return;
    }
    /* Lingering close: read and drop what the client still sends for a moment, so that
     * closing with unread data does not reset the connection under our last response. */
    c->lingering = true;
    c->dl = DL_LINGER;
    c->deadline = uv_now(c->srv->loop) + LINGER_MS;
    c->reading = false;
    conn_update_reading(c);
}

/* Ends the connection once every queued write has left. */
static void conn_shutdown(HttpConn *c)
{
    uv_shutdown_t *sr;

    if (c->shut_down || c->closing)
        return;
    conn_flush(c);
    if (c->closing)
        return;
    c->shut_down = true;
    c->blocked = true;
    sr = malloc(sizeof(*sr));
    if (!sr || (sr->data = c, uv_shutdown(sr, (uv_stream_t *)&c->tcp, on_shutdown) < 0)) {
        free(sr);
        conn_close(c);
    }
}

static void put_date(SovHttpServer *s, SovBuf *b)
{
    time_t now = time(NULL);
    if (now != s->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(s->date, sizeof(s->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        s->date_sec = now;
    }
    sov_buf_puts(b, "Date: ");
    sov_buf_puts(b, s->date);
    sov_buf_puts(b, "\r\n");
}

static bool header_token_ok(SovStr v, bool name)
{
    if (name && v.len == 0)
        return false;
    for (size_t i = 0; i < v.len; i++) {
        unsigned char ch = (unsigned char)v.ptr[i];
        if (ch == '\r' || ch == '\n' || ch == '\0')
            return false;
        if (name && (ch <= ' ' || ch == ':' || ch >= 0x7f))
            return false;
    }
    return true;
}

int sov_http_resp_header(SovHttpReq *req, const char *name, SovStr value)
{
    int r;
    if (req->resp_started)
        return -EBUSY;
    if (!header_token_ok(sov_str(name), true) || !header_token_ok(value, false))
        return -EINVAL;
    r = sov_buf_printf(&req->resp_headers, "%s: ", name);
    if (r >= 0)
        r = sov_buf_append_str(&req->resp_headers, value);
    if (r >= 0)
        r = sov_buf_puts(&req->resp_headers, "\r\n");
    return r;
}

/* Decides whether the connection survives this response. */
static bool resp_must_close(SovHttpReq *req)
{
    HttpConn *c = req->conn;
    if (req->resp_close || !req->keep_alive || c->srv->shutting_down)
        return true;
    /* The body is still coming and will not be read: keep the connection only if what is left
     * is small enough to read and drop. A client waiting for 100 Continue sends nothing. */
    if (req->has_body && !req->msg_done && req->body_mode != BODY_BUFFER &&
        !(req->body_mode == BODY_STREAM)) {
        if (req->expect_continue && !req->continue_sent)
            return true;
        if (req->content_length < 0 ||
            (uint64_t)req->content_length - req->body_bytes > DISCARD_BUDGET)
            return true;
    }
    return false;
}

static void put_status_line(SovBuf *b, int status)
{
    /* Formatting is skipped for the statuses almost every response has. */
    switch (status) {
    case 200:
        sov_buf_puts(b, "HTTP/1.1 200 OK\r\nServer: sovcloud\r\n");
        return;
    case 204:
        sov_buf_puts(b, "HTTP/1.1 204 No Content\r\nServer: sovcloud\r\n");
        return;
    case 404:
        sov_buf_puts(b, "HTTP/1.1 404 Not Found\r\nServer: sovcloud\r\n");
        return;
    default:
        sov_buf_printf(b, "HTTP/1.1 %d %s\r\nServer: sovcloud\r\n", status,
                       sov_http_status_reason(status));
    }
}

static int resp_head(SovHttpReq *req, int status, const char *ctype, int64_t len)
{
    HttpConn *c = req->conn;
    SovBuf *b;

    if (!c || c->closing)
        return -ECONNRESET;
    if (req->resp_started)
        return -EBUSY;
    if (status < 200 || status > 999)
        return -EINVAL;
    b = &c->wbuf;
    req->status = status;
    req->resp_started = true;
    if (req->body_mode == BODY_NONE || req->body_mode == BODY_HOLD) {
        /* The handler answers without reading the body: drop whatever of it still comes. */
        req->body_mode = BODY_DISCARD;
        req->discard_left = DISCARD_BUDGET;
    }
    if (len < 0 && req->http_minor == 0)
        req->resp_close = true; /* HTTP/1.0: the body ends with the connection */
    req->resp_close = resp_must_close(req);
    put_status_line(b, status);
    put_date(c->srv, b);
    if (ctype) {
        sov_buf_puts(b, "Content-Type: ");
        sov_buf_puts(b, ctype);
        sov_buf_puts(b, "\r\n");
    }
    if (len >= 0) {
        if (status != 204 && status != 304) {
            sov_buf_puts(b, "Content-Length: ");
            sov_buf_put_u64(b, (uint64_t)len);
            sov_buf_puts(b, "\r\n");
        }
    } else if (req->http_minor >= 1) {
        sov_buf_puts(b, "Transfer-Encoding: chunked\r\n");
        req->resp_chunked = true;
    }
    if (req->resp_close)
        sov_buf_puts(b, "Connection: close\r\n");
    else if (req->http_minor == 0)
        sov_buf_puts(b, "Connection: keep-alive\r\n");
    if (req->resp_headers.len)
        sov_buf_append_str(b, sov_buf_str(&req->resp_headers));
    return sov_buf_puts(b, "\r\n");
}

int sov_http_respond(SovHttpReq *req, int status, const char *content_type, const void *body,
                     size_t len)
{
    int r = resp_head(req, status, content_type, (int64_t)len);
    if (r < 0)
        return r;
    if (len && !req->is_head && status != 204 && status != 304)
        sov_buf_append(&req->conn->wbuf, body, len);
    req->resp_bytes = len;
    req->resp_done = true;
    req_finish(req);
    return 0;
}

int sov_http_resp_start(SovHttpReq *req, int status, int64_t content_length)
{
    int r = resp_head(req, status, NULL, content_length);
    if (r < 0)
        return r;
    req->resp_left = content_length;
    if (req->is_head)
        req->resp_left = 0;
    if (!req->conn->in_process)
        conn_flush(req->conn);
    return 0;
}

int sov_http_resp_write(SovHttpReq *req, const void *p, size_t n, SovHttpWriteCb cb, void *ud)
{
    HttpConn *c = req->conn;
    WriteReq *wr;
    uv_buf_t b[1];

    if (!c || c->closing)
        return -ECONNRESET;
    if (!req->resp_started || req->resp_done)
        return -EINVAL;
    if (req->is_head || n == 0) {
        n = 0;
    } else if (req->resp_left >= 0) {
        if ((uint64_t)n > (uint64_t)req->resp_left)
            return -EFBIG;
        req->resp_left -= (int64_t)n;
    }
    if (req->resp_chunked && n)
        sov_buf_printf(&c->wbuf, "%zx\r\n", n);
    conn_flush(c);
    if (c->closing)
        return -ECONNRESET;
    wr = calloc(1, sizeof(*wr));
    if (!wr)
        return -ENOMEM;
    wr->conn = c;
    wr->req = req;
    wr->cb = cb;
    wr->ud = ud;
    sov_http_req_ref(req);
    b[0] = uv_buf_init((char *)p, (unsigned)n);
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, b, 1, on_write_done) < 0) {
        sov_http_req_unref(req);
        free(wr);
        return -ECONNRESET;
    }
    c->writes_pending++;
    c->dl = DL_WRITE;
    c->deadline = uv_now(c->srv->loop) + c->srv->cfg.limits.body_timeout_ms;
    count_out(c, n);
    req->resp_bytes += n;
    if (req->resp_chunked && n)
        sov_buf_puts(&c->wbuf, "\r\n"); /* leaves with the next flush, after this write */
    return 0;
}

int sov_http_resp_end(SovHttpReq *req)
{
    HttpConn *c = req->conn;
    if (!c || c->closing)
        return -ECONNRESET;
    if (!req->resp_started || req->resp_done)
        return -EINVAL;
    if (req->resp_left > 0) {
        /* Fewer bytes than announced: the client can only learn it from a closed connection. */
        req->resp_close = true;
    }
    if (req->resp_chunked)
        sov_buf_puts(&c->wbuf, "0\r\n\r\n");
    req->resp_done = true;
    req_finish(req);
    return 0;
}

bool sov_http_resp_started(const SovHttpReq *req)
{
    return req->resp_started;
}

static void default_error_page(SovHttpReq *req, int status, const char *message, void *ud)
{
    char body[512];
    int n = snprintf(body, sizeof(body),
                     "{\"error\":{\"code\":%d,\"title\":\"%s\",\"message\":\"%s\"}}\n", status,
                     sov_http_status_reason(status), message);
    sov_http_respond(req, status, "application/json", body,
                     (size_t)SOV_MIN(n, (int)sizeof(body) - 1));
}

void sov_http_respond_error(SovHttpReq *req, int status, const char *message)
{
    SovHttpServer *s = req->srv;
    HttpConn *c = req->conn;
    uint64_t gen;

    if (req->resp_started || !c || c->closing)
        return;
    gen = c->gen;
    if (s->cfg.error_page)
        s->cfg.error_page(req, status, message, s->cfg.error_page_userdata);
    else
        default_error_page(req, status, message, NULL);
    /* A broken error page must not leave the client hanging. */
    if (c->gen == gen && !c->closing && !req->resp_started)
        default_error_page(req, status, message, NULL);
}

/* ---- request flow ---- */

static void send_continue(SovHttpReq *req)
{
    HttpConn *c = req->conn;
    if (req->expect_continue && !req->continue_sent && !req->resp_started) {
        req->continue_sent = true;
        sov_buf_puts(&c->wbuf, "HTTP/1.1 100 Continue\r\n\r\n");
        if (!c->in_process)
            conn_flush(c);
    }
}

static void body_notify_error(SovHttpReq *req, int err)
{
    if (req->body_mode == BODY_STREAM && req->body_started && !req->body_notified) {
        req->body_notified = true;
        if (req->cb.on_error)
            req->cb.on_error(req, err, req->cb_ud);
    }
}

static void body_notify_end(SovHttpReq *req)
{
    if (req->body_mode == BODY_STREAM && req->body_started && !req->body_notified) {
        req->body_notified = true;
        if (req->cb.on_end)
            req->cb.on_end(req, req->cb_ud);
    }
}

int sov_http_req_read_body(SovHttpReq *req, const SovHttpBodyCallbacks *cb, void *ud)
{
    HttpConn *c = req->conn;

    if (!c || c->closing)
        return -ECONNRESET;
    if (req->body_started || !(req->route && (req->route->flags & SOV_ROUTE_STREAM)))
        return -EINVAL;
    req->body_started = true;
    req->cb = *cb;
    req->cb_ud = ud;
    req->body_mode = BODY_STREAM;
    if (!req->has_body || req->msg_done) {
        conn_kick(c); /* delivers on_end outside the caller's stack */
        return 0;
    }
    send_continue(req);
    c->dl = DL_BODY;
    c->deadline = uv_now(c->srv->loop) + c->srv->cfg.limits.body_timeout_ms;
    c->blocked = false;
    conn_kick(c);
    return 0;
}

void sov_http_req_pause(SovHttpReq *req)
{
    req->paused = true;
    if (req->conn && req->conn->dl == DL_BODY)
        req->conn->dl = DL_NONE;
}

void sov_http_req_resume(SovHttpReq *req)
{
    HttpConn *c = req->conn;
    if (!req->paused)
        return;
    req->paused = false;
    if (!c || c->closing)
        return;
    if (req->body_mode == BODY_STREAM && !req->msg_done) {
        c->blocked = false;
        c->dl = DL_BODY;
        c->deadline = uv_now(c->srv->loop) + c->srv->cfg.limits.body_timeout_ms;
        conn_kick(c);
    }
}

static void access_log(SovHttpReq *req, double secs)
{
    char status[8], bytes[24], dur[32];
    SovStr path = sov_http_req_path(req);
    char *p = sov_arena_strndup(&req->arena, path.ptr ? path.ptr : "", path.len);
    char *m =
        sov_arena_strndup(&req->arena, req->method.ptr ? req->method.ptr : "", req->method.len);
    const char *kv[] = {"method", m ? m : "", "path",  p ? p : "",
                        "status", status,     "bytes", bytes,
                        "dur_ms", dur,        "peer",  sov_http_req_peer(req),
                        NULL};
    snprintf(status, sizeof(status), "%d", req->status);
    snprintf(bytes, sizeof(bytes), "%" PRIu64, req->resp_bytes);
    snprintf(dur, sizeof(dur), "%.3f", secs * 1000);
    sov_logv_kv(SOV_LOG_INFO, sov_http_req_id(req), 0, "request", kv);
}

/* Called when the response is complete; the request ends once its message is also read. */
static void req_finish(SovHttpReq *req)
{
    HttpConn *c = req->conn;
    SovHttpServer *s = req->srv;
    SovRouter *router = (SovRouter *)s->cfg.router;
    double secs;

    if (!c || req->finished)
        return;
    req->finished = true;
    secs = (double)(uv_hrtime() - req->t_start) / 1e9;
    route_stats_record(req->route ? &((Route *)req->route)->stats : &router->unmatched, s->cfg.svc,
                       req->route ? req->route->pattern : "unmatched", req->status, secs);
    if (s->cfg.access_log)
        access_log(req, secs);
    if (req->resp_close) {
        body_notify_error(req, -ECONNRESET);
        conn_shutdown(c);
        return;
    }
    if (!req->msg_done) {
        /* Keep parsing to drop the rest of the body; the request ends at its last byte. */
        if (req->body_mode == BODY_HOLD || req->body_mode == BODY_NONE) {
            req->body_mode = BODY_DISCARD;
            req->discard_left = DISCARD_BUDGET;
        }
        c->blocked = false;
        conn_kick(c);
        if (!c->in_process)
            conn_flush(c);
        return;
    }
    req_end(c);
}

/* Both the message and its response are complete: recycle the request for the next one (or
 * let the handler's reference keep it) and look for a pipelined request. */
static void req_end(HttpConn *c)
{
    SovHttpReq *req = c->req;
    SovHttpServer *s = c->srv;

    c->gen++;
    if (req->refs == 1) {
        req_reset(req);
    } else {
        req->conn = NULL;
        sov_http_req_unref(req);
        c->req = NULL;
    }
    c->blocked = false;
    c->dl = DL_IDLE;
    c->deadline = uv_now(s->loop) + s->cfg.limits.idle_timeout_ms;
    if (s->shutting_down) {
        conn_shutdown(c);
        return;
    }
    if (!c->in_process) {
        conn_flush(c);
        conn_kick(c); /* pipelined bytes may be waiting */
    }
}

/* Runs the route's decision once the headers are in. */
static void dispatch(HttpConn *c)
{
    SovHttpReq *req = c->req;
    SovHttpServer *s = c->srv;
    bool path_matched;
    SovStr path = sov_http_req_path(req);

    req->route =
        router_match(s->cfg.router, req->method, path, req->params, &req->nparams, &path_matched);
    if (!req->route) {
        sov_http_respond_error(req, path_matched ? 405 : 404,
                               path_matched ? "method not allowed" : "no such resource");
        return;
    }
    if (req->route->flags & SOV_ROUTE_STREAM) {
        req->body_mode = BODY_HOLD;
        if (req->content_length > 0 && (uint64_t)req->content_length > s->cfg.limits.max_body) {
            sov_http_respond_error(req, 413, "request body too large");
            return;
        }
        uint64_t gen = c->gen;
        sov_http_req_ref(req);
        req->route->handler(req, req->route->userdata);
        if (c->gen == gen && req->conn && !req->body_started && !req->resp_started &&
            req->has_body && !req->msg_done)
            c->blocked = true; /* hold the body until the handler asks for it */
        sov_http_req_unref(req);
        return;
    }
    if (req->content_length > 0 &&
        (uint64_t)req->content_length > s->cfg.limits.max_buffered_body) {
        sov_http_respond_error(req, 413, "request body too large");
        return;
    }
    req->body_mode = BODY_BUFFER;
    if (req->has_body) {
        send_continue(req);
        c->dl = DL_BODY;
        c->deadline = uv_now(s->loop) + s->cfg.limits.body_timeout_ms;
    }
}

static void on_event(HttpConn *c, ConnEvent ev)
{
    SovHttpReq *req = c->req;
    uint64_t gen = c->gen;

    switch (ev) {
    case EV_HEADERS:
        dispatch(c);
        break;
    case EV_MESSAGE:
        if (c->headers_pending) {
            c->headers_pending = false;
            dispatch(c);
            if (c->closing || c->gen != gen)
                break;
        }
        if (req->finished) { /* the response went out before the body ended */
            req_end(c);
            break;
        }
        if (req->resp_started) {
            c->blocked = true;
            break;
        }
        if (req->body_mode == BODY_BUFFER) {
            sov_http_req_ref(req);
            req->route->handler(req, req->route->userdata);
            sov_http_req_unref(req);
        } else if (req->body_mode == BODY_STREAM) {
            body_notify_end(req);
        }
        /* Pipelining: the next request waits until this response is done. */
        if (c->gen == gen && !c->closing && !req->finished)
            c->blocked = true;
        break;
    case EV_BODY_PAUSE:
        if (c->gen == gen && !req->finished)
            c->blocked = true;
        break;
    case EV_STOP:
        /* The handler refused more body, or the discard budget ran out. */
        req->resp_close = true;
        c->blocked = true;
        body_notify_error(req, -ECANCELED);
        if (req->resp_done)
            conn_shutdown(c);
        break;
    case EV_NONE:
        break;
    }
}

/* The parser refused the request: answer with the status a callback chose or one that fits
 * llhttp's error, then close. */
static void parse_error(HttpConn *c, llhttp_errno_t err)
{
    SovHttpReq *req = c->req;
    int status = c->err_status ? c->err_status : 400;
    const char *msg = c->err_msg ? c->err_msg : llhttp_get_error_reason(&c->parser);

    if (!c->err_status && err == HPE_INVALID_VERSION)
        status = 505;
    if (!req) {
        req = c->req = req_new(c);
        if (!req) {
            conn_close(c);
            return;
        }
        req->t_start = uv_hrtime();
    }
    if (!req->method.ptr)
        req->method = SOV_STR("-");
    req->keep_alive = false;
    req->resp_close = true;
    body_notify_error(req, -EPROTO);
    if (req->resp_started) {
        if (!req->resp_done) {
            /* Mid-response: nothing sensible can follow; stop reading and finish writing. */
            c->blocked = true;
            return;
        }
        conn_shutdown(c);
        return;
    }
    if (req->finished) {
        conn_shutdown(c);
        return;
    }
    sov_http_respond_error(req, status, msg ? msg : "malformed request");
}

static void conn_process(HttpConn *c)
{
    if (c->in_process)
        return;
    c->in_process = true;
    while (!c->closing && !c->blocked && !c->shut_down) {
        const char *start = c->rbuf ? c->rbuf + c->rpos : "";
        size_t avail = c->rlen - c->rpos;
        llhttp_errno_t err;

        /* After a pause, a zero-length execute lets llhttp reach a message end that needs
         * no more input (a body paused on its last byte). */
        if (avail == 0 && !c->resumed)
            break;
        c->resumed = false;
        c->event = EV_NONE;
        c->exec_end = start + avail;
        err = llhttp_execute(&c->parser, start, avail);
        if (err == HPE_OK) {
            c->rpos = c->rlen;
            break;
        }
        if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
            ConnEvent ev = c->event;
            c->rpos += (size_t)(llhttp_get_error_pos(&c->parser) - start);
            if (err == HPE_PAUSED_UPGRADE) {
                /* No protocol upgrades: answer this request, then close. */
                c->req->resp_close = true;
                c->req->keep_alive = false;
                c->blocked = true;
                ev = EV_MESSAGE;
                c->req->msg_done = true;
            } else {
                llhttp_resume(&c->parser);
                c->resumed = true;
            }
            on_event(c, ev);
            continue;
        }
        parse_error(c, err);
        break;
    }
    if (c->rpos == c->rlen)
        c->rpos = c->rlen = 0;
    c->in_process = false;
    conn_flush(c);
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    HttpConn *c = (HttpConn *)h;
    SovHttpServer *s = c->srv;

    if (c->own) {
        buf->base = c->own + c->rlen;
        buf->len = READ_BUF_SIZE - c->rlen;
    } else if (!s->scratch_busy) {
        s->scratch_busy = true;
        buf->base = s->scratch;
        buf->len = READ_BUF_SIZE;
    } else {
        buf->base = NULL;
        buf->len = 0;
    }
}

/* Keeps bytes the parser has not consumed, moving them out of the shared scratch buffer. */
static int conn_keep_rest(HttpConn *c)
{
    size_t rest = c->rlen - c->rpos;

    if (c->rbuf == c->own) {
        if (c->rpos && rest)
            memmove(c->own, c->own + c->rpos, rest);
    } else {
        c->own = malloc(READ_BUF_SIZE);
        if (!c->own)
            return -ENOMEM;
        memcpy(c->own, c->rbuf + c->rpos, rest);
    }
    c->rbuf = c->own;
    c->rpos = 0;
    c->rlen = rest;
    return 0;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    HttpConn *c = (HttpConn *)st;
    SovHttpServer *s = c->srv;
    bool scratch = buf->base == s->scratch;

    if (n > 0) {
        sov_counter_add(s->m_bytes_in, (uint64_t)n);
        if (c->rlen == 0 && !c->req) {
            /* First byte of a new request: the header timeout starts now. */
            c->dl = DL_HEADER;
            c->deadline = uv_now(s->loop) + s->cfg.limits.header_timeout_ms;
        } else if (c->dl == DL_IDLE) {
            c->dl = DL_HEADER;
            c->deadline = uv_now(s->loop) + s->cfg.limits.header_timeout_ms;
        }
        if (scratch) {
            c->rbuf = s->scratch;
            c->rpos = 0;
            c->rlen = (size_t)n;
        } else {
            c->rlen += (size_t)n;
        }
        conn_process(c);
        if (!c->closing && c->rpos < c->rlen && conn_keep_rest(c) < 0)
            conn_close(c);
        else if (c->rpos == c->rlen && c->own) {
            free(c->own);
            c->own = NULL;
            c->rpos = c->rlen = 0;
        }
        if (scratch) {
            s->scratch_busy = false;
            if (c->rbuf == s->scratch)
                c->rbuf = NULL;
        }
        conn_update_reading(c);
        return;
    }
    if (scratch)
        s->scratch_busy = false;
    if (n == UV_ENOBUFS) {
        conn_update_reading(c);
        return;
    }
    if (n < 0) {
        /* EOF or error. A request still being parsed cannot complete; a response in progress
         * is finished by its writes, then the connection closes. */
        SovHttpReq *req = c->req;
        if (n == UV_EOF && req && req->resp_started && !req->finished && !c->shut_down) {
            req->resp_close = true;
            req->keep_alive = false;
            c->reading = false;
            uv_read_stop(st);
            return;
        }
        if (n == UV_EOF && req && !req->resp_started && req->msg_done && !c->closing) {
            /* The client half-closed after a full request: answer it, then close. */
            req->keep_alive = false;
            c->reading = false;
            uv_read_stop(st);
            return;
        }
        conn_close(c);
    }
}

static void on_linger_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    HttpConn *c = (HttpConn *)st;
    if (buf->base == c->srv->scratch)
        c->srv->scratch_busy = false;
    if (n < 0)
        conn_close(c);
}

static void conn_update_reading(HttpConn *c)
{
    bool want;

    if (c->closing)
        return;
    if (c->lingering) {
        if (!c->reading) {
            c->reading = true;
            c->rpos = c->rlen = 0;
            free(c->own);
            c->own = NULL;
            uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_linger_read);
        }
        return;
    }
    want = !c->blocked && !c->shut_down && !(c->own && c->rlen >= READ_BUF_SIZE);
    if (want && !c->reading) {
        c->reading = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

/* Runs conn_process for connections whose state changed outside a read callback. */
static void on_kick(uv_idle_t *h)
{
    SovHttpServer *s = h->data;

    while (s->kick_list) {
        HttpConn *c = s->kick_list;
        s->kick_list = c->kick_next;
        c->kick_next = NULL;
        c->kicked = false;
        if (c->closing)
            continue;
        SovHttpReq *req = c->req;
        if (req && req->body_mode == BODY_STREAM && req->body_started && req->msg_done &&
            !req->body_notified) {
            uint64_t gen = c->gen;
            body_notify_end(req);
            if (c->gen == gen && !req->finished && !c->closing)
                c->blocked = true;
        }
        if (!c->closing && c->rbuf == NULL && c->own) {
            c->rbuf = c->own;
        }
        if (!c->closing && c->rlen > c->rpos) {
            if (!c->rbuf)
                c->rbuf = c->own;
            conn_process(c);
        } else if (!c->closing && c->resumed) {
            conn_process(c);
        }
        if (!c->closing && c->rpos == c->rlen && c->own) {
            free(c->own);
            c->own = NULL;
            c->rbuf = NULL;
            c->rpos = c->rlen = 0;
        }
        conn_flush(c);
        conn_update_reading(c);
    }
    uv_idle_stop(h);
}

static void conn_kick(HttpConn *c)
{
    if (c->kicked || c->closing)
        return;
    c->kicked = true;
    c->kick_next = c->srv->kick_list;
    c->srv->kick_list = c;
    uv_idle_start(&c->srv->kick, on_kick);
}

/* ---- connection lifetime ---- */

static void server_maybe_done(SovHttpServer *s);

static void on_conn_closed(uv_handle_t *h)
{
    HttpConn *c = (HttpConn *)h;
    SovHttpServer *s = c->srv;

    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->kicked) {
        for (HttpConn **pp = &s->kick_list; *pp; pp = &(*pp)->kick_next)
            if (*pp == c) {
                *pp = c->kick_next;
                break;
            }
    }
    if (c->req) {
        SovHttpReq *req = c->req;
        body_notify_error(req, -ECONNRESET);
        req->conn = NULL;
        sov_http_req_unref(req);
    }
    free(c->own);
    sov_buf_release(&c->wbuf);
    free(c);
    s->nconns--;
    sov_gauge_add(s->m_conns, -1);
    server_maybe_done(s);
}

static void conn_close(HttpConn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    c->reading = false;
    if (c->rbuf == c->srv->scratch)
        c->rbuf = NULL;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_timeout(HttpConn *c)
{
    SovHttpReq *req = c->req;

    switch (c->dl) {
    case DL_HEADER:
    case DL_BODY:
        if (req && !req->resp_started && !req->finished) {
            req->keep_alive = false;
            req->resp_close = true;
            body_notify_error(req, -ETIMEDOUT);
            c->blocked = true;
            if (!req->method.ptr)
                req->method = SOV_STR("-");
            sov_http_respond_error(req, 408, "request timed out");
            conn_flush(c);
            c->dl = DL_LINGER;
            c->deadline = uv_now(c->srv->loop) + LINGER_MS;
            return;
        }
        conn_close(c);
        return;
    default:
        conn_close(c);
    }
}

static void on_sweep(uv_timer_t *t)
{
    SovHttpServer *s = t->data;
    uint64_t now = uv_now(s->loop);
    HttpConn *c = s->conns;

    while (c) {
        HttpConn *next = c->next;
        if (!c->closing && c->dl != DL_NONE && now >= c->deadline)
            on_timeout(c);
        c = next;
    }
    if (s->shutting_down && now >= s->shutdown_deadline)
        for (c = s->conns; c; c = c->next)
            conn_close(c);
}

static void on_connection(uv_stream_t *l, int status)
{
    SovHttpServer *s = l->data;
    HttpConn *c;

    if (status < 0)
        return;
    c = calloc(1, sizeof(*c));
    if (!c)
        return;
    uv_tcp_init(s->loop, &c->tcp);
    c->srv = s;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) < 0) {
        uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
        return;
    }
    if (s->nconns >= s->cfg.limits.max_connections || s->shutting_down) {
        uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
    c->parser.data = c;
    sov_buf_init(&c->wbuf, 0);
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    sov_gauge_add(s->m_conns, 1);
    sov_counter_add(s->m_accepted, 1);
    c->dl = DL_IDLE;
    c->deadline = uv_now(s->loop) + s->cfg.limits.idle_timeout_ms;
    conn_update_reading(c);
}

/* ---- server ---- */

SovHttpServer *sov_http_server_new(uv_loop_t *loop, const SovHttpServerConfig *cfg)
{
    SovHttpServer *s = calloc(1, sizeof(*s));
    char labels[128];
    uint32_t prefix;

    if (!s)
        return NULL;
    s->loop = loop;
    s->cfg = *cfg;
    if (!s->cfg.svc)
        s->cfg.svc = "sov";
    s->scratch = malloc(READ_BUF_SIZE);
    if (!s->scratch) {
        free(s);
        return NULL;
    }
    if (sov_random_bytes(&prefix, sizeof(prefix)) < 0)
        prefix = (uint32_t)uv_hrtime();
    s->id_prefix = prefix;
    snprintf(labels, sizeof(labels), "svc=\"%s\"", s->cfg.svc);
    s->m_conns = sov_metrics_gauge("sov_http_connections", "Open HTTP connections.", labels);
    s->m_accepted = sov_metrics_counter("sov_http_connections_accepted_total",
                                        "Accepted HTTP connections.", labels);
    s->m_bytes_in = sov_metrics_counter("sov_http_received_bytes_total",
                                        "Bytes received on HTTP connections.", labels);
    s->m_bytes_out =
        sov_metrics_counter("sov_http_sent_bytes_total", "Bytes sent on HTTP connections.", labels);
    uv_timer_init(loop, &s->sweep);
    s->sweep.data = s;
    uv_idle_init(loop, &s->kick);
    s->kick.data = s;
    s->handles_open = 2;
    uv_timer_start(&s->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    uv_unref((uv_handle_t *)&s->sweep);
    return s;
}

int sov_http_server_listen_fd(SovHttpServer *s, int fd)
{
    int r = uv_tcp_init(s->loop, &s->listener);
    if (r < 0)
        return r;
    s->listener.data = s;
    s->handles_open++;
    r = uv_tcp_open(&s->listener, fd);
    if (r >= 0)
        r = uv_listen((uv_stream_t *)&s->listener, 1024, on_connection);
    if (r < 0) {
        uv_close((uv_handle_t *)&s->listener, NULL);
        return r;
    }
    s->listening = true;
    return 0;
}

unsigned sov_http_server_connections(const SovHttpServer *s)
{
    return s->nconns;
}

static void on_handle_closed(uv_handle_t *h)
{
    SovHttpServer *s = h->data;
    s->handles_open--;
    server_maybe_done(s);
}

static void server_maybe_done(SovHttpServer *s)
{
    if (!s->shutting_down || s->nconns > 0)
        return;
    if (!uv_is_closing((uv_handle_t *)&s->sweep)) {
        uv_close((uv_handle_t *)&s->sweep, on_handle_closed);
        uv_close((uv_handle_t *)&s->kick, on_handle_closed);
        return;
    }
    if (s->handles_open == 0 && s->shutdown_done) {
        void (*done)(SovHttpServer *, void *) = s->shutdown_done;
        s->shutdown_done = NULL;
        done(s, s->shutdown_ud);
    }
}

void sov_http_server_shutdown(SovHttpServer *s, void (*done)(SovHttpServer *s, void *ud), void *ud)
{
    if (s->shutting_down)
        return;
    s->shutting_down = true;
    s->shutdown_done = done;
    s->shutdown_ud = ud;
    s->shutdown_deadline = uv_now(s->loop) + s->cfg.limits.shutdown_grace_ms;
    uv_ref((uv_handle_t *)&s->sweep);
    if (s->listening) {
        s->listening = false;
        s->listener.data = s;
        uv_close((uv_handle_t *)&s->listener, on_handle_closed);
    }
    for (HttpConn *c = s->conns; c; c = c->next) {
        /* Idle connections go now; busy ones close after their response. */
        if (!c->req || (!c->req->resp_started && c->rlen == 0 && c->dl == DL_IDLE))
            conn_close(c);
    }
    server_maybe_done(s);
}

SovHttpServer *sov_http_server_free(SovHttpServer *s)
{
    if (s) {
        free(s->scratch);
        free(s);
    }
    return NULL;
}
