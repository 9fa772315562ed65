/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for sov-block's NBD protocol state machine (src/block/nbd_proto.c): each
 * input is a client byte stream fed to an NbdProto over a memory backend, so the handshake,
 * option haggling and the transmission phase (every command, payload skipping, structured
 * replies, block status, the in-flight limit) all run on fuzzer bytes. The backend completes
 * requests inline or later in a scrambled order, fails some, reports zero reads and hands back
 * odd extent lists; the server must never crash, leak, or leave an export open.
 *
 * Input layout: the first byte is control: bit 0 defers completions; bits 1-3 choose the size
 * of the pieces the rest is fed in (1 byte up to all at once); bit 4 frees the connection with
 * requests still in flight. The remaining bytes are the client's stream; seeds start with a
 * full handshake so that the transmission phase is reached. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbd-int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DISK_SIZE (64u * 1024)
#define RO_SIZE   4096u
#define QUEUE_MAX (NBD_MAX_IN_FLIGHT + 8)
#define INPUT_MAX (1024 * 1024)

static uint8_t disk[DISK_SIZE];
static uint8_t ro[RO_SIZE];
static bool deferred;
static NbdIo *queue[QUEUE_MAX];
static unsigned nqueue;
static long opens;

static int f_open(void *ud, const char *name, const NbdClientInfo *c, void **h, NbdExportInfo *info)
{
    if (strcmp(name, "deny") == 0)
        return -EACCES;
    if (strcmp(name, "ro") == 0) {
        *h = ro;
        info->size = RO_SIZE;
        info->read_only = true;
        info->can_cache = true;
    } else if (name[0] == '\0' || strcmp(name, "disk") == 0 || strcmp(name, "blk") == 0) {
        *h = disk;
        info->size = DISK_SIZE;
        info->can_trim = info->can_zero = info->can_fast_zero = info->can_multi_conn = true;
        if (name[0] == 'b')
            info->min_block = 512;
        snprintf(info->description, sizeof(info->description), "fuzz disk");
    } else {
        return -ENOENT;
    }
    opens++;
    return 0;
}

static void f_close(void *ud, void *h)
{
    opens--;
}

static int f_list(void *ud, const NbdClientInfo *c,
                  void (*emit)(void *ctx, const char *name, const char *desc), void *ctx)
{
    emit(ctx, "disk", "fuzz disk");
    emit(ctx, "ro", NULL);
    emit(ctx, "blk", "");
    return 0;
}

static uint64_t f_size(void *ud, void *h)
{
    return h == ro ? RO_SIZE : DISK_SIZE;
}

static int f_do(NbdIo *io)
{
    uint8_t *d = io->export_handle;
    uint64_t size = d == ro ? RO_SIZE : DISK_SIZE;
    bool zero = true;

    if (io->offset > size || io->length > size - io->offset)
        abort(); /* the server must have refused this */
    if (io->offset % 13 == 7)
        return -EIO;
    switch (io->type) {
    case NBD_CMD_READ:
        for (uint32_t i = 0; i < io->length && zero; i++)
            zero = d[io->offset + i] == 0;
        if (zero && io->offset % 3 == 0)
            io->zero_read = true;
        else
            memcpy(io->buf, d + io->offset, io->length);
        return 0;
    case NBD_CMD_WRITE:
        if (d == ro)
            abort();
        memcpy(d + io->offset, io->buf, io->length);
        return 0;
    case NBD_CMD_TRIM:
    case NBD_CMD_WRITE_ZEROES:
        if (d == ro)
            abort();
        if (io->flags & NBD_CMD_FLAG_FAST_ZERO && io->offset % 2)
            return -ENOTSUP;
        memset(d + io->offset, 0, io->length);
        return 0;
    case NBD_CMD_BLOCK_STATUS:
        /* Deliberately untidy: zero-length extents, extents past the request, or none. */
        io->nextents = (uint32_t)(io->offset % 5);
        for (uint32_t i = 0; i < io->nextents; i++)
            io->extents[i] = (NbdExtent){(uint32_t)((io->length / 2) * i), 0xffu};
        if (io->offset % 11 == 1)
            io->nextents = NBD_MAX_EXTENTS + 3; /* the server must not read past capacity */
        if (io->offset % 11 == 1)
            for (uint32_t i = 0; i < NBD_MAX_EXTENTS; i++)
                io->extents[i] = (NbdExtent){1, i & 3};
        return 0;
    case NBD_CMD_FLUSH:
    case NBD_CMD_CACHE:
        return 0;
    default:
        abort(); /* unknown commands and DISC never reach the backend */
    }
}

static void f_submit(void *ud, NbdIo *io)
{
    if (deferred && nqueue < QUEUE_MAX) {
        queue[nqueue++] = io;
        return;
    }
    if (deferred)
        abort(); /* more in flight than NBD_MAX_IN_FLIGHT */
    nbd_io_complete(io, f_do(io));
}

/* Completes every other queued request, newest first (scrambled order). */
static void complete_some(void)
{
    NbdIo *now[QUEUE_MAX];
    unsigned n = 0, keep = 0;

    for (unsigned i = 0; i < nqueue; i++) {
        if (i % 2 == 0)
            now[n++] = queue[i];
        else
            queue[keep++] = queue[i];
    }
    nqueue = keep;
    while (n > 0) {
        NbdIo *io = now[--n];
        nbd_io_complete(io, f_do(io));
    }
}

static void complete_all(void)
{
    while (nqueue > 0) {
        NbdIo *io = queue[--nqueue];
        nbd_io_complete(io, f_do(io));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t pieces[8] = {1, 2, 3, 7, 16, 28, 100, SIZE_MAX};
    NbdServerConfig cfg = {.backend = {f_open, f_close, f_list, f_submit, f_size, NULL}};
    NbdClientInfo ci = {.peer = "fuzz"};
    SovBuf out = SOV_BUF_INIT;
    NbdProto *p;
    size_t piece, pos = 0;
    bool free_early;
    uint8_t ctl;

    if (size < 1 || size > INPUT_MAX)
        return 0;
    ctl = data[0];
    data++;
    size--;
    deferred = ctl & 1;
    piece = pieces[(ctl >> 1) & 7];
    free_early = ctl & 16;
    memset(disk, 0, sizeof(disk));
    memset(disk + 4096, 0xab, 4096);
    memset(ro, 0x5a, sizeof(ro));
    nqueue = 0;

    p = nbd_proto_new(&cfg, &ci);
    if (!p)
        abort();
    while (pos < size) {
        size_t n = SOV_MIN(piece, size - pos);
        int r = nbd_proto_feed(p, data + pos, n, &out);
        pos += n;
        if (deferred)
            complete_some();
        sov_buf_reset(&out);
        if (r < 0)
            break;
    }
    if (!free_early) {
        complete_all();
        nbd_proto_feed(p, NULL, 0, &out);
    }
    nbd_proto_free(p);
    complete_all(); /* after the free: the last completion frees the connection */
    if (opens != 0) {
        fprintf(stderr, "fuzz_nbd: %ld exports left open\n", opens);
        abort();
    }
    sov_buf_release(&out);
    return 0;
}
