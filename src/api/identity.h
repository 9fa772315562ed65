/* SPDX-License-Identifier: Apache-2.0 */
/* Shared between identity.c (tokens, catalog, bootstrap) and keystone.c (the Keystone v3
 * resources: domains, projects, users, roles, assignments, application and EC2 credentials).
 *
 * Documents: "domain" (uniq name), "project" (uniq "<domain>/<name>"), "user" (uniq
 * "<domain>/<name>", "_password" argon2id), "role" (uniq name), "assignment" (id
 * "<project>:<user>:<role>", project = the project, parent = the user), "token" (id = SHA-256 of
 * the token, parent = the user, project = the scope), "app_cred" (parent = the user, uniq
 * "<user>/<name>", "_secret" argon2id), "ec2" (id = the access key, parent = the user, project =
 * the project; the secret is kept, as sov-s3 needs it to check signatures). */
#ifndef SOV_API_IDENTITY_H
#define SOV_API_IDENTITY_H

#include "api.h"

#define IDENTITY_DEFAULT_DOMAIN "default"

/* Roles a user holds on a project (API_ROLE_* bits, admin implying member implying reader), or
 * only those listed in an application credential's role ids. */
unsigned identity_roles(Api *a, const char *user_id, const char *project_id);
/* The {"id","name"} objects of those roles, as a token lists them. */
json_t *identity_role_list(Api *a, unsigned roles);
/* Drops every token of a user (parent), or of a project when user_id is NULL. */
void identity_revoke_tokens(Api *a, const char *user_id, const char *project_id);
/* Hashes a password with argon2id off the loop, then calls done on the loop with the encoded
 * hash ("" on failure). */
typedef void (*IdentityHashDone)(ApiCall *c, const char *encoded, void *ud);
void identity_hash_async(ApiCall *c, const char *password, IdentityHashDone done, void *ud);
/* Checks a password against an argon2id hash off the loop; verified runs on the loop. */
void identity_verify_async(ApiCall *c, const char *password, const char *encoded,
                           void (*verified)(ApiCall *c, bool ok, void *ud), void *ud);
/* Rewrites the EC2 keys file for sov-s3 ([identity] s3_keys_file), atomically. */
void identity_export_ec2(Api *a);
/* The Keystone representation of a user, project, domain (links added, internals removed). */
json_t *identity_public(Api *a, const char *collection, json_t *doc);

void keystone_routes(Api *a);

#endif
