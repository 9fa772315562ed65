/* SPDX-License-Identifier: Apache-2.0 */
/* sov-api's document store (src/api/store.c) on a temporary SQLite file: insert, update,
 * uniqueness, listing with filters, markers and order, transactions and rollback, revisions,
 * the commit hook, reopening (migrations run once) and the stripping of internal members. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "store.h"

typedef struct Fix {
    char dir[64];
    char path[128];
    ApiStore *s;
} Fix;

static int setup(void **state)
{
    Fix *f = calloc(1, sizeof(*f));
    SovBuf err = SOV_BUF_INIT;
    snprintf(f->dir, sizeof(f->dir), "/tmp/sov-apistore-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/state.db", f->dir);
    assert_int_equal(api_store_open(f->path, false, &f->s, &err), 0);
    sov_buf_release(&err);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    Fix *f = *state;
    char cmd[200];
    api_store_close(f->s);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static int put(ApiStore *s, const char *kind, const char *id, const char *project,
               const char *status, const char *uniq)
{
    json_t *doc = json_pack("{s:s,s:s,s:s}", "id", id, "status", status, "_secret", "x");
    ApiDocMeta m = {
        .kind = kind, .id = id, .project = project, .name = id, .status = status, .uniq = uniq};
    int r = api_store_insert(s, &m, doc);
    json_decref(doc);
    return r;
}

static void test_insert_get_update_delete(void **state)
{
    Fix *f = *state;
    json_t *doc;
    char project[40];
    assert_int_equal(put(f->s, "server", "a", "p1", "BUILD", NULL), 0);
    assert_int_equal(put(f->s, "server", "a", "p1", "BUILD", NULL), -EEXIST);
    assert_int_equal(api_store_get(f->s, "server", "a", &doc, project, sizeof(project)), 0);
    assert_string_equal(project, "p1");
    assert_string_equal(json_string_value(json_object_get(doc, "status")), "BUILD");
    json_object_set_new(doc, "status", json_string("ACTIVE"));
    ApiDocMeta m = {.kind = "server", .id = "a", .project = "p1", .status = "ACTIVE"};
    assert_int_equal(api_store_update(f->s, &m, doc), 0);
    json_decref(doc);
    ApiDocMeta missing = {.kind = "server", .id = "zz"};
    json_t *empty = json_object();
    assert_int_equal(api_store_update(f->s, &missing, empty), -ENOENT);
    json_decref(empty);
    assert_int_equal(api_store_get(f->s, "server", "a", &doc, NULL, 0), 0);
    assert_string_equal(json_string_value(json_object_get(doc, "status")), "ACTIVE");
    api_doc_public(doc);
    assert_null(json_object_get(doc, "_secret"));
    json_decref(doc);
    /* the same id in another kind is another document */
    assert_int_equal(put(f->s, "volume", "a", "p1", "available", NULL), 0);
    assert_int_equal(api_store_delete(f->s, "server", "a"), 0);
    assert_int_equal(api_store_delete(f->s, "server", "a"), -ENOENT);
    assert_int_equal(api_store_get(f->s, "volume", "a", &doc, NULL, 0), 0);
    json_decref(doc);
}

static void test_uniq(void **state)
{
    Fix *f = *state;
    json_t *doc;
    assert_int_equal(put(f->s, "user", "u1", "", "", "default/alice"), 0);
    assert_int_equal(put(f->s, "user", "u2", "", "", "default/alice"), -EEXIST);
    assert_int_equal(put(f->s, "user", "u3", "", "", "other/alice"), 0);
    assert_int_equal(put(f->s, "user", "u4", "", "", NULL), 0); /* no key: never clashes */
    assert_int_equal(put(f->s, "user", "u5", "", "", NULL), 0);
    assert_int_equal(api_store_get_uniq(f->s, "user", "default/alice", &doc), 0);
    assert_string_equal(json_string_value(json_object_get(doc, "id")), "u1");
    json_decref(doc);
    assert_int_equal(api_store_get_uniq(f->s, "user", "nobody", &doc), -ENOENT);
}

static void test_list_filters_markers_order(void **state)
{
    Fix *f = *state;
    char id[16];
    json_t *arr;
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof(id), "s%d", i);
        assert_int_equal(
            put(f->s, "server", id, i % 2 ? "odd" : "even", i < 3 ? "ERROR" : "ACTIVE", NULL), 0);
    }
    ApiListQuery q = {.kind = "server"};
    assert_int_equal(api_store_count(f->s, &q), 10);
    q.project = "odd";
    assert_int_equal(api_store_list(f->s, &q, &arr), 0);
    assert_int_equal(json_array_size(arr), 5);
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 0), "id")), "s1");
    json_decref(arr);
    ApiListQuery q2 = {.kind = "server", .status = "ERROR", .desc = true};
    assert_int_equal(api_store_list(f->s, &q2, &arr), 0);
    assert_int_equal(json_array_size(arr), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 0), "id")), "s2");
    json_decref(arr);
    /* pages of 4, newest first, following markers */
    ApiListQuery p = {.kind = "server", .limit = 4, .desc = true};
    const char *want[] = {"s9", "s5", "s1"};
    for (int page = 0; page < 3; page++) {
        assert_int_equal(api_store_list(f->s, &p, &arr), 0);
        assert_int_equal(json_array_size(arr), page < 2 ? 4 : 2);
        assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 0), "id")),
                            want[page]);
        static char marker[16];
        snprintf(marker, sizeof(marker), "%s",
                 json_string_value(
                     json_object_get(json_array_get(arr, json_array_size(arr) - 1), "id")));
        p.marker = marker;
        json_decref(arr);
    }
    p.marker = "nope";
    assert_int_equal(api_store_list(f->s, &p, &arr), -ENOENT);
}

static int commits;
static void on_commit(void *ud)
{
    commits++;
}

static void test_transactions_and_revisions(void **state)
{
    Fix *f = *state;
    json_t *doc;
    api_store_on_commit(f->s, on_commit, NULL);
    commits = 0;
    uint64_t rev0 = api_store_rev(f->s);
    assert_int_equal(put(f->s, "network", "n1", "p", "ACTIVE", NULL), 0);
    assert_int_equal(commits, 1);
    assert_true(api_store_rev(f->s) > rev0);
    /* a rolled-back transaction leaves nothing and no revision behind */
    uint64_t rev1 = api_store_rev(f->s);
    assert_int_equal(api_store_begin(f->s), 0);
    assert_int_equal(put(f->s, "network", "n2", "p", "ACTIVE", NULL), 0);
    assert_int_equal(put(f->s, "network", "n3", "p", "ACTIVE", NULL), 0);
    api_store_rollback(f->s);
    assert_int_equal(api_store_rev(f->s), rev1);
    assert_int_equal(api_store_get(f->s, "network", "n2", &doc, NULL, 0), -ENOENT);
    assert_int_equal(commits, 1);
    /* a failing write inside a transaction does not undo the others */
    assert_int_equal(api_store_begin(f->s), 0);
    assert_int_equal(put(f->s, "network", "n4", "p", "ACTIVE", NULL), 0);
    assert_int_equal(put(f->s, "network", "n1", "p", "ACTIVE", NULL), -EEXIST);
    assert_int_equal(api_store_commit(f->s), 0);
    assert_int_equal(commits, 2);
    assert_int_equal(api_store_get(f->s, "network", "n4", &doc, NULL, 0), 0);
    json_decref(doc);
    /* children go together */
    json_t *d = json_object();
    ApiDocMeta m1 = {.kind = "rule", .id = "r1", .parent = "g"},
               m2 = {.kind = "rule", .id = "r2", .parent = "g"};
    assert_int_equal(api_store_insert(f->s, &m1, d), 0);
    assert_int_equal(api_store_insert(f->s, &m2, d), 0);
    json_decref(d);
    assert_int_equal(api_store_delete_children(f->s, "rule", "g"), 2);
    assert_int_equal(api_store_delete_children(f->s, "rule", "g"), 0);
}

static void test_reopen_keeps_state(void **state)
{
    Fix *f = *state;
    SovBuf err = SOV_BUF_INIT;
    json_t *doc;
    char v[32];
    assert_int_equal(put(f->s, "image", "i1", "p", "active", NULL), 0);
    assert_int_equal(api_store_meta_set(f->s, "k", "v1"), 0);
    assert_int_equal(api_store_meta_set(f->s, "k", "v2"), 0);
    uint64_t rev = api_store_rev(f->s);
    api_store_close(f->s);
    assert_int_equal(api_store_open(f->path, true, &f->s, &err), 0);
    assert_int_equal(api_store_rev(f->s), rev);
    assert_int_equal(api_store_get(f->s, "image", "i1", &doc, NULL, 0), 0);
    json_decref(doc);
    assert_int_equal(api_store_meta_get(f->s, "k", v, sizeof(v)), 0);
    assert_string_equal(v, "v2");
    assert_int_equal(api_store_meta_get(f->s, "nope", v, sizeof(v)), -ENOENT);
    /* new documents keep their creation order after a reopen */
    assert_int_equal(put(f->s, "image", "i2", "p", "active", NULL), 0);
    ApiListQuery q = {.kind = "image"};
    json_t *arr;
    assert_int_equal(api_store_list(f->s, &q, &arr), 0);
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 1), "id")), "i2");
    json_decref(arr);
    sov_buf_release(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_insert_get_update_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uniq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_filters_markers_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transactions_and_revisions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_state, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
