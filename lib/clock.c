/* clock: real and fake clocks. */
#include "clock.h"

#include <stdio.h>
#include <time.h>

static int64_t
read_ms(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
real_now_ms(struct obx_clock *c)
{
    (void)c;
    return read_ms(CLOCK_REALTIME);
}

static int64_t
real_mono_ms(struct obx_clock *c)
{
    (void)c;
    return read_ms(CLOCK_MONOTONIC);
}

static struct obx_clock real_clock = {real_now_ms, real_mono_ms};

struct obx_clock *
obx_clock_real(void)
{
    return &real_clock;
}

static int64_t
fake_now_ms(struct obx_clock *c)
{
    return ((struct obx_fake_clock *)c)->now_ms;
}

static int64_t
fake_mono_ms(struct obx_clock *c)
{
    return ((struct obx_fake_clock *)c)->mono_ms;
}

void
obx_clock_fake_init(struct obx_fake_clock *fc, int64_t now_ms, int64_t mono_ms)
{
    fc->base.now_ms = fake_now_ms;
    fc->base.mono_ms = fake_mono_ms;
    fc->now_ms = now_ms;
    fc->mono_ms = mono_ms;
}

void
obx_clock_format_ms(int64_t at_ms, char *out, size_t n)
{
    time_t secs = (time_t)(at_ms / 1000);
    struct tm tm;

    gmtime_r(&secs, &tm);
    snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(at_ms % 1000));
}
