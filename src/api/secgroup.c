/* SPDX-License-Identifier: Apache-2.0 */
/* Neutron security groups and their rules. Every project has a "default" group, made on the
 * first call that lists or uses groups, with Neutron's four rules: egress anywhere (IPv4 and
 * IPv6) and ingress from members of the group itself. Rules are documents of their own whose
 * parent is the group, so sov-net can watch a group's rules; a group's JSON embeds its rules
 * when it is returned. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ipam.h"
#include "network-int.h"

/* Protocol names Neutron accepts, with their IP protocol numbers. */
static const struct {
    const char *name;
    int num;
} protocols[] = {
    {"ah", 51},         {"dccp", 33},      {"egp", 8},       {"esp", 50},        {"gre", 47},
    {"hopopt", 0},      {"icmp", 1},       {"igmp", 2},      {"ipip", 4},        {"ipv6-encap", 41},
    {"ipv6-frag", 44},  {"ipv6-icmp", 58}, {"icmpv6", 58},   {"ipv6-nonxt", 59}, {"ipv6-opts", 60},
    {"ipv6-route", 43}, {"ospf", 89},      {"pgm", 113},     {"rsvp", 46},       {"sctp", 132},
    {"tcp", 6},         {"udp", 17},       {"udplite", 136}, {"vrrp", 112},
};

/* The protocol number of a rule's protocol: -1 for any, -2 when unknown. */
static int proto_num(const char *p)
{
    char *end;
    if (!p || !*p || !strcasecmp(p, "any"))
        return -1;
    for (size_t i = 0; i < ELEMENTSOF(protocols); i++)
        if (!strcasecmp(p, protocols[i].name))
            return protocols[i].num;
    /* digits only: no sign or blanks (strtol's), which sov-net's reading would not take */
    if (strspn(p, "0123456789") != strlen(p) || strlen(p) > 3)
        return -2;
    long n = strtol(p, &end, 10);
    return n > 255 ? -2 : (int)n;
}

static bool proto_has_ports(int n)
{
    return n == 6 || n == 17 || n == 132 || n == 33 || n == 136;
}

/* ---- documents ---- */

static json_t *rule_new(const char *project, const char *group, const char *direction,
                        const char *ethertype, const char *remote_group)
{
    char id[API_UUID_LEN + 1];
    api_new_uuid(id);
    json_t *r = neu_doc_new(project, id);
    json_object_update_new(
        r, json_pack("{s:s,s:s,s:s,s:n,s:n,s:n,s:n,s:s?,s:n,s:s}", "security_group_id", group,
                     "direction", direction, "ethertype", ethertype, "protocol", "port_range_min",
                     "port_range_max", "remote_ip_prefix", "remote_group_id", remote_group,
                     "remote_address_group_id", "description", ""));
    if (!remote_group)
        json_object_set_new(r, "remote_group_id", json_null());
    return r;
}

/* A new group with Neutron's egress rules (and, for the default group, its ingress rules). */
static int group_insert(Api *a, json_t *group)
{
    const char *id = neu_s(group, "id"), *project = neu_s(group, "project_id");
    bool dflt = json_is_true(json_object_get(group, "_default"));
    static const char *const eth[] = {"IPv4", "IPv6"};
    int r = api_store_begin(a->store);
    if (r == 0)
        r = neu_doc_put(a, &neu_secgroup, group, true);
    for (int dir = 0; dir < (dflt ? 2 : 1); dir++)
        for (size_t e = 0; e < 2 && r == 0; e++) {
            json_t *rule =
                rule_new(project, id, dir ? "ingress" : "egress", eth[e], dir ? id : NULL);
            r = neu_doc_put(a, &neu_sgrule, rule, true);
            json_decref(rule);
        }
    if (r < 0) {
        api_store_rollback(a->store);
        return r;
    }
    return api_store_commit(a->store);
}

int neu_secgroup_default(ApiCall *c, const char *project, char out_id[API_UUID_LEN + 1])
{
    char uniq[64], id[API_UUID_LEN + 1];
    json_t *doc;
    snprintf(uniq, sizeof(uniq), "default/%s", project);
    if (api_store_get_uniq(c->api->store, "security_group", uniq, &doc) == 0) {
        snprintf(out_id, API_UUID_LEN + 1, "%s", neu_s(doc, "id"));
        json_decref(doc);
        return 0;
    }
    api_new_uuid(id);
    doc = neu_doc_new(project, id);
    json_object_update_new(doc, json_pack("{s:s,s:s,s:b,s:b,s:b}", "name", "default", "description",
                                          "Default security group", "stateful", 1, "shared", 0,
                                          "_default", 1));
    int r = group_insert(c->api, doc);
    json_decref(doc);
    if (r == 0)
        snprintf(out_id, API_UUID_LEN + 1, "%s", id);
    return r;
}

json_t *neu_secgroup_resolve(ApiCall *c, const char *project, json_t *ids)
{
    json_t *out = json_array(), *v;
    size_t i;
    if (!ids) {
        char id[API_UUID_LEN + 1];
        int r = neu_secgroup_default(c, project, id);
        if (r < 0) {
            neu_store_fault(c, r);
            json_decref(out);
            return NULL;
        }
        json_array_append_new(out, json_string(id));
        return out;
    }
    if (!json_is_array(ids) || json_array_size(ids) > 16) {
        neu_invalid(c, "security_groups", "expected a list of at most 16 ids");
        goto fail;
    }
    json_array_foreach(ids, i, v)
    {
        json_t *g = json_is_string(v) ? neu_doc_find(c, &neu_secgroup, json_string_value(v)) : NULL;
        bool ok = g && !strcmp(neu_s(g, "project_id"), project);
        json_decref(g);
        if (!ok) {
            char r[80];
            snprintf(r, sizeof(r), "%.64s", json_is_string(v) ? json_string_value(v) : "?");
            api_fault(c, 404, "SecurityGroupNotFound", "Security group %s does not exist", r);
            goto fail;
        }
        size_t j;
        json_t *e;
        bool dup = false;
        json_array_foreach(out, j, e) dup = dup || json_equal(e, v);
        if (!dup)
            json_array_append(out, v);
    }
    return out;
fail:
    json_decref(out);
    return NULL;
}

/* Makes sure the caller's project has its default group before a read. */
static bool ensure_default(ApiCall *c)
{
    char id[API_UUID_LEN + 1];
    int r = neu_secgroup_default(c, c->auth.project_id, id);
    if (r < 0)
        neu_store_fault(c, r);
    return r == 0;
}

/* Embeds every group's rules (one read of the rules). */
static void embed_rules(ApiCall *c, json_t *groups)
{
    json_t *rules = neu_list_visible(c, &neu_sgrule), *by = json_object(), *g, *r;
    size_t i;
    json_array_foreach(groups, i, g) json_object_set_new(by, neu_s(g, "id"), json_array());
    json_array_foreach(rules, i, r)
    {
        json_t *arr = json_object_get(by, neu_s(r, "security_group_id"));
        if (arr)
            json_array_append(arr, api_doc_public(r));
    }
    json_array_foreach(groups, i, g)
        json_object_set(g, "security_group_rules", json_object_get(by, neu_s(g, "id")));
    json_decref(by);
    json_decref(rules);
}

static void reply_group(ApiCall *c, int status, json_t *g)
{
    json_t *one = json_pack("[O]", g);
    embed_rules(c, one);
    json_decref(one);
    neu_reply_doc(c, status, &neu_secgroup, g);
}

/* ---- groups ---- */

static void h_sg_list(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_READ);
    if (!c || !ensure_default(c))
        return;
    json_t *groups = neu_list_visible(c, &neu_secgroup);
    embed_rules(c, groups);
    neu_reply_list(c, &neu_secgroup, groups);
}

static void h_sg_show(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_READ);
    json_t *g = c && ensure_default(c) ? neu_doc_get(c, &neu_secgroup, api_param(c, "id")) : NULL;
    if (g)
        reply_group(c, 200, g);
}

static bool group_apply(ApiCall *c, json_t *b, json_t *g)
{
    const char *name = NULL, *desc = NULL;
    bool stateful = true;
    if (!neu_get_str(c, b, "name", NEU_NAME_MAX, false, &name) ||
        !neu_get_str(c, b, "description", NEU_NAME_MAX, false, &desc) ||
        !neu_get_bool(c, b, "stateful", &stateful))
        return false;
    if (json_is_true(json_object_get(g, "_default")) && name && strcmp(name, "default") != 0) {
        api_fault(c, 409, "SecurityGroupCannotUpdateDefault",
                  "Updating default security group not allowed.");
        return false;
    }
    if (name && !strcmp(name, "default") && !json_is_true(json_object_get(g, "_default"))) {
        api_fault(c, 409, "SecurityGroupDefaultAlreadyExists",
                  "Default security group already exists.");
        return false;
    }
    if (!stateful) {
        neu_invalid(c, "stateful", "this cloud's security groups are stateful");
        return false;
    }
    json_t *tags = json_object_get(b, "tags");
    if (tags && (!json_is_array(tags) || json_array_size(tags) > 50)) {
        neu_invalid(c, "tags", "expected a list of at most 50 strings");
        return false;
    }
    if (name)
        json_object_set_new(g, "name", json_string(name));
    if (desc)
        json_object_set_new(g, "description", json_string(desc));
    if (tags)
        json_object_set(g, "tags", tags);
    return true;
}

static void h_sg_create(SovHttpReq *req, void *ud)
{
    static const char *const keys[] = {"name",     "description", "project_id", "tenant_id",
                                       "stateful", "tags",        NULL};
    ApiCall *c = neu_begin(req, ud, API_NEED_WRITE);
    json_t *b = c ? neu_body(c, "security_group", keys) : NULL;
    char project[API_ID_LEN + 1], id[API_UUID_LEN + 1], dflt[API_UUID_LEN + 1];
    if (!b || !neu_owner(c, b, project))
        return;
    int r = neu_secgroup_default(c, project, dflt);
    if (r < 0) {
        neu_store_fault(c, r);
        return;
    }
    if (!neu_quota(c, project, "security_group", 1))
        return;
    api_new_uuid(id);
    snprintf(c->target, sizeof(c->target), "%s", id);
    json_t *g = neu_doc_new(project, id);
    json_object_update_new(g, json_pack("{s:s,s:s,s:b,s:b}", "name", "", "description", "",
                                        "stateful", 1, "shared", 0));
    if (group_apply(c, b, g)) {
        if ((r = group_insert(c->api, g)) < 0)
            neu_store_fault(c, r);
        else {
            reply_group(c, 201, g);
            return;
        }
    }
    json_decref(g);
}

static void h_sg_update(SovHttpReq *req, void *ud)
{
    static const char *const keys[] = {"name", "description", "stateful",  "tags",
                                       "id",   "project_id",  "tenant_id", NULL};
    ApiCall *c = neu_begin(req, ud, API_NEED_WRITE);
    json_t *b = c ? neu_body(c, "security_group", keys) : NULL;
    json_t *g = b ? neu_doc_get(c, &neu_secgroup, api_param(c, "id")) : NULL;
    if (!g)
        return;
    snprintf(c->target, sizeof(c->target), "%s", neu_s(g, "id"));
    static const char *const ro[] = {"id", "project_id", "tenant_id"};
    for (size_t i = 0; i < ELEMENTSOF(ro); i++)
        if (json_object_get(b, ro[i])) {
            api_fault(c, 400, "HTTPBadRequest", "Cannot update read-only attribute %s", ro[i]);
            goto out;
        }
    if (!neu_may_change(c, g) || !group_apply(c, b, g))
        goto out;
    neu_doc_touch(g);
    int r = neu_doc_put(c->api, &neu_secgroup, g, false);
    if (r < 0)
        neu_store_fault(c, r);
    else {
        reply_group(c, 200, g);
        return;
    }
out:
    json_decref(g);
}

/* Ports of the group's project that use it. */
static bool group_in_use(Api *a, json_t *g)
{
    ApiListQuery q = {.kind = "port", .project = neu_s(g, "project_id")};
    json_t *ports, *p, *id = json_object_get(g, "id"), *s;
    size_t i, j;
    bool used = false;
    if (api_store_list(a->store, &q, &ports) < 0)
        return true;
    json_array_foreach(ports, i, p) json_array_foreach(json_object_get(p, "security_groups"), j, s)
        used = used || json_equal(s, id);
    json_decref(ports);
    return used;
}

static void h_sg_delete(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_WRITE);
    json_t *g = c ? neu_doc_get(c, &neu_secgroup, api_param(c, "id")) : NULL, *rules, *r;
    size_t i;
    if (!g)
        return;
    const char *id = neu_s(g, "id");
    snprintf(c->target, sizeof(c->target), "%s", id);
    if (!neu_may_change(c, g))
        goto out;
    if (json_is_true(json_object_get(g, "_default"))) {
        api_fault(c, 409, "SecurityGroupCannotRemoveDefault",
                  "Removing default security group not allowed.");
        goto out;
    }
    if (group_in_use(c->api, g)) {
        api_fault(c, 409, "SecurityGroupInUse", "Security Group %s in use.", id);
        goto out;
    }
    /* rules of other groups that name this one as their remote group go with it */
    ApiListQuery q = {.kind = "security_group_rule", .project = neu_s(g, "project_id")};
    int rc = api_store_list(c->api->store, &q, &rules);
    if (rc == 0)
        rc = api_store_begin(c->api->store);
    if (rc == 0) {
        json_array_foreach(rules, i, r) if (rc >= 0 && !strcmp(neu_s(r, "remote_group_id"), id))
            rc = api_store_delete(c->api->store, "security_group_rule", neu_s(r, "id"));
        json_decref(rules);
    }
    if (rc >= 0)
        rc = api_store_delete_children(c->api->store, "security_group_rule", id);
    if (rc >= 0)
        rc = api_store_delete(c->api->store, "security_group", id);
    if (rc < 0) {
        api_store_rollback(c->api->store);
        neu_store_fault(c, rc);
    } else if ((rc = api_store_commit(c->api->store)) < 0)
        neu_store_fault(c, rc);
    else
        api_reply(c, 204, NULL);
out:
    json_decref(g);
}

/* ---- rules ---- */

static void h_rule_list(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_READ);
    if (c && ensure_default(c))
        neu_reply_list(c, &neu_sgrule, neu_list_visible(c, &neu_sgrule));
}

static void h_rule_show(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_READ);
    json_t *r = c && ensure_default(c) ? neu_doc_get(c, &neu_sgrule, api_param(c, "id")) : NULL;
    if (r)
        neu_reply_doc(c, 200, &neu_sgrule, r);
}

/* A port bound of a rule: absent/null leaves *ret at -1. */
static bool rule_port(ApiCall *c, json_t *b, const char *key, int64_t *ret)
{
    json_t *v = json_object_get(b, key);
    if (!v || json_is_null(v))
        return true;
    return neu_get_int(c, b, key, INT32_MIN, INT32_MAX, ret);
}

/* Validates protocol and port range (Neutron's rules and wording). */
static bool rule_ports(ApiCall *c, int proto, const char *pname, int64_t min, int64_t max)
{
    if (min == -1 && max == -1)
        return true;
    if (proto == -1) {
        api_fault(c, 400, "SecurityGroupProtocolRequiredWithPorts",
                  "Must also specify protocol if port range is given.");
        return false;
    }
    if (proto == 1 || proto == 58) {
        if (min == -1) {
            api_fault(c, 400, "SecurityGroupMissingIcmpType",
                      "ICMP code (port-range-max) %" PRId64
                      " is provided but ICMP type (port-range-min) is missing.",
                      max);
            return false;
        }
        const int64_t v[2] = {min, max};
        for (int i = 0; i < 2; i++)
            if (v[i] != -1 && (v[i] < 0 || v[i] > 255)) {
                api_fault(c, 400, "SecurityGroupInvalidIcmpValue",
                          "Invalid value for ICMP %s (%s): %" PRId64 ". It must be 0 to 255.",
                          i ? "code" : "type", i ? "port-range-max" : "port-range-min", v[i]);
                return false;
            }
        return true;
    }
    if (!proto_has_ports(proto)) {
        api_fault(c, 400, "SecurityGroupInvalidProtocolForPortRange",
                  "Invalid protocol %s for port range, only supported for TCP, UDP, UDPLITE, "
                  "SCTP and DCCP.",
                  pname);
        return false;
    }
    const int64_t v[2] = {min, max};
    for (int i = 0; i < 2; i++)
        if (v[i] != -1 && (v[i] < 1 || v[i] > 65535)) {
            api_fault(c, 400, "SecurityGroupInvalidPortValue", "Invalid value for port %" PRId64,
                      v[i]);
            return false;
        }
    if (min == -1 || max == -1 || min > max) {
        api_fault(c, 400, "SecurityGroupInvalidPortRange",
                  "For TCP/UDP protocols, port_range_min must be <= port_range_max");
        return false;
    }
    return true;
}

/* Same traffic? (protocol by number, any-address prefixes as no prefix) */
static bool rule_same(json_t *a, json_t *b)
{
    static const char *const keys[] = {"direction", "ethertype", "port_range_min", "port_range_max",
                                       "remote_group_id"};
    for (size_t i = 0; i < ELEMENTSOF(keys); i++)
        if (!json_equal(json_object_get(a, keys[i]), json_object_get(b, keys[i])))
            return false;
    if (proto_num(json_string_value(json_object_get(a, "protocol"))) !=
        proto_num(json_string_value(json_object_get(b, "protocol"))))
        return false;
    const char *pa = json_string_value(json_object_get(a, "remote_ip_prefix"));
    const char *pb = json_string_value(json_object_get(b, "remote_ip_prefix"));
    pa = pa && strcmp(pa, "0.0.0.0/0") && strcmp(pa, "::/0") ? pa : "";
    pb = pb && strcmp(pb, "0.0.0.0/0") && strcmp(pb, "::/0") ? pb : "";
    return !strcmp(pa, pb);
}

static void h_rule_create(SovHttpReq *req, void *ud)
{
    static const char *const keys[] = {"security_group_id",
                                       "direction",
                                       "ethertype",
                                       "protocol",
                                       "port_range_min",
                                       "port_range_max",
                                       "remote_ip_prefix",
                                       "remote_group_id",
                                       "remote_address_group_id",
                                       "description",
                                       "project_id",
                                       "tenant_id",
                                       NULL};
    ApiCall *c = neu_begin(req, ud, API_NEED_WRITE);
    json_t *b = c ? neu_body(c, "security_group_rule", keys) : NULL, *g = NULL, *rule = NULL;
    const char *gid = NULL, *dir = NULL, *eth = "IPv4", *prefix = NULL, *rgid = NULL, *desc = "";
    char owner[API_ID_LEN + 1], pname[8], cs[IPAM_CIDR_STRLEN];
    int64_t min = -1, max = -1;
    json_t *pv = b ? json_object_get(b, "protocol") : NULL;
    if (!b || !neu_owner(c, b, owner) || !neu_get_str(c, b, "security_group_id", 64, false, &gid) ||
        !neu_get_str(c, b, "direction", 16, false, &dir) ||
        !neu_get_str(c, b, "ethertype", 16, false, &eth) ||
        !neu_get_str(c, b, "remote_ip_prefix", IPAM_CIDR_STRLEN, true, &prefix) ||
        !neu_get_str(c, b, "remote_group_id", 64, true, &rgid) ||
        !neu_get_str(c, b, "description", NEU_NAME_MAX, false, &desc) ||
        !rule_port(c, b, "port_range_min", &min) || !rule_port(c, b, "port_range_max", &max))
        return;
    if (json_object_get(b, "remote_address_group_id") &&
        !json_is_null(json_object_get(b, "remote_address_group_id"))) {
        neu_invalid(c, "remote_address_group_id", "address groups are not supported");
        return;
    }
    if (!gid || !dir || (strcmp(dir, "ingress") && strcmp(dir, "egress"))) {
        neu_invalid(c, gid ? "direction" : "security_group_id", "'%.32s' is not in %s",
                    gid ? (dir ? dir : "None") : "None",
                    gid ? "['ingress', 'egress']" : "a security group id");
        return;
    }
    if (strcmp(eth, "IPv4") && strcmp(eth, "IPv6")) {
        neu_invalid(c, "ethertype", "'%.32s' is not in ['IPv4', 'IPv6']", eth);
        return;
    }
    /* protocol: a name, a number 0-255 (JSON or text), or null/"any" */
    const char *ptext = json_string_value(pv);
    if (json_is_integer(pv) && json_integer_value(pv) >= 0 && json_integer_value(pv) <= 255) {
        snprintf(pname, sizeof(pname), "%d", (int)json_integer_value(pv));
        ptext = pname;
    }
    int proto = proto_num(ptext);
    if ((pv && !json_is_null(pv) && !ptext) || proto == -2) {
        char r[80];
        snprintf(r, sizeof(r), "%.40s", ptext ? ptext : "?");
        api_fault(c, 400, "SecurityGroupRuleInvalidProtocol",
                  "Security group rule protocol %s not supported. Only protocol values [None, "
                  "'ah', 'dccp', 'egp', 'esp', 'gre', 'hopopt', 'icmp', 'igmp', 'ipip', "
                  "'ipv6-encap', 'ipv6-frag', 'ipv6-icmp', 'icmpv6', 'ipv6-nonxt', 'ipv6-opts', "
                  "'ipv6-route', 'ospf', 'pgm', 'rsvp', 'sctp', 'tcp', 'udp', 'udplite', 'vrrp'] "
                  "and integer representations [0 to 255] are supported.",
                  r);
        return;
    }
    if (proto == 58 && !strcmp(eth, "IPv4")) {
        api_fault(c, 400, "SecurityGroupEthertypeConflictWithProtocol",
                  "Invalid ethertype IPv4 for protocol %s.", ptext);
        return;
    }
    if (!rule_ports(c, proto, ptext ? ptext : "", min, max))
        return;
    if (prefix && rgid) {
        api_fault(c, 400, "SecurityGroupRemoteGroupAndRemoteIpPrefix",
                  "Only remote_ip_prefix or remote_group_id may be provided.");
        return;
    }
    IpamCidr cidr;
    if (prefix) {
        int pr = ipam_cidr_parse(prefix, true, &cidr);
        if (pr < 0 && pr != -EDOM) {
            neu_invalid(c, "remote_ip_prefix", "'%s' is not a valid IP subnet", prefix);
            return;
        }
        ipam_cidr_str(&cidr, cs);
        if ((cidr.addr.family == 4) != !strcmp(eth, "IPv4")) {
            api_fault(c, 400, "SecurityGroupRuleParameterConflict",
                      "Conflicting value ethertype %s for CIDR %s", eth, cs);
            return;
        }
    }
    if (!ensure_default(c) || !(g = neu_doc_get(c, &neu_secgroup, gid)) || !neu_may_change(c, g))
        goto out;
    if (rgid) {
        json_t *rg = neu_doc_find(c, &neu_secgroup, rgid);
        bool ok = rg && !strcmp(neu_s(rg, "project_id"), neu_s(g, "project_id"));
        json_decref(rg);
        if (!ok) {
            api_fault(c, 404, "SecurityGroupNotFound", "Security group %.64s does not exist", rgid);
            goto out;
        }
    }
    rule = rule_new(neu_s(g, "project_id"), neu_s(g, "id"), dir, eth, rgid);
    json_object_set_new(rule, "protocol", ptext && proto >= 0 ? json_string(ptext) : json_null());
    if (ptext && proto >= 0) { /* names in lower case, as Neutron stores them */
        char low[16];
        snprintf(low, sizeof(low), "%s", ptext);
        for (char *p = low; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        json_object_set_new(rule, "protocol", json_string(low));
    }
    json_object_set_new(rule, "port_range_min", min >= 0 ? json_integer(min) : json_null());
    json_object_set_new(rule, "port_range_max", max >= 0 ? json_integer(max) : json_null());
    json_object_set_new(rule, "remote_ip_prefix", prefix ? json_string(cs) : json_null());
    json_object_set_new(rule, "description", json_string(desc));
    ApiListQuery q = {.kind = "security_group_rule", .parent = neu_s(g, "id")};
    json_t *siblings, *s;
    size_t i;
    if (api_store_list(c->api->store, &q, &siblings) == 0) {
        json_array_foreach(siblings, i, s) if (rule_same(s, rule))
        {
            api_fault(c, 409, "SecurityGroupRuleExists",
                      "Security group rule already exists. Rule id is %s.", neu_s(s, "id"));
            json_decref(siblings);
            goto out;
        }
        json_decref(siblings);
    }
    if (!neu_quota(c, neu_s(g, "project_id"), "security_group_rule", 1))
        goto out;
    snprintf(c->target, sizeof(c->target), "%s", neu_s(rule, "id"));
    int r = api_store_begin(c->api->store);
    if (r == 0)
        r = neu_doc_put(c->api, &neu_sgrule, rule, true);
    neu_doc_touch(g);
    if (r == 0)
        r = neu_doc_put(c->api, &neu_secgroup, g, false);
    if (r < 0) {
        api_store_rollback(c->api->store);
        neu_store_fault(c, r);
    } else if ((r = api_store_commit(c->api->store)) < 0)
        neu_store_fault(c, r);
    else {
        neu_reply_doc(c, 201, &neu_sgrule, rule);
        rule = NULL;
    }
out:
    json_decref(rule);
    json_decref(g);
}

static void h_rule_delete(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_WRITE);
    json_t *rule = c ? neu_doc_get(c, &neu_sgrule, api_param(c, "id")) : NULL, *g = NULL;
    if (!rule)
        return;
    snprintf(c->target, sizeof(c->target), "%s", neu_s(rule, "id"));
    if (!neu_may_change(c, rule))
        goto out;
    int r = api_store_begin(c->api->store);
    if (r == 0)
        r = api_store_delete(c->api->store, "security_group_rule", neu_s(rule, "id"));
    if (r == 0 && api_store_get(c->api->store, "security_group", neu_s(rule, "security_group_id"),
                                &g, NULL, 0) == 0) {
        neu_doc_touch(g);
        r = neu_doc_put(c->api, &neu_secgroup, g, false);
    }
    if (r < 0) {
        api_store_rollback(c->api->store);
        neu_store_fault(c, r);
    } else if ((r = api_store_commit(c->api->store)) < 0)
        neu_store_fault(c, r);
    else
        api_reply(c, 204, NULL);
out:
    json_decref(g);
    json_decref(rule);
}

void neu_secgroup_routes(Api *a)
{
    static const struct {
        const char *method, *path;
        SovHttpHandler h;
    } routes[] = {
        {"GET", NEU_PREFIX "/security-groups", h_sg_list},
        {"POST", NEU_PREFIX "/security-groups", h_sg_create},
        {"GET", NEU_PREFIX "/security-groups/{id}", h_sg_show},
        {"PUT", NEU_PREFIX "/security-groups/{id}", h_sg_update},
        {"DELETE", NEU_PREFIX "/security-groups/{id}", h_sg_delete},
        {"GET", NEU_PREFIX "/security-group-rules", h_rule_list},
        {"POST", NEU_PREFIX "/security-group-rules", h_rule_create},
        {"GET", NEU_PREFIX "/security-group-rules/{id}", h_rule_show},
        {"DELETE", NEU_PREFIX "/security-group-rules/{id}", h_rule_delete},
    };
    for (size_t i = 0; i < ELEMENTSOF(routes); i++)
        sov_router_add(a->router, routes[i].method, routes[i].path, 0, routes[i].h, a);
}
