/* SPDX-License-Identifier: Apache-2.0 */
/* Requests as handlers see them (accessors, body flow control) and responses: headers checked
 * against injection, whole or streamed bodies (fixed length or chunked), the write path that
 * hands bytes to the kernel in as few writes as possible, and lingering close. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <time.h>

#include "http-server-int.h"
#include "sov/log.h"

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

SovHttpReq *http_req_new(HttpConn *c)
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
void http_req_reset(SovHttpReq *req)
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
        http_conn_close(c);
        return;
    }
    if (c->dl == DL_WRITE)
        c->deadline = uv_now(c->srv->loop) + c->srv->cfg.limits.body_timeout_ms;
}

static void count_out(HttpConn *c, size_t n)
{
    sov_counter_add(c->srv->m_bytes_out, n);
}

int http_conn_write(HttpConn *c, const char *p, size_t n, bool copy, SovHttpReq *req,
                    SovHttpWriteCb cb, void *ud)
{
    WriteReq *wr;
    char *owned = NULL;
    uv_buf_t b;
    int r;

    if (c->closing)
        return -ECONNRESET;
    count_out(c, n);
    if (c->ssl) {
        /* Encrypt everything now (memory BIOs never block) and send the ciphertext, which
         * also carries any pending handshake or close_notify records. */
        for (size_t off = 0; off < n;) {
            int chunk = (int)SOV_MIN(n - off, (size_t)1 << 20);
            if (SSL_write(c->ssl, p + off, chunk) != chunk)
                return -EPROTO;
            off += (size_t)chunk;
        }
        r = http_tls_take_output(c, &owned, &n);
        if (r < 0)
            return r;
        p = owned;
        copy = false;
        if (n == 0 && !req)
            return 0;
    } else if (!req && c->writes_pending == 0 && n) {
        /* Most responses leave here, straight to the kernel, with no allocation. */
        b = uv_buf_init((char *)p, (unsigned)n);
        int w = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (w == (int)n)
            return 0;
        if (w < 0 && w != UV_EAGAIN)
            return -ECONNRESET;
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        }
    }
    wr = calloc(1, sizeof(*wr));
    if (!wr) {
        free(owned);
        return -ENOMEM;
    }
    if (copy && n) {
        owned = malloc(n);
        if (!owned) {
            free(wr);
            return -ENOMEM;
        }
        memcpy(owned, p, n);
    }
    wr->owned = owned;
    wr->conn = c;
    wr->req = req;
    wr->cb = cb;
    wr->ud = ud;
    b = uv_buf_init(owned ? owned : (char *)p, (unsigned)n);
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_write_done) < 0) {
        free(wr->owned);
        free(wr);
        return -ECONNRESET;
    }
    if (req)
        sov_http_req_ref(req);
    c->writes_pending++;
    c->dl = DL_WRITE;
    c->deadline = uv_now(c->srv->loop) + c->srv->cfg.limits.body_timeout_ms;
    return 0;
}

/* Hands the write buffer to the kernel now if nothing is queued, else queues a copy. */
void http_conn_flush(HttpConn *c)
{
    if (c->closing || (c->wbuf.len == 0 && !c->ssl))
        return;
    if (http_conn_write(c, c->wbuf.ptr, c->wbuf.len, true, NULL, NULL, NULL) < 0) {
        http_conn_close(c);
        return;
    }
    sov_buf_reset(&c->wbuf);
}

static void on_shutdown(uv_shutdown_t *sr, int status)
{
    HttpConn *c = sr->data;
    free(sr);
    if (status < 0 || c->closing) {
        http_conn_close(c);
        return;
    }
    /* Lingering close: read and drop what the client still sends for a moment, so that
     * closing with unread data does not reset the connection under our last response. */
    c->lingering = true;
    c->dl = DL_LINGER;
    c->deadline = uv_now(c->srv->loop) + LINGER_MS;
    c->reading = false;
    http_conn_update_reading(c);
}

/* Ends the connection once every queued write has left. */
void http_conn_shutdown(HttpConn *c)
{
    uv_shutdown_t *sr;

    if (c->shut_down || c->closing)
        return;
    if (c->ssl)
        http_tls_close_notify(c);
    http_conn_flush(c);
    if (c->closing)
        return;
    c->shut_down = true;
    c->blocked = true;
    sr = malloc(sizeof(*sr));
    if (!sr || (sr->data = c, uv_shutdown(sr, (uv_stream_t *)&c->tcp, on_shutdown) < 0)) {
        free(sr);
        http_conn_close(c);
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
    /* A client that asked for 100 Continue and got a final answer without it may still send
     * the body it held back (or misread the next answer): start afresh. */
    if (req->expect_continue && !req->continue_sent)
        return true;
    /* The body is still coming and will not be read: keep the connection only if what is left
     * is small enough to read and drop. A client waiting for 100 Continue sends nothing. */
    if (req->has_body && !req->msg_done && req->body_mode != BODY_BUFFER &&
        !(req->body_mode == BODY_STREAM)) {
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
    } else if (req->http_minor >= 1 && status != 204 && status != 304) {
        /* A HEAD answer names the framing a GET would get, but carries no chunks at all. */
        sov_buf_puts(b, "Transfer-Encoding: chunked\r\n");
        req->resp_chunked = !req->is_head;
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
    http_req_finish(req);
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
        http_conn_flush(req->conn);
    return 0;
}

int sov_http_resp_write(SovHttpReq *req, const void *p, size_t n, SovHttpWriteCb cb, void *ud)
{
    HttpConn *c = req->conn;
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
    http_conn_flush(c);
    if (c->closing)
        return -ECONNRESET;
    if (http_conn_write(c, p, n, false, req, cb, ud) < 0)
        return -ECONNRESET;
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
    http_req_finish(req);
    return 0;
}

bool sov_http_resp_started(const SovHttpReq *req)
{
    return req->resp_started;
}

void http_default_error_page(SovHttpReq *req, int status, const char *message, void *ud)
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
        http_default_error_page(req, status, message, NULL);
    /* A broken error page must not leave the client hanging. */
    if (c->gen == gen && !c->closing && !req->resp_started)
        http_default_error_page(req, status, message, NULL);
}

/* ---- request flow ---- */

void http_send_continue(SovHttpReq *req)
{
    HttpConn *c = req->conn;
    if (req->expect_continue && !req->continue_sent && !req->resp_started) {
        req->continue_sent = true;
        sov_buf_puts(&c->wbuf, "HTTP/1.1 100 Continue\r\n\r\n");
        if (!c->in_process)
            http_conn_flush(c);
    }
}

void http_body_notify_error(SovHttpReq *req, int err)
{
    if (req->body_mode == BODY_STREAM && req->body_started && !req->body_notified) {
        req->body_notified = true;
        if (req->cb.on_error)
            req->cb.on_error(req, err, req->cb_ud);
    }
}

void http_body_notify_end(SovHttpReq *req)
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
    http_send_continue(req);
    if (!req->has_body || req->msg_done) {
        http_conn_kick(c); /* delivers on_end outside the caller's stack */
        return 0;
    }
    http_send_continue(req);
    c->dl = DL_BODY;
    c->deadline = uv_now(c->srv->loop) + c->srv->cfg.limits.body_timeout_ms;
    c->blocked = false;
    http_conn_kick(c);
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
        http_conn_kick(c);
    }
}
