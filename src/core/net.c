/* SPDX-License-Identifier: Apache-2.0 */
/* Listening sockets. libuv 1.44 cannot set SO_REUSEPORT, so sockets are made here and handed
 * to uv_tcp_open(); several loop threads then each accept on their own socket. */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "sov/http.h"

int sov_listen_tcp(const char *host, int port, bool reuseport, int *ret_fd, int *ret_port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char portstr[16];
    int fd, one = 1, r;

    if (port < 0 || port > 65535)
        return -EINVAL;
    snprintf(portstr, sizeof(portstr), "%d", port);
    r = getaddrinfo(host && *host ? host : NULL, portstr, &hints, &ai);
    if (r != 0)
        return -EINVAL;
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        r = -errno;
        freeaddrinfo(ai);
        return r;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
        r = -errno;
        close(fd);
        freeaddrinfo(ai);
        return r;
    }
    freeaddrinfo(ai);
    if (ret_port) {
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
            r = -errno;
            close(fd);
            return r;
        }
        *ret_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    }
    *ret_fd = fd;
    return 0;
}
