/* SPDX-License-Identifier: Apache-2.0 */
/* A small asynchronous QMP client: connects to QEMU's monitor socket on the loop, negotiates
 * capabilities, sends argument-less commands and reports what query-status says. Replies are
 * matched by the "id" each command carries (its name); events are ignored, since the agent
 * polls the status level-triggered instead of tracking edges. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "compute.h"
#include "sov/log.h"

#define QMP_LINE_MAX (64 * 1024)

struct Qmp {
    uv_pipe_t pipe;
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

static void qmp_end(Qmp *q)
{
    bool notify = !q->closed;
    q->closed = true;
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
    if (json_object_get(v, "QMP")) {
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
    if (!q->handle_closing) {
        q->handle_closing = true;
        uv_close((uv_handle_t *)&q->pipe, close_cb);
    }
}
