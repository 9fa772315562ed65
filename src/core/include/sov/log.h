/* SPDX-License-Identifier: Apache-2.0 */
/* Logfmt logging: one line per event, `ts=… level=… svc=… req=… msg="…" k=v`. User values
 * are quoted and escaped; keys that name secrets (password, secret, token, authorization,
 * signature, credential, key) have their values replaced by "[redacted]". */
#ifndef SOV_LOG_H
#define SOV_LOG_H

#include <stdio.h>

#include "sov/macro.h"

typedef enum SovLogLevel {
    SOV_LOG_DEBUG,
    SOV_LOG_INFO,
    SOV_LOG_WARN,
    SOV_LOG_ERROR,
} SovLogLevel;

/* Process-wide settings: the service name, the minimum level and the stream (stderr). */
void sov_log_setup(const char *svc, SovLogLevel level, FILE *out);
void sov_log_set_level(SovLogLevel level);
SovLogLevel sov_log_get_level(void);
int sov_log_level_from_string(const char *s, SovLogLevel *ret);
const char *sov_log_level_to_string(SovLogLevel l);
/* True when a key names a secret whose value must never reach a log. */
int sov_log_key_is_secret(const char *key);

/* Logs msg with extra key/value pairs given as a NULL-terminated list of const char* pairs.
 * req may be NULL. Returns the negative errno passed in err (0 when none) so callers can write
 * `return sov_log_errno(...)`. */
int sov_logv_kv(SovLogLevel level, const char *req, int err, const char *msg,
                const char *const *kv);
int sov_log_full(SovLogLevel level, const char *req, int err, const char *fmt, ...) _printf_(4, 5);

/* Formats one logfmt line (without newline) into buf; exposed for tests. */
struct SovBuf;
int sov_log_format(struct SovBuf *out, SovLogLevel level, const char *req, int err, const char *msg,
                   const char *const *kv);

#define log_debug(...)            sov_log_full(SOV_LOG_DEBUG, NULL, 0, __VA_ARGS__)
#define log_info(...)             sov_log_full(SOV_LOG_INFO, NULL, 0, __VA_ARGS__)
#define log_warn(...)             sov_log_full(SOV_LOG_WARN, NULL, 0, __VA_ARGS__)
#define log_error(...)            sov_log_full(SOV_LOG_ERROR, NULL, 0, __VA_ARGS__)
#define log_error_errno(err, ...) sov_log_full(SOV_LOG_ERROR, NULL, (err), __VA_ARGS__)
#define log_warn_errno(err, ...)  sov_log_full(SOV_LOG_WARN, NULL, (err), __VA_ARGS__)

#endif
