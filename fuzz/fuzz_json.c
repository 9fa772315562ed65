/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for the strict JSON request reader (OpenStack bodies): sov_json_parse_object()
 * and the typed getters over whatever object comes out. Besides not crashing, a parse must keep
 * the promises of sov/json.h: a success is an object within the size limit, a failure leaves a
 * reason in err; getters answer 1, 0 or -EINVAL, and -EINVAL always comes with a reason. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "sov/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int r, SovBuf *err)
{
    if (r != 1 && r != 0 && r != -EINVAL)
        abort();
    if (r == -EINVAL && err->len == 0)
        abort();
    sov_buf_reset(err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const allowed[] = {"name", "size", "flag", "meta", "items", NULL};
    const size_t max = 2048;
    SovBuf err = {0}, out = {0};
    json_t *obj = NULL;
    int r = sov_json_parse_object((SovStr){(const char *)data, size}, max, &obj, &err);
    if (r < 0) {
        if (obj || err.len == 0)
            abort();
    } else {
        if (!json_is_object(obj) || size > max)
            abort();
        sov_buf_reset(&err);
        const char *s;
        int64_t i;
        bool b;
        json_t *o, *a;
        check(sov_json_get_string(obj, "name", false, 16, &s, &err), &err);
        check(sov_json_get_int(obj, "size", false, -5, 1 << 20, &i, &err), &err);
        check(sov_json_get_bool(obj, "flag", false, &b, &err), &err);
        check(sov_json_get_object(obj, "meta", false, &o, &err), &err);
        check(sov_json_get_array(obj, "items", false, 4, &a, &err), &err);
        check(sov_json_check_keys(obj, allowed, &err), &err);
        if (sov_json_dump(obj, &out) < 0)
            abort();
        json_decref(obj);
    }
    sov_buf_release(&err);
    sov_buf_release(&out);
    return 0;
}
