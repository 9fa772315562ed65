/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for sov-net's security group compiler: a JSON document {"ports", "groups",
 * "rules"} (any shape) goes to sg_compile(). Besides not crashing, a failure (or a success that
 * left rules out) must leave a reason in err, and a success must produce a script that replaces
 * both sov_sg tables. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sg.h"
#include "sov/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    SovBuf out = SOV_BUF_INIT, err = SOV_BUF_INIT;
    json_t *doc = NULL;
    if (size > 65536)
        return 0;
    if (sov_json_parse_object((SovStr){(const char *)data, size}, 65536, &doc, &err) < 0) {
        sov_buf_release(&err);
        return 0;
    }
    sov_buf_reset(&err);
    int r = sg_compile(json_object_get(doc, "ports"), json_object_get(doc, "groups"),
                       json_object_get(doc, "rules"), &out, &err);
    if (r != 0 && err.len == 0) /* a failure, or rules left out: each says why */
        abort();
    if (r >= 0 && (!out.ptr || !strstr(out.ptr, "delete table inet sov_sg\n")))
        abort();
    sov_buf_release(&out);
    sov_buf_release(&err);
    json_decref(doc);
    return 0;
}
