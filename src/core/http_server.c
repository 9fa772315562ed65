/* SPDX-License-Identifier: Apache-2.0 */
/* The HTTP/1.1 server: connection state machine over libuv and llhttp (requests as handlers
 * see them and responses live in http_req.c).
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

#include "http-server-int.h"
#include "sov/crypto.h"
#include "sov/log.h"

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
        c->req = http_req_new(c);
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

    /* Trailer fields of a chunked body arrive after the handler has seen the head (and holds
     * pointers into it): they are not kept. */
    if (p->flags & F_TRAILING)
        return 0;
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

    if (p->flags & F_TRAILING)
        return 0;
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
    /* Even without a body: botocore sends "Expect: 100-continue" with empty PUTs and waits. */
    req->expect_continue =
        p->http_minor >= 1 &&
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
void http_req_finish(SovHttpReq *req)
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
        http_body_notify_error(req, -ECONNRESET);
        http_conn_shutdown(c);
        return;
    }
    if (!req->msg_done) {
        /* Keep parsing to drop the rest of the body; the request ends at its last byte. */
        if (req->body_mode == BODY_HOLD || req->body_mode == BODY_NONE) {
            req->body_mode = BODY_DISCARD;
            req->discard_left = DISCARD_BUDGET;
        }
        c->blocked = false;
        http_conn_kick(c);
        if (!c->in_process)
            http_conn_flush(c);
        return;
    }
    http_req_end(c);
}

/* Both the message and its response are complete: recycle the request for the next one (or
 * let the handler's reference keep it) and look for a pipelined request. */
void http_req_end(HttpConn *c)
{
    SovHttpReq *req = c->req;
    SovHttpServer *s = c->srv;

    c->gen++;
    if (req->refs == 1) {
        http_req_reset(req);
    } else {
        req->conn = NULL;
        sov_http_req_unref(req);
        c->req = NULL;
    }
    c->blocked = false;
    c->dl = DL_IDLE;
    c->deadline = uv_now(s->loop) + s->cfg.limits.idle_timeout_ms;
    if (s->shutting_down) {
        http_conn_shutdown(c);
        return;
    }
    if (!c->in_process) {
        http_conn_flush(c);
        http_conn_kick(c); /* pipelined bytes may be waiting */
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
        http_send_continue(req);
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
            http_req_end(c);
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
            http_body_notify_end(req);
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
        http_body_notify_error(req, -ECANCELED);
        if (req->resp_done)
            http_conn_shutdown(c);
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
        req = c->req = http_req_new(c);
        if (!req) {
            http_conn_close(c);
            return;
        }
        req->t_start = uv_hrtime();
    }
    if (!req->method.ptr)
        req->method = SOV_STR("-");
    req->keep_alive = false;
    req->resp_close = true;
    http_body_notify_error(req, -EPROTO);
    if (req->resp_started) {
        if (!req->resp_done) {
            /* Mid-response: nothing sensible can follow; stop reading and finish writing. */
            c->blocked = true;
            return;
        }
        http_conn_shutdown(c);
        return;
    }
    if (req->finished) {
        http_conn_shutdown(c);
        return;
    }
    sov_http_respond_error(req, status, msg ? msg : "malformed request");
}

void http_conn_process(HttpConn *c)
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
    http_conn_flush(c);
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    HttpConn *c = (HttpConn *)h;
    SovHttpServer *s = c->srv;

    if (c->own && !c->ssl) {
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

/* TLS: decrypt what arrived and process it, as long as the parser takes more. */
static void conn_tls_process(HttpConn *c)
{
    for (;;) {
        int got = http_tls_pull(c);
        if (got < 0) {
            http_conn_flush(c); /* a TLS alert, if OpenSSL made one */
            http_conn_close(c);
            return;
        }
        http_conn_process(c);
        if (c->closing)
            return;
        if (got == 0 || c->blocked || c->shut_down)
            break;
    }
    http_conn_flush(c); /* handshake records */
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    HttpConn *c = (HttpConn *)st;
    SovHttpServer *s = c->srv;
    bool scratch = buf->base == s->scratch;

    if (n > 0 && c->ssl) {
        sov_counter_add(s->m_bytes_in, (uint64_t)n);
        if (c->dl == DL_IDLE) {
            c->dl = DL_HEADER;
            c->deadline = uv_now(s->loop) + s->cfg.limits.header_timeout_ms;
        }
        int r = http_tls_feed(c, buf->base, (size_t)n);
        if (scratch)
            s->scratch_busy = false;
        if (r < 0) {
            http_conn_close(c);
            return;
        }
        conn_tls_process(c);
        http_conn_update_reading(c);
        return;
    }
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
        http_conn_process(c);
        if (!c->closing && c->rpos < c->rlen && conn_keep_rest(c) < 0)
            http_conn_close(c);
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
        http_conn_update_reading(c);
        return;
    }
    if (scratch)
        s->scratch_busy = false;
    if (n == UV_ENOBUFS) {
        http_conn_update_reading(c);
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
        http_conn_close(c);
    }
}

void http_on_linger_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    HttpConn *c = (HttpConn *)st;
    if (buf->base == c->srv->scratch)
        c->srv->scratch_busy = false;
    if (n < 0)
        http_conn_close(c);
}

void http_conn_update_reading(HttpConn *c)
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
            uv_read_start((uv_stream_t *)&c->tcp, on_alloc, http_on_linger_read);
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
            http_body_notify_end(req);
            if (c->gen == gen && !req->finished && !c->closing)
                c->blocked = true;
        }
        if (c->ssl) {
            if (!c->closing)
                conn_tls_process(c);
            if (!c->closing)
                http_conn_update_reading(c);
            continue;
        }
        if (!c->closing && c->rbuf == NULL && c->own) {
            c->rbuf = c->own;
        }
        if (!c->closing && c->rlen > c->rpos) {
            if (!c->rbuf)
                c->rbuf = c->own;
            http_conn_process(c);
        } else if (!c->closing && c->resumed) {
            http_conn_process(c);
        }
        if (!c->closing && c->rpos == c->rlen && c->own) {
            free(c->own);
            c->own = NULL;
            c->rbuf = NULL;
            c->rpos = c->rlen = 0;
        }
        http_conn_flush(c);
        http_conn_update_reading(c);
    }
    uv_idle_stop(h);
}

void http_conn_kick(HttpConn *c)
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
        http_body_notify_error(req, -ECONNRESET);
        req->conn = NULL;
        sov_http_req_unref(req);
    }
    free(c->own);
    sov_buf_release(&c->wbuf);
    if (c->ssl)
        SSL_free(c->ssl);
    free(c);
    s->nconns--;
    sov_gauge_add(s->m_conns, -1);
    server_maybe_done(s);
}

void http_conn_close(HttpConn *c)
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
            http_body_notify_error(req, -ETIMEDOUT);
            c->blocked = true;
            if (!req->method.ptr)
                req->method = SOV_STR("-");
            sov_http_respond_error(req, 408, "request timed out");
            http_conn_flush(c);
            c->dl = DL_LINGER;
            c->deadline = uv_now(c->srv->loop) + LINGER_MS;
            return;
        }
        http_conn_close(c);
        return;
    default:
        http_conn_close(c);
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
            http_conn_close(c);
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
    if (s->cfg.tls && http_tls_conn_init(c, s->cfg.tls) < 0) {
        uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
        return;
    }
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
    http_conn_update_reading(c);
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
            http_conn_close(c);
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
