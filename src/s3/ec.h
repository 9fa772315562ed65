/* SPDX-License-Identifier: Apache-2.0 */
/* Erasure coding of object data into shards across drives: Reed-Solomon over GF(2^8) (ISA-L,
 * Cauchy matrix, so any k of the k+m shards rebuild the data) with a CRC-32C per shard block.
 * A pure module (no loop, no store): every call blocks on file I/O, so the daemon runs it on
 * its thread pool. File I/O goes through an ops table so tests can inject faults. A writer or
 * a reader is used by one thread at a time; separate ones are independent.
 *
 * Stripes. An object is cut into stripes of k*B data bytes (B = the geometry's block, the
 * per-shard block size). Stripe s puts data bytes [s*k*B + i*B, s*k*B + (i+1)*B) in data shard i
 * (i < k) and m parity blocks in shards k..k+m-1. The last stripe, when shorter than k*B (rem
 * bytes), uses a shorter block L = ceil(rem / k) in every shard, with the data zero-padded to
 * k*L: a small object costs about (k+m)/k of its size on disk, not k+m blocks.
 *
 * Shard file (one per shard, on its own drive): EC_HDR_SIZE bytes of header, then for each
 * stripe the shard's block followed by its CRC-32C (4 bytes, little-endian), so block s starts
 * at EC_HDR_SIZE + s * (B + 4). All integers little-endian. Header:
 *     0  magic "SOVSHARD"        8  u16 version (1)     10 u8 k   11 u8 m   12 u8 shard index
 *     13 u8 0                    14 u16 0               16 u32 B  20 u32 0
 *     24 u64 object size         32 char id[32] (the file id, NUL-padded)
 *     64 u32 CRC-32C of bytes 0..63                     68..127 zero
 *
 * Placement. Drive list order is part of the format: shard i of object id lives on drive
 * (h(id) + i) % ndrives (h: FNV-1a of the id), so parity spreads over all drives and more drives
 * than k+m share the load. A drive must keep its position in the list for the life of its data.
 * Paths on a drive: <drive>/ec/<id[0..1]>/<id> once committed, <drive>/tmp/<id>.<shard> while
 * written, <drive>/tmp/<id>.<shard>.heal while healed. Missing tmp/ and ec/xx/ directories are
 * created; a drive's root directory is not (a missing root is a missing drive).
 *
 * Damage. A shard that is missing, short, unreadable (any I/O error), has a bad header (magic,
 * version, geometry, index, id, size, header CRC) or a block that fails its CRC is damaged;
 * reads rebuild around it from any k good blocks of each stripe they touch and report it (a
 * bitmask of shard indices), ec_heal rewrites it. Write quorum: a write succeeds when at least
 * k+1 shards (k when m == 0) were written and committed; below that it fails with -EIO and
 * removes every file it made. */
#ifndef SOV_S3_EC_H
#define SOV_S3_EC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define EC_MAX_SHARDS     32 /* k + m; damage masks are uint32_t, bit i = shard i */
#define EC_MAX_PARITY     16
#define EC_BLOCK_DEFAULT  (256 * 1024) /* B: equals S3_BLOCK; see ec_geom_default */
#define EC_BLOCK_MIN      4096
#define EC_BLOCK_MAX      (4 * 1024 * 1024)
#define EC_HDR_SIZE       128
#define EC_FORMAT_VERSION 1
#define EC_ID_MAX         32         /* ids: 2..32 characters of [0-9a-zA-Z] */
#define EC_SIZE_UNKNOWN   UINT64_MAX /* reader: take the object size from the shard headers */

/* Stripe geometry. Invariants (ec_geom_check): 1 <= k, 0 <= m <= EC_MAX_PARITY,
 * k + m <= EC_MAX_SHARDS, EC_BLOCK_MIN <= block <= EC_BLOCK_MAX, block a multiple of 64. */
typedef struct EcGeom {
    unsigned k;     /* data shards */
    unsigned m;     /* parity shards: any m of the k+m may be lost */
    uint32_t block; /* B, bytes of one shard block */
} EcGeom;

/* The default geometry for n drives, B = EC_BLOCK_DEFAULT:
 *     drives  1    2    3    4    5    6    7    8    9    10   11   12   13   14    15    16+
 *     k+m     1+0  1+1  2+1  2+2  3+2  4+2  4+3  5+3  6+3  7+3  8+3  8+4  9+4  10+4  11+4  12+4
 * With more than 16 drives each object uses 16 of them (see placement). -EINVAL for n == 0. */
int ec_geom_default(unsigned ndrives, EcGeom *ret);
int ec_geom_check(const EcGeom *g);
/* Shards an object needs for a write to succeed: k + 1, or k when m == 0. */
unsigned ec_write_quorum(const EcGeom *g);
/* Bytes of one shard file for an object of size bytes (header included). */
uint64_t ec_shard_file_size(const EcGeom *g, uint64_t size);

/* File operations; each returns >= 0 or -errno (never sets errno for the caller). preadv
 * returns the bytes read (fewer at end of file), pwritev the bytes written. mkdir returns
 * -EEXIST when the directory exists. ud is EcSet.ops_ud. */
typedef struct EcOps {
    int (*open)(void *ud, const char *path, int flags, mode_t mode);
    int (*close)(void *ud, int fd);
    ssize_t (*preadv)(void *ud, int fd, const struct iovec *iov, int iovcnt, off_t off);
    ssize_t (*pwritev)(void *ud, int fd, const struct iovec *iov, int iovcnt, off_t off);
    int (*fsync)(void *ud, int fd); /* data of a file (fdatasync) */
    int (*fsync_dir)(void *ud, const char *path);
    int (*rename)(void *ud, const char *from, const char *to);
    int (*unlink)(void *ud, const char *path);
    int (*mkdir)(void *ud, const char *path, mode_t mode);
} EcOps;

extern const EcOps ec_ops_posix; /* the real system calls, EINTR retried */

/* The drives of a set and how to reach them. The strings and the ops must outlive every writer
 * and reader made from the set (they are not copied). */
typedef struct EcSet {
    const char *const *drives; /* directories, one per drive */
    unsigned ndrives;          /* >= k + m of every geometry used with the set */
    const EcOps *ops;          /* NULL: ec_ops_posix */
    void *ops_ud;
    bool fsync; /* fsync shard files and directories on commit and heal */
} EcSet;

/* The drive (index into set->drives) that holds a shard of an object. */
unsigned ec_shard_drive(const EcSet *set, const char *id, unsigned shard);
/* The committed path of a shard of an object on its drive; -ENAMETOOLONG if cap is too small. */
int ec_shard_path(const EcSet *set, const char *id, unsigned shard, char *out, size_t cap);

/* ---- writing: streaming, memory bounded by (k + m) * B ----
 * open -> write ... -> finish -> commit (blocking: fsync, rename, dir fsync), or abort at any
 * point. write/finish/commit return 0, or -EIO once fewer than the write quorum of shards are
 * still good (every file made is then removed already), or -EINVAL when called out of order.
 * Shards that failed on a write that still succeeded are reported by ec_writer_damaged: the
 * caller should heal the object. commit syncs the drives in parallel (one short-lived thread
 * per shard when EcSet.fsync is set), so it waits for the slowest drive, not for their sum. */
typedef struct EcWriter EcWriter;
int ec_writer_open(const EcSet *set, const EcGeom *g, const char *id, EcWriter **ret);
int ec_writer_write(EcWriter *w, const void *p, size_t n);
int ec_writer_finish(EcWriter *w); /* writes the last stripe and the headers */
int ec_writer_commit(EcWriter *w);
uint64_t ec_writer_size(const EcWriter *w);
uint32_t ec_writer_damaged(const EcWriter *w);
void ec_writer_abort(EcWriter *w); /* removes the temporary files; no effect once committed */
/* Closes and frees; removes the temporary files of a writer that was not committed. */
EcWriter *ec_writer_free(EcWriter *w);

/* ---- reading: ranges decode only the stripes they touch ----
 * size is the object's size from the metadata (checked against the headers), or
 * EC_SIZE_UNKNOWN to take it from the first good header. Shard files open lazily and stay open
 * for the reader's life, so a GET keeps one reader per object. ec_reader_read returns 0 with
 * all len bytes in out, -EINVAL for a range past the end, or -EIO when some stripe of the range
 * has fewer than k good blocks. ec_reader_damaged: the shards found damaged so far (only the
 * shards a read touched are checked: data shards while they are good; ec_verify checks all). */
typedef struct EcReader EcReader;
int ec_reader_open(const EcSet *set, const EcGeom *g, const char *id, uint64_t size,
                   EcReader **ret);
int ec_reader_read(EcReader *r, uint64_t off, size_t len, void *out);
/* Opens every shard now (a later unlink cannot take them from the reader): the good ones. */
unsigned ec_reader_pin(EcReader *r);
uint64_t ec_reader_size(const EcReader *r);
uint32_t ec_reader_damaged(const EcReader *r);
EcReader *ec_reader_free(EcReader *r);
/* One-shot: open, read, free. ret_damaged (may be NULL) is written on success. */
int ec_read(const EcSet *set, const EcGeom *g, const char *id, uint64_t size, uint64_t off,
            size_t len, void *out, uint32_t *ret_damaged);

/* ---- scrubbing and repair ----
 * ec_verify reads every block of every shard and checks headers and CRCs: returns the number
 * of damaged shards (0: healthy) with their mask in ret_damaged, or -EIO when some stripe has
 * fewer than k good blocks (the data is lost; ret_damaged is written then too).
 * ec_heal verifies, then rewrites every damaged shard in full from the good blocks (temporary
 * file, fsync, rename over the old one, dir fsync): returns 0 with the shards found damaged and
 * the shards rewritten (equal unless a drive failed again while healing: then -EIO after
 * rewriting what it could, both masks written), or -EIO with no mask written when some stripe
 * has fewer than k good blocks. A healed shard file is byte-identical to the one the writer
 * made. Heal an object while nothing writes it (readers may go on: files are replaced by
 * rename). size as for readers. */
int ec_verify(const EcSet *set, const EcGeom *g, const char *id, uint64_t size,
              uint32_t *ret_damaged);
int ec_heal(const EcSet *set, const EcGeom *g, const char *id, uint64_t size, uint32_t *ret_damaged,
            uint32_t *ret_healed);
/* Removes every shard file of an object (ENOENT ignored); 0 or the first error. */
int ec_remove(const EcSet *set, const EcGeom *g, const char *id);

#endif
