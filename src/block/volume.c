/* SPDX-License-Identifier: Apache-2.0 */
/* Volume I/O of sov-block: reads walk the layer chain per 64 KiB cluster (contiguous clusters
 * of one data file are read in one pread), writes go in place into the top layer's clusters or
 * into a newly allocated cluster filled by copy-on-write from the chain, and trims unmap whole
 * clusters. Encrypted volumes run AES-256-XTS per 512-byte sector through two EVP contexts
 * keyed once at open; only the tweak (the sector number) is set per sector. Since the tweak is
 * the virtual sector number, a child layer copies its parents' ciphertext as it is. */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sov/crypto.h"
#include "vol-int.h"

#define CL          VOL_CLUSTER
#define SEC         VOL_SECTOR
#define SEC_PER_CL  (VOL_CLUSTER / VOL_SECTOR)
#define STATUS_SCAN (1u << 20)    /* clusters one block status call looks at, at most */
#define STATUS_MAX  0xFFFF0000ull /* longest extent reported (NBD lengths are 32-bit) */

static const uint8_t zeros[VOL_CLUSTER];

/* Reads n bytes at off; the part past the end of the file reads as zeros (a data file ends
 * where its last written byte does). */
static int pread_full(int fd, void *p, size_t n, uint64_t off)
{
    uint8_t *b = p;

    while (n > 0) {
        ssize_t r = pread(fd, b, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0) {
            memset(b, 0, n);
            return 0;
        }
        b += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static int pwrite_full(int fd, const void *p, size_t n, uint64_t off)
{
    const uint8_t *b = p;

    while (n > 0) {
        ssize_t r = pwrite(fd, b, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -EIO;
        b += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/* Where cluster vc reads from, starting at layer l: the layer and its pcluster, or NULL when it
 * reads as zeros. */
static inline VolLayer *resolve(VolLayer *l, uint64_t vc, uint32_t *ret_p)
{
    for (; l; l = l->parent) {
        uint32_t m;
        if (vc >= l->nmap)
            continue;
        m = l->map[vc];
        if (m == 0)
            continue;
        if (m == VOL_MAP_ZERO)
            return NULL;
        *ret_p = m - 1;
        return l;
    }
    return NULL;
}

static inline bool cluster_is_hole(VolLayer *top, uint64_t vc)
{
    uint32_t p;
    return resolve(top, vc, &p) == NULL;
}

/* XTS over nsec consecutive sectors starting at sector; in may equal out. */
static int xts(EVP_CIPHER_CTX *c, uint64_t sector, const uint8_t *in, uint8_t *out, size_t nsec)
{
    uint8_t iv[16] = {0};
    int ol;

    for (size_t i = 0; i < nsec; i++, sector++) {
        for (int k = 0; k < 8; k++)
            iv[k] = (uint8_t)(sector >> (8 * k));
        if (EVP_CipherInit_ex(c, NULL, NULL, NULL, iv, -1) != 1 ||
            EVP_CipherUpdate(c, out + i * SEC, &ol, in + i * SEC, SEC) != 1)
            return -EIO;
    }
    return 0;
}

static int range_ok(const Volume *v, uint64_t off, uint64_t len)
{
    uint64_t size = v->e->size;
    return off <= size && len <= size - off;
}

/* Merges plaintext src (NULL: zeros) at [in, in+n) of cluster vc into cl, a cluster of
 * ciphertext: whole sectors are encrypted from src, partial ones decrypted, patched and
 * re-encrypted (those must hold valid ciphertext in cl). */
static int enc_merge(Volume *v, uint8_t *cl, uint64_t vc, uint32_t in, const uint8_t *src,
                     uint32_t n)
{
    uint64_t sec0 = vc * SEC_PER_CL;
    uint32_t end = in + n, pos = in;
    uint8_t tmp[SEC];
    int r;

    if (!src)
        src = zeros;
    while (pos < end) {
        uint32_t s = pos / SEC, soff = s * SEC;
        const uint8_t *sp = src == zeros ? zeros : src + (pos - in);

        if (pos == soff && end - pos >= SEC) {
            uint32_t nsec = (end - pos) / SEC;
            r = xts(v->ectx, sec0 + s, sp, cl + soff, nsec);
            if (r < 0)
                return r;
            pos += nsec * SEC;
            continue;
        }
        {
            uint32_t a = pos - soff, b = SOV_MIN(end - soff, SEC);
            r = xts(v->dctx, sec0 + s, cl + soff, tmp, 1);
            if (r < 0)
                return r;
            memcpy(tmp + a, sp, b - a);
            r = xts(v->ectx, sec0 + s, tmp, cl + soff, 1);
            OPENSSL_cleanse(tmp, sizeof(tmp));
            if (r < 0)
                return r;
            pos = soff + b;
        }
    }
    return 0;
}

static int read_enc(Volume *v, VolLayer *l, uint32_t p, uint64_t vc, uint32_t in, uint8_t *dst,
                    uint32_t n)
{
    uint64_t base = (uint64_t)p * CL, sec0 = vc * SEC_PER_CL;
    uint32_t a, b;
    int r;

    if (in % SEC == 0 && n % SEC == 0) {
        r = pread_full(l->data_fd, dst, n, base + in);
        return r < 0 ? r : xts(v->dctx, sec0 + in / SEC, dst, dst, n / SEC);
    }
    a = in & ~(SEC - 1);
    b = (in + n + SEC - 1) & ~(SEC - 1);
    r = pread_full(l->data_fd, v->cbuf + a, b - a, base + a);
    if (r == 0)
        r = xts(v->dctx, sec0 + a / SEC, v->cbuf + a, v->cbuf + a, (b - a) / SEC);
    if (r == 0)
        memcpy(dst, v->cbuf + in, n);
    OPENSSL_cleanse(v->cbuf + a, b - a);
    return r;
}

int vol_read(Volume *v, void *buf, uint64_t off, uint32_t len)
{
    VolLayer *top = v->e->layer;
    uint8_t *dst = buf, *run_dst = NULL;
    uint64_t run_pos = 0;
    size_t run_len = 0;
    int run_fd = -1, r;

    if (!range_ok(v, off, len))
        return -EINVAL;
    if (len == 0)
        return 0;
    /* The fast path: one cluster the top layer holds. */
    if (!v->enc && (off & (CL - 1)) + len <= CL) {
        uint32_t m = top->map[off / CL];
        if (m != 0 && m != VOL_MAP_ZERO)
            return pread_full(top->data_fd, buf, len, (uint64_t)(m - 1) * CL + (off & (CL - 1)));
    }
    while (len > 0) {
        uint64_t vc = off / CL;
        uint32_t in = (uint32_t)(off & (CL - 1)), n = SOV_MIN(CL - in, len), p;
        VolLayer *l = resolve(top, vc, &p);

        if (!l) {
            memset(dst, 0, n);
        } else if (v->enc) {
            r = read_enc(v, l, p, vc, in, dst, n);
            if (r < 0)
                return r;
        } else {
            uint64_t pos = (uint64_t)p * CL + in;
            if (run_len && run_fd == l->data_fd && run_pos + run_len == pos &&
                run_dst + run_len == dst) {
                run_len += n;
            } else {
                if (run_len && (r = pread_full(run_fd, run_dst, run_len, run_pos)) < 0)
                    return r;
                run_fd = l->data_fd;
                run_pos = pos;
                run_dst = dst;
                run_len = n;
            }
        }
        dst += n;
        off += n;
        len -= n;
    }
    if (run_len)
        return pread_full(run_fd, run_dst, run_len, run_pos);
    return 0;
}

int vol_is_zero(Volume *v, uint64_t off, uint64_t len)
{
    VolLayer *top = v->e->layer;

    if (!range_ok(v, off, len))
        return -EINVAL;
    if (len == 0)
        return 1;
    for (uint64_t vc = off / CL; vc <= (off + len - 1) / CL; vc++)
        if (!cluster_is_hole(top, vc))
            return 0;
    return 1;
}

/* Writes src (NULL: zeros) at [in, in+n) of cluster vc of the top layer. */
static int write_piece(Volume *v, uint64_t vc, uint32_t in, const uint8_t *src, uint32_t n)
{
    VolLayer *top = v->e->layer, *below;
    uint32_t m = top->map[vc], p, pp = 0;
    uint64_t base;
    bool full;
    int r;

    if (m != 0 && m != VOL_MAP_ZERO) {
        base = (uint64_t)(m - 1) * CL;
        top->data_dirty = true;
        if (!v->enc)
            return pwrite_full(top->data_fd, src ? src : zeros, n, base + in);
        {
            uint32_t a = in & ~(SEC - 1), b = (in + n + SEC - 1) & ~(SEC - 1);
            if (in != a && (r = pread_full(top->data_fd, v->cbuf + a, SEC, base + a)) < 0)
                return r;
            if ((in + n) % SEC && (b - SEC != a || in == a) &&
                (r = pread_full(top->data_fd, v->cbuf + b - SEC, SEC, base + b - SEC)) < 0)
                return r;
            r = enc_merge(v, v->cbuf, vc, in, src, n);
            if (r < 0)
                return r;
            return pwrite_full(top->data_fd, v->cbuf + a, b - a, base + a);
        }
    }

    /* A new cluster: never one an older durable mapping may still use. */
    r = vol_layer_alloc(top, &p);
    if (r < 0)
        return r;
    base = (uint64_t)p * CL;
    below = m == VOL_MAP_ZERO ? NULL : resolve(top->parent, vc, &pp);
    full = in == 0 && n == CL;
    if (full && !v->enc) {
        r = pwrite_full(top->data_fd, src ? src : zeros, CL, base);
    } else if (!v->enc && !below && (p >= top->npc || top->punch_ok)) {
        /* The rest of a fresh cluster reads as zeros already (end of file or punched). */
        r = src ? pwrite_full(top->data_fd, src, n, base + in) : 0;
    } else {
        if (full)
            r = 0; /* every sector is encrypted from src below */
        else if (below)
            r = pread_full(below->data_fd, v->cbuf, CL, (uint64_t)pp * CL);
        else if (v->enc)
            r = xts(v->ectx, vc * SEC_PER_CL, zeros, v->cbuf, SEC_PER_CL);
        else
            memset(v->cbuf, 0, CL);
        if (r == 0) {
            if (v->enc)
                r = enc_merge(v, v->cbuf, vc, in, src, n);
            else if (src)
                memcpy(v->cbuf + in, src, n);
            else
                memset(v->cbuf + in, 0, n);
        }
        if (r == 0)
            r = pwrite_full(top->data_fd, v->cbuf, CL, base);
    }
    if (r < 0)
        return r;
    r = vol_layer_set(top, vc, p + 1);
    if (r < 0)
        return r;
    vol_layer_alloc_commit(top, p);
    top->data_dirty = true;
    return 0;
}

static int after_write(Volume *v, bool fua)
{
    VolLayer *top = v->e->layer;

    if (fua || top->npend >= VOL_PENDING_MAX)
        return vol_layer_flush(v->st, top);
    return 0;
}

int vol_write(Volume *v, const void *buf, uint64_t off, uint32_t len, bool fua)
{
    VolLayer *top = v->e->layer;
    const uint8_t *src = buf;
    int r;

    if (v->ro || !range_ok(v, off, len))
        return -EINVAL;
    if (len == 0)
        return fua ? vol_flush(v) : 0;
    if (!v->enc && (off & (CL - 1)) + len <= CL) {
        uint32_t m = top->map[off / CL];
        if (m != 0 && m != VOL_MAP_ZERO) {
            top->data_dirty = true;
            r = pwrite_full(top->data_fd, buf, len, (uint64_t)(m - 1) * CL + (off & (CL - 1)));
            return r < 0 || !fua ? r : vol_layer_flush(v->st, top);
        }
    }
    while (len > 0) {
        uint32_t in = (uint32_t)(off & (CL - 1)), n = SOV_MIN(CL - in, len);
        r = write_piece(v, off / CL, in, src, n);
        if (r < 0)
            return r;
        src += n;
        off += n;
        len -= n;
    }
    return after_write(v, fua);
}

static int zero_range(Volume *v, uint64_t off, uint64_t len, bool may_unmap, bool fua)
{
    VolLayer *top = v->e->layer;
    int r;

    if (v->ro || !range_ok(v, off, len))
        return -EINVAL;
    while (len > 0) {
        uint64_t vc = off / CL;
        uint32_t in = (uint32_t)(off & (CL - 1)), n = (uint32_t)SOV_MIN(CL - in, len), p;
        bool whole = in == 0 && (n == CL || off + n == v->e->size);

        if (may_unmap && whole) {
            uint32_t nv = resolve(top->parent, vc, &p) ? VOL_MAP_ZERO : 0;
            if (top->map[vc] != nv && (r = vol_layer_set(top, vc, nv)) < 0)
                return r;
        } else if (!may_unmap || !cluster_is_hole(top, vc)) {
            r = write_piece(v, vc, in, NULL, n);
            if (r < 0)
                return r;
        }
        off += n;
        len -= n;
    }
    return after_write(v, fua);
}

int vol_trim(Volume *v, uint64_t off, uint64_t len, bool fua)
{
    return zero_range(v, off, len, true, fua);
}

int vol_write_zeroes(Volume *v, uint64_t off, uint64_t len, bool may_unmap, bool fua)
{
    return zero_range(v, off, len, may_unmap, fua);
}

int vol_flush(Volume *v)
{
    if (v->ro)
        return 0;
    return vol_layer_flush(v->st, v->e->layer);
}

int vol_fast_extent(Volume *v, uint64_t off, uint32_t len, bool write, int *ret_fd,
                    uint64_t *ret_pos, void **ret_token)
{
    VolLayer *top = v->e->layer, *l;
    uint32_t p;

    if (v->enc || len == 0 || !range_ok(v, off, len) || (off & (CL - 1)) + len > CL ||
        (write && v->ro))
        return -EAGAIN;
    if (write) {
        uint32_t m = top->map[off / CL];
        if (m == 0 || m == VOL_MAP_ZERO)
            return -EAGAIN; /* allocation or copy-on-write: the slow path */
        l = top;
        p = m - 1;
        top->data_dirty = true;
    } else {
        l = resolve(top, off / CL, &p);
        if (!l)
            return -EAGAIN; /* a hole: the slow path fills zeros */
    }
    *ret_fd = l->data_fd;
    *ret_pos = (uint64_t)p * CL + (off & (CL - 1));
    /* Only the writable top layer ever frees clusters; track I/O into it (and keep it loaded). */
    top->fast_inflight++;
    top->refs++;
    *ret_token = top;
    return 0;
}

void vol_fast_done(void *token)
{
    VolLayer *l = token;
    l->fast_inflight--;
    vol_layer_unref(l);
}

int vol_flush_async(Volume *v, uv_loop_t *loop, void (*done)(void *ud, int err), void *ud)
{
    if (v->ro) {
        done(ud, 0);
        return 0;
    }
    return vol_layer_flush_async(v->st, v->e->layer, loop, done, ud);
}

int vol_volume_flush_layer(Volume *v)
{
    return vol_flush(v);
}

int vol_block_status(Volume *v, uint64_t off, uint64_t len,
                     int (*emit)(void *ctx, uint64_t length, uint32_t flags), void *ctx)
{
    VolLayer *top = v->e->layer;
    uint64_t end, pos = off, scanned = 0;

    if (off >= v->e->size || len == 0)
        return -EINVAL;
    end = off + SOV_MIN(len, v->e->size - off);
    while (pos < end && scanned < STATUS_SCAN) {
        uint64_t vc = pos / CL, run_end = SOV_MIN((vc + 1) * CL, end);
        uint32_t flags = cluster_is_hole(top, vc) ? 3 : 0;
        int r;

        scanned++;
        while (run_end < end && run_end - pos < STATUS_MAX && scanned < STATUS_SCAN) {
            uint64_t nvc = run_end / CL;
            if ((cluster_is_hole(top, nvc) ? 3u : 0u) != flags)
                break;
            scanned++;
            run_end = SOV_MIN((nvc + 1) * CL, end);
        }
        if (run_end - pos > STATUS_MAX)
            run_end = pos + STATUS_MAX;
        r = emit(ctx, run_end - pos, flags);
        if (r != 0)
            return r < 0 ? r : 0;
        pos = run_end;
    }
    return 0;
}

static void chain_unref(VolLayer *l, VolLayer *stop)
{
    while (l && l != stop) {
        VolLayer *parent = l->parent;
        vol_layer_unref(l);
        l = parent;
    }
}

static int setup_cipher(Volume *v)
{
    uint8_t key[SOV_XTS_KEY_LEN];
    int r = vol_key_unwrap(v->st, v->e->wrapped, key);

    if (r < 0)
        return r;
    v->ectx = EVP_CIPHER_CTX_new();
    v->dctx = EVP_CIPHER_CTX_new();
    if (!v->ectx || !v->dctx ||
        EVP_CipherInit_ex(v->ectx, EVP_aes_256_xts(), NULL, key, NULL, 1) != 1 ||
        EVP_CipherInit_ex(v->dctx, EVP_aes_256_xts(), NULL, key, NULL, 0) != 1)
        r = -EIO;
    OPENSSL_cleanse(key, sizeof(key));
    return r;
}

static Volume *volume_free(Volume *v)
{
    if (!v)
        return NULL;
    EVP_CIPHER_CTX_free(v->ectx);
    EVP_CIPHER_CTX_free(v->dctx);
    free(v->cbuf);
    free(v);
    return NULL;
}

Volume *vol_open(VolStore *st, const char *name, int *ret_err)
{
    VolEntry *e = vol_store_find(st, name);
    Volume *v;
    void *p = NULL;
    int r;

    if (!e) {
        *ret_err = -ENOENT;
        return NULL;
    }
    if (e->open) {
        e->open->refs++;
        return e->open;
    }
    v = calloc(1, sizeof(*v));
    if (!v || posix_memalign(&p, 4096, CL) != 0) {
        free(v);
        *ret_err = -ENOMEM;
        return NULL;
    }
    v->cbuf = p;
    v->st = st;
    v->e = e;
    v->refs = 1;
    v->ro = e->is_snapshot;
    v->enc = e->encrypted;
    if (v->enc && (r = setup_cipher(v)) < 0) {
        *ret_err = r;
        return volume_free(v);
    }
    for (VolLayer *l = e->layer; l; l = l->parent) {
        r = vol_layer_ref(st, l);
        if (r < 0) {
            chain_unref(e->layer, l);
            *ret_err = r;
            return volume_free(v);
        }
    }
    e->open = v;
    return v;
}

void vol_close(Volume *v)
{
    if (!v || --v->refs > 0)
        return;
    if (!v->ro)
        (void)vol_flush(v);
    chain_unref(v->e->layer, NULL);
    v->e->open = NULL;
    volume_free(v);
}

uint64_t vol_size(const Volume *v)
{
    return v->e->size;
}

bool vol_read_only(const Volume *v)
{
    return v->ro;
}
