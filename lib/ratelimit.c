/*
 * ratelimit: token bucket with pauses (see ratelimit.h).
 *
 * Tokens are earned continuously at rate_per_s and capped at burst; a request spends one.
 * With burst 1 two requests are never closer than 1000 / rate_per_s ms, so any window of W ms
 * holds at most floor(W * rate_per_s / 1000) + 1 requests: 291 per minute at 290/min, under
 * Partoo's 300.
 *
 * The bucket is brought up to date lazily, by refill(), at the start of every call that is
 * given the time. A pending pause splits the elapsed time in two: up to its end the bucket
 * refills to 1 token at most, after it to burst.
 *
 * Doubles are exact enough here: the only rounding that matters is a token that should be
 * whole coming out as 0.999999..., which TOKEN_EPSILON absorbs (it lets a token go a
 * billionth early: far less than one extra request in a lifetime).
 */
#include "ratelimit.h"

#include <math.h>

#define TOKEN_EPSILON 1e-9

/* Longest wait we report, in ms (about 3 million years): keeps a tiny rate from overflowing. */
#define WAIT_MAX_MS (INT64_C(1) << 50)

static double
sane_rate(double rate_per_s)
{
    return rate_per_s > 0 ? rate_per_s : 0; /* also maps NaN to 0 */
}

static double
sane_burst(int64_t burst)
{
    return burst < 1 ? 1.0 : (double)burst;
}

/* Adds what (from, to] earns, capped at cap. Unlimited buckets are always full. */
static void
earn(struct obx_ratelimit *rl, int64_t from, int64_t to, double cap)
{
    double t = rl->tokens + (double)(to - from) * rl->rate_per_s / 1000.0;

    if (rl->rate_per_s <= 0 || t > cap)
        t = cap;
    rl->tokens = t;
}

static void
refill(struct obx_ratelimit *rl, int64_t now_mono_ms)
{
    int64_t from = rl->last_mono_ms;

    if (now_mono_ms <= from)
        return;
    if (rl->paused_until_mono_ms != 0) {
        int64_t mid = now_mono_ms < rl->paused_until_mono_ms ? now_mono_ms
                                                             : rl->paused_until_mono_ms;
        if (mid > from) {
            earn(rl, from, mid, 1.0);
            from = mid;
        }
        if (now_mono_ms >= rl->paused_until_mono_ms)
            rl->paused_until_mono_ms = 0;
    }
    if (rl->paused_until_mono_ms == 0 && now_mono_ms > from)
        earn(rl, from, now_mono_ms, rl->burst);
    rl->last_mono_ms = now_mono_ms;
}

void
obx_ratelimit_init(struct obx_ratelimit *rl, double rate_per_s, int64_t burst, int64_t now_mono_ms)
{
    rl->rate_per_s = sane_rate(rate_per_s);
    rl->burst = sane_burst(burst);
    rl->tokens = rl->burst;
    rl->last_mono_ms = now_mono_ms;
    rl->paused_until_mono_ms = 0;
}

void
obx_ratelimit_set_rate(struct obx_ratelimit *rl, double rate_per_s, int64_t burst,
                       int64_t now_mono_ms)
{
    int was_unlimited;

    refill(rl, now_mono_ms); /* what was earned so far was earned at the old rate */
    was_unlimited = rl->rate_per_s <= 0;
    rl->rate_per_s = sane_rate(rate_per_s);
    rl->burst = sane_burst(burst);
    if (was_unlimited && rl->paused_until_mono_ms == 0)
        rl->tokens = rl->burst;
    if (rl->tokens > rl->burst)
        rl->tokens = rl->burst;
}

int
obx_ratelimit_paused(const struct obx_ratelimit *rl, int64_t now_mono_ms)
{
    return rl->paused_until_mono_ms != 0 && now_mono_ms < rl->paused_until_mono_ms;
}

int
obx_ratelimit_take(struct obx_ratelimit *rl, int64_t now_mono_ms)
{
    refill(rl, now_mono_ms);
    if (obx_ratelimit_paused(rl, now_mono_ms))
        return 0;
    if (rl->rate_per_s <= 0)
        return 1;
    if (rl->tokens < 1.0 - TOKEN_EPSILON)
        return 0;
    rl->tokens = rl->tokens > 1.0 ? rl->tokens - 1.0 : 0.0;
    return 1;
}

int64_t
obx_ratelimit_wait_ms(struct obx_ratelimit *rl, int64_t now_mono_ms)
{
    int64_t wait_ms = 0;
    double tokens, need_ms;

    refill(rl, now_mono_ms);
    tokens = rl->tokens;
    if (obx_ratelimit_paused(rl, now_mono_ms)) {
        wait_ms = rl->paused_until_mono_ms - now_mono_ms;
        tokens += (double)wait_ms * rl->rate_per_s / 1000.0; /* earned by the end, capped at 1 */
        if (tokens > 1.0)
            tokens = 1.0;
    }
    if (rl->rate_per_s <= 0 || tokens >= 1.0 - TOKEN_EPSILON)
        return wait_ms;
    /* Aim half an epsilon short of a whole token, so the rounding error of earning it back
     * cannot leave take() a hair short after waiting exactly this long. */
    need_ms = ceil((1.0 - TOKEN_EPSILON / 2 - tokens) * 1000.0 / rl->rate_per_s);
    if (need_ms < 1.0)
        need_ms = 1.0;
    if (need_ms > (double)WAIT_MAX_MS)
        need_ms = (double)WAIT_MAX_MS;
    return wait_ms + (int64_t)need_ms;
}

void
obx_ratelimit_pause_until(struct obx_ratelimit *rl, int64_t until_mono_ms)
{
    if (until_mono_ms > rl->paused_until_mono_ms)
        rl->paused_until_mono_ms = until_mono_ms;
    /*
     * Emptied as of last_mono_ms, the last time the bucket was brought up to date (usually
     * the take() of the request that got the 429): tokens earned since then count toward the
     * one allowed at the end of the pause, so the pacing holds even for a very short pause.
     */
    rl->tokens = 0.0;
}
