/*
 * backoff: the retry policy (see backoff.h).
 *
 * What each answer means, SPEC §3 and §10 (outcome_table below is the code):
 *
 *   status            outcome        message                      counts toward max_attempts
 *   0                 transport      retry with backoff           yes (unless the circuit is open)
 *   1xx, 3xx          retry          retry with backoff           yes
 *   2xx               accepted       -> accepted                  -
 *   401, 403          auth           stays queued, key paused     no
 *   429               rate_limited   stays queued, key paused     no
 *   408, 425          retry          retry with backoff           yes
 *   other 4xx         fatal          -> failed at once            -
 *   5xx               retry          retry with backoff           yes
 *   anything else     retry          (a broken status line is an unexpected answer)
 *
 * Delays: full jitter (AWS "Exponential Backoff And Jitter"): the ceiling doubles per
 * attempt up to the cap and the delay is uniform below it, so a fleet of edge sites coming
 * back from an outage does not retry in lockstep.
 */
#include "backoff.h"

#include <stddef.h>
#include <time.h>

/* ---- classification ---------------------------------------------------------------------- */

/*
 * The retry/fatal table (STYLE 17). Ranges are inclusive and the first match wins, so the
 * single codes come before the 4xx range. Anything unmatched (1xx, 3xx, a broken status
 * line) is an answer a well-behaved Partoo never sends: retry.
 */
static const struct {
    int lo, hi;
    enum obx_outcome outcome;
} outcome_table[] = {
    {0, 0, OBX_OUTCOME_TRANSPORT},        {200, 299, OBX_OUTCOME_ACCEPTED},
    {401, 401, OBX_OUTCOME_AUTH},         {403, 403, OBX_OUTCOME_AUTH},
    {408, 408, OBX_OUTCOME_RETRY},        {425, 425, OBX_OUTCOME_RETRY},
    {429, 429, OBX_OUTCOME_RATE_LIMITED}, {400, 499, OBX_OUTCOME_FATAL},
    {500, 599, OBX_OUTCOME_RETRY},
};

enum obx_outcome
obx_backoff_classify(int http_status)
{
    for (size_t i = 0; i < sizeof(outcome_table) / sizeof(outcome_table[0]); i++)
        if (http_status >= outcome_table[i].lo && http_status <= outcome_table[i].hi)
            return outcome_table[i].outcome;
    return OBX_OUTCOME_RETRY;
}

const char *
obx_backoff_outcome_name(enum obx_outcome o)
{
    static const char *const names[] = {
        [OBX_OUTCOME_ACCEPTED] = "accepted", [OBX_OUTCOME_FATAL] = "fatal",
        [OBX_OUTCOME_AUTH] = "auth",         [OBX_OUTCOME_RATE_LIMITED] = "rate_limited",
        [OBX_OUTCOME_RETRY] = "retry",       [OBX_OUTCOME_TRANSPORT] = "transport",
    };

    if ((unsigned)o >= sizeof(names) / sizeof(names[0]) || !names[o])
        return "unknown";
    return names[o];
}

/* ---- PRNG: xoshiro256** 1.0 (Blackman and Vigna, public domain) ------------------------- */

static uint64_t
splitmix64(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint64_t
rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void
obx_backoff_rng_seed(struct obx_rng *r, uint64_t seed)
{
    /* splitmix64 is a bijection of its counter, so four outputs are never all zero */
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

uint64_t
obx_backoff_rng_next(struct obx_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

int64_t
obx_backoff_rng_uniform(struct obx_rng *r, int64_t bound)
{
    uint64_t range, threshold, x;

    if (bound <= 0)
        return 0;
    range = (uint64_t)bound + 1; /* <= 2^63: no wrap */
    /* Reject the lowest (2^64 mod range) values so every residue is equally likely. */
    threshold = (0 - range) % range;
    do {
        x = obx_backoff_rng_next(r);
    } while (x < threshold);
    return (int64_t)(x % range);
}

/* ---- delays ------------------------------------------------------------------------------- */

/* min(cap_ms, base_ms * 2^(attempt-1)) without ever computing an overflowing product. */
static int64_t
backoff_ceiling_ms(int64_t base_ms, int64_t cap_ms, int attempt)
{
    int shift = attempt > 1 ? attempt - 1 : 0;

    if (base_ms <= 0 || cap_ms <= 0)
        return 0;
    if (base_ms >= cap_ms)
        return cap_ms;
    /* base_ms >= 1 and cap_ms < 2^63, so a shift of 63 or more always reaches the cap */
    if (shift >= 63 || base_ms > (cap_ms >> shift))
        return cap_ms;
    return base_ms << shift;
}

int64_t
obx_backoff_delay_ms(struct obx_rng *r, int64_t base_ms, int64_t cap_ms, int attempt)
{
    return obx_backoff_rng_uniform(r, backoff_ceiling_ms(base_ms, cap_ms, attempt));
}

int64_t
obx_backoff_next_delay_ms(struct obx_rng *r, int64_t base_ms, int64_t cap_ms, int attempt,
                          int64_t retry_after_ms)
{
    int64_t d = obx_backoff_delay_ms(r, base_ms, cap_ms, attempt);

    if (retry_after_ms >= 0 && d < retry_after_ms)
        d = retry_after_ms;
    return d;
}

/* ---- Retry-After -------------------------------------------------------------------------- */

/* A cursor over [p, end) of the trimmed header value. */
struct cur {
    const char *p;
    const char *end;
};

static const char *const month_names[12] = {"jan", "feb", "mar", "apr", "may", "jun",
                                            "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const day_short_names[7] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};
static const char *const day_long_names[7] = {"monday", "tuesday",  "wednesday", "thursday",
                                              "friday", "saturday", "sunday"};

static int
is_ows(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

static int
is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

static int
is_alpha(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static char
ascii_lower(char ch)
{
    return (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
}

static int
eat_char(struct cur *c, char ch)
{
    if (c->p >= c->end || *c->p != ch)
        return 0;
    c->p++;
    return 1;
}

/* Exactly n digits into *out. */
static int
eat_digits(struct cur *c, int n, int *out)
{
    int v = 0;

    if (c->end - c->p < n)
        return 0;
    for (int i = 0; i < n; i++) {
        if (!is_digit(c->p[i]))
            return 0;
        v = v * 10 + (c->p[i] - '0');
    }
    c->p += n;
    *out = v;
    return 1;
}

/* A run of letters matching one of table[0..n) (ASCII, any case); *idx gets its index. */
static int
eat_name(struct cur *c, const char *const *table, int n, int *idx)
{
    const char *q = c->p;
    size_t len;

    while (q < c->end && is_alpha(*q))
        q++;
    len = (size_t)(q - c->p);
    for (int i = 0; i < n; i++) {
        size_t k = 0;

        while (k < len && table[i][k] && ascii_lower(c->p[k]) == table[i][k])
            k++;
        if (k == len && table[i][k] == '\0') {
            *idx = i;
            c->p = q;
            return 1;
        }
    }
    return 0;
}

/* "HH:MM:SS" */
static int
eat_time(struct cur *c, struct tm *tm)
{
    return eat_digits(c, 2, &tm->tm_hour) && eat_char(c, ':') && eat_digits(c, 2, &tm->tm_min) &&
           eat_char(c, ':') && eat_digits(c, 2, &tm->tm_sec);
}

static int
eat_gmt(struct cur *c)
{
    return eat_char(c, ' ') && eat_char(c, 'G') && eat_char(c, 'M') && eat_char(c, 'T');
}

/* IMF-fixdate after the weekday: ", 06 Nov 1994 08:49:37 GMT" */
static int
parse_imf_fixdate(struct cur *c, struct tm *tm)
{
    int year = 0;

    if (!(eat_char(c, ',') && eat_char(c, ' ') && eat_digits(c, 2, &tm->tm_mday) &&
          eat_char(c, ' ') && eat_name(c, month_names, 12, &tm->tm_mon) && eat_char(c, ' ') &&
          eat_digits(c, 4, &year) && eat_char(c, ' ') && eat_time(c, tm) && eat_gmt(c)))
        return 0;
    tm->tm_year = year - 1900;
    return 1;
}

/*
 * RFC 850 after the weekday: ", 06-Nov-94 08:49:37 GMT". The two-digit year is the one
 * within 50 years of now (RFC 9110 5.6.7: never more than 50 years in the future).
 */
static int
parse_rfc850(struct cur *c, struct tm *tm, int now_year)
{
    int yy = 0, year;

    if (!(eat_char(c, ',') && eat_char(c, ' ') && eat_digits(c, 2, &tm->tm_mday) &&
          eat_char(c, '-') && eat_name(c, month_names, 12, &tm->tm_mon) && eat_char(c, '-') &&
          eat_digits(c, 2, &yy) && eat_char(c, ' ') && eat_time(c, tm) && eat_gmt(c)))
        return 0;
    year = now_year - now_year % 100 + yy;
    if (year > now_year + 50)
        year -= 100;
    else if (year <= now_year - 50)
        year += 100;
    tm->tm_year = year - 1900;
    return 1;
}

/* asctime after the weekday: " Nov  6 08:49:37 1994" (day is 2DIGIT or SP DIGIT) */
static int
parse_asctime(struct cur *c, struct tm *tm)
{
    int year = 0;

    if (!(eat_char(c, ' ') && eat_name(c, month_names, 12, &tm->tm_mon) && eat_char(c, ' ')))
        return 0;
    if (eat_char(c, ' ')) {
        if (!eat_digits(c, 1, &tm->tm_mday))
            return 0;
    } else if (!eat_digits(c, 2, &tm->tm_mday)) {
        return 0;
    }
    if (!(eat_char(c, ' ') && eat_time(c, tm) && eat_char(c, ' ') && eat_digits(c, 4, &year)))
        return 0;
    tm->tm_year = year - 1900;
    return 1;
}

static int
days_in_month(int year, int mon /* 0-11 */)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

    return days[mon] + (mon == 1 && leap);
}

/* Rejects what timegm() would silently normalise (Feb 30, 25:00). 60 s is a leap second. */
static int
tm_valid(const struct tm *tm)
{
    return tm->tm_mday >= 1 && tm->tm_mday <= days_in_month(tm->tm_year + 1900, tm->tm_mon) &&
           tm->tm_hour <= 23 && tm->tm_min <= 59 && tm->tm_sec <= 60;
}

/* Year of now_ms in UTC, for RFC 850's two-digit years; 1970 if gmtime_r() cannot tell. */
static int
utc_year(int64_t now_ms)
{
    time_t now_s = (time_t)(now_ms / 1000);
    struct tm now_tm;

    if (!gmtime_r(&now_s, &now_tm))
        return 1970;
    return now_tm.tm_year + 1900;
}

/*
 * Parses one of the three HTTP-date forms spanning all of c into epoch ms. The weekday picks
 * the form: a short name and a comma is IMF-fixdate, a short name and a space is asctime, a
 * long name is RFC 850.
 */
static int
parse_http_date(struct cur *c, int64_t now_ms, int64_t *at_ms)
{
    struct tm tm = {0};
    int wday = 0, ok = 0;
    int64_t secs;

    if (eat_name(c, day_short_names, 7, &wday)) {
        if (c->p < c->end && *c->p == ',')
            ok = parse_imf_fixdate(c, &tm);
        else
            ok = parse_asctime(c, &tm);
    } else if (eat_name(c, day_long_names, 7, &wday)) { /* eat_name moves c only on a match */
        ok = parse_rfc850(c, &tm, utc_year(now_ms));
    }
    if (!ok || c->p != c->end || !tm_valid(&tm))
        return 0;
    secs = (int64_t)timegm(&tm);
    /* An absurd clock can make an RFC 850 year absurd too: refuse what ms cannot hold. */
    if (secs > INT64_MAX / 1000 || secs < INT64_MIN / 1000)
        return 0;
    *at_ms = secs * 1000;
    return 1;
}

/* 1*DIGIT spanning all of c, in ms; 0 when it cannot be counted in int64 milliseconds. */
static int
parse_delta_seconds(struct cur *c, int64_t *ms)
{
    int64_t v = 0;
    const int64_t max_s = INT64_MAX / 1000;

    if (c->p == c->end)
        return 0;
    for (; c->p < c->end; c->p++) {
        if (!is_digit(*c->p))
            return 0;
        if (v > (max_s - (*c->p - '0')) / 10)
            return 0;
        v = v * 10 + (*c->p - '0');
    }
    *ms = v * 1000;
    return 1;
}

static int64_t
clamp_retry_after(int64_t ms)
{
    if (ms < 0)
        return 0;
    return ms > OBX_BACKOFF_RETRY_AFTER_MAX_MS ? OBX_BACKOFF_RETRY_AFTER_MAX_MS : ms;
}

enum obx_err
obx_backoff_parse_retry_after(const char *value, int64_t now_ms, int64_t *delay_ms /* OUT */)
{
    struct cur c;
    int64_t v = 0;

    *delay_ms = 0;
    if (!value)
        return OBX_EINVAL;
    c.p = value;
    while (is_ows(*c.p))
        c.p++;
    c.end = c.p;
    while (*c.end)
        c.end++;
    while (c.end > c.p && is_ows(c.end[-1]))
        c.end--;
    if (c.p == c.end)
        return OBX_EINVAL;

    if (is_digit(*c.p)) {
        if (!parse_delta_seconds(&c, &v))
            return OBX_EINVAL;
        *delay_ms = clamp_retry_after(v);
        return OBX_OK;
    }
    if (!parse_http_date(&c, now_ms, &v))
        return OBX_EINVAL;
    /* v - now_ms without overflow, whatever now_ms is */
    if (v <= now_ms)
        *delay_ms = 0;
    else if (now_ms < v - OBX_BACKOFF_RETRY_AFTER_MAX_MS)
        *delay_ms = OBX_BACKOFF_RETRY_AFTER_MAX_MS;
    else
        *delay_ms = clamp_retry_after(v - now_ms);
    return OBX_OK;
}
