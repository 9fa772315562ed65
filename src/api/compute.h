/* SPDX-License-Identifier: Apache-2.0 */
/* What the compute API's files share. compute_res.c holds
 * the Nova resources around servers: key pairs (OpenSSH public key parsing and fingerprints,
 * RSA key generation over OpenSSL's EVP interface, strict base64), flavors with access lists
 * and extra specs, availability zones, quota sets, limits and the version documents.
 * compute.c holds the servers and registers every route of /compute. */
#ifndef SOV_API_COMPUTE_H
#define SOV_API_COMPUTE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "api.h"

#define NOVA                "/compute/v2.1"
#define NOVA_NAME_MAX       255
#define NOVA_META_MAX       128 /* metadata items per server */
#define API_FINGERPRINT_LEN 47  /* "aa:bb:...:pp", 16 bytes of MD5 */

/* ---- base64 and OpenSSH keys ---- */

/* Strict standard base64 (RFC 4648 section 4, padded, no whitespace): the decoded length, or
 * -EINVAL when the text is not base64, -E2BIG when it does not fit in cap. */
ssize_t api_base64_decode(const char *in, size_t n, uint8_t *out, size_t cap);
/* The encoded text of n bytes in a malloc'ed string (NULL when out of memory). */
char *api_base64_encode(const uint8_t *in, size_t n);

/* Checks an OpenSSH public key line ("ssh-rsa|ssh-ed25519|ecdsa-sha2-nistpNNN BASE64
 * [comment]"): the blob must decode, carry the same type and hold a usable key. Writes Nova's
 * fingerprint (MD5 of the blob, colon-separated hex). -EINVAL with a reason in err. */
int api_ssh_key_check(const char *line, char ret_fingerprint[API_FINGERPRINT_LEN + 1], SovBuf *err);

/* Generates an RSA 2048 key pair: the private key as PEM (PKCS#1, which OpenSSH reads) and the
 * public key as "ssh-rsa AAAA... comment", both malloc'ed, and the fingerprint. */
int api_ssh_key_generate(const char *comment, char **ret_private_pem, char **ret_public,
                         char ret_fingerprint[API_FINGERPRINT_LEN + 1]);

/* ---- helpers of both files ---- */

static inline const char *nova_str(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static inline int64_t nova_num(json_t *o, const char *key)
{
    return json_integer_value(json_object_get(o, key));
}

/* [{"rel": "self", "href": <url>/compute/v2.1/<coll>/<id>}, {"rel": "bookmark", ...}] */
json_t *nova_links(Api *a, const char *coll, const char *id);
/* An integer given as a JSON integer or as a string of digits, as Nova's schemas accept:
 * 1 when present, 0 when absent and optional, -EINVAL with a message in err. */
int nova_get_intish(json_t *o, const char *key, bool required, int64_t min, int64_t max,
                    int64_t *ret, SovBuf *err);
/* Names: 1-255 characters, no control characters, no leading or trailing space. */
bool nova_name_ok(const char *s);
/* Adds "<key>": [{"rel": "next", "href": <path>?<the query with marker=last_id>}] to out. */
void nova_next_link(ApiCall *c, json_t *out, const char *key, const char *path,
                    const char *last_id);

/* The flavor of id the caller may use (new reference), or NULL; nothing is answered. */
json_t *nova_flavor_lookup(ApiCall *c, const char *id);
/* GPUs a flavor's extra specs ask for (resources:PGPU or a pci_passthrough "gpu...:N"). */
int64_t nova_flavor_gpus(json_t *extra_specs);

/* The server of the route's {id} the caller may see (new reference, its project in project),
 * or NULL after a 404 (compute.c). */
json_t *nova_server_get(ApiCall *c, char project[API_ID_LEN + 1]);
/* Stores a changed server document (indexed columns from its members, "updated" now). */
int nova_server_save(Api *a, json_t *doc, const char *project);
/* Server metadata: at most 128 string pairs with have already present, keys of 1-255 and
 * values of up to 255 characters; false after answering the fault. */
bool nova_metadata_ok(ApiCall *c, json_t *md, size_t have);

/* Seeds the design's flavors that are missing (compute start). */
void nova_flavors_seed(Api *a);
/* Registers the versions, key pairs, flavors, zones, quota sets and limits. */
void nova_catalog_routes(Api *a);

/* Shared by compute.c and compute_action.c. */
const char *nova_task_state(json_t *doc);
const char *nova_vm_state(const char *status);
const char *nova_ref_id(const char *ref);
json_t *nova_flavor_brief(json_t *f);
void nova_set_flavor(json_t *doc, json_t *flavor_brief_obj);

/* Routes of compute_action.c (registered by compute.c). */
void nova_server_action(SovHttpReq *req, void *ud);
void nova_attachments(SovHttpReq *req, void *ud);
void nova_attachment_create(SovHttpReq *req, void *ud);
void nova_attachment_show(SovHttpReq *req, void *ud);
void nova_attachment_delete(SovHttpReq *req, void *ud);

#endif
