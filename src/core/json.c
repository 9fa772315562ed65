/* SPDX-License-Identifier: Apache-2.0 */
/* Validation helpers over jansson for request bodies. */
#include <string.h>

#include "sov/json.h"

int sov_json_parse_object(SovStr body, size_t max_bytes, json_t **ret, SovBuf *err)
{
    json_error_t jerr;
    json_t *v;

    if (body.len > max_bytes) {
        sov_buf_printf(err, "request body larger than %zu bytes", max_bytes);
        return -E2BIG;
    }
    v = json_loadb(body.ptr ? body.ptr : "", body.len, JSON_REJECT_DUPLICATES, &jerr);
    if (!v) {
        sov_buf_printf(err, "malformed JSON at line %d column %d: %s", jerr.line, jerr.column,
                       jerr.text);
        return -EINVAL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        sov_buf_puts(err, "request body must be a JSON object");
        return -EINVAL;
    }
    *ret = v;
    return 0;
}

static json_t *field(json_t *obj, const char *key, bool required, SovBuf *err, int *r)
{
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    if (!v || json_is_null(v)) {
        if (required) {
            sov_buf_printf(err, "'%s' is a required property", key);
            *r = -EINVAL;
        } else {
            *r = 0;
        }
        return NULL;
    }
    *r = 1;
    return v;
}

int sov_json_get_string(json_t *obj, const char *key, bool required, size_t maxlen,
                        const char **ret, SovBuf *err)
{
    int r;
    json_t *v = field(obj, key, required, err, &r);
    if (!v)
        return r;
    if (!json_is_string(v)) {
        sov_buf_printf(err, "'%s' must be a string", key);
        return -EINVAL;
    }
    if (json_string_length(v) > maxlen) {
        sov_buf_printf(err, "'%s' is longer than %zu characters", key, maxlen);
        return -EINVAL;
    }
    if (strlen(json_string_value(v)) != json_string_length(v)) {
        sov_buf_printf(err, "'%s' contains a NUL character", key);
        return -EINVAL;
    }
    *ret = json_string_value(v);
    return 1;
}

int sov_json_get_int(json_t *obj, const char *key, bool required, int64_t min, int64_t max,
                     int64_t *ret, SovBuf *err)
{
    int r;
    json_t *v = field(obj, key, required, err, &r);
    if (!v)
        return r;
    if (!json_is_integer(v)) {
        sov_buf_printf(err, "'%s' must be an integer", key);
        return -EINVAL;
    }
    if (json_integer_value(v) < min || json_integer_value(v) > max) {
        sov_buf_printf(err, "'%s' must be between %lld and %lld", key, (long long)min,
                       (long long)max);
        return -EINVAL;
    }
    *ret = json_integer_value(v);
    return 1;
}

int sov_json_get_bool(json_t *obj, const char *key, bool required, bool *ret, SovBuf *err)
{
    int r;
    json_t *v = field(obj, key, required, err, &r);
    if (!v)
        return r;
    if (!json_is_boolean(v)) {
        sov_buf_printf(err, "'%s' must be a boolean", key);
        return -EINVAL;
    }
    *ret = json_is_true(v);
    return 1;
}

int sov_json_get_object(json_t *obj, const char *key, bool required, json_t **ret, SovBuf *err)
{
    int r;
    json_t *v = field(obj, key, required, err, &r);
    if (!v)
        return r;
    if (!json_is_object(v)) {
        sov_buf_printf(err, "'%s' must be an object", key);
        return -EINVAL;
    }
    *ret = v;
    return 1;
}

int sov_json_get_array(json_t *obj, const char *key, bool required, size_t max_items, json_t **ret,
                       SovBuf *err)
{
    int r;
    json_t *v = field(obj, key, required, err, &r);
    if (!v)
        return r;
    if (!json_is_array(v)) {
        sov_buf_printf(err, "'%s' must be an array", key);
        return -EINVAL;
    }
    if (json_array_size(v) > max_items) {
        sov_buf_printf(err, "'%s' has more than %zu items", key, max_items);
        return -EINVAL;
    }
    *ret = v;
    return 1;
}

int sov_json_check_keys(json_t *obj, const char *const *allowed, SovBuf *err)
{
    const char *key;
    json_t *v;

    json_object_foreach(obj, key, v)
    {
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = strcmp(*a, key) == 0;
        if (!ok) {
            sov_buf_printf(err, "additional property '%s' is not allowed", key);
            return -EINVAL;
        }
    }
    return 0;
}

static int dump_cb(const char *p, size_t n, void *data)
{
    return sov_buf_append(data, p, n) < 0 ? -1 : 0;
}

int sov_json_dump(const json_t *v, SovBuf *out)
{
    return json_dump_callback(v, dump_cb, out, JSON_COMPACT | JSON_ENCODE_ANY) == 0 ? 0 : -ENOMEM;
}
