/* SPDX-License-Identifier: Apache-2.0 */
/* sov-s3's store on its own: the layout encoding of segments, the writer thread's group commit
 * (ops applied in one transaction, a failing op rolled back alone, files unlinked only after a
 * successful commit) and the start-up sweep of files no metadata names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "s3.h"

static char dir[] = "/tmp/sov-s3store-XXXXXX";

static void test_layout_roundtrip(void **st)
{
    uint32_t crcs1[2] = {0x11111111, 0x22222222}, crcs2[1] = {0xdeadbeef};
    S3Segment segs[2] = {
        {.file = "0123456789abcdef0123456789abcdef",
         .size = S3_BLOCK + 5,
         .nblocks = 2,
         .crcs = crcs1,
         .etag = "d41d8cd98f00b204e9800998ecf8427e"},
        {.file = "fedcba9876543210fedcba9876543210", .size = 7, .nblocks = 1, .crcs = crcs2},
    };
    SovBuf b = SOV_BUF_INIT;
    S3Segment *out;
    uint32_t n;

    assert_int_equal(s3_layout_encode(segs, 2, &b), 0);
    assert_int_equal(s3_layout_decode(b.ptr, b.len, &out, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(out[0].file, segs[0].file);
    assert_string_equal(out[0].etag, segs[0].etag);
    assert_int_equal(out[0].size, S3_BLOCK + 5);
    assert_int_equal(out[0].crcs[1], 0x22222222);
    assert_int_equal(out[1].size, 7);
    assert_int_equal(out[1].etag[0], '\0');
    s3_segments_free(out, n);
    /* every truncation and a flipped magic are refused */
    for (size_t cut = 0; cut < b.len; cut++)
        assert_int_equal(s3_layout_decode(b.ptr, cut, &out, &n), -EBADMSG);
    b.ptr[0] ^= 1;
    assert_int_equal(s3_layout_decode(b.ptr, b.len, &out, &n), -EBADMSG);
    b.ptr[0] ^= 1;
    /* a block count that does not match the size */
    segs[1].size = S3_BLOCK + 1;
    sov_buf_reset(&b);
    s3_layout_encode(segs, 2, &b);
    assert_int_equal(s3_layout_decode(b.ptr, b.len, &out, &n), -EBADMSG);
    sov_buf_release(&b);
}

typedef struct TestOp {
    S3WriteOp w;
    const char *sql;
    int fail;
    int *done_count;
    int status;
} TestOp;

static int op_apply(sqlite3 *db, S3WriteOp *w)
{
    TestOp *op = (TestOp *)w;
    if (sqlite3_exec(db, op->sql, NULL, NULL, NULL) != SQLITE_OK)
        return -EIO;
    return op->fail;
}

static void op_done(S3WriteOp *w, int status)
{
    TestOp *op = (TestOp *)w;
    op->status = status;
    (*op->done_count)++;
}

static int count_rows(sqlite3 *db)
{
    sqlite3_stmt *s;
    int n = -1;
    sqlite3_prepare_v2(db, "SELECT count(*) FROM buckets", -1, &s, NULL);
    if (sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return n;
}

static bool file_exists(const char *rel)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    return access(p, F_OK) == 0;
}

static void touch(const char *rel)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    FILE *f = fopen(p, "we");
    assert_non_null(f);
    fputs("x", f);
    fclose(f);
}

static void test_group_commit_and_sweep(void **st)
{
    S3StoreConfig cfg = {.data_dir = dir, .fsync = false};
    SovBuf err = SOV_BUF_INIT;
    S3Store *store;
    uv_loop_t loop;
    int done = 0;

    assert_non_null(mkdtemp(dir));
    assert_int_equal(s3_store_open(&cfg, &store, &err), 0);
    uv_loop_init(&loop);
    S3Loop *l = s3_loop_new(store, &loop);
    assert_non_null(l);

    /* a data file that the second op's commit unreferences, and one of a failing op */
    char sub[512];
    snprintf(sub, sizeof(sub), "%s/objects/aa", dir);
    mkdir(sub, 0750);
    touch("objects/aa/aa000000000000000000000000000001");
    touch("objects/aa/aa000000000000000000000000000002");
    TestOp ops[3] = {
        {.sql = "INSERT INTO buckets(name, owner, region, created_ms) VALUES('one','a','r',1)"},
        {.sql = "INSERT INTO buckets(name, owner, region, created_ms) VALUES('two','a','r',1)"},
        {.sql = "INSERT INTO buckets(name, owner, region, created_ms) VALUES('bad','a','r',1)",
         .fail = -EEXIST},
    };
    for (int i = 0; i < 3; i++) {
        ops[i].w.apply = op_apply;
        ops[i].w.done = op_done;
        ops[i].w.loop = l;
        ops[i].done_count = &done;
    }
    s3_op_unlink_after(&ops[1].w, "aa000000000000000000000000000001");
    s3_op_unlink_after(&ops[2].w, "aa000000000000000000000000000002");
    for (int i = 0; i < 3; i++)
        s3_store_submit(store, &ops[i].w);
    while (done < 3)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(ops[0].status, 0);
    assert_int_equal(ops[1].status, 0);
    assert_int_equal(ops[2].status, -EEXIST);
    /* the failing op was rolled back alone; its file stays, the committed op's file is gone */
    assert_int_equal(count_rows(s3_loop_db(l)), 2);
    assert_false(file_exists("objects/aa/aa000000000000000000000000000001"));
    assert_true(file_exists("objects/aa/aa000000000000000000000000000002"));

    s3_loop_close(l);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    s3_store_close(store);

    /* Reopen: the sweep removes tmp/ leftovers and files no metadata names; rows stay. */
    touch("tmp/half-written");
    assert_int_equal(s3_store_open(&cfg, &store, &err), 0);
    assert_false(file_exists("tmp/half-written"));
    assert_false(file_exists("objects/aa/aa000000000000000000000000000002"));
    uv_loop_init(&loop);
    l = s3_loop_new(store, &loop);
    assert_int_equal(count_rows(s3_loop_db(l)), 2);
    s3_loop_close(l);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    s3_store_close(store);
    sov_buf_release(&err);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

typedef struct HealRun {
    S3Store *store;
    S3HealStats st;
    int rc;
    uv_mutex_t mu;
    uv_cond_t cv;
    int opened;   /* shard opens the pass began */
    bool release; /* the test lets the first one go on */
} HealRun;

static void heal_thread(void *arg)
{
    HealRun *h = arg;
    h->rc = s3_store_heal_all(h->store, &h->st);
}

/* The drives' open: the first one of a pass waits until the test releases it; each then finds
 * no shard. */
static int gated_open(void *ud, const char *path, int flags, mode_t mode)
{
    HealRun *h = ud;
    (void)path, (void)flags, (void)mode;
    uv_mutex_lock(&h->mu);
    h->opened++;
    uv_cond_signal(&h->cv);
    while (!h->release)
        uv_cond_wait(&h->cv, &h->mu);
    uv_mutex_unlock(&h->mu);
    return -ENOENT;
}

/* s3_store_stop (what SIGTERM does) ends a heal pass between segments: a pass that runs ends
 * after the segment it is on and later ones return at once, -ECANCELED. */
static void test_heal_pass_stops(void **st)
{
    char drives[3 * 600], d[600];
    SovBuf err = SOV_BUF_INIT, b = SOV_BUF_INIT;
    S3Store *store;
    uv_loop_t loop;
    int done = 0;
    HealRun run = {.release = true};
    EcOps gated = ec_ops_posix;
    gated.open = gated_open;
    uv_mutex_init(&run.mu);
    uv_cond_init(&run.cv);

    snprintf(dir, sizeof(dir), "/tmp/sov-s3store-XXXXXX"); /* the template, once more */
    assert_non_null(mkdtemp(dir));
    size_t off = 0;
    for (int i = 0; i < 3; i++) {
        snprintf(d, sizeof(d), "%s/d%d", dir, i);
        assert_int_equal(mkdir(d, 0750), 0);
        off += (size_t)snprintf(drives + off, sizeof(drives) - off, "%s%s", i ? "," : "", d);
    }
    S3StoreConfig cfg = {.data_dir = dir,
                         .drives = drives,
                         .ec = "2+1",
                         .scrub_interval = 0,
                         .ec_ops = &gated,
                         .ec_ops_ud = &run};
    assert_int_equal(s3_store_open(&cfg, &store, &err), 0);
    run.store = store;
    uv_loop_init(&loop);
    S3Loop *l = s3_loop_new(store, &loop);
    assert_non_null(l);
    /* three objects of two erasure-coded segments each, all of one data file whose shards were
     * never written */
    S3Segment seg = {.file = "0123456789abcdef0123456789abcde0",
                     .size = 5,
                     .ec_k = 2,
                     .ec_m = 1,
                     .ec_block = EC_BLOCK_DEFAULT}; /* its CRCs live in the shards */
    S3Segment segs[2] = {seg, seg};
    assert_int_equal(s3_layout_encode(segs, 2, &b), 0);
    char hex[2 * 512 + 1];
    assert_true(b.len < 512);
    for (size_t i = 0; i < b.len; i++)
        snprintf(hex + 2 * i, 3, "%02x", (unsigned char)b.ptr[i]);
    TestOp ops[3];
    char sqls[3][2048];
    for (int i = 0; i < 3; i++) {
        snprintf(sqls[i], sizeof(sqls[i]),
                 "INSERT INTO objects(bucket, key, version, is_latest, size, etag, mtime_ms,"
                 " storage_class, meta, layout) VALUES('b', 'k%d', 'null', 1, 5, 'e', 1,"
                 " 'STANDARD', '{}', x'%s')",
                 i, hex);
        ops[i] = (TestOp){.sql = sqls[i], .done_count = &done};
        ops[i].w.apply = op_apply;
        ops[i].w.done = op_done;
        ops[i].w.loop = l;
        s3_store_submit(store, &ops[i].w);
    }
    while (done < 3)
        uv_run(&loop, UV_RUN_ONCE);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ops[i].status, 0);

    S3HealStats hs;
    assert_int_equal(s3_store_heal_all(store, &hs), 0);
    assert_int_equal(hs.segments, 6);

    /* a pass held in its first shard open while the store stops */
    run.release = false;
    run.opened = 0; /* the first pass's opens went through */
    uv_thread_t t;
    assert_int_equal(uv_thread_create(&t, heal_thread, &run), 0);
    uv_mutex_lock(&run.mu);
    for (int i = 0; i < 30 && run.opened == 0; i++) /* a pass that never opens fails, not hangs */
        (void)uv_cond_timedwait(&run.cv, &run.mu, 1000000000ull);
    int opened = run.opened;
    uv_mutex_unlock(&run.mu);
    s3_store_stop(store);
    uv_mutex_lock(&run.mu);
    run.release = true;
    uv_cond_broadcast(&run.cv);
    uv_mutex_unlock(&run.mu);
    assert_int_equal(uv_thread_join(&t), 0);
    assert_true(opened > 0);
    assert_int_equal(run.rc, -ECANCELED);
    assert_int_equal(run.st.segments, 1); /* not the object's second segment, nor the others */
    assert_int_equal(s3_store_heal_all(store, &hs), -ECANCELED);
    assert_int_equal(hs.segments, 0);

    s3_loop_close(l);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    s3_store_close(store);
    uv_mutex_destroy(&run.mu);
    uv_cond_destroy(&run.cv);
    sov_buf_release(&err);
    sov_buf_release(&b);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_roundtrip),
        cmocka_unit_test(test_group_commit_and_sweep),
        cmocka_unit_test(test_heal_pass_stops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
