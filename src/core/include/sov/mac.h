/* SPDX-License-Identifier: Apache-2.0 */
/* Ethernet addresses in text: what sov-api takes as a port's mac_address and what sov-net reads
 * back from the documents it realises. */
#ifndef SOV_MAC_H
#define SOV_MAC_H

#include <stdbool.h>
#include <stdint.h>

/* Six pairs of hex digits (either case) joined by ':' or '-' (one kind throughout) into out. */
bool sov_mac_parse(const char *s, uint8_t out[6]);
/* Whether mac is one a port may have: unicast (group bit clear) and not all zeros. */
bool sov_mac_unicast(const uint8_t mac[6]);
/* The lower-case ':' form. */
void sov_mac_format(const uint8_t mac[6], char out[18]);
/* Text s as the lower-case ':' form of a MAC a port may have (sov_mac_unicast), or false. */
bool sov_mac_port(const char *s, char out[18]);

#endif
