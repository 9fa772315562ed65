/* SPDX-License-Identifier: Apache-2.0 */
/* String views and the one growable byte buffer of sovcloud, plus a per-request arena.
 * Views never own memory; a buffer owns its bytes; an arena frees everything it handed out
 * in one go. */
#ifndef SOV_BUF_H
#define SOV_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <stdarg.h>

#include "sov/macro.h"

/* A borrowed view of bytes: not NUL-terminated, never freed through the view. */
typedef struct SovStr {
    const char *ptr;
    size_t len;
} SovStr;

#define SOV_STR(lit)   ((SovStr){(lit), sizeof(lit) - 1})
#define SOV_STR_NULL   ((SovStr){NULL, 0})
#define SOV_STR_FMT    "%.*s"
#define SOV_STR_ARG(s) (int)(s).len, (s).ptr

static inline SovStr sov_str(const char *s)
{
    return (SovStr){s, s ? strlen(s) : 0};
}

static inline bool sov_str_eq(SovStr a, SovStr b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

bool sov_str_eq_ci(SovStr a, SovStr b);
bool sov_str_has_prefix(SovStr s, SovStr prefix);
/* Parses a whole view as an unsigned decimal number; -ERANGE on overflow, -EINVAL otherwise. */
int sov_str_to_u64(SovStr s, uint64_t *ret);

/* Growable buffer. Invariants: len <= cap; when cap > 0, ptr[len] == '\0' (so a buffer can be
 * used as a C string when it holds text); max bounds growth, 0 meaning SIZE_MAX/2. */
typedef struct SovBuf {
    char *ptr;
    size_t len;
    size_t cap;
    size_t max;
} SovBuf;

#define SOV_BUF_INIT                                                                               \
    {                                                                                              \
        NULL, 0, 0, 0                                                                              \
    }

void sov_buf_init(SovBuf *b, size_t max);
void sov_buf_release(SovBuf *b);
/* Makes room for n more bytes; -ENOMEM or -E2BIG (past max). */
int sov_buf_reserve(SovBuf *b, size_t n);
int sov_buf_append(SovBuf *b, const void *p, size_t n);
int sov_buf_append_str(SovBuf *b, SovStr s);
int sov_buf_puts(SovBuf *b, const char *s);
int sov_buf_putc(SovBuf *b, char c);
int sov_buf_printf(SovBuf *b, const char *fmt, ...) _printf_(2, 3);
int sov_buf_vprintf(SovBuf *b, const char *fmt, va_list ap) _printf_(2, 0);
int sov_buf_put_u64(SovBuf *b, uint64_t v);
void sov_buf_reset(SovBuf *b);
/* Drops the first n bytes, moving the rest to the front. */
void sov_buf_consume(SovBuf *b, size_t n);
/* Hands the bytes to the caller (free() them); the buffer is empty afterwards. */
char *sov_buf_steal(SovBuf *b);

static inline SovStr sov_buf_str(const SovBuf *b)
{
    return (SovStr){b->ptr, b->len};
}

/* Bump allocator for request-lifetime memory: allocations are never freed one by one, only
 * all together with sov_arena_reset()/sov_arena_release(). The first block is inline in the
 * owner's struct so a small request allocates nothing from malloc. */
typedef struct SovArenaBlock SovArenaBlock;
typedef struct SovArena {
    SovArenaBlock *head;
    size_t used;  /* bytes used in head */
    size_t total; /* bytes handed out since the last reset */
    size_t max;   /* limit on total, 0 = unlimited */
} SovArena;

void sov_arena_init(SovArena *a, size_t max);
void *sov_arena_alloc(SovArena *a, size_t n);
char *sov_arena_strndup(SovArena *a, const char *s, size_t n);
char *sov_arena_printf(SovArena *a, const char *fmt, ...) _printf_(2, 3);
void sov_arena_reset(SovArena *a);
void sov_arena_release(SovArena *a);

#endif
