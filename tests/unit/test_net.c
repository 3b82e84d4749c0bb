/*
 * test_net: is a host loopback, decided by what it resolves to, not by how it is spelt.
 * Only numeric hosts and "localhost" (/etc/hosts) are asked: no case here sends a DNS
 * query, and garbage is the kind refused before any lookup.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "net.h"

/* 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104, however written; and localhost. */
static int
test_loopback(void)
{
    static const char *const yes[] = {
        "127.0.0.1", "127.1",           "127.255.255.254",  "127.0.0.2",          "::1",
        "[::1]",     "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1", "[::ffff:127.9.8.7]", "localhost",
        "LOCALHOST",
    };
    TEST_BEGIN;

    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (!obx_net_host_is_loopback(yes[i]))
            fprintf(stderr, "  not loopback: %s\n", yes[i]);
        CHECK_INT(obx_net_host_is_loopback(yes[i]), 1);
    }
end:
    TEST_END;
}

/* The wildcard addresses listen everywhere; other addresses are not loopback either. */
static int
test_not_loopback(void)
{
    static const char *const no[] = {
        "0.0.0.0",
        "::",
        "[::]",
        "10.0.0.1",
        "192.0.2.1",
        "128.0.0.1",
        "126.255.255.255",
        "2001:db8::1",
        "::ffff:10.0.0.1",
        "::2",
        "fe80::1",
        "[2001:db8::1]",
    };
    TEST_BEGIN;

    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        if (obx_net_host_is_loopback(no[i]))
            fprintf(stderr, "  loopback: %s\n", no[i]);
        CHECK_INT(obx_net_host_is_loopback(no[i]), 0);
    }
end:
    TEST_END;
}

/* NULL, empty, empty brackets and an over-long host: 0, without a lookup. */
static int
test_garbage(void)
{
    char *longhost = malloc(301);
    TEST_BEGIN;

    CHECK(longhost);
    CHECK_INT(obx_net_host_is_loopback(NULL), 0);
    CHECK_INT(obx_net_host_is_loopback(""), 0);
    CHECK_INT(obx_net_host_is_loopback("[]"), 0);
    /* Longer than any host name: refused before the lookup. */
    memset(longhost, '0', 300);
    memcpy(longhost + 300 - 9, "127.0.0.1", 9);
    longhost[300] = '\0';
    CHECK_INT(obx_net_host_is_loopback(longhost), 0);
end:
    free(longhost);
    TEST_END;
}

static const struct test_case tests[] = {
    {"loopback", test_loopback},
    {"not_loopback", test_not_loopback},
    {"garbage", test_garbage},
    {NULL, NULL},
};

TEST_MAIN(tests)
