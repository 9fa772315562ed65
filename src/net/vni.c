/* SPDX-License-Identifier: Apache-2.0 */
/* sov-net's VXLAN network identifiers (see vni.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vni.h"

#define VNI_MAX 16777214 /* 2^24 - 2: 0 and 0xffffff avoided */

json_int_t net_vni_first(const char *id)
{
    unsigned long v = 0;
    int k = 0;
    for (const char *p = id; p && *p && k < 6; p++) {
        if (*p == '-')
            continue;
        int d = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;
        if (d < 0)
            return 0;
        v = v << 4 | (unsigned long)d;
        k++;
    }
    return k == 6 ? (json_int_t)(v % VNI_MAX) + 1 : 0;
}

typedef struct VniClaim {
    const char *created, *id;
    json_int_t vni;
} VniClaim;

static int claim_cmp(const void *pa, const void *pb)
{
    const VniClaim *a = pa, *b = pb;
    int c = strcmp(a->created, b->created);
    return c ? c : strcmp(a->id, b->id);
}

static const char *str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

json_t *net_vni_plan(json_t *subnets)
{
    size_t i, n = 0;
    json_t *v, *ret = json_object(), *taken = json_object();
    VniClaim *c = calloc(json_array_size(subnets) + 1, sizeof(*c));
    char key[24];
    if (!c || !ret || !taken)
        goto fail;
    json_array_foreach(subnets, i, v)
    {
        c[n].vni = net_vni_first(str(v, "id"));
        if (c[n].vni == 0 || strlen(str(v, "id")) > 64)
            continue;
        c[n].created = str(v, "created_at");
        c[n++].id = str(v, "id");
    }
    if (n)
        qsort(c, n, sizeof(*c), claim_cmp);
    for (i = 0; i < n; i++) {
        if (json_object_get(ret, c[i].id))
            continue; /* the same id twice: its first claim stands */
        json_int_t vni = c[i].vni;
        for (;;) { /* at most one more step than there are subnets */
            snprintf(key, sizeof(key), "%lld", (long long)vni);
            if (!json_object_get(taken, key))
                break;
            vni = vni % VNI_MAX + 1;
        }
        if (json_object_set_new(taken, key, json_true()) < 0 ||
            json_object_set_new(ret, c[i].id, json_integer(vni)) < 0)
            goto fail;
    }
    json_decref(taken);
    free(c);
    return ret;
fail:
    json_decref(taken);
    json_decref(ret);
    free(c);
    return NULL;
}
