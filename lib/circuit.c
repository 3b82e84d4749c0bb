/*
 * circuit: the outage circuit breaker (see circuit.h).
 *
 *        record(fail): the nth failure      allow(), once now >= open_until:
 *        in a row (n = threshold)           returns 1 once, the probe goes
 * CLOSED -------------------------> OPEN -------------------------------> HALF_OPEN
 *  ^  ^                             |  ^                                  |       |
 *  |  |                             |  '----------------------------------'       |
 *  |  |  record(success):           |     record(fail): the probe failed,         |
 *  |  |  a late answer              |     open_ms doubles, up to max_open_ms      |
 *  |  '-----------------------------'                                             |
 *  |                                                                              |
 *  '---------------------------- record(success): the probe answered -------------'
 *
 * In OPEN a failure changes nothing (a late answer); in HALF_OPEN allow() returns 0 while
 * the probe is in flight.
 *
 *   from       event                              to         function
 *   CLOSED     failure_threshold failures in a row OPEN      obx_circuit_record
 *   CLOSED     success                             CLOSED    obx_circuit_record (count = 0)
 *   OPEN       now >= open_until_mono_ms           HALF_OPEN obx_circuit_allow (returns 1)
 *   OPEN       success (a late answer)             CLOSED    obx_circuit_record
 *   OPEN       failure (a late answer)             OPEN      obx_circuit_record (no change)
 *   HALF_OPEN  success                             CLOSED    obx_circuit_record
 *   HALF_OPEN  failure                             OPEN      obx_circuit_record (open_ms * 2)
 *
 * Invariants: probe_in_flight is 1 only in HALF_OPEN; min_open_ms <= open_ms <= max_open_ms;
 * opened_at_mono_ms is set when CLOSED opens and kept across failed probes, so status can say
 * since when the outage lasts; it is 0 while CLOSED.
 *
 * Record() cannot tell the probe from a straggler started before the breaker opened (the API
 * carries no request identity). A straggler's failure in HALF_OPEN is taken for the probe's:
 * the breaker reopens early, and the real probe's answer then lands in OPEN, where a success
 * still closes it and a failure changes nothing. Harmless, so not worth a token.
 */
#include "circuit.h"

#include <assert.h>

static void
set_closed(struct obx_circuit *c)
{
    c->state = OBX_CIRCUIT_CLOSED;
    c->consecutive_failures = 0;
    c->open_ms = c->min_open_ms;
    c->open_until_mono_ms = 0;
    c->probe_in_flight = 0;
    c->opened_at_mono_ms = 0;
}

void
obx_circuit_init(struct obx_circuit *c, int failure_threshold, int64_t min_open_ms,
                 int64_t max_open_ms)
{
    c->failure_threshold = failure_threshold > 0 ? failure_threshold
                                                 : OBX_CIRCUIT_DEFAULT_THRESHOLD;
    c->min_open_ms = min_open_ms > 0 ? min_open_ms : OBX_CIRCUIT_DEFAULT_MIN_OPEN_MS;
    c->max_open_ms = max_open_ms > 0 ? max_open_ms : OBX_CIRCUIT_DEFAULT_MAX_OPEN_MS;
    if (c->max_open_ms < c->min_open_ms)
        c->max_open_ms = c->min_open_ms;
    set_closed(c);
}

/* Enters OPEN for the current open_ms. */
static void
set_open(struct obx_circuit *c, int64_t now_mono_ms)
{
    if (c->state == OBX_CIRCUIT_CLOSED)
        c->opened_at_mono_ms = now_mono_ms;
    c->state = OBX_CIRCUIT_OPEN;
    c->probe_in_flight = 0;
    c->open_until_mono_ms = now_mono_ms + c->open_ms;
}

int
obx_circuit_allow(struct obx_circuit *c, int64_t now_mono_ms)
{
    switch (c->state) {
    case OBX_CIRCUIT_CLOSED: return 1;
    case OBX_CIRCUIT_OPEN:
        if (now_mono_ms < c->open_until_mono_ms)
            return 0;
        c->state = OBX_CIRCUIT_HALF_OPEN;
        c->probe_in_flight = 1;
        return 1;
    case OBX_CIRCUIT_HALF_OPEN:
        /* Unreachable without a probe in flight today; if it were, let one go. */
        if (c->probe_in_flight)
            return 0;
        c->probe_in_flight = 1;
        return 1;
    }
    return 0;
}

void
obx_circuit_record(struct obx_circuit *c, int success, int64_t now_mono_ms)
{
    if (success) {
        set_closed(c);
        return;
    }
    switch (c->state) {
    case OBX_CIRCUIT_CLOSED:
        c->consecutive_failures++;
        if (c->consecutive_failures >= c->failure_threshold) {
            c->open_ms = c->min_open_ms;
            set_open(c, now_mono_ms);
        }
        break;
    case OBX_CIRCUIT_OPEN:
        break; /* a request started before it opened: the outage is known already */
    case OBX_CIRCUIT_HALF_OPEN:
        c->open_ms = c->open_ms > c->max_open_ms / 2 ? c->max_open_ms : c->open_ms * 2;
        set_open(c, now_mono_ms);
        break;
    }
    assert(c->open_ms >= c->min_open_ms && c->open_ms <= c->max_open_ms);
}

void
obx_circuit_hold_until(struct obx_circuit *c, int64_t until_mono_ms, int64_t now_mono_ms)
{
    int64_t rest = until_mono_ms - now_mono_ms;

    if (rest <= 0 || c->state == OBX_CIRCUIT_HALF_OPEN ||
        (c->state == OBX_CIRCUIT_OPEN && c->open_until_mono_ms >= until_mono_ms))
        return;
    c->open_ms = rest < c->min_open_ms   ? c->min_open_ms
                 : rest > c->max_open_ms ? c->max_open_ms
                                         : rest;
    set_open(c, now_mono_ms);
    c->open_until_mono_ms = until_mono_ms;
}

int64_t
obx_circuit_wait_ms(const struct obx_circuit *c, int64_t now_mono_ms)
{
    switch (c->state) {
    case OBX_CIRCUIT_CLOSED: return 0;
    case OBX_CIRCUIT_OPEN:
        return c->open_until_mono_ms > now_mono_ms ? c->open_until_mono_ms - now_mono_ms : 0;
    case OBX_CIRCUIT_HALF_OPEN: return c->probe_in_flight ? c->open_ms : 0;
    }
    return 0;
}

const char *
obx_circuit_state_name(enum obx_circuit_state s)
{
    switch (s) {
    case OBX_CIRCUIT_CLOSED: return "closed";
    case OBX_CIRCUIT_OPEN: return "open";
    case OBX_CIRCUIT_HALF_OPEN: return "half_open";
    }
    return "unknown";
}
