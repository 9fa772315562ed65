/* SPDX-License-Identifier: Apache-2.0 */
/* The NBD protocol server of sov-block, on libuv streams (TCP and Unix sockets), written from the
 * NBD protocol document: fixed newstyle handshake (NO_ZEROES), options EXPORT_NAME, ABORT, LIST,
 * INFO, GO, STRUCTURED_REPLY, LIST_META_CONTEXT and SET_META_CONTEXT (base:allocation); in the
 * transmission phase READ, WRITE (FUA), FLUSH, TRIM, WRITE_ZEROES (NO_HOLE, FAST_ZERO), CACHE,
 * BLOCK_STATUS and DISC, many requests in flight per connection and replies in completion order
 * (simple or structured; sparse reads as hole chunks); STARTTLS (TLS 1.2+, OpenSSL). It knows
 * nothing about volumes: a backend opens exports and performs the I/O. */
#ifndef SOV_BLOCK_NBD_H
#define SOV_BLOCK_NBD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "sov/buf.h"

#define NBD_MAX_PAYLOAD     (32u * 1024 * 1024) /* largest READ/WRITE length served */
#define NBD_MAX_OPTION_LEN  (64u * 1024)        /* option data a client may send */
#define NBD_MAX_EXPORT_NAME 4096
#define NBD_MAX_IN_FLIGHT   256 /* per connection; reading pauses beyond it */

/* Command types and flags (protocol values). */
enum {
    NBD_CMD_READ = 0,
    NBD_CMD_WRITE = 1,
    NBD_CMD_DISC = 2,
    NBD_CMD_FLUSH = 3,
    NBD_CMD_TRIM = 4,
    NBD_CMD_CACHE = 5,
    NBD_CMD_WRITE_ZEROES = 6,
    NBD_CMD_BLOCK_STATUS = 7,
};
enum {
    NBD_CMD_FLAG_FUA = 1 << 0,
    NBD_CMD_FLAG_NO_HOLE = 1 << 1,
    NBD_CMD_FLAG_DF = 1 << 2,
    NBD_CMD_FLAG_REQ_ONE = 1 << 3,
    NBD_CMD_FLAG_FAST_ZERO = 1 << 4,
};
/* base:allocation flags */
enum { NBD_STATE_HOLE = 1 << 0, NBD_STATE_ZERO = 1 << 1 };

typedef struct NbdClientInfo {
    const char *peer; /* "ip:port" for TCP, "unix" for a Unix socket */
    bool tls;
} NbdClientInfo;

typedef struct NbdExportInfo {
    uint64_t size;
    bool read_only;
    bool can_trim, can_zero, can_fast_zero, can_cache, can_multi_conn;
    uint32_t min_block, pref_block, max_block; /* NBD_INFO_BLOCK_SIZE; 0s mean 1/4096/32 MiB */
    char description[128];
} NbdExportInfo;

typedef struct NbdExtent {
    uint32_t length;
    uint32_t flags; /* NBD_STATE_* */
} NbdExtent;

/* One request. The server owns it (pooled per connection); the backend fills what the command
 * needs and calls nbd_io_complete() exactly once, inline or later on the same loop. */
typedef struct NbdIo {
    uint16_t type, flags;
    uint64_t offset;
    uint32_t length;
    char *buf; /* READ: length bytes to fill; WRITE: the payload */
    /* READ with structured replies: the backend may describe holes instead of filling them:
     * set is_hole[i] for 4 KiB-aligned ranges... kept simple: the backend sets `zero_read`
     * when the whole range reads as zeros (sent as one hole chunk). */
    bool zero_read;
    /* BLOCK_STATUS: the backend appends extents (in order from offset, total <= length; at least
     * one) into this array of capacity NBD_MAX_EXTENTS. */
    NbdExtent *extents;
    uint32_t nextents;
    void *export_handle; /* what the backend's open returned */
    void *priv;          /* server private */
} NbdIo;
#define NBD_MAX_EXTENTS 1024

typedef struct NbdBackend {
    /* Opens export `name` for a client: 0 with *handle and *info set; -ENOENT (unknown export),
     * -EACCES (not granted to this client). Called for INFO (then closed again) and GO. */
    int (*open)(void *ud, const char *name, const NbdClientInfo *client, void **handle,
                NbdExportInfo *info);
    void (*close)(void *ud, void *handle);
    /* Lists exports this client may use: calls emit for each; returns 0 or a negative errno. */
    int (*list)(void *ud, const NbdClientInfo *client,
                void (*emit)(void *ctx, const char *name, const char *description), void *ctx);
    /* Performs a request (never DISC). */
    void (*submit)(void *ud, NbdIo *io);
    /* The export's current size (after an online resize, for checks of new requests). */
    uint64_t (*size)(void *ud, void *handle);
    void *ud;
} NbdBackend;

/* err: 0 or a negative errno; mapped to the protocol's errors (EPERM, EIO, ENOMEM, EINVAL,
 * ENOSPC, EOVERFLOW, ENOTSUP, ESHUTDOWN). */
void nbd_io_complete(NbdIo *io, int err);

/* TLS modes of the protocol document: OFF (NOTLS: STARTTLS is unsupported), OPTIONAL
 * (SELECTIVETLS with no TLS-only export: a client may upgrade or stay in plaintext) and REQUIRE
 * (FORCEDTLS: every option but STARTTLS and ABORT gets NBD_REP_ERR_TLS_REQD until TLS is up). */
typedef enum NbdTlsMode { NBD_TLS_OFF = 0, NBD_TLS_OPTIONAL, NBD_TLS_REQUIRE } NbdTlsMode;

typedef struct NbdServerConfig {
    NbdBackend backend;
    /* A SovTlsContext (sov/http.h) whose certificate STARTTLS presents, or NULL; the server
     * serves NBD_TLS_OFF without one. nbd_proto_new() takes tls_mode as it is (the state
     * machine only negotiates; the transport runs TLS). */
    void *tls;
    NbdTlsMode tls_mode;
    uint32_t handshake_timeout_ms; /* 0: 10 s */
    uint32_t idle_timeout_ms;      /* 0: none */
} NbdServerConfig;

typedef struct NbdServer NbdServer;
NbdServer *nbd_server_new(uv_loop_t *loop, const NbdServerConfig *cfg);
/* Serves a listening socket (TCP or Unix), already bound and listening. */
int nbd_server_listen_fd(NbdServer *s, int fd, bool is_unix);
/* Stops accepting, lets requests in flight finish, closes connections, then calls done. */
void nbd_server_shutdown(NbdServer *s, void (*done)(NbdServer *s, void *ud), void *ud);
void nbd_server_free(NbdServer *s);
unsigned nbd_server_connections(const NbdServer *s);

/* For tests and fuzzing: feeds raw client bytes to a connection state machine with no socket;
 * everything the server would send is appended to out. Returns 0, or < 0 once it would close. */
typedef struct NbdProto NbdProto;
NbdProto *nbd_proto_new(const NbdServerConfig *cfg, const NbdClientInfo *client);
int nbd_proto_feed(NbdProto *p, const void *data, size_t n, SovBuf *out);
void nbd_proto_free(NbdProto *p);

#endif
