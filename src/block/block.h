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
    char api_token[SOV_CONF_STR_MAX];
    SovHttpLimitsConf http;
} BlockConfig;

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

typedef struct Block {
    BlockConfig cfg;
    VolStore *store;
    uv_loop_t *loop;
    NbdServer *nbd;
    int nbd_port;
    SovHttpLimits http_limits;
    SovRouter *router;
    SovHttpServer *http;
    BlockGrant *grants;
    size_t ngrants;
    SovMetric *m_ops[8], *m_bytes_read, *m_bytes_written, *m_errors, *m_latency[8];
} Block;

NbdBackend block_nbd_backend(Block *b);

int block_api_start(Block *b, int fd);
void block_api_stop(Block *b);
void block_api_free(Block *b);

int block_grants_load(Block *b, SovBuf *err);
void block_grants_free(Block *b);
/* Whether a client may open `export_name`; sets the volume name it refers to. */
bool block_grant_allows(Block *b, const char *export_name, const NbdClientInfo *client,
                        char volume[VOL_NAME_MAX + 1]);

#endif
