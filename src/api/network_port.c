/* SPDX-License-Identifier: Apache-2.0 */
/* Neutron ports: creation with addresses from IPAM (ipam.c), a unique MAC in OpenStack's
 * fa:16:3e prefix, security groups (the project's default one unless port security is off)
 * and bindings; updates that re-allocate fixed_ips; deletion that frees the addresses and
 * unlinks floating IPs. Routers and floating IPs (network_l3.c) make their own ports through
 * neu_port_new(). */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipam.h"
#include "network-int.h"
#include "sov/crypto.h"
#include "sov/mac.h"

#define MAX_ADDRESS_PAIR 10

static bool mac_taken(Api *a, const char *net_id, const char *mac)
{
    char uniq[128];
    json_t *doc;
    snprintf(uniq, sizeof(uniq), "%s/%s", net_id, mac);
    if (api_store_get_uniq(a->store, "port", uniq, &doc) < 0)
        return false;
    json_decref(doc);
    return true;
}

/* A free MAC in OpenStack's fa:16:3e prefix. */
static void mac_generate(Api *a, const char *net_id, char out[18])
{
    for (int i = 0; i < 64; i++) {
        uint8_t r[3];
        sov_random_bytes(r, sizeof(r));
        snprintf(out, 18, "fa:16:3e:%02x:%02x:%02x", r[0], r[1], r[2]);
        if (!mac_taken(a, net_id, out))
            return;
    }
}

static bool address_pairs(ApiCall *c, json_t *b, json_t *doc)
{
    json_t *arr = json_object_get(b, "allowed_address_pairs"), *p, *out;
    size_t i;
    if (!arr)
        return true;
    if (!json_is_array(arr) || json_array_size(arr) > MAX_ADDRESS_PAIR)
        goto bad;
    out = json_array();
    json_object_set_new(doc, "allowed_address_pairs", out);
    json_array_foreach(arr, i, p)
    {
        IpamCidr cidr;
        char cs[IPAM_CIDR_STRLEN], mac[18];
        json_t *mj = json_object_get(p, "mac_address"), *ip = json_object_get(p, "ip_address");
        const char *m = json_string_value(mj); /* absent or null: the port's own */
        if (!json_is_object(p) || json_object_size(p) != (size_t)(1 + !!mj) ||
            (mj && !m && !json_is_null(mj)) ||
            ipam_cidr_parse(json_string_value(ip), true, &cidr) < 0 || (m && !sov_mac_port(m, mac)))
            goto bad;
        ipam_cidr_str(&cidr, cs);
        if (cidr.prefix == ipam_family_bits(cidr.addr.family))
            *strchr(cs, '/') = '\0';
        json_array_append_new(out, json_pack("{s:s,s:s}", "ip_address", cs, "mac_address",
                                             m ? mac : neu_s(doc, "mac_address")));
    }
    return true;
bad:
    neu_invalid(c, "allowed_address_pairs",
                "expected at most %d objects with ip_address and optional mac_address",
                MAX_ADDRESS_PAIR);
    return false;
}

/* dns_name (Neutron's dns-integration): one RFC 1123 label, "" or null for none. sov-net's
 * DHCP server answers it (else host-a-b-c-d) in the network's dns_domain. */
static bool port_dns_name(ApiCall *c, json_t *b, json_t *doc)
{
    json_t *v = json_object_get(b, "dns_name");
    if (!v)
        return true;
    const char *s = json_is_null(v) ? "" : json_string_value(v);
    char label[SOV_DNS_LABEL_MAX + 1];
    if (!s || (*s && !sov_dns_label_norm(s, strlen(s), label))) {
        neu_invalid(c, "dns_name",
                    "'%.80s' is not a valid host name: 1-63 letters, digits or '-', neither "
                    "first nor last a '-'",
                    s ? s : "(not a string)");
        return false;
    }
    json_object_set_new(doc, "dns_name", json_string(s));
    return true;
}

/* A network's dns_domain as sov-net's DHCP servers take it: "" (none) or a DNS name. */
bool neu_dns_domain_ok(const char *s)
{
    char norm[SOV_DNS_NAME_MAX + 1];
    return !s[0] || sov_dns_name_norm(s, norm);
}

/* The IPv4 address s as a number in *ret_a, or false. */
static bool dns_ip4(const char *s, uint32_t *ret_a)
{
    struct in_addr in;
    if (inet_pton(AF_INET, s, &in) != 1)
        return false;
    *ret_a = ntohl(in.s_addr);
    return true;
}

/* One named port of a network, as sov-net's DHCP servers weigh names. */
typedef struct DnsClaim {
    const char *port, *device, *project, *since;
    char name[64]; /* its dns_name, lower-cased */
    uint32_t ip;   /* its lowest IPv4 address */
} DnsClaim;

/* by name, then the oldest port (created_at; unknown ones after), then the lower address */
static int claim_order(const void *a, const void *b)
{
    const DnsClaim *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (!c && (*x->since || *y->since))
        c = !*x->since ? 1 : !*y->since ? -1 : strcmp(x->since, y->since);
    return c ? c : (x->ip > y->ip) - (x->ip < y->ip);
}

static bool claim_same_owner(const DnsClaim *a, const DnsClaim *b)
{
    return strcmp(a->port, b->port) == 0 ||
           (*a->device && strcmp(a->device, b->device) == 0 && strcmp(a->project, b->project) == 0);
}

/* The ports of network net_id whose dns_name their DHCP server does not give them (the rule of
 * sov-net's dhcpconf.c, names_unique): a dns_name that is the default name host-a-b-c-d of another
 * port's address, or that a port created earlier (the lower address when created in the same
 * second) of another owner (another device, or another project) on the network also has.
 * Returns port id -> true; names are compared lower-cased, and only ports with an IPv4 address
 * take part (DNS names are A records). */
static json_t *dns_losers(Api *a, const char *net_id)
{
    json_t *ports = neu_list_of(a, "port", NULL, net_id), *losers = json_object(), *p, *f;
    json_t *defaults = json_object();
    size_t n = json_array_size(ports), i, j;
    DnsClaim *v = calloc(n ? n : 1, sizeof(*v));
    size_t k = 0;
    json_array_foreach(ports, i, p)
    {
        const char *owner = neu_s(p, "device_owner");
        if (strncmp(owner, "network:", 8) == 0 && strcmp(owner, "network:router_interface") != 0 &&
            strcmp(owner, "network:dhcp") != 0)
            continue; /* gateways and floating IPs: no DHCP, no name */
        uint32_t ip = 0, lo = UINT32_MAX;
        json_array_foreach(json_object_get(p, "fixed_ips"), j, f)
        {
            if (!dns_ip4(neu_s(f, "ip_address"), &ip))
                continue;
            char def[40];
            snprintf(def, sizeof(def), "host-%u-%u-%u-%u", ip >> 24, (ip >> 16) & 255,
                     (ip >> 8) & 255, ip & 255);
            json_object_set_new(defaults, def, json_string(neu_s(p, "id")));
            lo = ip < lo ? ip : lo;
        }
        const char *dn = neu_s(p, "dns_name");
        if (!v || !*dn || lo == UINT32_MAX)
            continue;
        DnsClaim *c = &v[k++];
        *c = (DnsClaim){neu_s(p, "id"),
                        neu_s(p, "device_id"),
                        neu_s(p, "project_id"),
                        neu_s(p, "created_at"),
                        "",
                        lo};
        for (size_t m = 0; dn[m] && m + 1 < sizeof(c->name); m++)
            c->name[m] = dn[m] >= 'A' && dn[m] <= 'Z' ? (char)(dn[m] - 'A' + 'a') : dn[m];
    }
    size_t kept = 0;
    for (i = 0; i < k; i++) { /* another port's default name: the port's own default */
        const char *holder = json_string_value(json_object_get(defaults, v[i].name));
        if (holder && strcmp(holder, v[i].port) != 0)
            json_object_set_new(losers, v[i].port, json_true());
        else
            v[kept++] = v[i];
    }
    qsort(v, kept, sizeof(*v), claim_order);
    for (i = 1, j = 0; i < kept; i++) {
        if (strcmp(v[i].name, v[j].name) == 0 && !claim_same_owner(&v[i], &v[j]))
            json_object_set_new(losers, v[i].port, json_true());
        else
            j = i;
    }
    free(v);
    json_decref(defaults);
    json_decref(ports);
    return losers;
}

/* dns_losers of a network, kept in a->port_dns while no port changes (a show or a list reads
 * the network's ports once, not once per request). */
static json_t *dns_losers_cached(Api *a, const char *net_id)
{
    uint64_t rev = api_store_kind_rev(a->store, "port", true);
    json_t *e = json_object_get(a->port_dns, net_id);
    if (e && (uint64_t)json_integer_value(json_object_get(e, "rev")) == rev)
        return json_object_get(e, "losers");
    if (!a->port_dns || json_object_size(a->port_dns) >= 1024) {
        json_decref(a->port_dns);
        a->port_dns = json_object();
    }
    e = json_pack("{s:I,s:o}", "rev", (json_int_t)rev, "losers", dns_losers(a, net_id));
    if (json_object_set_new(a->port_dns, net_id, e) < 0)
        return NULL;
    return json_object_get(e, "losers");
}

/* The answer's dns_assignment: one {hostname, ip_address, fqdn} per fixed IP, with the host
 * name sov-net's DHCP server gives it (dns_name unless another port holds it, see dns_losers,
 * or the name would not fit a 253-byte FQDN; else host-<address, '-' for '.' and ':'>) in the
 * network's dns_domain, else [network] dns_domain. nets caches network id -> domain. */
static void port_dns_out(Api *a, json_t *port, json_t *nets)
{
    const char *net_id = neu_s(port, "network_id");
    json_t *dom = json_object_get(nets, net_id), *net = NULL, *f;
    if (!dom) {
        const char *d = "";
        if (api_store_get(a->store, "network", net_id, &net, NULL, 0) == 0)
            d = neu_s(net, "dns_domain");
        /* the network's when it is a DNS name (as sov-net's DHCP servers take it), else the
         * cloud's ([network] dns_domain, checked at start) */
        char buf[SOV_DNS_NAME_MAX + 1];
        if (!sov_dns_name_norm(d, buf) && !sov_dns_name_norm(a->cfg.dns_domain, buf))
            buf[0] = '\0';
        dom = json_string(buf);
        json_object_set_new(nets, net_id, dom);
        json_decref(net);
    }
    if (!json_is_string(json_object_get(port, "dns_name")))
        json_object_set_new(port, "dns_name", json_string(""));
    const char *dn = neu_s(port, "dns_name"), *domain = json_string_value(dom);
    domain = domain ? domain : "";
    if (*dn && (strlen(dn) + 1 + strlen(domain) > 253 ||
                json_object_get(dns_losers_cached(a, net_id), neu_s(port, "id"))))
        dn = "";
    json_t *arr = json_array();
    size_t i;
    json_array_foreach(json_object_get(port, "fixed_ips"), i, f)
    {
        char host[80], fqdn[400];
        const char *ip = neu_s(f, "ip_address");
        snprintf(host, sizeof(host), "%s%.64s", *dn ? "" : "host-", *dn ? dn : ip);
        for (char *h = host; *h; h++)
            *h = *h == '.' || *h == ':'   ? '-'
                 : *h >= 'A' && *h <= 'Z' ? (char)(*h - 'A' + 'a')
                                          : *h;
        snprintf(fqdn, sizeof(fqdn), "%s.%s.", host, domain);
        json_array_append_new(
            arr, json_pack("{s:s,s:s,s:s}", "hostname", host, "ip_address", ip, "fqdn", fqdn));
    }
    json_object_set_new(port, "dns_assignment", arr);
}

static bool port_apply(ApiCall *c, json_t *b, json_t *doc, json_t *net)
{
    static const char *const strs[] = {"device_id", "device_owner", "binding:host_id", NULL};
    static const char *const bools[] = {"admin_state_up", "port_security_enabled", NULL};
    static const char *const vnic[] = {
        "normal",          "direct",           "macvtap", "baremetal",
        "direct-physical", "virtio-forwarder", "vdpa",    NULL};
    const char *mac_s = NULL, *vt = NULL, *owner = NULL;
    char mac[18];
    json_t *ex = json_object_get(b, "extra_dhcp_opts"), *e;
    size_t i;
    if (!neu_admin_only(c, b, "binding:host_id") || !neu_admin_only(c, b, "binding:profile") ||
        !neu_copy_std(c, b, doc) || !neu_copy_strs(c, b, doc, strs, 255) ||
        !neu_copy_bools(c, b, doc, bools) || !neu_get_str(c, b, "mac_address", 17, false, &mac_s) ||
        !neu_get_str(c, b, "binding:vnic_type", 32, false, &vt) ||
        !neu_get_str(c, b, "device_owner", 255, false, &owner) ||
        !neu_must_be_null(c, b, "qos_policy_id") || !port_dns_name(c, b, doc))
        return false;
    /* ports of the network itself (router interfaces, gateways, floating IPs, DHCP) come
     * from their own APIs; only the admin may fake or repair one */
    if (owner && strncmp(owner, "network:", 8) == 0 && !c->auth.system_admin) {
        api_fault(c, 403, "PolicyNotAuthorized",
                  "(rule:create_port:device_owner) is disallowed by policy");
        return false;
    }
    if (mac_s && !sov_mac_port(mac_s, mac)) {
        neu_invalid(c, "mac_address", "'%s' is not a valid MAC address", mac_s);
        return false;
    }
    if (mac_s)
        json_object_set_new(doc, "mac_address", json_string(mac));
    for (i = 0; vt && vnic[i] && strcmp(vnic[i], vt) != 0; i++)
        ;
    if (vt && !vnic[i]) {
        neu_invalid(c, "binding:vnic_type", "'%s' is not a supported vnic type", vt);
        return false;
    }
    if (vt)
        json_object_set_new(doc, "binding:vnic_type", json_string(vt));
    if (json_object_get(b, "binding:profile")) {
        if (!json_is_object(json_object_get(b, "binding:profile"))) {
            neu_invalid(c, "binding:profile", "expected a dictionary");
            return false;
        }
        json_object_set(doc, "binding:profile", json_object_get(b, "binding:profile"));
    }
    if (ex) {
        bool ok = json_is_array(ex) && json_array_size(ex) <= 16;
        json_array_foreach(ex, i, e) ok = ok && json_is_string(json_object_get(e, "opt_name")) &&
                                          json_string_length(json_object_get(e, "opt_name")) < 64;
        if (!ok) {
            neu_invalid(c, "extra_dhcp_opts", "expected a list of objects with opt_name");
            return false;
        }
        json_object_set(doc, "extra_dhcp_opts", ex);
    }
    return address_pairs(c, b, doc);
}

/* Security groups and port security of a port after its request b: false after answering. */
static bool port_security(ApiCall *c, json_t *b, json_t *doc, bool create)
{
    bool ps = json_is_true(json_object_get(doc, "port_security_enabled"));
    json_t *req = json_object_get(b, "security_groups");
    json_t *cur = json_object_get(doc, "security_groups");
    if (req && !json_is_null(req) && !json_is_array(req)) {
        neu_invalid(c, "security_groups", "expected a list of security group ids");
        return false;
    }
    if (!ps && ((json_array_size(req) > 0) || (!req && !create && json_array_size(cur) > 0))) {
        if (req)
            api_fault(c, 400, "PortSecurityAndIPRequiredForSecurityGroups",
                      "Port security must be enabled and port must have an IP address in order "
                      "to use security groups.");
        else
            api_fault(c, 409, "PortSecurityPortHasSecurityGroup",
                      "Port has security group associated. Cannot disable port security or ip "
                      "address until security group is removed");
        return false;
    }
    if (!ps && json_array_size(json_object_get(doc, "allowed_address_pairs")) > 0) {
        api_fault(c, 409, "AddressPairAndPortSecurityRequired",
                  "Port Security must be enabled in order to have allowed address pairs on a "
                  "port.");
        return false;
    }
    if (!req && (!create || !ps || !strncmp(neu_s(doc, "device_owner"), "network:", 8)))
        return true; /* unchanged, or none for ports of the network itself */
    json_t *sgs = neu_secgroup_resolve(c, neu_s(doc, "project_id"), json_is_null(req) ? NULL : req);
    if (!sgs)
        return false;
    json_object_set_new(doc, "security_groups", sgs);
    return true;
}

/* A new port of project on net, allocated and stored. b: the request (NULL for the ports the
 * API makes itself: router interfaces and gateways, floating IPs, Nova's). fixed_ips: the
 * requested addresses (NULL: the default). Answers and returns NULL on failure. */
json_t *neu_port_new(ApiCall *c, json_t *net, const char *project, json_t *b, const char *owner,
                     const char *device_id, json_t *fixed_ips)
{
    char id[API_UUID_LEN + 1], mac[18];
    api_new_uuid(id);
    json_t *doc = neu_doc_new(project, id);
    json_object_update_new(
        doc, json_pack("{s:s,s:s,s:s,s:b,s:[],s:s,s:s,s:s,s:[],s:[],s:[],s:b,s:s,s:s,s:s,s:{},"
                       "s:{}}",
                       "name", "", "description", "", "network_id", neu_s(net, "id"),
                       "admin_state_up", 1, "fixed_ips", "device_id", device_id, "device_owner",
                       owner, "status", "DOWN", "security_groups", "allowed_address_pairs",
                       "extra_dhcp_opts", "port_security_enabled",
                       b ? !json_is_false(json_object_get(net, "port_security_enabled")) : 0,
                       "binding:host_id", "", "binding:vif_type", "unbound", "binding:vnic_type",
                       "normal", "binding:profile", "binding:vif_details"));
    json_object_set_new(doc, "dns_name", json_string(""));
    if (b && !port_apply(c, b, doc, net))
        goto fail;
    if (!json_object_get(doc, "mac_address")) {
        mac_generate(c->api, neu_s(net, "id"), mac);
        json_object_set_new(doc, "mac_address", json_string(mac));
        if (b && !address_pairs(c, b, doc)) /* pairs default to the port's MAC */
            goto fail;
    } else if (mac_taken(c->api, neu_s(net, "id"), neu_s(doc, "mac_address"))) {
        api_fault(c, 409, "MacAddressInUse",
                  "Unable to complete operation for network %s. The mac address %s is in use.",
                  neu_s(net, "id"), neu_s(doc, "mac_address"));
        goto fail;
    }
    if (b && !port_security(c, b, doc, true))
        goto fail;
    int r = api_store_begin(c->api->store);
    json_t *ips = r < 0 ? NULL
                        : ipam_port_addresses(c, net, id, project, neu_s(doc, "device_owner"),
                                              fixed_ips, NULL);
    if (!ips) {
        api_store_rollback(c->api->store);
        if (r < 0)
            neu_store_fault(c, r);
        goto fail;
    }
    json_object_set_new(doc, "fixed_ips", ips);
    if ((r = neu_doc_put(c->api, &neu_port, doc, true)) < 0) {
        api_store_rollback(c->api->store);
        neu_store_fault(c, r);
        goto fail;
    }
    if (!neu_commit(c))
        goto fail;
    return doc;
fail:
    json_decref(doc);
    return NULL;
}

/* Floating IPs on port lose their association (inside the caller's transaction): all of
 * them, or with kept_only those whose fixed address the port no longer holds. */
static int fips_unlink_port(Api *a, json_t *port, bool kept_only)
{
    json_t *fips = neu_list_of(a, "floatingip", NULL, NULL), *f, *ip;
    size_t i, j;
    int r = 0;
    json_array_foreach(fips, i, f)
    {
        bool held = false;
        json_array_foreach(json_object_get(port, "fixed_ips"), j, ip) held =
            held || !strcmp(neu_s(ip, "ip_address"), neu_s(f, "fixed_ip_address"));
        if (r < 0 || strcmp(neu_s(f, "port_id"), neu_s(port, "id")) != 0 || (kept_only && held))
            continue;
        json_object_set_new(f, "port_id", json_null());
        json_object_set_new(f, "fixed_ip_address", json_null());
        json_object_set_new(f, "router_id", json_null());
        json_object_set_new(f, "status", json_string("DOWN"));
        neu_doc_touch(f);
        r = neu_doc_put(a, &neu_floatingip, f, false);
    }
    json_decref(fips);
    return r;
}

/* Deletes a port with its addresses (inside the caller's transaction, or its own). */
int neu_port_destroy(Api *a, json_t *port)
{
    int r = api_store_begin(a->store);
    if (r < 0)
        return r;
    ipam_port_release(a->store, json_object_get(port, "fixed_ips"));
    if ((r = fips_unlink_port(a, port, false)) == 0)
        r = api_store_delete(a->store, "port", neu_s(port, "id"));
    if (r < 0) {
        api_store_rollback(a->store);
        return r;
    }
    return api_store_commit(a->store);
}

json_t *neu_port_get(Api *a, const char *id)
{
    json_t *p;
    return api_store_get(a->store, "port", id, &p, NULL, 0) == 0 ? p : NULL;
}

/* Answers with port (its reference is handed over) and its dns_assignment. */
static void port_reply(ApiCall *c, int status, json_t *port)
{
    json_t *nets = json_object();
    port_dns_out(c->api, port, nets);
    json_decref(nets);
    neu_reply_doc(c, status, &neu_port, port);
}

static void h_port_list(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_READ);
    if (!c)
        return;
    json_t *arr = neu_list_visible(c, &neu_port), *nets = json_object(), *p;
    size_t i;
    json_array_foreach(arr, i, p) port_dns_out(c->api, p, nets);
    json_decref(nets);
    neu_reply_list(c, &neu_port, arr);
}

static void h_port_show(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_READ);
    json_t *doc = c ? neu_doc_get(c, &neu_port, api_param(c, "id")) : NULL;
    if (doc)
        port_reply(c, 200, doc);
}

/* The network a new port of project may use: visible, and own or shared (or any for admin). */
static json_t *port_network(ApiCall *c, const char *net_id, const char *project)
{
    json_t *net = neu_doc_get(c, &neu_network, net_id);
    if (net && !c->auth.system_admin && strcmp(neu_s(net, "project_id"), project) != 0 &&
        !json_is_true(json_object_get(net, "shared"))) {
        api_fault(c, 403, "PolicyNotAuthorized",
                  "Tenant %s not allowed to create port on this network", project);
        json_decref(net);
        return NULL;
    }
    return net;
}

static void h_port_create(SovHttpReq *req, void *ud)
{
    static const char *const keys[] = {"name",
                                       "description",
                                       "network_id",
                                       "admin_state_up",
                                       "mac_address",
                                       "fixed_ips",
                                       "device_id",
                                       "device_owner",
                                       "project_id",
                                       "tenant_id",
                                       "security_groups",
                                       "port_security_enabled",
                                       "allowed_address_pairs",
                                       "binding:host_id",
                                       "binding:vnic_type",
                                       "binding:profile",
                                       "extra_dhcp_opts",
                                       "qos_policy_id",
                                       "tags",
                                       "dns_name",
                                       NULL};
    ApiCall *c = neu_begin(req, ud, API_NEED_WRITE);
    json_t *b = c ? neu_body(c, "port", keys) : NULL, *net, *port;
    const char *net_id = NULL;
    char project[API_ID_LEN + 1];
    if (!b || !neu_owner(c, b, project) || !neu_get_str(c, b, "network_id", 64, false, &net_id))
        return;
    if (!net_id) {
        api_fault(c, 400, "HTTPBadRequest",
                  "Failed to parse request. Required attribute 'network_id' not specified");
        return;
    }
    if (!(net = port_network(c, net_id, project)))
        return;
    if (neu_quota(c, project, "port", 1) &&
        (port = neu_port_new(c, net, project, b, "", "", json_object_get(b, "fixed_ips")))) {
        snprintf(c->target, sizeof(c->target), "%s", neu_s(port, "id"));
        port_reply(c, 201, port);
    }
    json_decref(net);
}

static void h_port_update(SovHttpReq *req, void *ud)
{
    static const char *const keys[] = {"name",
                                       "description",
                                       "admin_state_up",
                                       "fixed_ips",
                                       "device_id",
                                       "device_owner",
                                       "security_groups",
                                       "port_security_enabled",
                                       "allowed_address_pairs",
                                       "binding:host_id",
                                       "binding:profile",
                                       "binding:vnic_type",
                                       "mac_address",
                                       "extra_dhcp_opts",
                                       "qos_policy_id",
                                       "tags",
                                       "dns_name",
                                       "id",
                                       "network_id",
                                       "project_id",
                                       "tenant_id",
                                       "status",
                                       NULL};
    static const char *const ro[] = {"id", "network_id", "project_id", "tenant_id", "status", NULL};
    ApiCall *c = neu_begin(req, ud, API_NEED_WRITE);
    json_t *b = c ? neu_body(c, "port", keys) : NULL, *net = NULL;
    json_t *doc =
        b && neu_readonly(c, b, ro) ? neu_doc_get(c, &neu_port, api_param(c, "id")) : NULL;
    if (!doc)
        return;
    snprintf(c->target, sizeof(c->target), "%s", neu_s(doc, "id"));
    if (!neu_may_change(c, doc) || !neu_admin_only(c, b, "mac_address"))
        goto out;
    if (!strncmp(neu_s(doc, "device_owner"), "network:", 8) && !c->auth.system_admin &&
        (json_object_get(b, "fixed_ips") || json_object_get(b, "device_id") ||
         json_object_get(b, "device_owner"))) {
        api_fault(c, 409, "PortInUse",
                  "Unable to complete operation on port %s for network %s. Port already has an "
                  "attached device %s.",
                  neu_s(doc, "id"), neu_s(doc, "network_id"), neu_s(doc, "device_id"));
        goto out;
    }
    if (api_store_get(c->api->store, "network", neu_s(doc, "network_id"), &net, NULL, 0) < 0) {
        api_fault(c, 404, "NetworkNotFound", "Network %s could not be found.",
                  neu_s(doc, "network_id"));
        goto out;
    }
    if (!port_apply(c, b, doc, net) || !port_security(c, b, doc, false))
        goto out;
    ApiStore *s = c->api->store;
    int r = api_store_begin(s);
    if (r == 0 && json_object_get(b, "fixed_ips")) {
        json_t *ips = ipam_port_addresses(
            c, net, neu_s(doc, "id"), neu_s(doc, "project_id"), neu_s(doc, "device_owner"),
            json_object_get(b, "fixed_ips"), json_object_get(doc, "fixed_ips"));
        if (!ips) {
            api_store_rollback(s);
            goto out;
        }
        json_object_set_new(doc, "fixed_ips", ips);
        r = fips_unlink_port(c->api, doc, true);
    }
    neu_doc_touch(doc);
    if (r == 0)
        r = neu_doc_put(c->api, &neu_port, doc, false);
    if (r < 0) {
        api_store_rollback(s);
        if (r == -EEXIST)
            api_fault(c, 409, "MacAddressInUse",
                      "Unable to complete operation for network %s. The mac address %s is in "
                      "use.",
                      neu_s(doc, "network_id"), neu_s(doc, "mac_address"));
        else
            neu_store_fault(c, r);
    } else if (neu_commit(c))
        port_reply(c, 200, json_incref(doc));
out:
    json_decref(net);
    json_decref(doc);
}

static void h_port_delete(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_WRITE);
    json_t *doc = c ? neu_doc_get(c, &neu_port, api_param(c, "id")) : NULL;
    const char *owner = doc ? neu_s(doc, "device_owner") : "";
    if (!doc)
        return;
    snprintf(c->target, sizeof(c->target), "%s", neu_s(doc, "id"));
    if (!neu_may_change(c, doc))
        goto out;
    if (!strcmp(owner, OWNER_RIF) || !strcmp(owner, OWNER_RGW) || !strcmp(owner, OWNER_FIP)) {
        api_fault(c, 409, "ServicePortInUse",
                  "Port %s cannot be deleted directly via the port API: has device owner %s.",
                  neu_s(doc, "id"), owner);
        goto out;
    }
    int r = neu_port_destroy(c->api, doc);
    if (r < 0)
        neu_store_fault(c, r);
    else
        api_reply(c, 204, NULL);
out:
    json_decref(doc);
}

int api_port_create_for(ApiCall *c, const char *network_id, const char *fixed_ip,
                        const char *device_id, const char *device_owner, const char *host,
                        const char *dns_name, json_t **ret)
{
    json_t *net = port_network(c, network_id, c->auth.project_id), *b, *port = NULL;
    if (!net)
        return -ENOENT;
    b = json_pack("{s:s,s:s,s:s,s:s}", "device_id", device_id ? device_id : "", "device_owner",
                  device_owner ? device_owner : "", "binding:host_id", host ? host : "", "dns_name",
                  dns_name ? dns_name : "");
    json_t *ips = fixed_ip ? json_pack("[{s:s}]", "ip_address", fixed_ip) : NULL;
    bool admin = c->auth.system_admin;
    c->auth.system_admin = true; /* the binding is the API's own business here */
    if (neu_quota(c, c->auth.project_id, "port", 1))
        port = neu_port_new(c, net, c->auth.project_id, b, "", "", ips);
    c->auth.system_admin = admin;
    json_decref(ips);
    json_decref(b);
    json_decref(net);
    if (!port)
        return -EINVAL;
    *ret = port;
    return 0;
}

/* Sets a port's binding when its device_id is `was` (NULL: any). device_id NULL empties it,
 * and the dns_name when that is dns_name (the one the binding gave it). */
static int port_bind(Api *a, const char *port_id, const char *was, const char *device_id,
                     const char *device_owner, const char *host, const char *dns_name)
{
    json_t *doc;
    int r = api_store_get(a->store, "port", port_id, &doc, NULL, 0);
    if (r < 0)
        return r;
    if (was && strcmp(neu_s(doc, "device_id"), was) != 0) {
        json_decref(doc);
        return 0; /* no longer that device's */
    }
    json_object_set_new(doc, "device_id", json_string(device_id ? device_id : ""));
    json_object_set_new(doc, "device_owner", json_string(device_owner ? device_owner : ""));
    json_object_set_new(doc, "binding:host_id", json_string(host ? host : ""));
    json_t *prof = json_object_get(doc, "binding:profile");
    if (json_is_object(prof)) /* a migration of an earlier device is over */
        json_object_del(prof, "migrating_to");
    if (!device_id && dns_name && strcmp(neu_s(doc, "dns_name"), dns_name) == 0)
        json_object_set_new(doc, "dns_name", json_string(""));
    else if (device_id && dns_name && !*neu_s(doc, "dns_name"))
        json_object_set_new(doc, "dns_name", json_string(dns_name));
    neu_doc_touch(doc);
    r = neu_doc_put(a, &neu_port, doc, false);
    json_decref(doc);
    return r;
}

int api_port_bind_for(Api *a, const char *port_id, const char *device_id, const char *device_owner,
                      const char *host, const char *dns_name)
{
    return port_bind(a, port_id, NULL, device_id, device_owner, host, dns_name);
}

int api_port_unbind_for(Api *a, const char *port_id, const char *device_id, const char *dns_name)
{
    return port_bind(a, port_id, device_id, NULL, NULL, NULL, dns_name);
}

int api_port_migration(Api *a, const char *port_id, const char *device_id, const char *to,
                       const char *host)
{
    json_t *doc;
    int r = api_store_get(a->store, "port", port_id, &doc, NULL, 0);
    if (r < 0)
        return r;
    json_t *prof = json_object_get(doc, "binding:profile");
    if (strcmp(neu_s(doc, "device_id"), device_id) != 0 || !json_is_object(prof)) {
        json_decref(doc);
        return 0; /* not the server's any more */
    }
    if (to)
        json_object_set_new(prof, "migrating_to", json_string(to));
    else
        json_object_del(prof, "migrating_to");
    if (host)
        json_object_set_new(doc, "binding:host_id", json_string(host));
    neu_doc_touch(doc);
    r = neu_doc_put(a, &neu_port, doc, false);
    json_decref(doc);
    return r;
}

int api_port_delete_for(Api *a, const char *port_id, const char *device_id)
{
    json_t *port;
    int r = api_store_get(a->store, "port", port_id, &port, NULL, 0);
    if (r < 0)
        return r;
    /* a port moved to another device since (the tenant may clear device_id) is that one's */
    r = device_id && strcmp(neu_s(port, "device_id"), device_id) != 0 ? 0
                                                                      : neu_port_destroy(a, port);
    json_decref(port);
    return r;
}

void neu_port_routes(Api *a)
{
    static const struct {
        const char *method, *path;
        SovHttpHandler h;
    } routes[] = {
        {"GET", NEU_PREFIX "/ports", h_port_list},
        {"POST", NEU_PREFIX "/ports", h_port_create},
        {"GET", NEU_PREFIX "/ports/{id}", h_port_show},
        {"PUT", NEU_PREFIX "/ports/{id}", h_port_update},
        {"DELETE", NEU_PREFIX "/ports/{id}", h_port_delete},
    };
    for (size_t i = 0; i < ELEMENTSOF(routes); i++)
        sov_router_add(a->router, routes[i].method, routes[i].path, 0, routes[i].h, a);
}

/* The DHCP port of an IPv4 subnet with DHCP (device_owner network:dhcp, device_id
 * dhcp-<subnet id>): the address sov-net's DHCP server answers from, the last of the subnet's
 * pool, inside the caller's transaction. false after answering. */
bool neu_subnet_dhcp_port(ApiCall *c, json_t *net, json_t *subnet)
{
    if (json_integer_value(json_object_get(subnet, "ip_version")) != 4)
        return true;
    char dev[API_UUID_LEN + 8];
    snprintf(dev, sizeof(dev), "dhcp-%s", neu_s(subnet, "id"));
    /* the pool's last address (instances count up from its first), when still free */
    json_t *pools = json_object_get(subnet, "allocation_pools");
    const char *last = neu_s(json_array_get(pools, json_array_size(pools) - 1), "end");
    IpamAddr la;
    json_t *held = NULL;
    bool free_last = *last && ipam_addr_parse(last, &la) == 0 &&
                     !(held = ipam_alloc_get(c->api->store, neu_s(subnet, "id"), &la));
    json_decref(held);
    json_t *fx =
        free_last ? json_pack("[{s:s,s:s}]", "subnet_id", neu_s(subnet, "id"), "ip_address", last)
                  : json_pack("[{s:s}]", "subnet_id", neu_s(subnet, "id"));
    json_t *port = neu_port_new(c, net, neu_s(subnet, "project_id"), NULL, OWNER_DHCP, dev, fx);
    json_decref(fx);
    json_decref(port);
    return port != NULL;
}

/* Deletes the DHCP ports of a subnet (inside the caller's transaction). */
int neu_subnet_dhcp_drop(Api *a, json_t *subnet)
{
    char dev[API_UUID_LEN + 8];
    snprintf(dev, sizeof(dev), "dhcp-%s", neu_s(subnet, "id"));
    json_t *ports = neu_list_of(a, "port", NULL, neu_s(subnet, "network_id")), *p;
    size_t i;
    int r = 0;
    json_array_foreach(ports, i, p) if (r == 0 && !strcmp(neu_s(p, "device_owner"), OWNER_DHCP) &&
                                        !strcmp(neu_s(p, "device_id"), dev)) r =
        neu_port_destroy(a, p);
    json_decref(ports);
    return r;
}
