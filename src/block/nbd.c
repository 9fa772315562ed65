/* SPDX-License-Identifier: Apache-2.0 */
/* The NBD server's transport: accepts connections on TCP and Unix listening sockets and runs
 * one NbdProto (nbd_proto.c) per connection on the loop. Reads land in a per-connection buffer
 * (or straight into a large WRITE payload); everything the protocol produced while handling
 * one read, and every completion of one loop iteration, leaves in a single write. Reading
 * pauses while NBD_MAX_IN_FLIGHT requests are in flight or too many reply bytes wait for the
 * socket; a handshake timeout and an optional idle timeout bound the client's time.
 *
 * Life cycle: a connection's handles close when the client goes away, when the protocol ends
 * the session (DISC, ABORT, a malformed request: after the replies to requests in flight have
 * been written), on a timeout or on shutdown. The NbdProto is then freed, which waits for the
 * backend's outstanding completions on its own, so the backend never completes into freed
 * memory.
 *
 * TLS (STARTTLS) runs over OpenSSL memory BIOs, as core's HTTP listener does: after the
 * plaintext ACK, ciphertext read from the socket goes into the SSL object and the plaintext
 * out of it is fed to the protocol through the ordinary buffered path (no in-place payload
 * reads); the protocol's output is encrypted into tlsout, which is written like plain bytes. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "nbd-int.h"
#include "sov/http.h"

#define READ_BUF_SIZE       (256u * 1024)
#define IN_PLACE_MIN        (64u * 1024)       /* payload left that is read in place */
#define WRITE_HIGH          (8u * 1024 * 1024) /* reply bytes queued before reading pauses */
#define OUT_KEEP_MAX        (4u * 1024 * 1024) /* buffer capacity kept after a write */
#define HANDSHAKE_TIMEOUT   10000
#define SHUTDOWN_TIMEOUT_MS 30000
#define TLS_WRITE_CHUNK     (1024u * 1024) /* plaintext encrypted per SSL_write */

#define MAX_LISTENERS 4

typedef struct NbdConn NbdConn;

/* A listening socket; a server may have several (say a Unix socket and TCP). */
typedef struct NbdListener {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    NbdServer *s;
    bool is_unix, open;
} NbdListener;

struct NbdServer {
    uv_loop_t *loop;
    NbdServerConfig cfg;
    SSL_CTX *ssl_ctx; /* from cfg.tls; NULL: no TLS (cfg.tls_mode is then OFF) */
    NbdListener listeners[MAX_LISTENERS];
    unsigned nlisteners;
    uv_check_t flusher; /* flushes connections that completions made dirty */
    uv_idle_t waker;    /* keeps poll from blocking while a flush is due */
    uv_timer_t shutdown_timer;
    NbdConn *conns;
    NbdConn *dirty;
    unsigned nconns;
    unsigned open_handles; /* of the server itself: listeners, flusher, waker, timer */
    bool shutting_down, freeing;
    void (*done)(NbdServer *s, void *ud);
    void *done_ud;
};

/* Invariants: writing while wreq is queued (wbuf holds its bytes); on the dirty list exactly
 * when dirty; closing once uv_close was called (handles_open counts down to the free). With
 * TLS (ssl set once STARTTLS was acknowledged) every byte to send passes through tlsout, in
 * order: the plaintext ACK first, then TLS records; tls_up once the handshake is done. */
struct NbdConn {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    uv_timer_t timer;
    uv_write_t wreq;
    NbdServer *s;
    NbdProto *p;
    SovBuf wbuf;
    char *rbuf;
    SSL *ssl;
    SovBuf tlsout; /* bytes to send after wbuf (TLS only) */
    char *tlsbuf;  /* decrypted input */
    uint64_t last_active;
    unsigned handles_open;
    bool reading, writing, closing, dirty, read_in_place, eof, in_tx, is_unix;
    bool tls_up, tls_done; /* handshake done; close_notify sent or TLS failed */
    NbdConn *prev, *next, *dirty_next;
    char peer[64];
};

static void conn_close(NbdConn *c);
static void conn_update(NbdConn *c);
static int conn_tls_start(NbdConn *c);
static void server_maybe_done(NbdServer *s);

/* ---- writing ---- */

static void on_write(uv_write_t *w, int status)
{
    NbdConn *c = w->data;

    c->writing = false;
    sov_buf_reset(&c->wbuf);
    if (c->wbuf.cap > OUT_KEEP_MAX)
        sov_buf_release(&c->wbuf);
    if (status < 0) {
        conn_close(c);
        return;
    }
    conn_update(c);
}

/* Moves what the TLS engine has to send (records, alerts) to tlsout. */
static int tls_drain(NbdConn *c)
{
    BIO *wbio = SSL_get_wbio(c->ssl);
    size_t pending = BIO_ctrl_pending(wbio);
    int r;

    if (pending == 0)
        return 0;
    if (pending > INT32_MAX)
        return -EOVERFLOW;
    r = sov_buf_reserve(&c->tlsout, pending);
    if (r < 0)
        return r;
    if (BIO_read(wbio, c->tlsout.ptr + c->tlsout.len, (int)pending) != (int)pending)
        return -EIO;
    c->tlsout.len += pending;
    c->tlsout.ptr[c->tlsout.len] = '\0';
    return 0;
}

/* Encrypts the protocol's output into tlsout, a chunk at a time so that the memory BIO stays
 * small. */
static int tls_encrypt(NbdConn *c)
{
    SovBuf *out = nbd_proto_out(c->p);
    size_t off = 0;
    int r;

    if (c->tls_up) {
        /* After close_notify or a TLS failure nothing more can be sent: replies are dropped. */
        while (!c->tls_done && off < out->len) {
            int n = SSL_write(c->ssl, out->ptr + off,
                              (int)SOV_MIN(out->len - off, (size_t)TLS_WRITE_CHUNK));
            if (n <= 0) {
                ERR_clear_error();
                return -EPROTO;
            }
            off += (size_t)n;
            r = tls_drain(c);
            if (r < 0)
                return r;
        }
        sov_buf_reset(out);
    }
    return tls_drain(c);
}

/* Sends everything the protocol produced so far in one write. The protocol's buffer and ours
 * swap, so reply bytes are never copied again (with TLS, tlsout is swapped instead). */
static void conn_flush(NbdConn *c)
{
    SovBuf *out = nbd_proto_out(c->p);
    SovBuf tmp;
    uv_buf_t b;

    if (c->closing)
        return;
    if (c->ssl) {
        if (tls_encrypt(c) < 0) {
            conn_close(c);
            return;
        }
        out = &c->tlsout;
    }
    if (c->writing || out->len == 0)
        return;
    tmp = c->wbuf;
    c->wbuf = *out;
    *out = tmp;
    b = uv_buf_init(c->wbuf.ptr, (unsigned)c->wbuf.len);
    c->wreq.data = c;
    if (uv_write(&c->wreq, &c->h.stream, &b, 1, on_write) < 0) {
        conn_close(c);
        return;
    }
    c->writing = true;
}

static size_t conn_queued(NbdConn *c)
{
    return nbd_proto_out(c->p)->len + c->tlsout.len + (c->writing ? c->wbuf.len : 0);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void on_conn_timer(uv_timer_t *t);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

/* ---- TLS ---- */

/* Takes ciphertext: advances the handshake, then feeds what decrypts to the protocol. Returns
 * 0, 1 when the client sent close_notify, or a negative errno when TLS failed. */
static int tls_input(NbdConn *c, const char *data, size_t n)
{
    int e;

    if (n > INT32_MAX || (n > 0 && BIO_write(SSL_get_rbio(c->ssl), data, (int)n) != (int)n))
        return -ENOMEM;
    if (!c->tls_up) {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            e = SSL_get_error(c->ssl, r);
            ERR_clear_error();
            return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -EPROTO;
        }
        c->tls_up = true;
        nbd_proto_tls_ready(c->p);
    }
    for (;;) {
        size_t len = 0;
        int k = 0;

        while (len < READ_BUF_SIZE) {
            k = SSL_read(c->ssl, c->tlsbuf + len, (int)(READ_BUF_SIZE - len));
            if (k <= 0)
                break;
            len += (size_t)k;
        }
        if (len > 0)
            nbd_proto_input(c->p, c->tlsbuf, len);
        if (k > 0)
            continue; /* the buffer filled up: there may be more */
        e = SSL_get_error(c->ssl, k);
        ERR_clear_error();
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return 0;
        return e == SSL_ERROR_ZERO_RETURN ? 1 : -EPROTO;
    }
}

/* After STARTTLS was acknowledged: the ACK leaves in plaintext, then the server handshake
 * begins on the bytes that followed the option. */
static int conn_tls_start(NbdConn *c)
{
    SovBuf *out = nbd_proto_out(c->p);
    SovBuf early = SOV_BUF_INIT;
    BIO *rbio, *wbio;
    int r;

    if (!c->s->ssl_ctx)
        return -EPROTO;
    r = sov_buf_append(&c->tlsout, out->ptr, out->len);
    if (r < 0)
        return r;
    sov_buf_reset(out);
    c->tlsbuf = malloc(READ_BUF_SIZE);
    c->ssl = SSL_new(c->s->ssl_ctx);
    rbio = BIO_new(BIO_s_mem());
    wbio = BIO_new(BIO_s_mem());
    if (!c->tlsbuf || !c->ssl || !rbio || !wbio) {
        BIO_free(rbio);
        BIO_free(wbio);
        ERR_clear_error();
        return -ENOMEM;
    }
    /* An empty memory BIO reports "retry" rather than EOF. */
    BIO_set_mem_eof_return(rbio, -1);
    SSL_set_bio(c->ssl, rbio, wbio);
    SSL_set_accept_state(c->ssl);
    r = nbd_proto_tls_start(c->p, &early);
    if (r == 0)
        r = tls_input(c, early.ptr, early.len);
    sov_buf_release(&early);
    return r < 0 ? r : 0;
}

/* After any event: flush, decide whether to read, and close when the session is over. */
static void conn_update(NbdConn *c)
{
    bool want;

    if (c->closing)
        return;
    if (!c->in_tx && nbd_proto_in_transmission(c->p)) {
        /* The handshake timer gives way to the idle timer, if any. */
        c->in_tx = true;
        uv_timer_stop(&c->timer);
        if (c->s->cfg.idle_timeout_ms)
            uv_timer_start(&c->timer, on_conn_timer, c->s->cfg.idle_timeout_ms, 0);
    }
    if (!c->ssl && nbd_proto_tls_pending(c->p) && conn_tls_start(c) < 0) {
        conn_close(c);
        return;
    }
    conn_flush(c);
    if (c->closing)
        return;
    if (nbd_proto_finished(c->p) || (c->eof && nbd_proto_in_flight(c->p) == 0)) {
        if (c->tls_up && !c->tls_done) {
            /* The last replies are encrypted by now: close_notify follows them. */
            c->tls_done = true;
            SSL_shutdown(c->ssl);
            ERR_clear_error();
            conn_flush(c);
            if (c->closing)
                return;
        }
        /* Close once the last replies are out. */
        if (!c->writing && nbd_proto_out(c->p)->len == 0 && c->tlsout.len == 0)
            conn_close(c);
        return;
    }
    /* The TLS handshake reads while the protocol waits for it. */
    want = !c->eof && !c->s->shutting_down &&
           (nbd_proto_wants_input(c->p) || (c->ssl && !c->tls_up)) && conn_queued(c) < WRITE_HIGH;
    if (want && !c->reading) {
        if (uv_read_start(&c->h.stream, on_alloc, on_read) < 0) {
            conn_close(c);
            return;
        }
        c->reading = true;
    } else if (!want && c->reading) {
        uv_read_stop(&c->h.stream);
        c->reading = false;
    }
    if (c->s->shutting_down && nbd_proto_in_flight(c->p) == 0 && !c->writing)
        conn_close(c);
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    NbdConn *c = h->data;
    char *ptr;
    size_t len;

    /* A large WRITE payload is read where the backend will find it (plaintext only). */
    nbd_proto_read_target(c->p, &ptr, &len);
    c->read_in_place = !c->ssl && len >= IN_PLACE_MIN;
    if (c->read_in_place) {
        *buf = uv_buf_init(ptr, (unsigned)SOV_MIN(len, (size_t)UINT32_MAX / 2));
        return;
    }
    *buf = uv_buf_init(c->rbuf, READ_BUF_SIZE);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    NbdConn *c = st->data;
    int r;

    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        /* EOF or an error: no more requests. Replies to requests in flight are still sent
         * if the socket takes them. */
        uv_read_stop(st);
        c->reading = false;
        c->eof = true;
        if (nread != UV_EOF) {
            conn_close(c);
            return;
        }
        conn_update(c);
        return;
    }
    c->last_active = uv_now(c->s->loop);
    if (c->ssl) {
        r = tls_input(c, buf->base, (size_t)nread);
        if (r != 0) {
            /* close_notify or a TLS error (an alert may be on its way out): no more input;
             * the session ends once the requests in flight are answered. */
            uv_read_stop(st);
            c->reading = false;
            c->eof = true;
            if (r < 0)
                c->tls_done = true;
        }
        conn_update(c);
        return;
    }
    if (c->read_in_place)
        r = nbd_proto_input_in_place(c->p, (size_t)nread);
    else
        r = nbd_proto_input(c->p, buf->base, (size_t)nread);
    (void)r; /* the protocol's state says what to do next */
    conn_update(c);
}

/* ---- completions from the backend ---- */

static void on_flusher(uv_check_t *h)
{
    NbdServer *s = h->data;

    while (s->dirty) {
        NbdConn *c = s->dirty;
        s->dirty = c->dirty_next;
        c->dirty_next = NULL;
        c->dirty = false;
        if (c->closing)
            continue;
        /* Input held back by the in-flight limit can proceed now. */
        if (!nbd_proto_wants_input(c->p) && nbd_proto_in_flight(c->p) < NBD_MAX_IN_FLIGHT)
            nbd_proto_input(c->p, NULL, 0);
        conn_update(c);
    }
    uv_check_stop(h);
    uv_idle_stop(&s->waker);
}

static void on_waker(uv_idle_t *h)
{
    /* Nothing to do: being active makes the next poll return at once, so that the check
     * phase after it runs the flusher. */
}

/* A completion outside a read: flush once per loop iteration (the check phase runs right
 * after the I/O callbacks of the same iteration), so that many completions share one write.
 * A completion from a timer or idle callback comes before the poll; the waker keeps that poll
 * from blocking. */
static void on_proto_notify(NbdProto *p, void *ud)
{
    NbdConn *c = ud;
    NbdServer *s = c->s;

    if (c->dirty || c->closing)
        return;
    c->dirty = true;
    c->dirty_next = s->dirty;
    s->dirty = c;
    uv_check_start(&s->flusher, on_flusher);
    uv_idle_start(&s->waker, on_waker);
}

/* ---- timers ---- */

static void on_conn_timer(uv_timer_t *t)
{
    NbdConn *c = t->data;
    uint64_t idle = c->s->cfg.idle_timeout_ms;
    uint64_t now = uv_now(c->s->loop);

    if (!nbd_proto_in_transmission(c->p)) {
        conn_close(c); /* handshake timeout */
        return;
    }
    if (idle == 0) {
        uv_timer_stop(t);
        return;
    }
    if (nbd_proto_in_flight(c->p) == 0 && !c->writing && now - c->last_active >= idle) {
        conn_close(c);
        return;
    }
    uv_timer_start(t, on_conn_timer, idle, 0);
}

/* ---- connections ---- */

static void conn_free(NbdConn *c)
{
    NbdServer *s = c->s;

    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    nbd_proto_free(c->p); /* waits for the backend's completions on its own */
    sov_buf_release(&c->wbuf);
    sov_buf_release(&c->tlsout);
    SSL_free(c->ssl);
    free(c->tlsbuf);
    free(c->rbuf);
    free(c);
    server_maybe_done(s);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    NbdConn *c = h->data;

    if (--c->handles_open == 0)
        conn_free(c);
}

static void conn_close(NbdConn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    c->reading = false;
    nbd_proto_set_notify(c->p, NULL, NULL);
    if (c->dirty) {
        /* Unlink from the dirty list. */
        NbdConn **pp = &c->s->dirty;
        while (*pp && *pp != c)
            pp = &(*pp)->dirty_next;
        if (*pp)
            *pp = c->dirty_next;
        c->dirty = false;
    }
    /* Pending writes are cancelled before the close callback, so wbuf stays valid for them. */
    uv_close(&c->h.handle, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

static void peer_name(NbdConn *c)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char ip[48] = "?";
    int port = 0;

    if (c->is_unix) {
        snprintf(c->peer, sizeof(c->peer), "unix");
        return;
    }
    if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
            uv_ip6_name(a, ip, sizeof(ip));
            port = ntohs(a->sin6_port);
            snprintf(c->peer, sizeof(c->peer), "[%s]:%d", ip, port);
            return;
        }
        if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
            uv_ip4_name(a, ip, sizeof(ip));
            port = ntohs(a->sin_port);
        }
    }
    snprintf(c->peer, sizeof(c->peer), "%s:%d", ip, port);
}

static void on_connection(uv_stream_t *ls, int status)
{
    NbdListener *l = ls->data;
    NbdServer *s = l->s;
    NbdConn *c;
    NbdClientInfo ci;
    int r;

    if (status < 0 || s->shutting_down)
        return;
    c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->s = s;
    c->is_unix = l->is_unix;
    r = c->is_unix ? uv_pipe_init(s->loop, &c->h.pipe, 0) : uv_tcp_init(s->loop, &c->h.tcp);
    if (r < 0) {
        free(c);
        return;
    }
    c->h.handle.data = c;
    uv_timer_init(s->loop, &c->timer);
    c->timer.data = c;
    c->handles_open = 2;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    c->rbuf = malloc(READ_BUF_SIZE);
    sov_buf_init(&c->wbuf, 0);
    sov_buf_init(&c->tlsout, 0);
    if (uv_accept(ls, &c->h.stream) < 0 || !c->rbuf)
        goto fail_no_proto;
    if (!c->is_unix)
        uv_tcp_nodelay(&c->h.tcp, 1);
    peer_name(c);
    ci = (NbdClientInfo){.peer = c->peer, .tls = false};
    c->p = nbd_proto_new(&s->cfg, &ci);
    if (!c->p)
        goto fail_no_proto;
    nbd_proto_set_notify(c->p, on_proto_notify, c);
    c->last_active = uv_now(s->loop);
    uv_timer_start(&c->timer, on_conn_timer,
                   s->cfg.handshake_timeout_ms ? s->cfg.handshake_timeout_ms : HANDSHAKE_TIMEOUT,
                   0);
    conn_update(c); /* sends the greeting and starts reading */
    return;

fail_no_proto:
    /* No protocol object: close the handles; conn_free copes with a NULL proto. */
    c->closing = true;
    uv_close(&c->h.handle, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

/* ---- server ---- */

NbdServer *nbd_server_new(uv_loop_t *loop, const NbdServerConfig *cfg)
{
    NbdServer *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    s->loop = loop;
    s->cfg = *cfg;
    if (cfg->tls)
        s->ssl_ctx = sov_tls_ssl_ctx(cfg->tls);
    else
        s->cfg.tls_mode = NBD_TLS_OFF;
    uv_check_init(loop, &s->flusher);
    s->flusher.data = s;
    uv_unref((uv_handle_t *)&s->flusher);
    uv_idle_init(loop, &s->waker);
    s->waker.data = s;
    uv_unref((uv_handle_t *)&s->waker);
    uv_timer_init(loop, &s->shutdown_timer);
    s->shutdown_timer.data = s;
    s->open_handles = 3;
    return s;
}

static void on_listener_closed(uv_handle_t *h);

int nbd_server_listen_fd(NbdServer *s, int fd, bool is_unix)
{
    NbdListener *l;
    int r;

    if (s->shutting_down)
        return -ESHUTDOWN;
    if (s->nlisteners == MAX_LISTENERS)
        return -EBUSY;
    l = &s->listeners[s->nlisteners];
    l->s = s;
    l->is_unix = is_unix;
    r = is_unix ? uv_pipe_init(s->loop, &l->h.pipe, 0) : uv_tcp_init(s->loop, &l->h.tcp);
    if (r < 0)
        return r;
    s->nlisteners++;
    l->h.handle.data = l;
    l->open = true;
    s->open_handles++;
    r = is_unix ? uv_pipe_open(&l->h.pipe, fd) : uv_tcp_open(&l->h.tcp, fd);
    if (r == 0)
        r = uv_listen(&l->h.stream, 511, on_connection);
    if (r < 0) {
        l->open = false;
        uv_close(&l->h.handle, on_listener_closed);
    }
    return r;
}

unsigned nbd_server_connections(const NbdServer *s)
{
    return s->nconns;
}

static void on_server_handle_closed(uv_handle_t *h)
{
    NbdServer *s = h->data;

    s->open_handles--;
    server_maybe_done(s);
}

static void on_listener_closed(uv_handle_t *h)
{
    NbdListener *l = h->data;

    l->s->open_handles--;
    server_maybe_done(l->s);
}

static void close_listeners(NbdServer *s)
{
    for (unsigned i = 0; i < s->nlisteners; i++) {
        NbdListener *l = &s->listeners[i];
        if (l->open) {
            l->open = false;
            uv_close(&l->h.handle, on_listener_closed);
        }
    }
}

static void server_close_handles(NbdServer *s)
{
    close_listeners(s);
    if (!uv_is_closing((uv_handle_t *)&s->flusher)) {
        uv_close((uv_handle_t *)&s->flusher, on_server_handle_closed);
        uv_close((uv_handle_t *)&s->waker, on_server_handle_closed);
        uv_close((uv_handle_t *)&s->shutdown_timer, on_server_handle_closed);
    }
}

static void server_maybe_done(NbdServer *s)
{
    if (!s->shutting_down || s->nconns > 0)
        return;
    if (s->open_handles > 0) {
        server_close_handles(s);
        return;
    }
    if (s->freeing) {
        free(s);
        return;
    }
    if (s->done) {
        void (*done)(NbdServer *, void *) = s->done;
        s->done = NULL;
        done(s, s->done_ud);
    }
}

static void on_shutdown_timeout(uv_timer_t *t)
{
    NbdServer *s = t->data;

    for (NbdConn *c = s->conns; c; c = c->next)
        conn_close(c);
}

void nbd_server_shutdown(NbdServer *s, void (*done)(NbdServer *s, void *ud), void *ud)
{
    NbdConn *next;

    if (s->shutting_down)
        return;
    s->shutting_down = true;
    s->done = done;
    s->done_ud = ud;
    close_listeners(s);
    /* Connections still negotiating close now; the others stop reading, finish the requests
     * in flight, send their replies and close (or are cut after SHUTDOWN_TIMEOUT_MS). */
    for (NbdConn *c = s->conns; c; c = next) {
        next = c->next;
        if (!nbd_proto_in_transmission(c->p))
            conn_close(c);
        else
            conn_update(c);
    }
    uv_timer_start(&s->shutdown_timer, on_shutdown_timeout, SHUTDOWN_TIMEOUT_MS, 0);
    uv_unref((uv_handle_t *)&s->shutdown_timer);
    server_maybe_done(s);
}

void nbd_server_free(NbdServer *s)
{
    if (!s)
        return;
    /* Normally after shutdown's done callback; otherwise everything is closed now and the
     * memory goes once the loop has run the close callbacks. */
    s->done = NULL;
    s->freeing = true;
    if (!s->shutting_down) {
        s->shutting_down = true;
        for (NbdConn *c = s->conns; c; c = c->next)
            conn_close(c);
    }
    if (s->nconns == 0 && s->open_handles == 0) {
        free(s);
        return;
    }
    server_maybe_done(s);
}
