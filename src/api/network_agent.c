/* SPDX-License-Identifier: Apache-2.0 */
/* Neutron's agents, read from the network hosts that register with the agent API
 * (agent.c): every sov-net host is a Linux bridge agent (its ports and VXLAN devices), and one
 * with [net] l3 on is also an L3 agent and a DHCP agent, which host every router and DHCP server
 * while that host holds the l3 role ("l3_active"):
 *   GET /v2.0/agents, /v2.0/agents/{id}      `openstack network agent list/show`
 *   GET /v2.0/routers/{id}/l3-agents         `openstack network agent list --router R`
 *   GET /v2.0/networks/{id}/dhcp-agents      `openstack network agent list --network N`
 *   GET /v2.0/agents/{id}/l3-routers         `openstack router list --agent A`
 *   GET /v2.0/agents/{id}/dhcp-networks      `openstack network list --agent A`
 *   PUT /v2.0/agents/{id}                    `openstack network agent set --disable/--enable
 *                                            [--description D]`
 * An agent's id derives from its host and type, so it stays the same across restarts. Agents
 * come and go with their hosts: they cannot be deleted here. Others than the admin
 * list none and find none (as Neutron's policy has it); the lists of what an agent hosts and
 * which agents host something are the admin's alone (403). */
#include <stdio.h>
#include <string.h>

#include "network-int.h"

static const NeuKind neu_agent = {
    "agent", "agent", "agents", "agents", "AgentNotFound", "Agent", "could not be found."};

/* Neutron's agent types: type, binary, topic; whether only l3 hosts have one. */
static const struct {
    const char *type, *binary, *topic;
    bool l3;
} agent_types[] = {
    {"Linux bridge agent", "neutron-linuxbridge-agent", "N/A", false},
    {"L3 agent", "neutron-l3-agent", "l3_agent", true},
    {"DHCP agent", "neutron-dhcp-agent", "dhcp_agent", true},
};

enum { AGENT_L2, AGENT_L3, AGENT_DHCP };

/* Neutron's time format in agents: "2026-11-27 10:00:00". */
static json_t *agent_time(json_t *ms)
{
    char t[32];
    api_time_iso(json_integer_value(ms), t);
    t[10] = ' ';
    t[19] = '\0';
    return json_string(t);
}

/* The agent of type ti on network host document h, or NULL when h has none of that type. */
static json_t *agent_view(Api *a, json_t *h, size_t ti)
{
    json_t *info = json_object_get(h, "info");
    bool l3 = json_is_true(json_object_get(info, "l3"));
    if (strcmp(neu_s(h, "kind"), "network") != 0 || (agent_types[ti].l3 && !l3))
        return NULL;
    /* the machine's name: sov-net registers as <machine>.net, ports are bound to <machine> */
    char host[64], seed[128], id[API_UUID_LEN + 1];
    snprintf(host, sizeof(host), "%s", neu_s(h, "host"));
    size_t n = strlen(host);
    if (n > 4 && strcmp(host + n - 4, ".net") == 0)
        host[n - 4] = '\0';
    snprintf(seed, sizeof(seed), "neutron-agent/%s/%zu", host, ti);
    api_name_uuid(seed, id);
    /* l3_realised on every agent: any host that still has routers holds a move back */
    json_t *conf = json_pack("{s:s,s:b}", "tunnel_ip", neu_s(info, "tunnel_ip"), "l3_realised",
                             json_is_true(json_object_get(info, "l3_realised")));
    if (ti != AGENT_L2) {
        /* the role's last grant to this host, and the last the host reported learning of (a
         * host whose two differ holds a move back: agent.c) */
        json_object_set_new(conf, "l3_active",
                            json_boolean(json_is_true(json_object_get(h, "l3_active"))));
        json_object_set_new(conf, "l3_term",
                            json_integer(json_integer_value(json_object_get(h, "l3_term"))));
        json_t *seen = json_object_get(info, "l3_term");
        json_object_set_new(conf, "l3_term_seen",
                            json_is_integer(seen) ? json_incref(seen) : json_null());
    }
    json_t *desc = json_object_get(json_object_get(h, "agent_descriptions"), agent_types[ti].type);
    bool up = ti == AGENT_L2 || !json_is_true(json_object_get(h, "l3_disabled"));
    return json_pack("{s:s,s:s,s:s,s:s,s:s?,s:b,s:b,s:s,s:o,s:o,s:o,s:o,s:O,s:n,s:s}", "id", id,
                     "agent_type", agent_types[ti].type, "binary", agent_types[ti].binary, "host",
                     host, "availability_zone", ti == AGENT_L2 ? NULL : neu_s(h, "zone"), "alive",
                     api_host_up(a, h), "admin_state_up", up, "topic", agent_types[ti].topic,
                     "configurations", conf, "created_at",
                     agent_time(json_object_get(h, "registered_ms")), "started_at",
                     agent_time(json_object_get(h, "registered_ms")), "heartbeat_timestamp",
                     agent_time(json_object_get(h, "last_seen_ms")), "description",
                     desc ? desc : json_null(), "resources_synced", "_host", neu_s(h, "host"));
}

/* Every agent (of type ti, or of all types when ti < 0); with l3_holder, only the L3 or DHCP
 * agent of the host holding the l3 role. */
static json_t *agents(Api *a, int ti, bool l3_holder)
{
    json_t *hosts = neu_list_of(a, "host", NULL, "network"), *out = json_array(), *h, *v;
    size_t i;
    json_array_foreach(hosts, i, h)
    {
        if (l3_holder && !json_is_true(json_object_get(h, "l3_active")))
            continue;
        for (size_t t = 0; t < ELEMENTSOF(agent_types); t++)
            if ((ti < 0 || (size_t)ti == t) && (v = agent_view(a, h, t)))
                json_array_append_new(out, v);
    }
    json_decref(hosts);
    return out;
}

/* The agent with id, or NULL after answering 404. */
static json_t *agent_find(ApiCall *c, const char *id)
{
    json_t *all = agents(c->api, -1, false), *v, *found = NULL;
    size_t i;
    json_array_foreach(all, i, v) if (strcmp(neu_s(v, "id"), id) == 0) found = json_incref(v);
    json_decref(all);
    if (!found)
        neu_not_found(c, &neu_agent, id);
    return found;
}

/* As Neutron's policy (agents are the admin's): others list none and find none. */
static void h_agent_list(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_READ);
    if (c)
        neu_reply_list(c, &neu_agent,
                       c->auth.system_admin ? agents(c->api, -1, false) : json_array());
}

static void h_agent_show(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_READ);
    if (c && !c->auth.system_admin) {
        neu_not_found(c, &neu_agent, api_param(c, "id"));
        return;
    }
    json_t *v = c ? agent_find(c, api_param(c, "id")) : NULL;
    if (v)
        neu_reply_doc(c, 200, &neu_agent, v);
}

/* An agent's description, and the admin_state_up of an L3 or DHCP agent: whether its host may
 * hold the l3 role (both agents follow; `openstack network agent set --disable` moves the role
 * off a host for maintenance, once that host has removed what it realised). A Linux bridge agent
 * stays up. */
static void h_agent_update(SovHttpReq *req, void *ud)
{
    static const char *const keys[] = {"admin_state_up", "description", NULL};
    ApiCall *c = neu_begin(req, ud, API_NEED_READ);
    if (c && !c->auth.system_admin) { /* others find none (h_agent_show) */
        neu_not_found(c, &neu_agent, api_param(c, "id"));
        return;
    }
    json_t *b = c ? neu_body(c, "agent", keys) : NULL;
    bool up = true;
    const char *desc = NULL;
    if (!b || !neu_get_bool(c, b, "admin_state_up", &up) ||
        !neu_get_str(c, b, "description", NEU_NAME_MAX, true, &desc))
        return;
    json_t *v = agent_find(c, api_param(c, "id"));
    if (!v)
        return;
    bool l2 = strcmp(neu_s(v, "agent_type"), agent_types[AGENT_L2].type) == 0;
    if (l2 && !up) {
        json_decref(v);
        neu_invalid(c, "admin_state_up",
                    "the Linux bridge agent of a host carries its ports and cannot be disabled");
        return;
    }
    snprintf(c->target, sizeof(c->target), "%s", neu_s(v, "id"));
    int enable = json_object_get(b, "admin_state_up") && !l2 ? up : -1;
    int r = api_host_agent_set(c->api, neu_s(v, "_host"), neu_s(v, "agent_type"),
                               json_object_get(b, "description") != NULL, desc, enable);
    json_decref(v);
    if (r < 0) {
        neu_store_fault(c, r);
        return;
    }
    if ((v = agent_find(c, api_param(c, "id"))))
        neu_reply_doc(c, 200, &neu_agent, v);
}

static void h_router_l3_agents(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_ADMIN);
    json_t *r = c ? neu_doc_get(c, &neu_router, api_param(c, "id")) : NULL;
    if (!r)
        return;
    json_decref(r);
    json_t *arr = agents(c->api, AGENT_L3, true), *v;
    size_t i;
    json_array_foreach(arr, i, v) json_object_set_new(v, "ha_state", json_null());
    neu_reply_list(c, &neu_agent, arr);
}

/* Whether network net_id has a DHCP server: one of its subnets with DHCP. */
static bool net_has_dhcp(Api *a, const char *net_id)
{
    json_t *subs = neu_list_of(a, "subnet", NULL, net_id), *s;
    size_t i;
    bool dhcp = false;
    json_array_foreach(subs, i, s) dhcp |= json_is_true(json_object_get(s, "enable_dhcp"));
    json_decref(subs);
    return dhcp;
}

static void h_network_dhcp_agents(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_ADMIN);
    json_t *net = c ? neu_doc_get(c, &neu_network, api_param(c, "id")) : NULL;
    if (!net)
        return;
    bool dhcp = net_has_dhcp(c->api, neu_s(net, "id"));
    json_decref(net);
    neu_reply_list(c, &neu_agent, dhcp ? agents(c->api, AGENT_DHCP, true) : json_array());
}

/* What agent id hosts: routers (L3 agent) or networks with a DHCP subnet (DHCP agent) while its
 * host holds the l3 role. */
static void hosted(SovHttpReq *req, void *ud, int ti, const NeuKind *k)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_ADMIN);
    json_t *v = c ? agent_find(c, api_param(c, "id")) : NULL;
    if (!v)
        return;
    bool holds = strcmp(neu_s(v, "agent_type"), agent_types[ti].type) == 0 &&
                 json_is_true(json_object_get(json_object_get(v, "configurations"), "l3_active"));
    json_decref(v);
    json_t *all = holds ? neu_list_of(c->api, k->kind, NULL, NULL) : json_array();
    json_t *out = json_array(), *d;
    size_t i;
    json_array_foreach(all, i, d) if (ti != AGENT_DHCP || net_has_dhcp(c->api, neu_s(d, "id")))
        json_array_append(out, d);
    json_decref(all);
    neu_reply_list(c, k, out);
}

static void h_agent_l3_routers(SovHttpReq *req, void *ud)
{
    hosted(req, ud, AGENT_L3, &neu_router);
}

static void h_agent_dhcp_networks(SovHttpReq *req, void *ud)
{
    hosted(req, ud, AGENT_DHCP, &neu_network);
}

void neu_agent_routes(Api *a)
{
    static const struct {
        const char *path;
        SovHttpHandler h;
    } routes[] = {
        {NEU_PREFIX "/agents", h_agent_list},
        {NEU_PREFIX "/agents/{id}", h_agent_show},
        {NEU_PREFIX "/agents/{id}/l3-routers", h_agent_l3_routers},
        {NEU_PREFIX "/agents/{id}/dhcp-networks", h_agent_dhcp_networks},
        {NEU_PREFIX "/routers/{id}/l3-agents", h_router_l3_agents},
        {NEU_PREFIX "/networks/{id}/dhcp-agents", h_network_dhcp_agents},
    };
    for (size_t i = 0; i < ELEMENTSOF(routes); i++)
        sov_router_add(a->router, "GET", routes[i].path, 0, routes[i].h, a);
    sov_router_add(a->router, "PUT", NEU_PREFIX "/agents/{id}", 0, h_agent_update, a);
}
