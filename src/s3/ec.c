/* SPDX-License-Identifier: Apache-2.0 */
/* Erasure coding of object data into shards across drives (ISA-L Reed-Solomon, CRC-32C): the
 * streaming writer, the range reader that rebuilds around damaged shards, the scrubber and the
 * healer. The format and the rules are described in ec.h. */
#include "ec.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <isa-l/crc.h>
#include <isa-l/erasure_code.h>

#include "sov/bytes.h"
#include "sov/macro.h"

static const char ec_magic[8] = {'S', 'O', 'V', 'S', 'H', 'A', 'R', 'D'};

/* ---- default file operations ---- */

static int px_open(void *ud, const char *path, int flags, mode_t mode)
{
    int fd;
    do
        fd = open(path, flags | O_CLOEXEC, mode);
    while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : fd;
}

static int px_close(void *ud, int fd)
{
    /* Linux closes the descriptor even when close() reports EINTR: never retry. */
    return close(fd) < 0 && errno != EINTR ? -errno : 0;
}

static ssize_t px_preadv(void *ud, int fd, const struct iovec *iov, int iovcnt, off_t off)
{
    ssize_t n;
    do
        n = preadv(fd, iov, iovcnt, off);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

static ssize_t px_pwritev(void *ud, int fd, const struct iovec *iov, int iovcnt, off_t off)
{
    ssize_t n;
    do
        n = pwritev(fd, iov, iovcnt, off);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

static int px_fsync(void *ud, int fd)
{
    int r;
    do
        r = fdatasync(fd);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

static int px_fsync_dir(void *ud, const char *path)
{
    int fd = px_open(ud, path, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0)
        return fd;
    int r = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return r;
}

static int px_rename(void *ud, const char *from, const char *to)
{
    return rename(from, to) < 0 ? -errno : 0;
}

static int px_unlink(void *ud, const char *path)
{
    return unlink(path) < 0 ? -errno : 0;
}

static int px_mkdir(void *ud, const char *path, mode_t mode)
{
    return mkdir(path, mode) < 0 ? -errno : 0;
}

const EcOps ec_ops_posix = {
    .open = px_open,
    .close = px_close,
    .preadv = px_preadv,
    .pwritev = px_pwritev,
    .fsync = px_fsync,
    .fsync_dir = px_fsync_dir,
    .rename = px_rename,
    .unlink = px_unlink,
    .mkdir = px_mkdir,
};

static const EcOps *set_ops(const EcSet *set)
{
    return set->ops ? set->ops : &ec_ops_posix;
}

/* Reads or writes all of iov (at most 4 pieces) at off; a short read (end of file) is -EIO. */
static int io_full(const EcSet *set, int fd, const struct iovec *iov, int iovcnt, off_t off,
                   bool write)
{
    const EcOps *ops = set_ops(set);
    struct iovec v[4];
    int first = 0;

    assert(iovcnt <= 4);
    memcpy(v, iov, sizeof(*iov) * (size_t)iovcnt);
    while (first < iovcnt) {
        ssize_t n = write ? ops->pwritev(set->ops_ud, fd, v + first, iovcnt - first, off)
                          : ops->preadv(set->ops_ud, fd, v + first, iovcnt - first, off);
        if (n < 0)
            return (int)n;
        if (n == 0)
            return -EIO;
        off += n;
        while (n > 0 && first < iovcnt) {
            size_t c = SOV_MIN((size_t)n, v[first].iov_len);
            v[first].iov_base = (uint8_t *)v[first].iov_base + c;
            v[first].iov_len -= c;
            n -= (ssize_t)c;
            if (v[first].iov_len == 0)
                first++;
        }
    }
    return 0;
}

/* ---- geometry ---- */

int ec_geom_check(const EcGeom *g)
{
    if (!g || g->k < 1 || g->m > EC_MAX_PARITY || g->k + g->m > EC_MAX_SHARDS ||
        g->block < EC_BLOCK_MIN || g->block > EC_BLOCK_MAX || g->block % 64)
        return -EINVAL;
    return 0;
}

int ec_geom_default(unsigned ndrives, EcGeom *ret)
{
    /* Index: drive count (16 and more use the last entry). */
    static const uint8_t km[17][2] = {
        {0, 0}, {1, 0}, {1, 1}, {2, 1}, {2, 2}, {3, 2},  {4, 2},  {4, 3},  {5, 3},
        {6, 3}, {7, 3}, {8, 3}, {8, 4}, {9, 4}, {10, 4}, {11, 4}, {12, 4},
    };
    if (ndrives == 0)
        return -EINVAL;
    unsigned i = SOV_MIN(ndrives, 16u);
    *ret = (EcGeom){.k = km[i][0], .m = km[i][1], .block = EC_BLOCK_DEFAULT};
    return 0;
}

unsigned ec_write_quorum(const EcGeom *g)
{
    return g->m ? g->k + 1 : g->k;
}

/* The stripes of an object: nfull of k*B data bytes, then one of rem bytes when rem > 0. */
typedef struct Stripes {
    uint64_t n;     /* stripes in all */
    uint64_t nfull; /* full ones */
    uint64_t rem;   /* data bytes of the last, short stripe (0: none) */
    uint32_t lastb; /* its block size, ceil(rem / k) */
} Stripes;

static Stripes stripes_of(const EcGeom *g, uint64_t size)
{
    uint64_t sb = (uint64_t)g->k * g->block;
    Stripes s = {.nfull = size / sb, .rem = size % sb};
    s.n = s.nfull + (s.rem ? 1 : 0);
    s.lastb = (uint32_t)((s.rem + g->k - 1) / g->k);
    return s;
}

static uint32_t stripe_block(const EcGeom *g, const Stripes *s, uint64_t i)
{
    return i < s->nfull ? g->block : s->lastb;
}

static off_t block_off(const EcGeom *g, uint64_t i)
{
    return (off_t)(EC_HDR_SIZE + i * ((uint64_t)g->block + 4));
}

uint64_t ec_shard_file_size(const EcGeom *g, uint64_t size)
{
    Stripes s = stripes_of(g, size);
    return (uint64_t)block_off(g, s.nfull) + (s.rem ? s.lastb + 4u : 0u);
}

static unsigned popcount32(uint32_t x)
{
    return (unsigned)__builtin_popcount(x);
}

static uint32_t all_shards(const EcGeom *g)
{
    unsigned n = g->k + g->m;
    return n >= 32 ? UINT32_MAX : (1u << n) - 1;
}

/* CRC-32C as sov_crc32c(0, p, n) computes it: ISA-L's iSCSI CRC without the conventional
 * pre- and post-inversion, so both are applied here. */
static uint32_t ec_crc(const void *p, size_t n)
{
    return ~crc32_iscsi((unsigned char *)p, (int)n, 0xFFFFFFFFu);
}

static void hdr_encode(const EcGeom *g, unsigned shard, uint64_t size, const char *id,
                       uint8_t out[EC_HDR_SIZE])
{
    memset(out, 0, EC_HDR_SIZE);
    memcpy(out, ec_magic, sizeof(ec_magic));
    sov_put_le16(out + 8, EC_FORMAT_VERSION);
    out[10] = (uint8_t)g->k;
    out[11] = (uint8_t)g->m;
    out[12] = (uint8_t)shard;
    sov_put_le32(out + 16, g->block);
    sov_put_le64(out + 24, size);
    memcpy(out + 32, id, strlen(id));
    sov_put_le32(out + 64, ec_crc(out, 64));
}

/* Checks a header against what the shard must be; *size is the expected object size, or
 * EC_SIZE_UNKNOWN to accept any (then set from the header). */
static int hdr_check(const uint8_t *p, const EcGeom *g, unsigned shard, const char *id,
                     uint64_t *size)
{
    char hid[EC_ID_MAX + 1];

    if (memcmp(p, ec_magic, sizeof(ec_magic)) != 0 || sov_get_le32(p + 64) != ec_crc(p, 64))
        return -EBADMSG;
    memcpy(hid, p + 32, EC_ID_MAX);
    hid[EC_ID_MAX] = 0;
    if ((p[8] | p[9] << 8) != EC_FORMAT_VERSION || p[10] != g->k || p[11] != g->m ||
        p[12] != shard || sov_get_le32(p + 16) != g->block || strcmp(hid, id) != 0)
        return -EBADMSG;
    uint64_t hs = sov_get_le64(p + 24);
    if (*size != EC_SIZE_UNKNOWN && hs != *size)
        return -EBADMSG;
    *size = hs;
    return 0;
}

/* ---- placement and paths ---- */

static bool id_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n < 2 || n > EC_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'z') ||
              (id[i] >= 'A' && id[i] <= 'Z')))
            return false;
    return true;
}

static int set_check(const EcSet *set, const EcGeom *g, const char *id)
{
    if (!set || !set->drives || ec_geom_check(g) < 0 || set->ndrives < g->k + g->m || !id_valid(id))
        return -EINVAL;
    return 0;
}

unsigned ec_shard_drive(const EcSet *set, const char *id, unsigned shard)
{
    uint32_t h = 2166136261u;
    for (const char *c = id; *c; c++)
        h = (h ^ (uint8_t)*c) * 16777619u;
    return (unsigned)((h % set->ndrives + shard) % set->ndrives);
}

static int fmt_path(char *out, size_t cap, const char *fmt, ...) _printf_(3, 4);
static int fmt_path(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int ec_shard_path(const EcSet *set, const char *id, unsigned shard, char *out, size_t cap)
{
    return fmt_path(out, cap, "%s/ec/%.2s/%s", set->drives[ec_shard_drive(set, id, shard)], id, id);
}

static int mkdir_ok(const EcSet *set, const char *path)
{
    int r = set_ops(set)->mkdir(set->ops_ud, path, 0750);
    return r == -EEXIST ? 0 : r;
}

/* Makes <drive>/tmp, or <drive>/ec and <drive>/ec/xx when id is set. */
static int make_dirs(const EcSet *set, unsigned drive, const char *id)
{
    char p[PATH_MAX];
    const char *d = set->drives[drive];
    int r;
    if (!id)
        return fmt_path(p, sizeof(p), "%s/tmp", d) < 0 ? -ENAMETOOLONG : mkdir_ok(set, p);
    if ((r = fmt_path(p, sizeof(p), "%s/ec", d)) < 0 || (r = mkdir_ok(set, p)) < 0 ||
        (r = fmt_path(p, sizeof(p), "%s/ec/%.2s", d, id)) < 0)
        return r;
    return mkdir_ok(set, p);
}

static int tmp_path(const EcSet *set, const char *id, unsigned shard, bool heal, char *out,
                    size_t cap)
{
    return fmt_path(out, cap, "%s/tmp/%s.%u%s", set->drives[ec_shard_drive(set, id, shard)], id,
                    shard, heal ? ".heal" : "");
}

/* Moves a finished temporary shard file into place: mkdir ec/xx, rename, dir fsync. */
static int shard_install(const EcSet *set, const char *id, unsigned shard, bool heal)
{
    char tmp[PATH_MAX], dst[PATH_MAX], dir[PATH_MAX];
    unsigned drive = ec_shard_drive(set, id, shard);
    int r;

    if ((r = tmp_path(set, id, shard, heal, tmp, sizeof(tmp))) < 0 ||
        (r = ec_shard_path(set, id, shard, dst, sizeof(dst))) < 0 ||
        (r = fmt_path(dir, sizeof(dir), "%s/ec/%.2s", set->drives[drive], id)) < 0 ||
        (r = make_dirs(set, drive, id)) < 0 ||
        (r = set_ops(set)->rename(set->ops_ud, tmp, dst)) < 0)
        return r;
    if (set->fsync && (r = set_ops(set)->fsync_dir(set->ops_ud, dir)) < 0)
        return r;
    return 0;
}

static void *alloc_aligned(size_t n)
{
    void *p = NULL;
    return posix_memalign(&p, 64, n ? n : 64) == 0 ? p : NULL;
}

/* ---- coding ---- */

/* The encoding matrix of a geometry and the tables of the last decoding (a read of a damaged
 * object decodes every stripe with the same sources and targets). */
typedef struct EcCodec {
    unsigned k, m;
    uint8_t a[EC_MAX_SHARDS * EC_MAX_SHARDS]; /* (k+m) x k, identity on top, then Cauchy rows */
    uint8_t enc[32 * EC_MAX_SHARDS * EC_MAX_PARITY];
    uint32_t dec_src, dec_tgt; /* masks the cached decoding tables are for; 0: none */
    uint8_t dec[32 * EC_MAX_SHARDS * EC_MAX_SHARDS];
} EcCodec;

static void codec_init(EcCodec *c, const EcGeom *g)
{
    c->k = g->k;
    c->m = g->m;
    gf_gen_cauchy1_matrix(c->a, (int)(g->k + g->m), (int)g->k);
    if (g->m)
        ec_init_tables((int)g->k, (int)g->m, c->a + g->k * g->k, c->enc);
    c->dec_src = c->dec_tgt = 0;
}

static void codec_encode(EcCodec *c, uint32_t len, uint8_t **shards)
{
    if (c->m)
        ec_encode_data((int)len, (int)c->k, (int)c->m, c->enc, shards, shards + c->k);
}

/* Computes the blocks of the shards in tgt (ascending, into outs[]) from the k blocks of the
 * shards in src (a mask of exactly k bits; srcs[] in ascending shard order). */
static int codec_decode(EcCodec *c, uint32_t src, uint32_t tgt, uint32_t len, uint8_t **srcs,
                        uint8_t **outs)
{
    unsigned k = c->k, nt = popcount32(tgt);
    if (nt == 0)
        return 0;
    if (c->dec_src != src || c->dec_tgt != tgt) {
        uint8_t b[EC_MAX_SHARDS * EC_MAX_SHARDS], inv[EC_MAX_SHARDS * EC_MAX_SHARDS];
        uint8_t d[EC_MAX_SHARDS * EC_MAX_SHARDS];
        unsigned row = 0, t = 0;
        for (unsigned i = 0; i < k + c->m; i++)
            if (src & (1u << i))
                memcpy(b + k * row++, c->a + k * i, k);
        if (gf_invert_matrix(b, inv, (int)k) != 0)
            return -EIO;
        /* Data shard t is row t of the inverse; parity shard t is its encoding row times the
         * inverse. */
        for (unsigned i = 0; i < k + c->m; i++) {
            if (!(tgt & (1u << i)))
                continue;
            uint8_t *dr = d + k * t++;
            if (i < k) {
                memcpy(dr, inv + k * i, k);
                continue;
            }
            for (unsigned j = 0; j < k; j++) {
                uint8_t s = 0;
                for (unsigned l = 0; l < k; l++)
                    s ^= gf_mul(c->a[k * i + l], inv[k * l + j]);
                dr[j] = s;
            }
        }
        ec_init_tables((int)k, (int)nt, d, c->dec);
        c->dec_src = src;
        c->dec_tgt = tgt;
    }
    ec_encode_data((int)len, (int)k, (int)nt, c->dec, srcs, outs);
    return 0;
}

/* ---- writer ---- */

enum { W_OPEN, W_FINISHED, W_COMMITTED, W_FAILED, W_ABORTED };

struct EcWriter {
    EcSet set;
    EcGeom g;
    char id[EC_ID_MAX + 1];
    int state;
    int fd[EC_MAX_SHARDS];
    uint32_t dead;      /* shards given up (their temporary file removed) */
    uint32_t installed; /* shards renamed into place by commit */
    uint8_t *stripe;    /* k * B bytes being filled */
    size_t fill;
    uint8_t *parity; /* m * B */
    uint64_t size, nstripes;
    EcCodec codec;
};

static void writer_drop_shard(EcWriter *w, unsigned i)
{
    char p[PATH_MAX];
    const EcOps *ops = set_ops(&w->set);

    if (w->fd[i] >= 0)
        ops->close(w->set.ops_ud, w->fd[i]);
    w->fd[i] = -1;
    if (!(w->dead & (1u << i)) && tmp_path(&w->set, w->id, i, false, p, sizeof(p)) == 0)
        ops->unlink(w->set.ops_ud, p);
    w->dead |= 1u << i;
}

/* Removes everything the writer made (temporary and installed files). */
static void writer_remove_all(EcWriter *w)
{
    char p[PATH_MAX];
    for (unsigned i = 0; i < w->g.k + w->g.m; i++) {
        if ((w->installed & (1u << i)) && ec_shard_path(&w->set, w->id, i, p, sizeof(p)) == 0)
            set_ops(&w->set)->unlink(w->set.ops_ud, p);
        else
            writer_drop_shard(w, i);
    }
    w->installed = 0;
}

/* Gives up shard i after an error; -EIO when the write quorum is lost (all removed then). */
static int writer_fail_shard(EcWriter *w, unsigned i)
{
    writer_drop_shard(w, i);
    if (w->g.k + w->g.m - popcount32(w->dead) >= ec_write_quorum(&w->g))
        return 0;
    writer_remove_all(w);
    w->state = W_FAILED;
    return -EIO;
}

int ec_writer_open(const EcSet *set, const EcGeom *g, const char *id, EcWriter **ret)
{
    char p[PATH_MAX];
    EcWriter *w;
    int r;

    if ((r = set_check(set, g, id)) < 0)
        return r;
    if (!(w = calloc(1, sizeof(*w))))
        return -ENOMEM;
    w->set = *set;
    w->g = *g;
    snprintf(w->id, sizeof(w->id), "%s", id);
    for (unsigned i = 0; i < EC_MAX_SHARDS; i++)
        w->fd[i] = -1;
    w->stripe = alloc_aligned((size_t)g->k * g->block);
    w->parity = alloc_aligned((size_t)g->m * g->block);
    if (!w->stripe || !w->parity) {
        ec_writer_free(w);
        return -ENOMEM;
    }
    codec_init(&w->codec, g);
    for (unsigned i = 0; i < g->k + g->m; i++) {
        unsigned d = ec_shard_drive(set, id, i);
        if ((r = make_dirs(set, d, NULL)) == 0 &&
            (r = tmp_path(set, id, i, false, p, sizeof(p))) == 0)
            r = set_ops(set)->open(set->ops_ud, p, O_WRONLY | O_CREAT | O_TRUNC, 0640);
        if (r >= 0) {
            w->fd[i] = r;
            continue;
        }
        w->dead |= 1u << i; /* nothing to remove */
        if (writer_fail_shard(w, i) < 0) {
            ec_writer_free(w);
            return -EIO;
        }
    }
    *ret = w;
    return 0;
}

/* Encodes and writes one stripe whose k data blocks of bl bytes lie back to back at data. */
static int writer_stripe(EcWriter *w, const uint8_t *data, uint32_t bl)
{
    uint8_t *shards[EC_MAX_SHARDS];
    unsigned k = w->g.k, n = k + w->g.m;

    /* ISA-L takes non-const pointers but only reads the sources. */
    for (unsigned i = 0; i < k; i++)
        shards[i] = (uint8_t *)data + (size_t)i * bl;
    for (unsigned i = k; i < n; i++)
        shards[i] = w->parity + (size_t)(i - k) * w->g.block;
    codec_encode(&w->codec, bl, shards);
    for (unsigned i = 0; i < n; i++) {
        if (w->dead & (1u << i))
            continue;
        uint8_t crc[4];
        sov_put_le32(crc, ec_crc(shards[i], bl));
        struct iovec iov[2] = {{shards[i], bl}, {crc, 4}};
        if (io_full(&w->set, w->fd[i], iov, 2, block_off(&w->g, w->nstripes), true) < 0 &&
            writer_fail_shard(w, i) < 0)
            return -EIO;
    }
    w->nstripes++;
    return 0;
}

int ec_writer_write(EcWriter *w, const void *p, size_t n)
{
    const uint8_t *s = p;
    size_t sb = (size_t)w->g.k * w->g.block;
    int r;

    if (w->state != W_OPEN)
        return w->state == W_FAILED ? -EIO : -EINVAL;
    while (n > 0) {
        if (w->fill == 0 && n >= sb) {
            /* Whole stripes straight from the caller's buffer. */
            if ((r = writer_stripe(w, s, w->g.block)) < 0)
                return r;
            s += sb;
            n -= sb;
            w->size += sb;
            continue;
        }
        size_t c = SOV_MIN(n, sb - w->fill);
        memcpy(w->stripe + w->fill, s, c);
        w->fill += c;
        w->size += c;
        s += c;
        n -= c;
        if (w->fill == sb) {
            w->fill = 0;
            if ((r = writer_stripe(w, w->stripe, w->g.block)) < 0)
                return r;
        }
    }
    return 0;
}

int ec_writer_finish(EcWriter *w)
{
    uint8_t hdr[EC_HDR_SIZE];
    int r;

    if (w->state != W_OPEN)
        return w->state == W_FAILED ? -EIO : -EINVAL;
    if (w->fill > 0) {
        uint32_t lb = (uint32_t)((w->fill + w->g.k - 1) / w->g.k);
        memset(w->stripe + w->fill, 0, (size_t)w->g.k * lb - w->fill);
        w->fill = 0;
        if ((r = writer_stripe(w, w->stripe, lb)) < 0)
            return r;
    }
    for (unsigned i = 0; i < w->g.k + w->g.m; i++) {
        if (w->dead & (1u << i))
            continue;
        hdr_encode(&w->g, i, w->size, w->id, hdr);
        struct iovec iov = {hdr, sizeof(hdr)};
        if (io_full(&w->set, w->fd[i], &iov, 1, 0, true) < 0 && writer_fail_shard(w, i) < 0)
            return -EIO;
    }
    w->state = W_FINISHED;
    return 0;
}

/* fsync, close and install one shard; runs on a thread of its own when several drives sync. */
typedef struct CommitJob {
    EcWriter *w;
    unsigned shard;
    int rc;
    bool threaded;
    pthread_t th;
} CommitJob;

static void commit_shard(CommitJob *j)
{
    EcWriter *w = j->w;
    const EcOps *ops = set_ops(&w->set);
    int r = w->set.fsync ? ops->fsync(w->set.ops_ud, w->fd[j->shard]) : 0;
    int c = ops->close(w->set.ops_ud, w->fd[j->shard]);

    w->fd[j->shard] = -1;
    if (r == 0)
        r = c;
    if (r == 0)
        r = shard_install(&w->set, w->id, j->shard, false);
    j->rc = r;
}

static void *commit_thread(void *p)
{
    commit_shard(p);
    return NULL;
}

int ec_writer_commit(EcWriter *w)
{
    CommitJob jobs[EC_MAX_SHARDS];
    unsigned n = w->g.k + w->g.m;
    uint32_t live;
    bool first = true;

    if (w->state != W_FINISHED)
        return w->state == W_FAILED ? -EIO : -EINVAL;
    live = all_shards(&w->g) & ~w->dead;
    /* Each drive syncs on its own: the commit waits for the slowest drive, not for the sum of
     * them. The first shard runs here, the others on short-lived threads (inline when a thread
     * cannot start, or when nothing is synced). */
    for (unsigned i = 0; i < n; i++) {
        if (!(live & (1u << i)))
            continue;
        jobs[i] = (CommitJob){.w = w, .shard = i};
        if (!first && w->set.fsync)
            jobs[i].threaded = pthread_create(&jobs[i].th, NULL, commit_thread, &jobs[i]) == 0;
        first = false;
    }
    for (unsigned i = 0; i < n; i++)
        if ((live & (1u << i)) && !jobs[i].threaded)
            commit_shard(&jobs[i]);
    for (unsigned i = 0; i < n; i++) {
        if (!(live & (1u << i)))
            continue;
        if (jobs[i].threaded)
            pthread_join(jobs[i].th, NULL);
        if (jobs[i].rc == 0)
            w->installed |= 1u << i;
    }
    for (unsigned i = 0; i < n; i++) {
        if (!(live & (1u << i)) || jobs[i].rc == 0)
            continue;
        /* A rename that happened before a failed dir fsync leaves the file in place. */
        char p[PATH_MAX];
        if (ec_shard_path(&w->set, w->id, i, p, sizeof(p)) == 0)
            set_ops(&w->set)->unlink(w->set.ops_ud, p);
        if (writer_fail_shard(w, i) < 0)
            return -EIO;
    }
    w->state = W_COMMITTED;
    return 0;
}

uint64_t ec_writer_size(const EcWriter *w)
{
    return w->size;
}

uint32_t ec_writer_damaged(const EcWriter *w)
{
    return w->dead;
}

void ec_writer_abort(EcWriter *w)
{
    if (!w || w->state == W_COMMITTED || w->state == W_ABORTED)
        return;
    writer_remove_all(w);
    w->state = W_ABORTED;
}

EcWriter *ec_writer_free(EcWriter *w)
{
    if (!w)
        return NULL;
    ec_writer_abort(w);
    for (unsigned i = 0; i < EC_MAX_SHARDS; i++)
        if (w->fd[i] >= 0)
            set_ops(&w->set)->close(w->set.ops_ud, w->fd[i]);
    free(w->stripe);
    free(w->parity);
    free(w);
    return NULL;
}

/* ---- reader ---- */

enum { S_UNOPENED, S_OK, S_BAD };

struct EcReader {
    EcSet set;
    EcGeom g;
    char id[EC_ID_MAX + 1];
    uint64_t size; /* EC_SIZE_UNKNOWN until a header gave it */
    Stripes st;
    int fd[EC_MAX_SHARDS];
    uint8_t state[EC_MAX_SHARDS];
    uint32_t damaged;
    uint8_t *scratch[EC_MAX_SHARDS]; /* one block each, allocated on first use */
    EcCodec codec;
};

static void reader_bad(EcReader *r, unsigned i)
{
    if (r->fd[i] >= 0)
        set_ops(&r->set)->close(r->set.ops_ud, r->fd[i]);
    r->fd[i] = -1;
    r->state[i] = S_BAD;
    r->damaged |= 1u << i;
}

/* Opens shard i and checks its header once; -EIO when the shard is damaged. */
static int reader_shard(EcReader *r, unsigned i)
{
    char p[PATH_MAX];
    uint8_t hdr[EC_HDR_SIZE];
    int fd;

    if (r->state[i] != S_UNOPENED)
        return r->state[i] == S_OK ? 0 : -EIO;
    if (ec_shard_path(&r->set, r->id, i, p, sizeof(p)) < 0 ||
        (fd = set_ops(&r->set)->open(r->set.ops_ud, p, O_RDONLY, 0)) < 0) {
        reader_bad(r, i);
        return -EIO;
    }
    r->fd[i] = fd;
    struct iovec iov = {hdr, sizeof(hdr)};
    uint64_t size = r->size;
    if (io_full(&r->set, fd, &iov, 1, 0, false) < 0 || hdr_check(hdr, &r->g, i, r->id, &size) < 0) {
        reader_bad(r, i);
        return -EIO;
    }
    if (r->size == EC_SIZE_UNKNOWN) {
        r->size = size;
        r->st = stripes_of(&r->g, size);
    }
    r->state[i] = S_OK;
    return 0;
}

static uint8_t *reader_scratch(EcReader *r, unsigned i)
{
    if (!r->scratch[i])
        r->scratch[i] = alloc_aligned(r->g.block);
    return r->scratch[i];
}

/* Reads and checks block s (bl bytes) of shard i into dest. A CRC mismatch damages the block
 * only; a short or failed read gives the whole shard up (a dying drive is not retried for
 * every stripe). */
static int reader_block(EcReader *r, unsigned i, uint64_t s, uint32_t bl, uint8_t *dest)
{
    uint8_t crc[4];
    int rc;

    if (!dest)
        return -ENOMEM;
    if ((rc = reader_shard(r, i)) < 0)
        return rc;
    struct iovec iov[2] = {{dest, bl}, {crc, 4}};
    if (io_full(&r->set, r->fd[i], iov, 2, block_off(&r->g, s), false) < 0) {
        reader_bad(r, i);
        return -EIO;
    }
    if (sov_get_le32(crc) != ec_crc(dest, bl)) {
        r->damaged |= 1u << i;
        return -EBADMSG;
    }
    return 0;
}

int ec_reader_open(const EcSet *set, const EcGeom *g, const char *id, uint64_t size, EcReader **ret)
{
    EcReader *r;
    int rc;

    if ((rc = set_check(set, g, id)) < 0)
        return rc;
    if (!(r = calloc(1, sizeof(*r))))
        return -ENOMEM;
    r->set = *set;
    r->g = *g;
    snprintf(r->id, sizeof(r->id), "%s", id);
    for (unsigned i = 0; i < EC_MAX_SHARDS; i++)
        r->fd[i] = -1;
    r->size = size;
    codec_init(&r->codec, g);
    if (size != EC_SIZE_UNKNOWN)
        r->st = stripes_of(g, size);
    for (unsigned i = 0; i < g->k + g->m && r->size == EC_SIZE_UNKNOWN; i++)
        reader_shard(r, i);
    if (r->size == EC_SIZE_UNKNOWN) {
        ec_reader_free(r);
        return -EIO;
    }
    *ret = r;
    return 0;
}

/* Reads [a, a + n) of stripe s (offsets within the stripe, bl its block size) into out. */
static int reader_stripe(EcReader *r, uint64_t s, uint32_t bl, size_t a, size_t n, uint8_t *out)
{
    unsigned k = r->g.k, total = k + r->g.m;
    uint8_t *buf[EC_MAX_SHARDS] = {NULL};
    uint32_t good = 0, tried = 0, need = 0, direct = 0;
    unsigned i0 = (unsigned)(a / bl), i1 = (unsigned)((a + n - 1) / bl);

    for (unsigned i = i0; i <= i1; i++) {
        size_t lo = (size_t)i * bl, hi = lo + bl;
        need |= 1u << i;
        if (lo >= a && hi <= a + n) {
            /* The whole block lands in the output: read it there. */
            buf[i] = out + (lo - a);
            direct |= 1u << i;
        } else if (!(buf[i] = reader_scratch(r, i))) {
            return -ENOMEM;
        }
        tried |= 1u << i;
        if (reader_block(r, i, s, bl, buf[i]) == 0)
            good |= 1u << i;
    }
    if ((good & need) != need) {
        /* Degraded: bring the good blocks up to k, data shards first, then parity. */
        for (unsigned i = 0; i < total && popcount32(good) < k; i++) {
            if (tried & (1u << i))
                continue;
            tried |= 1u << i;
            if (!(buf[i] = reader_scratch(r, i)))
                return -ENOMEM;
            if (reader_block(r, i, s, bl, buf[i]) == 0)
                good |= 1u << i;
        }
        if (popcount32(good) < k)
            return -EIO;
        uint32_t src = 0;
        uint8_t *srcs[EC_MAX_SHARDS], *outs[EC_MAX_SHARDS];
        unsigned ns = 0, nt = 0;
        for (unsigned i = 0; i < total && ns < k; i++)
            if (good & (1u << i)) {
                src |= 1u << i;
                srcs[ns++] = buf[i];
            }
        uint32_t tgt = need & ~good;
        for (unsigned i = 0; i < k; i++)
            if (tgt & (1u << i))
                outs[nt++] = buf[i];
        int rc = codec_decode(&r->codec, src, tgt, bl, srcs, outs);
        if (rc < 0)
            return rc;
    }
    for (unsigned i = i0; i <= i1; i++) {
        if (direct & (1u << i))
            continue;
        size_t lo = (size_t)i * bl, from = SOV_MAX(lo, a), to = SOV_MIN(lo + bl, a + n);
        memcpy(out + (from - a), buf[i] + (from - lo), to - from);
    }
    return 0;
}

int ec_reader_read(EcReader *r, uint64_t off, size_t len, void *out)
{
    uint64_t sb = (uint64_t)r->g.k * r->g.block;
    uint8_t *o = out;

    if (off > r->size || len > r->size - off)
        return -EINVAL;
    while (len > 0) {
        uint64_t s = off / sb, so = off % sb;
        uint64_t sl = SOV_MIN(sb, r->size - s * sb);
        size_t n = (size_t)SOV_MIN((uint64_t)len, sl - so);
        int rc = reader_stripe(r, s, stripe_block(&r->g, &r->st, s), (size_t)so, n, o);
        if (rc < 0)
            return rc;
        off += n;
        o += n;
        len -= n;
    }
    return 0;
}

unsigned ec_reader_pin(EcReader *r)
{
    unsigned n = 0;
    for (unsigned i = 0; i < r->g.k + r->g.m; i++)
        n += reader_shard(r, i) == 0;
    return n;
}

uint64_t ec_reader_size(const EcReader *r)
{
    return r->size;
}

uint32_t ec_reader_damaged(const EcReader *r)
{
    return r->damaged;
}

EcReader *ec_reader_free(EcReader *r)
{
    if (!r)
        return NULL;
    for (unsigned i = 0; i < EC_MAX_SHARDS; i++) {
        if (r->fd[i] >= 0)
            set_ops(&r->set)->close(r->set.ops_ud, r->fd[i]);
        free(r->scratch[i]);
    }
    free(r);
    return NULL;
}

int ec_read(const EcSet *set, const EcGeom *g, const char *id, uint64_t size, uint64_t off,
            size_t len, void *out, uint32_t *ret_damaged)
{
    EcReader *r;
    int rc = ec_reader_open(set, g, id, size, &r);
    if (rc < 0)
        return rc;
    rc = ec_reader_read(r, off, len, out);
    if (rc == 0 && ret_damaged)
        *ret_damaged = r->damaged;
    ec_reader_free(r);
    return rc;
}

/* ---- verify and heal ---- */

/* Reads every block of every shard; bad[s] gets the shards whose block s is damaged (a
 * damaged header or short file damages all of the shard's blocks from there on). Returns 0, or
 * -EIO when a stripe has fewer than k good blocks. */
static int reader_scan(EcReader *r, uint32_t **ret_bad)
{
    unsigned total = r->g.k + r->g.m;
    uint64_t n = r->st.n;
    uint32_t *bad = calloc(n ? n : 1, sizeof(*bad));
    int rc = 0;

    if (!bad)
        return -ENOMEM;
    for (unsigned i = 0; i < total; i++) {
        if (reader_shard(r, i) < 0) {
            for (uint64_t s = 0; s < n; s++)
                bad[s] |= 1u << i;
            continue;
        }
        for (uint64_t s = 0; s < n; s++) {
            int b = reader_block(r, i, s, stripe_block(&r->g, &r->st, s), reader_scratch(r, 0));
            if (b == -ENOMEM) {
                free(bad);
                return b;
            }
            if (b < 0)
                bad[s] |= 1u << i;
        }
    }
    for (uint64_t s = 0; s < n; s++)
        if (total - popcount32(bad[s]) < r->g.k)
            rc = -EIO;
    *ret_bad = bad;
    return rc;
}

int ec_verify(const EcSet *set, const EcGeom *g, const char *id, uint64_t size,
              uint32_t *ret_damaged)
{
    EcReader *r;
    uint32_t *bad = NULL;
    int rc = ec_reader_open(set, g, id, size, &r);

    if (rc == -EIO && ret_damaged)
        *ret_damaged = all_shards(g);
    if (rc < 0)
        return rc;
    rc = reader_scan(r, &bad);
    if (rc != -ENOMEM && ret_damaged)
        *ret_damaged = r->damaged;
    if (rc == 0)
        rc = (int)popcount32(r->damaged);
    free(bad);
    ec_reader_free(r);
    return rc;
}

/* Writes the rebuilt shards in tgt stripe by stripe into their temporary files (fd[]). */
static int heal_stripes(EcReader *r, const uint32_t *bad, uint32_t *tgt, const int *fd,
                        uint8_t **hbuf)
{
    unsigned k = r->g.k, total = k + r->g.m;

    for (uint64_t s = 0; s < r->st.n; s++) {
        uint32_t bl = stripe_block(&r->g, &r->st, s), good = 0;
        uint8_t *buf[EC_MAX_SHARDS], *srcs[EC_MAX_SHARDS], *outs[EC_MAX_SHARDS];
        unsigned ns = 0, nt = 0;

        for (unsigned i = 0; i < total && popcount32(good) < k; i++) {
            if (bad[s] & (1u << i))
                continue;
            if (!(buf[i] = reader_scratch(r, i)))
                return -ENOMEM;
            if (reader_block(r, i, s, bl, buf[i]) == 0)
                good |= 1u << i;
        }
        if (popcount32(good) < k)
            return -EIO;
        for (unsigned i = 0; i < total; i++)
            if (good & (1u << i))
                srcs[ns++] = buf[i];
        uint32_t dec = *tgt & ~good;
        for (unsigned i = 0; i < total; i++)
            if (dec & (1u << i))
                outs[nt++] = hbuf[i];
        if (codec_decode(&r->codec, good, dec, bl, srcs, outs) < 0)
            return -EIO;
        for (unsigned i = 0; i < total; i++) {
            if (!(*tgt & (1u << i)))
                continue;
            uint8_t *blk = (good & (1u << i)) ? buf[i] : hbuf[i], crc[4];
            sov_put_le32(crc, ec_crc(blk, bl));
            struct iovec iov[2] = {{blk, bl}, {crc, 4}};
            if (io_full(&r->set, fd[i], iov, 2, block_off(&r->g, s), true) < 0)
                *tgt &= ~(1u << i); /* this drive failed again: leave the shard as it was */
        }
    }
    return 0;
}

int ec_heal(const EcSet *set, const EcGeom *g, const char *id, uint64_t size, uint32_t *ret_damaged,
            uint32_t *ret_healed)
{
    const EcOps *ops;
    EcReader *r;
    uint32_t *bad = NULL, tgt, healed = 0;
    int fd[EC_MAX_SHARDS], rc;
    uint8_t *hbuf[EC_MAX_SHARDS] = {NULL}, hdr[EC_HDR_SIZE];
    char p[PATH_MAX];

    if ((rc = ec_reader_open(set, g, id, size, &r)) < 0)
        return rc;
    ops = set_ops(set);
    if ((rc = reader_scan(r, &bad)) < 0)
        goto out;
    tgt = r->damaged;
    for (unsigned i = 0; i < EC_MAX_SHARDS; i++)
        fd[i] = -1;
    for (unsigned i = 0; i < g->k + g->m; i++) {
        if (!(tgt & (1u << i)))
            continue;
        int f = -ENOMEM;
        hdr_encode(g, i, r->size, id, hdr);
        struct iovec iov = {hdr, sizeof(hdr)};
        if ((hbuf[i] = alloc_aligned(g->block)) &&
            (f = make_dirs(set, ec_shard_drive(set, id, i), NULL)) == 0 &&
            (f = tmp_path(set, id, i, true, p, sizeof(p))) == 0 &&
            (f = ops->open(set->ops_ud, p, O_WRONLY | O_CREAT | O_TRUNC, 0640)) >= 0 &&
            io_full(set, f, &iov, 1, 0, true) < 0) {
            ops->close(set->ops_ud, f);
            ops->unlink(set->ops_ud, p);
            f = -EIO;
        }
        if (f >= 0)
            fd[i] = f;
        else
            tgt &= ~(1u << i);
    }
    rc = heal_stripes(r, bad, &tgt, fd, hbuf);
    for (unsigned i = 0; i < g->k + g->m; i++) {
        if (fd[i] < 0)
            continue;
        int f = (rc == 0 && (tgt & (1u << i)) && set->fsync) ? ops->fsync(set->ops_ud, fd[i]) : 0;
        if (ops->close(set->ops_ud, fd[i]) < 0)
            f = -EIO;
        if (rc == 0 && (tgt & (1u << i)) && f == 0 && shard_install(set, id, i, true) == 0) {
            healed |= 1u << i;
            continue;
        }
        if (tmp_path(set, id, i, true, p, sizeof(p)) == 0)
            ops->unlink(set->ops_ud, p);
    }
    if (rc == 0 && healed != r->damaged)
        rc = -EIO;
    if (ret_damaged)
        *ret_damaged = r->damaged;
    if (ret_healed)
        *ret_healed = healed;
out:
    for (unsigned i = 0; i < EC_MAX_SHARDS; i++)
        free(hbuf[i]);
    free(bad);
    ec_reader_free(r);
    return rc;
}

int ec_remove(const EcSet *set, const EcGeom *g, const char *id)
{
    char p[PATH_MAX];
    int rc = 0, r;

    if ((r = set_check(set, g, id)) < 0)
        return r;
    for (unsigned i = 0; i < g->k + g->m; i++) {
        if ((r = ec_shard_path(set, id, i, p, sizeof(p))) == 0)
            r = set_ops(set)->unlink(set->ops_ud, p);
        if (r < 0 && r != -ENOENT && rc == 0)
            rc = r;
    }
    return rc;
}
