/* SPDX-License-Identifier: Apache-2.0 */
/* Strict JSON request handling over jansson: bounded parsing that refuses duplicate keys and
 * non-object roots, typed field getters that say exactly what is wrong (for OpenStack faults),
 * a check that refuses unknown keys, and serialisation into a SovBuf. Getters return 1 when
 * the field was present and valid, 0 when it is absent and optional (ret untouched), -EINVAL
 * with a message in err otherwise. */
#ifndef SOV_JSON_H
#define SOV_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "sov/buf.h"

int sov_json_parse_object(SovStr body, size_t max_bytes, json_t **ret, SovBuf *err);
int sov_json_get_string(json_t *obj, const char *key, bool required, size_t maxlen,
                        const char **ret, SovBuf *err);
int sov_json_get_int(json_t *obj, const char *key, bool required, int64_t min, int64_t max,
                     int64_t *ret, SovBuf *err);
int sov_json_get_bool(json_t *obj, const char *key, bool required, bool *ret, SovBuf *err);
int sov_json_get_object(json_t *obj, const char *key, bool required, json_t **ret, SovBuf *err);
int sov_json_get_array(json_t *obj, const char *key, bool required, size_t max_items, json_t **ret,
                       SovBuf *err);
/* allowed is NULL-terminated; returns -EINVAL naming the first unknown key. */
int sov_json_check_keys(json_t *obj, const char *const *allowed, SovBuf *err);
/* Compact serialisation appended to out. */
int sov_json_dump(const json_t *v, SovBuf *out);

#endif
