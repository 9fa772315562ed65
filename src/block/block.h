/* SPDX-License-Identifier: Apache-2.0 */
/* sov-block internals shared by main.c (daemon), api.c (management HTTP API, grants) and
 * backend.c (the NBD backend over the volume engine). Everything runs on one worker loop. */
#ifndef SOV_BLOCK_H
#define SOV_BLOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "nbd.h"
#include "sov/buf.h"
#include "sov/conf.h"
#include "sov/crypto.h"
#include "sov/daemon.h"
#include "sov/http.h"
#include "sov/metrics.h"
#include "volume.h"

typedef struct BlockConfig {
    char listen[SOV_CONF_STR_MAX];
    bool access_log;
    char log_level[SOV_CONF_STR_MAX];
    char data_dir[SOV_CONF_STR_MAX];
    char master_key_file[SOV_CONF_STR_MAX];
    bool fsync;
    char nbd_listen[SOV_CONF_STR_MAX];
    char nbd_socket[SOV_CONF_STR_MAX];
    bool unix_open;
    char nbd_tls_cert[SOV_CONF_STR_MAX];
    char nbd_tls_key[SOV_CONF_STR_MAX];
    char nbd_tls[SOV_CONF_STR_MAX];
    char api_token[SOV_CONF_STR_MAX];
    char io[SOV_CONF_STR_MAX];
    SovHttpLimitsConf http;
} BlockConfig;

/* aio.c: the hot path's data I/O off the loop. */
typedef enum BlockAioMode { BLOCK_AIO_URING, BLOCK_AIO_THREADS, BLOCK_AIO_SYNC } BlockAioMode;
typedef struct BlockAio BlockAio;
typedef void (*BlockAioDone)(NbdIo *io, int err, void *ud);
/* Falls back from io_uring to the thread pool when the kernel refuses io_uring. */
BlockAio *block_aio_new(uv_loop_t *loop, BlockAioMode mode, BlockAioDone done, void *ud);
BlockAioMode block_aio_mode(const BlockAio *a);
/* A READ or WRITE of the hot path: done at once (a read of cached pages), queued (completes
 * through the BlockAioDone callback), or not taken (the caller uses the engine). */
typedef enum BlockAioResult {
    BLOCK_AIO_NOT_TAKEN,
    BLOCK_AIO_DONE,
    BLOCK_AIO_QUEUED
} BlockAioResult;
BlockAioResult block_aio_submit(BlockAio *a, Volume *v, NbdIo *io);
void block_aio_close(BlockAio *a); /* once no request is in flight */
void block_aio_free(BlockAio *a);

extern const SovConfField block_conf_fields[];
extern const size_t block_conf_nfields;

/* An export grant: volume `volume` may be opened over TCP by clients from `host`, or by any
 * client that names the export "<volume>/<token>". */
typedef struct BlockGrant {
    char id[33];
    char volume[VOL_NAME_MAX + 1];
    char host[64];  /* IP address, or "" */
    char token[65]; /* hex, or "" */
} BlockGrant;

/* An import of a volume's data from a source URL (import.c). */
typedef struct BlockImport BlockImport;

typedef struct Block {
    BlockConfig cfg;
    VolStore *store;
    uv_loop_t *loop;
    NbdServer *nbd;
    BlockAio *aio;
    int nbd_port;
    SovTlsContext *nbd_tls; /* NULL: no STARTTLS */
    NbdTlsMode nbd_tls_mode;
    SovHttpLimits http_limits;
    SovRouter *router;
    SovHttpServer *http;
    BlockGrant *grants;
    size_t ngrants;
    BlockImport *imports; /* running, flushing and failed ones */
    bool imports_stopping;
    SovMetric *m_ops[8], *m_bytes_read, *m_bytes_written, *m_errors, *m_latency[8];
} Block;

NbdBackend block_nbd_backend(Block *b);
void block_aio_done(NbdIo *io, int err, void *ud); /* completion of an aio READ/WRITE */

int block_api_start(Block *b, int fd);
void block_api_stop(Block *b);
void block_api_free(Block *b);

int block_grants_load(Block *b, SovBuf *err);
void block_grants_free(Block *b);
/* Whether a client may open `export_name`; sets the volume name it refers to. */
bool block_grant_allows(Block *b, const char *export_name, const NbdClientInfo *client,
                        char volume[VOL_NAME_MAX + 1]);

/* import.c: volumes filled from an http:// URL. recover (at start) deletes the volumes whose
 * import a previous run left unfinished. start creates the volume and starts the copy (-EINVAL
 * bad URL, -EEXIST, -EAGAIN too many running, or vol_create's errors; err says why). busy: the
 * volume has an import that has not completed (running or failed). stop ends a running one
 * before its volume is deleted (-EBUSY during its final flush); forget drops the import of a
 * deleted volume. describe adds "import" {state, bytes, total, error} to a volume's JSON. */
struct json_t;
int block_imports_recover(Block *b);
int block_import_start(Block *b, const char *name, uint64_t size, bool encrypted, const char *url,
                       SovBuf *err);
bool block_import_busy(Block *b, const char *name);
int block_import_stop(Block *b, const char *name);
void block_import_forget(Block *b, const char *name);
void block_import_describe(Block *b, const char *name, struct json_t *o);
void block_imports_stop(Block *b);
void block_imports_free(Block *b);

#endif
