/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of sov-block's volume engine on a temp directory: I/O on plain and encrypted
 * volumes, thin provisioning, snapshots and clones (isolation, sharing, deletion order),
 * resize, trim and write-zeroes, block status, persistence, crash simulation (a child that
 * exits without closing, copies of the store taken after a flush, torn map journals, journal
 * compaction) and a random-operation model test against an in-memory reference. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vol-int.h"

#define MiB (1024ull * 1024)
#define CL  VOL_CLUSTER

static char dir[64];
static const uint8_t master[VOL_MASTER_KEY_LEN] = "0123456789abcdef0123456789abcdef";
static const uint8_t wrong[VOL_MASTER_KEY_LEN] = "fedcba9876543210fedcba9876543210";

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void rm_rf(const char *path)
{
    (void)nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/sov-vol-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state)
{
    rm_rf(dir);
    return 0;
}

static VolStore *open_store(const char *d, const uint8_t *key, bool fsync_)
{
    VolStore *st = NULL;
    SovBuf err = SOV_BUF_INIT;
    int r = vol_store_open(d, key, fsync_, &st, &err);

    if (r < 0)
        fail_msg("vol_store_open: %d %s", r, err.ptr ? err.ptr : "");
    sov_buf_release(&err);
    return st;
}

static Volume *must_open(VolStore *st, const char *name)
{
    int r = 0;
    Volume *v = vol_open(st, name, &r);

    if (!v)
        fail_msg("vol_open %s: %d", name, r);
    return v;
}

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static void check_read(Volume *v, uint64_t off, const uint8_t *want, uint32_t n)
{
    uint8_t *got = malloc(n);

    assert_non_null(got);
    assert_int_equal(vol_read(v, got, off, n), 0);
    assert_memory_equal(got, want, n);
    free(got);
}

static void check_zero(Volume *v, uint64_t off, uint32_t n)
{
    uint8_t *got = malloc(n);

    assert_non_null(got);
    memset(got, 0xAA, n);
    assert_int_equal(vol_read(v, got, off, n), 0);
    assert_true(all_zero(got, n));
    free(got);
}

static void layer_file(VolLayer *l, const char *ext, char *out, size_t n)
{
    snprintf(out, n, "%s/layer-%llu.%s", dir, (unsigned long long)l->id, ext);
}

static off_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

static int count_layer_files(const char *d)
{
    DIR *dd = opendir(d);
    struct dirent *de;
    int n = 0;

    assert_non_null(dd);
    while ((de = readdir(dd)))
        if (strncmp(de->d_name, "layer-", 6) == 0)
            n++;
    closedir(dd);
    return n;
}

static void test_basic_io(void **state)
{
    VolStore *st = open_store(dir, NULL, false);
    uint8_t *a = malloc(3 * CL), *b = malloc(3 * CL);
    char path[256];
    struct stat sb;
    VolInfo info;
    Volume *v;

    assert_int_equal(vol_create(st, "vol1", 1024 * MiB, false, NULL), 0);
    v = must_open(st, "vol1");
    assert_int_equal(vol_size(v), 1024 * MiB);
    assert_false(vol_read_only(v));
    check_zero(v, 0, 3 * CL);
    check_zero(v, 1024 * MiB - 4096, 4096);

    fill(a, 3 * CL, 1);
    assert_int_equal(vol_write(v, a, 4096, 4096, false), 0); /* partial, new cluster */
    check_read(v, 4096, a, 4096);
    check_zero(v, 0, 4096);
    check_zero(v, 8192, CL - 8192);
    assert_int_equal(vol_write(v, a, 5 * CL + 100, 2 * CL + 7, false), 0); /* unaligned span */
    check_read(v, 5 * CL + 100, a, 2 * CL + 7);
    check_zero(v, 5 * CL, 100);
    check_zero(v, 7 * CL + 107, CL - 107);
    fill(b, 3 * CL, 2);
    assert_int_equal(vol_write(v, b, 5 * CL + 1000, 333, false), 0); /* in place */
    memcpy(a + 900, b, 333);
    check_read(v, 5 * CL + 100, a, 2 * CL + 7);
    /* a read across holes and data of several clusters */
    assert_int_equal(vol_read(v, b, 4 * CL, 3 * CL), 0);
    assert_true(all_zero(b, CL + 100));
    assert_memory_equal(b + CL + 100, a, 2 * CL - 100);
    /* out of range */
    assert_int_equal(vol_read(v, b, 1024 * MiB - 10, 11), -EINVAL);
    assert_int_equal(vol_write(v, b, 1024 * MiB, 1, false), -EINVAL);
    assert_int_equal(vol_read(v, b, 1024 * MiB, 0), 0);
    assert_int_equal(vol_flush(v), 0);

    /* thin: four clusters written of 16384 */
    layer_file(v->e->layer, "data", path, sizeof(path));
    assert_int_equal(stat(path, &sb), 0);
    assert_true(sb.st_size <= 4 * (off_t)CL);
    assert_true(sb.st_blocks * 512 <= 4 * CL);
    assert_int_equal(vol_info(st, "vol1", &info), 0);
    assert_int_equal(info.allocated, 4 * CL);
    assert_string_equal(info.name, "vol1");
    assert_false(info.encrypted);
    assert_false(info.is_snapshot);
    assert_true(info.created_ms > 0);

    vol_close(v);
    vol_store_close(st);
    /* persistence */
    st = open_store(dir, NULL, false);
    v = must_open(st, "vol1");
    check_read(v, 5 * CL + 100, a, 2 * CL + 7);
    vol_close(v);
    vol_store_close(st);
    free(a);
    free(b);
}

static void test_errors(void **state)
{
    VolStore *st = open_store(dir, NULL, false), *st2 = NULL;
    SovBuf err = SOV_BUF_INIT;
    uint8_t buf[512] = {1};
    VolInfo *list;
    size_t n;
    Volume *v, *v2;
    int r = 0;

    assert_int_equal(vol_create(st, ".hidden", MiB, false, &err), -EINVAL);
    assert_true(err.len > 0);
    assert_int_equal(vol_create(st, "a/b", MiB, false, NULL), -EINVAL);
    assert_int_equal(vol_create(st, "", MiB, false, NULL), -EINVAL);
    assert_int_equal(vol_create(st, "x", 0, false, NULL), -EINVAL);
    assert_int_equal(vol_create(st, "x", 1000, false, NULL), -EINVAL);
    assert_int_equal(vol_create(st, "x", VOL_MAX_SIZE + 512, false, NULL), -EINVAL);
    assert_int_equal(vol_create(st, "x", MiB, true, NULL), -ENOKEY);
    assert_int_equal(vol_create(st, "x", MiB + 512, false, NULL), 0);
    assert_int_equal(vol_create(st, "x", MiB, false, NULL), -EEXIST);
    assert_int_equal(vol_create(st, "y", MiB, false, NULL), 0);
    assert_int_equal(vol_snapshot(st, "x", "y", NULL), -EEXIST);
    assert_int_equal(vol_snapshot(st, "nope", "s", NULL), -ENOENT);
    assert_int_equal(vol_clone(st, "x", "c", NULL), -ENOENT); /* not a snapshot */
    assert_int_equal(vol_delete(st, "nope", NULL), -ENOENT);
    assert_null(vol_open(st, "nope", &r));
    assert_int_equal(r, -ENOENT);
    assert_int_equal(vol_resize(st, "x", MiB, NULL), -EINVAL);
    /* a second store on the same directory is refused */
    assert_int_equal(vol_store_open(dir, NULL, false, &st2, NULL), -EBUSY);

    v = must_open(st, "x");
    v2 = must_open(st, "x");
    assert_ptr_equal(v, v2);
    assert_int_equal(vol_delete(st, "x", NULL), -EBUSY);
    /* the partial last cluster */
    assert_int_equal(vol_write(v, buf, MiB, 512, false), 0);
    check_read(v, MiB, buf, 512);
    vol_close(v2);
    assert_int_equal(vol_delete(st, "x", NULL), -EBUSY);
    assert_int_equal(vol_snapshot(st, "x", "snap", NULL), 0);
    assert_int_equal(vol_snapshot(st, "snap", "snap2", NULL), -ENOENT);
    assert_int_equal(vol_resize(st, "snap", 2 * MiB, NULL), -ENOENT);
    v2 = must_open(st, "snap");
    assert_true(vol_read_only(v2));
    assert_int_equal(vol_write(v2, buf, 0, 512, false), -EINVAL);
    assert_int_equal(vol_trim(v2, 0, 512, false), -EINVAL);
    assert_int_equal(vol_delete(st, "snap", NULL), -EBUSY);
    vol_close(v2);
    vol_close(v);

    assert_int_equal(vol_list(st, &list, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(list[0].name, "snap");
    assert_true(list[0].is_snapshot);
    assert_string_equal(list[0].origin, "x");
    assert_int_equal(list[0].allocated, CL);
    assert_string_equal(list[1].name, "x");
    assert_int_equal(list[1].allocated, 0);
    assert_string_equal(list[2].name, "y");
    free(list);
    sov_buf_release(&err);
    vol_store_close(st);
}

static void test_snapshot_clone(void **state)
{
    VolStore *st = open_store(dir, NULL, false);
    uint8_t *a = malloc(4 * CL), *b = malloc(4 * CL), *c = malloc(4 * CL);
    Volume *v, *s, *k;
    VolInfo info;

    fill(a, 4 * CL, 10);
    fill(b, 4 * CL, 11);
    fill(c, 4 * CL, 12);
    assert_int_equal(vol_create(st, "vol", 8 * CL, false, NULL), 0);
    v = must_open(st, "vol");
    assert_int_equal(vol_write(v, a, 0, 4 * CL, false), 0);
    /* snapshot while open and unflushed */
    assert_int_equal(vol_snapshot(st, "vol", "s1", NULL), 0);
    assert_int_equal(vol_write(v, b, 100, 5000, false), 0);    /* copy-on-write, partial */
    assert_int_equal(vol_write(v, b, 2 * CL, CL, false), 0);   /* whole cluster */
    assert_int_equal(vol_write(v, b, 5 * CL, 1000, false), 0); /* above a hole */
    s = must_open(st, "s1");
    check_read(s, 0, a, 4 * CL);
    check_zero(s, 4 * CL, 4 * CL);
    memcpy(c, a, 4 * CL);
    memcpy(c + 100, b, 5000);
    memcpy(c + 2 * CL, b, CL);
    check_read(v, 0, c, 4 * CL);
    check_read(v, 5 * CL, b, 1000);

    assert_int_equal(vol_clone(st, "s1", "clone", NULL), 0);
    k = must_open(st, "clone");
    check_read(k, 0, a, 4 * CL);
    assert_int_equal(vol_write(k, c, 3 * CL + 7, 77, false), 0);
    check_read(k, 3 * CL + 7, c, 77);
    check_read(k, 3 * CL, a + 3 * CL, 7);
    check_read(s, 0, a, 4 * CL); /* nothing leaks back */
    assert_int_equal(vol_read(v, b, 3 * CL, CL), 0);
    assert_memory_equal(b, a + 3 * CL, CL);
    assert_int_equal(vol_info(st, "clone", &info), 0);
    assert_string_equal(info.origin, "s1");
    assert_int_equal(info.allocated, CL);
    vol_close(s);

    /* a second snapshot; then delete the first snapshot and the volume: the clone lives on */
    assert_int_equal(vol_snapshot(st, "vol", "s2", NULL), 0);
    vol_close(v);
    assert_int_equal(vol_delete(st, "s1", NULL), 0);
    check_read(k, 0, a, 3 * CL);
    assert_int_equal(vol_delete(st, "vol", NULL), 0);
    s = must_open(st, "s2");
    check_read(s, 0, c, 4 * CL);
    vol_close(s);
    vol_close(k);
    vol_store_close(st);

    st = open_store(dir, NULL, false);
    k = must_open(st, "clone");
    check_read(k, 0, a, 3 * CL);
    check_read(k, 3 * CL + 7, c, 77);
    vol_close(k);
    assert_int_equal(vol_delete(st, "clone", NULL), 0);
    assert_true(count_layer_files(dir) > 0); /* s2 and its parent */
    assert_int_equal(vol_delete(st, "s2", NULL), 0);
    assert_int_equal(count_layer_files(dir), 0);
    vol_store_close(st);
    free(a);
    free(b);
    free(c);
}

static void test_resize(void **state)
{
    VolStore *st = open_store(dir, NULL, false);
    uint8_t a[4096];
    VolInfo info;
    Volume *v, *s;

    fill(a, sizeof(a), 20);
    assert_int_equal(vol_create(st, "r", CL + 512, false, NULL), 0);
    v = must_open(st, "r");
    assert_int_equal(vol_write(v, a, CL, 512, false), 0);
    assert_int_equal(vol_snapshot(st, "r", "rs", NULL), 0);
    assert_int_equal(vol_resize(st, "r", 100 * MiB, NULL), 0);
    assert_int_equal(vol_size(v), 100 * MiB);
    check_read(v, CL, a, 512);
    check_zero(v, CL + 512, CL - 512); /* past the old end reads zeros */
    check_zero(v, 50 * MiB, 4096);
    assert_int_equal(vol_write(v, a, 100 * MiB - 4096, 4096, false), 0);
    check_read(v, 100 * MiB - 4096, a, 4096);
    assert_int_equal(vol_info(st, "rs", &info), 0);
    assert_int_equal(info.size, CL + 512);
    s = must_open(st, "rs");
    assert_int_equal(vol_read(s, a, CL + 512, 1), -EINVAL);
    vol_close(s);
    vol_close(v);
    vol_store_close(st);
    st = open_store(dir, NULL, false);
    v = must_open(st, "r");
    assert_int_equal(vol_size(v), 100 * MiB);
    fill(a, sizeof(a), 20);
    check_read(v, 100 * MiB - 4096, a, 4096);
    vol_close(v);
    /* grows while closed too */
    assert_int_equal(vol_resize(st, "r", 200 * MiB, NULL), 0);
    v = must_open(st, "r");
    check_read(v, 100 * MiB - 4096, a, 4096);
    check_zero(v, 200 * MiB - 4096, 4096);
    vol_close(v);
    vol_store_close(st);
}

static bool file_contains(const char *path, const uint8_t *needle, size_t n)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    size_t len;
    bool found = false;

    if (!f)
        return false;
    buf = malloc(64 * MiB);
    len = fread(buf, 1, 64 * MiB, f);
    fclose(f);
    for (size_t i = 0; i + n <= len && !found; i++)
        found = memcmp(buf + i, needle, n) == 0;
    free(buf);
    return found;
}

static bool dir_contains(const char *d, const uint8_t *needle, size_t n)
{
    DIR *dd = opendir(d);
    struct dirent *de;
    char path[512];
    bool found = false;

    while ((de = readdir(dd)) && !found) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", d, de->d_name);
        found = file_contains(path, needle, n);
    }
    closedir(dd);
    return found;
}

static void test_encryption(void **state)
{
    static const char marker[] = "PLAINTEXT-MARKER-0123456789";
    VolStore *st = open_store(dir, master, true);
    uint8_t *a = malloc(2 * CL), *b = malloc(2 * CL);
    VolInfo info;
    Volume *v, *k;
    int r = 0;

    for (size_t i = 0; i + sizeof(marker) <= 2 * CL; i += sizeof(marker))
        memcpy(a + i, marker, sizeof(marker));
    fill(b, 2 * CL, 30);
    assert_int_equal(vol_create(st, "enc", 16 * MiB, true, NULL), 0);
    v = must_open(st, "enc");
    check_zero(v, 0, 2 * CL);
    assert_int_equal(vol_write(v, a, 0, 2 * CL, false), 0);        /* whole clusters */
    assert_int_equal(vol_write(v, a, 5 * CL + 3, 1000, false), 0); /* new, unaligned */
    assert_int_equal(vol_write(v, b, 100, 50, false), 0);          /* in place, in one sector */
    assert_int_equal(vol_write(v, b, 1000, 3000, true), 0);        /* in place, spanning */
    memcpy(b + 2 * CL - 1000, a, 1000);
    memcpy(a + 100, b, 50);
    memcpy(a + 1000, b, 3000);
    check_read(v, 0, a, 2 * CL);
    check_read(v, 101, a + 101, 3);
    check_read(v, 5 * CL + 3, b + 2 * CL - 1000, 1000);
    check_zero(v, 5 * CL, 3);
    check_zero(v, 5 * CL + 1003, CL - 1003);
    assert_int_equal(vol_info(st, "enc", &info), 0);
    assert_true(info.encrypted);

    /* snapshot and clone share the key; copy-on-write of ciphertext stays readable */
    assert_int_equal(vol_snapshot(st, "enc", "encs", NULL), 0);
    assert_int_equal(vol_clone(st, "encs", "encc", NULL), 0);
    k = must_open(st, "encc");
    check_read(k, 0, a, 2 * CL);
    assert_int_equal(vol_write(k, marker, CL + 17, sizeof(marker), false), 0);
    memcpy(b, a, 2 * CL);
    memcpy(b + CL + 17, marker, sizeof(marker));
    check_read(k, 0, b, 2 * CL);
    check_read(v, 0, a, 2 * CL);
    assert_int_equal(vol_write_zeroes(k, 10, 600, false, false), 0);
    memset(b + 10, 0, 600);
    check_read(k, 0, b, 2 * CL);
    assert_int_equal(vol_trim(k, 0, CL, false), 0);
    check_zero(k, 0, CL);
    check_read(v, 0, a, CL);
    vol_close(k);
    vol_close(v);
    vol_store_close(st);
    assert_false(dir_contains(dir, (const uint8_t *)marker, 16));

    st = open_store(dir, wrong, false);
    assert_null(vol_open(st, "enc", &r));
    assert_int_equal(r, -EKEYREJECTED);
    vol_store_close(st);
    st = open_store(dir, NULL, false);
    assert_null(vol_open(st, "encc", &r));
    assert_int_equal(r, -ENOKEY);
    vol_store_close(st);
    st = open_store(dir, master, false);
    v = must_open(st, "enc");
    check_read(v, 0, a, 2 * CL);
    vol_close(v);
    v = must_open(st, "encs");
    check_read(v, 0, a, 2 * CL);
    vol_close(v);
    vol_store_close(st);
    free(a);
    free(b);
}

typedef struct Extents {
    uint64_t len[64];
    uint32_t flags[64];
    int n, stop_after;
} Extents;

static int collect_extent(void *ctx, uint64_t length, uint32_t flags)
{
    Extents *e = ctx;

    assert_true(e->n < 64);
    e->len[e->n] = length;
    e->flags[e->n] = flags;
    e->n++;
    return e->n == e->stop_after;
}

static void test_trim_zeroes_status(void **state)
{
    VolStore *st = open_store(dir, NULL, false);
    uint8_t *a = malloc(8 * CL);
    Extents ex = {0};
    VolInfo info;
    Volume *v, *k;

    fill(a, 8 * CL, 40);
    assert_int_equal(vol_create(st, "t", 8 * CL, false, NULL), 0);
    v = must_open(st, "t");
    assert_int_equal(vol_write(v, a, 0, 8 * CL, false), 0);
    assert_int_equal(vol_is_zero(v, 0, CL), 0);
    /* trim [CL/2, 3.5 CL): cluster 1 and 2 unmapped, halves of 0 and 3 zeroed */
    assert_int_equal(vol_trim(v, CL / 2, 3 * CL, false), 0);
    memset(a + CL / 2, 0, 3 * CL);
    check_read(v, 0, a, 8 * CL);
    assert_int_equal(vol_is_zero(v, CL, 2 * CL), 1);
    assert_int_equal(vol_is_zero(v, CL, 2 * CL + 1), 0);
    assert_int_equal(vol_info(st, "t", &info), 0);
    assert_int_equal(info.allocated, 6 * CL);
    /* write-zeroes without unmap keeps clusters; with it they go */
    assert_int_equal(vol_write_zeroes(v, 5 * CL, CL, false, false), 0);
    assert_int_equal(vol_write_zeroes(v, 6 * CL, 2 * CL, true, true), 0);
    memset(a + 5 * CL, 0, 3 * CL);
    check_read(v, 0, a, 8 * CL);
    assert_int_equal(vol_is_zero(v, 5 * CL, CL), 0);

    assert_int_equal(vol_block_status(v, 0, 8 * CL, collect_extent, &ex), 0);
    assert_int_equal(ex.n, 4);
    assert_int_equal(ex.len[0], CL);
    assert_int_equal(ex.flags[0], 0);
    assert_int_equal(ex.len[1], 2 * CL);
    assert_int_equal(ex.flags[1], 3);
    assert_int_equal(ex.len[2], 3 * CL);
    assert_int_equal(ex.flags[2], 0);
    assert_int_equal(ex.len[3], 2 * CL);
    assert_int_equal(ex.flags[3], 3);
    memset(&ex, 0, sizeof(ex));
    ex.stop_after = 2;
    assert_int_equal(vol_block_status(v, 100, 8 * CL, collect_extent, &ex), 0);
    assert_int_equal(ex.n, 2);
    assert_int_equal(ex.len[0], CL - 100);
    memset(&ex, 0, sizeof(ex));
    assert_int_equal(vol_block_status(v, CL + 5, 10, collect_extent, &ex), 0);
    assert_int_equal(ex.n, 1);
    assert_int_equal(ex.len[0], 10);
    assert_int_equal(ex.flags[0], 3);
    assert_int_equal(vol_block_status(v, 8 * CL, 1, collect_extent, &ex), -EINVAL);

    /* a trim in a clone masks the parent's data */
    assert_int_equal(vol_snapshot(st, "t", "ts", NULL), 0);
    assert_int_equal(vol_clone(st, "ts", "tc", NULL), 0);
    k = must_open(st, "tc");
    assert_int_equal(vol_trim(k, 0, CL, false), 0);
    check_zero(k, 0, CL);
    assert_int_equal(vol_is_zero(k, 0, CL), 1);
    assert_int_equal(vol_write(k, a + 5, 10, 20, false), 0); /* partial over a masked cluster */
    check_zero(k, 0, 10);
    check_read(k, 10, a + 5, 20);
    check_zero(k, 30, CL - 30);
    check_read(v, 0, a, 8 * CL);
    vol_close(k);
    vol_close(v);
    vol_store_close(st);
    st = open_store(dir, NULL, false);
    k = must_open(st, "tc");
    check_zero(k, 0, 10);
    check_read(k, 10, a + 5, 20);
    check_read(k, CL, a + CL, 7 * CL);
    vol_close(k);
    vol_store_close(st);
    free(a);
}

/* A child writes, flushes, writes more without flushing and exits without closing. */
static void test_crash_child(void **state)
{
    uint8_t *a = malloc(4 * CL), *b = malloc(2 * CL), *got = malloc(CL);
    VolStore *st;
    Volume *v;
    pid_t pid;
    int status;

    fill(a, 4 * CL, 50);
    fill(b, 2 * CL, 51);
    st = open_store(dir, NULL, true);
    assert_int_equal(vol_create(st, "c", 64 * CL, false, NULL), 0);
    vol_store_close(st);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        st = open_store(dir, NULL, true);
        v = must_open(st, "c");
        if (vol_write(v, a, 0, 4 * CL, false) < 0 || vol_flush(v) < 0)
            _exit(1);
        if (vol_write(v, b, 10 * CL, 2 * CL, false) < 0 || /* new clusters, unflushed */
            vol_write(v, b, 0, CL, false) < 0 ||           /* in place, unflushed */
            vol_trim(v, CL, CL, false) < 0 ||              /* unmapping, unflushed */
            vol_write(v, b, 20 * CL + 4096, 4096, true) < 0)
            _exit(2);
        if (vol_write(v, b, 30 * CL, CL, false) < 0)
            _exit(3);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    st = open_store(dir, NULL, true);
    v = must_open(st, "c");
    /* cluster 0 was overwritten in place: old or new, nothing else */
    assert_int_equal(vol_read(v, got, 0, CL), 0);
    assert_true(memcmp(got, a, CL) == 0 || memcmp(got, b, CL) == 0);
    /* cluster 1: the trim was not flushed, the FUA write later flushed it */
    check_zero(v, CL, CL);
    check_read(v, 2 * CL, a + 2 * CL, 2 * CL);
    check_read(v, 10 * CL, b, 2 * CL); /* flushed by the FUA write */
    check_read(v, 20 * CL + 4096, b, 4096);
    check_zero(v, 20 * CL, 4096);
    check_zero(v, 30 * CL, CL); /* lost: its mapping never reached the journal */
    /* new allocations reuse the lost cluster and never show its old bytes */
    assert_int_equal(vol_write(v, a, 40 * CL + 8, 8, false), 0);
    check_zero(v, 40 * CL, 8);
    check_read(v, 40 * CL + 8, a, 8);
    check_zero(v, 40 * CL + 16, CL - 16);
    vol_close(v);
    vol_store_close(st);
    free(a);
    free(b);
    free(got);
}

static void copy_dir(const char *from, const char *to)
{
    DIR *d = opendir(from);
    struct dirent *de;
    char p1[512], p2[512];
    uint8_t *buf = malloc(MiB);

    assert_int_equal(mkdir(to, 0700), 0);
    while ((de = readdir(d))) {
        int in, out;
        ssize_t n;

        if (de->d_name[0] == '.' || strcmp(de->d_name, "lock") == 0)
            continue;
        snprintf(p1, sizeof(p1), "%s/%s", from, de->d_name);
        snprintf(p2, sizeof(p2), "%s/%s", to, de->d_name);
        in = open(p1, O_RDONLY);
        out = open(p2, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        assert_true(in >= 0 && out >= 0);
        while ((n = read(in, buf, MiB)) > 0)
            assert_int_equal(write(out, buf, (size_t)n), n);
        close(in);
        close(out);
    }
    closedir(d);
    free(buf);
}

/* A copy of the store taken right after a flush is what a crash at that moment leaves. */
typedef struct AsyncSeen {
    int calls;
    int order[8];
    int err[8];
} AsyncSeen;

static AsyncSeen seen;

static void async_done(void *ud, int err)
{
    int id = (int)(intptr_t)ud;
    seen.order[seen.calls] = id;
    seen.err[seen.calls] = err;
    seen.calls++;
}

static void test_flush_async(void **state)
{
    uint8_t *a = malloc(4 * CL), *b = malloc(4 * CL), *got = malloc(4 * CL);
    uv_loop_t loop;
    VolStore *st;
    Volume *v;
    pid_t pid;
    int status;

    fill(a, 4 * CL, 70);
    fill(b, 4 * CL, 71);
    uv_loop_init(&loop);
    memset(&seen, 0, sizeof(seen));
    st = open_store(dir, NULL, true);
    assert_int_equal(vol_create(st, "f", 64 * CL, false, NULL), 0);
    v = must_open(st, "f");
    /* nothing to flush: the callback runs inline */
    assert_int_equal(vol_flush_async(v, &loop, async_done, (void *)(intptr_t)1), 0);
    assert_int_equal(seen.calls, 1);
    /* one flight, two requests queued behind it (written meanwhile), then a synchronous flush
     * that must wait for the flight's disk work */
    assert_int_equal(vol_write(v, a, 0, 4 * CL, false), 0);
    assert_int_equal(vol_flush_async(v, &loop, async_done, (void *)(intptr_t)2), 0);
    assert_int_equal(vol_write(v, b, 8 * CL, 4 * CL, false), 0);
    assert_int_equal(vol_flush_async(v, &loop, async_done, (void *)(intptr_t)3), 0);
    assert_int_equal(vol_flush_async(v, &loop, async_done, (void *)(intptr_t)4), 0);
    assert_int_equal(vol_write(v, a, 20 * CL, CL, false), 0);
    assert_int_equal(vol_flush(v), 0);
    while (seen.calls < 4)
        assert_true(uv_run(&loop, UV_RUN_ONCE) >= 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(seen.order[i], i + 1);
        assert_int_equal(seen.err[i], 0);
    }
    assert_int_equal(vol_read(v, got, 8 * CL, 4 * CL), 0);
    assert_memory_equal(got, b, 4 * CL);
    /* everything acknowledged survives a process that dies without closing anything */
    vol_close(v);
    vol_store_close(st);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        uv_loop_t l2;
        uv_loop_init(&l2);
        memset(&seen, 0, sizeof(seen));
        st = open_store(dir, NULL, true);
        v = must_open(st, "f");
        if (vol_write(v, b, 30 * CL, 2 * CL, false) < 0 ||
            vol_flush_async(v, &l2, async_done, (void *)(intptr_t)5) < 0)
            _exit(1);
        while (seen.calls < 1)
            uv_run(&l2, UV_RUN_ONCE);
        _exit(seen.err[0] == 0 ? 0 : 2);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    st = open_store(dir, NULL, true);
    v = must_open(st, "f");
    assert_int_equal(vol_read(v, got, 0, 4 * CL), 0);
    assert_memory_equal(got, a, 4 * CL);
    assert_int_equal(vol_read(v, got, 30 * CL, 2 * CL), 0);
    assert_memory_equal(got, b, 2 * CL);
    assert_int_equal(vol_read(v, got, 20 * CL, CL), 0);
    assert_memory_equal(got, a, CL);
    vol_close(v);
    vol_store_close(st);
    uv_loop_close(&loop);
    free(a);
    free(b);
    free(got);
}

static void test_crash_copy(void **state)
{
    char copy[128];
    uint8_t *a = malloc(4 * CL), *b = malloc(4 * CL);
    VolStore *st, *st2;
    Volume *v, *w;

    snprintf(copy, sizeof(copy), "%s/copy", dir);
    fill(a, 4 * CL, 60);
    fill(b, 4 * CL, 61);
    st = open_store(dir, master, false);
    assert_int_equal(vol_create(st, "p", 16 * CL, false, NULL), 0);
    assert_int_equal(vol_create(st, "e", 16 * CL, true, NULL), 0);
    v = must_open(st, "p");
    w = must_open(st, "e");
    assert_int_equal(vol_write(v, a, 0, 4 * CL, false), 0);
    assert_int_equal(vol_write(w, a, 100, 3 * CL, false), 0);
    assert_int_equal(vol_flush(v), 0);
    assert_int_equal(vol_flush(w), 0);
    assert_int_equal(vol_trim(v, 0, CL, false), 0); /* unflushed unmapping */
    assert_int_equal(vol_write(v, b, 5 * CL, CL, false), 0);
    copy_dir(dir, copy);
    vol_close(v);
    vol_close(w);
    vol_store_close(st);

    st2 = open_store(copy, master, false);
    v = must_open(st2, "p");
    check_read(v, 0, a, 4 * CL); /* the trim was never flushed */
    check_zero(v, 5 * CL, CL);
    /* the unflushed cluster is free again and is reused without leaking its bytes */
    assert_int_equal(vol_write(v, a, 9 * CL + 1, 1, false), 0);
    check_zero(v, 9 * CL, 1);
    check_zero(v, 9 * CL + 2, CL - 2);
    vol_close(v);
    w = must_open(st2, "e");
    check_read(w, 100, a, 3 * CL);
    vol_close(w);
    vol_store_close(st2);
    free(a);
    free(b);
}

static void test_torn_journal(void **state)
{
    uint8_t *a = malloc(8 * CL);
    char path[256];
    VolStore *st;
    Volume *v;
    off_t len;
    int fd;

    fill(a, 8 * CL, 70);
    st = open_store(dir, NULL, false);
    assert_int_equal(vol_create(st, "j", 16 * CL, false, NULL), 0);
    v = must_open(st, "j");
    for (int i = 0; i < 4; i++) {
        assert_int_equal(vol_write(v, a + i * CL, (uint64_t)i * CL, CL, false), 0);
        assert_int_equal(vol_flush(v), 0);
    }
    layer_file(v->e->layer, "map", path, sizeof(path));
    vol_close(v);
    vol_store_close(st);
    len = file_size(path);
    assert_int_equal(len, 32 + 4 * 16);
    assert_int_equal(truncate(path, len - 7), 0); /* the last record torn */

    st = open_store(dir, NULL, false);
    v = must_open(st, "j");
    check_read(v, 0, a, 3 * CL);
    check_zero(v, 3 * CL, CL);
    assert_int_equal(file_size(path), 32 + 3 * 16); /* the torn tail was cut */
    assert_int_equal(vol_write(v, a + 5 * CL, 5 * CL, CL, true), 0);
    vol_close(v);
    vol_store_close(st);

    /* garbage after the records and a flipped bit in the last one */
    fd = open(path, O_WRONLY | O_APPEND);
    assert_int_equal(write(fd, "garbage garbage!", 16), 16);
    close(fd);
    st = open_store(dir, NULL, false);
    v = must_open(st, "j");
    check_read(v, 0, a, 3 * CL);
    check_read(v, 5 * CL, a + 5 * CL, CL);
    vol_close(v);
    vol_store_close(st);
    fd = open(path, O_RDWR);
    assert_int_equal(pwrite(fd, "\x01", 1, 32 + 3 * 16 + 5), 1);
    close(fd);
    st = open_store(dir, NULL, false);
    v = must_open(st, "j");
    check_read(v, 0, a, 3 * CL);
    check_zero(v, 5 * CL, CL);
    vol_close(v);
    vol_store_close(st);
    free(a);
}

static void test_compaction(void **state)
{
    uint8_t a[4096];
    char path[256];
    VolStore *st = open_store(dir, NULL, false);
    Volume *v;

    fill(a, sizeof(a), 80);
    assert_int_equal(vol_create(st, "k", 64 * CL, false, NULL), 0);
    v = must_open(st, "k");
    layer_file(v->e->layer, "map", path, sizeof(path));
    assert_int_equal(vol_write(v, a, 10 * CL, 4096, false), 0);
    for (int i = 0; i < 6000; i++) {
        assert_int_equal(vol_write(v, a, 0, 4096, false), 0);
        assert_int_equal(vol_trim(v, 0, CL, false), 0);
        if (i % 7 == 0)
            assert_int_equal(vol_flush(v), 0);
    }
    assert_int_equal(vol_write(v, a, 0, 4096, true), 0);
    assert_true(file_size(path) < 16 * 8192); /* rewritten at least once */
    assert_true(v->e->layer->npc <= 10);      /* freed clusters were reused */
    vol_close(v);
    vol_store_close(st);
    st = open_store(dir, NULL, false);
    v = must_open(st, "k");
    check_read(v, 0, a, 4096);
    check_read(v, 10 * CL, a, 4096);
    check_zero(v, CL, 9 * CL);
    vol_close(v);
    vol_store_close(st);
}

/* The model: every volume and snapshot as a plain byte array. */
#define MODEL_MAX 12
typedef struct ModelVol {
    char name[16];
    uint8_t *data;
    uint64_t size;
    bool snap;
    bool live;
} ModelVol;

static uint32_t rng_state = 12345;
static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return n ? rng_state % n : 0;
}

static ModelVol *pick(ModelVol *m, int n, int want_snap)
{
    int live = 0, k;

    for (int i = 0; i < n; i++)
        live += m[i].live && (want_snap < 0 || m[i].snap == want_snap);
    if (!live)
        return NULL;
    k = (int)rnd((uint32_t)live);
    for (int i = 0; i < n; i++)
        if (m[i].live && (want_snap < 0 || m[i].snap == want_snap) && k-- == 0)
            return &m[i];
    return NULL;
}

/* A free slot (extending the used part), or NULL when all are live. */
static ModelVol *slot(ModelVol *m, int *nm)
{
    for (int i = 0; i < MODEL_MAX; i++)
        if (!m[i].live) {
            if (i >= *nm)
                *nm = i + 1;
            memset(&m[i], 0, sizeof(m[i]));
            return &m[i];
        }
    return NULL;
}

static void run_model(bool enc, uint32_t seed, int iters)
{
    ModelVol m[MODEL_MAX] = {0};
    int nm = 1, names = 0;
    uint8_t *buf = malloc(4 * CL), *got = malloc(4 * CL);
    VolStore *st = open_store(dir, master, false);

    int counts[10] = {0};

    rng_state = seed;
    snprintf(m[0].name, sizeof(m[0].name), "m%d", names++);
    m[0].size = 8 * CL + 1024;
    m[0].data = calloc(1, m[0].size);
    m[0].live = true;
    assert_int_equal(vol_create(st, m[0].name, m[0].size, enc, NULL), 0);
    for (int it = 0; it < iters; it++) {
        uint32_t op = rnd(100);
        ModelVol *x = pick(m, nm, op < 70 ? 0 : -1), *sl;
        Volume *v;
        uint64_t off, len;

        if (!x) {
            ModelVol *c = slot(m, &nm);
            if (!c) { /* all slots hold snapshots: drop one */
                c = pick(m, nm, 1);
                assert_int_equal(vol_delete(st, c->name, NULL), 0);
                free(c->data);
                c->live = false;
                continue;
            }
            snprintf(c->name, sizeof(c->name), "m%d", names++);
            c->size = 4 * CL + 512 * rnd(300);
            c->data = calloc(1, c->size);
            c->live = true;
            assert_int_equal(vol_create(st, c->name, c->size, enc, NULL), 0);
            continue;
        }
        v = must_open(st, x->name);
        off = rnd((uint32_t)x->size);
        len = rnd(3 * CL); /* not inside SOV_MIN, which evaluates it twice */
        len = SOV_MIN(x->size - off, len);
        if (rnd(3) == 0) { /* sector aligned now and then */
            off &= ~511ull;
            len &= ~511ull;
        }
        if (op < 35 && !x->snap) {
            fill(buf, len, it);
            assert_int_equal(vol_write(v, buf, off, (uint32_t)len, rnd(10) == 0), 0);
            memcpy(x->data + off, buf, len);
        } else if (op < 45 && !x->snap) {
            bool trim = rnd(2);
            int r =
                trim ? vol_trim(v, off, len, false) : vol_write_zeroes(v, off, len, rnd(2), false);
            assert_int_equal(r, 0);
            memset(x->data + off, 0, len);
        } else if (op < 50 && !x->snap) {
            uint64_t ns = x->size + rnd(4) * CL + 512 * rnd(3);
            assert_int_equal(vol_resize(st, x->name, ns, NULL), 0);
            x->data = realloc(x->data, ns);
            memset(x->data + x->size, 0, ns - x->size);
            x->size = ns;
        } else if (op < 55) {
            assert_int_equal(vol_flush(v), 0);
        } else if (op < 70) {
            assert_int_equal(vol_read(v, got, off, (uint32_t)len), 0);
            assert_memory_equal(got, x->data + off, len);
        } else if (op < 78 && !x->snap && (sl = slot(m, &nm)) != NULL) {
            ModelVol *s = sl;
            snprintf(s->name, sizeof(s->name), "m%d", names++);
            assert_int_equal(vol_snapshot(st, x->name, s->name, NULL), 0);
            s->size = x->size;
            s->data = malloc(s->size);
            memcpy(s->data, x->data, s->size);
            s->snap = s->live = true;
        } else if (op < 84 && x->snap && (sl = slot(m, &nm)) != NULL) {
            ModelVol *c = sl;
            snprintf(c->name, sizeof(c->name), "m%d", names++);
            assert_int_equal(vol_clone(st, x->name, c->name, NULL), 0);
            c->size = x->size;
            c->data = malloc(c->size);
            memcpy(c->data, x->data, c->size);
            c->live = true;
        } else if (op < 90) {
            vol_close(v);
            v = NULL;
            if (rnd(3) == 0) {
                assert_int_equal(vol_delete(st, x->name, NULL), 0);
                free(x->data);
                x->data = NULL;
                x->live = false;
            }
        } else if (op < 93) {
            vol_close(v);
            v = NULL;
            vol_store_close(st);
            st = open_store(dir, master, false);
        } else {
            /* whole-volume check */
            for (uint64_t o = 0; o < x->size; o += 4 * CL) {
                uint32_t n = (uint32_t)SOV_MIN(4 * CL, x->size - o);
                assert_int_equal(vol_read(v, got, o, n), 0);
                assert_memory_equal(got, x->data + o, n);
            }
        }
        if (v)
            vol_close(v);
        counts[op / 10]++;
    }
    for (int i = 0; i < 10; i++)
        assert_true(counts[i] > iters / 40); /* every kind of operation ran */
    /* everything reads back after a reopen */
    vol_store_close(st);
    st = open_store(dir, master, false);
    for (int i = 0; i < nm; i++) {
        Volume *v;
        if (!m[i].live)
            continue;
        v = must_open(st, m[i].name);
        for (uint64_t o = 0; o < m[i].size; o += 4 * CL) {
            uint32_t n = (uint32_t)SOV_MIN(4 * CL, m[i].size - o);
            assert_int_equal(vol_read(v, got, o, n), 0);
            assert_memory_equal(got, m[i].data + o, n);
        }
        vol_close(v);
        assert_int_equal(vol_delete(st, m[i].name, NULL), 0);
        free(m[i].data);
    }
    assert_int_equal(count_layer_files(dir), 0);
    vol_store_close(st);
    free(buf);
    free(got);
}

static void test_model_plain(void **state)
{
    run_model(false, 4242, 3000);
}

static void test_model_encrypted(void **state)
{
    run_model(true, 777, 2000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_basic_io, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_clone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resize, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encryption, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trim_zeroes_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_child, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_async, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_journal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_model_plain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_model_encrypted, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
