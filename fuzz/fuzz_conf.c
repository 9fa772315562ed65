/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for the INI config loader: feeds each input, as a NUL-terminated string, to
 * sov_conf_load_string() with a field table that has every SovConfType, narrow and full-width
 * ranges and the real [http] limit fields. Besides not crashing, a load must keep the promises
 * of sov/conf.h: on success every string field is NUL-terminated and within its length bounds,
 * every number within [min, max] and every bool 0 or 1; on failure err holds a reason. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sov/conf.h"
#include "sov/daemon.h"

typedef struct FuzzConfig {
    char name[SOV_CONF_STR_MAX];
    char path[SOV_CONF_STR_MAX];
    char empty_ok[SOV_CONF_STR_MAX];
    int64_t workers;
    int64_t offset;
    int64_t any;
    bool flag;
    bool other_flag;
    uint64_t cache;
    uint64_t huge;
    uint64_t timeout;
    uint64_t interval;
    SovHttpLimitsConf http;
} FuzzConfig;

static const SovConfField fuzz_fields[] = {
    {"server", "name", SOV_CONF_STRING, offsetof(FuzzConfig, name), 1, 16, "demo", "a short name"},
    {"server", "path", SOV_CONF_STRING, offsetof(FuzzConfig, path), 3, 255, "/var/lib/x",
     "a path as long as a string field may be"},
    {"server", "empty ok", SOV_CONF_STRING, offsetof(FuzzConfig, empty_ok), 0, 0, "",
     "no length bounds but the buffer"},
    {"server", "workers", SOV_CONF_INT, offsetof(FuzzConfig, workers), 0, 256, "0", "threads"},
    {"server", "offset", SOV_CONF_INT, offsetof(FuzzConfig, offset), -1000, 1000, "-5",
     "a signed number"},
    {"server", "any", SOV_CONF_INT, offsetof(FuzzConfig, any), INT64_MIN, INT64_MAX, "0",
     "the whole int64 range"},
    {"server", "flag", SOV_CONF_BOOL, offsetof(FuzzConfig, flag), 0, 0, "true", "a switch"},
    {"log", "flag", SOV_CONF_BOOL, offsetof(FuzzConfig, other_flag), 0, 0, "off",
     "the same key in another section"},
    {"store", "cache", SOV_CONF_SIZE, offsetof(FuzzConfig, cache), 4096, 1LL << 40, "64M",
     "a size with a lower bound"},
    {"store", "huge", SOV_CONF_SIZE, offsetof(FuzzConfig, huge), 0, INT64_MAX, "1T",
     "the whole size range"},
    {"store", "timeout", SOV_CONF_DURATION, offsetof(FuzzConfig, timeout), 1, 3600000, "30s",
     "a duration up to an hour"},
    {"store", "interval", SOV_CONF_DURATION, offsetof(FuzzConfig, interval), 0, INT64_MAX, "5m",
     "the whole duration range"},
    SOV_HTTP_LIMIT_FIELDS(FuzzConfig, http),
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_fields(const FuzzConfig *cfg)
{
    for (size_t i = 0; i < ELEMENTSOF(fuzz_fields); i++) {
        const SovConfField *f = &fuzz_fields[i];
        const char *p = (const char *)cfg + f->offset;

        switch (f->type) {
        case SOV_CONF_STRING: {
            const char *nul = memchr(p, '\0', SOV_CONF_STR_MAX);
            size_t len;
            if (!nul)
                __builtin_trap();
            len = (size_t)(nul - p);
            if ((int64_t)len < f->min || (f->max > 0 && (int64_t)len > f->max))
                __builtin_trap();
            break;
        }
        case SOV_CONF_BOOL: {
            unsigned char b;
            memcpy(&b, p, 1);
            if (b > 1)
                __builtin_trap();
            break;
        }
        case SOV_CONF_INT: {
            int64_t v;
            memcpy(&v, p, sizeof(v));
            if (v < f->min || v > f->max)
                __builtin_trap();
            break;
        }
        case SOV_CONF_SIZE:
        case SOV_CONF_DURATION: {
            uint64_t v;
            memcpy(&v, p, sizeof(v));
            if (v > (uint64_t)INT64_MAX || (int64_t)v < f->min || (int64_t)v > f->max)
                __builtin_trap();
            break;
        }
        default:
            __builtin_trap();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FuzzConfig *cfg;
    SovBuf err = SOV_BUF_INIT;
    char *text;
    int r;

    text = malloc(size + 1);
    cfg = malloc(sizeof(*cfg));
    if (!text || !cfg) {
        free(text);
        free(cfg);
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';
    /* Garbage underneath: a field the loader forgot to set shows up in check_fields. */
    memset(cfg, 0xa5, sizeof(*cfg));

    r = sov_conf_load_string(fuzz_fields, ELEMENTSOF(fuzz_fields), cfg, text, &err);
    if (r >= 0) {
        check_fields(cfg);
    } else {
        if (r != -EINVAL && r != -ENOMEM)
            __builtin_trap();
        if (err.len == 0 || strlen(err.ptr) != err.len)
            __builtin_trap();
    }

    sov_buf_release(&err);
    free(cfg);
    free(text);
    return 0;
}
