/* SPDX-License-Identifier: Apache-2.0 */
/* The control plane's state: a document store over SQL. Every resource (project, user, token,
 * server, volume, network, IP allocation...) is one row of one table: its kind, id, owning
 * project, a few indexed columns (name, status, host, a uniqueness key, the parent it belongs
 * to) and the JSON document itself. Every write bumps a global revision, which agents watch.
 *
 * The SQL is portable (plain types, ON CONFLICT-free, ? placeholders rewritten per backend) so
 * that a PostgreSQL backend can sit behind the same functions; today's backend is SQLite in WAL
 * mode. Migrations are numbered and applied once each, in a transaction, at open.
 *
 * Documents keep their API shape; members whose names start with '_' are internal (password
 * hashes, secrets, host assignment) and api_doc_public() strips them before a document is
 * returned to a client. */
#ifndef SOV_API_STORE_H
#define SOV_API_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "sov/buf.h"

typedef struct ApiStore ApiStore;

/* The indexed columns of a document, all optional ("" or NULL = none). */
typedef struct ApiDocMeta {
    const char *kind; /* "server", "volume", ... */
    const char *id;
    const char *project; /* owning project ("" for global documents like public flavors) */
    const char *name;
    const char *status;
    const char *host;   /* compute/network host it is assigned to */
    const char *parent; /* e.g. a port's network, a rule's security group, a subnet's network */
    const char *uniq;   /* unique per kind when set (e.g. "<domain>/<user name>") */
} ApiDocMeta;

int api_store_open(const char *path, bool fsync, ApiStore **ret, SovBuf *err);
ApiStore *api_store_close(ApiStore *s);

/* Transactions: writes outside one are committed one by one. Nested begin is counted. */
int api_store_begin(ApiStore *s);
int api_store_commit(ApiStore *s);
void api_store_rollback(ApiStore *s);

/* Inserts a new document: -EEXIST when the id or the uniq key is taken. */
int api_store_insert(ApiStore *s, const ApiDocMeta *m, json_t *doc);
/* Replaces an existing document (all indexed columns are rewritten from m; kind and id find
 * it): -ENOENT when absent, -EEXIST on a uniq clash. */
int api_store_update(ApiStore *s, const ApiDocMeta *m, json_t *doc);
/* -ENOENT when absent. */
int api_store_delete(ApiStore *s, const char *kind, const char *id);
/* Deletes every document of kind whose parent is parent; returns how many. */
int api_store_delete_children(ApiStore *s, const char *kind, const char *parent);

/* Reads one document (new reference in ret): -ENOENT when absent. ret_project (optional,
 * API_ID_LEN+1 or more) receives the owning project. */
int api_store_get(ApiStore *s, const char *kind, const char *id, json_t **ret, char *ret_project,
                  size_t project_cap);
/* By uniqueness key. */
int api_store_get_uniq(ApiStore *s, const char *kind, const char *uniq, json_t **ret);

/* Listing: every filter is optional (NULL = any). Ordered by creation (oldest first), or
 * newest first with desc; marker (an id) starts after that document (-ENOENT when the marker
 * does not exist); limit 0 = no limit. Returns a new JSON array of documents. */
typedef struct ApiListQuery {
    const char *kind;
    const char *project;
    const char *name;
    const char *status;
    const char *host;
    const char *parent;
    const char *marker;
    size_t limit;
    bool desc;
} ApiListQuery;
int api_store_list(ApiStore *s, const ApiListQuery *q, json_t **ret);
/* The same rows as api_store_list without parsing: fn sees each document's id, revision (of
 * its last write) and JSON text, valid during the call; a negative return stops the walk. */
typedef int (*ApiRowFn)(const char *id, uint64_t rev, const char *body, size_t len, void *ud);
int api_store_list_rows(ApiStore *s, const ApiListQuery *q, ApiRowFn fn, void *ud);
/* Counts documents matching the same filters (marker and limit ignored). */
int64_t api_store_count(ApiStore *s, const ApiListQuery *q);

/* The revision of the last committed write (0 for an empty store). */
uint64_t api_store_rev(ApiStore *s);
/* The revision of the last update or delete of a document of kind (with_inserts: of any
 * write), for caches that must notice changes of one kind; 0 when none since the store was
 * opened. */
uint64_t api_store_kind_rev(ApiStore *s, const char *kind, bool with_inserts);
/* Called after every commit that changed something. */
void api_store_on_commit(ApiStore *s, void (*fn)(void *ud), void *ud);

/* Small key/value settings (bootstrap ids, audit head). */
int api_store_meta_get(ApiStore *s, const char *key, char *out, size_t cap); /* -ENOENT */
int api_store_meta_set(ApiStore *s, const char *key, const char *value);

/* Removes members starting with '_' (in place, returns doc). */
json_t *api_doc_public(json_t *doc);

#endif
