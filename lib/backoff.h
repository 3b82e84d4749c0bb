/*
 * backoff: the retry policy, as pure code (no I/O, no clock reads, no globals).
 *
 *   - obx_backoff_classify() is the one table that says what an HTTP answer means for a
 *     message (SPEC §3, §10);
 *   - obx_backoff_delay_ms() is capped exponential backoff with full jitter, drawn from a
 *     PRNG the caller owns and seeds once (STYLE 17: no srand() per call);
 *   - obx_backoff_parse_retry_after() reads a Retry-After header, capped at 6 h as curl does;
 *   - obx_backoff_next_delay_ms() combines them: Retry-After is a floor under the jitter.
 *
 * Every function may be called from any thread; a struct obx_rng is used by one thread at a
 * time.
 */
#ifndef OBX_BACKOFF_H
#define OBX_BACKOFF_H

#include <stdint.h>

#include "outbox.h"

/* Upper bound of a Retry-After delay, in ms (6 hours, curl's clamp). */
#define OBX_BACKOFF_RETRY_AFTER_MAX_MS (INT64_C(6) * 3600 * 1000)

/* What an HTTP outcome means for the message (SPEC §3). */
enum obx_outcome {
    OBX_OUTCOME_ACCEPTED,     /* 2xx */
    OBX_OUTCOME_FATAL,        /* 400, 404, 413, 415, 422 and any other 4xx not listed below:
                               * fail now */
    OBX_OUTCOME_AUTH,         /* 401, 403: pause the API key, do not count the attempt */
    OBX_OUTCOME_RATE_LIMITED, /* 429: pause the key for Retry-After, do not count the attempt */
    OBX_OUTCOME_RETRY,        /* 408, 425, 5xx, and 1xx/3xx (unexpected): retry with backoff,
                               * counts */
    OBX_OUTCOME_TRANSPORT,    /* http_status 0: timeout, DNS, connect, TLS, reset: retry */
};

/*
 * Maps an HTTP status (0 = no answer: transport error) to what it means for the message.
 * A status outside 0 and 100..599 (a broken status line) is treated as an unexpected answer:
 * OBX_OUTCOME_RETRY.
 */
enum obx_outcome obx_backoff_classify(int http_status);

/* "accepted", "fatal", "auth", "rate_limited", "retry", "transport"; "unknown" for anything
 * else. A fixed string, never NULL. */
const char *obx_backoff_outcome_name(enum obx_outcome o);

/*
 * A small PRNG we own: xoshiro256**, seeded through splitmix64. Seed it once (per worker) and
 * keep drawing from it; never reseed per call. An unseeded (all-zero) state only yields 0.

 * It lives here because backoff is the only module that draws from it (inbox.c and worker.c
 * only seed one for backoff); move it to lib/rng.c, as obx_rng_*, if a second user appears.
 */
struct obx_rng {
    uint64_t s[4]; /* private: xoshiro256** state, never all zero once seeded */
};

/* Seeds r from any 64-bit value (0 included). */
void obx_backoff_rng_seed(struct obx_rng *r, uint64_t seed);
/* Next 64 uniformly distributed bits. */
uint64_t obx_backoff_rng_next(struct obx_rng *r);
/* Uniform in [0, bound] inclusive, without modulo bias (rejection sampling). bound <= 0
 * gives 0. */
int64_t obx_backoff_rng_uniform(struct obx_rng *r, int64_t bound);

/*
 * Full-jitter exponential backoff: uniform in [0, min(cap_ms, base_ms * 2^(attempt-1))].
 * attempt is 1-based (the attempt that just failed); attempt < 1 is treated as 1. Never
 * overflows, for any attempt up to INT_MAX. base_ms <= 0 or cap_ms <= 0 gives 0.
 */
int64_t obx_backoff_delay_ms(struct obx_rng *r, int64_t base_ms, int64_t cap_ms, int attempt);

/*
 * Parses a Retry-After header value: delta-seconds ("120") or an HTTP-date: IMF-fixdate
 * ("Sun, 06 Nov 1994 08:49:37 GMT"), or the obsolete RFC 850 ("Sunday, 06-Nov-94 08:49:37
 * GMT") and asctime ("Sun Nov  6 08:49:37 1994") forms. Names of days and months are matched
 * without regard to case and without the locale; the weekday is not checked against the date.
 * now_ms is the current wall clock in epoch ms (a date is relative to it; it also resolves
 * RFC 850's two-digit years). Leading and trailing spaces and tabs are allowed.
 *
 * On success *delay_ms is the delay in ms, clamped to [0, OBX_BACKOFF_RETRY_AFTER_MAX_MS]
 * (a date in the past gives 0, "999999" gives 6 h). Returns OBX_EINVAL for anything else:
 * empty, negative, a sign, a fraction, junk, an impossible date, or a number of seconds too
 * large to be counted in int64 milliseconds; *delay_ms is then 0.
 */
OBX_MUST_CHECK enum obx_err obx_backoff_parse_retry_after(const char *value, int64_t now_ms,
                                                          int64_t *delay_ms /* OUT */);

/*
 * The delay before the next attempt: obx_backoff_delay_ms(), but never less than
 * retry_after_ms when that is >= 0 (Retry-After is a floor, even above cap_ms; pass -1 when
 * the answer had no usable Retry-After).
 */
int64_t obx_backoff_next_delay_ms(struct obx_rng *r, int64_t base_ms, int64_t cap_ms, int attempt,
                                  int64_t retry_after_ms);

#endif
