/*
 * clock: where time comes from. Real code uses obx_clock_real(); tests use a
 * struct obx_fake_clock they can move by hand.
 */
#ifndef OBX_CLOCK_H
#define OBX_CLOCK_H

#include <stddef.h>
#include <stdint.h>

struct obx_clock {
    int64_t (*now_ms)(struct obx_clock *c);  /* wall clock, epoch milliseconds */
    int64_t (*mono_ms)(struct obx_clock *c); /* monotonic milliseconds, for timers */
};

/* The process-wide real clock; borrowed, never freed. */
struct obx_clock *obx_clock_real(void);

struct obx_fake_clock {
    struct obx_clock base;
    int64_t now_ms;
    int64_t mono_ms;
};

/* Initialises a fake clock reading now_ms (wall) and mono_ms (monotonic). */
void obx_clock_fake_init(struct obx_fake_clock *fc, int64_t now_ms, int64_t mono_ms);

static inline int64_t
obx_now_ms(struct obx_clock *c)
{
    return c->now_ms(c);
}

static inline int64_t
obx_mono_ms(struct obx_clock *c)
{
    return c->mono_ms(c);
}

/* Formats epoch milliseconds as RFC 3339 UTC with milliseconds into out (>= 25 bytes). */
void obx_clock_format_ms(int64_t at_ms, char *out, size_t n);

#endif
