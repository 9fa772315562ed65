/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of sov-s3's erasure coding (ec.c): round trips over geometries and sizes, every
 * loss of up to m shards, CRC-caught corruption, bad headers, short files, injected EIO on one
 * drive while reading and writing (write quorum), unaligned ranges, and a replaced drive rebuilt
 * by heal, byte for byte. Drives are directories under a temporary directory in /tmp. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ec.h"
#include "sov/crypto.h"
#include "sov/macro.h"

#define B      EC_BLOCK_DEFAULT
#define MAX_FD 4096

/* Fault injection: I/O on files under the drives in faulty[] fails with EIO. */
typedef struct Faults {
    uint32_t faulty; /* drive mask */
    bool fail_open, fail_read, fail_write, fail_fsync;
    int8_t fd_drive[MAX_FD]; /* drive of each open descriptor, -1 when none */
    unsigned opens_failed, reads_failed, writes_failed;
} Faults;

typedef struct Env {
    char root[64];
    char drives[EC_MAX_SHARDS + 4][96];
    const char *dp[EC_MAX_SHARDS + 4];
    unsigned n;
    EcSet set;
    Faults f;
} Env;

static Env *env_of(void *ud)
{
    return ud;
}

/* The drive a path is under, or -1. */
static int drive_of(Env *e, const char *path)
{
    for (unsigned i = 0; i < e->n; i++) {
        size_t l = strlen(e->drives[i]);
        if (strncmp(path, e->drives[i], l) == 0 && path[l] == '/')
            return (int)i;
    }
    return -1;
}

static bool faulty_path(Env *e, const char *path)
{
    int d = drive_of(e, path);
    return d >= 0 && (e->f.faulty & (1u << d));
}

static bool faulty_fd(Env *e, int fd)
{
    return fd >= 0 && fd < MAX_FD && e->f.fd_drive[fd] >= 0 &&
           (e->f.faulty & (1u << e->f.fd_drive[fd]));
}

static int t_open(void *ud, const char *path, int flags, mode_t mode)
{
    Env *e = env_of(ud);
    if (e->f.fail_open && faulty_path(e, path)) {
        e->f.opens_failed++;
        return -EIO;
    }
    int fd = ec_ops_posix.open(NULL, path, flags, mode);
    if (fd >= 0 && fd < MAX_FD)
        e->f.fd_drive[fd] = (int8_t)drive_of(e, path);
    return fd;
}

static int t_close(void *ud, int fd)
{
    Env *e = env_of(ud);
    if (fd >= 0 && fd < MAX_FD)
        e->f.fd_drive[fd] = -1;
    return ec_ops_posix.close(NULL, fd);
}

static ssize_t t_preadv(void *ud, int fd, const struct iovec *iov, int n, off_t off)
{
    Env *e = env_of(ud);
    if (e->f.fail_read && faulty_fd(e, fd)) {
        e->f.reads_failed++;
        return -EIO;
    }
    return ec_ops_posix.preadv(NULL, fd, iov, n, off);
}

static ssize_t t_pwritev(void *ud, int fd, const struct iovec *iov, int n, off_t off)
{
    Env *e = env_of(ud);
    if (e->f.fail_write && faulty_fd(e, fd)) {
        e->f.writes_failed++;
        return -EIO;
    }
    return ec_ops_posix.pwritev(NULL, fd, iov, n, off);
}

static int t_fsync(void *ud, int fd)
{
    Env *e = env_of(ud);
    if (e->f.fail_fsync && faulty_fd(e, fd))
        return -EIO;
    return ec_ops_posix.fsync(NULL, fd);
}

static int t_fsync_dir(void *ud, const char *path)
{
    return ec_ops_posix.fsync_dir(NULL, path);
}

static int t_rename(void *ud, const char *a, const char *b)
{
    return ec_ops_posix.rename(NULL, a, b);
}

static int t_unlink(void *ud, const char *p)
{
    return ec_ops_posix.unlink(NULL, p);
}

static int t_mkdir(void *ud, const char *p, mode_t mode)
{
    return ec_ops_posix.mkdir(NULL, p, mode);
}

static const EcOps test_ops = {t_open,      t_close,  t_preadv, t_pwritev, t_fsync,
                               t_fsync_dir, t_rename, t_unlink, t_mkdir};

static void env_init(Env *e, unsigned n)
{
    memset(e, 0, sizeof(*e));
    snprintf(e->root, sizeof(e->root), "/tmp/s3ec-XXXXXX");
    assert_non_null(mkdtemp(e->root));
    e->n = n;
    for (unsigned i = 0; i < n; i++) {
        snprintf(e->drives[i], sizeof(e->drives[i]), "%s/d%u", e->root, i);
        assert_int_equal(mkdir(e->drives[i], 0750), 0);
        e->dp[i] = e->drives[i];
    }
    memset(e->f.fd_drive, -1, sizeof(e->f.fd_drive));
    e->set = (EcSet){.drives = e->dp, .ndrives = n, .ops = &test_ops, .ops_ud = e, .fsync = true};
}

static int rm_one(const char *p, const struct stat *sb, int type, struct FTW *ftw)
{
    return remove(p);
}

static void rm_rf(const char *p)
{
    nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void env_release(Env *e)
{
    rm_rf(e->root);
}

/* Regular files under a directory (recursively). */
static unsigned count_files_n;
static int count_one(const char *p, const struct stat *sb, int type, struct FTW *ftw)
{
    if (type == FTW_F)
        count_files_n++;
    return 0;
}

static unsigned count_files(const char *dir)
{
    count_files_n = 0;
    nftw(dir, count_one, 16, FTW_PHYS);
    return count_files_n;
}

static uint8_t *pattern(size_t n, uint32_t seed)
{
    uint8_t *p = malloc(n ? n : 1);
    uint32_t x = seed * 2654435761u + 1;
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
    return p;
}

static EcGeom geom(unsigned k, unsigned m)
{
    return (EcGeom){.k = k, .m = m, .block = B};
}

/* Writes data in chunks of chunk bytes (0: one write) and commits. */
static void put(Env *e, const EcGeom *g, const char *id, const uint8_t *data, size_t n,
                size_t chunk)
{
    EcWriter *w;
    assert_int_equal(ec_writer_open(&e->set, g, id, &w), 0);
    for (size_t o = 0; o < n;) {
        size_t c = chunk ? SOV_MIN(chunk, n - o) : n;
        assert_int_equal(ec_writer_write(w, data + o, c), 0);
        o += c;
    }
    assert_int_equal(ec_writer_finish(w), 0);
    assert_int_equal(ec_writer_commit(w), 0);
    assert_int_equal(ec_writer_size(w), n);
    assert_int_equal(ec_writer_damaged(w), 0);
    ec_writer_free(w);
}

static void check_read(Env *e, const EcGeom *g, const char *id, const uint8_t *data, size_t n)
{
    uint8_t *out = malloc(n + 1);
    uint32_t dmg = 0xdead;
    assert_non_null(out);
    assert_int_equal(ec_read(&e->set, g, id, n, 0, n, out, &dmg), 0);
    assert_memory_equal(out, data, n);
    free(out);
}

static char *shard_file(Env *e, const char *id, unsigned shard)
{
    static char p[PATH_MAX];
    assert_int_equal(ec_shard_path(&e->set, id, shard, p, sizeof(p)), 0);
    return p;
}

static uint8_t *slurp(const char *path, size_t *ret_n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *ret_n = (size_t)n;
    return p;
}

static void assert_file_equals(const char *path, const uint8_t *want, size_t n)
{
    size_t got_n;
    uint8_t *got = slurp(path, &got_n);
    assert_int_equal(got_n, n);
    assert_memory_equal(got, want, n);
    free(got);
}

static void flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    uint8_t c;
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &c, 1, off), 1);
    c ^= 0x5a;
    assert_int_equal(pwrite(fd, &c, 1, off), 1);
    close(fd);
}

/* ---- tests ---- */

static void test_geometry(void **state)
{
    static const unsigned want[][2] = {{1, 0}, {1, 1},  {2, 1},  {2, 2},  {3, 2},  {4, 2},
                                       {4, 3}, {5, 3},  {6, 3},  {7, 3},  {8, 3},  {8, 4},
                                       {9, 4}, {10, 4}, {11, 4}, {12, 4}, {12, 4}, {12, 4}};
    EcGeom g;
    for (unsigned n = 1; n <= 18; n++) {
        assert_int_equal(ec_geom_default(n, &g), 0);
        assert_int_equal(g.k, want[n - 1][0]);
        assert_int_equal(g.m, want[n - 1][1]);
        assert_int_equal(g.block, EC_BLOCK_DEFAULT);
        assert_int_equal(ec_geom_check(&g), 0);
    }
    assert_int_equal(ec_geom_default(0, &g), -EINVAL);
    g = geom(2, 2);
    assert_int_equal(ec_write_quorum(&g), 3);
    g = geom(3, 0);
    assert_int_equal(ec_write_quorum(&g), 3);
    g = (EcGeom){.k = 0, .m = 1, .block = B};
    assert_int_equal(ec_geom_check(&g), -EINVAL);
    g = (EcGeom){.k = 20, .m = 13, .block = B};
    assert_int_equal(ec_geom_check(&g), -EINVAL);
    g = (EcGeom){.k = 2, .m = 1, .block = 100};
    assert_int_equal(ec_geom_check(&g), -EINVAL);
    g = geom(2, 2);
    assert_int_equal(ec_shard_file_size(&g, 0), EC_HDR_SIZE);
    assert_int_equal(ec_shard_file_size(&g, 3), EC_HDR_SIZE + 2 + 4);
    assert_int_equal(ec_shard_file_size(&g, 2 * B + 1), EC_HDR_SIZE + (B + 4) + 1 + 4);

    Env e;
    env_init(&e, 4);
    EcWriter *w;
    assert_int_equal(ec_writer_open(&e.set, &g, "a", &w), -EINVAL);
    assert_int_equal(ec_writer_open(&e.set, &g, "../x", &w), -EINVAL);
    g = geom(4, 1);
    assert_int_equal(ec_writer_open(&e.set, &g, "abcd", &w), -EINVAL); /* 5 shards, 4 drives */
    env_release(&e);
}

/* The block CRC is the CRC-32C the rest of sov-s3 uses. */
static void test_crc_is_crc32c(void **state)
{
    Env e;
    EcGeom g = geom(1, 0);
    uint8_t *data = pattern(1000, 7);
    size_t n;

    env_init(&e, 1);
    put(&e, &g, "c0ffee", data, 1000, 0);
    uint8_t *f = slurp(shard_file(&e, "c0ffee", 0), &n);
    assert_int_equal(n, EC_HDR_SIZE + 1000 + 4);
    assert_memory_equal(f + EC_HDR_SIZE, data, 1000);
    uint32_t crc = sov_crc32c(0, data, 1000);
    uint8_t le[4] = {(uint8_t)crc, (uint8_t)(crc >> 8), (uint8_t)(crc >> 16), (uint8_t)(crc >> 24)};
    assert_memory_equal(f + EC_HDR_SIZE + 1000, le, 4);
    assert_memory_equal(f, "SOVSHARD", 8);
    free(f);
    free(data);
    env_release(&e);
}

static void test_round_trip(void **state)
{
    static const unsigned geoms[][2] = {{1, 0}, {1, 1}, {2, 1}, {2, 2}, {3, 2}, {4, 2}, {12, 4}};
    for (size_t gi = 0; gi < sizeof(geoms) / sizeof(geoms[0]); gi++) {
        EcGeom g = geom(geoms[gi][0], geoms[gi][1]);
        size_t sizes[] = {0, 1, B - 1, B, (size_t)g.k * B + 1, 3u << 20};
        Env e;
        env_init(&e, g.k + g.m);
        for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
            char id[40];
            size_t n = sizes[si];
            uint8_t *data = pattern(n, (uint32_t)(gi * 100 + si));
            snprintf(id, sizeof(id), "%02zx%02zxobj", gi, si);
            /* Odd-sized writes for some, one whole write for others. */
            put(&e, &g, id, data, n, si % 2 ? 7777 : 0);
            check_read(&e, &g, id, data, n);
            for (unsigned i = 0; i < g.k + g.m; i++) {
                struct stat sb;
                assert_int_equal(stat(shard_file(&e, id, i), &sb), 0);
                assert_int_equal((uint64_t)sb.st_size, ec_shard_file_size(&g, n));
            }
            uint32_t dmg = 1;
            assert_int_equal(ec_verify(&e.set, &g, id, n, &dmg), 0);
            assert_int_equal(dmg, 0);
            if (g.m > 0 && n > B) {
                /* The first m shards (data shards) lost: read, heal, byte-identical again. */
                uint8_t *orig[EC_MAX_SHARDS];
                size_t olen[EC_MAX_SHARDS];
                uint32_t healed;
                for (unsigned i = 0; i < g.m; i++) {
                    orig[i] = slurp(shard_file(&e, id, i), &olen[i]);
                    assert_int_equal(unlink(shard_file(&e, id, i)), 0);
                }
                check_read(&e, &g, id, data, n);
                assert_int_equal(ec_heal(&e.set, &g, id, n, &dmg, &healed), 0);
                assert_int_equal(healed, (1u << g.m) - 1);
                for (unsigned i = 0; i < g.m; i++) {
                    assert_file_equals(shard_file(&e, id, i), orig[i], olen[i]);
                    free(orig[i]);
                }
            }
            free(data);
        }
        /* Nothing left in tmp/ and every shard of an object on its own drive. */
        for (unsigned d = 0; d < e.n; d++) {
            char p[PATH_MAX];
            snprintf(p, sizeof(p), "%s/tmp", e.drives[d]);
            assert_int_equal(count_files(p), 0);
            assert_int_equal(count_files(e.drives[d]), 6);
        }
        env_release(&e);
    }
}

/* Loses every set of shards of up to m (and some of m + 1) and reads, verifies and heals. */
static void lose_combinations(unsigned k, unsigned m)
{
    EcGeom g = geom(k, m);
    unsigned n = k + m;
    size_t size = 3 * (size_t)k * B + 12345;
    uint8_t *data = pattern(size, k * 10 + m), *orig[EC_MAX_SHARDS], *out = malloc(size);
    size_t olen[EC_MAX_SHARDS];
    const char *id = "5e1ec7ed";
    Env e;

    assert_non_null(out);
    env_init(&e, n);
    put(&e, &g, id, data, size, 100000);
    for (unsigned i = 0; i < n; i++)
        orig[i] = slurp(shard_file(&e, id, i), &olen[i]);
    for (uint32_t lost = 1; lost < (1u << n); lost++) {
        unsigned nl = (unsigned)__builtin_popcount(lost);
        if (nl > m + 1)
            continue;
        for (unsigned i = 0; i < n; i++)
            if (lost & (1u << i))
                assert_int_equal(unlink(shard_file(&e, id, i)), 0);
        uint32_t dmg = 0, healed = 0;
        int rc = ec_read(&e.set, &g, id, size, 0, size, out, &dmg);
        if (nl > m) {
            assert_int_equal(rc, -EIO);
            assert_int_equal(ec_verify(&e.set, &g, id, size, &dmg), -EIO);
            assert_int_equal(dmg, lost);
            assert_int_equal(ec_heal(&e.set, &g, id, size, &dmg, &healed), -EIO);
        } else {
            assert_int_equal(rc, 0);
            assert_memory_equal(out, data, size);
            /* A full read touches the lost data shards: those are reported. */
            uint32_t data_lost = lost & ((1u << k) - 1);
            assert_int_equal(dmg & data_lost, data_lost);
            assert_int_equal(dmg & ~lost, 0);
            /* A range inside stripe 1 that spans data shards 0 and 1 (or all of shard 0). */
            size_t off = (size_t)k * B + B - 100, len = k > 1 ? 300 : 200;
            assert_int_equal(ec_read(&e.set, &g, id, size, off, len, out, &dmg), 0);
            assert_memory_equal(out, data + off, len);
            assert_int_equal(ec_verify(&e.set, &g, id, size, &dmg), (int)nl);
            assert_int_equal(dmg, lost);
            assert_int_equal(ec_heal(&e.set, &g, id, size, &dmg, &healed), 0);
            assert_int_equal(dmg, lost);
            assert_int_equal(healed, lost);
        }
        /* Put the originals back (heal made them byte-identical already). */
        for (unsigned i = 0; i < n; i++) {
            if (!(lost & (1u << i)))
                continue;
            if (nl <= m) {
                assert_file_equals(shard_file(&e, id, i), orig[i], olen[i]);
                continue;
            }
            FILE *f = fopen(shard_file(&e, id, i), "wb");
            assert_non_null(f);
            assert_int_equal(fwrite(orig[i], 1, olen[i], f), olen[i]);
            fclose(f);
        }
        assert_int_equal(ec_verify(&e.set, &g, id, size, &dmg), 0);
    }
    for (unsigned i = 0; i < n; i++)
        free(orig[i]);
    free(data);
    free(out);
    env_release(&e);
}

static void test_lost_shards_2_2(void **state)
{
    lose_combinations(2, 2);
}

static void test_lost_shards_4_2(void **state)
{
    lose_combinations(4, 2);
}

static void test_corrupt_block(void **state)
{
    EcGeom g = geom(2, 2);
    size_t size = 5 * B + 999, n0, n3;
    uint8_t *data = pattern(size, 3), *out = malloc(size);
    const char *id = "b17b0b";
    uint32_t dmg, healed;
    Env e;

    env_init(&e, 4);
    put(&e, &g, id, data, size, 0);
    uint8_t *orig0 = slurp(shard_file(&e, id, 0), &n0);
    uint8_t *orig3 = slurp(shard_file(&e, id, 3), &n3);
    /* A data byte of block 1 of shard 0, and a CRC byte of block 1 of parity shard 3. */
    flip_byte(shard_file(&e, id, 0), EC_HDR_SIZE + (B + 4) + 4242);
    flip_byte(shard_file(&e, id, 3), EC_HDR_SIZE + (B + 4) + B + 1);
    assert_int_equal(ec_read(&e.set, &g, id, size, 0, size, out, &dmg), 0);
    assert_memory_equal(out, data, size);
    assert_int_equal(dmg, 1u << 0); /* the parity shard was not needed */
    assert_int_equal(ec_verify(&e.set, &g, id, size, &dmg), 2);
    assert_int_equal(dmg, (1u << 0) | (1u << 3));
    assert_int_equal(ec_heal(&e.set, &g, id, size, &dmg, &healed), 0);
    assert_int_equal(healed, (1u << 0) | (1u << 3));
    assert_file_equals(shard_file(&e, id, 0), orig0, n0);
    assert_file_equals(shard_file(&e, id, 3), orig3, n3);
    assert_int_equal(ec_verify(&e.set, &g, id, size, &dmg), 0);
    /* Damage in different stripes of three shards: every stripe still has k good blocks. */
    flip_byte(shard_file(&e, id, 0), EC_HDR_SIZE + 10);
    flip_byte(shard_file(&e, id, 1), EC_HDR_SIZE + (B + 4) + 10);
    flip_byte(shard_file(&e, id, 2), EC_HDR_SIZE + 2 * (B + 4) + 10);
    assert_int_equal(ec_read(&e.set, &g, id, size, 0, size, out, &dmg), 0);
    assert_memory_equal(out, data, size);
    assert_int_equal(ec_heal(&e.set, &g, id, size, &dmg, &healed), 0);
    assert_int_equal(healed, 7u);
    assert_file_equals(shard_file(&e, id, 0), orig0, n0);
    assert_int_equal(ec_verify(&e.set, &g, id, size, &dmg), 0);
    free(orig0);
    free(orig3);
    free(data);
    free(out);
    env_release(&e);
}

static void test_bad_header_short_file(void **state)
{
    EcGeom g = geom(2, 2);
    size_t size = 3 * B + 5;
    uint8_t *data = pattern(size, 4), *out = malloc(size);
    const char *id = "beadfeed";
    uint32_t dmg, healed;
    char p0[PATH_MAX], p1[PATH_MAX], tmp[PATH_MAX + 8];
    Env e;

    env_init(&e, 4);
    put(&e, &g, id, data, size, 0);
    /* Shards 0 and 1 swapped: each header names the other index. */
    snprintf(p0, sizeof(p0), "%s", shard_file(&e, id, 0));
    snprintf(p1, sizeof(p1), "%s", shard_file(&e, id, 1));
    snprintf(tmp, sizeof(tmp), "%s.x", p0);
    assert_int_equal(rename(p0, tmp), 0);
    assert_int_equal(rename(p1, p0), 0);
    assert_int_equal(rename(tmp, p1), 0);
    assert_int_equal(ec_read(&e.set, &g, id, size, 0, size, out, &dmg), 0);
    assert_memory_equal(out, data, size);
    assert_int_equal(dmg, 3u);
    /* Wrong size in the metadata: every header disagrees. */
    assert_int_equal(ec_read(&e.set, &g, id, size - 1, 0, 10, out, &dmg), -EIO);
    assert_int_equal(ec_heal(&e.set, &g, id, size, &dmg, &healed), 0);
    assert_int_equal(healed, 3u);
    /* A truncated shard and a header byte flipped. */
    assert_int_equal(truncate(shard_file(&e, id, 2), EC_HDR_SIZE + B), 0);
    flip_byte(shard_file(&e, id, 0), 20);
    assert_int_equal(ec_read(&e.set, &g, id, size, 0, size, out, &dmg), 0);
    assert_memory_equal(out, data, size);
    assert_int_equal(ec_verify(&e.set, &g, id, size, &dmg), 2);
    assert_int_equal(dmg, (1u << 0) | (1u << 2));
    assert_int_equal(ec_heal(&e.set, &g, id, size, &dmg, &healed), 0);
    assert_int_equal(ec_verify(&e.set, &g, id, size, &dmg), 0);
    /* The size from the headers. */
    EcReader *r;
    assert_int_equal(unlink(shard_file(&e, id, 0)), 0);
    assert_int_equal(ec_reader_open(&e.set, &g, id, EC_SIZE_UNKNOWN, &r), 0);
    assert_int_equal(ec_reader_size(r), size);
    assert_int_equal(ec_reader_read(r, 0, size, out), 0);
    assert_memory_equal(out, data, size);
    assert_int_equal(ec_reader_read(r, size, 1, out), -EINVAL);
    assert_int_equal(ec_reader_damaged(r), 1u);
    ec_reader_free(r);
    free(data);
    free(out);
    env_release(&e);
}

static void test_eio_read(void **state)
{
    EcGeom g = geom(2, 2);
    size_t size = 4 * B + 77;
    uint8_t *data = pattern(size, 5), *out = malloc(size);
    const char *id = "e10e10";
    uint32_t dmg;
    Env e;

    env_init(&e, 4);
    put(&e, &g, id, data, size, 0);
    unsigned d0 = ec_shard_drive(&e.set, id, 0), d3 = ec_shard_drive(&e.set, id, 3);
    e.f.faulty = 1u << d0;
    e.f.fail_read = true;
    assert_int_equal(ec_read(&e.set, &g, id, size, 0, size, out, &dmg), 0);
    assert_memory_equal(out, data, size);
    assert_int_equal(dmg, 1u << 0);
    assert_true(e.f.reads_failed > 0);
    /* Unlike a CRC error, an I/O error gives the shard up: one failed read per reader. */
    assert_int_equal(e.f.reads_failed, 1);
    /* Three of four drives failing: no stripe can be rebuilt. */
    e.f.faulty |= 1u << d3 | 1u << ec_shard_drive(&e.set, id, 1);
    assert_int_equal(ec_read(&e.set, &g, id, size, 0, size, out, &dmg), -EIO);
    e.f.faulty = 0;
    assert_int_equal(ec_verify(&e.set, &g, id, size, &dmg), 0);
    free(data);
    free(out);
    env_release(&e);
}

static void test_eio_write(void **state)
{
    EcGeom g = geom(2, 2);
    size_t size = 5 * B + 3;
    uint8_t *data = pattern(size, 6), *out = malloc(size);
    uint32_t dmg, healed;
    EcWriter *w;
    Env e;

    env_init(&e, 4);
    /* One drive failing writes: the write succeeds on 3 shards (quorum) and says which. */
    unsigned d1 = ec_shard_drive(&e.set, "0ne", 1);
    e.f.faulty = 1u << d1;
    e.f.fail_write = true;
    assert_int_equal(ec_writer_open(&e.set, &g, "0ne", &w), 0);
    assert_int_equal(ec_writer_write(w, data, size), 0);
    assert_int_equal(ec_writer_finish(w), 0);
    assert_int_equal(ec_writer_commit(w), 0);
    assert_int_equal(ec_writer_damaged(w), 1u << 1);
    ec_writer_free(w);
    assert_int_equal(count_files(e.drives[d1]), 0);
    e.f.faulty = 0;
    assert_int_equal(ec_read(&e.set, &g, "0ne", size, 0, size, out, &dmg), 0);
    assert_memory_equal(out, data, size);
    assert_int_equal(ec_heal(&e.set, &g, "0ne", size, &dmg, &healed), 0);
    assert_int_equal(healed, 1u << 1);
    assert_int_equal(ec_verify(&e.set, &g, "0ne", size, &dmg), 0);

    /* Two drives failing writes: below quorum, -EIO and nothing left behind. */
    e.f.faulty = 1u << ec_shard_drive(&e.set, "tw0", 0) | 1u << ec_shard_drive(&e.set, "tw0", 3);
    assert_int_equal(ec_writer_open(&e.set, &g, "tw0", &w), 0);
    int rc = ec_writer_write(w, data, size);
    if (rc == 0)
        rc = ec_writer_finish(w);
    assert_int_equal(rc, -EIO);
    assert_int_equal(ec_writer_commit(w), -EIO);
    ec_writer_free(w);
    assert_int_equal(count_files(e.root), 4); /* the shards of "0ne" */

    /* Two drives failing fsync at commit: the same. */
    e.f.fail_write = false;
    e.f.fail_fsync = true;
    assert_int_equal(ec_writer_open(&e.set, &g, "thr33", &w), 0);
    assert_int_equal(ec_writer_write(w, data, size), 0);
    assert_int_equal(ec_writer_finish(w), 0);
    e.f.faulty =
        1u << ec_shard_drive(&e.set, "thr33", 1) | 1u << ec_shard_drive(&e.set, "thr33", 2);
    assert_int_equal(ec_writer_commit(w), -EIO);
    ec_writer_free(w);
    assert_int_equal(count_files(e.root), 4);

    /* One drive that cannot open files (or is gone): written on the other three. */
    e.f.fail_fsync = false;
    e.f.fail_open = true;
    e.f.faulty = 1u << ec_shard_drive(&e.set, "f0ur", 2);
    assert_int_equal(ec_writer_open(&e.set, &g, "f0ur", &w), 0);
    assert_int_equal(ec_writer_write(w, data, 100), 0);
    assert_int_equal(ec_writer_finish(w), 0);
    assert_int_equal(ec_writer_commit(w), 0);
    assert_int_equal(ec_writer_damaged(w), 1u << 2);
    ec_writer_free(w);
    assert_int_equal(count_files(e.root), 7);
    /* Two: the open fails at once. */
    e.f.faulty = 1u << ec_shard_drive(&e.set, "f1ve", 0) | 1u << ec_shard_drive(&e.set, "f1ve", 1);
    assert_int_equal(ec_writer_open(&e.set, &g, "f1ve", &w), -EIO);
    assert_int_equal(count_files(e.root), 7);

    /* An aborted writer and one freed unfinished leave nothing. */
    e.f.faulty = 0;
    assert_int_equal(ec_writer_open(&e.set, &g, "ab0rt", &w), 0);
    assert_int_equal(ec_writer_write(w, data, size), 0);
    ec_writer_abort(w);
    assert_int_equal(ec_writer_finish(w), -EINVAL);
    ec_writer_free(w);
    assert_int_equal(ec_writer_open(&e.set, &g, "dr0p", &w), 0);
    assert_int_equal(ec_writer_write(w, data, size), 0);
    assert_int_equal(ec_writer_finish(w), 0);
    ec_writer_free(w);
    assert_int_equal(count_files(e.root), 7);
    free(data);
    free(out);
    env_release(&e);
}

/* A drive that fails again while heal rewrites its shard: the others are healed, -EIO. */
static void test_heal_fails_again(void **state)
{
    EcGeom g = geom(4, 2);
    size_t size = 9 * (size_t)B + 1;
    uint8_t *data = pattern(size, 10);
    const char *id = "fa11";
    uint32_t dmg, healed;
    char p[PATH_MAX];
    Env e;

    env_init(&e, 6);
    put(&e, &g, id, data, size, 0);
    assert_int_equal(unlink(shard_file(&e, id, 1)), 0);
    assert_int_equal(unlink(shard_file(&e, id, 4)), 0);
    e.f.faulty = 1u << ec_shard_drive(&e.set, id, 4);
    e.f.fail_write = true;
    assert_int_equal(ec_heal(&e.set, &g, id, size, &dmg, &healed), -EIO);
    assert_int_equal(dmg, 1u << 1 | 1u << 4);
    assert_int_equal(healed, 1u << 1);
    assert_true(e.f.writes_failed > 0);
    for (unsigned d = 0; d < 6; d++) {
        snprintf(p, sizeof(p), "%s/tmp", e.drives[d]);
        assert_int_equal(count_files(p), 0);
    }
    e.f.faulty = 0;
    assert_int_equal(ec_verify(&e.set, &g, id, size, &dmg), 1);
    assert_int_equal(dmg, 1u << 4);
    check_read(&e, &g, id, data, size);
    assert_int_equal(ec_heal(&e.set, &g, id, size, &dmg, &healed), 0);
    assert_int_equal(healed, 1u << 4);
    assert_int_equal(ec_verify(&e.set, &g, id, size, &dmg), 0);

    /* Without parity every shard is needed: one failing drive fails the write. */
    EcGeom plain = geom(3, 0);
    EcWriter *w;
    e.f.faulty = 1u << ec_shard_drive(&e.set, "p1ain", 2);
    assert_int_equal(ec_writer_open(&e.set, &plain, "p1ain", &w), 0);
    assert_int_equal(ec_writer_write(w, data, size), -EIO);
    ec_writer_free(w);
    assert_int_equal(count_files(e.root), 6);
    free(data);
    env_release(&e);
}

static void test_unaligned_ranges(void **state)
{
    EcGeom g = geom(4, 2);
    size_t size = 5 * 4 * (size_t)B + 777;
    uint8_t *data = pattern(size, 8), *out = malloc(size);
    const char *id = "5a5a5a";
    uint32_t x = 12345;
    Env e;

    env_init(&e, 6);
    put(&e, &g, id, data, size, 65536 + 17);
    /* Healthy, then without shard 1, then without shards 0 and 5. */
    for (int pass = 0; pass < 3; pass++) {
        if (pass == 1)
            assert_int_equal(unlink(shard_file(&e, id, 1)), 0);
        if (pass == 2) {
            uint32_t dmg, healed;
            assert_int_equal(ec_heal(&e.set, &g, id, size, &dmg, &healed), 0);
            assert_int_equal(unlink(shard_file(&e, id, 0)), 0);
            assert_int_equal(unlink(shard_file(&e, id, 5)), 0);
        }
        EcReader *r;
        assert_int_equal(ec_reader_open(&e.set, &g, id, size, &r), 0);
        /* Edges: block, stripe and object boundaries, the short last stripe. */
        size_t edges[][2] = {{0, 1},         {B - 1, 2},        {B, B},        {4 * B - 1, 2},
                             {4 * B, 4 * B}, {size - 777, 777}, {size - 1, 1}, {size - 800, 50},
                             {0, size},      {3, size - 3},     {size, 0}};
        for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
            memset(out, 0, edges[i][1]);
            assert_int_equal(ec_reader_read(r, edges[i][0], edges[i][1], out), 0);
            assert_memory_equal(out, data + edges[i][0], edges[i][1]);
        }
        for (int i = 0; i < 150; i++) {
            x = x * 1103515245u + 12345u;
            size_t off = (x >> 3) % size;
            x = x * 1103515245u + 12345u;
            size_t len = (x >> 3) % (i % 3 == 0 ? 3 * (size_t)B : 5000) + 1;
            len = SOV_MIN(len, size - off);
            assert_int_equal(ec_reader_read(r, off, len, out), 0);
            assert_memory_equal(out, data + off, len);
        }
        /* Rebuilding reads the first good parity shard: shard 5 is never needed, so its loss
         * is not seen by reads (ec_verify finds it). */
        uint32_t want = pass == 0 ? 0 : pass == 1 ? 1u << 1 : 1u << 0;
        assert_int_equal(ec_reader_damaged(r), want);
        ec_reader_free(r);
    }
    free(data);
    free(out);
    env_release(&e);
}

static void test_replaced_drive(void **state)
{
    EcGeom g = geom(4, 2);
    const char *ids[] = {"aa01", "bb02", "cc03", "dd04"};
    size_t sizes[] = {0, 10, 4 * (size_t)B + 1, 3u << 20};
    uint8_t *data[4], *orig[4];
    size_t olen[4];
    unsigned lost_shard[4];
    Env e;

    env_init(&e, 6);
    const unsigned drive = 2;
    for (int i = 0; i < 4; i++) {
        data[i] = pattern(sizes[i], 20 + (uint32_t)i);
        put(&e, &g, ids[i], data[i], sizes[i], 0);
        for (unsigned s = 0; s < 6; s++)
            if (ec_shard_drive(&e.set, ids[i], s) == drive)
                lost_shard[i] = s;
        orig[i] = slurp(shard_file(&e, ids[i], lost_shard[i]), &olen[i]);
    }
    rm_rf(e.drives[drive]);
    assert_int_equal(mkdir(e.drives[drive], 0750), 0);
    for (int i = 0; i < 4; i++) {
        uint32_t dmg, healed;
        check_read(&e, &g, ids[i], data[i], sizes[i]);
        assert_int_equal(ec_heal(&e.set, &g, ids[i], sizes[i], &dmg, &healed), 0);
        assert_int_equal(dmg, 1u << lost_shard[i]);
        assert_int_equal(healed, 1u << lost_shard[i]);
        assert_file_equals(shard_file(&e, ids[i], lost_shard[i]), orig[i], olen[i]);
        assert_int_equal(ec_verify(&e.set, &g, ids[i], sizes[i], &dmg), 0);
        free(data[i]);
        free(orig[i]);
    }
    /* heal of a healthy object rewrites nothing. */
    uint32_t dmg = 9, healed = 9;
    assert_int_equal(ec_heal(&e.set, &g, ids[0], sizes[0], &dmg, &healed), 0);
    assert_int_equal(dmg, 0);
    assert_int_equal(healed, 0);
    env_release(&e);
}

/* More drives than k + m: each object on k + m distinct drives, spread over all of them. */
static void test_placement_and_remove(void **state)
{
    EcGeom g = geom(4, 2);
    uint8_t *data = pattern(5000, 9);
    uint32_t used_all = 0;
    Env e;

    env_init(&e, 9);
    for (int o = 0; o < 12; o++) {
        char id[16];
        uint32_t used = 0;
        snprintf(id, sizeof(id), "0b%02d", o);
        put(&e, &g, id, data, 5000, 0);
        for (unsigned s = 0; s < 6; s++)
            used |= 1u << ec_shard_drive(&e.set, id, s);
        assert_int_equal(__builtin_popcount(used), 6);
        used_all |= used;
        check_read(&e, &g, id, data, 5000);
        assert_int_equal(ec_remove(&e.set, &g, id), 0);
        uint8_t c;
        assert_int_equal(ec_read(&e.set, &g, id, 5000, 0, 1, &c, NULL), -EIO);
    }
    assert_int_equal(used_all, (1u << 9) - 1);
    assert_int_equal(count_files(e.root), 0);
    free(data);
    env_release(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_geometry),
        cmocka_unit_test(test_crc_is_crc32c),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_lost_shards_2_2),
        cmocka_unit_test(test_lost_shards_4_2),
        cmocka_unit_test(test_corrupt_block),
        cmocka_unit_test(test_bad_header_short_file),
        cmocka_unit_test(test_eio_read),
        cmocka_unit_test(test_eio_write),
        cmocka_unit_test(test_heal_fails_again),
        cmocka_unit_test(test_unaligned_ranges),
        cmocka_unit_test(test_replaced_drive),
        cmocka_unit_test(test_placement_and_remove),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
