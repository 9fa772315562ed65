/* SPDX-License-Identifier: Apache-2.0 */
/* Private layouts of the volume engine, shared by volume.c (I/O), vol_layer.c (layers: map
 * journals, cluster allocation, flush) and vol_catalog.c (the store: catalog, management).
 *
 * On disk a store directory holds `catalog.json` (rewritten atomically), a `lock` file, and per
 * layer `layer-<id>.data` (raw 64 KiB clusters at pcluster * 64 KiB, sparse, no header) and
 * `layer-<id>.map` (the map journal: a 32-byte header, then 16-byte records, see vol_layer.c).
 */
#ifndef SOV_BLOCK_VOL_INT_H
#define SOV_BLOCK_VOL_INT_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <uv.h>
#include <stddef.h>
#include <stdint.h>

#include "volume.h"

#define VOL_CLUSTER_SHIFT 16
/* Map values: 0 = not in this layer (look in the parent), VOL_MAP_ZERO = reads as zeros and
 * hides the parents, anything else = pcluster + 1. */
#define VOL_MAP_ZERO     0xFFFFFFFFu
#define VOL_PCLUSTER_MAX 0xFFFFFFFDu
/* Pending map records past this many make a write flush on its own (bounds that memory). */
#define VOL_PENDING_MAX (1u << 16)

/* One layer. Invariants: parent->id < id (no cycles); a layer is frozen (never written again)
 * unless it is some volume's top layer; the loaded fields are valid only while refs > 0 (some
 * open volume's chain holds it). A pcluster is in exactly one of: mapped (map), pending free
 * (unmapped in memory, unmapping not yet durable: never reused before the next flush), free
 * (freebits: its unmapping is durable and it was hole-punched, so it reads as zeros). */
typedef struct VolLayer {
    uint64_t id;
    uint64_t parent_id; /* 0: none */
    struct VolLayer *parent;
    uint64_t size; /* bytes of volume the map covers */
    bool frozen;
    bool mark; /* garbage collection */

    unsigned refs;
    uint32_t *map;
    uint64_t nmap; /* entries in map (>= size / cluster) */
    int data_fd;
    int map_fd;
    uint32_t npc; /* clusters the data file spans (mapped, pending free or free) */
    uint64_t *freebits;
    size_t freewords;
    uint32_t nfree;
    uint32_t free_hint; /* word index to start looking for a free cluster */
    uint32_t *pend;     /* pending records: pairs (vcluster, value) */
    size_t npend, pendcap;
    uint32_t *pfree; /* pending free pclusters */
    size_t npfree, pfreecap;
    uint64_t jlen;   /* valid bytes of the map journal */
    uint64_t jrecs;  /* records in it */
    uint64_t nlive;  /* non-zero map entries */
    uint64_t nalloc; /* map entries that are pclusters (kept while unloaded once known) */
    bool nalloc_known;
    bool data_dirty; /* data written since the last flush */
    bool punch_ok;   /* hole punching works: free clusters read as zeros */
    /* Asynchronous flush (vol_flush_async): at most one in flight per layer; the requests that
     * came meanwhile wait for the next one. io_error: an asynchronous flush failed; every flush
     * fails from then on (what was acknowledged stays, nothing more is promised). */
    struct VolFlight *flight;
    struct VolFlushWait *queued;
    size_t nqueued, queuedcap;
    bool io_error;
    /* Direct reads/writes in flight (vol_fast_extent): freed clusters wait while any fly. */
    uint32_t fast_inflight;
} VolLayer;

/* A volume or snapshot of the catalog. A snapshot's layer is frozen. */
typedef struct VolEntry {
    char name[VOL_NAME_MAX + 1];
    char origin[VOL_NAME_MAX + 1];
    uint64_t size;
    VolLayer *layer; /* volume: its top layer; snapshot: its frozen layer */
    bool is_snapshot;
    bool encrypted;
    char *wrapped; /* hex of iv | tag | wrapped XTS key, NULL when not encrypted */
    int64_t created_ms;
    Volume *open; /* the one open handle, refcounted */
} VolEntry;

struct VolStore {
    char *dir;
    int dirfd;
    int lockfd;
    bool fsync;
    bool has_master;
    uint8_t master[VOL_MASTER_KEY_LEN];
    VolEntry **ents;
    size_t nents;
    VolLayer **layers;
    size_t nlayers;
    uint64_t next_layer;
};

/* An open volume or snapshot; one per entry, shared by every vol_open of it. */
struct Volume {
    VolStore *st;
    VolEntry *e;
    unsigned refs;
    bool ro;
    bool enc;
    EVP_CIPHER_CTX *ectx; /* XTS encrypt, keyed once; only the tweak changes per sector */
    EVP_CIPHER_CTX *dctx;
    uint8_t *cbuf; /* one cluster of scratch (copy-on-write, encryption) */
};

/* vol_layer.c */
uint32_t vol_crc32c(uint32_t crc, const void *p, size_t n);
int vol_layer_create_files(VolStore *st, VolLayer *l);
void vol_layer_remove_files(VolStore *st, uint64_t id);
int vol_layer_ref(VolStore *st, VolLayer *l);
void vol_layer_unref(VolLayer *l);
int vol_layer_grow(VolLayer *l, uint64_t size);
int vol_layer_flush(VolStore *st, VolLayer *l);
/* Flushes with the disk waits on the libuv thread pool; done runs on loop (maybe inline). */
int vol_layer_flush_async(VolStore *st, VolLayer *l, uv_loop_t *loop,
                          void (*done)(void *ud, int err), void *ud);
/* Picks a cluster for a new allocation (not taken until vol_layer_alloc_commit). */
int vol_layer_alloc(VolLayer *l, uint32_t *ret_p);
void vol_layer_alloc_commit(VolLayer *l, uint32_t p);
/* Sets map[vc] = val in memory and records it as pending; an unmapped pcluster becomes
 * pending free. -ENOMEM leaves everything unchanged. */
int vol_layer_set(VolLayer *l, uint64_t vc, uint32_t val);
void vol_layer_freeze(VolLayer *l);
/* Counts the pclusters mapped by a layer (loading its journal when it is not loaded). */
int vol_layer_count(VolStore *st, VolLayer *l, uint64_t *ret);

/* vol_catalog.c */
int vol_catalog_save(VolStore *st);
VolEntry *vol_store_find(VolStore *st, const char *name);
/* Unwraps a volume's XTS key with the master key: -ENOKEY without one, -EKEYREJECTED when it
 * does not authenticate (wrong master key). */
int vol_key_unwrap(VolStore *st, const char *wrapped, uint8_t key[64]);

/* volume.c */
int vol_volume_flush_layer(Volume *v);

static inline uint64_t vol_clusters(uint64_t size)
{
    return (size + VOL_CLUSTER - 1) >> VOL_CLUSTER_SHIFT;
}

#endif
