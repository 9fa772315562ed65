/* SPDX-License-Identifier: Apache-2.0 */
/* Small language helpers shared by all of sovcloud: cleanup attributes with explicit ownership
 * transfer (TAKE_PTR), array sizing and branch hints. */
#ifndef SOV_MACRO_H
#define SOV_MACRO_H

#include <stdlib.h>
#include <unistd.h>
#include <errno.h>

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))
#define likely(x)     __builtin_expect(!!(x), 1)
#define unlikely(x)   __builtin_expect(!!(x), 0)
#define SOV_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SOV_MAX(a, b) ((a) > (b) ? (a) : (b))

static inline void sov_freep(void *p)
{
    free(*(void **)p);
}

static inline void sov_closep(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}

#define _cleanup_(f)    __attribute__((cleanup(f)))
#define _cleanup_free_  _cleanup_(sov_freep)
#define _cleanup_close_ _cleanup_(sov_closep)
#define _unused_        __attribute__((unused))
#define _printf_(a, b)  __attribute__((format(printf, a, b)))

/* Hands ownership of a pointer to the caller: the cleanup attribute then sees NULL. */
#define TAKE_PTR(p)                                                                                \
    ({                                                                                             \
        __typeof__(p) _p_ = (p);                                                                   \
        (p) = NULL;                                                                                \
        _p_;                                                                                       \
    })

#define TAKE_FD(fd)                                                                                \
    ({                                                                                             \
        int _fd_ = (fd);                                                                           \
        (fd) = -1;                                                                                 \
        _fd_;                                                                                      \
    })

#endif
