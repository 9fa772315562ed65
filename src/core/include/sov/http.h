/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP/1.1 server and client on libuv, parsing with llhttp.
 *
 * Server model: a SovHttpServer lives on one loop; several loops share a port through
 * SO_REUSEPORT sockets (see sov/daemon.h). A SovRouter maps method + path pattern to a handler.
 * Buffered routes get the whole body (bounded by limits.max_buffered_body) before the handler
 * runs; streaming routes run the handler when the headers are complete and pull the body
 * through callbacks with flow control, so a 5 GiB upload is never held in memory. Responses are
 * either complete (sov_http_respond) or streamed (sov_http_resp_start/write/end) with a known
 * length or chunked. Keep-alive, pipelining (responses in request order), Expect:
 * 100-continue, limits on header bytes/count, URL length, body size and header/body/idle
 * timeouts are handled here and answered with 400/408/413/414/431/505 as appropriate.
 *
 * Lifetime: a SovHttpReq belongs to its connection. A handler that finishes later (after an
 * asynchronous step) takes a reference with sov_http_req_ref() and drops it with
 * sov_http_req_unref(); when the client goes away meanwhile, response calls return
 * -ECONNRESET and sov_http_req_is_closed() says so. */
#ifndef SOV_HTTP_H
#define SOV_HTTP_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "sov/buf.h"

typedef struct SovHttpServer SovHttpServer;
typedef struct SovHttpReq SovHttpReq;
typedef struct SovRouter SovRouter;

typedef struct SovHttpLimits {
    uint32_t max_header_bytes;  /* request line plus header lines, bytes */
    uint32_t max_headers;       /* header lines */
    uint32_t max_url;           /* request target, bytes */
    uint64_t max_body;          /* streaming routes */
    uint64_t max_buffered_body; /* buffered routes */
    uint32_t header_timeout_ms; /* first byte of a request to end of its headers */
    uint32_t body_timeout_ms;   /* longest pause in the body or in writing the response */
    uint32_t idle_timeout_ms;   /* keep-alive connection with no request */
    uint32_t max_connections;   /* per server (loop) */
    uint32_t shutdown_grace_ms; /* graceful stop: in-flight requests get this long */
} SovHttpLimits;

/* Defaults: 16 KiB headers, 100 header lines, 8 KiB URL, 5 GiB streaming body, 1 MiB buffered
 * body, 30 s header and body timeouts, 60 s idle, 10000 connections, 10 s grace. */
void sov_http_limits_default(SovHttpLimits *l);

typedef void (*SovHttpHandler)(SovHttpReq *req, void *userdata);
/* Formats an error response the server itself produces (400, 408, 413, 414, 431, 404, 405,
 * 505, 500, 503); services use it to speak their protocol's error format. */
typedef void (*SovHttpErrorPage)(SovHttpReq *req, int status, const char *message, void *userdata);

typedef struct SovHttpServerConfig {
    SovHttpLimits limits;
    const SovRouter *router;
    const char *svc; /* metrics label and log name */
    bool access_log; /* one log line per request */
    SovHttpErrorPage error_page;
    void *error_page_userdata;
    void *tls; /* a SovTlsContext from sov_tls_server_new(), or NULL for plain HTTP */
} SovHttpServerConfig;

/* TLS for a listener (OpenSSL): a certificate chain and key in PEM files. The context is shared
 * read-only by every worker; free it after the servers. TLS 1.2 and 1.3 only. */
typedef struct SovTlsContext SovTlsContext;
int sov_tls_server_new(const char *cert_file, const char *key_file, SovTlsContext **ret,
                       SovBuf *err);
SovTlsContext *sov_tls_free(SovTlsContext *t);
/* The context's OpenSSL SSL_CTX, for a service that runs TLS inside its own protocol (NBD's
 * STARTTLS) with the same certificate loading and version floor. */
struct ssl_ctx_st *sov_tls_ssl_ctx(SovTlsContext *t);

SovHttpServer *sov_http_server_new(uv_loop_t *loop, const SovHttpServerConfig *cfg);
/* Starts accepting on a listening socket (from sov_listen_tcp); the server owns fd. */
int sov_http_server_listen_fd(SovHttpServer *s, int fd);
/* Stops accepting, closes idle connections, lets in-flight requests finish within the grace
 * period, then calls done; afterwards the server can be freed. */
void sov_http_server_shutdown(SovHttpServer *s, void (*done)(SovHttpServer *s, void *ud), void *ud);
SovHttpServer *sov_http_server_free(SovHttpServer *s);
unsigned sov_http_server_connections(const SovHttpServer *s);

/* Router. Patterns are literal segments, `{name}` (one segment) and a final `{name+}` (the rest
 * of the path, possibly empty). method "*" matches any method. Routes are tried in the order
 * added. */
#define SOV_ROUTE_STREAM 1u
SovRouter *sov_router_new(void);
int sov_router_add(SovRouter *r, const char *method, const char *pattern, unsigned flags,
                   SovHttpHandler h, void *userdata);
SovRouter *sov_router_free(SovRouter *r);
/* The routes every daemon serves: GET/HEAD /healthz ("ok") and GET /metrics (the process's
 * Prometheus registry, text format 0.0.4). */
int sov_router_add_ops(SovRouter *r);

/* Request accessors. Views stay valid for the life of the request. */
SovStr sov_http_req_method(const SovHttpReq *req);
SovStr sov_http_req_target(const SovHttpReq *req); /* raw request target */
SovStr sov_http_req_path(const SovHttpReq *req);   /* target up to '?', not decoded */
SovStr sov_http_req_query(const SovHttpReq *req);  /* after '?', empty if none */
SovStr sov_http_req_header(const SovHttpReq *req, const char *name); /* ptr NULL if absent */
size_t sov_http_req_header_count(const SovHttpReq *req);
void sov_http_req_header_at(const SovHttpReq *req, size_t i, SovStr *ret_name, SovStr *ret_value);
SovStr sov_http_req_param(const SovHttpReq *req, const char *name); /* route parameter */
SovStr sov_http_req_route(const SovHttpReq *req); /* matched pattern, for metrics and logs */
int64_t sov_http_req_content_length(const SovHttpReq *req); /* -1 when chunked or unknown */
bool sov_http_req_is_head(const SovHttpReq *req);
SovStr sov_http_req_body(const SovHttpReq *req); /* buffered routes */
const char *sov_http_req_id(SovHttpReq *req);    /* 16 hex digits, unique per process */
const char *sov_http_req_peer(SovHttpReq *req);  /* "ip:port" of the client */
SovArena *sov_http_req_arena(SovHttpReq *req);
void sov_http_req_ref(SovHttpReq *req);
void sov_http_req_unref(SovHttpReq *req);
bool sov_http_req_is_closed(const SovHttpReq *req);

/* Streaming request bodies. on_data sees each piece once (valid only during the call) and
 * returns 0, or a negative errno to stop reading (the connection closes after the response).
 * on_end runs when the body is complete; on_error when it cannot be (client gone, timeout,
 * malformed chunking, body over the limit); exactly one of on_end/on_error runs. Starting the
 * body sends "100 Continue" when the client asked for it. */
typedef struct SovHttpBodyCallbacks {
    int (*on_data)(SovHttpReq *req, const char *p, size_t n, void *ud);
    void (*on_end)(SovHttpReq *req, void *ud);
    void (*on_error)(SovHttpReq *req, int err, void *ud);
} SovHttpBodyCallbacks;
int sov_http_req_read_body(SovHttpReq *req, const SovHttpBodyCallbacks *cb, void *ud);
void sov_http_req_pause(SovHttpReq *req);
void sov_http_req_resume(SovHttpReq *req);

/* Responses. Header names and values are checked (no CR, LF or NUL): -EINVAL otherwise. */
int sov_http_resp_header(SovHttpReq *req, const char *name, SovStr value);
int sov_http_respond(SovHttpReq *req, int status, const char *content_type, const void *body,
                     size_t len);
/* Starts a streamed response; content_length -1 means chunked (or close-delimited for
 * HTTP/1.0 clients). */
int sov_http_resp_start(SovHttpReq *req, int status, int64_t content_length);
typedef void (*SovHttpWriteCb)(SovHttpReq *req, int status, void *ud);
/* Queues n bytes that must stay valid until cb runs (status 0 or a negative errno). */
int sov_http_resp_write(SovHttpReq *req, const void *p, size_t n, SovHttpWriteCb cb, void *ud);
int sov_http_resp_end(SovHttpReq *req);
/* The server's error response for status (through the configured error page). */
void sov_http_respond_error(SovHttpReq *req, int status, const char *message);
bool sov_http_resp_started(const SovHttpReq *req);
const char *sov_http_status_reason(int status);

/* Listening sockets: binds host:port (port 0 picks one) with SO_REUSEADDR, and SO_REUSEPORT
 * when reuseport is true; returns the fd and the bound port. */
int sov_listen_tcp(const char *host, int port, bool reuseport, int *ret_fd, int *ret_port);

/* Client: one request on a fresh connection. Headers are "Name: value" strings, NULL-terminated.
 * The response body is streamed to on_body; on_done runs once with 0 or a negative errno
 * (-ETIMEDOUT when timeout_ms passes), from the loop: never before this returns 0 (a negative
 * return means no callback runs). */
typedef struct SovHttpClientReq SovHttpClientReq;
typedef struct SovHttpClientCallbacks {
    void (*on_headers)(SovHttpClientReq *r, int status, void *ud);
    int (*on_body)(SovHttpClientReq *r, const char *p, size_t n, void *ud);
    void (*on_done)(SovHttpClientReq *r, int err, void *ud);
} SovHttpClientCallbacks;
int sov_http_client_request(uv_loop_t *loop, const char *host, int port, const char *method,
                            const char *target, const char *const *headers, SovStr body,
                            unsigned timeout_ms, const SovHttpClientCallbacks *cb, void *ud);
SovStr sov_http_client_resp_header(const SovHttpClientReq *r, const char *name);
/* Blocking convenience for tools: runs its own loop. Body bounded by body->max. */
int sov_http_fetch(const char *host, int port, const char *method, const char *target, SovStr body,
                   unsigned timeout_ms, int *ret_status, SovBuf *ret_body);
/* The same with request header lines ("Name: value", NULL-terminated list). */
int sov_http_fetch_headers(const char *host, int port, const char *method, const char *target,
                           const char *const *headers, SovStr body, unsigned timeout_ms,
                           int *ret_status, SovBuf *ret_body);

#endif
