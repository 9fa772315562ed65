/* SPDX-License-Identifier: Apache-2.0 */
/* Asynchronous data I/O of sov-block's hot path: reads and writes that land in one cluster the
 * volume already holds (vol_fast_extent) go to io_uring, submitted once per loop iteration
 * (uv_prepare) and reaped through an eventfd (uv_poll); buffered I/O on cached pages completes
 * at submission, a cache miss no longer stops the loop. Where io_uring is not available the
 * same I/O runs on the libuv thread pool. Anything else (holes, allocation, copy-on-write,
 * encryption) stays on the engine's synchronous path. Ops come from a fixed pool: no allocation
 * per request. */
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include "block.h"
#include "sov/log.h"

#define AIO_OPS 1024

typedef struct AioOp {
    uv_work_t work; /* thread-pool mode */
    BlockAio *a;
    NbdIo *io;
    void *token;
    int fd;
    uint64_t pos;
    int res;
    struct AioOp *next_free;
} AioOp;

struct BlockAio {
    uv_loop_t *loop;
    BlockAioMode mode;
    struct io_uring ring;
    int efd;
    uv_poll_t poll;
    uv_prepare_t prepare;
    unsigned unsubmitted;
    unsigned inflight;
    bool closing;
    BlockAioDone done;
    void *ud;
    AioOp ops[AIO_OPS];
    AioOp *free_ops;
};

static void op_finish(BlockAio *a, AioOp *op, int res)
{
    NbdIo *io = op->io;
    int err = 0;
    vol_fast_done(op->token);
    if (res < 0) {
        err = res;
    } else if ((uint32_t)res != io->length) {
        /* Short transfer (end of a sparse file region or a signal): finish it synchronously. */
        size_t got = (size_t)res;
        while (got < io->length) {
            ssize_t n =
                io->type == NBD_CMD_READ
                    ? pread(op->fd, io->buf + got, io->length - got, (off_t)(op->pos + got))
                    : pwrite(op->fd, io->buf + got, io->length - got, (off_t)(op->pos + got));
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                err = -errno;
                break;
            }
            if (n == 0) {
                if (io->type == NBD_CMD_READ) { /* past the end of the data file: zeros */
                    memset(io->buf + got, 0, io->length - got);
                    break;
                }
                err = -EIO;
                break;
            }
            got += (size_t)n;
        }
    }
    op->next_free = a->free_ops;
    a->free_ops = op;
    a->inflight--;
    a->done(io, err, a->ud);
}

/* ---- io_uring ---- */

static void reap(BlockAio *a)
{
    struct io_uring_cqe *cqe;
    while (io_uring_peek_cqe(&a->ring, &cqe) == 0) {
        AioOp *op = io_uring_cqe_get_data(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&a->ring, cqe);
        op_finish(a, op, res);
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    BlockAio *a = h->data;
    uint64_t n;
    while (read(a->efd, &n, sizeof(n)) == sizeof(n))
        ;
    reap(a);
}

static void on_prepare(uv_prepare_t *h)
{
    BlockAio *a = h->data;
    if (a->unsubmitted) {
        int r = io_uring_submit(&a->ring);
        if (r < 0)
            log_error_errno(r, "io_uring submit");
        else
            a->unsubmitted = 0;
    }
    reap(a); /* completions that arrived at submission */
}

static bool uring_submit(BlockAio *a, AioOp *op)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&a->ring);
    if (!sqe) {
        io_uring_submit(&a->ring);
        a->unsubmitted = 0;
        sqe = io_uring_get_sqe(&a->ring);
        if (!sqe)
            return false;
    }
    if (op->io->type == NBD_CMD_READ)
        io_uring_prep_read(sqe, op->fd, op->io->buf, op->io->length, op->pos);
    else
        io_uring_prep_write(sqe, op->fd, op->io->buf, op->io->length, op->pos);
    io_uring_sqe_set_data(sqe, op);
    a->unsubmitted++;
    return true;
}

/* ---- thread pool ---- */

static void pool_work(uv_work_t *w)
{
    AioOp *op = w->data;
    NbdIo *io = op->io;
    ssize_t n;
    do {
        n = io->type == NBD_CMD_READ ? pread(op->fd, io->buf, io->length, (off_t)op->pos)
                                     : pwrite(op->fd, io->buf, io->length, (off_t)op->pos);
    } while (n < 0 && errno == EINTR);
    op->res = n < 0 ? -errno : (int)n;
}

static void pool_after(uv_work_t *w, int status)
{
    AioOp *op = w->data;
    op_finish(op->a, op, status < 0 ? status : op->res);
}

/* ---- interface ---- */

BlockAio *block_aio_new(uv_loop_t *loop, BlockAioMode mode, BlockAioDone done, void *ud)
{
    BlockAio *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->loop = loop;
    a->done = done;
    a->ud = ud;
    a->efd = -1;
    for (size_t i = 0; i < AIO_OPS; i++) {
        a->ops[i].a = a;
        a->ops[i].work.data = &a->ops[i];
        a->ops[i].next_free = i + 1 < AIO_OPS ? &a->ops[i + 1] : NULL;
    }
    a->free_ops = &a->ops[0];
    if (mode == BLOCK_AIO_URING) {
        int r = io_uring_queue_init(256, &a->ring, 0);
        if (r == 0) {
            a->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
            if (a->efd < 0 || io_uring_register_eventfd(&a->ring, a->efd) < 0) {
                r = -errno;
                if (a->efd >= 0)
                    close(a->efd);
                a->efd = -1;
                io_uring_queue_exit(&a->ring);
            }
        }
        if (r < 0) {
            log_info("io_uring unavailable (%s): data I/O uses the thread pool", strerror(-r));
            mode = BLOCK_AIO_THREADS;
        } else {
            uv_poll_init(loop, &a->poll, a->efd);
            a->poll.data = a;
            uv_poll_start(&a->poll, UV_READABLE, on_poll);
            uv_prepare_init(loop, &a->prepare);
            a->prepare.data = a;
            uv_prepare_start(&a->prepare, on_prepare);
        }
    }
    a->mode = mode;
    return a;
}

BlockAioMode block_aio_mode(const BlockAio *a)
{
    return a->mode;
}

BlockAioResult block_aio_submit(BlockAio *a, Volume *v, NbdIo *io)
{
    if (!a || a->closing || a->mode == BLOCK_AIO_SYNC || !a->free_ops ||
        (io->type != NBD_CMD_READ && io->type != NBD_CMD_WRITE))
        return BLOCK_AIO_NOT_TAKEN;
    AioOp *op = a->free_ops;
    if (vol_fast_extent(v, io->offset, io->length, io->type == NBD_CMD_WRITE, &op->fd, &op->pos,
                        &op->token) < 0)
        return BLOCK_AIO_NOT_TAKEN;
    op->io = io;
    if (io->type == NBD_CMD_READ) {
        /* Cached pages are read at once, with no ring round trip; only a cache miss (EAGAIN
         * under RWF_NOWAIT) goes to io_uring or the thread pool. */
        struct iovec iov = {io->buf, io->length};
        ssize_t n = preadv2(op->fd, &iov, 1, (off_t)op->pos, RWF_NOWAIT);
        if (n == (ssize_t)io->length) {
            vol_fast_done(op->token);
            return BLOCK_AIO_DONE;
        }
    }
    bool ok = a->mode == BLOCK_AIO_URING
                  ? uring_submit(a, op)
                  : uv_queue_work(a->loop, &op->work, pool_work, pool_after) == 0;
    if (!ok) {
        vol_fast_done(op->token);
        return BLOCK_AIO_NOT_TAKEN;
    }
    a->free_ops = op->next_free;
    a->inflight++;
    return BLOCK_AIO_QUEUED;
}

static void closed(uv_handle_t *h)
{
}

void block_aio_close(BlockAio *a)
{
    if (!a)
        return;
    a->closing = true;
    if (a->mode == BLOCK_AIO_URING) {
        /* The NBD server drained every request before this: nothing is in flight. */
        uv_poll_stop(&a->poll);
        uv_close((uv_handle_t *)&a->poll, closed);
        uv_close((uv_handle_t *)&a->prepare, closed);
    }
}

void block_aio_free(BlockAio *a)
{
    if (!a)
        return;
    if (a->mode == BLOCK_AIO_URING) {
        io_uring_queue_exit(&a->ring);
        close(a->efd);
    }
    free(a);
}
