/*
 * net: what the service needs to know about addresses.
 *
 * One question today: is a host loopback? Both "may the producer API listen here without
 * an api_token" (lib/api.c, `outbox` checks) and "may the API key travel in clear text to
 * this http:// URL" (lib/config.c) ask it, and must answer it the same way.
 */
#ifndef OBX_NET_H
#define OBX_NET_H

/*
 * 1 when host resolves, and every address it resolves to is loopback (127.0.0.0/8, ::1,
 * or ::ffff:127.0.0.0/104); 0 otherwise, including when it does not resolve. host is an IP
 * address in any form getaddrinfo() reads ("127.1", "::ffff:127.0.0.1", "[::1]" with or
 * without brackets) or a name, looked up like any other (/etc/hosts, then DNS: this may
 * block; call it at start-up or on reload, never per request). "0.0.0.0" and "::" are not
 * loopback: they listen on every interface. Builds with OBX_NET_NO_DNS (the fuzz targets)
 * resolve numeric hosts and "localhost" only, so that fuzzing sends no DNS query.
 */
int obx_net_host_is_loopback(const char *host);

#endif
