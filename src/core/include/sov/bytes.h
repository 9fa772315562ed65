/* SPDX-License-Identifier: Apache-2.0 */
/* Little-endian integers in byte buffers (on-disk headers and authenticated data), whatever
 * the host's byte order and alignment. */
#ifndef SOV_BYTES_H
#define SOV_BYTES_H

#include <stdint.h>

static inline void sov_put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void sov_put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void sov_put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t sov_get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t sov_get_le64(const uint8_t *p)
{
    return (uint64_t)sov_get_le32(p) | (uint64_t)sov_get_le32(p + 4) << 32;
}

#endif
