/* SPDX-License-Identifier: Apache-2.0 */
/* Private layouts of the HTTP server, shared by http_server.c (parsing, connections, the server)
 * and http_req.c (request accessors and responses). */
#ifndef SOV_HTTP_SERVER_INT_H
#define SOV_HTTP_SERVER_INT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "http-int.h"

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
    SSL *ssl;             /* TLS only: decrypted bytes land in own, like pipelined leftovers */
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

/* Connection and request steps that both files take. */
void http_conn_process(HttpConn *c);
void http_conn_close(HttpConn *c);
void http_conn_flush(HttpConn *c);
void http_conn_shutdown(HttpConn *c);
void http_conn_update_reading(HttpConn *c);
void http_conn_kick(HttpConn *c);
void http_on_linger_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);
SovHttpReq *http_req_new(HttpConn *c);
void http_req_reset(SovHttpReq *req);
void http_req_finish(SovHttpReq *req);
void http_req_end(HttpConn *c);
void http_default_error_page(SovHttpReq *req, int status, const char *message, void *ud);
void http_body_notify_error(SovHttpReq *req, int err);
void http_body_notify_end(SovHttpReq *req);
void http_send_continue(SovHttpReq *req);

/* Writes bytes to the connection in order: plain bytes directly, TLS bytes encrypted. When req
 * is set, cb(req, status, ud) runs once the bytes have left; copy says whether p must be copied
 * (it may be reused as soon as this returns). */
int http_conn_write(HttpConn *c, const char *p, size_t n, bool copy, SovHttpReq *req,
                    SovHttpWriteCb cb, void *ud);
/* TLS: sets the connection up, pulls decrypted bytes into own (returns how many, or -EPROTO),
 * queues a close_notify. */
int http_tls_conn_init(HttpConn *c, SovTlsContext *t);
int http_tls_pull(HttpConn *c);
int http_tls_feed(HttpConn *c, const char *p, size_t n);
void http_tls_close_notify(HttpConn *c);
int http_tls_take_output(HttpConn *c, char **ret, size_t *ret_len);

#endif
