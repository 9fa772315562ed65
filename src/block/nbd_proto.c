/* SPDX-License-Identifier: Apache-2.0 */
/* The NBD protocol as a socket-free state machine (NbdProto), written from the NBD protocol
 * document: client bytes go in, server bytes come out in a SovBuf, and the backend is called to
 * open exports and to perform requests. The transport (nbd.c) and the tests drive it the same
 * way, so everything a client can send is reachable from a unit test or a fuzzer.
 *
 * Edge cases, decided once here: an option longer than NBD_MAX_OPTION_LEN is skipped (its bytes
 * read and dropped) and answered NBD_REP_ERR_TOO_BIG, except EXPORT_NAME, which cannot fail
 * softly, so an over-long name closes the connection. A WRITE that cannot be served (bad flags,
 * out of range, read-only, longer than the maximum block size, no memory) has its payload read
 * and dropped without being stored, then gets an error reply; the connection stays usable, and
 * memory never depends on the client's length. A bad request magic, a bad option magic,
 * unknown client flags and NBD_CMD_DISC end the connection: nothing more is read, the requests
 * in flight complete and their replies go out, then the transport closes. With TLS required,
 * every option before STARTTLS but ABORT is answered NBD_REP_ERR_TLS_REQD (EXPORT_NAME, which
 * cannot be refused, closes); bytes after an acknowledged STARTTLS go to the transport's TLS,
 * never to the option parser. */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nbd-int.h"

/* Magic numbers (protocol values). */
#define NBD_MAGIC                  0x4e42444d41474943ull /* "NBDMAGIC" */
#define NBD_OPTS_MAGIC             0x49484156454f5054ull /* "IHAVEOPT" */
#define NBD_REP_MAGIC              0x0003e889045565a9ull
#define NBD_REQUEST_MAGIC          0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC     0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efu

enum { NBD_FLAG_FIXED_NEWSTYLE = 1 << 0, NBD_FLAG_NO_ZEROES = 1 << 1 };
enum { NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0, NBD_FLAG_C_NO_ZEROES = 1 << 1 };

enum {
    NBD_OPT_EXPORT_NAME = 1,
    NBD_OPT_ABORT = 2,
    NBD_OPT_LIST = 3,
    NBD_OPT_STARTTLS = 5,
    NBD_OPT_INFO = 6,
    NBD_OPT_GO = 7,
    NBD_OPT_STRUCTURED_REPLY = 8,
    NBD_OPT_LIST_META_CONTEXT = 9,
    NBD_OPT_SET_META_CONTEXT = 10,
};

#define NBD_REP_ERR(n) (0x80000000u | (n))
enum {
    NBD_REP_ACK = 1,
    NBD_REP_SERVER = 2,
    NBD_REP_INFO = 3,
    NBD_REP_META_CONTEXT = 4,
    NBD_REP_ERR_UNSUP = NBD_REP_ERR(1),
    NBD_REP_ERR_POLICY = NBD_REP_ERR(2),
    NBD_REP_ERR_INVALID = NBD_REP_ERR(3),
    NBD_REP_ERR_TLS_REQD = NBD_REP_ERR(5),
    NBD_REP_ERR_UNKNOWN = NBD_REP_ERR(6),
    NBD_REP_ERR_SHUTDOWN = NBD_REP_ERR(7),
    NBD_REP_ERR_TOO_BIG = NBD_REP_ERR(9),
};

enum { NBD_INFO_EXPORT = 0, NBD_INFO_NAME = 1, NBD_INFO_DESCRIPTION = 2, NBD_INFO_BLOCK_SIZE = 3 };

enum {
    NBD_FLAG_HAS_FLAGS = 1 << 0,
    NBD_FLAG_READ_ONLY = 1 << 1,
    NBD_FLAG_SEND_FLUSH = 1 << 2,
    NBD_FLAG_SEND_FUA = 1 << 3,
    NBD_FLAG_SEND_TRIM = 1 << 5,
    NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6,
    NBD_FLAG_SEND_DF = 1 << 7,
    NBD_FLAG_CAN_MULTI_CONN = 1 << 8,
    NBD_FLAG_SEND_CACHE = 1 << 10,
    NBD_FLAG_SEND_FAST_ZERO = 1 << 11,
};

enum { NBD_REPLY_FLAG_DONE = 1 << 0 };
enum {
    NBD_REPLY_TYPE_NONE = 0,
    NBD_REPLY_TYPE_OFFSET_DATA = 1,
    NBD_REPLY_TYPE_OFFSET_HOLE = 2,
    NBD_REPLY_TYPE_BLOCK_STATUS = 5,
    NBD_REPLY_TYPE_ERROR = 0x8001,
};

/* Error values on the wire. */
enum {
    NBD_EPERM = 1,
    NBD_EIO = 5,
    NBD_ENOMEM = 12,
    NBD_EINVAL = 22,
    NBD_ENOSPC = 28,
    NBD_EOVERFLOW = 75,
    NBD_ENOTSUP = 95,
    NBD_ESHUTDOWN = 108,
};

#define META_BASE_ALLOCATION "base:allocation"
#define META_CONTEXT_ID      1
#define OPT_HDR_LEN          16
#define REQ_HDR_LEN          28
#define CFLAGS_LEN           4
#define POOL_BUF_MAX         (1024u * 1024)      /* payload buffers kept for reuse up to this */
#define POOL_BYTES_MAX       (32u * 1024 * 1024) /* pooled payload memory per connection */
#define BUF_ALIGN            4096

enum State {
    ST_CFLAGS,      /* waiting for the 32-bit client flags */
    ST_OPT_HDR,     /* option haggling: next option header */
    ST_OPT_DATA,    /* reading option data into optbuf */
    ST_OPT_SKIP,    /* dropping the data of an over-long option */
    ST_REQ_HDR,     /* transmission: next request header */
    ST_REQ_PAYLOAD, /* reading a WRITE payload into cur */
    ST_REQ_SKIP,    /* dropping the payload of a WRITE that gets an error */
    ST_DEAD,        /* closing: input is ignored */
};

/* One request slot, pooled per connection. io comes first so that an NbdIo pointer is the
 * slot. Invariant: busy from submission to completion; buf holds cap bytes. */
typedef struct NbdReq {
    NbdIo io;
    NbdProto *p;
    uint64_t handle;
    uint32_t cap;
    bool busy;
    NbdExtent *extents; /* NBD_MAX_EXTENTS, allocated on the first BLOCK_STATUS */
    struct NbdReq *next;
} NbdReq;

/* Invariants: in_flight counts submitted, uncompleted requests; backlog is non-empty only while
 * in_flight == NBD_MAX_IN_FLIGHT held a new request back (or just after); hlen < header size;
 * handle is an open export handle exactly when exported. */
struct NbdProto {
    NbdBackend be;
    NbdClientInfo client;
    char *peer;
    enum State state;
    int close_err;

    SovBuf out;     /* bytes to send */
    SovBuf backlog; /* input held back by the in-flight limit */
    uint8_t hdr[REQ_HDR_LEN];
    size_t hlen;
    uint64_t skip; /* bytes left to drop (ST_OPT_SKIP, ST_REQ_SKIP) */

    /* Handshake. */
    bool fixed, no_zeroes, structured;
    NbdTlsMode tls_mode;
    bool tls_pending; /* STARTTLS acknowledged, handshake not done: input waits */
    uint32_t opt, optlen, optgot;
    char *optbuf;
    bool meta_alloc;   /* base:allocation selected by the last SET_META_CONTEXT */
    char *meta_export; /* ... for this export name */

    /* Transmission. */
    bool exported;
    void *handle;
    NbdExportInfo info; /* block sizes sanitized */
    uint16_t tflags;
    NbdReq *cur; /* WRITE whose payload is being read */
    uint32_t cur_got;
    uint64_t skip_handle; /* the WRITE being dropped and its error */
    int skip_err;
    const char *skip_msg;

    NbdReq *free_reqs;
    size_t pooled_bytes;
    unsigned in_flight;

    bool in_feed; /* inside nbd_proto_input(): completions do not notify */
    bool freed;   /* nbd_proto_free() called; freed for real when in_flight drops to 0 */
    NbdProtoNotify notify;
    void *notify_ud;
};

/* ---- byte order ---- */

static inline uint16_t get16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return be16toh(v);
}

static inline uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return be32toh(v);
}

static inline uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return be64toh(v);
}

static inline void put16(uint8_t *p, uint16_t v)
{
    v = htobe16(v);
    memcpy(p, &v, 2);
}

static inline void put32(uint8_t *p, uint32_t v)
{
    v = htobe32(v);
    memcpy(p, &v, 4);
}

static inline void put64(uint8_t *p, uint64_t v)
{
    v = htobe64(v);
    memcpy(p, &v, 8);
}

/* ---- output ---- */

static void proto_close(NbdProto *p, int err)
{
    if (p->state == ST_DEAD)
        return;
    p->state = ST_DEAD;
    p->close_err = err < 0 ? err : -ECONNRESET;
    sov_buf_reset(&p->backlog);
}

static void out_append(NbdProto *p, const void *data, size_t n)
{
    if (sov_buf_append(&p->out, data, n) < 0)
        proto_close(p, -ENOMEM);
}

static uint32_t nbd_errno(int err)
{
    switch (err < 0 ? -err : err) {
    case EPERM:
    case EROFS:
    case EACCES:
        return NBD_EPERM;
    case ENOMEM:
        return NBD_ENOMEM;
    case EINVAL:
    case ERANGE:
        return NBD_EINVAL;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return NBD_ENOSPC;
    case EOVERFLOW:
        return NBD_EOVERFLOW;
    case ENOTSUP:
        return NBD_ENOTSUP;
    case ESHUTDOWN:
        return NBD_ESHUTDOWN;
    default:
        return NBD_EIO;
    }
}

static void opt_reply(NbdProto *p, uint32_t type, const void *data, size_t len)
{
    uint8_t h[20];

    put64(h, NBD_REP_MAGIC);
    put32(h + 8, p->opt);
    put32(h + 12, type);
    put32(h + 16, (uint32_t)len);
    out_append(p, h, sizeof(h));
    if (len)
        out_append(p, data, len);
}

/* Returns 0 so that an option handler can end with `return opt_error(...)`. */
static int opt_error(NbdProto *p, uint32_t type, const char *msg)
{
    opt_reply(p, type, msg, msg ? strlen(msg) : 0);
    return 0;
}

static void reply_simple(NbdProto *p, uint64_t handle, uint32_t err)
{
    uint8_t h[16];

    put32(h, NBD_SIMPLE_REPLY_MAGIC);
    put32(h + 4, err);
    put64(h + 8, handle);
    out_append(p, h, sizeof(h));
}

static void chunk_header(uint8_t *h, uint16_t flags, uint16_t type, uint64_t handle, uint32_t len)
{
    put32(h, NBD_STRUCTURED_REPLY_MAGIC);
    put16(h + 4, flags);
    put16(h + 6, type);
    put64(h + 8, handle);
    put32(h + 16, len);
}

static void reply_ok(NbdProto *p, uint64_t handle)
{
    uint8_t h[20];

    if (!p->structured) {
        reply_simple(p, handle, 0);
        return;
    }
    chunk_header(h, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, handle, 0);
    out_append(p, h, sizeof(h));
}

static void reply_error(NbdProto *p, uint64_t handle, int err, const char *msg)
{
    uint8_t h[26];
    size_t mlen = msg ? strlen(msg) : 0;

    if (!p->structured) {
        reply_simple(p, handle, nbd_errno(err));
        return;
    }
    chunk_header(h, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, handle, (uint32_t)(6 + mlen));
    put32(h + 20, nbd_errno(err));
    put16(h + 24, (uint16_t)mlen);
    out_append(p, h, sizeof(h));
    if (mlen)
        out_append(p, msg, mlen);
}

/* ---- request slots ---- */

static NbdReq *req_get(NbdProto *p, uint32_t need)
{
    NbdReq *r = p->free_reqs;

    if (r) {
        p->free_reqs = r->next;
        p->pooled_bytes -= r->cap;
    } else {
        r = calloc(1, sizeof(*r));
        if (!r)
            return NULL;
        r->p = p;
    }
    if (need > r->cap) {
        size_t want = need <= POOL_BUF_MAX ? (need + BUF_ALIGN - 1) / BUF_ALIGN * BUF_ALIGN : need;
        void *b = NULL;

        free(r->io.buf);
        r->io.buf = NULL;
        r->cap = 0;
        if (posix_memalign(&b, BUF_ALIGN, want) != 0) {
            r->next = p->free_reqs;
            p->free_reqs = r;
            return NULL;
        }
        r->io.buf = b;
        r->cap = (uint32_t)want;
    }
    r->next = NULL;
    return r;
}

static void req_put(NbdProto *p, NbdReq *r)
{
    r->busy = false;
    if (r->cap > POOL_BUF_MAX || p->pooled_bytes + r->cap > POOL_BYTES_MAX) {
        free(r->io.buf);
        r->io.buf = NULL;
        r->cap = 0;
    }
    p->pooled_bytes += r->cap;
    r->next = p->free_reqs;
    p->free_reqs = r;
}

static void req_destroy(NbdReq *r)
{
    free(r->io.buf);
    free(r->extents);
    free(r);
}

static void req_fill(NbdProto *p, NbdReq *r, uint16_t type, uint16_t flags, uint64_t handle,
                     uint64_t offset, uint32_t length)
{
    char *buf = r->io.buf;

    r->io = (NbdIo){
        .type = type,
        .flags = flags,
        .offset = offset,
        .length = length,
        .buf = buf,
        .export_handle = p->handle,
        .priv = r,
    };
    r->handle = handle;
}

static void req_submit(NbdProto *p, NbdReq *r)
{
    r->busy = true;
    p->in_flight++;
    p->be.submit(p->be.ud, &r->io);
}

/* ---- handshake ---- */

static bool name_ok(const uint8_t *s, size_t n)
{
    return n <= NBD_MAX_EXPORT_NAME && memchr(s, '\0', n) == NULL;
}

/* Block size constraints: the backend's, or the defaults, made consistent. */
static void sanitize_info(NbdExportInfo *info)
{
    uint32_t min = info->min_block, pref = info->pref_block, max = info->max_block;

    if (min == 0 || min > 65536 || (min & (min - 1)) != 0)
        min = 1;
    if (pref == 0 || (pref & (pref - 1)) != 0 || pref < SOV_MAX(min, 512u))
        pref = SOV_MAX(4096u, min);
    if (max == 0 || max > NBD_MAX_PAYLOAD)
        max = NBD_MAX_PAYLOAD;
    max -= max % min;
    if (max < SOV_MIN(pref, 1024u * 1024))
        max = SOV_MIN(pref, 1024u * 1024);
    info->min_block = min;
    info->pref_block = pref;
    info->max_block = max;
    info->description[sizeof(info->description) - 1] = '\0';
}

static uint16_t transmission_flags(const NbdProto *p, const NbdExportInfo *info)
{
    uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA;

    if (info->read_only) {
        f |= NBD_FLAG_READ_ONLY;
    } else {
        if (info->can_trim)
            f |= NBD_FLAG_SEND_TRIM;
        if (info->can_zero) {
            f |= NBD_FLAG_SEND_WRITE_ZEROES;
            if (info->can_fast_zero)
                f |= NBD_FLAG_SEND_FAST_ZERO;
        }
    }
    if (p->structured)
        f |= NBD_FLAG_SEND_DF;
    if (info->can_multi_conn)
        f |= NBD_FLAG_CAN_MULTI_CONN;
    if (info->can_cache)
        f |= NBD_FLAG_SEND_CACHE;
    return f;
}

static int export_open(NbdProto *p, const char *name, void **ret_handle, NbdExportInfo *ret_info)
{
    NbdExportInfo info = {0};
    void *handle = NULL;
    int r;

    r = p->be.open(p->be.ud, name, &p->client, &handle, &info);
    if (r < 0)
        return r;
    sanitize_info(&info);
    *ret_handle = handle;
    *ret_info = info;
    return 0;
}

static int opt_error_from_open(NbdProto *p, int r)
{
    switch (r) {
    case -ENOENT:
        opt_error(p, NBD_REP_ERR_UNKNOWN, "no such export");
        break;
    case -EACCES:
    case -EPERM:
        opt_error(p, NBD_REP_ERR_POLICY, "access to this export is denied");
        break;
    case -ESHUTDOWN:
        opt_error(p, NBD_REP_ERR_SHUTDOWN, "the server is shutting down");
        break;
    default:
        opt_error(p, NBD_REP_ERR_UNKNOWN, "the export cannot be opened");
        break;
    }
    return 0;
}

static void enter_transmission(NbdProto *p, const char *name, void *handle,
                               const NbdExportInfo *info)
{
    p->exported = true;
    p->handle = handle;
    p->info = *info;
    p->tflags = transmission_flags(p, info);
    /* Block status needs contexts chosen for this very export. */
    if (p->meta_alloc && (!p->meta_export || strcmp(p->meta_export, name) != 0))
        p->meta_alloc = false;
    free(p->optbuf);
    p->optbuf = NULL;
    p->state = ST_REQ_HDR;
}

static void opt_export_name(NbdProto *p, const uint8_t *d, uint32_t len)
{
    char name[NBD_MAX_EXPORT_NAME + 1];
    NbdExportInfo info;
    void *handle;
    uint8_t reply[10 + 124] = {0};

    /* EXPORT_NAME cannot fail softly: the only answer to a bad or unknown name is to close. */
    if (!name_ok(d, len)) {
        proto_close(p, -EINVAL);
        return;
    }
    memcpy(name, d, len);
    name[len] = '\0';
    if (export_open(p, name, &handle, &info) < 0) {
        proto_close(p, -ENOENT);
        return;
    }
    enter_transmission(p, name, handle, &info);
    put64(reply, info.size);
    put16(reply + 8, p->tflags);
    out_append(p, reply, p->no_zeroes ? 10 : sizeof(reply));
}

static void info_reply(NbdProto *p, uint16_t type, const void *data, size_t len)
{
    uint8_t buf[2 + NBD_MAX_EXPORT_NAME];

    put16(buf, type);
    memcpy(buf + 2, data, len);
    opt_reply(p, NBD_REP_INFO, buf, 2 + len);
}

static int opt_info_go(NbdProto *p, bool go, const uint8_t *d, uint32_t len)
{
    char name[NBD_MAX_EXPORT_NAME + 1];
    NbdExportInfo info;
    void *handle;
    uint32_t nlen;
    uint16_t nreq;
    bool want_name = false, want_desc = false;
    uint8_t b[14];
    int r;

    if (len < 6)
        return opt_error(p, NBD_REP_ERR_INVALID, "option too short");
    nlen = get32(d);
    if (nlen > len - 6)
        return opt_error(p, NBD_REP_ERR_INVALID, "name length beyond the option");
    nreq = get16(d + 4 + nlen);
    if ((uint64_t)len != 4 + (uint64_t)nlen + 2 + 2 * (uint64_t)nreq)
        return opt_error(p, NBD_REP_ERR_INVALID, "option length does not match its requests");
    if (!name_ok(d + 4, nlen))
        return opt_error(p, NBD_REP_ERR_INVALID, "invalid export name");
    memcpy(name, d + 4, nlen);
    name[nlen] = '\0';
    for (uint16_t i = 0; i < nreq; i++) {
        uint16_t t = get16(d + 4 + nlen + 2 + 2 * (size_t)i);
        want_name |= t == NBD_INFO_NAME;
        want_desc |= t == NBD_INFO_DESCRIPTION;
    }

    r = export_open(p, name, &handle, &info);
    if (r < 0)
        return opt_error_from_open(p, r);

    put16(b, NBD_INFO_EXPORT);
    put64(b + 2, info.size);
    put16(b + 10, transmission_flags(p, &info));
    opt_reply(p, NBD_REP_INFO, b, 12);
    if (want_name)
        info_reply(p, NBD_INFO_NAME, name, nlen);
    if (want_desc && info.description[0])
        info_reply(p, NBD_INFO_DESCRIPTION, info.description, strlen(info.description));
    /* Sent whether asked for or not: the client may ignore it. */
    put16(b, NBD_INFO_BLOCK_SIZE);
    put32(b + 2, info.min_block);
    put32(b + 6, info.pref_block);
    put32(b + 10, info.max_block);
    opt_reply(p, NBD_REP_INFO, b, 14);
    opt_reply(p, NBD_REP_ACK, NULL, 0);
    if (go)
        enter_transmission(p, name, handle, &info);
    else if (p->be.close)
        p->be.close(p->be.ud, handle);
    return 0;
}

static void list_emit(void *ctx, const char *name, const char *description)
{
    NbdProto *p = ctx;
    uint8_t buf[4 + NBD_MAX_EXPORT_NAME + NBD_MAX_EXPORT_NAME];
    size_t nlen, dlen;

    if (!name || p->state == ST_DEAD)
        return;
    nlen = strlen(name);
    dlen = description ? strnlen(description, NBD_MAX_EXPORT_NAME) : 0;
    if (nlen > NBD_MAX_EXPORT_NAME)
        return;
    put32(buf, (uint32_t)nlen);
    memcpy(buf + 4, name, nlen);
    if (dlen)
        memcpy(buf + 4 + nlen, description, dlen);
    opt_reply(p, NBD_REP_SERVER, buf, 4 + nlen + dlen);
}

static int opt_list(NbdProto *p, uint32_t len)
{
    int r = 0;

    if (len != 0)
        return opt_error(p, NBD_REP_ERR_INVALID, "LIST takes no data");
    if (p->be.list)
        r = p->be.list(p->be.ud, &p->client, list_emit, p);
    if (r == -EACCES || r == -EPERM)
        opt_error(p, NBD_REP_ERR_POLICY, "listing exports is not allowed");
    else if (r == -ESHUTDOWN)
        opt_error(p, NBD_REP_ERR_SHUTDOWN, "the server is shutting down");
    else if (r < 0)
        opt_error(p, NBD_REP_ERR_POLICY, "exports cannot be listed");
    else
        opt_reply(p, NBD_REP_ACK, NULL, 0);
    return 0;
}

static void meta_clear(NbdProto *p)
{
    p->meta_alloc = false;
    free(p->meta_export);
    p->meta_export = NULL;
}

/* LIST_META_CONTEXT and SET_META_CONTEXT: export name, then queries. The only context is
 * base:allocation; "base:" lists it too; queries of other namespaces are ignored. */
static int opt_meta(NbdProto *p, bool set, const uint8_t *d, uint32_t len)
{
    char name[NBD_MAX_EXPORT_NAME + 1];
    NbdExportInfo info;
    void *handle;
    uint32_t nlen, nq, pos;
    bool want = false;
    uint8_t b[4 + sizeof(META_BASE_ALLOCATION) - 1];
    int r;

    if (set)
        meta_clear(p); /* even when this request fails */
    if (!p->structured)
        return opt_error(p, NBD_REP_ERR_INVALID, "structured replies must be negotiated first");
    if (len < 8)
        return opt_error(p, NBD_REP_ERR_INVALID, "option too short");
    nlen = get32(d);
    if (nlen > len - 8)
        return opt_error(p, NBD_REP_ERR_INVALID, "name length beyond the option");
    if (!name_ok(d + 4, nlen))
        return opt_error(p, NBD_REP_ERR_INVALID, "invalid export name");
    memcpy(name, d + 4, nlen);
    name[nlen] = '\0';
    pos = 4 + nlen;
    nq = get32(d + pos);
    pos += 4;
    /* The structure first, so that a malformed request selects nothing. */
    for (uint32_t i = 0; i < nq; i++) {
        uint32_t qlen;
        if (len - pos < 4)
            return opt_error(p, NBD_REP_ERR_INVALID, "query beyond the option");
        qlen = get32(d + pos);
        pos += 4;
        if (qlen > len - pos)
            return opt_error(p, NBD_REP_ERR_INVALID, "query beyond the option");
        if (qlen > NBD_MAX_EXPORT_NAME)
            return opt_error(p, NBD_REP_ERR_TOO_BIG, "query too long");
        pos += qlen;
    }
    if (pos != len)
        return opt_error(p, NBD_REP_ERR_INVALID, "trailing data after the queries");

    r = export_open(p, name, &handle, &info);
    if (r < 0)
        return opt_error_from_open(p, r);
    if (p->be.close)
        p->be.close(p->be.ud, handle);

    if (nq == 0)
        want = !set;
    pos = 4 + nlen + 4;
    for (uint32_t i = 0; i < nq; i++) {
        uint32_t qlen = get32(d + pos);
        SovStr q = {(const char *)d + pos + 4, qlen};
        pos += 4 + qlen;
        if (sov_str_eq(q, SOV_STR(META_BASE_ALLOCATION)) ||
            (!set && sov_str_eq(q, SOV_STR("base:"))))
            want = true;
    }
    if (want) {
        if (set) {
            p->meta_export = strdup(name);
            if (!p->meta_export)
                return opt_error(p, NBD_REP_ERR_TOO_BIG, "out of memory");
            p->meta_alloc = true;
        }
        put32(b, set ? META_CONTEXT_ID : 0);
        memcpy(b + 4, META_BASE_ALLOCATION, sizeof(META_BASE_ALLOCATION) - 1);
        opt_reply(p, NBD_REP_META_CONTEXT, b, sizeof(b));
    }
    opt_reply(p, NBD_REP_ACK, NULL, 0);
    return 0;
}

/* FORCEDTLS: before TLS is up every option but STARTTLS and ABORT is refused. */
static bool opt_needs_tls(const NbdProto *p)
{
    return p->tls_mode == NBD_TLS_REQUIRE && !p->client.tls && p->opt != NBD_OPT_STARTTLS &&
           p->opt != NBD_OPT_ABORT;
}

static void opt_starttls(NbdProto *p, uint32_t len)
{
    if (p->tls_mode == NBD_TLS_OFF || !p->fixed) {
        opt_error(p, NBD_REP_ERR_UNSUP, "TLS is not enabled on this server");
        return;
    }
    if (p->client.tls) {
        opt_error(p, NBD_REP_ERR_INVALID, "TLS is already in use");
        return;
    }
    if (len != 0) {
        opt_error(p, NBD_REP_ERR_INVALID, "STARTTLS takes no data");
        return;
    }
    opt_reply(p, NBD_REP_ACK, NULL, 0);
    p->tls_pending = true;
}

/* Runs the option in p->opt with its data (all of it) in p->optbuf. */
static void handle_option(NbdProto *p)
{
    /* Empty options have no buffer; handlers still get a valid pointer. */
    const uint8_t *d = p->optlen ? (const uint8_t *)p->optbuf : (const uint8_t *)"";
    uint32_t len = p->optlen;

    p->state = ST_OPT_HDR; /* unless the option changes it */
    if (opt_needs_tls(p)) {
        /* EXPORT_NAME cannot fail softly: the session ends. */
        if (p->opt == NBD_OPT_EXPORT_NAME)
            proto_close(p, -EACCES);
        else
            opt_error(p, NBD_REP_ERR_TLS_REQD, "TLS is required: send NBD_OPT_STARTTLS first");
        return;
    }
    switch (p->opt) {
    case NBD_OPT_EXPORT_NAME:
        opt_export_name(p, d, len);
        break;
    case NBD_OPT_ABORT:
        opt_reply(p, NBD_REP_ACK, NULL, 0);
        proto_close(p, -ECONNABORTED);
        break;
    case NBD_OPT_LIST:
        opt_list(p, len);
        break;
    case NBD_OPT_STARTTLS:
        opt_starttls(p, len);
        break;
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
        opt_info_go(p, p->opt == NBD_OPT_GO, d, len);
        break;
    case NBD_OPT_STRUCTURED_REPLY:
        if (len != 0) {
            opt_error(p, NBD_REP_ERR_INVALID, "STRUCTURED_REPLY takes no data");
            break;
        }
        p->structured = true;
        opt_reply(p, NBD_REP_ACK, NULL, 0);
        break;
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
        opt_meta(p, p->opt == NBD_OPT_SET_META_CONTEXT, d, len);
        break;
    default:
        opt_error(p, NBD_REP_ERR_UNSUP, "unknown option");
        break;
    }
}

static void on_client_flags(NbdProto *p, const uint8_t *h)
{
    uint32_t flags = get32(h);

    /* Unknown client flags: the protocol says to drop the connection. */
    if (flags & ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
        proto_close(p, -EPROTO);
        return;
    }
    p->fixed = flags & NBD_FLAG_C_FIXED_NEWSTYLE;
    p->no_zeroes = flags & NBD_FLAG_C_NO_ZEROES;
    /* TLS needs fixed newstyle; a server that requires it cannot serve such a client. */
    if (!p->fixed && p->tls_mode == NBD_TLS_REQUIRE) {
        proto_close(p, -EPROTO);
        return;
    }
    p->state = ST_OPT_HDR;
}

static void on_option_header(NbdProto *p, const uint8_t *h)
{
    char *nb;

    if (get64(h) != NBD_OPTS_MAGIC) {
        proto_close(p, -EBADMSG);
        return;
    }
    p->opt = get32(h + 8);
    p->optlen = get32(h + 12);
    if (p->opt == NBD_OPT_EXPORT_NAME && p->optlen > NBD_MAX_EXPORT_NAME) {
        proto_close(p, -ENAMETOOLONG);
        return;
    }
    if (p->optlen > NBD_MAX_OPTION_LEN) {
        p->skip = p->optlen;
        p->state = ST_OPT_SKIP;
        return;
    }
    if (p->optlen == 0) {
        handle_option(p);
        return;
    }
    nb = realloc(p->optbuf, p->optlen);
    if (!nb) {
        proto_close(p, -ENOMEM);
        return;
    }
    p->optbuf = nb;
    p->optgot = 0;
    p->state = ST_OPT_DATA;
}

/* ---- transmission ---- */

/* 0, or a negative errno for the reply with *msg saying why. */
static int request_check(NbdProto *p, uint16_t type, uint16_t flags, uint64_t off, uint32_t len,
                         const char **msg)
{
    const NbdExportInfo *info = &p->info;
    uint16_t allowed = NBD_CMD_FLAG_FUA;
    uint64_t size;

    switch (type) {
    case NBD_CMD_READ:
        if (p->structured)
            allowed |= NBD_CMD_FLAG_DF;
        break;
    case NBD_CMD_WRITE:
    case NBD_CMD_FLUSH:
    case NBD_CMD_TRIM:
        break;
    case NBD_CMD_CACHE:
        if (!info->can_cache)
            return *msg = "CACHE is not supported", -EINVAL;
        break;
    case NBD_CMD_WRITE_ZEROES:
        allowed |= NBD_CMD_FLAG_NO_HOLE;
        if (p->tflags & NBD_FLAG_SEND_FAST_ZERO)
            allowed |= NBD_CMD_FLAG_FAST_ZERO;
        break;
    case NBD_CMD_BLOCK_STATUS:
        allowed |= NBD_CMD_FLAG_REQ_ONE;
        break;
    default:
        return *msg = "unknown command", -EINVAL;
    }
    if (flags & ~allowed)
        return *msg = "flag not valid for this command", -EINVAL;
    if (info->read_only &&
        (type == NBD_CMD_WRITE || type == NBD_CMD_TRIM || type == NBD_CMD_WRITE_ZEROES))
        return *msg = "the export is read-only", -EPERM;
    if (type == NBD_CMD_TRIM && !info->can_trim)
        return *msg = "TRIM is not supported", -EINVAL;
    if (type == NBD_CMD_WRITE_ZEROES && !info->can_zero)
        return *msg = "WRITE_ZEROES is not supported", -EINVAL;
    if (type == NBD_CMD_BLOCK_STATUS && !p->meta_alloc)
        return *msg = "no metadata context was negotiated", -EINVAL;
    if (type == NBD_CMD_FLUSH)
        return 0; /* offset and length are reserved */
    if ((type == NBD_CMD_READ || type == NBD_CMD_WRITE || type == NBD_CMD_CACHE) &&
        len > info->max_block)
        return *msg = "request longer than the maximum block size", -EINVAL;
    size = p->be.size ? p->be.size(p->be.ud, p->handle) : info->size;
    if (off > size || len > size - off) {
        *msg = "request beyond the end of the export";
        return type == NBD_CMD_WRITE || type == NBD_CMD_WRITE_ZEROES ? -ENOSPC : -EINVAL;
    }
    if (info->min_block > 1 && ((off | len) & (info->min_block - 1)) != 0)
        return *msg = "request not aligned to the minimum block size", -EINVAL;
    if (type == NBD_CMD_BLOCK_STATUS && len == 0)
        return *msg = "BLOCK_STATUS of zero length", -EINVAL;
    return 0;
}

static void on_request(NbdProto *p, const uint8_t *h)
{
    uint16_t flags = get16(h + 4), type = get16(h + 6);
    uint64_t handle = get64(h + 8), off = get64(h + 16);
    uint32_t len = get32(h + 24);
    const char *msg = NULL;
    NbdReq *r;
    int err;

    if (get32(h) != NBD_REQUEST_MAGIC) {
        proto_close(p, -EBADMSG);
        return;
    }
    if (type == NBD_CMD_DISC) {
        /* Requests in flight still complete and are answered before the transport closes. */
        proto_close(p, -ECONNRESET);
        return;
    }
    err = request_check(p, type, flags, off, len, &msg);
    if (type == NBD_CMD_WRITE && len > 0) {
        if (err == 0) {
            r = req_get(p, len);
            if (r) {
                req_fill(p, r, type, flags, handle, off, len);
                p->cur = r;
                p->cur_got = 0;
                p->state = ST_REQ_PAYLOAD;
                return;
            }
            err = -ENOMEM;
            msg = "out of memory";
        }
        /* The payload must be read past to find the next request; it is not stored. */
        p->skip = len;
        p->skip_handle = handle;
        p->skip_err = err;
        p->skip_msg = msg;
        p->state = ST_REQ_SKIP;
        return;
    }
    if (err < 0) {
        reply_error(p, handle, err, msg);
        return;
    }
    if (len == 0 && type != NBD_CMD_FLUSH) {
        /* Nothing to do; for READ this is the reply without data (or a NONE chunk). */
        reply_ok(p, handle);
        return;
    }
    r = req_get(p, type == NBD_CMD_READ ? len : 0);
    if (r && type == NBD_CMD_BLOCK_STATUS && !r->extents) {
        r->extents = malloc(NBD_MAX_EXTENTS * sizeof(NbdExtent));
        if (!r->extents) {
            req_put(p, r);
            r = NULL;
        }
    }
    if (!r) {
        reply_error(p, handle, -ENOMEM, "out of memory");
        return;
    }
    if (type == NBD_CMD_FLUSH)
        off = len = 0;
    req_fill(p, r, type, flags, handle, off, len);
    if (type == NBD_CMD_BLOCK_STATUS)
        r->io.extents = r->extents;
    req_submit(p, r);
}

static void reply_read(NbdProto *p, NbdReq *r)
{
    const NbdIo *io = &r->io;
    uint8_t h[32];
    char *dst;

    if (io->zero_read && p->structured && !(io->flags & NBD_CMD_FLAG_DF)) {
        chunk_header(h, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_HOLE, r->handle, 12);
        put64(h + 20, io->offset);
        put32(h + 28, io->length);
        out_append(p, h, 32);
        return;
    }
    if (p->structured) {
        chunk_header(h, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA, r->handle, io->length + 8);
        put64(h + 20, io->offset);
        out_append(p, h, 28);
    } else {
        reply_simple(p, r->handle, 0);
    }
    if (sov_buf_reserve(&p->out, io->length) < 0) {
        proto_close(p, -ENOMEM);
        return;
    }
    /* A backend that reports zeros need not have filled the buffer. */
    dst = p->out.ptr + p->out.len;
    if (io->zero_read)
        memset(dst, 0, io->length);
    else
        memcpy(dst, io->buf, io->length);
    p->out.len += io->length;
    p->out.ptr[p->out.len] = '\0';
}

static void reply_block_status(NbdProto *p, NbdReq *r)
{
    const NbdIo *io = &r->io;
    uint32_t n = io->extents ? SOV_MIN(io->nextents, (uint32_t)NBD_MAX_EXTENTS) : 0;
    bool one = io->flags & NBD_CMD_FLAG_REQ_ONE;
    uint64_t total = 0;
    uint32_t k = 0;
    uint8_t h[24], e[8];

    /* Extents are clamped to the request, so the reply never describes bytes beyond it. */
    for (uint32_t i = 0; i < n && total < io->length && !(one && k == 1); i++) {
        if (io->extents[i].length == 0)
            continue;
        total += SOV_MIN((uint64_t)io->extents[i].length, io->length - total);
        k++;
    }
    chunk_header(h, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, r->handle,
                 4 + 8 * SOV_MAX(k, 1u));
    put32(h + 20, META_CONTEXT_ID);
    out_append(p, h, sizeof(h));
    if (k == 0) {
        /* Nothing usable: status 0 ("allocated, contents unknown") is always safe. */
        put32(e, io->length);
        put32(e + 4, 0);
        out_append(p, e, 8);
        return;
    }
    total = 0;
    k = 0;
    for (uint32_t i = 0; i < n && total < io->length && !(one && k == 1); i++) {
        uint32_t l;
        if (io->extents[i].length == 0)
            continue;
        l = (uint32_t)SOV_MIN((uint64_t)io->extents[i].length, io->length - total);
        put32(e, l);
        put32(e + 4, io->extents[i].flags & (NBD_STATE_HOLE | NBD_STATE_ZERO));
        out_append(p, e, 8);
        total += l;
        k++;
    }
}

static void proto_destroy(NbdProto *p);

void nbd_io_complete(NbdIo *io, int err)
{
    NbdReq *r = io->priv;
    NbdProto *p;

    if (!r || !r->busy)
        return; /* a second completion of the same request: ignored */
    p = r->p;
    if (err > 0)
        err = -err;
    if (!p->freed) {
        if (err < 0)
            reply_error(p, r->handle, err, NULL);
        else if (io->type == NBD_CMD_READ)
            reply_read(p, r);
        else if (io->type == NBD_CMD_BLOCK_STATUS)
            reply_block_status(p, r);
        else
            reply_ok(p, r->handle);
    }
    p->in_flight--;
    req_put(p, r);
    if (p->freed) {
        if (p->in_flight == 0)
            proto_destroy(p);
        return;
    }
    if (!p->in_feed && p->notify)
        p->notify(p, p->notify_ud);
}

/* ---- input ---- */

static size_t header_size(enum State st)
{
    return st == ST_CFLAGS ? CFLAGS_LEN : st == ST_OPT_HDR ? OPT_HDR_LEN : REQ_HDR_LEN;
}

static void payload_done(NbdProto *p)
{
    NbdReq *r = p->cur;

    p->cur = NULL;
    p->state = ST_REQ_HDR;
    req_submit(p, r);
}

/* Consumes input; returns how much: all of it, unless the in-flight limit holds back a new
 * request. */
static size_t process(NbdProto *p, const uint8_t *d, size_t n)
{
    size_t pos = 0;

    while (pos < n) {
        size_t take;

        /* What follows an acknowledged STARTTLS is TLS, never options. */
        if (p->tls_pending)
            return pos;

        switch (p->state) {
        case ST_CFLAGS:
        case ST_OPT_HDR:
        case ST_REQ_HDR: {
            size_t need = header_size(p->state);
            const uint8_t *h;

            if (p->state == ST_REQ_HDR && p->hlen == 0 && p->in_flight >= NBD_MAX_IN_FLIGHT)
                return pos;
            if (p->hlen == 0 && n - pos >= need) {
                h = d + pos;
                pos += need;
            } else {
                take = SOV_MIN(need - p->hlen, n - pos);
                memcpy(p->hdr + p->hlen, d + pos, take);
                p->hlen += take;
                pos += take;
                if (p->hlen < need)
                    return pos;
                h = p->hdr;
                p->hlen = 0;
            }
            if (p->state == ST_CFLAGS)
                on_client_flags(p, h);
            else if (p->state == ST_OPT_HDR)
                on_option_header(p, h);
            else
                on_request(p, h);
            break;
        }
        case ST_OPT_DATA:
            take = SOV_MIN((size_t)(p->optlen - p->optgot), n - pos);
            memcpy(p->optbuf + p->optgot, d + pos, take);
            p->optgot += (uint32_t)take;
            pos += take;
            if (p->optgot == p->optlen)
                handle_option(p);
            break;
        case ST_OPT_SKIP:
            take = (size_t)SOV_MIN(p->skip, (uint64_t)(n - pos));
            p->skip -= take;
            pos += take;
            if (p->skip == 0) {
                p->state = ST_OPT_HDR;
                if (opt_needs_tls(p))
                    opt_error(p, NBD_REP_ERR_TLS_REQD, "TLS is required");
                else
                    opt_error(p, NBD_REP_ERR_TOO_BIG, "option data too long");
            }
            break;
        case ST_REQ_PAYLOAD:
            take = SOV_MIN((size_t)(p->cur->io.length - p->cur_got), n - pos);
            memcpy(p->cur->io.buf + p->cur_got, d + pos, take);
            p->cur_got += (uint32_t)take;
            pos += take;
            if (p->cur_got == p->cur->io.length)
                payload_done(p);
            break;
        case ST_REQ_SKIP:
            take = (size_t)SOV_MIN(p->skip, (uint64_t)(n - pos));
            p->skip -= take;
            pos += take;
            if (p->skip == 0) {
                p->state = ST_REQ_HDR;
                reply_error(p, p->skip_handle, p->skip_err, p->skip_msg);
            }
            break;
        case ST_DEAD:
            return n;
        }
    }
    return pos;
}

int nbd_proto_input(NbdProto *p, const void *data, size_t n)
{
    size_t used;

    if (p->state == ST_DEAD)
        return p->close_err;
    p->in_feed = true;
    if (p->backlog.len > 0) {
        if (n > 0 && sov_buf_append(&p->backlog, data, n) < 0)
            proto_close(p, -ENOMEM);
        used = process(p, (const uint8_t *)p->backlog.ptr, p->backlog.len);
        sov_buf_consume(&p->backlog, used);
    } else if (n > 0) {
        used = process(p, data, n);
        if (used < n && sov_buf_append(&p->backlog, (const char *)data + used, n - used) < 0)
            proto_close(p, -ENOMEM);
    }
    if (p->state == ST_DEAD)
        sov_buf_reset(&p->backlog);
    p->in_feed = false;
    return p->state == ST_DEAD ? p->close_err : 0;
}

void nbd_proto_read_target(NbdProto *p, char **ret_ptr, size_t *ret_len)
{
    if (p->state != ST_REQ_PAYLOAD || p->backlog.len > 0) {
        *ret_ptr = NULL;
        *ret_len = 0;
        return;
    }
    *ret_ptr = p->cur->io.buf + p->cur_got;
    *ret_len = p->cur->io.length - p->cur_got;
}

int nbd_proto_input_in_place(NbdProto *p, size_t n)
{
    if (p->state != ST_REQ_PAYLOAD || n > p->cur->io.length - p->cur_got)
        return -EINVAL;
    p->in_feed = true;
    p->cur_got += (uint32_t)n;
    if (p->cur_got == p->cur->io.length)
        payload_done(p);
    p->in_feed = false;
    return p->state == ST_DEAD ? p->close_err : 0;
}

SovBuf *nbd_proto_out(NbdProto *p)
{
    return &p->out;
}

void nbd_proto_set_notify(NbdProto *p, NbdProtoNotify fn, void *ud)
{
    p->notify = fn;
    p->notify_ud = ud;
}

bool nbd_proto_wants_input(const NbdProto *p)
{
    return p->state != ST_DEAD && p->backlog.len == 0 && !p->tls_pending;
}

bool nbd_proto_tls_pending(const NbdProto *p)
{
    return p->tls_pending;
}

int nbd_proto_tls_start(NbdProto *p, SovBuf *ret_early)
{
    int r = 0;

    if (!p->tls_pending)
        return -EINVAL;
    if (p->backlog.len > 0)
        r = sov_buf_append(ret_early, p->backlog.ptr, p->backlog.len);
    sov_buf_reset(&p->backlog);
    return r;
}

void nbd_proto_tls_ready(NbdProto *p)
{
    if (!p->tls_pending)
        return;
    p->tls_pending = false;
    p->client.tls = true;
    p->structured = false;
    meta_clear(p);
}

bool nbd_proto_in_transmission(const NbdProto *p)
{
    return p->exported;
}

unsigned nbd_proto_in_flight(const NbdProto *p)
{
    return p->in_flight;
}

bool nbd_proto_finished(const NbdProto *p)
{
    return p->state == ST_DEAD && p->in_flight == 0;
}

/* ---- life cycle ---- */

NbdProto *nbd_proto_new(const NbdServerConfig *cfg, const NbdClientInfo *client)
{
    NbdProto *p = calloc(1, sizeof(*p));
    uint8_t greet[18];

    if (!p)
        return NULL;
    p->be = cfg->backend;
    p->peer = strdup(client && client->peer ? client->peer : "unknown");
    if (!p->peer) {
        free(p);
        return NULL;
    }
    p->client.peer = p->peer;
    p->client.tls = client && client->tls;
    p->tls_mode = cfg->tls_mode;
    sov_buf_init(&p->out, 0);
    sov_buf_init(&p->backlog, 0);
    p->state = ST_CFLAGS;
    put64(greet, NBD_MAGIC);
    put64(greet + 8, NBD_OPTS_MAGIC);
    put16(greet + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    if (sov_buf_append(&p->out, greet, sizeof(greet)) < 0) {
        sov_buf_release(&p->out);
        free(p->peer);
        free(p);
        return NULL;
    }
    return p;
}

int nbd_proto_feed(NbdProto *p, const void *data, size_t n, SovBuf *out)
{
    int r = nbd_proto_input(p, data, n);

    if (p->out.len > 0) {
        if (sov_buf_append(out, p->out.ptr, p->out.len) < 0 && r == 0)
            r = -ENOMEM;
        sov_buf_reset(&p->out);
    }
    return r;
}

static void proto_destroy(NbdProto *p)
{
    NbdReq *r;

    if (p->cur)
        req_destroy(p->cur);
    while ((r = p->free_reqs)) {
        p->free_reqs = r->next;
        req_destroy(r);
    }
    if (p->exported && p->be.close)
        p->be.close(p->be.ud, p->handle);
    sov_buf_release(&p->out);
    sov_buf_release(&p->backlog);
    free(p->optbuf);
    free(p->meta_export);
    free(p->peer);
    free(p);
}

void nbd_proto_free(NbdProto *p)
{
    if (!p)
        return;
    p->notify = NULL;
    p->freed = true;
    /* Requests in flight still point here: the last completion frees it. */
    if (p->in_flight == 0)
        proto_destroy(p);
}
