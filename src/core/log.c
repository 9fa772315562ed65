/* SPDX-License-Identifier: Apache-2.0 */
/* Logfmt writer. A line is built in memory and written with one fwrite under the stream's
 * lock, so lines from several loop threads never interleave. */
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sov/buf.h"
#include "sov/log.h"

static const char *log_svc = "sov";
static SovLogLevel log_level = SOV_LOG_INFO;
static FILE *log_out;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void sov_log_setup(const char *svc, SovLogLevel level, FILE *out)
{
    log_svc = svc;
    log_level = level;
    log_out = out;
}

void sov_log_set_level(SovLogLevel level)
{
    __atomic_store_n(&log_level, level, __ATOMIC_RELAXED);
}

SovLogLevel sov_log_get_level(void)
{
    return __atomic_load_n(&log_level, __ATOMIC_RELAXED);
}

int sov_log_level_from_string(const char *s, SovLogLevel *ret)
{
    for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
        if (strcasecmp(s, level_names[i]) == 0) {
            *ret = (SovLogLevel)i;
            return 0;
        }
    return -EINVAL;
}

const char *sov_log_level_to_string(SovLogLevel l)
{
    return (unsigned)l < ELEMENTSOF(level_names) ? level_names[l] : "unknown";
}

int sov_log_key_is_secret(const char *key)
{
    static const char *const secret_words[] = {"password",  "secret",     "token", "authorization",
                                               "signature", "credential", "key",   "cookie"};
    for (size_t i = 0; i < ELEMENTSOF(secret_words); i++)
        if (strcasestr(key, secret_words[i]))
            return 1;
    return 0;
}

/* Writes a value, quoting it when it is empty or holds a space, quote, '=' or control byte. */
static int put_value(SovBuf *b, const char *v)
{
    bool quote = *v == '\0';
    int r;

    for (const char *p = v; *p && !quote; p++)
        if ((unsigned char)*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' ||
            (unsigned char)*p >= 0x7f)
            quote = true;
    if (!quote)
        return sov_buf_puts(b, v);
    r = sov_buf_putc(b, '"');
    for (const char *p = v; r >= 0 && *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\')
            r = sov_buf_printf(b, "\\%c", c);
        else if (c == '\n')
            r = sov_buf_puts(b, "\\n");
        else if (c < ' ' || c == 0x7f)
            r = sov_buf_printf(b, "\\x%02x", c);
        else
            r = sov_buf_putc(b, (char)c);
    }
    if (r >= 0)
        r = sov_buf_putc(b, '"');
    return r;
}

int sov_log_format(SovBuf *b, SovLogLevel level, const char *req, int err, const char *msg,
                   const char *const *kv)
{
    struct timespec ts;
    struct tm tm;
    char when[40];

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    sov_buf_printf(b, "ts=%s.%03ldZ level=%s svc=%s", when, ts.tv_nsec / 1000000,
                   sov_log_level_to_string(level), log_svc);
    if (req) {
        sov_buf_puts(b, " req=");
        put_value(b, req);
    }
    sov_buf_puts(b, " msg=");
    put_value(b, msg);
    if (err) {
        sov_buf_puts(b, " err=");
        put_value(b, strerror(err < 0 ? -err : err));
    }
    for (; kv && kv[0]; kv += 2) {
        sov_buf_printf(b, " %s=", kv[0]);
        put_value(b, sov_log_key_is_secret(kv[0]) ? "[redacted]" : (kv[1] ? kv[1] : ""));
    }
    return 0;
}

int sov_logv_kv(SovLogLevel level, const char *req, int err, const char *msg, const char *const *kv)
{
    SovBuf b = SOV_BUF_INIT;
    FILE *out = log_out ? log_out : stderr;

    if (level < sov_log_get_level())
        return err < 0 ? err : -err;
    sov_log_format(&b, level, req, err, msg, kv);
    sov_buf_putc(&b, '\n');
    if (b.ptr) {
        fwrite(b.ptr, 1, b.len, out);
        fflush(out);
    }
    sov_buf_release(&b);
    return err < 0 ? err : -err;
}

int sov_log_full(SovLogLevel level, const char *req, int err, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    if (level < sov_log_get_level())
        return err < 0 ? err : -err;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return sov_logv_kv(level, req, err, msg, NULL);
}
