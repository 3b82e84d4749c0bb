/* mem: allocation wrappers with a test-only failure hook. */
#include "mem.h"

#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

/* The only mutable global besides the log sink: a test hook, -1 when disarmed. */
static long fail_countdown = -1;

static int
should_fail(void)
{
    if (fail_countdown < 0)
        return 0;
    if (fail_countdown == 0)
        return 1;
    fail_countdown--;
    return 0;
}

void
obx_mem_fail_after(long n)
{
    fail_countdown = n;
}

void *
obx_malloc(size_t n)
{
    if (should_fail())
        return NULL;
    return malloc(n ? n : 1);
}

void *
obx_calloc(size_t count, size_t size)
{
    if (should_fail())
        return NULL;
    return calloc(count ? count : 1, size ? size : 1);
}

void *
obx_realloc(void *p, size_t n)
{
    if (should_fail())
        return NULL;
    return realloc(p, n ? n : 1);
}

char *
obx_strndup(const char *s, size_t n)
{
    char *d;

    if (!s)
        return NULL;
    d = obx_malloc(n + 1);
    if (!d)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *
obx_strdup(const char *s)
{
    return s ? obx_strndup(s, strlen(s)) : NULL;
}

void
obx_free(void *p)
{
    free(p);
}

void
obx_mem_trim(void)
{
#ifdef __GLIBC__
    (void)malloc_trim(0);
#endif
}
