/* SPDX-License-Identifier: Apache-2.0 */
/* What the files of the Neutron API share: network.c (these helpers, version documents,
 * extensions, quotas, networks, subnets), network_port.c (ports), network_l3.c (routers and
 * floating IPs), network_agent.c (agents), secgroup.c (security groups and rules); ipam.c manages
 * the addresses.
 *
 * Every resource is one store document of its kind, kept in the shape Neutron returns (with
 * project_id/tenant_id, created_at/updated_at and revision_number), so a GET is a read and
 * a strip of the internal '_' members. The indexed columns derive from the document in
 * neu_doc_put(): a subnet's and a port's parent is their network, a rule's its group, a
 * floating IP's its external network; a port's host is its binding:host_id and its
 * uniqueness key "<network>/<mac>"; the default group's "default/<project>". */
#ifndef SOV_API_NETWORK_INT_H
#define SOV_API_NETWORK_INT_H

#include "api.h"

#define NEU_PREFIX   "/network/v2.0"
#define NEU_NAME_MAX 255 /* names and descriptions, as Neutron's NAME_MAX_LEN */

/* device_owner values of the ports the network itself owns */
#define OWNER_RIF  "network:router_interface"
#define OWNER_RGW  "network:router_gateway"
#define OWNER_FIP  "network:floatingip"
#define OWNER_DHCP "network:dhcp"

/* One Neutron resource type: its store kind, JSON key, collection (URL and list key), and
 * the fault that says an id is unknown. */
typedef struct NeuKind {
    const char *kind;       /* "network" */
    const char *key;        /* "network" */
    const char *collection; /* "networks" (list key) */
    const char *path;       /* "networks" (URL segment: "security-groups" for groups) */
    const char *notfound;   /* "NetworkNotFound" */
    const char *label;      /* "Network": the 404 says "<label> <id> <missing>" */
    const char *missing;    /* "could not be found." */
} NeuKind;

extern const NeuKind neu_network, neu_subnet, neu_port, neu_router, neu_floatingip, neu_secgroup,
    neu_sgrule;

/* ---- faults and request bodies (each returns false after answering) ---- */

/* 400 in Neutron's attribute wording: "Invalid input for <attr>. Reason: <reason>." */
void neu_invalid(ApiCall *c, const char *attr, const char *fmt, ...) _printf_(3, 4);
bool neu_dns_domain_ok(const char *s); /* network dns_domain syntax (network_port.c) */
/* The fault for a store error. */
void neu_store_fault(ApiCall *c, int r);
/* The body's object under key, refusing members not in allowed (NULL-terminated). */
json_t *neu_body(ApiCall *c, const char *key, const char *const *allowed);
/* Optional members: absent leaves *ret as it is. nullable lets JSON null through as NULL. */
bool neu_get_str(ApiCall *c, json_t *b, const char *key, size_t max, bool nullable,
                 const char **ret);
bool neu_get_bool(ApiCall *c, json_t *b, const char *key, bool *ret);
bool neu_get_int(ApiCall *c, json_t *b, const char *key, int64_t min, int64_t max, int64_t *ret);
/* Refuses members a PUT may not change ("Cannot update read-only attribute"). */
bool neu_readonly(ApiCall *c, json_t *b, const char *const *keys);
/* A short printable form of a client's value, for messages. */
void neu_repr(json_t *v, char out[80]);
/* Checks and copies members of b into doc: strings of keys (up to max bytes), booleans of
 * keys, the standard name/description/tags, an array of strings; a member that must be null
 * (features this cloud does not have). */
bool neu_copy_strs(ApiCall *c, json_t *b, json_t *doc, const char *const *keys, size_t max);
bool neu_copy_bools(ApiCall *c, json_t *b, json_t *doc, const char *const *keys);
bool neu_copy_std(ApiCall *c, json_t *b, json_t *doc);
bool neu_str_array(ApiCall *c, json_t *b, const char *key, size_t max_items, size_t maxlen);
bool neu_must_be_null(ApiCall *c, json_t *b, const char *key);
/* Refuses with 403 when an admin-only member is present and the caller is no admin. */
bool neu_admin_only(ApiCall *c, json_t *b, const char *key);
/* The project a new resource belongs to: the caller's, or the project_id/tenant_id an admin
 * names. */
bool neu_owner(ApiCall *c, json_t *b, char out[API_ID_LEN + 1]);
/* Neutron's 409 OverQuota for project (which may differ from the caller's for an admin). */
bool neu_quota(ApiCall *c, const char *project, const char *resource, int64_t delta);

/* ---- documents ---- */

/* A new document with id, project_id/tenant_id, timestamps, revision 0 and no tags. */
json_t *neu_doc_new(const char *project, const char *id);
/* Bumps revision_number and updated_at. */
void neu_doc_touch(json_t *doc);
/* Writes doc as kind (insert or update); the indexed columns come from the document. */
int neu_doc_put(Api *a, const NeuKind *k, json_t *doc, bool insert);
/* Loads id of kind when the caller may see it; else answers the kind's 404 and returns NULL.
 * The reference belongs to the caller. */
json_t *neu_doc_get(ApiCall *c, const NeuKind *k, const char *id);
/* The same without answering (NULL when absent or invisible). */
json_t *neu_doc_find(ApiCall *c, const NeuKind *k, const char *id);
/* Neutron's 404 for a k with id that is not there (or not the caller's to see). */
void neu_not_found(ApiCall *c, const NeuKind *k, const char *id);
/* Whether the caller may see doc (own project, system admin, shared/external networks and
 * their subnets). */
bool neu_visible(ApiCall *c, const NeuKind *k, json_t *doc);
/* May the caller change doc? Its project or the admin; others get 403 (the resource is
 * visible to them, like a shared network). */
bool neu_may_change(ApiCall *c, json_t *doc);
/* Documents of kind (project and parent optional; an empty array on a store error). */
json_t *neu_list_of(Api *a, const char *kind, const char *project, const char *parent);
/* String member of a document ("" when absent). */
const char *neu_s(json_t *doc, const char *key);

/* ---- answers ---- */

/* {"<key>": doc} honouring fields=; steals doc. */
void neu_reply_doc(ApiCall *c, int status, const NeuKind *k, json_t *doc);
/* {"<collection>": [...]} after the query's filters, fields= and limit/marker (with the
 * next link); steals arr (documents the caller may see). */
void neu_reply_list(ApiCall *c, const NeuKind *k, json_t *arr);
/* Every document of kind the caller may see (all projects for the system admin). */
json_t *neu_list_visible(ApiCall *c, const NeuKind *k);

/* Starts a Neutron call; neu_commit() ends a transaction, answering the store's fault. */
ApiCall *neu_begin(SovHttpReq *req, void *ud, ApiNeed need);
bool neu_commit(ApiCall *c);

/* ---- ports (network_port.c) ---- */

void neu_port_routes(Api *a);
/* A new port of project on net, allocated and stored (in the caller's transaction when one
 * is open). b: the request (NULL for ports the network makes itself: router interfaces and
 * gateways, floating IPs). fixed_ips: the requested addresses (NULL for the default). Answers
 * and returns NULL on failure. */
json_t *neu_port_new(ApiCall *c, json_t *net, const char *project, json_t *b, const char *owner,
                     const char *device_id, json_t *fixed_ips);
/* The DHCP port of an IPv4 subnet with DHCP, made inside the caller's transaction (false after
 * answering), and the removal of a subnet's DHCP ports. */
bool neu_subnet_dhcp_port(ApiCall *c, json_t *net, json_t *subnet);
int neu_subnet_dhcp_drop(Api *a, json_t *subnet);
/* Deletes a port, frees its addresses and unlinks its floating IPs. */
int neu_port_destroy(Api *a, json_t *port);
/* A port document by id (a new reference), or NULL. */
json_t *neu_port_get(Api *a, const char *id);

/* ---- routers and floating IPs (network_l3.c) ---- */

void neu_l3_routes(Api *a);

/* ---- agents: the network hosts as Neutron agents (network_agent.c) ---- */

void neu_agent_routes(Api *a);

/* ---- security groups (secgroup.c) ---- */

void neu_secgroup_routes(Api *a);
/* The project's "default" group, created with its four rules on first use. */
int neu_secgroup_default(ApiCall *c, const char *project, char out_id[API_UUID_LEN + 1]);
/* The security_groups of a port of project: ids (an array, NULL for the default group)
 * checked to exist in the project. Answers the fault and returns NULL on failure. */
json_t *neu_secgroup_resolve(ApiCall *c, const char *project, json_t *ids);

#endif
