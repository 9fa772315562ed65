/* SPDX-License-Identifier: Apache-2.0 */
/* INI config loading over inih with typed fields and range checks. */
#include <ini.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "sov/conf.h"

typedef struct ConfCtx {
    const SovConfField *fields;
    size_t n;
    void *cfg;
    SovBuf *err;
    const char *name;
    int failed;
    int lineno;       /* line the reader handed to inih last */
    const char *next; /* unread rest of the text */
} ConfCtx;

#define CONF_MAX_FILE (1024 * 1024)

static int parse_number(const char *s, SovConfType type, int64_t *ret)
{
    char *end;
    long double mult = 1;
    long long v;

    while (*s == ' ')
        s++;
    if (*s == '\0')
        return -EINVAL;
    if (type != SOV_CONF_INT && *s == '-')
        return -ERANGE;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno == ERANGE)
        return -ERANGE;
    if (end == s)
        return -EINVAL;
    if (type == SOV_CONF_SIZE) {
        switch (*end) {
        case '\0':
            break;
        case 'k':
        case 'K':
            mult = 1024.0L;
            end++;
            break;
        case 'm':
        case 'M':
            mult = 1024.0L * 1024;
            end++;
            break;
        case 'g':
        case 'G':
            mult = 1024.0L * 1024 * 1024;
            end++;
            break;
        case 't':
        case 'T':
            mult = 1024.0L * 1024 * 1024 * 1024;
            end++;
            break;
        default:
            return -EINVAL;
        }
        /* Accept K, Ki, KiB and KB alike: all are powers of 1024 here. */
        if (mult > 1 && *end == 'i')
            end++;
        if (mult > 1 && *end == 'B')
            end++;
    } else if (type == SOV_CONF_DURATION) {
        if (strcmp(end, "ms") == 0) {
            mult = 1;
            end += 2;
        } else if (*end == '\0' || strcmp(end, "s") == 0) {
            mult = 1000;
            end += *end ? 1 : 0;
        } else if (strcmp(end, "m") == 0) {
            mult = 60000;
            end++;
        } else if (strcmp(end, "h") == 0) {
            mult = 3600000;
            end++;
        } else {
            return -EINVAL;
        }
    }
    if (*end != '\0')
        return -EINVAL;
    if ((long double)v * mult > (long double)INT64_MAX ||
        (long double)v * mult < (long double)INT64_MIN)
        return -ERANGE;
    *ret = (int64_t)((long double)v * mult);
    return 0;
}

int sov_conf_parse_value(const SovConfField *f, const char *value, void *cfg)
{
    char *dst = (char *)cfg + f->offset;
    int64_t v;
    int r;

    switch (f->type) {
    case SOV_CONF_STRING: {
        size_t len = strlen(value);
        if (len >= SOV_CONF_STR_MAX || (f->max > 0 && (int64_t)len > f->max))
            return -E2BIG;
        if ((int64_t)len < f->min)
            return -ERANGE;
        memcpy(dst, value, len + 1);
        return 0;
    }
    case SOV_CONF_BOOL: {
        static const char *const yes[] = {"true", "yes", "on", "1"};
        static const char *const no[] = {"false", "no", "off", "0"};
        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
            if (strcasecmp(value, yes[i]) == 0) {
                *(bool *)dst = true;
                return 0;
            }
            if (strcasecmp(value, no[i]) == 0) {
                *(bool *)dst = false;
                return 0;
            }
        }
        return -EINVAL;
    }
    case SOV_CONF_INT:
    case SOV_CONF_SIZE:
    case SOV_CONF_DURATION:
        r = parse_number(value, f->type, &v);
        if (r < 0)
            return r;
        if (v < f->min || v > f->max)
            return -ERANGE;
        if (f->type == SOV_CONF_INT)
            *(int64_t *)dst = v;
        else
            *(uint64_t *)dst = (uint64_t)v;
        return 0;
    }
    return -EINVAL;
}

static const char *reason(int r)
{
    switch (r) {
    case -ERANGE:
        return "value out of range";
    case -E2BIG:
        return "value too long";
    default:
        return "malformed value";
    }
}

/* inih's reader callback: hands over one line at a time, which lets us count lines for
 * error messages (Debian's inih is built without INI_HANDLER_LINENO). */
static char *conf_reader(char *str, int num, void *stream)
{
    ConfCtx *c = stream;
    size_t len = 0;

    if (!c->next || *c->next == '\0')
        return NULL;
    while (c->next[len] && c->next[len] != '\n')
        len++;
    if (c->next[len] == '\n')
        len++;
    c->lineno++;
    /* The newline may be dropped: inih takes a last line without one just as well. */
    if (len > (size_t)num - 1 && c->next[len - 1] == '\n' && len - 1 <= (size_t)num - 1) {
        memcpy(str, c->next, len - 1);
        str[len - 1] = '\0';
        c->next += len;
        return str;
    }
    if (len > (size_t)num - 1) {
        /* Longer than inih's line buffer: refuse it here, hand inih an empty line. */
        if (!c->failed)
            sov_buf_printf(c->err, "%s:%d: line longer than %d bytes", c->name, c->lineno, num - 1);
        c->failed = 1;
        str[0] = '\n';
        str[1] = '\0';
        c->next += len;
        return str;
    }
    memcpy(str, c->next, len);
    str[len] = '\0';
    c->next += len;
    return str;
}

static int conf_handler(void *user, const char *section, const char *name, const char *value)
{
    ConfCtx *c = user;
    int lineno = c->lineno;

    if (c->failed)
        return 0; /* report the first problem only */

    for (size_t i = 0; i < c->n; i++) {
        const SovConfField *f = &c->fields[i];
        if (strcmp(f->section, section) != 0 || strcmp(f->key, name) != 0)
            continue;
        int r = sov_conf_parse_value(f, value, c->cfg);
        if (r < 0) {
            if (f->type == SOV_CONF_STRING || f->type == SOV_CONF_BOOL)
                sov_buf_printf(c->err, "%s:%d: [%s] %s: %s", c->name, lineno, section, name,
                               reason(r));
            else
                sov_buf_printf(c->err, "%s:%d: [%s] %s: %s (allowed %" PRId64 "..%" PRId64 ")",
                               c->name, lineno, section, name, reason(r), f->min, f->max);
            c->failed = 1;
            return 0;
        }
        return 1;
    }
    sov_buf_printf(c->err, "%s:%d: unknown key [%s] %s", c->name, lineno, section, name);
    c->failed = 1;
    return 0;
}

static int apply_defaults(const SovConfField *fields, size_t n, void *cfg, SovBuf *err)
{
    for (size_t i = 0; i < n; i++) {
        int r = sov_conf_parse_value(&fields[i], fields[i].def, cfg);
        if (r < 0) {
            /* A bad default is a programmer error, reported rather than asserted so that a
             * test can see it. */
            sov_buf_printf(err, "built-in default for [%s] %s is invalid", fields[i].section,
                           fields[i].key);
            return -EINVAL;
        }
    }
    return 0;
}

static int finish(ConfCtx *c, int r)
{
    if (c->failed)
        return -EINVAL;
    if (r > 0) {
        if (c->err->len == 0)
            sov_buf_printf(c->err, "%s:%d: syntax error", c->name, r);
        return -EINVAL;
    }
    if (r < 0) {
        sov_buf_printf(c->err, "%s: out of memory", c->name);
        return -ENOMEM;
    }
    return 0;
}

int sov_conf_load_string(const SovConfField *fields, size_t n, void *cfg, const char *text,
                         SovBuf *err)
{
    ConfCtx c = {
        .fields = fields, .n = n, .cfg = cfg, .err = err, .name = "<string>", .next = text};
    int r = apply_defaults(fields, n, cfg, err);

    if (r < 0)
        return r;
    return finish(&c, ini_parse_stream(conf_reader, &c, conf_handler, &c));
}

int sov_conf_load(const SovConfField *fields, size_t n, void *cfg, const char *path, SovBuf *err)
{
    ConfCtx c = {.fields = fields, .n = n, .cfg = cfg, .err = err, .name = path};
    SovBuf text;
    FILE *f;
    char chunk[4096];
    size_t got;
    int r = apply_defaults(fields, n, cfg, err);

    if (r < 0 || !path)
        return r;
    f = fopen(path, "re");
    if (!f) {
        r = -errno;
        sov_buf_printf(err, "%s: cannot open: %s", path, strerror(-r));
        return r;
    }
    sov_buf_init(&text, CONF_MAX_FILE);
    while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (sov_buf_append(&text, chunk, got) < 0) {
            fclose(f);
            sov_buf_release(&text);
            sov_buf_printf(err, "%s: larger than %d bytes", path, CONF_MAX_FILE);
            return -EFBIG;
        }
    fclose(f);
    c.next = text.ptr;
    r = finish(&c, ini_parse_stream(conf_reader, &c, conf_handler, &c));
    sov_buf_release(&text);
    return r;
}

int sov_conf_write_sample(const SovConfField *fields, size_t n, const char *title, SovBuf *out)
{
    const char *section = NULL;

    sov_buf_printf(
        out, "# %s\n# Every key is shown with its built-in default; uncomment to change.\n", title);
    for (size_t i = 0; i < n; i++) {
        const SovConfField *f = &fields[i];
        if (!section || strcmp(section, f->section) != 0) {
            section = f->section;
            sov_buf_printf(out, "\n[%s]\n", section);
        }
        sov_buf_printf(out, "# %s", f->help);
        if (f->type == SOV_CONF_INT)
            sov_buf_printf(out, " (%" PRId64 "..%" PRId64 ")", f->min, f->max);
        sov_buf_printf(out, "\n#%s = %s\n", f->key, f->def);
    }
    return 0;
}
