/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the parts of sov-api's block storage API (Cinder v3): volume.c (volumes, snapshots,
 * attachments, the routes and the hooks for the compute API), volume_type.c (volume types,
 * quotas, limits, availability zones, services) and volume_block.c (the reconciler that realises
 * volumes and snapshots in sov-block).
 *
 * Documents: "volume_type" (global, uniq = its name; the default's id in the store setting
 * "volume_default_type"), "volume" (project = the owner; internal "_type_id", "_block_name",
 * "_export" {name, uri, uri_tcp, uri_unix}, "_after" (status after an extend), "_error" (why it
 * failed), "_image" (the image it is created from; its properties are in volume_image_metadata)),
 * "snapshot" (parent = its volume; internal "_volume_type", "_zone"). Statuses creating,
 * downloading (sov-block copies the image), extending and deleting are transitions the
 * reconciler completes. */
#ifndef SOV_API_VOLUME_H
#define SOV_API_VOLUME_H

#include "api.h"

#define VOLUME_GIB      (1024LL * 1024 * 1024)
#define VOLUME_MAX_GB   65536 /* sov-block's largest volume: 64 TiB */
#define VOLUME_TEXT_MAX 255   /* names, descriptions, metadata keys and values */
#define VOLUME_META_MAX 64    /* metadata items per volume or snapshot, extra specs per type */

/* Cinder's timestamps: microseconds, no zone ("2026-11-26T10:11:12.000000"). */
void volume_time(int64_t ms, char out[32]);
/* Writes a volume or snapshot document back (indexed columns from its members), stamping
 * updated_at; volume_doc_status sets its status first. */
int volume_doc_save(Api *a, const char *kind, json_t *doc, bool insert);
int volume_doc_status(Api *a, const char *kind, json_t *doc, const char *status);
/* Applies the attachment Nova asked for while the volume was being made (in-use, true), or
 * false when there is none. */
bool volume_attach_pending(json_t *v);

/* api_begin for /volume/v3/{project_id}/...: the project in the path must be the token's
 * (admins may name any); answers carry the microversion header. */
ApiCall *volume_begin(Api *a, SovHttpReq *req, ApiNeed need);
/* Body members: false (or < 0) after answering 400; absent and null leave *out untouched;
 * volume_get_flag takes booleans and their string spellings and returns 1 when set, 0 absent. */
bool volume_get_str(ApiCall *c, json_t *o, const char *key, size_t max, const char **out);
int volume_get_flag(ApiCall *c, json_t *o, const char *key, bool *ret);
/* A metadata or extra_specs object of bounded string keys and values; 400 answered otherwise. */
bool volume_check_meta(ApiCall *c, json_t *m, const char *what);

/* volume_type.c: a type by id or name (private ones for admins only) and the default type,
 * new references or NULL; the seeding of the tiers; the routes of types, quotas and the rest. */
json_t *volume_type_get(ApiCall *c, const char *ref);
json_t *volume_type_default(ApiCall *c);
int volume_types_seed(Api *a, SovBuf *err);
void volume_type_routes(Api *a);

/* volume_block.c: the reconciler ([block] url and token); up: sov-block answered last time. */
int volume_block_start(Api *a, SovBuf *err);
void volume_block_stop(Api *a);
bool volume_block_up(Api *a);

#endif
