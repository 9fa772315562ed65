/* SPDX-License-Identifier: Apache-2.0 */
/* sov-net's VNI per subnet: the first choice from the id, and the plan that keeps two subnets off
 * one VNI, the same on every host whatever order the API lists them in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "vni.h"

static json_t *subnet(const char *id, const char *created)
{
    return json_pack("{s:s, s:s}", "id", id, "created_at", created);
}

static void test_first_choice(void **state)
{
    (void)state;
    assert_int_equal(net_vni_first("00000a00-0000-4000-8000-000000000000"), 0xa + 1);
    assert_int_equal(net_vni_first("0-0-0-0-0-1-ffff"), 2); /* '-' skipped */
    assert_int_equal(net_vni_first("fffffe00-0000"), 1);    /* the top two wrap to the bottom */
    assert_int_equal(net_vni_first("ffffff00"), 2);
    assert_int_equal(net_vni_first("abc"), 0);
    assert_int_equal(net_vni_first("ABCDEF12"), 0);
    assert_int_equal(net_vni_first(""), 0);
}

static void test_collisions_go_to_the_younger(void **state)
{
    (void)state;
    /* a, b and c share their first 24 bits; d takes the VNI after theirs first */
    json_t *list = json_array();
    json_array_append_new(list,
                          subnet("123456aa-0000-4000-8000-000000000003", "2026-01-03T00:00:00Z"));
    json_array_append_new(list,
                          subnet("123456bb-0000-4000-8000-000000000002", "2026-01-02T00:00:00Z"));
    json_array_append_new(list,
                          subnet("123457cc-0000-4000-8000-000000000004", "2026-01-01T00:00:00Z"));
    json_array_append_new(list,
                          subnet("123456cc-0000-4000-8000-000000000001", "2026-01-02T00:00:00Z"));
    json_array_append_new(list, subnet("not-an-id", "2026-01-01T00:00:00Z"));
    json_t *plan = net_vni_plan(list);
    assert_non_null(plan);
    assert_int_equal(json_object_size(plan), 4);
    json_int_t base = 0x123456 + 1;
    /* oldest first: 1234 57cc (its own), then the two of 2026-01-02 by id, then the youngest */
    assert_int_equal(
        json_integer_value(json_object_get(plan, "123457cc-0000-4000-8000-000000000004")),
        base + 1);
    assert_int_equal(
        json_integer_value(json_object_get(plan, "123456bb-0000-4000-8000-000000000002")), base);
    assert_int_equal(
        json_integer_value(json_object_get(plan, "123456cc-0000-4000-8000-000000000001")),
        base + 2);
    assert_int_equal(
        json_integer_value(json_object_get(plan, "123456aa-0000-4000-8000-000000000003")),
        base + 3);
    /* the same subnets listed in another order: the same plan */
    json_t *rev = json_array(), *v;
    for (size_t i = json_array_size(list); i-- > 0;)
        json_array_append(rev, json_array_get(list, i));
    json_t *plan2 = net_vni_plan(rev);
    assert_true(json_equal(plan, plan2));
    /* a younger subnet moves no older one; the youngest goes when removed, others stay */
    json_array_append_new(list,
                          subnet("123456dd-0000-4000-8000-000000000005", "2026-02-01T00:00:00Z"));
    json_t *plan3 = net_vni_plan(list);
    const char *id;
    json_object_foreach(plan, id, v) assert_true(json_equal(v, json_object_get(plan3, id)));
    assert_int_equal(
        json_integer_value(json_object_get(plan3, "123456dd-0000-4000-8000-000000000005")),
        base + 4);
    json_decref(plan);
    json_decref(plan2);
    json_decref(plan3);
    json_decref(rev);
    json_decref(list);
}

static void test_no_two_share_a_vni(void **state)
{
    (void)state;
    /* 3000 subnets whose ids begin alike in fours: every VNI distinct */
    json_t *list = json_array();
    char id[40];
    for (int i = 0; i < 3000; i++) {
        snprintf(id, sizeof(id), "%06x%02x-0000-4000-8000-000000000000", (i / 4) * 2, i % 4);
        json_array_append_new(list, subnet(id, "2026-01-01T00:00:00Z"));
    }
    json_t *plan = net_vni_plan(list), *v, *seen = json_object();
    const char *k;
    assert_int_equal(json_object_size(plan), 3000);
    json_object_foreach(plan, k, v)
    {
        char key[24];
        snprintf(key, sizeof(key), "%lld", (long long)json_integer_value(v));
        assert_null(json_object_get(seen, key));
        assert_true(json_integer_value(v) >= 1 && json_integer_value(v) <= 16777214);
        json_object_set_new(seen, key, json_true());
    }
    json_t *empty = net_vni_plan(NULL); /* no list: no subnets */
    assert_int_equal(json_object_size(empty), 0);
    json_decref(empty);
    json_decref(seen);
    json_decref(plan);
    json_decref(list);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_choice),
        cmocka_unit_test(test_collisions_go_to_the_younger),
        cmocka_unit_test(test_no_two_share_a_vni),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
