/* SPDX-License-Identifier: Apache-2.0 */
/* What lifecycle.c (rules, restores, storage classes) shares with lcworker.c (the worker). */
#ifndef SOV_S3_LIFECYCLE_INT_H
#define SOV_S3_LIFECYCLE_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LC_MAX_TRANS 8

typedef struct LcTrans {
    int64_t days, date, newer; /* -1: none (newer: 0) */
    char cls[24];
} LcTrans;

/* One rule, compiled from the stored document (which it borrows strings from). */
typedef struct LcRule {
    const char *prefix;
    size_t prefix_len;
    json_t *tags;   /* [[key, value]...] */
    int64_t gt, lt; /* size bounds, -1: none */
    int64_t exp_days, exp_date;
    bool exp_marker;
    LcTrans tr[LC_MAX_TRANS], nctr[LC_MAX_TRANS];
    size_t ntr, nnctr;
    int64_t nc_days, nc_newer, abort_days;
} LcRule;

/* Compiles one rule of the stored document (status not looked at); r borrows its strings. */
void s3_lc_rule_compile(json_t *j, LcRule *r);
/* Whether r's filter takes the object key (klen bytes) of size bytes with tags ({key: value},
 * NULL: none), or a delete marker (which has neither tags nor a size). */
bool s3_lc_rule_matches(const LcRule *r, const char *key, size_t klen, int64_t size, json_t *tags,
                        bool marker);

/* Colder classes rank higher (STANDARD 0 ... DEEP_ARCHIVE 6); unknown names rank 0. */
int s3_storage_class_rank(const char *name);
/* GLACIER and DEEP_ARCHIVE: reads need a restore. */
bool s3_storage_class_archived(const char *name);
/* When an action of a rule with `days` falls due for an object since since_ms (its creation, or
 * its becoming noncurrent), with day_ms a lifecycle day: since + days, and, with real days, as
 * AWS, rounded up to the next midnight UTC. */
static inline int64_t s3_lifecycle_due_ms(int64_t since_ms, int64_t days, int64_t day_ms)
{
    int64_t at = since_ms + days * day_ms;
    if (day_ms == 86400000)
        at = (at + day_ms - 1) / day_ms * day_ms;
    return at;
}
/* The restore expiry (ms) recorded in an object's metadata JSON, 0 when there is none. */
int64_t s3_restore_expiry(const char *meta_json);

#endif
