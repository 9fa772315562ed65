/* SPDX-License-Identifier: Apache-2.0 */
#include <stdio.h>
#include <string.h>

#include "sov/mac.h"

static int hex_digit(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

bool sov_mac_parse(const char *s, uint8_t out[6])
{
    if (!s || strlen(s) != 17 || (s[2] != ':' && s[2] != '-'))
        return false;
    for (int i = 0; i < 6; i++) {
        int h = hex_digit(s[i * 3]), l = hex_digit(s[i * 3 + 1]);
        if (h < 0 || l < 0 || (i < 5 && s[i * 3 + 2] != s[2]))
            return false;
        out[i] = (uint8_t)(h << 4 | l);
    }
    return true;
}

bool sov_mac_unicast(const uint8_t mac[6])
{
    static const uint8_t zero[6];
    return !(mac[0] & 1) && memcmp(mac, zero, 6) != 0;
}

void sov_mac_format(const uint8_t mac[6], char out[18])
{
    snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
             mac[5]);
}

bool sov_mac_port(const char *s, char out[18])
{
    uint8_t m[6];
    if (!sov_mac_parse(s, m) || !sov_mac_unicast(m))
        return false;
    sov_mac_format(m, out);
    return true;
}
