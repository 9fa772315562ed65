/* SPDX-License-Identifier: Apache-2.0 */
/* Private interface of sov-api, the control plane: an OpenStack-compatible front door
 * (Keystone v3, Nova 2.1, Glance v2, Cinder v3, Neutron v2.0) on one port, state in a document
 * store (store.h), the agent API and the scheduler. Only the files of src/api include it.
 *
 * Threading: one loop thread serves every request and owns the store, so handlers read and
 * write state synchronously; slow work (password hashing, image bytes, calls to sov-block) runs
 * asynchronously and finishes on the loop.
 *
 * A request's life: the route's handler calls api_begin(), which authenticates the token,
 * checks the role, replays a stored response for a repeated idempotency key and returns an
 * ApiCall; the handler then answers exactly once with api_reply()/api_fault() (or the raw
 * helpers for bodies that are not JSON), which also appends the audit entry of a mutating call
 * and remembers the response for the idempotency key. */
#ifndef SOV_API_H
#define SOV_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "sov/buf.h"
#include "sov/conf.h"
#include "sov/daemon.h"
#include "sov/http.h"
#include "sov/macro.h"
#include "store.h"

#define API_ID_LEN      32 /* ids are 32 lower-case hex digits (UUIDs without dashes) */
#define API_UUID_LEN    36 /* ids some clients insist on seeing as UUIDs (Nova servers...) */
#define API_MAX_REGIONS 8
#define API_MAX_ZONES   8

typedef struct ApiZone {
    char name[64];
} ApiZone;

typedef struct ApiRegion {
    char name[64];
    char jurisdiction[16]; /* "EU", "CH", "US"... */
    ApiZone zones[API_MAX_ZONES];
    unsigned nzones;
} ApiRegion;

typedef struct ApiConfig {
    char listen[SOV_CONF_STR_MAX];
    char log_level[SOV_CONF_STR_MAX];
    char data_dir[SOV_CONF_STR_MAX];
    char public_url[SOV_CONF_STR_MAX]; /* base of catalog URLs; empty: http://<listen> */
    char regions[SOV_CONF_STR_MAX];    /* "NAME:JURISDICTION:AZ,AZ;NAME:..." */
    char admin_password[SOV_CONF_STR_MAX];
    char admin_password_file[SOV_CONF_STR_MAX];
    char agent_token[SOV_CONF_STR_MAX];
    char block_url[SOV_CONF_STR_MAX]; /* sov-block management API, "http://host:port" or "" */
    char block_token[SOV_CONF_STR_MAX];
    char s3_url[SOV_CONF_STR_MAX]; /* sov-s3 for image data, "" = local image store */
    char s3_access_key[SOV_CONF_STR_MAX];
    char s3_secret_key[SOV_CONF_STR_MAX];
    char s3_bucket[SOV_CONF_STR_MAX];
    char s3_keys_file[SOV_CONF_STR_MAX]; /* EC2 credentials exported for sov-s3 */
    char dns_domain[SOV_CONF_STR_MAX];   /* of ports on networks without dns_domain */
    uint64_t token_ttl_ms;
    uint64_t heartbeat_ms;
    bool access_log;
    bool fsync;
    int64_t quota_instances, quota_cores, quota_ram_mb, quota_volumes, quota_gigabytes,
        quota_snapshots, quota_networks, quota_subnets, quota_ports, quota_routers,
        quota_floatingips, quota_security_groups, quota_security_group_rules, quota_key_pairs,
        quota_images;
    SovHttpLimitsConf http;
} ApiConfig;

typedef struct Api Api;

/* ---- roles and the authenticated caller ---- */

enum {
    API_ROLE_READER = 1u << 0,
    API_ROLE_MEMBER = 1u << 1,
    API_ROLE_ADMIN = 1u << 2,
};

/* What a route needs: READ lets reader, member and admin in; WRITE member and admin; ADMIN
 * admin only. NONE: no token at all (version documents, token creation). */
typedef enum ApiNeed { API_NEED_NONE, API_NEED_READ, API_NEED_WRITE, API_NEED_ADMIN } ApiNeed;

typedef struct ApiAuth {
    char user_id[API_ID_LEN + 1];
    char user_name[256];
    char domain_id[API_ID_LEN + 1]; /* the user's */
    char project_id[API_ID_LEN + 1];
    char project_name[256];
    char project_domain_id[API_ID_LEN + 1];
    unsigned roles;                   /* API_ROLE_* on the project */
    bool system_admin;                /* admin role on the cloud's admin project */
    char jurisdictions[128];          /* the project's allowed jurisdictions, "EU,CH" */
    char app_cred_id[API_ID_LEN + 1]; /* set when the token came from an application credential */
    int64_t expires_ms;               /* wall clock, ms since the epoch */
    char token_hash[65];              /* SHA-256 of the token, hex */
} ApiAuth;

/* Validates a token (identity.c): 0 and the caller in ret, -EACCES when unknown, expired or
 * revoked. */
int api_token_validate(Api *a, const char *token, ApiAuth *ret);

/* ---- fault formats ---- */

typedef enum ApiStyle {
    API_STYLE_KEYSTONE, /* {"error": {"code", "title", "message"}} */
    API_STYLE_NOVA,     /* {"itemNotFound": {"code", "message"}} (Nova and Cinder) */
    API_STYLE_GLANCE,   /* {"code", "title", "message"}, like Glance's webob faults */
    API_STYLE_NEUTRON,  /* {"NeutronError": {"type", "message", "detail"}} */
    API_STYLE_AGENT,    /* {"error": {"code", "message"}} */
} ApiStyle;

/* ---- one call ---- */

typedef struct ApiCall {
    Api *api;
    SovHttpReq *req;
    ApiStyle style;
    ApiAuth auth; /* zeroed for API_NEED_NONE routes */
    bool authenticated;
    char target[128];   /* id of the resource the call acts on, for the audit log */
    char idem_key[128]; /* client idempotency key (POST only), "" when none */
    bool answered;
    json_t *owned[16]; /* documents freed when the call is answered */
    unsigned nowned;
} ApiCall;

/* Starts a call: checks X-Auth-Token (401 when missing, invalid, expired or revoked), the role
 * (403), replays the stored response of a repeated idempotency key (X-Idempotency-Key, or
 * X-OpenStack-Request-ID on a POST). Returns NULL after answering; the ApiCall lives in the
 * request's arena. For asynchronous handlers take sov_http_req_ref() before going async. */
ApiCall *api_begin(Api *a, SovHttpReq *req, ApiStyle style, ApiNeed need);

/* Answers with a JSON document (steals v; v may be NULL for an empty body). */
void api_reply(ApiCall *c, int status, json_t *v);
/* Answers with a fault in the call's style. type: the Neutron error type ("NetworkNotFound"),
 * the Nova fault key override ("overLimit") or NULL for the status's usual one. */
void api_fault(ApiCall *c, int status, const char *type, const char *fmt, ...) _printf_(4, 5);
/* Answers a raw body (image downloads, console text). */
void api_reply_raw(ApiCall *c, int status, const char *content_type, const void *body, size_t n);
/* For streamed responses: records the audit entry and marks the call answered; the handler
 * then streams with sov_http_resp_start/write/end itself. */
void api_mark_answered(ApiCall *c, int status);

/* The parsed JSON body of a buffered request: answers 400 and returns NULL when it is not a
 * JSON object. With wrap, returns the object under that key (e.g. "server"), refusing
 * a body without it. The returned value belongs to the call (freed when the request ends). */
json_t *api_body(ApiCall *c, const char *wrap);

/* Hands v to the call: released after the answer (api_body does this for the body). */
void api_call_own(ApiCall *c, json_t *v);

/* Access: may the caller see/change a resource of project_id? (own project, or system admin).
 * Handlers answer 404 (not 403) for other projects' resources so ids do not leak. */
bool api_can_access(const ApiCall *c, const char *project_id);
/* True when the caller is system admin and the query asked for every project
 * (all_tenants=1/true, all_projects=true). */
bool api_all_projects(const ApiCall *c);

/* ---- helpers ---- */

/* A string member of a JSON object, "" when absent or not a string. */
static inline const char *api_jstr(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

/* 32 hex digit random id; api_new_uuid() writes the dashed form (36 chars). */
void api_new_id(char out[API_ID_LEN + 1]);
void api_new_uuid(char out[API_UUID_LEN + 1]);
/* The same id for the same name every time (SHA-256 of name, in a version 5 UUID's layout). */
void api_name_uuid(const char *name, char out[API_UUID_LEN + 1]);
/* true for 32 hex digits or a dashed UUID of hex digits. */
bool api_valid_id(SovStr s);
/* ISO 8601 UTC: "2026-11-26T10:11:12Z" (api_time_iso, Nova) and Keystone's
 * "2026-11-26T10:11:12.000000Z" (api_time_keystone). */
void api_time_iso(int64_t ms, char out[32]);
void api_time_keystone(int64_t ms, char out[40]);
int64_t api_now_ms(void);

/* Query string of the request: a decoded value of key (first occurrence), or NULL. The copy
 * lives in the request arena. api_query_all() collects every value of a repeated key. */
const char *api_query(ApiCall *c, const char *key);
/* Every key=value pair of the query string, decoded (pairs that do not decode are left out). */
typedef struct ApiQueryPair {
    const char *key, *value;
} ApiQueryPair;
size_t api_query_pairs(ApiCall *c, ApiQueryPair *out, size_t max);
size_t api_query_all(ApiCall *c, const char *key, const char **out, size_t max);
/* Decoded route parameter (percent-decoding), in the request arena; NULL if absent. */
const char *api_param(ApiCall *c, const char *name);
/* limit=N bounded to [1, max] (default def); 400 answered and -1 returned when invalid. */
int api_query_limit(ApiCall *c, int def, int max);

/* The base URL clients reach this API at, without a trailing slash ("http://127.0.0.1:8400"). */
const char *api_public_url(Api *a);

/* ---- quotas ---- */

/* Quota resource names as Nova/Cinder/Neutron spell them: "instances", "cores", "ram",
 * "key_pairs", "volumes", "gigabytes", "snapshots", "network", "subnet", "port", "router",
 * "floatingip", "security_group", "security_group_rule", "images". */
int64_t api_quota_limit(Api *a, const char *project_id, const char *resource); /* -1 unlimited */
int api_quota_set(Api *a, const char *project_id, const char *resource, int64_t limit);
/* Usage as counted from the store. */
int64_t api_quota_usage(Api *a, const char *project_id, const char *resource);
/* Answers the over-quota fault (Nova/Cinder: 413 overLimit / 403 forbidden as each API does;
 * Neutron 409 OverQuota) and returns false when usage + delta exceeds the limit. */
bool api_quota_check(ApiCall *c, const char *resource, int64_t delta);

/* ---- regions, zones and sovereignty ---- */

const ApiRegion *api_local_region(Api *a);
size_t api_region_count(Api *a);
const ApiRegion *api_region_at(Api *a, size_t i);
/* Picks the availability zone for a new resource: the requested one (NULL/"" = the local
 * region's first zone), refused with a fault when it does not exist (400) or its region's
 * jurisdiction is not among the project's allowed ones (403, message names both). Returns
 * false after answering. */
bool api_place_zone(ApiCall *c, const char *requested, char out_zone[64]);
/* Whether a jurisdiction is allowed for the caller's project. */
bool api_jurisdiction_allowed(const ApiCall *c, const char *jurisdiction);

/* ---- agents and scheduling (agent.c) ---- */

/* Picks a compute host in zone, other than exclude (NULL: any), with room for vcpus/ram_mb
 * (and gpus); writes its name. -ENOSPC when none fits (the caller records Nova's "No valid host was
 * found"). */
int api_schedule(Api *a, const char *zone, int64_t vcpus, int64_t ram_mb, int64_t gpus,
                 const char *exclude, char out_host[64]);
/* ---- ports and network state (network_port.c, network.c) ---- */
/* Creates a port as POST /ports would for the caller (network visibility, quota, IPAM,
 * default security group): fixed_ip may be NULL. Answers the fault itself and returns < 0 on
 * failure; on success the port document (a new reference) in ret. */
int api_port_create_for(ApiCall *c, const char *network_id, const char *fixed_ip,
                        const char *device_id, const char *device_owner, const char *host,
                        const char *dns_name, json_t **ret);
/* Binds an existing port to a device as Nova does with the ports a user brings: device_id,
 * device_owner, binding:host_id, and dns_name when the port has none. Inside the caller's
 * transaction when there is one. */
int api_port_bind_for(Api *a, const char *port_id, const char *device_id, const char *device_owner,
                      const char *host, const char *dns_name);
/* A live migration of device_id (the port's server): binding:profile migrating_to = to (NULL:
 * removed) and, when host is not NULL, binding:host_id = host (the cut-over). A port that is no
 * longer device_id's is left alone. */
int api_port_migration(Api *a, const char *port_id, const char *device_id, const char *to,
                       const char *host);
/* Empties the first three again if the port is still device_id's, and its dns_name if that is
 * still dns_name (the name the binding gave it). */
int api_port_unbind_for(Api *a, const char *port_id, const char *device_id, const char *dns_name);
/* Deletes a port and frees its addresses (as DELETE /ports/{id}, without the policy checks),
 * if it is still device_id's (NULL: whoever's). */
int api_port_delete_for(Api *a, const char *port_id, const char *device_id);
/* The observed status an agent reports ("ACTIVE", "DOWN", "ERROR") for a network, port,
 * router or floating IP. Writes go through here (or neu_doc_put) because the indexed columns
 * (a port's network/MAC uniqueness key, parent, host) derive from the document. */
int api_network_status_set(Api *a, const char *kind, const char *id, const char *status);

/* compute.c: detaches a server's volumes and deletes those marked delete_on_termination, when
 * its document goes (the agent reported the deleted server gone). */
void api_compute_release_volumes(Api *a, const char *project, json_t *server);
/* The server's ports during a live migration to `to` (NULL: the attempt ended), and at its
 * cut-over to host: see api_port_migration. */
int api_compute_ports_migrating(Api *a, json_t *server, const char *to, const char *host);
/* Wakes agents long-polling on a change of any of these kinds. Called by the store on commit. */
void api_agents_notify(Api *a);
/* agent.c: whether host document h has reported within three heartbeat periods. */
bool api_host_up(Api *a, json_t *h);
/* agent.c: on network host `host` (its document id), the description of its agent of type
 * (Neutron's agent_type) when set_desc (NULL: none), and with enable 0 or 1 whether the host may
 * hold the l3 role (the admin_state_up of its L3 and DHCP agents; -1 leaves it). 0 or <0
 * (-ENOENT: no such host). */
int api_host_agent_set(Api *a, const char *host, const char *type, bool set_desc, const char *desc,
                       int enable);

/* ---- volumes through sov-block (volume.c) ---- */
/* Runs the block reconciler now (after a change) instead of at its next tick. */
void api_block_kick(Api *a);
/* For Nova's block-device mappings: creates a volume of the caller's project exactly as
 * POST /volume/v3/{project}/volumes would (quota, zone, type default), from an image when
 * image_id is set. Returns 0 with its id, or answers the fault itself and returns < 0. */
int api_volume_create_for(ApiCall *c, const char *name, int64_t size_gb, const char *image_id,
                          const char *zone, char out_id[API_UUID_LEN + 1]);
/* Marks a volume in-use by server_id at device ("/dev/vdb"), or available again. -ENOENT when
 * it does not exist or is not the project's, -EBUSY when it is not available (attach) or not
 * attached to that server (detach). */
int api_volume_attach(Api *a, const char *project_id, const char *volume_id, const char *server_id,
                      const char *device);
int api_volume_detach(Api *a, const char *project_id, const char *volume_id, const char *server_id);
/* Deletes a volume (as DELETE on Cinder would) when a server that owned it with
 * delete_on_termination goes. */
int api_volume_delete_for(Api *a, const char *volume_id);

/* ---- the daemon's state ---- */

struct Api {
    ApiConfig cfg;
    uv_loop_t *loop;
    ApiStore *store;
    SovRouter *router;
    SovHttpServer *http;
    ApiRegion regions[API_MAX_REGIONS];
    size_t nregions;
    char public_url[512];
    char admin_project_id[API_ID_LEN + 1];
    char default_domain_id[API_ID_LEN + 1];
    int audit_fd;
    uint8_t audit_head[32]; /* hash of the last audit entry */
    uint64_t audit_seq;
    void *identity;   /* identity.c: token cache */
    void *agents;     /* agent.c: waiters */
    void *block;      /* volume.c: reconciler */
    void *image;      /* image.c: uploads */
    json_t *port_dns; /* network_port.c: network id -> {rev, losers} (who lost a DNS name) */
};

/* Route registration of each part. */
void api_identity_routes(Api *a);
void api_compute_routes(Api *a);
void api_image_routes(Api *a);
void api_volume_routes(Api *a);
void api_network_routes(Api *a);
void api_agent_routes(Api *a);

/* Start and stop hooks of the parts that hold timers or state (NULL-safe, called on the loop). */
int api_identity_start(Api *a, SovBuf *err); /* bootstrap: default domain, admin, roles */
void api_identity_stop(Api *a);
int api_compute_start(Api *a, SovBuf *err); /* seeds the flavors */
void api_compute_stop(Api *a);
int api_image_start(Api *a, SovBuf *err);
void api_image_stop(Api *a);
int api_volume_start(Api *a, SovBuf *err); /* seeds the volume types, starts the reconciler */
void api_volume_stop(Api *a);
int api_network_start(Api *a, SovBuf *err);
void api_network_stop(Api *a);
int api_agent_start(Api *a, SovBuf *err);
void api_agent_stop(Api *a);

/* Audit (audit.c): appends one hash-chained entry to <data_dir>/audit.log (fsynced). */
int api_audit_open(Api *a, SovBuf *err);
void api_audit_close(Api *a);
int api_audit_append(Api *a, const ApiCall *c, int status);

#endif
