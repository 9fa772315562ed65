/* SPDX-License-Identifier: Apache-2.0 */
/* CRC-32C (Castagnoli), the block checksum of sov-s3's data files and sov-block's map journals: the
 * SSE4.2 instruction where the CPU has it (about 10 GB/s on one core), a table otherwise. The
 * interface chains like zlib's crc32(): sov_crc32c(0, p, n) is the CRC of p,
 * sov_crc32c(sov_crc32c(0, a, x), b, y) the CRC of a followed by b. */
#include <stdbool.h>
#include <string.h>

#include <uv.h>

#include "sov/crypto.h"

#if defined(__x86_64__)
#include <nmmintrin.h>

__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p,
                                                            size_t n)
{
    uint64_t c = ~crc;
    while (n && ((uintptr_t)p & 7)) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        n--;
    }
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        n -= 8;
    }
    while (n--)
        c = _mm_crc32_u8((uint32_t)c, *p++);
    return ~(uint32_t)c;
}
#endif

static uint32_t table[256];

static void table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        table[i] = c;
    }
}

uint32_t sov_crc32c_sw(uint32_t crc, const void *data, size_t n)
{
    static uv_once_t once = UV_ONCE_INIT;
    const uint8_t *p = data;
    uint32_t c = ~crc;
    uv_once(&once, table_init);
    while (n--)
        c = table[(c ^ *p++) & 0xff] ^ (c >> 8);
    return ~c;
}

uint32_t sov_crc32c(uint32_t crc, const void *data, size_t n)
{
#if defined(__x86_64__)
    static int hw = -1;
    if (hw < 0)
        hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
    if (hw)
        return crc32c_hw(crc, data, n);
#endif
    return sov_crc32c_sw(crc, data, n);
}
