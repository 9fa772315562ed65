/* SPDX-License-Identifier: Apache-2.0 */
/* Typed, range-checked INI configuration. A daemon describes its config struct with a table of
 * SovConfField (section, key, type, offset, range, default, help); sov_conf_load() fills the
 * struct with the defaults, then applies an INI file (parsed by inih), refusing unknown keys,
 * malformed values and values outside their range. The same table prints the commented sample
 * config, so defaults live in code only once. */
#ifndef SOV_CONF_H
#define SOV_CONF_H

#include <stddef.h>
#include <stdint.h>

#include "sov/buf.h"

typedef enum SovConfType {
    SOV_CONF_STRING,   /* char[SOV_CONF_STR_MAX] */
    SOV_CONF_INT,      /* int64_t */
    SOV_CONF_BOOL,     /* bool: true/false/yes/no/on/off/1/0 */
    SOV_CONF_SIZE,     /* uint64_t bytes; suffixes K, M, G, T (powers of 1024) */
    SOV_CONF_DURATION, /* uint64_t milliseconds; suffixes ms, s, m, h (bare number = s) */
} SovConfType;

#define SOV_CONF_STR_MAX 256

typedef struct SovConfField {
    const char *section;
    const char *key;
    SovConfType type;
    size_t offset;
    int64_t min; /* inclusive range for numbers; for strings the maximum length is max */
    int64_t max;
    const char *def; /* default, in the same syntax as the file */
    const char *help;
} SovConfField;

/* Applies every default, then the file at path (if path is not NULL). On failure writes a
 * human-readable reason ("file:line: key: reason") into err and returns -EINVAL (bad content)
 * or -errno (cannot read). */
int sov_conf_load(const SovConfField *fields, size_t n, void *cfg, const char *path, SovBuf *err);
/* As sov_conf_load() with the INI text in memory (used by tests and the fuzzer). */
int sov_conf_load_string(const SovConfField *fields, size_t n, void *cfg, const char *text,
                         SovBuf *err);
/* Parses one value of a type into dst; exposed for tests. */
int sov_conf_parse_value(const SovConfField *f, const char *value, void *cfg);
/* Writes the commented sample INI for a table. */
int sov_conf_write_sample(const SovConfField *fields, size_t n, const char *title, SovBuf *out);

#endif
