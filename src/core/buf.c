/* SPDX-License-Identifier: Apache-2.0 */
/* SovStr helpers, the growable SovBuf and the SovArena bump allocator. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

#include "sov/buf.h"

bool sov_str_eq_ci(SovStr a, SovStr b)
{
    if (a.len != b.len)
        return false;
    for (size_t i = 0; i < a.len; i++)
        if (tolower((unsigned char)a.ptr[i]) != tolower((unsigned char)b.ptr[i]))
            return false;
    return true;
}

bool sov_str_has_prefix(SovStr s, SovStr prefix)
{
    return s.len >= prefix.len && memcmp(s.ptr, prefix.ptr, prefix.len) == 0;
}

int sov_str_to_u64(SovStr s, uint64_t *ret)
{
    uint64_t v = 0;

    if (s.len == 0)
        return -EINVAL;
    for (size_t i = 0; i < s.len; i++) {
        unsigned d = (unsigned char)s.ptr[i] - '0';
        if (d > 9)
            return -EINVAL;
        if (v > (UINT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *ret = v;
    return 0;
}

void sov_buf_init(SovBuf *b, size_t max)
{
    *b = (SovBuf){.max = max};
}

void sov_buf_release(SovBuf *b)
{
    free(b->ptr);
    b->ptr = NULL;
    b->len = b->cap = 0;
}

int sov_buf_reserve(SovBuf *b, size_t n)
{
    size_t max = b->max ? b->max : SIZE_MAX / 2;
    size_t need, cap;
    char *p;

    if (n > max || b->len > max - n)
        return -E2BIG;
    need = b->len + n + 1;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    if (cap > max + 1)
        cap = max + 1;
    p = realloc(b->ptr, cap);
    if (!p)
        return -ENOMEM;
    b->ptr = p;
    b->cap = cap;
    return 0;
}

int sov_buf_append(SovBuf *b, const void *p, size_t n)
{
    int r = sov_buf_reserve(b, n);
    if (r < 0)
        return r;
    if (n)
        memcpy(b->ptr + b->len, p, n);
    b->len += n;
    b->ptr[b->len] = '\0';
    return 0;
}

int sov_buf_append_str(SovBuf *b, SovStr s)
{
    return sov_buf_append(b, s.ptr, s.len);
}

int sov_buf_puts(SovBuf *b, const char *s)
{
    return sov_buf_append(b, s, strlen(s));
}

int sov_buf_putc(SovBuf *b, char c)
{
    return sov_buf_append(b, &c, 1);
}

int sov_buf_vprintf(SovBuf *b, const char *fmt, va_list ap)
{
    va_list aq;
    int n, r;

    va_copy(aq, ap);
    n = vsnprintf(NULL, 0, fmt, aq);
    va_end(aq);
    if (n < 0)
        return -EINVAL;
    r = sov_buf_reserve(b, (size_t)n);
    if (r < 0)
        return r;
    vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int sov_buf_printf(SovBuf *b, const char *fmt, ...)
{
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = sov_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return r;
}

int sov_buf_put_u64(SovBuf *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);

    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return sov_buf_append(b, tmp + i, sizeof(tmp) - i);
}

void sov_buf_reset(SovBuf *b)
{
    b->len = 0;
    if (b->ptr)
        b->ptr[0] = '\0';
}

void sov_buf_consume(SovBuf *b, size_t n)
{
    if (n >= b->len) {
        sov_buf_reset(b);
        return;
    }
    memmove(b->ptr, b->ptr + n, b->len - n);
    b->len -= n;
    b->ptr[b->len] = '\0';
}

char *sov_buf_steal(SovBuf *b)
{
    char *p = b->ptr;
    if (!p)
        p = calloc(1, 1);
    *b = (SovBuf){.max = b->max};
    return p;
}

/* Arena blocks form a singly linked list, newest first. */
struct SovArenaBlock {
    SovArenaBlock *next;
    size_t size;
    _Alignas(max_align_t) char data[];
};

#define ARENA_BLOCK_SIZE 4096

void sov_arena_init(SovArena *a, size_t max)
{
    *a = (SovArena){.max = max};
}

void *sov_arena_alloc(SovArena *a, size_t n)
{
    size_t align = _Alignof(max_align_t);
    size_t off = (a->used + align - 1) & ~(align - 1);
    SovArenaBlock *blk;

    if (n == 0)
        n = 1;
    if (a->max && (n > a->max || a->total > a->max - n))
        return NULL;
    if (!a->head || off + n > a->head->size) {
        size_t size = n > ARENA_BLOCK_SIZE ? n : ARENA_BLOCK_SIZE;
        blk = malloc(sizeof(*blk) + size);
        if (!blk)
            return NULL;
        blk->size = size;
        blk->next = a->head;
        a->head = blk;
        off = 0;
    }
    a->used = off + n;
    a->total += n;
    return a->head->data + off;
}

char *sov_arena_strndup(SovArena *a, const char *s, size_t n)
{
    char *p = sov_arena_alloc(a, n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *sov_arena_printf(SovArena *a, const char *fmt, ...)
{
    va_list ap;
    int n;
    char *p;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    p = sov_arena_alloc(a, (size_t)n + 1);
    if (!p)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

void sov_arena_reset(SovArena *a)
{
    /* Keep the oldest block (the tail) for reuse; free the rest. */
    SovArenaBlock *b = a->head;
    while (b && b->next) {
        SovArenaBlock *next = b->next;
        free(b);
        b = next;
    }
    a->head = b;
    a->used = 0;
    a->total = 0;
}

void sov_arena_release(SovArena *a)
{
    SovArenaBlock *b = a->head;
    while (b) {
        SovArenaBlock *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
    a->used = a->total = 0;
}
