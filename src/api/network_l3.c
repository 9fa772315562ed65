/* SPDX-License-Identifier: Apache-2.0 */
/* Neutron's layer 3: routers (external gateway with its port on the external network,
 * interfaces holding their subnet's gateway address, extra routes) and floating IPs (an
 * address of an external network held by a port of its own, associated with a port whose
 * subnet a router joins to that network). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipam.h"
#include "network-int.h"

#define MAX_ROUTES 30

/* The router's interface ports (they belong to the router's project). */
static json_t *router_ifaces(Api *a, json_t *router)
{
    json_t *ports = neu_list_of(a, "port", neu_s(router, "project_id"), NULL), *out = json_array();
    json_t *p;
    size_t i;
    json_array_foreach(ports, i, p) if (!strcmp(neu_s(p, "device_owner"), OWNER_RIF) &&
                                        !strcmp(neu_s(p, "device_id"), neu_s(router, "id")))
        json_array_append(out, p);
    json_decref(ports);
    return out;
}

/* Floating IPs routed through router (with fixed_in: only those whose fixed address lies in
 * that CIDR). */
static bool router_has_fips(Api *a, const char *router_id, const IpamCidr *fixed_in)
{
    json_t *fips = neu_list_of(a, "floatingip", NULL, NULL), *f;
    size_t i;
    bool found = false;
    json_array_foreach(fips, i, f)
    {
        IpamAddr ip;
        if (strcmp(neu_s(f, "router_id"), router_id) != 0)
            continue;
        found = found || !fixed_in ||
                (ipam_addr_parse(neu_s(f, "fixed_ip_address"), &ip) == 0 &&
                 ipam_cidr_contains(fixed_in, &ip));
    }
    json_decref(fips);
    return found;
}

/* Sets, changes or clears (info null or {}) the router's external gateway, inside the
 * caller's transaction. */
static bool gw_set(ApiCall *c, json_t *router, json_t *info)
{
    static const char *const keys[] = {"network_id", "enable_snat", "external_fixed_ips", NULL};
    const char *rid = neu_s(router, "id"), *net_id = NULL;
    json_t *cur = json_object_get(router, "external_gateway_info"), *v;
    const char *k;
    bool snat = true;
    if (info && !json_is_null(info) && !json_is_object(info)) {
        neu_invalid(c, "external_gateway_info", "expected a dictionary");
        return false;
    }
    json_object_foreach(info, k, v)
    {
        size_t i = 0;
        while (keys[i] && strcmp(keys[i], k) != 0)
            i++;
        if (!keys[i]) {
            neu_invalid(c, "external_gateway_info", "unexpected key '%.64s'", k);
            return false;
        }
    }
    if (!neu_get_str(c, info, "network_id", 64, false, &net_id) ||
        !neu_get_bool(c, info, "enable_snat", &snat) ||
        !neu_admin_only(c, info, "external_fixed_ips"))
        return false;
    if (json_object_size(info) && !net_id) {
        neu_invalid(c, "external_gateway_info", "network_id is required");
        return false;
    }
    const char *cur_net = json_is_object(cur) ? neu_s(cur, "network_id") : NULL;
    if (cur_net && net_id && !strcmp(cur_net, net_id) &&
        !json_object_get(info, "external_fixed_ips")) {
        json_object_set_new(cur, "enable_snat", json_boolean(snat));
        return true;
    }
    if (cur_net) {
        if (router_has_fips(c->api, rid, NULL)) {
            api_fault(c, 409, "RouterExternalGatewayInUseByFloatingIp",
                      "Gateway cannot be updated for router %s, since a gateway to external "
                      "network %s is required by one or more floating IPs.",
                      rid, cur_net);
            return false;
        }
        json_t *gp = neu_port_get(c->api, neu_s(router, "_gw_port"));
        int r = gp ? neu_port_destroy(c->api, gp) : 0;
        json_decref(gp);
        if (r < 0) {
            neu_store_fault(c, r);
            return false;
        }
        json_object_set_new(router, "external_gateway_info", json_null());
        json_object_del(router, "_gw_port");
    }
    if (!net_id)
        return true;
    json_t *net = neu_doc_get(c, &neu_network, net_id), *port = NULL;
    if (net && !json_is_true(json_object_get(net, "router:external")))
        api_fault(c, 400, "BadRequest",
                  "Bad router request: Network %s is not an external network.", net_id);
    else if (net)
        port = neu_port_new(c, net, "", NULL, OWNER_RGW, rid,
                            json_object_get(info, "external_fixed_ips"));
    if (port) {
        json_object_set_new(router, "external_gateway_info",
                            json_pack("{s:s,s:b,s:O}", "network_id", neu_s(net, "id"),
                                      "enable_snat", snat, "external_fixed_ips",
                                      json_object_get(port, "fixed_ips")));
        json_object_set_new(router, "_gw_port", json_string(neu_s(port, "id")));
    }
    json_decref(net);
    json_decref(port);
    return port != NULL;
}

/* Validates routes against the subnets the router is connected to. */
static bool router_routes(ApiCall *c, json_t *router, json_t *routes)
{
    json_t *ifaces = router_ifaces(c->api, router), *out = json_array(), *r, *p, *f;
    size_t i, j, k;
    bool ok = json_is_array(routes) && json_array_size(routes) <= MAX_ROUTES;
    json_t *gw =
        json_object_get(json_object_get(router, "external_gateway_info"), "external_fixed_ips");
    json_array_foreach(routes, i, r)
    {
        IpamCidr d;
        IpamAddr nh, own;
        bool connected = false, used = false;
        char ds[IPAM_CIDR_STRLEN], ns[IPAM_ADDR_STRLEN];
        int pr = ipam_cidr_parse(json_string_value(json_object_get(r, "destination")), false, &d);
        if (!ok || json_object_size(r) != 2 || (pr < 0 && pr != -EDOM) ||
            ipam_addr_parse(json_string_value(json_object_get(r, "nexthop")), &nh) < 0) {
            ok = false;
            break;
        }
        json_t *lists[2] = {NULL, gw};
        json_array_foreach(ifaces, j, p)
        {
            lists[0] = json_object_get(p, "fixed_ips");
            for (int l = 0; l < 2; l++)
                json_array_foreach(lists[l], k, f)
                {
                    json_t *sn;
                    IpamCidr sc;
                    if (api_store_get(c->api->store, "subnet", neu_s(f, "subnet_id"), &sn, NULL,
                                      0) < 0)
                        continue;
                    /* a host address of one of its subnets (the kernel refuses the network
                     * and broadcast addresses as a gateway), not the router's own */
                    connected = connected || (ipam_cidr_parse(neu_s(sn, "cidr"), false, &sc) == 0 &&
                                              ipam_addr_usable(&sc, &nh));
                    used = used || (ipam_addr_parse(neu_s(f, "ip_address"), &own) == 0 &&
                                    ipam_addr_cmp(&own, &nh) == 0);
                    json_decref(sn);
                }
        }
        if (!connected || used) {
            json_decref(ifaces);
            json_decref(out);
            api_fault(c, 400, "InvalidRoutes", "Invalid format for routes: %.64s, %s",
                      neu_s(r, "nexthop"),
                      used ? "the nexthop is used by router"
                           : "the nexthop is not connected with router");
            return false;
        }
        ipam_cidr_str(&d, ds);
        ipam_addr_str(&nh, ns);
        json_array_append_new(out, json_pack("{s:s,s:s}", "destination", ds, "nexthop", ns));
    }
    json_decref(ifaces);
    if (!ok) {
        json_decref(out);
        neu_invalid(c, "routes", "expected at most %d routes of destination and nexthop",
                    MAX_ROUTES);
        return false;
    }
    json_object_set_new(router, "routes", out);
    return true;
}

static bool router_apply(ApiCall *c, json_t *b, json_t *doc)
{
    static const char *const bools[] = {"admin_state_up", NULL};
    bool flag = false;
    if (!neu_admin_only(c, b, "distributed") || !neu_admin_only(c, b, "ha") ||
        !neu_get_bool(c, b, "distributed", &flag) || !neu_get_bool(c, b, "ha", &flag) ||
        !neu_copy_std(c, b, doc) || !neu_copy_bools(c, b, doc, bools) ||
        !neu_str_array(c, b, "availability_zone_hints", 8, 64) ||
        !neu_must_be_null(c, b, "flavor_id"))
        return false;
    if (flag) {
        neu_invalid(c, json_object_get(b, "ha") ? "ha" : "distributed",
                    "this cloud's routers are neither distributed nor HA");
        return false;
    }
    if (json_object_get(b, "availability_zone_hints"))
        json_object_set(doc, "availability_zone_hints",
                        json_object_get(b, "availability_zone_hints"));
    if (json_object_get(b, "external_gateway_info") &&
        !gw_set(c, doc, json_object_get(b, "external_gateway_info")))
        return false;
    return !json_object_get(b, "routes") || router_routes(c, doc, json_object_get(b, "routes"));
}

static void h_router_list(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_READ);
    if (c)
        neu_reply_list(c, &neu_router, neu_list_visible(c, &neu_router));
}

static void h_router_show(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_READ);
    json_t *doc = c ? neu_doc_get(c, &neu_router, api_param(c, "id")) : NULL;
    if (doc)
        neu_reply_doc(c, 200, &neu_router, doc);
}

/* Applies b to router doc and stores it, all in one transaction. */
static void router_save(ApiCall *c, json_t *b, json_t *doc, bool insert)
{
    int r = api_store_begin(c->api->store);
    if (r < 0) {
        neu_store_fault(c, r);
        return;
    }
    if (!router_apply(c, b, doc)) {
        api_store_rollback(c->api->store);
        return;
    }
    if (!insert)
        neu_doc_touch(doc);
    if ((r = neu_doc_put(c->api, &neu_router, doc, insert)) < 0) {
        api_store_rollback(c->api->store);
        neu_store_fault(c, r);
    } else if (neu_commit(c))
        neu_reply_doc(c, insert ? 201 : 200, &neu_router, json_incref(doc));
}

static void h_router_create(SovHttpReq *req, void *ud)
{
    static const char *const keys[] = {"name",
                                       "description",
                                       "admin_state_up",
                                       "external_gateway_info",
                                       "project_id",
                                       "tenant_id",
                                       "availability_zone_hints",
                                       "distributed",
                                       "ha",
                                       "flavor_id",
                                       "tags",
                                       NULL};
    ApiCall *c = neu_begin(req, ud, API_NEED_WRITE);
    json_t *b = c ? neu_body(c, "router", keys) : NULL;
    char project[API_ID_LEN + 1], id[API_UUID_LEN + 1];
    if (!b || !neu_owner(c, b, project) || !neu_quota(c, project, "router", 1))
        return;
    api_new_uuid(id);
    snprintf(c->target, sizeof(c->target), "%s", id);
    json_t *doc = neu_doc_new(project, id);
    json_object_update_new(doc, json_pack("{s:s,s:s,s:b,s:s,s:n,s:[],s:[],s:[]}", "name", "",
                                          "description", "", "admin_state_up", 1, "status",
                                          "ACTIVE", "external_gateway_info", "routes",
                                          "availability_zone_hints", "availability_zones"));
    router_save(c, b, doc, true);
    json_decref(doc);
}

static void h_router_update(SovHttpReq *req, void *ud)
{
    static const char *const keys[] = {
        "name",   "description", "admin_state_up", "external_gateway_info",
        "routes", "tags",        "distributed",    "ha",
        "id",     "project_id",  "tenant_id",      "status",
        NULL};
    static const char *const ro[] = {"id", "project_id", "tenant_id", "status", NULL};
    ApiCall *c = neu_begin(req, ud, API_NEED_WRITE);
    json_t *b = c ? neu_body(c, "router", keys) : NULL;
    json_t *doc =
        b && neu_readonly(c, b, ro) ? neu_doc_get(c, &neu_router, api_param(c, "id")) : NULL;
    if (!doc)
        return;
    snprintf(c->target, sizeof(c->target), "%s", neu_s(doc, "id"));
    if (neu_may_change(c, doc))
        router_save(c, b, doc, false);
    json_decref(doc);
}

static void h_router_delete(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_WRITE);
    json_t *doc = c ? neu_doc_get(c, &neu_router, api_param(c, "id")) : NULL;
    if (!doc)
        return;
    snprintf(c->target, sizeof(c->target), "%s", neu_s(doc, "id"));
    json_t *ifaces = router_ifaces(c->api, doc);
    if (!neu_may_change(c, doc))
        goto out;
    if (json_array_size(ifaces) > 0) {
        api_fault(c, 409, "RouterInUse", "Router %s still has ports", neu_s(doc, "id"));
        goto out;
    }
    int r = api_store_begin(c->api->store);
    if (r < 0)
        goto out;
    if (!gw_set(c, doc, NULL)) {
        api_store_rollback(c->api->store);
        goto out;
    }
    if ((r = api_store_delete(c->api->store, "router", neu_s(doc, "id"))) < 0) {
        api_store_rollback(c->api->store);
        neu_store_fault(c, r);
    } else if (neu_commit(c))
        api_reply(c, 204, NULL);
out:
    json_decref(ifaces);
    json_decref(doc);
}

/* Subnets of a port's fixed_ips must neither repeat nor overlap the router's others. */
static bool iface_conflicts(ApiCall *c, json_t *ifaces, json_t *subnet)
{
    json_t *p, *f, *other;
    size_t i, j;
    IpamCidr mine, theirs;
    if (ipam_cidr_parse(neu_s(subnet, "cidr"), false, &mine) < 0)
        return false;
    json_array_foreach(ifaces, i, p) json_array_foreach(json_object_get(p, "fixed_ips"), j, f)
    {
        const char *sid = neu_s(f, "subnet_id");
        if (!strcmp(sid, neu_s(subnet, "id"))) {
            api_fault(c, 400, "BadRequest",
                      "Bad router request: Router already has a port on subnet %s.", sid);
            return true;
        }
        if (api_store_get(c->api->store, "subnet", sid, &other, NULL, 0) < 0)
            continue;
        bool clash = ipam_cidr_parse(neu_s(other, "cidr"), false, &theirs) == 0 &&
                     ipam_cidr_overlaps(&mine, &theirs);
        if (clash)
            api_fault(c, 400, "BadRequest",
                      "Bad router request: Cidr %s of subnet %s overlaps with cidr %s of subnet "
                      "%s.",
                      neu_s(subnet, "cidr"), neu_s(subnet, "id"), neu_s(other, "cidr"), sid);
        json_decref(other);
        if (clash)
            return true;
    }
    return false;
}

static void iface_reply(ApiCall *c, json_t *router, json_t *port)
{
    json_t *ids = json_array(), *f;
    size_t i;
    json_array_foreach(json_object_get(port, "fixed_ips"), i, f)
        json_array_append(ids, json_object_get(f, "subnet_id"));
    api_reply(c, 200,
              json_pack("{s:s,s:s,s:s,s:s,s:O,s:o,s:s}", "id", neu_s(router, "id"), "tenant_id",
                        neu_s(router, "project_id"), "project_id", neu_s(router, "project_id"),
                        "port_id", neu_s(port, "id"), "subnet_id",
                        json_array_size(ids) ? json_array_get(ids, 0) : json_string(""),
                        "subnet_ids", ids, "network_id", neu_s(port, "network_id")));
}

/* The body of add/remove_router_interface: exactly one of subnet_id and port_id. */
static bool iface_body(ApiCall *c, const char **subnet_id, const char **port_id)
{
    static const char *const keys[] = {"subnet_id", "port_id", NULL};
    json_t *b = neu_body(c, NULL, keys);
    if (!b || !neu_get_str(c, b, "subnet_id", 64, false, subnet_id) ||
        !neu_get_str(c, b, "port_id", 64, false, port_id))
        return false;
    if (!*subnet_id == !*port_id) {
        api_fault(c, 400, "BadRequest",
                  *subnet_id ? "Bad router request: Cannot specify both subnet-id and port-id."
                             : "Bad router request: Either subnet_id or port_id must be "
                               "specified.");
        return false;
    }
    return true;
}

static void h_router_add_iface(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_WRITE);
    const char *subnet_id = NULL, *port_id = NULL;
    json_t *router = c && iface_body(c, &subnet_id, &port_id)
                         ? neu_doc_get(c, &neu_router, api_param(c, "id"))
                         : NULL;
    json_t *ifaces = NULL, *subnet = NULL, *net = NULL, *port = NULL, *f;
    size_t i;
    int r;
    if (!router)
        return;
    snprintf(c->target, sizeof(c->target), "%s", neu_s(router, "id"));
    if (!neu_may_change(c, router))
        goto out;
    ifaces = router_ifaces(c->api, router);
    if ((r = api_store_begin(c->api->store)) < 0)
        goto out;
    if (subnet_id) {
        if (!(subnet = neu_doc_get(c, &neu_subnet, subnet_id)) ||
            iface_conflicts(c, ifaces, subnet))
            goto fail;
        if (json_is_null(json_object_get(subnet, "gateway_ip"))) {
            api_fault(c, 400, "BadRequest",
                      "Bad router request: Subnet for router interface must have a gateway IP.");
            goto fail;
        }
        if (!(net = neu_doc_get(c, &neu_network, neu_s(subnet, "network_id"))))
            goto fail;
        json_t *fixed = json_pack("[{s:s,s:O}]", "subnet_id", neu_s(subnet, "id"), "ip_address",
                                  json_object_get(subnet, "gateway_ip"));
        port = neu_port_new(c, net, neu_s(router, "project_id"), NULL, OWNER_RIF,
                            neu_s(router, "id"), fixed);
        json_decref(fixed);
        if (!port)
            goto fail;
    } else {
        if (!(port = neu_doc_get(c, &neu_port, port_id)) || !neu_may_change(c, port))
            goto fail;
        if (neu_s(port, "device_id")[0] || neu_s(port, "device_owner")[0]) {
            api_fault(c, 409, "PortInUse",
                      "Unable to complete operation on port %s for network %s. Port already has "
                      "an attached device %s.",
                      port_id, neu_s(port, "network_id"), neu_s(port, "device_id"));
            goto fail;
        }
        if (!json_array_size(json_object_get(port, "fixed_ips"))) {
            api_fault(c, 400, "BadRequest",
                      "Bad router request: Router port must have at least one fixed IP.");
            goto fail;
        }
        json_array_foreach(json_object_get(port, "fixed_ips"), i, f)
        {
            json_t *sn = neu_doc_get(c, &neu_subnet, neu_s(f, "subnet_id"));
            bool bad = !sn || iface_conflicts(c, ifaces, sn);
            json_decref(sn);
            if (bad)
                goto fail;
        }
        json_object_set_new(port, "device_owner", json_string(OWNER_RIF));
        json_object_set_new(port, "device_id", json_string(neu_s(router, "id")));
        json_object_set_new(port, "security_groups", json_array());
        neu_doc_touch(port);
        if ((r = neu_doc_put(c->api, &neu_port, port, false)) < 0) {
            neu_store_fault(c, r);
            goto fail;
        }
    }
    neu_doc_touch(router);
    if ((r = neu_doc_put(c->api, &neu_router, router, false)) < 0) {
        neu_store_fault(c, r);
        goto fail;
    }
    if (neu_commit(c))
        iface_reply(c, router, port);
    goto out;
fail:
    api_store_rollback(c->api->store);
out:
    json_decref(port);
    json_decref(net);
    json_decref(subnet);
    json_decref(ifaces);
    json_decref(router);
}

static void h_router_del_iface(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_WRITE);
    const char *subnet_id = NULL, *port_id = NULL;
    json_t *router = c && iface_body(c, &subnet_id, &port_id)
                         ? neu_doc_get(c, &neu_router, api_param(c, "id"))
                         : NULL;
    json_t *ifaces = NULL, *p, *f, *port = NULL, *sn;
    size_t i, j;
    if (!router)
        return;
    const char *rid = neu_s(router, "id");
    snprintf(c->target, sizeof(c->target), "%s", rid);
    if (!neu_may_change(c, router))
        goto out;
    ifaces = router_ifaces(c->api, router);
    json_array_foreach(ifaces, i, p)
    {
        if (port_id && !strcmp(neu_s(p, "id"), port_id))
            port = p;
        json_array_foreach(json_object_get(p, "fixed_ips"), j,
                           f) if (subnet_id && !strcmp(neu_s(f, "subnet_id"), subnet_id)) port = p;
    }
    if (!port) {
        if (port_id)
            api_fault(c, 404, "RouterInterfaceNotFound",
                      "Router %s does not have an interface with id %s", rid, port_id);
        else
            api_fault(c, 404, "RouterInterfaceNotFoundForSubnet",
                      "Router %s has no interface on subnet %s", rid, subnet_id);
        goto out;
    }
    json_array_foreach(json_object_get(port, "fixed_ips"), i, f)
    {
        IpamCidr cidr;
        if (api_store_get(c->api->store, "subnet", neu_s(f, "subnet_id"), &sn, NULL, 0) < 0)
            continue;
        bool used = ipam_cidr_parse(neu_s(sn, "cidr"), false, &cidr) == 0 &&
                    router_has_fips(c->api, rid, &cidr);
        json_decref(sn);
        if (used) {
            api_fault(c, 409, "RouterInterfaceInUseByFloatingIP",
                      "Router interface for subnet %s on router %s cannot be deleted, as it is "
                      "required by one or more floating IPs.",
                      neu_s(f, "subnet_id"), rid);
            goto out;
        }
    }
    int r = api_store_begin(c->api->store);
    if (r == 0)
        r = neu_port_destroy(c->api, port);
    if (r == 0) {
        neu_doc_touch(router);
        r = neu_doc_put(c->api, &neu_router, router, false);
    }
    if (r < 0) {
        api_store_rollback(c->api->store);
        neu_store_fault(c, r);
    } else if (neu_commit(c))
        iface_reply(c, router, port);
out:
    json_decref(ifaces);
    json_decref(router);
}

/* ---- floating IPs ---- */

/* The router joining the subnet (on network net_id) to external network ext_id, or NULL. */
static json_t *fip_router(Api *a, const char *net_id, const char *subnet_id, const char *ext_id)
{
    json_t *ports = neu_list_of(a, "port", NULL, net_id), *p, *f, *found = NULL;
    size_t i, j;
    json_array_foreach(ports, i, p)
    {
        if (found || strcmp(neu_s(p, "device_owner"), OWNER_RIF) != 0)
            continue;
        json_array_foreach(json_object_get(p, "fixed_ips"), j, f)
        {
            json_t *r;
            if (found || strcmp(neu_s(f, "subnet_id"), subnet_id) != 0 ||
                api_store_get(a->store, "router", neu_s(p, "device_id"), &r, NULL, 0) < 0)
                continue;
            if (!strcmp(neu_s(json_object_get(r, "external_gateway_info"), "network_id"), ext_id))
                found = r;
            else
                json_decref(r);
        }
    }
    json_decref(ports);
    return found;
}

/* Associates the floating IP with port_id (NULL: disassociates). */
static bool fip_associate(ApiCall *c, json_t *fip, const char *port_id, const char *fixed)
{
    json_t *port, *f, *use = NULL, *router = NULL, *others, *o;
    size_t i, nv4 = 0;
    if (!port_id) {
        json_object_update_new(fip, json_pack("{s:n,s:n,s:n,s:s}", "port_id", "fixed_ip_address",
                                              "router_id", "status", "DOWN"));
        return true;
    }
    if (!(port = neu_doc_get(c, &neu_port, port_id)))
        return false;
    if (strcmp(neu_s(port, "project_id"), neu_s(fip, "project_id")) != 0) {
        json_decref(port);
        api_fault(c, 404, "PortNotFound", "Port %s could not be found.", port_id);
        return false;
    }
    json_array_foreach(json_object_get(port, "fixed_ips"), i, f)
    {
        IpamAddr a;
        if (ipam_addr_parse(neu_s(f, "ip_address"), &a) < 0 || a.family != 4)
            continue;
        nv4++;
        if (!use && (!fixed || !strcmp(fixed, neu_s(f, "ip_address"))))
            use = f;
    }
    if (!use || (!fixed && nv4 > 1)) {
        if (fixed)
            api_fault(c, 400, "BadRequest",
                      "Bad floatingip request: Port %s does not have fixed ip %.64s.", port_id,
                      fixed);
        else
            api_fault(c, 400, "BadRequest",
                      nv4 ? "Bad floatingip request: Port %s has multiple fixed IPv4 addresses. "
                            "Must provide a specific IPv4 address when assigning a floating IP."
                          : "Bad floatingip request: Port %s does not have any IPv4 address.",
                      port_id);
        goto fail;
    }
    const char *ext = neu_s(fip, "floating_network_id");
    if (!(router = fip_router(c->api, neu_s(port, "network_id"), neu_s(use, "subnet_id"), ext))) {
        api_fault(c, 404, "ExternalGatewayForFloatingIPNotFound",
                  "External network %s is not reachable from subnet %s.  Therefore, cannot "
                  "associate Port %s with a Floating IP.",
                  ext, neu_s(use, "subnet_id"), port_id);
        goto fail;
    }
    others = neu_list_of(c->api, "floatingip", NULL, ext);
    json_array_foreach(others, i, o)
    {
        if (strcmp(neu_s(o, "id"), neu_s(fip, "id")) != 0 &&
            !strcmp(neu_s(o, "port_id"), port_id) &&
            !strcmp(neu_s(o, "fixed_ip_address"), neu_s(use, "ip_address"))) {
            api_fault(c, 409, "FloatingIPPortAlreadyAssociated",
                      "Cannot associate floating IP %s (%s) with port %s using fixed IP %s, as "
                      "that fixed IP already has a floating IP on external network %s.",
                      neu_s(fip, "floating_ip_address"), neu_s(fip, "id"), port_id,
                      neu_s(use, "ip_address"), ext);
            json_decref(others);
            goto fail;
        }
    }
    json_decref(others);
    json_object_update_new(fip, json_pack("{s:s,s:O,s:s,s:s}", "port_id", port_id,
                                          "fixed_ip_address", json_object_get(use, "ip_address"),
                                          "router_id", neu_s(router, "id"), "status", "ACTIVE"));
    json_decref(router);
    json_decref(port);
    return true;
fail:
    json_decref(router);
    json_decref(port);
    return false;
}

static void h_fip_list(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_READ);
    if (c)
        neu_reply_list(c, &neu_floatingip, neu_list_visible(c, &neu_floatingip));
}

static void h_fip_show(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_READ);
    json_t *doc = c ? neu_doc_get(c, &neu_floatingip, api_param(c, "id")) : NULL;
    if (doc)
        neu_reply_doc(c, 200, &neu_floatingip, doc);
}

static void h_fip_create(SovHttpReq *req, void *ud)
{
    static const char *const keys[] = {"floating_network_id",
                                       "port_id",
                                       "fixed_ip_address",
                                       "floating_ip_address",
                                       "subnet_id",
                                       "description",
                                       "project_id",
                                       "tenant_id",
                                       "qos_policy_id",
                                       "tags",
                                       NULL};
    ApiCall *c = neu_begin(req, ud, API_NEED_WRITE);
    json_t *b = c ? neu_body(c, "floatingip", keys) : NULL, *net = NULL, *port = NULL, *doc = NULL;
    const char *net_id = NULL, *port_id = NULL, *fixed = NULL, *addr = NULL, *subnet_id = NULL;
    char project[API_ID_LEN + 1], id[API_UUID_LEN + 1];
    if (!b || !neu_owner(c, b, project) ||
        !neu_get_str(c, b, "floating_network_id", 64, false, &net_id) ||
        !neu_get_str(c, b, "port_id", 64, true, &port_id) ||
        !neu_get_str(c, b, "fixed_ip_address", 64, true, &fixed) ||
        !neu_get_str(c, b, "floating_ip_address", 64, false, &addr) ||
        !neu_get_str(c, b, "subnet_id", 64, false, &subnet_id) ||
        !neu_must_be_null(c, b, "qos_policy_id"))
        return;
    if (!net_id) {
        api_fault(c, 400, "HTTPBadRequest",
                  "Failed to parse request. Required attribute "
                  "'floating_network_id' not specified");
        return;
    }
    if (!(net = neu_doc_get(c, &neu_network, net_id)))
        return;
    if (!json_is_true(json_object_get(net, "router:external"))) {
        api_fault(c, 400, "BadRequest",
                  "Bad floatingip request: Network %s is not a valid external network.", net_id);
        goto out;
    }
    if (!neu_quota(c, project, "floatingip", 1))
        goto out;
    api_new_uuid(id);
    snprintf(c->target, sizeof(c->target), "%s", id);
    json_t *want = NULL;
    if (addr || subnet_id)
        want = json_pack("[{s:s*,s:s*}]", "subnet_id", subnet_id, "ip_address", addr);
    int r = api_store_begin(c->api->store);
    if (r == 0)
        port = neu_port_new(c, net, "", NULL, OWNER_FIP, id, want);
    json_decref(want);
    if (!port)
        goto fail;
    doc = neu_doc_new(project, id);
    json_object_update_new(
        doc, json_pack("{s:O,s:s,s:n,s:n,s:n,s:s,s:s,s:n,s:n,s:s}", "floating_ip_address",
                       json_object_get(json_array_get(json_object_get(port, "fixed_ips"), 0),
                                       "ip_address"),
                       "floating_network_id", neu_s(net, "id"), "router_id", "port_id",
                       "fixed_ip_address", "status", "DOWN", "description", "", "port_details",
                       "qos_policy_id", "_port", neu_s(port, "id")));
    if (!neu_copy_std(c, b, doc) || !fip_associate(c, doc, port_id, fixed))
        goto fail;
    if ((r = neu_doc_put(c->api, &neu_floatingip, doc, true)) < 0) {
        neu_store_fault(c, r);
        goto fail;
    }
    if (neu_commit(c))
        neu_reply_doc(c, 201, &neu_floatingip, json_incref(doc));
    goto out;
fail:
    api_store_rollback(c->api->store);
out:
    json_decref(doc);
    json_decref(port);
    json_decref(net);
}

static void h_fip_update(SovHttpReq *req, void *ud)
{
    static const char *const keys[] = {"port_id",
                                       "fixed_ip_address",
                                       "description",
                                       "qos_policy_id",
                                       "tags",
                                       "id",
                                       "floating_ip_address",
                                       "floating_network_id",
                                       "project_id",
                                       "tenant_id",
                                       "router_id",
                                       "status",
                                       NULL};
    static const char *const ro[] = {"id",
                                     "floating_ip_address",
                                     "floating_network_id",
                                     "project_id",
                                     "tenant_id",
                                     "router_id",
                                     "status",
                                     NULL};
    ApiCall *c = neu_begin(req, ud, API_NEED_WRITE);
    json_t *b = c ? neu_body(c, "floatingip", keys) : NULL;
    json_t *doc =
        b && neu_readonly(c, b, ro) ? neu_doc_get(c, &neu_floatingip, api_param(c, "id")) : NULL;
    const char *port_id = NULL, *fixed = NULL;
    if (!doc)
        return;
    snprintf(c->target, sizeof(c->target), "%s", neu_s(doc, "id"));
    if (!neu_may_change(c, doc) || !neu_get_str(c, b, "port_id", 64, true, &port_id) ||
        !neu_get_str(c, b, "fixed_ip_address", 64, true, &fixed) ||
        !neu_must_be_null(c, b, "qos_policy_id") || !neu_copy_std(c, b, doc))
        goto out;
    if (json_object_get(b, "port_id") && !fip_associate(c, doc, port_id, fixed))
        goto out;
    neu_doc_touch(doc);
    int r = neu_doc_put(c->api, &neu_floatingip, doc, false);
    if (r < 0)
        neu_store_fault(c, r);
    else
        neu_reply_doc(c, 200, &neu_floatingip, json_incref(doc));
out:
    json_decref(doc);
}

static void h_fip_delete(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_WRITE);
    json_t *doc = c ? neu_doc_get(c, &neu_floatingip, api_param(c, "id")) : NULL;
    if (!doc)
        return;
    snprintf(c->target, sizeof(c->target), "%s", neu_s(doc, "id"));
    if (neu_may_change(c, doc)) {
        json_t *port = neu_port_get(c->api, neu_s(doc, "_port"));
        int r = api_store_begin(c->api->store);
        if (r == 0 && port)
            r = neu_port_destroy(c->api, port);
        if (r == 0)
            r = api_store_delete(c->api->store, "floatingip", neu_s(doc, "id"));
        if (r < 0) {
            api_store_rollback(c->api->store);
            neu_store_fault(c, r);
        } else if (neu_commit(c))
            api_reply(c, 204, NULL);
        json_decref(port);
    }
    json_decref(doc);
}

void neu_l3_routes(Api *a)
{
    static const struct {
        const char *method, *path;
        SovHttpHandler h;
    } routes[] = {
        {"GET", NEU_PREFIX "/routers", h_router_list},
        {"POST", NEU_PREFIX "/routers", h_router_create},
        {"GET", NEU_PREFIX "/routers/{id}", h_router_show},
        {"PUT", NEU_PREFIX "/routers/{id}", h_router_update},
        {"DELETE", NEU_PREFIX "/routers/{id}", h_router_delete},
        {"PUT", NEU_PREFIX "/routers/{id}/add_router_interface", h_router_add_iface},
        {"PUT", NEU_PREFIX "/routers/{id}/remove_router_interface", h_router_del_iface},
        {"GET", NEU_PREFIX "/floatingips", h_fip_list},
        {"POST", NEU_PREFIX "/floatingips", h_fip_create},
        {"GET", NEU_PREFIX "/floatingips/{id}", h_fip_show},
        {"PUT", NEU_PREFIX "/floatingips/{id}", h_fip_update},
        {"DELETE", NEU_PREFIX "/floatingips/{id}", h_fip_delete},
    };
    for (size_t i = 0; i < ELEMENTSOF(routes); i++)
        sov_router_add(a->router, routes[i].method, routes[i].path, 0, routes[i].h, a);
}
