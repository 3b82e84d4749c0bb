/*
 * circuit: a circuit breaker for Partoo or network outages (SPEC §3 "Outage").
 *
 * After failure_threshold failures in a row the sender stops (OPEN), lets exactly one probe
 * through when the open interval is over (HALF_OPEN), and resumes (CLOSED) as soon as Partoo
 * answers. The open interval doubles on each failed probe, from min_open_ms to max_open_ms,
 * so an edge site offline for a day probes every max_open_ms and no retry storm follows.
 * The state machine is drawn in circuit.c.
 *
 * Pure code: time comes in as a monotonic instant (obx_mono_ms()). One breaker per Partoo
 * base URL, used by one thread (the event loop) at a time.
 */
#ifndef OBX_CIRCUIT_H
#define OBX_CIRCUIT_H

#include <stdint.h>

#define OBX_CIRCUIT_DEFAULT_THRESHOLD 5
#define OBX_CIRCUIT_DEFAULT_MIN_OPEN_MS 1000
#define OBX_CIRCUIT_DEFAULT_MAX_OPEN_MS 30000

enum obx_circuit_state { OBX_CIRCUIT_CLOSED, OBX_CIRCUIT_OPEN, OBX_CIRCUIT_HALF_OPEN };

/* Embedded in its owner (no allocation, nothing to release). */
struct obx_circuit { /* fields are private: use the API */
    enum obx_circuit_state state;
    int consecutive_failures;         /* failures in a row while CLOSED */
    int failure_threshold;            /* failures in a row that open it, default 5 */
    int64_t open_until_mono_ms;       /* OPEN: no request before this instant */
    int64_t open_ms;                  /* current open interval; doubles on each failed probe,
                                       * up to max_open_ms */
    int64_t min_open_ms, max_open_ms; /* default 1s and 30s */
    int probe_in_flight;              /* HALF_OPEN: 1 while the one probe has not reported */
    int64_t opened_at_mono_ms;        /* for status: since when it is not CLOSED; 0 when CLOSED */
};

/*
 * Initialises a CLOSED breaker. A value <= 0 picks the default (5 failures, 1 s, 30 s);
 * max_open_ms below min_open_ms is raised to it.
 */
void obx_circuit_init(struct obx_circuit *c, int failure_threshold, int64_t min_open_ms,
                      int64_t max_open_ms);

/*
 * May a request start now? CLOSED: yes. OPEN: no until open_until, then it becomes HALF_OPEN
 * and allows exactly one probe (returns 1 once and sets probe_in_flight). HALF_OPEN with the
 * probe in flight: no. Every request allowed must be reported with obx_circuit_record(),
 * or a HALF_OPEN breaker waits for its probe forever.
 */
int obx_circuit_allow(struct obx_circuit *c, int64_t now_mono_ms);

/*
 * Reports the end of a request. success = Partoo answered with anything but 5xx/408 and there
 * was no transport error, i.e. the service is reachable: 2xx, 4xx, even 429 count as success
 * for the breaker. A success always closes the breaker. A failure while OPEN (a request
 * started before it opened) changes nothing; a failure while HALF_OPEN is taken as the
 * probe's and reopens it for twice as long.
 */
void obx_circuit_record(struct obx_circuit *c, int success, int64_t now_mono_ms);

/*
 * ms until a request may be attempted (0 = now). While the probe is in flight the answer is
 * not known: it returns the current open interval, a re-check hint; the probe's
 * obx_circuit_record() is the real signal.
 */
int64_t obx_circuit_wait_ms(const struct obx_circuit *c, int64_t now_mono_ms);

/*
 * Another breaker of the same service (a node that held the tenant before, PostgreSQL) was
 * open until until_mono_ms: this one stays OPEN at least as long, with the open interval that
 * covers the rest (so a failed probe after it waits twice that). A probe in flight, or a later
 * opening of its own, wins.
 */
void obx_circuit_hold_until(struct obx_circuit *c, int64_t until_mono_ms, int64_t now_mono_ms);

/* "closed", "open", "half_open"; "unknown" for anything else. A fixed string, never NULL. */
const char *obx_circuit_state_name(enum obx_circuit_state s);

#endif
