/*
 * ratelimit: a token bucket per API key, so a healthy run never meets Partoo's 300
 * requests/minute limit (SPEC §3, §10: default 290/min, burst 1), plus the pause a 429 or an
 * auth failure puts on the key.
 *
 * Pure code: time comes in as a monotonic instant (obx_mono_ms()); nothing here reads a
 * clock. One struct per API key, used by one thread (the event loop) at a time. Instants must
 * not go backwards between calls on one bucket (a monotonic clock never does); a call with an
 * earlier instant grants nothing new.
 */
#ifndef OBX_RATELIMIT_H
#define OBX_RATELIMIT_H

#include <stdint.h>

/*
 * Embedded in its owner (no allocation, nothing to release). Invariants: 1 <= burst,
 * 0 <= tokens <= burst. While a pause is pending, tokens never exceed 1.
 */
struct obx_ratelimit {            /* fields are private: use the API */
    double rate_per_s;            /* tokens per second; 0 = unlimited */
    double burst;                 /* bucket size in tokens, >= 1 */
    double tokens;                /* tokens available at last_mono_ms */
    int64_t last_mono_ms;         /* when tokens was last brought up to date */
    int64_t paused_until_mono_ms; /* 0 = not paused (cleared once the pause is over) */
};

/* Initialises a full bucket. rate_per_s <= 0 (or NaN) means unlimited; burst < 1 means 1. */
void obx_ratelimit_init(struct obx_ratelimit *rl, double rate_per_s, int64_t burst,
                        int64_t now_mono_ms);

/*
 * Changes the rate and burst (config reload). Tokens earned so far at the old rate are kept,
 * clamped to the new burst; a pending pause is kept. Going from unlimited to a rate starts
 * with a full bucket, as init does.
 */
void obx_ratelimit_set_rate(struct obx_ratelimit *rl, double rate_per_s, int64_t burst,
                            int64_t now_mono_ms);

/* Takes one token if available and not paused; returns 1 if taken, 0 otherwise. */
int obx_ratelimit_take(struct obx_ratelimit *rl, int64_t now_mono_ms);

/*
 * Milliseconds until obx_ratelimit_take() can succeed (0 = now), counting a pause and the
 * token the bucket needs after it. Rounded up, so waiting exactly this long is enough.
 */
int64_t obx_ratelimit_wait_ms(struct obx_ratelimit *rl, int64_t now_mono_ms);

/*
 * Pauses the key until until_mono_ms (a 429's Retry-After, an auth failure). Of two pauses
 * the later end wins. A pause also empties the bucket, and while it lasts the bucket refills
 * at the normal rate but to one token at most: the first request after the pause goes alone
 * (no burst right after a 429), and no sooner than the rate allows after the last one.
 * until_mono_ms <= 0 only empties the bucket.
 */
void obx_ratelimit_pause_until(struct obx_ratelimit *rl, int64_t until_mono_ms);

/* 1 while a pause is in force at now_mono_ms, else 0. */
int obx_ratelimit_paused(const struct obx_ratelimit *rl, int64_t now_mono_ms);

#endif
