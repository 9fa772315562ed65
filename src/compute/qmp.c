/* SPDX-License-Identifier: Apache-2.0 */
/* A small asynchronous QMP client: connects to QEMU's monitor socket on the loop, negotiates
 * capabilities, sends commands and reports what query-status says. Fire-and-forget commands
 * carry their name as "id"; qmp_execute() commands carry "c<N>" and get their reply (or the
 * connection's end) through a callback. Events go to the event callback when one is set; the
 * agent polls the run state level-triggered instead of tracking edges. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "compute.h"
#include "sov/log.h"

#define QMP_LINE_MAX (64 * 1024)

typedef struct QmpPending {
    uint64_t n;
    QmpReplyCb cb;
    void *ud;
    struct QmpPending *next;
} QmpPending;

struct Qmp {
    uv_pipe_t pipe;
    QmpPending *pending;
    uint64_t next_id;
    QmpEventCb on_event;
    void *event_ud;
    uv_connect_t conn;
    SovBuf in;
    bool ready;  /* qmp_capabilities answered */
    bool closed; /* qmp_close() called or the connection ended: no more callbacks */
    bool handle_closing;
    QmpStatusCb on_status;
    QmpClosedCb on_closed;
    void *ud;
};

typedef struct QmpWrite {
    uv_write_t w;
    char *data;
} QmpWrite;

static void close_cb(uv_handle_t *h)
{
    Qmp *q = h->data;
    sov_buf_release(&q->in);
    free(q);
}

/* Ends every pending command with err (NULL reply), or drops them silently. */
static void fail_pending(Qmp *q, bool notify)
{
    while (q->pending) {
        QmpPending *p = q->pending;
        q->pending = p->next;
        if (notify && p->cb)
            p->cb(q, NULL, "the QMP connection closed", p->ud);
        free(p);
    }
}

static void qmp_end(Qmp *q)
{
    bool notify = !q->closed;
    q->closed = true;
    fail_pending(q, notify);
    if (!q->handle_closing) {
        q->handle_closing = true;
        uv_close((uv_handle_t *)&q->pipe, close_cb);
    }
    if (notify && q->on_closed)
        q->on_closed(q, q->ud);
}

static void write_cb(uv_write_t *w, int status)
{
    QmpWrite *qw = (QmpWrite *)w;
    free(qw->data);
    free(qw);
}

static int send_line(Qmp *q, const char *line)
{
    if (q->handle_closing)
        return -ECONNRESET;
    QmpWrite *qw = calloc(1, sizeof(*qw));
    if (!qw)
        return -ENOMEM;
    qw->data = strdup(line);
    if (!qw->data) {
        free(qw);
        return -ENOMEM;
    }
    uv_buf_t b = uv_buf_init(qw->data, (unsigned)strlen(qw->data));
    int r = uv_write(&qw->w, (uv_stream_t *)&q->pipe, &b, 1, write_cb);
    if (r < 0) {
        free(qw->data);
        free(qw);
    }
    return r;
}

int qmp_command(Qmp *q, const char *execute)
{
    if (!q || q->closed || !q->ready)
        return -ENOTCONN;
    char line[160];
    snprintf(line, sizeof(line), "{\"execute\":\"%s\",\"id\":\"%s\"}\n", execute, execute);
    return send_line(q, line);
}

int qmp_execute(Qmp *q, const char *execute, json_t *args, QmpReplyCb cb, void *ud)
{
    if (!q || q->closed || !q->ready) {
        json_decref(args);
        return -ENOTCONN;
    }
    QmpPending *p = calloc(1, sizeof(*p));
    char id[32];
    if (!p) {
        json_decref(args);
        return -ENOMEM;
    }
    p->n = ++q->next_id;
    p->cb = cb;
    p->ud = ud;
    snprintf(id, sizeof(id), "c%llu", (unsigned long long)p->n);
    json_t *msg = json_pack("{s:s,s:s}", "execute", execute, "id", id);
    if (args)
        json_object_set_new(msg, "arguments", args);
    char *line = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    SovBuf b = SOV_BUF_INIT;
    int r = line ? sov_buf_append(&b, line, strlen(line)) : -ENOMEM;
    if (r == 0)
        r = sov_buf_append(&b, "\n\0", 2);
    free(line);
    if (r == 0)
        r = send_line(q, b.ptr);
    sov_buf_release(&b);
    if (r < 0) {
        free(p);
        return r;
    }
    p->next = q->pending;
    q->pending = p;
    return 0;
}

void qmp_on_event(Qmp *q, QmpEventCb cb, void *ud)
{
    if (!q)
        return;
    q->on_event = cb;
    q->event_ud = ud;
}

bool qmp_ready(const Qmp *q)
{
    return q && q->ready && !q->closed;
}

static void handle_line(Qmp *q, const char *line, size_t len)
{
    json_error_t je;
    json_t *v = json_loadb(line, len, 0, &je);
    if (!json_is_object(v)) {
        json_decref(v);
        return;
    }
    const char *id = json_string_value(json_object_get(v, "id"));
    const char *event = json_string_value(json_object_get(v, "event"));
    if (event) {
        if (q->on_event && !q->closed)
            q->on_event(q, event, json_object_get(v, "data"), q->event_ud);
    } else if (id && id[0] == 'c' && id[1] >= '0' && id[1] <= '9') {
        uint64_t n = strtoull(id + 1, NULL, 10);
        QmpPending **pp = &q->pending;
        while (*pp && (*pp)->n != n)
            pp = &(*pp)->next;
        QmpPending *p = *pp;
        if (p) {
            *pp = p->next;
            json_t *err = json_object_get(v, "error");
            const char *why = err ? json_string_value(json_object_get(err, "desc")) : NULL;
            if (p->cb && !q->closed)
                p->cb(q, err ? NULL : json_object_get(v, "return"),
                      err ? (why ? why : "QEMU refused the command") : NULL, p->ud);
            free(p);
        }
    } else if (json_object_get(v, "QMP")) {
        send_line(q, "{\"execute\":\"qmp_capabilities\",\"id\":\"qmp_capabilities\"}\n");
    } else if (id && strcmp(id, "qmp_capabilities") == 0) {
        q->ready = true;
        qmp_command(q, "query-status");
    } else if (id && strcmp(id, "query-status") == 0) {
        json_t *ret = json_object_get(v, "return");
        if (q->on_status && !q->closed)
            q->on_status(q, json_is_true(json_object_get(ret, "running")), q->ud);
    }
    json_decref(v);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char slab[16 * 1024];
    buf->base = slab;
    buf->len = sizeof(slab);
}

static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    Qmp *q = st->data;
    if (n < 0) {
        qmp_end(q);
        return;
    }
    if (n == 0 || q->closed)
        return;
    if (sov_buf_append(&q->in, buf->base, (size_t)n) < 0 || q->in.len > QMP_LINE_MAX) {
        log_warn("QMP: line too long or out of memory; closing");
        qmp_end(q);
        return;
    }
    for (;;) {
        char *nl = q->in.ptr ? memchr(q->in.ptr, '\n', q->in.len) : NULL;
        if (!nl)
            break;
        size_t len = (size_t)(nl - q->in.ptr);
        handle_line(q, q->in.ptr, len);
        if (q->closed)
            return;
        sov_buf_consume(&q->in, len + 1);
    }
}

static void connect_cb(uv_connect_t *req, int status)
{
    Qmp *q = req->data;
    if (status < 0 || q->closed) {
        qmp_end(q);
        return;
    }
    if (uv_read_start((uv_stream_t *)&q->pipe, alloc_cb, read_cb) < 0)
        qmp_end(q);
}

Qmp *qmp_connect(uv_loop_t *loop, const char *path, QmpStatusCb on_status, QmpClosedCb on_closed,
                 void *ud)
{
    Qmp *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    sov_buf_init(&q->in, QMP_LINE_MAX * 2);
    q->on_status = on_status;
    q->on_closed = on_closed;
    q->ud = ud;
    if (uv_pipe_init(loop, &q->pipe, 0) < 0) {
        free(q);
        return NULL;
    }
    q->pipe.data = q;
    q->conn.data = q;
    uv_pipe_connect(&q->conn, &q->pipe, path, connect_cb);
    return q;
}

void qmp_close(Qmp *q)
{
    if (!q)
        return;
    q->closed = true;
    fail_pending(q, false);
    if (!q->handle_closing) {
        q->handle_closing = true;
        uv_close((uv_handle_t *)&q->pipe, close_cb);
    }
}
