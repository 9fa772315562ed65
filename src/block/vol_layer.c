/* SPDX-License-Identifier: Apache-2.0 */
/* Layers of the volume engine: loading a layer's map journal into its dense in-memory map,
 * allocating clusters in its data file (reusing clusters whose unmapping is durable), and the
 * flush that makes new mappings durable (data fdatasync, then journal append and fdatasync),
 * with journal compaction (rewrite to a temp file and rename) when it outgrows the map.
 *
 * Journal format, little-endian: a 32-byte header (magic "SOVBLKMP", u32 version 1, u32 record
 * size 16, u64 layer id, u32 cluster size, u32 CRC-32C of the 28 bytes before), then records
 * (u32 vcluster, u32 value, u32 low 32 bits of the layer id, u32 CRC-32C of the 12 bytes before).
 * Replay applies records in order and stops at the first one that does not check out: a torn
 * tail from a crash. The file is cut there so later appends follow the valid prefix. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sov/crypto.h"
#include "vol-int.h"

#define JHDR_LEN  32
#define JREC_LEN  16
#define JVERSION  1
#define JMAGIC    "SOVBLKMP"
#define JREAD_BUF (64u * 1024)

uint32_t vol_crc32c(uint32_t crc, const void *p, size_t n)
{
    return sov_crc32c(crc, p, n);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

static void header_encode(uint64_t id, uint8_t h[JHDR_LEN])
{
    memcpy(h, JMAGIC, 8);
    put32(h + 8, JVERSION);
    put32(h + 12, JREC_LEN);
    put64(h + 16, id);
    put32(h + 24, VOL_CLUSTER);
    put32(h + 28, vol_crc32c(0, h, 28));
}

static void record_encode(uint64_t id, uint32_t vc, uint32_t val, uint8_t r[JREC_LEN])
{
    put32(r, vc);
    put32(r + 4, val);
    put32(r + 8, (uint32_t)id);
    put32(r + 12, vol_crc32c(0, r, 12));
}

static int pwrite_all(int fd, const void *p, size_t n, uint64_t off)
{
    const uint8_t *b = p;

    while (n > 0) {
        ssize_t w = pwrite(fd, b, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (w == 0)
            return -EIO;
        b += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

static int layer_path(VolStore *st, uint64_t id, const char *ext, char *out, size_t n)
{
    if (snprintf(out, n, "layer-%llu.%s", (unsigned long long)id, ext) >= (int)n)
        return -ENAMETOOLONG;
    return 0;
}

static int sync_dir(VolStore *st)
{
    if (st->fsync && fsync(st->dirfd) < 0)
        return -errno;
    return 0;
}

int vol_layer_create_files(VolStore *st, VolLayer *l)
{
    char name[64];
    uint8_t h[JHDR_LEN];
    int fd, r;

    r = layer_path(st, l->id, "data", name, sizeof(name));
    if (r < 0)
        return r;
    fd = openat(st->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    close(fd);
    r = layer_path(st, l->id, "map", name, sizeof(name));
    if (r < 0)
        return r;
    fd = openat(st->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    header_encode(l->id, h);
    r = pwrite_all(fd, h, sizeof(h), 0);
    if (r == 0 && st->fsync && fdatasync(fd) < 0)
        r = -errno;
    close(fd);
    if (r < 0)
        return r;
    return sync_dir(st);
}

void vol_layer_remove_files(VolStore *st, uint64_t id)
{
    char name[64];

    if (layer_path(st, id, "data", name, sizeof(name)) == 0)
        (void)unlinkat(st->dirfd, name, 0);
    if (layer_path(st, id, "map", name, sizeof(name)) == 0)
        (void)unlinkat(st->dirfd, name, 0);
}

static void map_account(VolLayer *l, uint32_t old, uint32_t val)
{
    if (old != 0)
        l->nlive--;
    if (val != 0)
        l->nlive++;
    if (old != 0 && old != VOL_MAP_ZERO)
        l->nalloc--;
    if (val != 0 && val != VOL_MAP_ZERO)
        l->nalloc++;
}

/* Replays the journal open on fd into map (nmap entries). Cuts a torn tail when cut is set. */
static int journal_replay(uint64_t id, int fd, uint32_t *map, uint64_t nmap, bool cut,
                          uint64_t *ret_len, uint64_t *ret_recs, uint64_t *ret_live,
                          uint64_t *ret_alloc)
{
    uint8_t h[JHDR_LEN], want[JHDR_LEN];
    uint8_t *buf;
    uint64_t off = JHDR_LEN, recs = 0;
    VolLayer acc = {0};
    struct stat stt;
    ssize_t n;
    int r = 0;

    if (fstat(fd, &stt) < 0)
        return -errno;
    n = pread(fd, h, sizeof(h), 0);
    if (n < 0)
        return -errno;
    header_encode(id, want);
    if (n != JHDR_LEN || memcmp(h, want, JHDR_LEN) != 0) {
        /* A header of another version or layer is damage we must not paper over. */
        if (n == 0 && stt.st_size == 0 && cut) {
            r = pwrite_all(fd, want, JHDR_LEN, 0);
            if (r < 0)
                return r;
            *ret_len = JHDR_LEN;
            *ret_recs = *ret_live = *ret_alloc = 0;
            return 0;
        }
        return -EIO;
    }
    buf = malloc(JREAD_BUF);
    if (!buf)
        return -ENOMEM;
    for (;;) {
        size_t got, i;

        n = pread(fd, buf, JREAD_BUF, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            break;
        }
        got = (size_t)n;
        for (i = 0; i + JREC_LEN <= got; i += JREC_LEN) {
            const uint8_t *rec = buf + i;
            uint32_t vc = get32(rec), val = get32(rec + 4);

            if (get32(rec + 8) != (uint32_t)id || get32(rec + 12) != vol_crc32c(0, rec, 12) ||
                (val != VOL_MAP_ZERO && val > VOL_PCLUSTER_MAX + 1)) {
                off += i;
                goto done;
            }
            recs++;
            if (vc < nmap) {
                map_account(&acc, map[vc], val);
                map[vc] = val;
            }
        }
        off += i;
        if (got < JREAD_BUF)
            break;
    }
done:
    free(buf);
    if (r < 0)
        return r;
    if (cut && (uint64_t)stt.st_size != off && ftruncate(fd, (off_t)off) < 0)
        return -errno;
    *ret_len = off;
    *ret_recs = recs;
    *ret_live = acc.nlive;
    *ret_alloc = acc.nalloc;
    return 0;
}

static int open_layer_file(VolStore *st, uint64_t id, const char *ext)
{
    char name[64];
    int r = layer_path(st, id, ext, name, sizeof(name));

    if (r < 0)
        return r;
    r = openat(st->dirfd, name, O_RDWR | O_CLOEXEC);
    return r < 0 ? -errno : r;
}

static void punch(VolLayer *l, uint32_t p, uint32_t n)
{
    /* A file system without hole punching keeps the old bytes: then a reused cluster is
     * always written whole (punch_ok tells the writer). */
    if (fallocate(l->data_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  (off_t)p << VOL_CLUSTER_SHIFT, (off_t)n << VOL_CLUSTER_SHIFT) < 0)
        l->punch_ok = false;
}

static bool bit_get(const uint64_t *b, uint64_t i)
{
    return (b[i >> 6] >> (i & 63)) & 1;
}

static int freebits_reserve(VolLayer *l, uint64_t nbits)
{
    size_t words = (size_t)((nbits + 63) / 64);
    uint64_t *nb;

    if (words <= l->freewords)
        return 0;
    words = SOV_MAX(words, l->freewords * 2);
    nb = realloc(l->freebits, words * sizeof(uint64_t));
    if (!nb)
        return -ENOMEM;
    memset(nb + l->freewords, 0, (words - l->freewords) * sizeof(uint64_t));
    l->freebits = nb;
    l->freewords = words;
    return 0;
}

/* For a writable layer: every cluster of the data file that the durable map does not use is
 * free; it is hole-punched again (a punch before the crash may not have reached the disk) and
 * trailing free clusters are cut off the file. */
static int layer_build_free(VolLayer *l)
{
    struct stat stt;
    uint64_t npc, last = 0;
    uint64_t *used;
    int r;

    if (fstat(l->data_fd, &stt) < 0)
        return -errno;
    npc = ((uint64_t)stt.st_size + VOL_CLUSTER - 1) >> VOL_CLUSTER_SHIFT;
    if (npc > (uint64_t)VOL_PCLUSTER_MAX + 1)
        return -EIO;
    /* A mapped cluster may lie past the end of the file: one allocated for zeros and never
     * written reads as zeros from the sparse end. */
    for (uint64_t vc = 0; vc < l->nmap; vc++) {
        uint32_t m = l->map[vc];
        if (m != 0 && m != VOL_MAP_ZERO)
            last = SOV_MAX(last, (uint64_t)m);
    }
    npc = SOV_MAX(npc, last);
    used = calloc((size_t)((npc + 63) / 64) + 1, sizeof(uint64_t));
    if (!used)
        return -ENOMEM;
    for (uint64_t vc = 0; vc < l->nmap; vc++) {
        uint32_t m = l->map[vc];
        if (m != 0 && m != VOL_MAP_ZERO)
            used[(m - 1) >> 6] |= 1ull << ((m - 1) & 63);
    }
    if (last < npc) {
        if (ftruncate(l->data_fd, (off_t)(last << VOL_CLUSTER_SHIFT)) < 0) {
            free(used);
            return -errno;
        }
        npc = last;
    }
    l->npc = (uint32_t)npc;
    r = freebits_reserve(l, npc + 1);
    if (r < 0) {
        free(used);
        return r;
    }
    for (uint64_t p = 0; p < npc;) {
        uint64_t q = p;
        while (q < npc && !bit_get(used, q))
            q++;
        if (q > p) {
            punch(l, (uint32_t)p, (uint32_t)(q - p));
            for (uint64_t i = p; i < q; i++)
                l->freebits[i >> 6] |= 1ull << (i & 63);
            l->nfree += (uint32_t)(q - p);
            p = q;
        } else
            p++;
    }
    free(used);
    return 0;
}

static void layer_unload(VolLayer *l)
{
    free(l->map);
    free(l->freebits);
    free(l->pend);
    free(l->pfree);
    if (l->data_fd >= 0)
        close(l->data_fd);
    if (l->map_fd >= 0)
        close(l->map_fd);
    l->map = NULL;
    l->freebits = NULL;
    l->pend = l->pfree = NULL;
    l->freewords = 0;
    l->nfree = l->free_hint = 0;
    l->npend = l->pendcap = l->npfree = l->pfreecap = 0;
    l->data_fd = l->map_fd = -1;
    l->nmap = 0;
}

static int layer_load(VolStore *st, VolLayer *l)
{
    int r;

    l->data_fd = l->map_fd = -1;
    l->nmap = vol_clusters(l->size);
    l->map = calloc(l->nmap ? l->nmap : 1, sizeof(uint32_t));
    if (!l->map)
        return -ENOMEM;
    r = open_layer_file(st, l->id, "data");
    if (r < 0)
        goto fail;
    l->data_fd = r;
    r = open_layer_file(st, l->id, "map");
    if (r < 0)
        goto fail;
    l->map_fd = r;
    r = journal_replay(l->id, l->map_fd, l->map, l->nmap, true, &l->jlen, &l->jrecs, &l->nlive,
                       &l->nalloc);
    if (r < 0)
        goto fail;
    l->nalloc_known = true;
    l->data_dirty = false;
    l->punch_ok = true;
    if (!l->frozen) {
        r = layer_build_free(l);
        if (r < 0)
            goto fail;
    } else {
        struct stat stt;
        if (fstat(l->data_fd, &stt) < 0) {
            r = -errno;
            goto fail;
        }
        l->npc = (uint32_t)(((uint64_t)stt.st_size + VOL_CLUSTER - 1) >> VOL_CLUSTER_SHIFT);
    }
    return 0;
fail:
    layer_unload(l);
    return r;
}

int vol_layer_ref(VolStore *st, VolLayer *l)
{
    int r;

    if (l->refs == 0) {
        r = layer_load(st, l);
        if (r < 0)
            return r;
    }
    l->refs++;
    return 0;
}

void vol_layer_unref(VolLayer *l)
{
    if (!l || l->refs == 0)
        return;
    if (--l->refs == 0)
        layer_unload(l);
}

int vol_layer_grow(VolLayer *l, uint64_t size)
{
    uint64_t n = vol_clusters(size);

    if (l->refs > 0 && n > l->nmap) {
        uint32_t *m = realloc(l->map, n * sizeof(uint32_t));
        if (!m)
            return -ENOMEM;
        memset(m + l->nmap, 0, (n - l->nmap) * sizeof(uint32_t));
        l->map = m;
        l->nmap = n;
    }
    if (size > l->size)
        l->size = size;
    return 0;
}

int vol_layer_alloc(VolLayer *l, uint32_t *ret_p)
{
    if (l->nfree > 0) {
        for (size_t w = l->free_hint; w < l->freewords; w++) {
            if (l->freebits[w]) {
                l->free_hint = (uint32_t)w;
                *ret_p = (uint32_t)(w * 64 + (size_t)__builtin_ctzll(l->freebits[w]));
                return 0;
            }
        }
        for (size_t w = 0; w < l->free_hint; w++) {
            if (l->freebits[w]) {
                l->free_hint = (uint32_t)w;
                *ret_p = (uint32_t)(w * 64 + (size_t)__builtin_ctzll(l->freebits[w]));
                return 0;
            }
        }
    }
    if (l->npc > VOL_PCLUSTER_MAX)
        return -ENOSPC;
    *ret_p = l->npc;
    return 0;
}

void vol_layer_alloc_commit(VolLayer *l, uint32_t p)
{
    if (p < l->npc) {
        l->freebits[p >> 6] &= ~(1ull << (p & 63));
        l->nfree--;
    } else {
        l->npc = p + 1;
    }
}

static int grow_array(uint32_t **a, size_t *cap, size_t need)
{
    size_t ncap;
    uint32_t *na;

    if (need <= *cap)
        return 0;
    ncap = SOV_MAX(need, SOV_MAX(*cap * 2, (size_t)64));
    na = realloc(*a, ncap * sizeof(uint32_t));
    if (!na)
        return -ENOMEM;
    *a = na;
    *cap = ncap;
    return 0;
}

int vol_layer_set(VolLayer *l, uint64_t vc, uint32_t val)
{
    uint32_t old = l->map[vc];
    int r;

    r = grow_array(&l->pend, &l->pendcap, 2 * (l->npend + 1));
    if (r < 0)
        return r;
    if (old != 0 && old != VOL_MAP_ZERO) {
        r = grow_array(&l->pfree, &l->pfreecap, l->npfree + 1);
        if (r < 0)
            return r;
        l->pfree[l->npfree++] = old - 1;
    }
    l->pend[2 * l->npend] = (uint32_t)vc;
    l->pend[2 * l->npend + 1] = val;
    l->npend++;
    map_account(l, old, val);
    l->map[vc] = val;
    return 0;
}

/* Rewrites the journal as one record per live map entry (temp file, sync, rename). */
static int journal_compact(VolStore *st, VolLayer *l)
{
    char name[64], tmp[80];
    uint8_t *buf;
    size_t used = 0;
    uint64_t off = 0, recs = 0;
    int fd, r = 0;

    r = layer_path(st, l->id, "map", name, sizeof(name));
    if (r < 0)
        return r;
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", name) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    buf = malloc(JREAD_BUF);
    if (!buf)
        return -ENOMEM;
    fd = openat(st->dirfd, tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        free(buf);
        return -errno;
    }
    header_encode(l->id, buf);
    used = JHDR_LEN;
    for (uint64_t vc = 0; vc < l->nmap && r == 0; vc++) {
        if (l->map[vc] == 0)
            continue;
        record_encode(l->id, (uint32_t)vc, l->map[vc], buf + used);
        used += JREC_LEN;
        recs++;
        if (used + JREC_LEN > JREAD_BUF) {
            r = pwrite_all(fd, buf, used, off);
            off += used;
            used = 0;
        }
    }
    if (r == 0 && used > 0) {
        r = pwrite_all(fd, buf, used, off);
        off += used;
    }
    free(buf);
    if (r == 0 && st->fsync && fdatasync(fd) < 0)
        r = -errno;
    if (r == 0 && renameat(st->dirfd, tmp, st->dirfd, name) < 0)
        r = -errno;
    if (r < 0) {
        close(fd);
        (void)unlinkat(st->dirfd, tmp, 0);
        return r;
    }
    close(l->map_fd);
    l->map_fd = fd;
    l->jlen = off;
    l->jrecs = recs;
    return sync_dir(st);
}

static int grow_array(uint32_t **a, size_t *cap, size_t need);

/* Clusters whose unmapping became durable may be reused, unless direct I/O that was aimed at
 * them may still be in flight: then they wait for a later flush. */
static void release_freed(VolLayer *l, const uint32_t *list, size_t n)
{
    if (l->fast_inflight > 0) {
        for (size_t i = 0; i < n; i++)
            if (grow_array(&l->pfree, &l->pfreecap, l->npfree + 1) == 0)
                l->pfree[l->npfree++] = list[i];
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t p = list[i];
        punch(l, p, 1);
        if (!l->frozen && freebits_reserve(l, (uint64_t)p + 1) == 0) {
            l->freebits[p >> 6] |= 1ull << (p & 63);
            l->nfree++;
            if (p >> 6 < l->free_hint)
                l->free_hint = p >> 6;
        }
    }
}

/* ---- asynchronous flush ----
 * A flight takes what a flush would write (the data sync, the pending records, the pending
 * frees) off the layer at once and reserves its place at the end of the journal, so later
 * flushes append after it. Its disk work (fdatasync data, write records, fdatasync journal) runs
 * on the thread pool; the bookkeeping (freed clusters, compaction) on the loop afterwards. A
 * synchronous flush meanwhile first waits for the flight's disk work, so the journal never has a
 * gap before records that were acknowledged. */
typedef struct VolFlushWait {
    void (*done)(void *ud, int err);
    void *ud;
} VolFlushWait;

typedef struct VolFlight {
    uv_work_t work;
    VolStore *st;
    VolLayer *l;
    uv_loop_t *loop;
    bool sync_data;
    uint8_t *recs;
    size_t nrec;
    uint64_t off;
    uint32_t *pfree;
    size_t npfree;
    int status;
    uv_mutex_t mu;
    uv_cond_t cv;
    bool io_done;
    VolFlushWait *waiters;
    size_t nwaiters;
} VolFlight;

static void flight_work(uv_work_t *w)
{
    VolFlight *f = w->data;
    int r = 0;
    if (f->sync_data && f->st->fsync && fdatasync(f->l->data_fd) < 0)
        r = -errno;
    if (r == 0 && f->nrec) {
        r = pwrite_all(f->l->map_fd, f->recs, f->nrec * JREC_LEN, f->off);
        if (r == 0 && f->st->fsync && fdatasync(f->l->map_fd) < 0)
            r = -errno;
    }
    uv_mutex_lock(&f->mu);
    f->status = r;
    f->io_done = true;
    uv_cond_broadcast(&f->cv);
    uv_mutex_unlock(&f->mu);
}

static int flight_start(VolStore *st, VolLayer *l, uv_loop_t *loop, VolFlushWait *waiters,
                        size_t nwaiters);

static void flight_after(uv_work_t *w, int status)
{
    VolFlight *f = w->data;
    VolLayer *l = f->l;
    int r = status < 0 ? status : f->status;

    if (r == 0) {
        l->jrecs += f->nrec;
        release_freed(l, f->pfree, f->npfree);
    } else {
        l->io_error = true;
    }
    l->flight = NULL;
    /* Requests that came while this one flew start the next flight (after the callbacks: they
     * may write more, which the next flight then covers too). */
    VolFlushWait *next = l->queued;
    size_t nnext = l->nqueued;
    l->queued = NULL;
    l->nqueued = l->queuedcap = 0;
    for (size_t i = 0; i < f->nwaiters; i++)
        f->waiters[i].done(f->waiters[i].ud, r);
    if (nnext) {
        int e = l->io_error ? -EIO : flight_start(f->st, l, f->loop, next, nnext);
        if (e != 0) {
            for (size_t i = 0; i < nnext; i++)
                next[i].done(next[i].ud, e == 1 ? 0 : e);
            free(next);
        }
    } else {
        free(next);
    }
    uv_mutex_destroy(&f->mu);
    uv_cond_destroy(&f->cv);
    free(f->recs);
    free(f->pfree);
    free(f->waiters);
    vol_layer_unref(l);
    free(f);
}

/* Starts a flight for waiters (taking the array). Returns 0 (started), 1 (nothing to flush:
 * the caller completes the waiters) or a negative errno. */
static int flight_start(VolStore *st, VolLayer *l, uv_loop_t *loop, VolFlushWait *waiters,
                        size_t nwaiters)
{
    if (!l->data_dirty && l->npend == 0 && l->npfree == 0)
        return 1;
    VolFlight *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    f->recs = l->npend ? malloc(l->npend * JREC_LEN) : NULL;
    if (l->npend && !f->recs) {
        free(f);
        return -ENOMEM;
    }
    for (size_t i = 0; i < l->npend; i++)
        record_encode(l->id, l->pend[2 * i], l->pend[2 * i + 1], f->recs + i * JREC_LEN);
    f->work.data = f;
    f->st = st;
    f->l = l;
    f->loop = loop;
    f->sync_data = l->data_dirty;
    f->nrec = l->npend;
    f->off = l->jlen;
    f->pfree = l->pfree;
    f->npfree = l->npfree;
    f->waiters = waiters;
    f->nwaiters = nwaiters;
    uv_mutex_init(&f->mu);
    uv_cond_init(&f->cv);
    if (uv_queue_work(loop, &f->work, flight_work, flight_after) < 0) {
        uv_mutex_destroy(&f->mu);
        uv_cond_destroy(&f->cv);
        free(f->recs);
        free(f);
        return -EAGAIN;
    }
    /* The layer's state moves into the flight: later writes start a fresh dirty set. */
    l->refs++;
    l->data_dirty = false;
    l->jlen += f->nrec * JREC_LEN;
    l->npend = 0;
    l->pfree = NULL;
    l->npfree = l->pfreecap = 0;
    l->flight = f;
    return 0;
}

int vol_layer_flush_async(VolStore *st, VolLayer *l, uv_loop_t *loop,
                          void (*done)(void *ud, int err), void *ud)
{
    if (l->io_error)
        return -EIO;
    if (l->flight) {
        /* One flight at a time: this request rides the next one. */
        if (l->nqueued == l->queuedcap) {
            size_t cap = l->queuedcap ? 2 * l->queuedcap : 8;
            VolFlushWait *q = realloc(l->queued, cap * sizeof(*q));
            if (!q)
                return -ENOMEM;
            l->queued = q;
            l->queuedcap = cap;
        }
        l->queued[l->nqueued++] = (VolFlushWait){done, ud};
        return 0;
    }
    VolFlushWait *w = malloc(sizeof(*w));
    if (!w)
        return -ENOMEM;
    *w = (VolFlushWait){done, ud};
    int r = flight_start(st, l, loop, w, 1);
    if (r == 0)
        return 0;
    free(w);
    if (r == 1)
        done(ud, 0);
    return r == 1 ? 0 : r;
}

/* A synchronous flush waits until the flight's disk work is done (its bookkeeping follows on
 * the loop later; the two commute). */
static int flight_wait(VolLayer *l)
{
    VolFlight *f = l->flight;
    if (!f)
        return 0;
    uv_mutex_lock(&f->mu);
    while (!f->io_done)
        uv_cond_wait(&f->cv, &f->mu);
    int r = f->status;
    uv_mutex_unlock(&f->mu);
    return r;
}

int vol_layer_flush(VolStore *st, VolLayer *l)
{
    int r;

    if (l->io_error)
        return -EIO;
    if ((r = flight_wait(l)) < 0)
        return r;
    if (l->refs == 0 || (!l->data_dirty && l->npend == 0 && l->npfree == 0))
        return 0;
    if (l->data_dirty && st->fsync && fdatasync(l->data_fd) < 0)
        return -errno;
    l->data_dirty = false;
    if (l->npend > 0) {
        size_t n = l->npend * JREC_LEN;
        uint8_t *buf = malloc(n);

        if (!buf)
            return -ENOMEM;
        for (size_t i = 0; i < l->npend; i++)
            record_encode(l->id, l->pend[2 * i], l->pend[2 * i + 1], buf + i * JREC_LEN);
        r = pwrite_all(l->map_fd, buf, n, l->jlen);
        free(buf);
        if (r < 0)
            return r;
        if (st->fsync && fdatasync(l->map_fd) < 0)
            return -errno;
        l->jlen += n;
        l->jrecs += l->npend;
        l->npend = 0;
    }
    /* The unmappings are durable now: the clusters may be reused. */
    if (l->fast_inflight == 0) { /* else they stay pending until a later flush */
        release_freed(l, l->pfree, l->npfree);
        l->npfree = 0;
    }
    /* Compaction rewrites the journal: never under a flight that still writes into it. */
    if (!l->flight && l->jrecs >= 8192 && l->jrecs > 2 * l->nlive + 1024) {
        r = journal_compact(st, l);
        if (r < 0)
            return r;
    }
    return 0;
}

void vol_layer_freeze(VolLayer *l)
{
    l->frozen = true;
    free(l->freebits);
    l->freebits = NULL;
    l->freewords = 0;
    l->nfree = 0;
    l->free_hint = 0;
}

int vol_layer_count(VolStore *st, VolLayer *l, uint64_t *ret)
{
    uint64_t len, recs, live, alloc, n;
    uint32_t *map;
    int fd, r;

    if (l->refs > 0 || l->nalloc_known) {
        *ret = l->nalloc;
        return 0;
    }
    n = vol_clusters(l->size);
    map = calloc(n ? n : 1, sizeof(uint32_t));
    if (!map)
        return -ENOMEM;
    fd = open_layer_file(st, l->id, "map");
    if (fd < 0) {
        free(map);
        return fd;
    }
    r = journal_replay(l->id, fd, map, n, false, &len, &recs, &live, &alloc);
    close(fd);
    free(map);
    if (r < 0)
        return r;
    l->nalloc = alloc;
    l->nalloc_known = true;
    *ret = alloc;
    return 0;
}
