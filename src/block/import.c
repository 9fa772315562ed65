/* SPDX-License-Identifier: Apache-2.0 */
/* Volumes filled from a URL (POST /v1/volumes with "source_url"): the control plane's way to
 * create a volume from an image. The source, an http:// URL, is read in ranged GETs of
 * IMPORT_PIECE bytes, each on a fresh connection of core's HTTP client and bounded in time, so
 * that a stalled source fails instead of hanging, and a deletion or a shutdown stops the copy at
 * the next piece of data. A source that ignores Range (200 to the first request) is taken whole
 * from that request. Bytes are written through the volume engine on the loop, as NBD writes are
 * (clusters of zeros are skipped: a new volume reads as zeros), then the asynchronous flush makes
 * them durable; only then does the volume lose its "import" state in the listing. Never more
 * than the volume's size is accepted.
 *
 * Crash safety: the names of volumes whose import has not completed are kept in
 * <data_dir>/imports.json, written (atomically) before such a volume is created and after its
 * import completes. At start the volumes it names are deleted, so a half-copied volume never
 * looks complete; the control plane, finding it gone, asks again. A failed import keeps its
 * volume, with the reason in the listing, until it is deleted. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block.h"
#include "sov/log.h"

#define IMPORT_PIECE       (8u << 20) /* bytes asked for in one ranged GET */
#define IMPORT_TIMEOUT_MS  120000u    /* one GET, from connecting to its last byte */
#define IMPORT_BUF         (1u << 20) /* staged bytes, written out when full */
#define IMPORT_RUNNING_MAX 16         /* imports copying at once */
#define IMPORT_MARKERS_MAX 4096

typedef enum ImportState { IMPORT_RUNNING, IMPORT_FLUSHING, IMPORT_FAILED } ImportState;

/* One import, in b->imports from its start until it completes or its volume is deleted. busy:
 * a GET or the flush is in flight and will call back; detached: no longer listed, freed by that
 * callback. Invariants: v is open exactly while the state is RUNNING or FLUSHING (and the
 * daemon is not stopping); the fill staged bytes belong at volume offset off - fill. */
struct BlockImport {
    Block *b;
    BlockImport *next;
    char name[VOL_NAME_MAX + 1];
    char host[256];
    int port;
    char *target; /* path and query of the source */
    Volume *v;
    ImportState state;
    bool busy, detached, whole;
    uint64_t size;      /* the volume's: no more is accepted */
    uint64_t off;       /* source bytes received */
    uint64_t total;     /* the source's size, UINT64_MAX while unknown */
    uint64_t piece_end; /* end (exclusive) of the range of the GET in flight */
    int status;         /* its HTTP status */
    char error[256];    /* why it failed; "" while it did not */
    uint8_t *buf;
    size_t fill;
};

static SovMetric *m_bytes, *m_done, *m_failed;

static void metrics_init(void)
{
    if (m_bytes)
        return;
    m_bytes = sov_metrics_counter("sov_block_import_bytes_total",
                                  "bytes copied into volumes from source URLs", NULL);
    m_done = sov_metrics_counter("sov_block_imports_total", "volume imports by outcome",
                                 "result=\"ok\"");
    m_failed = sov_metrics_counter("sov_block_imports_total", "volume imports by outcome",
                                   "result=\"failed\"");
}

/* ---- the markers of unfinished imports ---- */

static int markers_path(Block *b, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/imports.json", b->cfg.data_dir);
    return n > 0 && (size_t)n < cap ? 0 : -ENAMETOOLONG;
}

/* Rewrites the file with the names of every listed import. */
static int markers_save(Block *b)
{
    char path[4096];
    json_t *arr = json_array();
    for (BlockImport *im = b->imports; im; im = im->next)
        json_array_append_new(arr, json_string(im->name));
    char *text = json_dumps(arr, 0);
    json_decref(arr);
    if (!text)
        return -ENOMEM;
    int r = markers_path(b, path, sizeof(path));
    if (r == 0)
        r = sov_write_file_atomic(path, text, strlen(text));
    free(text);
    return r;
}

int block_imports_recover(Block *b)
{
    char path[4096];
    json_t *arr, *left, *n;
    size_t i;
    if (markers_path(b, path, sizeof(path)) < 0)
        return -ENAMETOOLONG;
    if (!(arr = json_load_file(path, 0, NULL)))
        return 0; /* none */
    left = json_array();
    json_array_foreach(arr, i, n)
    {
        SovBuf err = SOV_BUF_INIT;
        const char *name = json_string_value(n);
        if (!name || i >= IMPORT_MARKERS_MAX)
            continue;
        int r = vol_delete(b->store, name, &err);
        if (r == 0)
            log_warn("volume %s: its import did not complete; deleted", name);
        else if (r != -ENOENT) {
            log_error("volume %s: its import did not complete and it cannot be deleted: %s", name,
                      err.len ? err.ptr : strerror(-r));
            json_array_append(left, n);
        }
        sov_buf_release(&err);
    }
    json_decref(arr);
    int r = 0;
    if (json_array_size(left) == 0) {
        if (unlink(path) < 0 && errno != ENOENT)
            r = -errno;
    } else {
        char *text = json_dumps(left, 0);
        r = text ? sov_write_file_atomic(path, text, strlen(text)) : -ENOMEM;
        free(text);
    }
    json_decref(left);
    return r;
}

/* ---- source URLs ---- */

/* "http://HOST[:PORT][/PATH][?QUERY]": printable ASCII without spaces, no user info and no
 * fragment; HOST a name, an IPv4 address or an [IPv6] address. */
static int parse_url(BlockImport *im, const char *url, SovBuf *err)
{
    const char *p = url + 7, *end, *hp, *he, *colon = NULL;
    if (strncmp(url, "http://", 7) != 0) {
        sov_buf_printf(err, "source_url must be an http:// URL");
        return -EINVAL;
    }
    for (const char *s = url; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f || *s == '#') {
            sov_buf_printf(err, "source_url holds a character that is not allowed");
            return -EINVAL;
        }
    end = p + strcspn(p, "/?");
    if (memchr(p, '@', (size_t)(end - p)))
        goto bad;
    hp = p;
    he = end;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (!rb)
            goto bad;
        hp = p + 1;
        he = rb;
        if (rb + 1 < end && rb[1] != ':')
            goto bad;
        colon = rb + 1 < end ? rb + 1 : NULL;
        if (strspn(hp, "0123456789abcdefABCDEF:.") < (size_t)(he - hp))
            goto bad;
    } else {
        colon = memchr(p, ':', (size_t)(end - p));
        he = colon ? colon : end;
        for (const char *s = hp; s < he; s++)
            if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-", *s))
                goto bad;
    }
    if (he == hp || (size_t)(he - hp) >= sizeof(im->host))
        goto bad;
    im->port = 80;
    if (colon) {
        char *e;
        long port = strtol(colon + 1, &e, 10);
        if (e != end || colon + 1 == end || colon[1] == '+' || colon[1] == '-' || port < 1 ||
            port > 65535)
            goto bad;
        im->port = (int)port;
    }
    memcpy(im->host, hp, (size_t)(he - hp));
    im->host[he - hp] = '\0';
    if (asprintf(&im->target, "%s%s", *end == '/' ? "" : "/", end) < 0) {
        im->target = NULL;
        return -ENOMEM;
    }
    return 0;
bad:
    sov_buf_printf(err, "source_url must be http://HOST[:PORT]/PATH");
    return -EINVAL;
}

/* ---- the copy ---- */

static BlockImport *find(Block *b, const char *name)
{
    for (BlockImport *im = b->imports; im; im = im->next)
        if (strcmp(im->name, name) == 0)
            return im;
    return NULL;
}

static void unlist(Block *b, BlockImport *im)
{
    for (BlockImport **pp = &b->imports; *pp; pp = &(*pp)->next)
        if (*pp == im) {
            *pp = im->next;
            return;
        }
}

static void import_free(BlockImport *im)
{
    if (im->v)
        vol_close(im->v);
    free(im->target);
    free(im->buf);
    free(im);
}

static void note(BlockImport *im, const char *fmt, ...) _printf_(2, 3);
static void note(BlockImport *im, const char *fmt, ...)
{
    va_list ap;
    if (im->error[0])
        return; /* the first reason is the one that counts */
    va_start(ap, fmt);
    vsnprintf(im->error, sizeof(im->error), fmt, ap);
    va_end(ap);
}

static void release_volume(BlockImport *im)
{
    if (im->v)
        vol_close(im->v);
    im->v = NULL;
    free(im->buf);
    im->buf = NULL;
    im->fill = 0;
}

static void import_fail(BlockImport *im)
{
    if (!im->error[0])
        note(im, "the import failed");
    log_warn("volume %s: import from %s:%d failed after %" PRIu64 " bytes: %s", im->name, im->host,
             im->port, im->off, im->error);
    sov_counter_add(m_failed, 1);
    im->state = IMPORT_FAILED;
    release_volume(im);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Writes the staged bytes, skipping whole clusters of zeros. */
static int write_staged(BlockImport *im)
{
    uint64_t base = im->off - im->fill;
    size_t i = 0;
    while (i < im->fill) {
        size_t cl = SOV_MIN(VOL_CLUSTER - (size_t)((base + i) % VOL_CLUSTER), im->fill - i);
        if (all_zero(im->buf + i, cl)) {
            i += cl;
            continue;
        }
        size_t j = i + cl;
        while (j < im->fill) {
            size_t c2 = SOV_MIN((size_t)VOL_CLUSTER, im->fill - j);
            if (all_zero(im->buf + j, c2))
                break;
            j += c2;
        }
        int r = vol_write(im->v, im->buf + i, base + i, (uint32_t)(j - i), false);
        if (r < 0) {
            note(im, "writing the volume at %" PRIu64 " failed: %s", base + i, strerror(-r));
            return r;
        }
        i = j;
    }
    sov_counter_add(m_bytes, im->fill);
    im->fill = 0;
    return 0;
}

/* "bytes START-END/TOTAL" (TOTAL may be "*": *total stays UINT64_MAX). */
static int parse_content_range(SovStr h, uint64_t *start, uint64_t *end, uint64_t *total)
{
    char buf[96], *e;
    if (!h.ptr || h.len >= sizeof(buf) || !sov_str_has_prefix(h, SOV_STR("bytes ")))
        return -EINVAL;
    memcpy(buf, h.ptr + 6, h.len - 6);
    buf[h.len - 6] = '\0';
    if (buf[0] < '0' || buf[0] > '9')
        return -EINVAL;
    *start = strtoull(buf, &e, 10);
    if (*e != '-' || e[1] < '0' || e[1] > '9')
        return -EINVAL;
    *end = strtoull(e + 1, &e, 10);
    if (*e != '/' || *end < *start)
        return -EINVAL;
    *total = UINT64_MAX;
    if (strcmp(e + 1, "*") == 0)
        return 0;
    if (e[1] < '0' || e[1] > '9')
        return -EINVAL;
    *total = strtoull(e + 1, &e, 10);
    return *e || *total <= *end ? -EINVAL : 0;
}

static void on_headers(SovHttpClientReq *q, int status, void *ud)
{
    BlockImport *im = ud;
    uint64_t start, end, total;
    im->status = status;
    if (status == 206) {
        if (parse_content_range(sov_http_client_resp_header(q, "Content-Range"), &start, &end,
                                &total) < 0 ||
            start != im->off || end >= im->piece_end)
            note(im, "the source answered another range than the one asked for");
        else {
            im->piece_end = end + 1;
            if (total != UINT64_MAX)
                im->total = total;
        }
    } else if (status == 200 && im->off == 0) {
        /* Range ignored: the whole source comes now. */
        SovStr cl = sov_http_client_resp_header(q, "Content-Length");
        char num[32];
        im->whole = true;
        im->piece_end = UINT64_MAX;
        if (cl.ptr && cl.len > 0 && cl.len < sizeof(num) && cl.ptr[0] >= '0' && cl.ptr[0] <= '9') {
            memcpy(num, cl.ptr, cl.len);
            num[cl.len] = '\0';
            im->total = strtoull(num, NULL, 10);
        }
    } else if (status != 416) { /* 416: nothing at off, the end of the source */
        note(im, "the source answered HTTP %d", status);
    }
    if (im->total != UINT64_MAX && im->total > im->size)
        note(im, "the source (%" PRIu64 " bytes) is larger than the volume (%" PRIu64 " bytes)",
             im->total, im->size);
}

static int on_body(SovHttpClientReq *q, const char *p, size_t n, void *ud)
{
    BlockImport *im = ud;
    if (im->detached || im->state != IMPORT_RUNNING || im->b->imports_stopping || im->error[0])
        return -ECANCELED;
    if (im->status == 416)
        return 0; /* an error document */
    if (n > im->size - im->off) {
        note(im, "the source is larger than the volume (%" PRIu64 " bytes)", im->size);
        return -ECANCELED;
    }
    if (n > im->piece_end - im->off) {
        note(im, "the source sent more than the range asked for");
        return -ECANCELED;
    }
    while (n > 0) {
        size_t k = SOV_MIN(n, IMPORT_BUF - im->fill);
        memcpy(im->buf + im->fill, p, k);
        im->fill += k;
        im->off += k;
        p += k;
        n -= k;
        if (im->fill == IMPORT_BUF && write_staged(im) < 0)
            return -ECANCELED;
    }
    return 0;
}

static void fetch(BlockImport *im);

static void flushed(void *ud, int err)
{
    BlockImport *im = ud;
    Block *b = im->b;
    im->busy = false;
    if (im->detached) {
        import_free(im);
        return;
    }
    if (err < 0) {
        note(im, "flushing the volume failed: %s", strerror(-err));
        import_fail(im);
        return;
    }
    unlist(b, im);
    int r = markers_save(b);
    if (r < 0) /* the volume is complete, but a restart will delete it and it is copied again */
        log_error_errno(r, "volume %s: cannot rewrite imports.json", im->name);
    log_info("volume %s: imported %" PRIu64 " bytes from %s:%d", im->name, im->off, im->host,
             im->port);
    sov_counter_add(m_done, 1);
    import_free(im);
}

static void on_done(SovHttpClientReq *q, int err, void *ud)
{
    BlockImport *im = ud;
    Block *b = im->b;
    im->busy = false;
    if (im->detached) {
        import_free(im);
        return;
    }
    if (im->state != IMPORT_RUNNING)
        return; /* failed (or stopped) while the GET was in flight */
    if (b->imports_stopping) {
        release_volume(im); /* imports.json still names it: the next start deletes it */
        return;
    }
    if (err < 0)
        note(im, "reading the source failed: %s", err == -ETIMEDOUT ? "timed out" : strerror(-err));
    if (im->status == 206 && im->off != im->piece_end)
        note(im, "the source sent %" PRIu64 " bytes less than its range", im->piece_end - im->off);
    if (im->error[0]) {
        import_fail(im);
        return;
    }
    bool end = im->whole || im->status == 416 || (im->total != UINT64_MAX && im->off >= im->total);
    if (!end) {
        fetch(im);
        return;
    }
    if (write_staged(im) < 0) {
        import_fail(im);
        return;
    }
    im->total = im->off;
    im->state = IMPORT_FLUSHING;
    im->busy = true;
    int r = vol_flush_async(im->v, b->loop, flushed, im);
    if (r < 0) {
        im->busy = false;
        im->state = IMPORT_RUNNING;
        note(im, "flushing the volume failed: %s", strerror(-r));
        import_fail(im);
    }
}

/* Asks for the next piece; the answer comes from the loop (a failure to start too). */
static void fetch(BlockImport *im)
{
    static const SovHttpClientCallbacks cbs = {on_headers, on_body, on_done};
    char range[96];
    const char *hdrs[] = {range, NULL};
    uint64_t end = im->off + IMPORT_PIECE;
    if (im->total != UINT64_MAX && end > im->total)
        end = im->total;
    im->piece_end = end;
    im->status = 0;
    im->whole = false;
    snprintf(range, sizeof(range), "Range: bytes=%" PRIu64 "-%" PRIu64, im->off, end - 1);
    im->busy = true;
    int r = sov_http_client_request(im->b->loop, im->host, im->port, "GET", im->target, hdrs,
                                    SOV_STR_NULL, IMPORT_TIMEOUT_MS, &cbs, im);
    if (r < 0) {
        im->busy = false;
        note(im, "cannot reach the source: %s", strerror(-r));
        import_fail(im);
    }
}

int block_import_start(Block *b, const char *name, uint64_t size, bool encrypted, const char *url,
                       SovBuf *err)
{
    VolInfo vi;
    size_t running = 0;
    int r;
    metrics_init();
    for (BlockImport *im = b->imports; im; im = im->next)
        running += im->state != IMPORT_FAILED;
    BlockImport *im = calloc(1, sizeof(*im));
    if (!im)
        return -ENOMEM;
    im->b = b;
    im->size = size;
    im->total = UINT64_MAX;
    snprintf(im->name, sizeof(im->name), "%s", name);
    if ((r = parse_url(im, url, err)) < 0)
        goto fail;
    if (vol_info(b->store, name, &vi) == 0) {
        sov_buf_printf(err, "a volume or snapshot named %s exists", name);
        r = -EEXIST;
        goto fail;
    }
    if (running >= IMPORT_RUNNING_MAX) {
        sov_buf_printf(err, "%d imports are running; try again later", IMPORT_RUNNING_MAX);
        r = -EAGAIN;
        goto fail;
    }
    if (!(im->buf = malloc(IMPORT_BUF))) {
        r = -ENOMEM;
        goto fail;
    }
    /* The marker goes first: a crash right after the create leaves a volume the next start
     * deletes, never one that looks complete. */
    im->next = b->imports;
    b->imports = im;
    if ((r = markers_save(b)) < 0) {
        sov_buf_printf(err, "cannot record the import: %s", strerror(-r));
        goto unlist;
    }
    if ((r = vol_create(b->store, name, size, encrypted, err)) < 0)
        goto unlist;
    if (!(im->v = vol_open(b->store, name, &r))) {
        SovBuf e2 = SOV_BUF_INIT;
        vol_delete(b->store, name, &e2);
        sov_buf_release(&e2);
        sov_buf_printf(err, "cannot open the new volume: %s", strerror(r ? -r : ENOENT));
        r = r ? r : -EIO;
        goto unlist;
    }
    log_info("volume %s: importing from %s:%d", name, im->host, im->port);
    fetch(im);
    return 0;
unlist:
    unlist(b, im);
    markers_save(b);
fail:
    import_free(im);
    return r;
}

bool block_import_busy(Block *b, const char *name)
{
    return find(b, name) != NULL;
}

int block_import_stop(Block *b, const char *name)
{
    BlockImport *im = find(b, name);
    if (!im || im->state == IMPORT_FAILED)
        return 0;
    if (im->state == IMPORT_FLUSHING)
        return -EBUSY;
    note(im, "deleted while importing");
    import_fail(im);
    return 0;
}

void block_import_forget(Block *b, const char *name)
{
    BlockImport *im = find(b, name);
    if (!im)
        return;
    unlist(b, im);
    int r = markers_save(b);
    if (r < 0)
        log_error_errno(r, "cannot rewrite imports.json");
    if (im->busy)
        im->detached = true;
    else
        import_free(im);
}

void block_import_describe(Block *b, const char *name, json_t *o)
{
    static const char *const states[] = {"importing", "flushing", "failed"};
    BlockImport *im = find(b, name);
    if (!im)
        return;
    json_t *d = json_pack("{s:s,s:I}", "state", states[im->state], "bytes", (json_int_t)im->off);
    if (im->total != UINT64_MAX)
        json_object_set_new(d, "total", json_integer((json_int_t)im->total));
    if (im->state == IMPORT_FAILED)
        json_object_set_new(d, "error", json_string(im->error));
    json_object_set_new(o, "import", d);
}

void block_imports_stop(Block *b)
{
    b->imports_stopping = true;
    for (BlockImport *im = b->imports; im; im = im->next)
        if (im->state == IMPORT_RUNNING && !im->busy)
            release_volume(im);
}

void block_imports_free(Block *b)
{
    while (b->imports) {
        BlockImport *im = b->imports;
        b->imports = im->next;
        import_free(im);
    }
}
