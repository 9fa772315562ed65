/* SPDX-License-Identifier: Apache-2.0 */
/* The sov-block volume engine: thin-provisioned volumes made of layers (redirect-on-write).
 * A layer maps the volume's 64 KiB clusters to clusters of its own data file; a read walks
 * from a volume's top layer down its parents, and a cluster no layer has reads as zeros.
 * A snapshot freezes the top layer and puts a new empty one above it (O(1)); a clone is a new
 * volume whose top layer sits on a snapshot's layer, sharing everything not rewritten. Layers
 * nobody needs any more (no volume, snapshot or child layer refers to them) are deleted.
 *
 * Durability: data is written in place (in the top layer's own clusters) or into newly
 * allocated clusters; new mappings are kept in memory and made durable by a flush (data file
 * fdatasync, then the layer's map journal appended and fdatasync'd), so that after kill -9
 * everything flushed (and every FUA write) reads back, and nothing unflushed can corrupt what
 * was flushed. The catalog (volumes, snapshots, layers, wrapped keys) is rewritten atomically.
 *
 * Encryption: a volume created encrypted gets a random AES-256-XTS key (shared by its snapshots
 * and clones, which hold the same data), stored wrapped with the master key (AES-256-GCM);
 * sectors of 512 bytes are encrypted with the volume byte offset / 512 as tweak. Data files
 * never hold plaintext of encrypted volumes.
 *
 * Not thread-safe: one thread (the daemon's loop) calls everything. */
#ifndef SOV_BLOCK_VOLUME_H
#define SOV_BLOCK_VOLUME_H

#include <stdbool.h>
#include <stdint.h>

#include "sov/buf.h"

#define VOL_CLUSTER        (64u * 1024)
#define VOL_SECTOR         512u
#define VOL_NAME_MAX       63 /* [A-Za-z0-9._-], not starting with '.' */
#define VOL_MAX_SIZE       (64ull << 40)
#define VOL_MASTER_KEY_LEN 32

typedef struct VolStore VolStore;
typedef struct Volume Volume;

typedef struct VolInfo {
    char name[VOL_NAME_MAX + 1];
    uint64_t size;
    bool encrypted;
    bool is_snapshot;              /* a read-only snapshot (opened as a read-only export) */
    char origin[VOL_NAME_MAX + 1]; /* snapshot: its volume; clone: its snapshot; else "" */
    uint64_t allocated;            /* bytes of clusters held by its own top layer */
    int64_t created_ms;
} VolInfo;

/* master_key may be NULL: then creating encrypted volumes fails with -ENOKEY. */
int vol_store_open(const char *dir, const uint8_t *master_key, bool fsync, VolStore **ret,
                   SovBuf *err);
void vol_store_close(VolStore *st); /* flushes everything first */

/* Management. Names are unique across volumes and snapshots. Errors: -EEXIST, -ENOENT,
 * -EINVAL (bad name or size: size must be a positive multiple of 512, <= VOL_MAX_SIZE),
 * -EBUSY (delete of a volume that is open), -ENOKEY, -EIO; err gets a message. */
int vol_create(VolStore *st, const char *name, uint64_t size, bool encrypted, SovBuf *err);
int vol_delete(VolStore *st, const char *name, SovBuf *err); /* volume or snapshot */
int vol_snapshot(VolStore *st, const char *volume, const char *snapshot, SovBuf *err);
int vol_clone(VolStore *st, const char *snapshot, const char *volume, SovBuf *err);
/* Grows (never shrinks: -EINVAL) a volume, also while it is open. */
int vol_resize(VolStore *st, const char *name, uint64_t new_size, SovBuf *err);
int vol_info(VolStore *st, const char *name, VolInfo *ret);
/* All volumes and snapshots, sorted by name; caller frees *ret. */
int vol_list(VolStore *st, VolInfo **ret, size_t *ret_n);

/* I/O. A volume or snapshot may be opened many times (refcounted). All offsets and lengths
 * are bytes and need no alignment (unaligned parts of encrypted volumes are read-modify-
 * written). Return 0 or a negative errno (-EINVAL out of range or on a snapshot write, -EIO,
 * -ENOSPC). */
Volume *vol_open(VolStore *st, const char *name, int *ret_err);
void vol_close(Volume *v);
uint64_t vol_size(const Volume *v);
bool vol_read_only(const Volume *v);
int vol_read(Volume *v, void *buf, uint64_t off, uint32_t len);
/* Whether [off, off+len) reads as zeros without reading data (all holes): 1, 0. */
int vol_is_zero(Volume *v, uint64_t off, uint64_t len);
int vol_write(Volume *v, const void *buf, uint64_t off, uint32_t len, bool fua);
int vol_flush(Volume *v);
/* Direct I/O of the hot path for an asynchronous engine (io_uring, thread pool): when
 * [off, off+len) lies in one cluster that needs no copy-on-write, allocation or encryption,
 * returns 0 with the file and offset to pread/pwrite (a write marks the data dirty for the next
 * flush); otherwise -EAGAIN (use vol_read/vol_write). Until vol_fast_done(token) the cluster is
 * not reused for other data, even if it is unmapped and flushed meanwhile. */
int vol_fast_extent(Volume *v, uint64_t off, uint32_t len, bool write, int *ret_fd,
                    uint64_t *ret_pos, void **ret_token);
void vol_fast_done(void *token);
/* The same flush with its fdatasync calls on the libuv thread pool of loop (the calling
 * thread's loop): the loop keeps serving while the disk catches up. done(ud, err) runs on the
 * loop, inline when there is nothing to flush. Writes made after the call are not covered. */
struct uv_loop_s;
int vol_flush_async(Volume *v, struct uv_loop_s *loop, void (*done)(void *ud, int err), void *ud);
/* TRIM: the range may read as zeros afterwards (whole clusters are unmapped, parts zeroed). */
int vol_trim(Volume *v, uint64_t off, uint64_t len, bool fua);
/* WRITE_ZEROES: the range reads as zeros; may_unmap allows holes (NBD without NO_HOLE). */
int vol_write_zeroes(Volume *v, uint64_t off, uint64_t len, bool may_unmap, bool fua);
/* base:allocation: calls emit for consecutive extents from off covering up to len (stops when
 * emit returns non-zero); flags are 1 hole, 2 zero (NBD_STATE_*). */
int vol_block_status(Volume *v, uint64_t off, uint64_t len,
                     int (*emit)(void *ctx, uint64_t length, uint32_t flags), void *ctx);

#endif
