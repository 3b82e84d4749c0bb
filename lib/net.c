/* net: loopback checks by resolution, never by the spelling of a host. */
#include "net.h"

#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

static int
addr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return 1;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return 0;
}

int
obx_net_host_is_loopback(const char *host)
{
    struct addrinfo hints, *res = NULL;
    char h[256];
    size_t n;
    int all = 0;

    if (!host)
        return 0;
    n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') { /* a bracketed IPv6 literal */
        host++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof h)
        return 0;
    memcpy(h, host, n);
    h[n] = '\0';
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
#ifdef OBX_NET_NO_DNS
    if (strcasecmp(h, "localhost") != 0)
        hints.ai_flags = AI_NUMERICHOST;
#endif
    if (getaddrinfo(h, NULL, &hints, &res) != 0)
        return 0;
    all = res != NULL;
    for (const struct addrinfo *ai = res; ai && all; ai = ai->ai_next)
        all = addr_is_loopback(ai->ai_addr);
    freeaddrinfo(res);
    return all;
}
