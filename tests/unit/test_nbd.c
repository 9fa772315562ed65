/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for sov-block's NBD server: the protocol state machine (NbdProto) is fed client
 * bytes and its output is parsed back, against a memory backend that completes requests
 * inline or later in any order; one test runs the libuv transport over a Unix socket. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <endian.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "nbd-int.h"

/* Protocol values the tests check against (written out, not taken from the server). */
#define OPT_EXPORT_NAME 1
#define OPT_ABORT       2
#define OPT_LIST        3
#define OPT_STARTTLS    5
#define OPT_INFO        6
#define OPT_GO          7
#define OPT_STRUCTURED  8
#define OPT_LIST_META   9
#define OPT_SET_META    10
#define REP_ACK         1
#define REP_SERVER      2
#define REP_INFO        3
#define REP_META        4
#define REP_ERR_UNSUP   0x80000001u
#define REP_ERR_POLICY  0x80000002u
#define REP_ERR_INVALID 0x80000003u
#define REP_ERR_TLSREQD 0x80000005u
#define REP_ERR_UNKNOWN 0x80000006u
#define REP_ERR_TOO_BIG 0x80000009u
#define F_HAS_FLAGS     0x1
#define F_READ_ONLY     0x2
#define F_SEND_DF       0x80
#define CT_NONE         0
#define CT_DATA         1
#define CT_HOLE         2
#define CT_BS           5
#define CT_ERROR        0x8001
#define E_PERM          1
#define E_INVAL         22
#define E_NOSPC         28
#define E_IO            5

/* ---- memory backend ---- */

#define DISK_SIZE (1024u * 1024)
#define RO_SIZE   (64u * 1024)

typedef struct Mem {
    uint8_t disk[DISK_SIZE];
    uint8_t ro[RO_SIZE];
    uint64_t disk_size; /* may grow (online resize) */
    bool deferred;
    NbdIo *queue[NBD_MAX_IN_FLIGHT + 8];
    unsigned nqueue;
    unsigned opens, closes, submits;
    int fail_next; /* error for the next request */
    bool last_tls; /* NbdClientInfo.tls of the last open */
} Mem;

static Mem *mem;

static int m_open(void *ud, const char *name, const NbdClientInfo *c, void **h, NbdExportInfo *info)
{
    Mem *m = ud;

    m->last_tls = c->tls;
    if (strcmp(name, "deny") == 0)
        return -EACCES;
    if (strcmp(name, "disk") == 0 || name[0] == '\0' || strcmp(name, "blk") == 0) {
        *h = m->disk;
        info->size = m->disk_size;
        info->can_trim = info->can_zero = info->can_fast_zero = info->can_cache = true;
        info->can_multi_conn = true;
        if (strcmp(name, "blk") == 0)
            info->min_block = 512;
        snprintf(info->description, sizeof(info->description), "a disk");
    } else if (strcmp(name, "ro") == 0) {
        *h = m->ro;
        info->size = RO_SIZE;
        info->read_only = true;
    } else {
        return -ENOENT;
    }
    m->opens++;
    return 0;
}

static void m_close(void *ud, void *h)
{
    ((Mem *)ud)->closes++;
}

static int m_list(void *ud, const NbdClientInfo *c,
                  void (*emit)(void *ctx, const char *name, const char *desc), void *ctx)
{
    emit(ctx, "disk", "a disk");
    emit(ctx, "ro", NULL);
    return 0;
}

static uint64_t m_size(void *ud, void *h)
{
    Mem *m = ud;
    return h == m->ro ? RO_SIZE : m->disk_size;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static int m_do(Mem *m, NbdIo *io)
{
    uint8_t *d = io->export_handle;

    if (m->fail_next) {
        int e = m->fail_next;
        m->fail_next = 0;
        return e;
    }
    switch (io->type) {
    case NBD_CMD_READ:
        if (all_zero(d + io->offset, io->length))
            io->zero_read = true; /* and the buffer is left unfilled on purpose */
        else
            memcpy(io->buf, d + io->offset, io->length);
        return 0;
    case NBD_CMD_WRITE:
        memcpy(d + io->offset, io->buf, io->length);
        return 0;
    case NBD_CMD_TRIM:
    case NBD_CMD_WRITE_ZEROES:
        memset(d + io->offset, 0, io->length);
        return 0;
    case NBD_CMD_BLOCK_STATUS:
        /* 4 KiB granules, data (0) or hole+zero (3), merged. */
        for (uint64_t off = io->offset; off < io->offset + io->length;) {
            uint32_t l = 4096 - (uint32_t)(off % 4096);
            uint32_t f = all_zero(d + off, l) ? 3 : 0;
            if (io->nextents && io->extents[io->nextents - 1].flags == f)
                io->extents[io->nextents - 1].length += l;
            else
                io->extents[io->nextents++] = (NbdExtent){l, f};
            off += l;
        }
        return 0;
    default:
        return 0;
    }
}

static void m_submit(void *ud, NbdIo *io)
{
    Mem *m = ud;

    m->submits++;
    assert_int_not_equal(io->type, NBD_CMD_DISC);
    if (m->deferred) {
        assert_true(m->nqueue < ELEMENTSOF(m->queue));
        m->queue[m->nqueue++] = io;
        return;
    }
    nbd_io_complete(io, m_do(m, io));
}

/* Completes queued request i (in queue order) and removes it from the queue. */
static void m_complete(Mem *m, unsigned i)
{
    NbdIo *io = m->queue[i];

    memmove(&m->queue[i], &m->queue[i + 1], (m->nqueue - i - 1) * sizeof(NbdIo *));
    m->nqueue--;
    nbd_io_complete(io, m_do(m, io));
}

static NbdServerConfig cfg_for(Mem *m)
{
    return (NbdServerConfig){.backend = {m_open, m_close, m_list, m_submit, m_size, m}};
}

static int setup(void **state)
{
    mem = calloc(1, sizeof(*mem));
    mem->disk_size = DISK_SIZE;
    memset(mem->ro, 0x5a, RO_SIZE);
    return 0;
}

static int teardown(void **state)
{
    /* Every export opened was closed again. */
    assert_int_equal(mem->opens, mem->closes);
    free(mem);
    return 0;
}

/* ---- client side: building input ---- */

static void b16(SovBuf *b, uint16_t v)
{
    v = htobe16(v);
    sov_buf_append(b, &v, 2);
}

static void b32(SovBuf *b, uint32_t v)
{
    v = htobe32(v);
    sov_buf_append(b, &v, 4);
}

static void b64(SovBuf *b, uint64_t v)
{
    v = htobe64(v);
    sov_buf_append(b, &v, 8);
}

static void c_option(SovBuf *b, uint32_t opt, const void *data, uint32_t len)
{
    b64(b, 0x49484156454f5054ull);
    b32(b, opt);
    b32(b, len);
    sov_buf_append(b, data, len);
}

/* INFO/GO with a list of information requests. */
static void c_info(SovBuf *b, uint32_t opt, const char *name, unsigned nreq, ...)
{
    SovBuf d = SOV_BUF_INIT;
    va_list ap;

    b32(&d, (uint32_t)strlen(name));
    sov_buf_puts(&d, name);
    b16(&d, (uint16_t)nreq);
    va_start(ap, nreq);
    for (unsigned i = 0; i < nreq; i++)
        b16(&d, (uint16_t)va_arg(ap, int));
    va_end(ap);
    c_option(b, opt, d.ptr, (uint32_t)d.len);
    sov_buf_release(&d);
}

static void c_meta(SovBuf *b, uint32_t opt, const char *name, unsigned nq, ...)
{
    SovBuf d = SOV_BUF_INIT;
    va_list ap;

    b32(&d, (uint32_t)strlen(name));
    sov_buf_puts(&d, name);
    b32(&d, nq);
    va_start(ap, nq);
    for (unsigned i = 0; i < nq; i++) {
        const char *q = va_arg(ap, const char *);
        b32(&d, (uint32_t)strlen(q));
        sov_buf_puts(&d, q);
    }
    va_end(ap);
    c_option(b, opt, d.ptr, (uint32_t)d.len);
    sov_buf_release(&d);
}

static void c_req(SovBuf *b, uint16_t flags, uint16_t type, uint64_t handle, uint64_t off,
                  uint32_t len)
{
    b32(b, 0x25609513);
    b16(b, flags);
    b16(b, type);
    b64(b, handle);
    b64(b, off);
    b32(b, len);
}

/* ---- server side: parsing output ---- */

typedef struct Rd {
    const uint8_t *p;
    size_t len, pos;
} Rd;

static Rd rd_of(const SovBuf *b)
{
    return (Rd){(const uint8_t *)b->ptr, b->len, 0};
}

static const uint8_t *rd_take(Rd *r, size_t n)
{
    const uint8_t *p;
    assert_true(r->len - r->pos >= n);
    p = r->p + r->pos;
    r->pos += n;
    return p;
}

static uint16_t r16(Rd *r)
{
    uint16_t v;
    memcpy(&v, rd_take(r, 2), 2);
    return be16toh(v);
}

static uint32_t r32(Rd *r)
{
    uint32_t v;
    memcpy(&v, rd_take(r, 4), 4);
    return be32toh(v);
}

static uint64_t r64(Rd *r)
{
    uint64_t v;
    memcpy(&v, rd_take(r, 8), 8);
    return be64toh(v);
}

static void expect_greeting(Rd *r)
{
    assert_int_equal(r64(r), 0x4e42444d41474943ull);
    assert_int_equal(r64(r), 0x49484156454f5054ull);
    assert_int_equal(r16(r), 3); /* FIXED_NEWSTYLE | NO_ZEROES */
}

/* An option reply; returns its data length (data left to read). */
static uint32_t expect_rep(Rd *r, uint32_t opt, uint32_t type)
{
    assert_int_equal(r64(r), 0x0003e889045565a9ull);
    assert_int_equal(r32(r), opt);
    assert_int_equal(r32(r), type);
    return r32(r);
}

static void expect_rep_skip(Rd *r, uint32_t opt, uint32_t type)
{
    rd_take(r, expect_rep(r, opt, type));
}

static void expect_simple(Rd *r, uint64_t handle, uint32_t err)
{
    assert_int_equal(r32(r), 0x67446698);
    assert_int_equal(r32(r), err);
    assert_int_equal(r64(r), handle);
}

static uint32_t expect_chunk(Rd *r, uint16_t flags, uint16_t type, uint64_t handle)
{
    assert_int_equal(r32(r), 0x668e33ef);
    assert_int_equal(r16(r), flags);
    assert_int_equal(r16(r), type);
    assert_int_equal(r64(r), handle);
    return r32(r);
}

static void expect_error_chunk(Rd *r, uint64_t handle, uint32_t err)
{
    uint32_t len = expect_chunk(r, 1, CT_ERROR, handle);
    uint16_t mlen;
    assert_true(len >= 6);
    assert_int_equal(r32(r), err);
    mlen = r16(r);
    assert_int_equal(len, 6 + mlen);
    rd_take(r, mlen);
}

static void expect_end(Rd *r)
{
    assert_int_equal(r->pos, r->len);
}

/* ---- sessions ---- */

typedef struct Sess {
    NbdProto *p;
    SovBuf out;
    Rd rd;
    int r;
} Sess;

static void sess_start_tls(Sess *s, NbdTlsMode mode)
{
    NbdServerConfig cfg = cfg_for(mem);
    NbdClientInfo ci = {.peer = "test"};

    cfg.tls_mode = mode;
    s->p = nbd_proto_new(&cfg, &ci);
    assert_non_null(s->p);
    sov_buf_init(&s->out, 0);
    s->r = 0;
}

static void sess_start(Sess *s)
{
    NbdServerConfig cfg = cfg_for(mem);
    NbdClientInfo ci = {.peer = "test"};

    s->p = nbd_proto_new(&cfg, &ci);
    assert_non_null(s->p);
    sov_buf_init(&s->out, 0);
    s->r = 0;
}

/* Feeds a whole buffer (then resets it) and parses from the start of the new output. */
static Rd *sess_feed(Sess *s, SovBuf *in)
{
    sov_buf_reset(&s->out);
    s->r = nbd_proto_feed(s->p, in->ptr, in->len, &s->out);
    sov_buf_reset(in);
    s->rd = rd_of(&s->out);
    return &s->rd;
}

static void sess_end(Sess *s)
{
    nbd_proto_free(s->p);
    sov_buf_release(&s->out);
}

/* Handshake up to transmission: optionally structured + base:allocation, then GO name. */
static Rd *sess_go(Sess *s, const char *name, bool structured, bool meta)
{
    SovBuf in = SOV_BUF_INIT;
    Rd *r;

    sess_start(s);
    b32(&in, 3); /* client flags: FIXED_NEWSTYLE | NO_ZEROES */
    if (structured)
        c_option(&in, OPT_STRUCTURED, NULL, 0);
    if (meta)
        c_meta(&in, OPT_SET_META, name, 1, "base:allocation");
    c_info(&in, OPT_GO, name, 0);
    r = sess_feed(s, &in);
    assert_int_equal(s->r, 0);
    expect_greeting(r);
    if (structured)
        expect_rep_skip(r, OPT_STRUCTURED, REP_ACK);
    if (meta) {
        assert_int_equal(expect_rep(r, OPT_SET_META, REP_META), 4 + 15);
        assert_int_equal(r32(r), 1);
        assert_memory_equal(rd_take(r, 15), "base:allocation", 15);
        expect_rep_skip(r, OPT_SET_META, REP_ACK);
    }
    expect_rep_skip(r, OPT_GO, REP_INFO); /* EXPORT */
    expect_rep_skip(r, OPT_GO, REP_INFO); /* BLOCK_SIZE */
    expect_rep_skip(r, OPT_GO, REP_ACK);
    expect_end(r);
    assert_true(nbd_proto_in_transmission(s->p));
    sov_buf_release(&in);
    return r;
}

/* ---- tests: handshake ---- */

static void test_go_with_info(void **state)
{
    Sess s;
    SovBuf in = SOV_BUF_INIT;
    Rd *r;
    uint32_t len;
    uint16_t flags;

    sess_start(&s);
    b32(&in, 3);
    c_info(&in, OPT_GO, "disk", 3, 1, 2, 3); /* NAME, DESCRIPTION, BLOCK_SIZE */
    c_req(&in, 0, NBD_CMD_READ, 77, 0, 4);
    memset(mem->disk, 0xee, 4);
    r = sess_feed(&s, &in);
    assert_int_equal(s.r, 0);
    expect_greeting(r);
    assert_int_equal(expect_rep(r, OPT_GO, REP_INFO), 12);
    assert_int_equal(r16(r), 0); /* NBD_INFO_EXPORT */
    assert_int_equal(r64(r), DISK_SIZE);
    flags = r16(r);
    assert_true(flags & F_HAS_FLAGS);
    assert_false(flags & F_READ_ONLY);
    assert_false(flags & F_SEND_DF); /* structured replies were not negotiated */
    assert_int_equal(flags, 0x1 | 0x4 | 0x8 | 0x20 | 0x40 | 0x100 | 0x400 | 0x800);
    len = expect_rep(r, OPT_GO, REP_INFO);
    assert_int_equal(len, 2 + 4);
    assert_int_equal(r16(r), 1);
    assert_memory_equal(rd_take(r, 4), "disk", 4);
    len = expect_rep(r, OPT_GO, REP_INFO);
    assert_int_equal(len, 2 + 6);
    assert_int_equal(r16(r), 2);
    assert_memory_equal(rd_take(r, 6), "a disk", 6);
    assert_int_equal(expect_rep(r, OPT_GO, REP_INFO), 14);
    assert_int_equal(r16(r), 3);
    assert_int_equal(r32(r), 1);
    assert_int_equal(r32(r), 4096);
    assert_int_equal(r32(r), NBD_MAX_PAYLOAD);
    expect_rep_skip(r, OPT_GO, REP_ACK);
    /* Transmission right after the ACK, in the same input. */
    expect_simple(r, 77, 0);
    assert_memory_equal(rd_take(r, 4), "\xee\xee\xee\xee", 4);
    expect_end(r);
    assert_int_equal(mem->opens, 1);
    sess_end(&s);
    sov_buf_release(&in);
}

static void test_info_list_and_option_errors(void **state)
{
    Sess s;
    SovBuf in = SOV_BUF_INIT;
    Rd *r;
    static char big[NBD_MAX_OPTION_LEN + 1];
    uint32_t len;

    sess_start(&s);
    b32(&in, 1);
    c_info(&in, OPT_INFO, "disk", 0);
    c_option(&in, OPT_LIST, NULL, 0);
    c_option(&in, OPT_LIST, "x", 1);
    c_option(&in, 42, "junk", 4);
    c_option(&in, OPT_STARTTLS, NULL, 0);
    c_info(&in, OPT_INFO, "nope", 0);
    c_info(&in, OPT_GO, "deny", 0);
    c_option(&in, OPT_GO, "\0\0\0\5ab", 6);      /* name longer than the option */
    c_option(&in, OPT_GO, "\0\0\0\0\0\1", 6);    /* one request announced, none sent */
    c_option(&in, OPT_GO, "\0\0\0\2a\0\0\0", 8); /* NUL in the name */
    c_option(&in, OPT_STRUCTURED, "x", 1);
    c_meta(&in, OPT_SET_META, "disk", 1, "base:allocation"); /* before structured replies */
    c_option(&in, OPT_INFO, big, sizeof(big));               /* too long: skipped */
    c_info(&in, OPT_INFO, "ro", 0);
    r = sess_feed(&s, &in);
    assert_int_equal(s.r, 0);
    expect_greeting(r);
    expect_rep_skip(r, OPT_INFO, REP_INFO);
    expect_rep_skip(r, OPT_INFO, REP_INFO);
    expect_rep_skip(r, OPT_INFO, REP_ACK);
    len = expect_rep(r, OPT_LIST, REP_SERVER);
    assert_int_equal(len, 4 + 4 + 6);
    assert_int_equal(r32(r), 4);
    assert_memory_equal(rd_take(r, 10), "diska disk", 10);
    assert_int_equal(expect_rep(r, OPT_LIST, REP_SERVER), 4 + 2);
    rd_take(r, 6);
    expect_rep_skip(r, OPT_LIST, REP_ACK);
    expect_rep_skip(r, OPT_LIST, REP_ERR_INVALID);
    expect_rep_skip(r, 42, REP_ERR_UNSUP);
    expect_rep_skip(r, OPT_STARTTLS, REP_ERR_UNSUP);
    expect_rep_skip(r, OPT_INFO, REP_ERR_UNKNOWN);
    expect_rep_skip(r, OPT_GO, REP_ERR_POLICY);
    expect_rep_skip(r, OPT_GO, REP_ERR_INVALID);
    expect_rep_skip(r, OPT_GO, REP_ERR_INVALID);
    expect_rep_skip(r, OPT_GO, REP_ERR_INVALID);
    expect_rep_skip(r, OPT_STRUCTURED, REP_ERR_INVALID);
    expect_rep_skip(r, OPT_SET_META, REP_ERR_INVALID);
    expect_rep_skip(r, OPT_INFO, REP_ERR_TOO_BIG);
    expect_rep_skip(r, OPT_INFO, REP_INFO);
    expect_rep_skip(r, OPT_INFO, REP_INFO);
    expect_rep_skip(r, OPT_INFO, REP_ACK);
    expect_end(r);
    assert_false(nbd_proto_in_transmission(s.p));
    assert_int_equal(mem->opens, 2); /* INFO opens and closes */
    assert_int_equal(mem->closes, 2);
    /* ABORT: an ACK, then the connection ends. */
    c_option(&in, OPT_ABORT, NULL, 0);
    c_option(&in, OPT_LIST, NULL, 0);
    r = sess_feed(&s, &in);
    assert_true(s.r < 0);
    expect_rep_skip(r, OPT_ABORT, REP_ACK);
    expect_end(r);
    sess_end(&s);
    sov_buf_release(&in);
}

/* STARTTLS at the state machine level: FORCEDTLS refuses options before TLS, the ACK stops
 * option parsing (what follows is handed to the transport's TLS), and after the handshake
 * STARTTLS is invalid and options work, with pre-TLS negotiation forgotten. */
static void test_starttls(void **state)
{
    Sess s;
    SovBuf in = SOV_BUF_INIT, early = SOV_BUF_INIT;
    Rd *r;
    static char big[NBD_MAX_OPTION_LEN + 1];
    static const char hello[] = "\x16\x03\x01\x00\x05IHAVEOPT"; /* not to be parsed */

    sess_start_tls(&s, NBD_TLS_REQUIRE);
    b32(&in, 3);
    c_option(&in, OPT_LIST, NULL, 0);
    c_info(&in, OPT_INFO, "disk", 0);
    c_info(&in, OPT_GO, "disk", 0);
    c_option(&in, OPT_STRUCTURED, NULL, 0);
    c_option(&in, 42, "junk", 4);
    c_option(&in, OPT_INFO, big, sizeof(big)); /* skipped, still TLS_REQD */
    c_option(&in, OPT_STARTTLS, "x", 1);
    c_option(&in, OPT_STARTTLS, NULL, 0);
    sov_buf_append(&in, hello, sizeof(hello) - 1);
    r = sess_feed(&s, &in);
    assert_int_equal(s.r, 0);
    expect_greeting(r);
    expect_rep_skip(r, OPT_LIST, REP_ERR_TLSREQD);
    expect_rep_skip(r, OPT_INFO, REP_ERR_TLSREQD);
    expect_rep_skip(r, OPT_GO, REP_ERR_TLSREQD);
    expect_rep_skip(r, OPT_STRUCTURED, REP_ERR_TLSREQD);
    expect_rep_skip(r, 42, REP_ERR_TLSREQD);
    expect_rep_skip(r, OPT_INFO, REP_ERR_TLSREQD);
    expect_rep_skip(r, OPT_STARTTLS, REP_ERR_INVALID);
    expect_rep_skip(r, OPT_STARTTLS, REP_ACK);
    expect_end(r);
    assert_int_equal(mem->opens, 0);
    assert_true(nbd_proto_tls_pending(s.p));
    assert_false(nbd_proto_wants_input(s.p));
    /* The bytes after the option are the transport's, untouched. */
    assert_int_equal(nbd_proto_tls_start(s.p, &early), 0);
    assert_int_equal(early.len, sizeof(hello) - 1);
    assert_memory_equal(early.ptr, hello, sizeof(hello) - 1);
    assert_true(nbd_proto_wants_input(s.p) == false);
    nbd_proto_tls_ready(s.p);
    assert_false(nbd_proto_tls_pending(s.p));
    assert_true(nbd_proto_wants_input(s.p));
    /* Over TLS: STARTTLS again is invalid; options work. */
    c_option(&in, OPT_STARTTLS, NULL, 0);
    c_option(&in, OPT_LIST, NULL, 0);
    c_info(&in, OPT_GO, "disk", 0);
    r = sess_feed(&s, &in);
    assert_int_equal(s.r, 0);
    expect_rep_skip(r, OPT_STARTTLS, REP_ERR_INVALID);
    expect_rep_skip(r, OPT_LIST, REP_SERVER);
    expect_rep_skip(r, OPT_LIST, REP_SERVER);
    expect_rep_skip(r, OPT_LIST, REP_ACK);
    expect_rep_skip(r, OPT_GO, REP_INFO);
    expect_rep_skip(r, OPT_GO, REP_INFO);
    expect_rep_skip(r, OPT_GO, REP_ACK);
    expect_end(r);
    assert_true(nbd_proto_in_transmission(s.p));
    assert_true(mem->last_tls);
    sess_end(&s);

    /* FORCEDTLS: EXPORT_NAME before TLS cannot be refused softly, so the session ends; a
     * client without fixed newstyle cannot upgrade, so it is not served at all. */
    sess_start_tls(&s, NBD_TLS_REQUIRE);
    b32(&in, 3);
    c_option(&in, OPT_EXPORT_NAME, "disk", 4);
    c_option(&in, OPT_LIST, NULL, 0);
    r = sess_feed(&s, &in);
    assert_true(s.r < 0);
    expect_greeting(r);
    expect_end(r);
    sess_end(&s);
    sess_start_tls(&s, NBD_TLS_REQUIRE);
    b32(&in, 0);
    r = sess_feed(&s, &in);
    assert_true(s.r < 0);
    sess_end(&s);

    /* Optional: plaintext works; after STARTTLS, structured replies negotiated in plaintext
     * are forgotten, so SET_META_CONTEXT needs them again. */
    sess_start_tls(&s, NBD_TLS_OPTIONAL);
    b32(&in, 3);
    c_option(&in, OPT_STRUCTURED, NULL, 0);
    c_info(&in, OPT_INFO, "disk", 0);
    c_option(&in, OPT_STARTTLS, NULL, 0);
    r = sess_feed(&s, &in);
    assert_int_equal(s.r, 0);
    expect_greeting(r);
    expect_rep_skip(r, OPT_STRUCTURED, REP_ACK);
    expect_rep_skip(r, OPT_INFO, REP_INFO);
    expect_rep_skip(r, OPT_INFO, REP_INFO);
    expect_rep_skip(r, OPT_INFO, REP_ACK);
    expect_rep_skip(r, OPT_STARTTLS, REP_ACK);
    expect_end(r);
    assert_false(mem->last_tls);
    sov_buf_reset(&early);
    assert_int_equal(nbd_proto_tls_start(s.p, &early), 0);
    assert_int_equal(early.len, 0);
    nbd_proto_tls_ready(s.p);
    c_meta(&in, OPT_SET_META, "disk", 1, "base:allocation");
    c_option(&in, OPT_STARTTLS, NULL, 0);
    r = sess_feed(&s, &in);
    expect_rep_skip(r, OPT_SET_META, REP_ERR_INVALID);
    expect_rep_skip(r, OPT_STARTTLS, REP_ERR_INVALID);
    expect_end(r);
    sess_end(&s);
    sov_buf_release(&in);
    sov_buf_release(&early);
}

static void test_export_name(void **state)
{
    Sess s;
    SovBuf in = SOV_BUF_INIT;
    Rd *r;

    /* Without NO_ZEROES: size, flags and 124 zero bytes. */
    sess_start(&s);
    b32(&in, 1);
    c_option(&in, OPT_EXPORT_NAME, "disk", 4);
    r = sess_feed(&s, &in);
    assert_int_equal(s.r, 0);
    expect_greeting(r);
    assert_int_equal(r64(r), DISK_SIZE);
    assert_true(r16(r) & F_HAS_FLAGS);
    assert_true(all_zero(rd_take(r, 124), 124));
    expect_end(r);
    sess_end(&s);

    /* With NO_ZEROES, the default export (empty name). */
    sess_start(&s);
    b32(&in, 3);
    c_option(&in, OPT_EXPORT_NAME, NULL, 0);
    c_req(&in, 0, NBD_CMD_FLUSH, 5, 0, 0);
    r = sess_feed(&s, &in);
    expect_greeting(r);
    assert_int_equal(r64(r), DISK_SIZE);
    r16(r);
    expect_simple(r, 5, 0);
    expect_end(r);
    sess_end(&s);

    /* An unknown export cannot be refused softly: the connection closes. */
    sess_start(&s);
    b32(&in, 3);
    c_option(&in, OPT_EXPORT_NAME, "nope", 4);
    c_option(&in, OPT_LIST, NULL, 0);
    r = sess_feed(&s, &in);
    assert_true(s.r < 0);
    expect_greeting(r);
    expect_end(r);
    sess_end(&s);

    /* A name longer than the limit closes before its bytes arrive. */
    sess_start(&s);
    b32(&in, 3);
    b64(&in, 0x49484156454f5054ull);
    b32(&in, OPT_EXPORT_NAME);
    b32(&in, NBD_MAX_EXPORT_NAME + 1);
    sess_feed(&s, &in);
    assert_true(s.r < 0);
    sess_end(&s);
    sov_buf_release(&in);
}

static void test_bad_handshake(void **state)
{
    Sess s;
    SovBuf in = SOV_BUF_INIT;

    sess_start(&s);
    b32(&in, 4); /* unknown client flag */
    sess_feed(&s, &in);
    assert_true(s.r < 0);
    sess_end(&s);

    sess_start(&s);
    b32(&in, 1);
    b64(&in, 0x1122334455667788ull); /* bad option magic */
    b64(&in, 0);
    sess_feed(&s, &in);
    assert_true(s.r < 0);
    sess_end(&s);
    sov_buf_release(&in);
}

static void test_meta_context(void **state)
{
    Sess s;
    SovBuf in = SOV_BUF_INIT;
    Rd *r;

    sess_start(&s);
    b32(&in, 3);
    c_option(&in, OPT_STRUCTURED, NULL, 0);
    c_meta(&in, OPT_LIST_META, "disk", 0);
    c_meta(&in, OPT_LIST_META, "disk", 2, "base:", "qemu:dirty-bitmap:x");
    c_meta(&in, OPT_LIST_META, "disk", 1, "x-other:thing");
    c_meta(&in, OPT_LIST_META, "nope", 0);
    c_option(&in, OPT_SET_META, "\0\0\0\4disk\0\0\0\1\0\0\0\xff", 16); /* query past the end */
    c_meta(&in, OPT_SET_META, "disk", 2, "base:allocation", "base:allocation");
    r = sess_feed(&s, &in);
    expect_greeting(r);
    expect_rep_skip(r, OPT_STRUCTURED, REP_ACK);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(expect_rep(r, OPT_LIST_META, REP_META), 19);
        assert_int_equal(r32(r), 0);
        assert_memory_equal(rd_take(r, 15), "base:allocation", 15);
        expect_rep_skip(r, OPT_LIST_META, REP_ACK);
    }
    expect_rep_skip(r, OPT_LIST_META, REP_ACK); /* nothing matched */
    expect_rep_skip(r, OPT_LIST_META, REP_ERR_UNKNOWN);
    expect_rep_skip(r, OPT_SET_META, REP_ERR_INVALID);
    assert_int_equal(expect_rep(r, OPT_SET_META, REP_META), 19); /* once, not twice */
    assert_int_equal(r32(r), 1);
    rd_take(r, 15);
    expect_rep_skip(r, OPT_SET_META, REP_ACK);
    expect_end(r);
    /* Contexts chosen for another export do not carry over to GO "ro". */
    c_info(&in, OPT_GO, "ro", 0);
    c_req(&in, 0, NBD_CMD_BLOCK_STATUS, 9, 0, 4096);
    r = sess_feed(&s, &in);
    expect_rep_skip(r, OPT_GO, REP_INFO);
    expect_rep_skip(r, OPT_GO, REP_INFO);
    expect_rep_skip(r, OPT_GO, REP_ACK);
    expect_error_chunk(r, 9, E_INVAL);
    expect_end(r);
    sess_end(&s);
    sov_buf_release(&in);
}

/* ---- tests: transmission ---- */

static void test_simple_replies(void **state)
{
    Sess s;
    SovBuf in = SOV_BUF_INIT;
    Rd *r;

    sess_go(&s, "disk", false, false);
    c_req(&in, 1, NBD_CMD_WRITE, 1, 4096, 8); /* FUA */
    sov_buf_append(&in, "abcdefgh", 8);
    c_req(&in, 0, NBD_CMD_READ, 2, 4096, 8);
    c_req(&in, 0, NBD_CMD_READ, 3, 8192, 4); /* zeros: the backend says zero_read */
    c_req(&in, 0, NBD_CMD_FLUSH, 4, 0, 0);
    c_req(&in, 0, NBD_CMD_TRIM, 5, 4096, 4);
    c_req(&in, 2, NBD_CMD_WRITE_ZEROES, 6, 0, 4096);  /* NO_HOLE */
    c_req(&in, 16, NBD_CMD_WRITE_ZEROES, 7, 0, 4096); /* FAST_ZERO */
    c_req(&in, 0, NBD_CMD_CACHE, 8, 0, 65536);
    c_req(&in, 0, 99, 9, 0, 0);                    /* unknown command */
    c_req(&in, 8, NBD_CMD_READ, 10, 0, 8);         /* REQ_ONE on READ */
    c_req(&in, 4, NBD_CMD_READ, 11, 0, 8);         /* DF without structured replies */
    c_req(&in, 0, NBD_CMD_BLOCK_STATUS, 12, 0, 8); /* no context negotiated */
    c_req(&in, 0, NBD_CMD_READ, 13, DISK_SIZE - 4, 8);
    c_req(&in, 0, NBD_CMD_READ, 14, UINT64_MAX, 8); /* no overflow in the range check */
    r = sess_feed(&s, &in);
    assert_int_equal(s.r, 0);
    expect_simple(r, 1, 0);
    expect_simple(r, 2, 0);
    assert_memory_equal(rd_take(r, 8), "abcdefgh", 8);
    expect_simple(r, 3, 0);
    assert_true(all_zero(rd_take(r, 4), 4));
    for (uint64_t h = 4; h <= 8; h++)
        expect_simple(r, h, 0);
    for (uint64_t h = 9; h <= 14; h++)
        expect_simple(r, h, E_INVAL);
    expect_end(r);
    assert_true(all_zero(mem->disk + 4096, 4));
    /* A backend error is mapped to the protocol's values. */
    c_req(&in, 0, NBD_CMD_READ, 15, 0, 512);
    mem->fail_next = -EIO;
    r = sess_feed(&s, &in);
    expect_simple(r, 15, E_IO);
    expect_end(r);
    sess_end(&s);
    sov_buf_release(&in);
}

static void test_structured_replies(void **state)
{
    Sess s;
    SovBuf in = SOV_BUF_INIT;
    Rd *r;
    uint32_t len;

    sess_go(&s, "disk", true, true);
    memset(mem->disk, 0, DISK_SIZE);
    c_req(&in, 0, NBD_CMD_WRITE, 1, 8192, 4);
    sov_buf_append(&in, "data", 4);
    c_req(&in, 0, NBD_CMD_READ, 2, 8192, 4);
    c_req(&in, 0, NBD_CMD_READ, 3, 65536, 4096);  /* a hole */
    c_req(&in, 4, NBD_CMD_READ, 4, 65536, 16);    /* DF: data chunk with zeros */
    c_req(&in, 0, NBD_CMD_READ, 5, DISK_SIZE, 1); /* out of range: error chunk */
    c_req(&in, 0, NBD_CMD_READ, 6, 0, 0);         /* zero length */
    c_req(&in, 0, NBD_CMD_BLOCK_STATUS, 7, 0, 16384);
    c_req(&in, 8, NBD_CMD_BLOCK_STATUS, 8, 0, 16384); /* REQ_ONE */
    c_req(&in, 0, NBD_CMD_BLOCK_STATUS, 9, 0, 0);
    c_req(&in, 0, NBD_CMD_BLOCK_STATUS, 10, DISK_SIZE - 4096, 8192);
    r = sess_feed(&s, &in);
    assert_int_equal(s.r, 0);
    assert_int_equal(expect_chunk(r, 1, CT_NONE, 1), 0);
    assert_int_equal(expect_chunk(r, 1, CT_DATA, 2), 12);
    assert_int_equal(r64(r), 8192);
    assert_memory_equal(rd_take(r, 4), "data", 4);
    assert_int_equal(expect_chunk(r, 1, CT_HOLE, 3), 12);
    assert_int_equal(r64(r), 65536);
    assert_int_equal(r32(r), 4096);
    assert_int_equal(expect_chunk(r, 1, CT_DATA, 4), 24);
    assert_int_equal(r64(r), 65536);
    assert_true(all_zero(rd_take(r, 16), 16));
    expect_error_chunk(r, 5, E_INVAL);
    assert_int_equal(expect_chunk(r, 1, CT_NONE, 6), 0);
    /* 8192..12287 holds data: [0,8192) zero, [8192,12288) data, [12288,16384) zero */
    len = expect_chunk(r, 1, CT_BS, 7);
    assert_int_equal(len, 4 + 3 * 8);
    assert_int_equal(r32(r), 1);
    assert_int_equal(r32(r), 8192);
    assert_int_equal(r32(r), 3);
    assert_int_equal(r32(r), 4096);
    assert_int_equal(r32(r), 0);
    assert_int_equal(r32(r), 4096);
    assert_int_equal(r32(r), 3);
    assert_int_equal(expect_chunk(r, 1, CT_BS, 8), 12);
    assert_int_equal(r32(r), 1);
    assert_int_equal(r32(r), 8192);
    assert_int_equal(r32(r), 3);
    expect_error_chunk(r, 9, E_INVAL);
    expect_error_chunk(r, 10, E_INVAL);
    expect_end(r);
    sess_end(&s);
    sov_buf_release(&in);
}

static void test_read_only(void **state)
{
    Sess s;
    SovBuf in = SOV_BUF_INIT;
    Rd *r;

    sess_go(&s, "ro", false, false);
    c_req(&in, 0, NBD_CMD_WRITE, 1, 0, 4);
    sov_buf_append(&in, "xxxx", 4); /* dropped, and the next request is still found */
    c_req(&in, 0, NBD_CMD_TRIM, 2, 0, 4);
    c_req(&in, 0, NBD_CMD_WRITE_ZEROES, 3, 0, 4);
    c_req(&in, 0, NBD_CMD_READ, 4, 0, 2);
    c_req(&in, 0, NBD_CMD_FLUSH, 5, 0, 0);
    r = sess_feed(&s, &in);
    expect_simple(r, 1, E_PERM);
    expect_simple(r, 2, E_PERM);
    expect_simple(r, 3, E_PERM);
    expect_simple(r, 4, 0);
    assert_memory_equal(rd_take(r, 2), "\x5a\x5a", 2);
    expect_simple(r, 5, 0);
    expect_end(r);
    assert_int_equal(mem->ro[0], 0x5a);
    sess_end(&s);
    sov_buf_release(&in);
}

static void test_limits_and_zero_length(void **state)
{
    Sess s;
    SovBuf in = SOV_BUF_INIT;
    Rd *r;
    char *zeros = calloc(1, 1024 * 1024);
    unsigned submits;

    sess_go(&s, "disk", false, false);
    submits = mem->submits;
    c_req(&in, 0, NBD_CMD_READ, 1, 0, 0);
    c_req(&in, 0, NBD_CMD_WRITE, 2, 0, 0);
    c_req(&in, 0, NBD_CMD_TRIM, 3, DISK_SIZE, 0); /* at the very end: in range */
    c_req(&in, 0, NBD_CMD_WRITE_ZEROES, 4, 0, 0);
    c_req(&in, 0, NBD_CMD_READ, 5, 0, NBD_MAX_PAYLOAD + 1);
    c_req(&in, 0, NBD_CMD_WRITE, 6, DISK_SIZE - 2, 4); /* beyond the end: ENOSPC */
    sov_buf_append(&in, "wxyz", 4);
    r = sess_feed(&s, &in);
    for (uint64_t h = 1; h <= 4; h++)
        expect_simple(r, h, 0);
    expect_simple(r, 5, E_INVAL);
    expect_simple(r, 6, E_NOSPC);
    expect_end(r);
    assert_int_equal(mem->submits, submits); /* nothing reached the backend */

    /* A WRITE larger than NBD_MAX_PAYLOAD: its payload is read past, then answered. */
    c_req(&in, 0, NBD_CMD_WRITE, 7, 0, NBD_MAX_PAYLOAD + 1);
    r = sess_feed(&s, &in);
    expect_end(r);
    for (unsigned i = 0; i < 32; i++) {
        sov_buf_append(&in, zeros, 1024 * 1024);
        r = sess_feed(&s, &in);
        expect_end(r);
    }
    sov_buf_append(&in, "z", 1);
    c_req(&in, 0, NBD_CMD_FLUSH, 8, 0, 0);
    r = sess_feed(&s, &in);
    expect_simple(r, 7, E_INVAL);
    expect_simple(r, 8, 0);
    expect_end(r);
    sess_end(&s);

    /* Minimum block size 512: unaligned requests are refused. */
    sess_go(&s, "blk", false, false);
    c_req(&in, 0, NBD_CMD_READ, 1, 512, 100);
    c_req(&in, 0, NBD_CMD_READ, 2, 100, 512);
    c_req(&in, 0, NBD_CMD_READ, 3, 512, 512);
    r = sess_feed(&s, &in);
    expect_simple(r, 1, E_INVAL);
    expect_simple(r, 2, E_INVAL);
    expect_simple(r, 3, 0);
    rd_take(r, 512);
    expect_end(r);

    /* Online resize: the backend's current size decides. */
    mem->disk_size = DISK_SIZE / 2;
    c_req(&in, 0, NBD_CMD_READ, 4, DISK_SIZE / 2, 512);
    r = sess_feed(&s, &in);
    expect_simple(r, 4, E_INVAL);
    mem->disk_size = DISK_SIZE;
    c_req(&in, 0, NBD_CMD_READ, 5, DISK_SIZE / 2, 512);
    r = sess_feed(&s, &in);
    expect_simple(r, 5, 0);
    sess_end(&s);
    free(zeros);
    sov_buf_release(&in);
}

static void test_bad_magic_and_disc(void **state)
{
    Sess s;
    SovBuf in = SOV_BUF_INIT;
    Rd *r;

    /* A request in flight when a bad magic arrives is still answered. */
    mem->deferred = true;
    sess_go(&s, "disk", false, false);
    c_req(&in, 0, NBD_CMD_READ, 1, 0, 4);
    b32(&in, 0xdeadbeef);
    sov_buf_append(&in, "0123456789012345678901234", 24);
    c_req(&in, 0, NBD_CMD_READ, 2, 0, 4);
    r = sess_feed(&s, &in);
    assert_true(s.r < 0);
    expect_end(r);
    assert_int_equal(mem->nqueue, 1);
    assert_false(nbd_proto_finished(s.p));
    memcpy(mem->disk, "abcd", 4);
    m_complete(mem, 0);
    r = sess_feed(&s, &in);
    expect_simple(r, 1, 0);
    assert_memory_equal(rd_take(r, 4), "abcd", 4);
    expect_end(r);
    assert_true(nbd_proto_finished(s.p));
    sess_end(&s);

    /* DISC: nothing after it is read; requests before it complete. */
    sess_go(&s, "disk", true, false);
    c_req(&in, 0, NBD_CMD_FLUSH, 1, 0, 0);
    c_req(&in, 0, NBD_CMD_DISC, 2, 0, 0);
    c_req(&in, 0, NBD_CMD_FLUSH, 3, 0, 0);
    r = sess_feed(&s, &in);
    assert_true(s.r < 0);
    expect_end(r);
    assert_int_equal(mem->nqueue, 1);
    m_complete(mem, 0);
    r = sess_feed(&s, &in);
    assert_int_equal(expect_chunk(r, 1, CT_NONE, 1), 0);
    expect_end(r);
    sess_end(&s);
    mem->deferred = false;
    sov_buf_release(&in);
}

static void test_out_of_order(void **state)
{
    Sess s;
    SovBuf in = SOV_BUF_INIT;
    Rd *r;

    mem->deferred = true;
    sess_go(&s, "disk", true, false);
    memcpy(mem->disk, "0123456789abcdef", 16);
    for (uint64_t h = 1; h <= 4; h++)
        c_req(&in, 0, NBD_CMD_READ, h, (h - 1) * 4, 4);
    c_req(&in, 0, NBD_CMD_WRITE, 5, 100, 3);
    sov_buf_append(&in, "xyz", 3);
    r = sess_feed(&s, &in);
    expect_end(r);
    assert_int_equal(mem->nqueue, 5);
    assert_int_equal(nbd_proto_in_flight(s.p), 5);
    /* Complete 3, 5, 1, 4, 2: replies come in that order. */
    m_complete(mem, 2);
    m_complete(mem, 3);
    m_complete(mem, 0);
    r = sess_feed(&s, &in);
    assert_int_equal(expect_chunk(r, 1, CT_DATA, 3), 12);
    assert_int_equal(r64(r), 8);
    assert_memory_equal(rd_take(r, 4), "89ab", 4);
    assert_int_equal(expect_chunk(r, 1, CT_NONE, 5), 0);
    assert_int_equal(expect_chunk(r, 1, CT_DATA, 1), 12);
    assert_int_equal(r64(r), 0);
    assert_memory_equal(rd_take(r, 4), "0123", 4);
    expect_end(r);
    m_complete(mem, 1);
    m_complete(mem, 0);
    r = sess_feed(&s, &in);
    assert_int_equal(expect_chunk(r, 1, CT_DATA, 4), 12);
    r64(r);
    assert_memory_equal(rd_take(r, 4), "cdef", 4);
    assert_int_equal(expect_chunk(r, 1, CT_DATA, 2), 12);
    r64(r);
    assert_memory_equal(rd_take(r, 4), "4567", 4);
    expect_end(r);
    assert_memory_equal(mem->disk + 100, "xyz", 3);
    /* A completion after nbd_proto_free() is safe: the last one frees it. */
    c_req(&in, 0, NBD_CMD_READ, 6, 0, 4);
    sess_feed(&s, &in);
    assert_int_equal(mem->nqueue, 1);
    sess_end(&s);
    assert_int_equal(mem->opens, mem->closes + 1);
    m_complete(mem, 0);
    mem->deferred = false;
    sov_buf_release(&in);
}

static void test_in_flight_limit(void **state)
{
    Sess s;
    SovBuf in = SOV_BUF_INIT;
    Rd *r;
    unsigned extra = 5;

    mem->deferred = true;
    sess_go(&s, "disk", false, false);
    for (unsigned i = 0; i < NBD_MAX_IN_FLIGHT + extra; i++)
        c_req(&in, 0, NBD_CMD_FLUSH, i, 0, 0);
    r = sess_feed(&s, &in);
    expect_end(r);
    assert_int_equal(mem->nqueue, NBD_MAX_IN_FLIGHT);
    assert_false(nbd_proto_wants_input(s.p));
    /* Each completion lets one more request in. */
    for (unsigned i = 0; i < extra; i++) {
        m_complete(mem, 0);
        r = sess_feed(&s, &in);
        expect_simple(r, i, 0);
        expect_end(r);
        assert_int_equal(mem->nqueue, NBD_MAX_IN_FLIGHT);
    }
    assert_true(nbd_proto_wants_input(s.p));
    while (mem->nqueue)
        m_complete(mem, 0);
    r = sess_feed(&s, &in);
    assert_int_equal(r->len, NBD_MAX_IN_FLIGHT * 16);
    sess_end(&s);
    mem->deferred = false;
    sov_buf_release(&in);
}

/* A whole session fed at once and byte by byte gives the same output. */
static void test_byte_by_byte(void **state)
{
    SovBuf in = SOV_BUF_INIT, whole = SOV_BUF_INIT, bytes = SOV_BUF_INIT;
    NbdServerConfig cfg = cfg_for(mem);
    NbdClientInfo ci = {.peer = "test"};
    NbdProto *p;

    b32(&in, 3);
    c_option(&in, OPT_LIST, NULL, 0);
    c_info(&in, OPT_INFO, "disk", 1, 2);
    c_option(&in, OPT_STRUCTURED, NULL, 0);
    c_meta(&in, OPT_SET_META, "disk", 1, "base:allocation");
    c_info(&in, OPT_GO, "disk", 2, 1, 3);
    c_req(&in, 1, NBD_CMD_WRITE, 1, 512, 5);
    sov_buf_append(&in, "hello", 5);
    c_req(&in, 0, NBD_CMD_READ, 2, 512, 5);
    c_req(&in, 0, NBD_CMD_BLOCK_STATUS, 3, 0, 8192);
    c_req(&in, 0, NBD_CMD_WRITE, 4, DISK_SIZE, 2);
    sov_buf_append(&in, "no", 2);
    c_req(&in, 0, NBD_CMD_TRIM, 5, 0, 512);
    c_req(&in, 0, NBD_CMD_DISC, 6, 0, 0);

    memset(mem->disk, 0, DISK_SIZE);
    p = nbd_proto_new(&cfg, &ci);
    assert_true(nbd_proto_feed(p, in.ptr, in.len, &whole) < 0);
    nbd_proto_free(p);

    memset(mem->disk, 0, DISK_SIZE);
    p = nbd_proto_new(&cfg, &ci);
    for (size_t i = 0; i < in.len; i++) {
        int r = nbd_proto_feed(p, in.ptr + i, 1, &bytes);
        assert_true(i + 1 == in.len ? r < 0 : r == 0);
    }
    nbd_proto_free(p);
    assert_int_equal(whole.len, bytes.len);
    assert_memory_equal(whole.ptr, bytes.ptr, whole.len);
    assert_true(whole.len > 300);
    sov_buf_release(&in);
    sov_buf_release(&whole);
    sov_buf_release(&bytes);
}

/* ---- the transport, over a Unix socket ---- */

typedef struct Shut {
    bool done;
} Shut;

static void on_shutdown_done(NbdServer *s, void *ud)
{
    ((Shut *)ud)->done = true;
}

/* Reads exactly n bytes from a non-blocking socket, running the loop meanwhile. */
static void sock_read(uv_loop_t *loop, int fd, void *buf, size_t n)
{
    size_t got = 0;

    for (int spins = 0; got < n && spins < 100000; spins++) {
        ssize_t k = recv(fd, (char *)buf + got, n - got, MSG_DONTWAIT);
        if (k > 0)
            got += (size_t)k;
        else
            uv_run(loop, UV_RUN_NOWAIT);
    }
    assert_int_equal(got, n);
}

static void test_transport(void **state)
{
    uv_loop_t loop;
    NbdServerConfig cfg = cfg_for(mem);
    NbdServer *srv;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    char dir[] = "/tmp/test_nbd.XXXXXX";
    SovBuf in = SOV_BUF_INIT;
    uint8_t buf[256];
    Shut shut = {false};
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t slen = sizeof(sin);
    int lfd, cfd, tfd, tcfd;

    assert_non_null(mkdtemp(dir));
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/sock", dir);
    assert_int_equal(uv_loop_init(&loop), 0);
    lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    assert_int_equal(listen(lfd, 8), 0);
    srv = nbd_server_new(&loop, &cfg);
    assert_int_equal(nbd_server_listen_fd(srv, lfd, true), 0);

    /* A second listener on TCP (the daemon serves both): a greeting arrives there too. */
    tfd = socket(AF_INET, SOCK_STREAM, 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(tfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(tfd, 8), 0);
    assert_int_equal(getsockname(tfd, (struct sockaddr *)&sin, &slen), 0);
    assert_int_equal(nbd_server_listen_fd(srv, tfd, false), 0);
    tcfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(tcfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    sock_read(&loop, tcfd, buf, 18);
    assert_memory_equal(buf, "NBDMAGICIHAVEOPT\0\3", 18);
    close(tcfd);

    cfd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(connect(cfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    sock_read(&loop, cfd, buf, 18);
    assert_memory_equal(buf, "NBDMAGICIHAVEOPT\0\3", 18);
    for (int i = 0; i < 1000 && nbd_server_connections(srv) != 1; i++)
        uv_run(&loop, UV_RUN_NOWAIT); /* the TCP connection goes away */
    assert_int_equal(nbd_server_connections(srv), 1);
    b32(&in, 3);
    c_option(&in, OPT_EXPORT_NAME, "disk", 4);
    c_req(&in, 0, NBD_CMD_WRITE, 1, 0, 3);
    sov_buf_append(&in, "abc", 3);
    c_req(&in, 0, NBD_CMD_READ, 2, 0, 3);
    assert_int_equal(send(cfd, in.ptr, in.len, 0), (ssize_t)in.len);
    sock_read(&loop, cfd, buf, 10 + 16 + 16 + 3);
    assert_memory_equal(buf + 10 + 16 + 16, "abc", 3);

    /* Shutdown with the connection idle: it closes, then done runs. */
    nbd_server_shutdown(srv, on_shutdown_done, &shut);
    for (int i = 0; i < 1000 && !shut.done; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    assert_true(shut.done);
    assert_int_equal(nbd_server_connections(srv), 0);
    assert_int_equal(recv(cfd, buf, sizeof(buf), 0), 0); /* EOF */
    nbd_server_free(srv);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    close(cfd);
    unlink(sun.sun_path);
    rmdir(dir);
    sov_buf_release(&in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_go_with_info, setup, teardown),
        cmocka_unit_test_setup_teardown(test_info_list_and_option_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_starttls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_handshake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_meta_context, setup, teardown),
        cmocka_unit_test_setup_teardown(test_simple_replies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_structured_replies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits_and_zero_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_magic_and_disc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_in_flight_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_byte_by_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transport, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
