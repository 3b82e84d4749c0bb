/*
 * config: the option table and everything that reads or writes struct obx_config.
 *
 * One table, `opts[]`, describes every option: its key, value type, default (a
 * string parsed by the same code as a user's value, so defaults are validated
 * too), bounds, the field it fills and a line of help. Outside the table only the
 * cross-field rules of obx_config_validate() and the partoo_api_key secret are
 * handled by name.
 *
 * Keys are the struct field names, with three renamings:
 *   - durations drop the `_ms` suffix (retry_base_ms -> retry_base, retention_ms ->
 *     retention, ...);
 *   - rate_limit_per_s -> rate_limit (written `290/min`, stored per second);
 *   - synchronous_full -> synchronous (`full` = 1, `normal` = 0).
 * partoo_api_key is no key at all: obx_config_load_secrets() fills it.
 *
 * Where a value comes from (lowest to highest precedence), and how an error names it:
 *   default                  "default: ..."               (a bug in the table)
 *   file                     "outbox.conf:12: ..."
 *   environment OUTBOX_<KEY> "environment OUTBOX_RATE_LIMIT: ..."
 *   flag                     "flag --rate-limit: ..."
 * Values are never echoed in messages, so a mistyped token cannot leak into a log.
 *
 * Setting an option parses into a local first and touches the struct only on
 * success, so a failed obx_config_set() leaves it as it was. A file or environment
 * load stops at the first error with the earlier lines applied: load into a fresh
 * struct and discard it on failure (a SIGHUP reload keeps the running config).
 */
#include "config.h"

#include <assert.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "mem.h"
#include "pg.h"
#include "net.h"

#define OBX_API_TOKEN_MIN 16 /* bytes; see check_token */
#define MS_S INT64_C(1000)
#define MS_M (60 * MS_S)
#define MS_H (60 * MS_M)
#define MS_D (24 * MS_H)
#define KIB INT64_C(1024)
#define MIB (1024 * KIB)
#define GIB (1024 * MIB)

#define STR_MAX 4096        /* longest string value, in bytes (= the longest file line) */
#define STR_MAX_TEXT "4096" /* the same, for messages */
#define LINE_MAX_BYTES 4096 /* longest line of a config file, newline excluded */
#define FILE_MAX_BYTES MIB  /* largest config file */
#define KEY_FILE_MAX 4096   /* longest first line of partoo_api_key_file */
#define MASK "********"
#define UNSET "(unset)"

/* offsetof() that refuses to compile unless field f has C type T. */
#define FIELD(f, T) (offsetof(struct obx_config, f) + _Generic(((struct obx_config *)0)->f, T : 0))

enum opt_type { OPT_STRING, OPT_INT, OPT_DURATION, OPT_SIZE, OPT_RATE, OPT_ENUM };

/* String options whose value is also kept parsed (config.h, "Parsed forms"). */
enum derive_kind { DERIVE_NONE = 0, DERIVE_CHANNELS, DERIVE_HEADER };

/* A suffix and what it multiplies by (durations: ms; sizes: bytes) or divides by (rates: s). */
struct unit {
    const char *suffix; /* NULL ends a list */
    int64_t scale;
};

/*
 * 8 bytes of padding a row (clang-tidy's Padding check): type and secret side by side would
 * save them, at the cost of every row of opts[] reading out of order. Not worth it for a
 * table read once per configuration load.
 */
/* NOLINTNEXTLINE(clang-analyzer-optin.performance.Padding) */
struct opt {
    const char *name; /* key in files and flags; OUTBOX_<NAME> in the environment */
    enum opt_type type;
    const char *def;  /* default, parsed like any value; NULL = unset */
    int64_t min, max; /* numbers: inclusive bounds in the stored unit (rates: per
                         second); strings: min 1 = required, max = length in bytes */
    size_t off;       /* where the value lives in struct obx_config */
    const char *help; /* one line for people; the long form is outbox.conf.example */
    const char *(*check)(const char *s); /* strings: format check, NULL or why it failed */
    const char *choices;                 /* enums: the accepted names, "a|b" */
    int (*enum_parse)(const char *s);    /* enums: name -> stored int, -1 when unknown */
    int secret;                          /* strings: obx_config_print shows MASK instead */
    int derive; /* strings: enum derive_kind, the parsed form kept beside it */
};

union val {
    const char *s; /* strings: borrowed from the input, NULL = unset */
    int64_t i;
    double d;
    int e;
};

struct type_info {
    const char *(*parse)(const struct opt *o, const struct type_info *t, const char *s,
                         union val *v);
    const struct unit *units; /* suffixes accepted, largest first; NULL when none */
    const char *hint;         /* what a well-formed value looks like */
};

/* Where a value came from, to prefix messages. */
struct where {
    enum obx_config_source src;
    const char *name; /* file path (NULL: unknown), or the key as written (env, flag) */
    size_t len;       /* bytes of name (env, flag) */
    long line;        /* file line, from 1 */
};

/* How a key written by a user is compared with option names, per source. */
enum key_fold { FOLD_NONE, FOLD_CASE, FOLD_DASH };

static const enum key_fold fold_of[] = {
    [OBX_SRC_DEFAULT] = FOLD_NONE,
    [OBX_SRC_FILE] = FOLD_NONE,
    [OBX_SRC_ENV] = FOLD_CASE,  /* OUTBOX_RATE_LIMIT */
    [OBX_SRC_FLAG] = FOLD_DASH, /* --rate-limit */
};

/* Sentinels that parsers return instead of a reason; compared by address. */
static const char PARSE_FORMAT[] = "malformed";
static const char PARSE_RANGE[] = "out of range";

static const struct unit int_units[] = {{"", 1}, {NULL, 0}};
/* The bare form means seconds; it comes last so that printing never picks it. */
static const struct unit duration_units[] = {{"d", MS_D}, {"h", MS_H}, {"m", MS_M}, {"s", MS_S},
                                             {"ms", 1},   {"", MS_S},  {NULL, 0}};
static const struct unit size_units[] = {{"G", GIB}, {"M", MIB}, {"K", KIB}, {"", 1}, {NULL, 0}};
/* Rates divide: N/min is N/60 per second. The bare form is accepted for 0 only. */
static const struct unit rate_units[] = {{"/s", 1}, {"/min", 60}, {"/h", 3600}, {"", 1}, {NULL, 0}};

static const char *check_url(const char *s);
static const char *check_listen(const char *s);
static const char *check_header(const char *s);
static const char *check_public_key(const char *s);
static const char *check_channels(const char *s);
static const char *check_path_segment(const char *s);
static const char *check_token(const char *s);
static const char *check_db_schema(const char *s);
static const char *check_node_name(const char *s);
static int parse_synchronous(const char *s);

static const struct opt opts[] = {
    /* storage */
    {"db", OPT_STRING, "outbox.db", 1, STR_MAX, FIELD(db, char *),
     "path of the SQLite database file, or a PostgreSQL URI (postgresql://...; `outbox"
     " migrate`, `status`, `tenant` and `serve`'s delivery use one so far)"},
    {"db_schema", OPT_STRING, "outbox", 1, STR_MAX, FIELD(db_schema, char *),
     "PostgreSQL schema holding the outbox (ignored for SQLite)", .check = check_db_schema},
    {"node_name", OPT_STRING, NULL, 0, 64, FIELD(node_name, char *),
     "this serve's name among the nodes on one PostgreSQL database; unset: hostname:pid",
     .check = check_node_name},
    {"node_lease", OPT_DURATION, "10s", 3000, 10 * MS_M, FIELD(node_lease_ms, int64_t),
     "PostgreSQL: how long a node's hold on its tenants outlives its last beat; a dead"
     " node's tenants move after this"},
    {"synchronous", OPT_ENUM, "full", 0, 1, FIELD(synchronous_full, int),
     "full: every commit survives power loss; normal: faster, may lose the last commits",
     .choices = "full|normal", .enum_parse = parse_synchronous},
    {"max_db_size", OPT_SIZE, "0", 0, INT64_MAX, FIELD(max_db_size, int64_t),
     "refuse new messages once the database is this large; 0 = no quota"},
    {"retention", OPT_DURATION, "30d", 0, 3650 * MS_D, FIELD(retention_ms, int64_t),
     "remove finished messages, old audit rows, replies and webhook events older than "
     "this; 0 = keep forever"},
    {"webhook_hash_retention", OPT_DURATION, "365d", 0, 3650 * MS_D,
     FIELD(webhook_hash_retention_ms, int64_t),
     "keep the SHA-256 of each webhook body this long after receipt, beyond the body "
     "itself, so a replayed old event stays a duplicate; never less than retention; "
     "0 = forever"},

    /* Partoo */
    {"partoo_base_url", OPT_STRING, "https://api.partoo.co/v2", 1, STR_MAX,
     FIELD(partoo_base_url, char *), "Partoo API base URL", .check = check_url},
    {"partoo_api_key_file", OPT_STRING, NULL, 0, STR_MAX, FIELD(partoo_api_key_file, char *),
     "file whose first line is the API key (OUTBOX_PARTOO_API_KEY wins)"},
    {"ca_file", OPT_STRING, NULL, 0, STR_MAX, FIELD(ca_file, char *),
     "PEM bundle of CAs to trust instead of the system store"},
    {"readonly_channels", OPT_STRING, NULL, 0, STR_MAX, FIELD(readonly_channels, char *),
     "comma-separated channel ids created with is_readonly: true", .check = check_channels,
     .derive = DERIVE_CHANNELS},
    {"audit_key_file", OPT_STRING, NULL, 0, STR_MAX, FIELD(audit_key_file, char *),
     "file whose first line keys the audit chain (HMAC-SHA256); unset = plain SHA-256"},
    {"secrets_key_file", OPT_STRING, NULL, 0, STR_MAX, FIELD(secrets_key_file, char *),
     "32-byte key (raw, or 64 hex digits) encrypting tenant API keys at rest; unset = in clear"},

    /* delivery */
    {"max_inflight", OPT_INT, "16", 1, 1024, FIELD(max_inflight, int64_t),
     "concurrent requests to Partoo"},
    {"rate_limit", OPT_RATE, "290/min", 0, 1000000, FIELD(rate_limit_per_s, double),
     "requests per API key; 0 = unlimited"},
    {"rate_burst", OPT_INT, "1", 1, 1000, FIELD(rate_burst, int64_t),
     "requests that may go back to back after an idle period"},
    {"retry_base", OPT_DURATION, "1s", 1, MS_D, FIELD(retry_base_ms, int64_t),
     "first retry delay, doubled per attempt (with full jitter)"},
    {"retry_cap", OPT_DURATION, "5m", 1, 30 * MS_D, FIELD(retry_cap_ms, int64_t),
     "longest retry delay"},
    {"max_attempts", OPT_INT, "25", 1, 1000, FIELD(max_attempts, int64_t),
     "counted attempts before a message fails"},
    {"max_age", OPT_DURATION, "0", 0, 3650 * MS_D, FIELD(max_age_ms, int64_t),
     "fail a message not accepted this long after enqueue; 0 = never"},
    {"confirm_timeout", OPT_DURATION, "10m", MS_S, 30 * MS_D, FIELD(confirm_timeout_ms, int64_t),
     "re-send an accepted message not confirmed by webhook within this"},
    {"max_resends", OPT_INT, "2", 0, 100, FIELD(max_resends, int64_t),
     "re-sends for want of confirmation before it is reported unconfirmed"},
    {"auth_probe_interval", OPT_DURATION, "60s", MS_S, MS_D, FIELD(auth_probe_interval_ms, int64_t),
     "probe period of an API key paused by 401/403"},
    {"connect_timeout", OPT_DURATION, "10s", 1, 10 * MS_M, FIELD(connect_timeout_ms, int64_t),
     "TCP and TLS connection timeout"},
    {"request_timeout", OPT_DURATION, "30s", 1, MS_H, FIELD(request_timeout_ms, int64_t),
     "whole-request timeout"},
    {"shutdown_timeout", OPT_DURATION, "10s", 0, MS_H, FIELD(shutdown_timeout_ms, int64_t),
     "time in-flight requests get to finish on SIGTERM"},

    /* listeners */
    {"api_listen", OPT_STRING, "127.0.0.1:8787", 1, STR_MAX, FIELD(api_listen, char *),
     "host:port of the producer API", .check = check_listen},
    {"api_token", OPT_STRING, NULL, 0, STR_MAX, FIELD(api_token, char *),
     "bearer token the producer API requires", .check = check_token, .secret = 1},
    {"webhook_listen", OPT_STRING, "127.0.0.1:8788", 1, STR_MAX, FIELD(webhook_listen, char *),
     "host:port of the webhook listener", .check = check_listen},
    {"webhook_public_key", OPT_STRING, NULL, 0, STR_MAX, FIELD(webhook_public_key, char *),
     "Ed25519 key checking webhook signatures", .check = check_public_key},
    {"webhook_public_key_file", OPT_STRING, NULL, 0, STR_MAX,
     FIELD(webhook_public_key_file, char *), "PEM file holding that key"},
    {"webhook_path_secret", OPT_STRING, NULL, 0, STR_MAX, FIELD(webhook_path_secret, char *),
     "path segment required after /webhooks/partoo/", .check = check_path_segment, .secret = 1},
    {"webhook_required_header", OPT_STRING, NULL, 0, STR_MAX,
     FIELD(webhook_required_header, char *), "\"X-Name: value\" header required on webhooks",
     .check = check_header, .secret = 1, .derive = DERIVE_HEADER},
    {"inbox_url", OPT_STRING, NULL, 0, STR_MAX, FIELD(inbox_url, char *),
     "where replies are POSTed; unset = pull with GET /v1/inbox", .check = check_url},

    /* limits */
    {"max_body_bytes", OPT_SIZE, "1M", KIB, GIB, FIELD(max_body_bytes, int64_t),
     "largest HTTP request body accepted"},
    {"webhook_max_body_bytes", OPT_SIZE, "8M", KIB, GIB, FIELD(webhook_max_body_bytes, int64_t),
     "largest webhook request body accepted"},
    {"http_body_budget", OPT_SIZE, "64M", MIB, 64 * GIB, FIELD(http_body_budget, int64_t),
     "request bytes a listener holds unanswered, all connections together"},
    /* At most 1 MiB: the schema's CHECK on outbox.content (0001_init.sql) says so. */
    {"max_content_bytes", OPT_SIZE, "64K", 1, MIB, FIELD(max_content_bytes, int64_t),
     "largest message content"},
    {"max_json_depth", OPT_INT, "32", 1, 1000, FIELD(max_json_depth, int64_t),
     "deepest JSON nesting accepted"},

    /* logging */
    {"log_level", OPT_ENUM, "info", OBX_LOG_DEBUG, OBX_LOG_ERROR, FIELD(log_level, int),
     "least severe level logged", .choices = "debug|info|warn|error",
     .enum_parse = obx_log_level_parse},
    {"log_format", OPT_ENUM, "text", OBX_LOG_TEXT, OBX_LOG_JSON, FIELD(log_format, int),
     "text (key=value) or json lines", .choices = "text|json", .enum_parse = obx_log_format_parse},
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

/* Environment variables with the OUTBOX_ prefix that are not options. */
static const char *const env_not_options[] = {
    "OUTBOX_PARTOO_API_KEY", /* the secret: obx_config_load_secrets() */
    "OUTBOX_CONFIG",         /* which file to load: the CLI */
    "OUTBOX_BIN",            /* the binary under test: integration tests */
};
#define ENV_TEST_PREFIX "OUTBOX_TEST_"

/* ---- field access ---- */

static void *
field(struct obx_config *c, const struct opt *o)
{
    return (char *)c + o->off;
}

static const void *
cfield(const struct obx_config *c, const struct opt *o)
{
    return (const char *)c + o->off;
}

/* Zeroes n bytes in a way the compiler may not drop as a dead store. */
static void
wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;

    while (n--)
        *v++ = 0;
}

/* Frees a string; a secret is wiped first, so it does not linger in freed heap. */
static void
free_string(char *s, int secret)
{
    if (s && secret)
        wipe(s, strlen(s));
    obx_free(s);
}

/* Writes a parsed value; dup is the string copy for strings (ownership moves to c). */
static void
store(struct obx_config *c, const struct opt *o, const union val *v, char *dup)
{
    void *f = field(c, o);

    switch (o->type) {
    case OPT_STRING:
        free_string(*(char **)f, o->secret);
        *(char **)f = dup; /* now owned by c */
        break;
    case OPT_RATE: *(double *)f = v->d; break;
    case OPT_ENUM: *(int *)f = v->e; break;
    default: *(int64_t *)f = v->i; break;
    }
}

/* ---- messages ---- */

enum name_style { NAME_ASIS, NAME_UPPER, NAME_LOWER, NAME_DASH };

/* Appends len bytes of s restyled; control bytes become '?' so a message stays one line. */
static enum obx_err
put_name(struct obx_buf *b, const char *s, size_t len, enum name_style style)
{
    enum obx_err rc = OBX_OK;

    for (size_t i = 0; rc == OBX_OK && i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f)
            ch = '?';
        else if (style == NAME_UPPER)
            ch = (unsigned char)toupper(ch);
        else if (style == NAME_LOWER)
            ch = (unsigned char)tolower(ch);
        else if (style == NAME_DASH && ch == '_')
            ch = '-';
        rc = obx_buf_append(b, &ch, 1);
    }
    return rc;
}

static enum obx_err
put_where(struct obx_buf *b, const struct where *w)
{
    enum obx_err rc;

    switch (w->src) {
    case OBX_SRC_FILE:
        if (!w->name)
            return obx_buf_puts(b, "config file");
        return obx_buf_printf(b, "%s:%ld", w->name, w->line);
    case OBX_SRC_ENV:
        rc = obx_buf_puts(b, "environment OUTBOX_");
        return rc == OBX_OK ? put_name(b, w->name, w->len, NAME_UPPER) : rc;
    case OBX_SRC_FLAG:
        rc = obx_buf_puts(b, "flag --");
        return rc == OBX_OK ? put_name(b, w->name, w->len, NAME_DASH) : rc;
    case OBX_SRC_DEFAULT: break;
    }
    return obx_buf_puts(b, "default");
}

/*
 * Appends "<where>: <message>" to err (w NULL: no prefix). A message that does not
 * fit the buffer is dropped: the caller's return code still tells what happened.
 */
static void __attribute__((format(printf, 3, 4)))
report(struct obx_buf *err, const struct where *w, const char *fmt, ...)
{
    va_list ap;
    enum obx_err rc = OBX_OK;

    if (!err)
        return;
    if (w)
        rc = put_where(err, w);
    if (rc == OBX_OK && w)
        rc = obx_buf_puts(err, ": ");
    if (rc == OBX_OK) {
        va_start(ap, fmt);
        rc = obx_buf_vprintf(err, fmt, ap);
        va_end(ap);
    }
    (void)rc;
}

static void
report_unknown(struct obx_buf *err, const struct where *w, const char *key, size_t len)
{
    enum obx_err rc;

    if (!err)
        return;
    rc = put_where(err, w);
    if (rc == OBX_OK)
        rc = obx_buf_puts(err, ": unknown key '");
    if (rc == OBX_OK)
        rc = put_name(err, key, len, w->src == OBX_SRC_ENV ? NAME_LOWER : NAME_ASIS);
    if (rc == OBX_OK)
        rc = obx_buf_puts(err, "'");
    if (rc == OBX_OK && len == 14 && strncasecmp(key, "partoo_api_key", len) == 0)
        rc = obx_buf_puts(err, " (set OUTBOX_PARTOO_API_KEY or partoo_api_key_file instead)");
    (void)rc;
}

/* ---- numbers ---- */

/*
 * Reads decimal digits then one suffix of units. Returns NULL, PARSE_FORMAT (no digit,
 * sign, junk, unknown suffix) or PARSE_RANGE (more than INT64_MAX).
 */
static const char *
scan_number(const char *s, const struct unit *units, int64_t *n, const struct unit **unit)
{
    int64_t v = 0;
    int overflow = 0;
    const char *p = s;
    const struct unit *u;

    if (!isdigit((unsigned char)*p))
        return PARSE_FORMAT;
    for (; isdigit((unsigned char)*p); p++) {
        int d = *p - '0';
        if (v > (INT64_MAX - d) / 10)
            overflow = 1;
        else
            v = v * 10 + d;
    }
    for (u = units; u->suffix; u++)
        if (strcmp(p, u->suffix) == 0)
            break;
    if (!u->suffix)
        return PARSE_FORMAT;
    if (overflow)
        return PARSE_RANGE;
    *n = v;
    *unit = u;
    return NULL;
}

/* A count times its unit's scale (durations in ms, sizes in bytes, plain integers). */
static const char *
scan_scaled(const char *s, const struct unit *units, int64_t *out)
{
    int64_t n = 0;
    const struct unit *u = NULL;
    const char *why = scan_number(s, units, &n, &u);

    if (why)
        return why;
    if (n > INT64_MAX / u->scale)
        return PARSE_RANGE;
    *out = n * u->scale;
    return NULL;
}

static const char *
scan_rate(const char *s, double *out)
{
    int64_t n = 0;
    const struct unit *u = NULL;
    const char *why = scan_number(s, rate_units, &n, &u);

    if (why)
        return why;
    if (u->suffix[0] == '\0' && n != 0)
        return PARSE_FORMAT; /* "5" could mean any unit: only 0 may stand alone */
    *out = (double)n / (double)u->scale;
    return NULL;
}

enum obx_err
obx_config_parse_duration_ms(const char *s, int64_t *out /* OUT */)
{
    int64_t v = 0;

    *out = 0;
    if (scan_scaled(s, duration_units, &v))
        return OBX_EINVAL;
    *out = v;
    return OBX_OK;
}

enum obx_err
obx_config_parse_size(const char *s, int64_t *out /* OUT */)
{
    int64_t v = 0;

    *out = 0;
    if (scan_scaled(s, size_units, &v))
        return OBX_EINVAL;
    *out = v;
    return OBX_OK;
}

enum obx_err
obx_config_parse_rate_per_s(const char *s, double *out /* OUT */)
{
    double v = 0;

    *out = 0;
    if (scan_rate(s, &v))
        return OBX_EINVAL;
    *out = v;
    return OBX_OK;
}

/* Prints n with the largest unit that divides it exactly ("30d", "1M", "1500"). */
static void
format_scaled(int64_t n, const struct unit *units, char *buf, size_t size)
{
    const struct unit *u = units;

    if (n == 0) {
        snprintf(buf, size, "0");
        return;
    }
    while (u[1].suffix && n % u->scale != 0)
        u++;
    snprintf(buf, size, "%" PRId64 "%s", n / u->scale, u->suffix);
}

/* Prints a rate as N/s, N/min or N/h, the first that makes N whole. */
static void
format_rate(double r, char *buf, size_t size)
{
    if (r == 0) {
        snprintf(buf, size, "0");
        return;
    }
    for (const struct unit *u = rate_units; u->suffix[0]; u++) {
        double x = r * (double)u->scale;
        int64_t k;
        if (!(x > 0 && x < 1e15))
            break;
        k = (int64_t)(x + 0.5);
        if ((double)k - x < 1e-9 * x && x - (double)k < 1e-9 * x) {
            snprintf(buf, size, "%" PRId64 "%s", k, u->suffix);
            return;
        }
    }
    snprintf(buf, size, "%.6g/s", r);
}

/* ---- enums ---- */

static int
parse_synchronous(const char *s)
{
    if (strcmp(s, "full") == 0)
        return 1;
    if (strcmp(s, "normal") == 0)
        return 0;
    return -1;
}

/* Copies the name among o->choices whose value is e into buf ("%d" if none). */
static void
format_enum(const struct opt *o, int e, char *buf, size_t size)
{
    const char *p = o->choices;

    snprintf(buf, size, "%d", e);
    while (*p) {
        size_t n = strcspn(p, "|");
        char name[32];
        if (n < sizeof(name)) {
            memcpy(name, p, n);
            name[n] = '\0';
            if (o->enum_parse(name) == e) {
                snprintf(buf, size, "%s", name);
                return;
            }
        }
        p += n + (p[n] == '|');
    }
}

static int
in_choices(const char *choices, const char *s)
{
    size_t len = strlen(s);

    while (*choices) {
        size_t n = strcspn(choices, "|");
        if (n == len && memcmp(choices, s, n) == 0)
            return 1;
        choices += n + (choices[n] == '|');
    }
    return 0;
}

/* ---- per-type parsers: NULL on success, else PARSE_FORMAT, PARSE_RANGE or a reason ---- */

static const char *
parse_i64(const struct opt *o, const struct type_info *t, const char *s, union val *v)
{
    int64_t n = 0;
    const char *why = scan_scaled(s, t->units, &n);

    if (why)
        return why;
    if (n < o->min || n > o->max)
        return PARSE_RANGE;
    v->i = n;
    return NULL;
}

static const char *
parse_rate(const struct opt *o, const struct type_info *t, const char *s, union val *v)
{
    double r = 0;
    const char *why = scan_rate(s, &r);

    (void)t;
    if (why)
        return why;
    if (r < (double)o->min || r > (double)o->max)
        return PARSE_RANGE;
    v->d = r;
    return NULL;
}

static const char *
parse_enum(const struct opt *o, const struct type_info *t, const char *s, union val *v)
{
    int e;

    (void)t;
    if (!in_choices(o->choices, s))
        return PARSE_FORMAT;
    e = o->enum_parse(s);
    if (e < o->min || e > o->max)
        return PARSE_FORMAT;
    v->e = e;
    return NULL;
}

static const char *
parse_string(const struct opt *o, const struct type_info *t, const char *s, union val *v)
{
    size_t n = strlen(s);

    (void)t;
    if (n == 0) {
        v->s = NULL; /* empty means unset */
        return o->min > 0 ? "must not be empty" : NULL;
    }
    if (n > (size_t)o->max)
        return "longer than " STR_MAX_TEXT " bytes";
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return "contains a control character";
    if (o->check) {
        const char *why = o->check(s);
        if (why)
            return why;
    }
    v->s = s;
    return NULL;
}

static const struct type_info types[] = {
    [OPT_STRING] = {parse_string, NULL, "a string"},
    [OPT_INT] = {parse_i64, int_units, "a whole number"},
    [OPT_DURATION] = {parse_i64, duration_units,
                      "an integer with unit ms, s, m, h or d (e.g. 30s); a bare integer means "
                      "seconds"},
    [OPT_SIZE] = {parse_i64, size_units,
                  "a number of bytes, optionally with K, M or G (1024-based, e.g. 64K)"},
    [OPT_RATE] = {parse_rate, rate_units, "N/s, N/min or N/h (e.g. 290/min), or 0 for unlimited"},
    [OPT_ENUM] = {parse_enum, NULL, "one of the names listed"},
};

/* Formats a number of o's type (a bound or a value) the way a user would write it. */
static void
format_number(const struct opt *o, int64_t n, char *buf, size_t size)
{
    if (o->type == OPT_RATE)
        format_rate((double)n, buf, size);
    else
        format_scaled(n, types[o->type].units, buf, size);
}

static void
report_bad_value(struct obx_buf *err, const struct where *w, const struct opt *o, const char *s,
                 const char *why)
{
    char lo[32], hi[32];

    if (o->type == OPT_ENUM) {
        report(err, w, "bad value for '%s': expected one of %s", o->name, o->choices);
    } else if (why == PARSE_RANGE) {
        format_number(o, o->min, lo, sizeof(lo));
        format_number(o, o->max, hi, sizeof(hi));
        report(err, w, "bad value for '%s': must be between %s and %s", o->name, lo, hi);
    } else if (why == PARSE_FORMAT) {
        report(err, w, "bad value for '%s': %sexpected %s", o->name, *s ? "" : "empty value; ",
               types[o->type].hint);
    } else {
        report(err, w, "bad value for '%s': %s", o->name, why);
    }
}

/* ---- parsed forms: built from a new value before anything is stored ---- */

static int next_item(const char **p, const char **item, size_t *len);

/* The parsed form of one string option's value (enum derive_kind); owns what it holds. */
struct derived {
    char **ids; /* DERIVE_CHANNELS: sorted, no duplicates */
    size_t nids;
    char *name;  /* DERIVE_HEADER */
    char *value; /* DERIVE_HEADER; secret */
};

static void
derived_free(struct derived *d)
{
    for (size_t i = 0; i < d->nids; i++)
        obx_free(d->ids[i]);
    obx_free(d->ids);
    obx_free(d->name);
    free_string(d->value, 1);
    memset(d, 0, sizeof *d);
}

static int
cmp_ids(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* s passed check_channels: items are non-empty. */
static enum obx_err
split_channels(const char *s, struct derived *d)
{
    size_t cap = 1, n = 0, len = 0;
    const char *item = NULL;

    for (const char *p = s; *p; p++)
        cap += *p == ',';
    d->ids = obx_calloc(cap, sizeof *d->ids);
    if (!d->ids)
        return OBX_ENOMEM;
    while (next_item(&s, &item, &len) && d->nids < cap) {
        d->ids[d->nids] = obx_strndup(item, len);
        if (!d->ids[d->nids])
            return OBX_ENOMEM;
        d->nids++;
    }
    qsort(d->ids, d->nids, sizeof *d->ids, cmp_ids);
    for (size_t i = 0; i < d->nids; i++) {
        if (n > 0 && strcmp(d->ids[n - 1], d->ids[i]) == 0)
            obx_free(d->ids[i]); /* listed twice */
        else
            d->ids[n++] = d->ids[i];
    }
    d->nids = n;
    return OBX_OK;
}

/* s passed check_header: "Name:", spaces, a non-empty value. */
static enum obx_err
split_header(const char *s, struct derived *d)
{
    const char *colon = strchr(s, ':'), *v;

    assert(colon);
    for (v = colon + 1; *v == ' '; v++)
        continue;
    d->name = obx_strndup(s, (size_t)(colon - s));
    d->value = obx_strdup(v);
    return d->name && d->value ? OBX_OK : OBX_ENOMEM;
}

/* Builds o's parsed form of s (NULL = unset: an empty form) into *d; free with derived_free. */
static enum obx_err
derive_build(const struct opt *o, const char *s, struct derived *d)
{
    memset(d, 0, sizeof *d);
    if (!s)
        return OBX_OK;
    switch (o->derive) {
    case DERIVE_CHANNELS: return split_channels(s, d);
    case DERIVE_HEADER: return split_header(s, d);
    default: return OBX_OK;
    }
}

/* Puts *d in c as o's parsed form (ownership moves to c) and frees the one it replaces. */
static void
derive_install(struct obx_config *c, const struct opt *o, struct derived *d)
{
    struct derived old = {0};

    switch (o->derive) {
    case DERIVE_CHANNELS:
        old.ids = c->readonly_channel_ids;
        old.nids = c->nreadonly_channel_ids;
        c->readonly_channel_ids = d->ids;
        c->nreadonly_channel_ids = d->nids;
        d->ids = NULL;
        d->nids = 0;
        break;
    case DERIVE_HEADER:
        old.name = c->webhook_header_name;
        old.value = c->webhook_header_value;
        c->webhook_header_name = d->name;
        c->webhook_header_value = d->value;
        d->name = d->value = NULL;
        break;
    default: break;
    }
    derived_free(&old);
    derived_free(d);
}

/* Parses value for o and stores it; on any failure c is untouched. */
static enum obx_err
set_opt(struct obx_config *c, const struct opt *o, const char *value, const struct where *w,
        struct obx_buf *err)
{
    union val v = {0};
    char *dup = NULL;
    struct derived d = {0};
    const char *why = types[o->type].parse(o, &types[o->type], value, &v);

    if (why) {
        report_bad_value(err, w, o, value, why);
        return OBX_ECONFIG;
    }
    if (o->type == OPT_STRING && v.s) {
        dup = obx_strdup(v.s);
        if (!dup) {
            report(err, w, "out of memory setting '%s'", o->name);
            return OBX_ENOMEM;
        }
    }
    if (o->derive && derive_build(o, v.s, &d) != OBX_OK) {
        derived_free(&d);
        free_string(dup, o->secret);
        report(err, w, "out of memory setting '%s'", o->name);
        return OBX_ENOMEM;
    }
    store(c, o, &v, dup);
    if (o->derive)
        derive_install(c, o, &d);
    return OBX_OK;
}

/* ---- lookup ---- */

static int
key_char(unsigned char ch, enum key_fold fold)
{
    if (fold == FOLD_CASE)
        return tolower(ch);
    if (fold == FOLD_DASH && ch == '-')
        return '_';
    return ch;
}

static const struct opt *
find_opt(const char *key, size_t len, enum key_fold fold)
{
    for (size_t i = 0; i < NOPTS; i++) {
        const char *name = opts[i].name;
        size_t j = 0;
        while (j < len && name[j] && key_char((unsigned char)key[j], fold) == name[j])
            j++;
        if (j == len && name[j] == '\0')
            return &opts[i];
    }
    return NULL;
}

static enum obx_err
apply(struct obx_config *c, const char *key, size_t len, const char *value, const struct where *w,
      struct obx_buf *err)
{
    const struct opt *o = find_opt(key, len, fold_of[w->src]);

    if (!o) {
        report_unknown(err, w, key, len);
        return OBX_ECONFIG;
    }
    return set_opt(c, o, value, w, err);
}

int
obx_config_has_key(const char *name)
{
    return name && find_opt(name, strlen(name), FOLD_NONE) != NULL;
}

int
obx_config_is_secret(const char *name)
{
    const struct opt *o = name ? find_opt(name, strlen(name), FOLD_NONE) : NULL;

    return o && o->secret;
}

/* ---- lifecycle ---- */

enum obx_err
obx_config_init(struct obx_config *c)
{
    const struct where w = {OBX_SRC_DEFAULT, NULL, 0, 0};
    enum obx_err rc = OBX_OK;

    memset(c, 0, sizeof(*c));
    for (size_t i = 0; rc == OBX_OK && i < NOPTS; i++)
        if (opts[i].def)
            rc = set_opt(c, &opts[i], opts[i].def, &w, NULL);
    if (rc != OBX_OK)
        obx_config_release(c);
    return rc;
}

void
obx_config_release(struct obx_config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < NOPTS; i++) {
        if (opts[i].type == OPT_STRING) {
            char **p = field(c, &opts[i]);
            struct derived none = {0};
            free_string(*p, opts[i].secret);
            *p = NULL;
            derive_install(c, &opts[i], &none);
        }
    }
    free_string(c->partoo_api_key, 1);
    c->partoo_api_key = NULL;
}

enum obx_err
obx_config_set(struct obx_config *c, const char *key, const char *value, enum obx_config_source src,
               struct obx_buf *err)
{
    struct where w = {src, NULL, 0, 0};

    assert(key && value && src <= OBX_SRC_FLAG);
    if (src == OBX_SRC_FLAG && strncmp(key, "--", 2) == 0)
        key += 2;
    if (src == OBX_SRC_ENV || src == OBX_SRC_FLAG) {
        w.name = key;
        w.len = strlen(key);
    }
    return apply(c, key, strlen(key), value, &w, err);
}

/* ---- file ---- */

static char *
skip_space(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

static void
trim_end(char *s)
{
    size_t n = strlen(s);

    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
}

/*
 * Turns the raw text after '=' into the value, in place: drops a comment that
 * starts with '#' after whitespace, trims, and removes one pair of surrounding
 * double quotes (inside which '#' is literal). Returns NULL or why it failed.
 */
static const char *
clean_value(char *raw, char **out)
{
    char *v = skip_space(raw);
    char *close;

    if (*v == '"') {
        char *rest;
        close = strchr(v + 1, '"');
        if (!close)
            return "unterminated quote";
        rest = skip_space(close + 1);
        if (*rest != '\0' && !(*rest == '#' && rest > close + 1))
            return "text after the closing quote";
        *close = '\0';
        *out = v + 1;
        return NULL;
    }
    for (char *p = v; *p; p++) {
        if (*p == '#' && p > raw && (p[-1] == ' ' || p[-1] == '\t')) {
            *p = '\0';
            break;
        }
    }
    trim_end(v);
    *out = v;
    return NULL;
}

/* Applies one line (NUL-terminated, newline removed, writable). */
static enum obx_err
parse_line(struct obx_config *c, char *line, const struct where *w, struct obx_buf *err)
{
    char *key, *eq, *value = NULL;
    const struct opt *o;
    const char *why;

    trim_end(line); /* also drops the \r of CRLF files */
    key = skip_space(line);
    if (*key == '\0' || *key == '#')
        return OBX_OK;
    eq = strchr(key, '=');
    if (!eq) {
        report(err, w, "expected 'key = value'");
        return OBX_ECONFIG;
    }
    *eq = '\0';
    trim_end(key);
    if (*key == '\0') {
        report(err, w, "missing key before '='");
        return OBX_ECONFIG;
    }
    o = find_opt(key, strlen(key), FOLD_NONE);
    if (!o) {
        report_unknown(err, w, key, strlen(key));
        return OBX_ECONFIG;
    }
    why = clean_value(eq + 1, &value);
    if (why) {
        report(err, w, "bad value for '%s': %s", o->name, why);
        return OBX_ECONFIG;
    }
    return set_opt(c, o, value, w, err);
}

static enum obx_err
read_all(const char *path, struct obx_buf *text, struct obx_buf *err)
{
    FILE *f = fopen(path, "r");
    char chunk[4096];
    enum obx_err rc = OBX_OK;
    size_t n;

    if (!f) {
        report(err, NULL, "cannot open config file '%s': %s", path, strerror(errno));
        return OBX_ECONFIG;
    }
    do {
        n = fread(chunk, 1, sizeof(chunk), f);
        rc = obx_buf_append(text, chunk, n);
    } while (rc == OBX_OK && n == sizeof(chunk));
    if (rc == OBX_ETOOBIG) {
        report(err, NULL, "config file '%s' is larger than 1 MiB", path);
        rc = OBX_ECONFIG;
    } else if (rc == OBX_OK && ferror(f)) {
        report(err, NULL, "cannot read config file '%s': %s", path, strerror(errno));
        rc = OBX_ECONFIG;
    }
    fclose(f);
    return rc;
}

static enum obx_err
parse_text(struct obx_config *c, const char *path, const char *p, size_t len, struct obx_buf *err)
{
    const char *end = p + len;
    struct where w = {OBX_SRC_FILE, path, 0, 0};
    char line[LINE_MAX_BYTES + 1];
    enum obx_err rc = OBX_OK;

    while (rc == OBX_OK && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl ? nl : end) - p);
        w.line++;
        if (n > LINE_MAX_BYTES) {
            report(err, &w, "line longer than %d bytes", LINE_MAX_BYTES);
            return OBX_ECONFIG;
        }
        if (memchr(p, '\0', n)) {
            report(err, &w, "NUL byte in line");
            return OBX_ECONFIG;
        }
        memcpy(line, p, n);
        line[n] = '\0';
        rc = parse_line(c, line, &w, err);
        p += n + 1;
    }
    return rc;
}

enum obx_err
obx_config_load_file(struct obx_config *c, const char *path, struct obx_buf *err)
{
    struct obx_buf text;
    enum obx_err rc;

    obx_buf_init(&text, FILE_MAX_BYTES);
    rc = read_all(path, &text, err);
    if (rc == OBX_OK)
        rc = parse_text(c, path, obx_buf_str(&text), text.len, err);
    obx_buf_release(&text);
    return rc;
}

/* ---- environment ---- */

static int
env_is_option(const char *var, size_t namelen)
{
    for (size_t i = 0; i < sizeof(env_not_options) / sizeof(env_not_options[0]); i++)
        if (strlen(env_not_options[i]) == namelen && memcmp(var, env_not_options[i], namelen) == 0)
            return 0;
    return strncmp(var, ENV_TEST_PREFIX, strlen(ENV_TEST_PREFIX)) != 0;
}

enum obx_err
obx_config_load_env(struct obx_config *c, char *const *envp, struct obx_buf *err)
{
    enum obx_err rc = OBX_OK;

    for (; rc == OBX_OK && envp && *envp; envp++) {
        const char *var = *envp;
        const char *eq = strchr(var, '=');
        struct where w = {OBX_SRC_ENV, NULL, 0, 0};
        if (strncmp(var, "OUTBOX_", 7) != 0 || !eq || !env_is_option(var, (size_t)(eq - var)))
            continue;
        w.name = var + 7;
        w.len = (size_t)(eq - w.name);
        rc = apply(c, w.name, w.len, eq + 1, &w, err);
    }
    return rc;
}

/* ---- secrets ---- */

static const char *
env_lookup(char *const *envp, const char *name)
{
    size_t n = strlen(name);

    for (; envp && *envp; envp++)
        if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
            return *envp + n + 1;
    return NULL;
}

/*
 * Copies s[0..n) trimmed into *out. Never puts the secret into err: what names the
 * source (a variable or a file) for messages.
 */
static enum obx_err
secret_copy(const char *s, size_t n, const char *what, char **out, struct obx_buf *err)
{
    while (n > 0 && isspace((unsigned char)*s)) {
        s++;
        n--;
    }
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    if (n == 0) {
        report(err, NULL, "%s: the API key is empty", what);
        return OBX_ECONFIG;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            report(err, NULL, "%s: the API key contains a control character", what);
            return OBX_ECONFIG;
        }
    }
    *out = obx_strndup(s, n);
    if (!*out) {
        report(err, NULL, "%s: out of memory", what);
        return OBX_ENOMEM;
    }
    return OBX_OK;
}

static enum obx_err
secret_from_file(const char *path, char **out, struct obx_buf *err)
{
    char buf[KEY_FILE_MAX + 1];
    char what[64 + STR_MAX];
    FILE *f = fopen(path, "r");
    size_t n = 0;
    enum obx_err rc = OBX_ECONFIG;
    const char *nl;

    snprintf(what, sizeof(what), "partoo_api_key_file '%s'", path);
    if (!f) {
        report(err, NULL, "cannot read %s: %s", what, strerror(errno));
        return OBX_ECONFIG;
    }
    n = fread(buf, 1, sizeof(buf), f);
    if (ferror(f)) {
        report(err, NULL, "cannot read %s: %s", what, strerror(errno));
        goto out;
    }
    nl = memchr(buf, '\n', n);
    if (!nl && n == sizeof(buf)) {
        report(err, NULL, "%s: first line is longer than %d bytes", what, KEY_FILE_MAX);
        goto out;
    }
    rc = secret_copy(buf, nl ? (size_t)(nl - buf) : n, what, out, err);
out:
    wipe(buf, sizeof(buf)); /* the key must not outlive this call on the stack */
    fclose(f);
    return rc;
}

/* OUTBOX_PARTOO_API_KEY once obx_config_hide_env_key() took it out of the environment. */
static char *hidden_env_key;

enum obx_err
obx_config_hide_env_key(char **envp)
{
    static const char name[] = "OUTBOX_PARTOO_API_KEY";
    char *value = (char *)env_lookup(envp, name);
    char *copy;

    if (!value)
        return OBX_OK;
    copy = obx_strdup(value);
    if (!copy)
        return OBX_ENOMEM;
    free_string(hidden_env_key, 1);
    hidden_env_key = copy;
    explicit_bzero(value, strlen(value));
    unsetenv(name);
    return OBX_OK;
}

void
obx_config_forget_env_key(void)
{
    free_string(hidden_env_key, 1);
    hidden_env_key = NULL;
}

enum obx_err
obx_config_load_secrets(struct obx_config *c, char *const *envp, struct obx_buf *err)
{
    const char *env = env_lookup(envp, "OUTBOX_PARTOO_API_KEY");
    char *key = NULL;
    enum obx_err rc;

    if (!env)
        env = hidden_env_key; /* taken out of the environment at serve start */

    if (env && *env)
        rc = secret_copy(env, strlen(env), "OUTBOX_PARTOO_API_KEY", &key, err);
    else if (c->partoo_api_key_file)
        rc = secret_from_file(c->partoo_api_key_file, &key, err);
    else
        return OBX_OK; /* no key at all: serve decides whether that is fatal */
    if (rc == OBX_OK) {
        free_string(c->partoo_api_key, 1);
        c->partoo_api_key = key; /* now owned by c */
    }
    return rc;
}

/* ---- validation ---- */

static int
in_range(const struct obx_config *c, const struct opt *o)
{
    const void *f = cfield(c, o);

    switch (o->type) {
    case OPT_STRING: return 1;
    case OPT_RATE:
        return *(const double *)f >= (double)o->min && *(const double *)f <= (double)o->max;
    case OPT_ENUM: return *(const int *)f >= o->min && *(const int *)f <= o->max;
    default: return *(const int64_t *)f >= o->min && *(const int64_t *)f <= o->max;
    }
}

/* Re-checks one stored value, for a struct that may have been edited directly. */
static enum obx_err
validate_opt(const struct obx_config *c, const struct opt *o, struct obx_buf *err)
{
    union val v;
    const char *s;
    const char *why;

    if (!in_range(c, o)) {
        report_bad_value(err, NULL, o, "?", PARSE_RANGE);
        return OBX_ECONFIG;
    }
    if (o->type != OPT_STRING)
        return OBX_OK;
    s = *(char *const *)cfield(c, o);
    if (!s && o->min > 0) {
        report(err, NULL, "'%s' must be set", o->name);
        return OBX_ECONFIG;
    }
    why = s ? parse_string(o, &types[OPT_STRING], s, &v) : NULL;
    if (why) {
        report(err, NULL, "bad value for '%s': %s", o->name, why);
        return OBX_ECONFIG;
    }
    return OBX_OK;
}

/* Pairs of options where the first may not exceed the second. */
static const struct {
    const char *lo, *hi;
} ordered[] = {
    {"retry_base", "retry_cap"},
    {"connect_timeout", "request_timeout"},
    {"max_content_bytes", "max_body_bytes"},
};

static enum obx_err
validate_order(const struct obx_config *c, struct obx_buf *err)
{
    for (size_t i = 0; i < sizeof(ordered) / sizeof(ordered[0]); i++) {
        const struct opt *lo = find_opt(ordered[i].lo, strlen(ordered[i].lo), FOLD_NONE);
        const struct opt *hi = find_opt(ordered[i].hi, strlen(ordered[i].hi), FOLD_NONE);
        int64_t a, b;
        char as[32], bs[32];
        assert(lo && hi && lo->type != OPT_RATE && hi->type != OPT_RATE);
        a = *(const int64_t *)cfield(c, lo);
        b = *(const int64_t *)cfield(c, hi);
        if (a <= b)
            continue;
        format_number(lo, a, as, sizeof(as));
        format_number(hi, b, bs, sizeof(bs));
        report(err, NULL, "'%s' (%s) must not exceed '%s' (%s)", lo->name, as, hi->name, bs);
        return OBX_ECONFIG;
    }
    return OBX_OK;
}

enum obx_err
obx_config_validate(const struct obx_config *c, struct obx_buf *err)
{
    enum obx_err rc = OBX_OK;

    for (size_t i = 0; rc == OBX_OK && i < NOPTS; i++)
        rc = validate_opt(c, &opts[i], err);
    if (rc == OBX_OK)
        rc = validate_order(c, err);
    if (rc == OBX_OK && c->webhook_public_key && c->webhook_public_key_file) {
        report(err, NULL,
               "'webhook_public_key' and 'webhook_public_key_file' are both set; "
               "keep one");
        rc = OBX_ECONFIG;
    }
    return rc;
}

/* ---- string format checks: NULL when fine, else why ---- */

/*
 * http:// carries the API key (partoo_base_url) or the replies (inbox_url) in clear text:
 * allowed only to a loopback host (tests, a local TLS-terminating proxy). The host comes
 * from libcurl's own URL parser, so that what is checked is what libcurl will connect to.
 */
static const char *
check_http_host(const char *s)
{
    CURLU *u = curl_url();
    char *host = NULL;
    const char *why = NULL;

    if (!u)
        return "out of memory";
    if (curl_url_set(u, CURLUPART_URL, s, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
        why = "not a valid URL";
    else if (!obx_net_host_is_loopback(host))
        why = "http:// is allowed only to a loopback host (127.0.0.0/8, ::1, localhost): "
              "it would send secrets and messages in clear text; use https://";
    curl_free(host);
    curl_url_cleanup(u);
    return why;
}

static const char *
check_url(const char *s)
{
    size_t n = 0;

    if (strncmp(s, "http://", 7) == 0)
        n = 7;
    else if (strncmp(s, "https://", 8) == 0)
        n = 8;
    if (n == 0 || s[n] == '\0' || s[n] == '/')
        return "expected a URL starting with http:// or https:// and a host";
    if (strchr(s, ' '))
        return "a URL may not contain spaces";
    if (n == 7)
        return check_http_host(s);
    return NULL;
}

const char *
obx_config_check_url(const char *s)
{
    if (strlen(s) > STR_MAX)
        return "longer than " STR_MAX_TEXT " bytes";
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return "contains a control character";
    return check_url(s);
}

static const char *
check_listen(const char *s)
{
    static const char why[] = "expected host:port (e.g. 127.0.0.1:8787 or [::1]:8787), "
                              "port 0..65535";
    const char *colon;
    long port = 0;

    if (*s == '[') {
        colon = strchr(s, ']');
        if (!colon || colon == s + 1)
            return why;
        colon++;
    } else {
        colon = strchr(s, ':');
        if (!colon || colon == s || strchr(colon + 1, ':'))
            return why; /* an IPv6 address needs brackets */
    }
    if (*colon != ':' || colon[1] == '\0' || strlen(colon + 1) > 5 || strchr(s, ' '))
        return why;
    for (const char *p = colon + 1; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return why;
        port = port * 10 + (*p - '0');
    }
    return port <= 65535 ? NULL : why;
}

/* RFC 9110 token characters, as used in header names. */
static int
is_tchar(unsigned char ch)
{
    return isalnum(ch) || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static const char *
check_header(const char *s)
{
    const char *p = s;

    while (is_tchar((unsigned char)*p))
        p++;
    if (p == s || *p != ':')
        return "expected 'X-Name: value'";
    p++;
    while (*p == ' ')
        p++;
    return *p ? NULL : "expected 'X-Name: value'";
}

/*
 * Format only: 64 hex digits (the raw key), or the 60-character base64 line of an
 * Ed25519 SubjectPublicKeyInfo (44 bytes: a fixed 12-byte prefix, then the key).
 */
static const char *
check_public_key(const char *s)
{
    static const char prefix[] = "MCowBQYDK2VwAyEA";
    size_t n = strlen(s);
    size_t i;

    if (n == 64) {
        for (i = 0; i < n && isxdigit((unsigned char)s[i]); i++)
            continue;
        if (i == n)
            return NULL;
    }
    if (n == 60 && strncmp(s, prefix, strlen(prefix)) == 0 && s[59] == '=') {
        for (i = 0; i < 59 && (isalnum((unsigned char)s[i]) || s[i] == '+' || s[i] == '/'); i++)
            continue;
        if (i == 59)
            return NULL;
    }
    return "expected 64 hex characters or the base64 Ed25519 key line of a PEM "
           "(MCowBQYDK2VwAyEA...)";
}

/* Steps over one comma-separated item of *p; returns it, trimmed of spaces, in item and len. */
static int
next_item(const char **p, const char **item, size_t *len)
{
    const char *s = *p;
    size_t n;

    if (*s == '\0')
        return 0;
    n = strcspn(s, ",");
    *p = s + n + (s[n] == ',');
    while (n > 0 && *s == ' ') {
        s++;
        n--;
    }
    while (n > 0 && s[n - 1] == ' ')
        n--;
    *item = s;
    *len = n;
    return 1;
}

static const char *
check_channels(const char *s)
{
    const char *item = NULL;
    size_t n = 0;

    if (s[strlen(s) - 1] == ',')
        return "empty channel id in the list";
    while (next_item(&s, &item, &n))
        if (n == 0 || memchr(item, ' ', n))
            return "expected channel ids separated by commas";
    return NULL;
}

static const char *
check_path_segment(const char *s)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("-._~", *s))
            return "may only contain letters, digits and - . _ ~";
    return NULL;
}

static const char *
check_db_schema(const char *s)
{
    return obx_pg_check_schema(s);
}

static const char *
check_node_name(const char *s)
{
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == ',' || *p == 0x7f)
            return "may not contain spaces, commas or control characters";
    return NULL;
}

static const char *
check_token(const char *s)
{
    if (strchr(s, ' '))
        return "may not contain spaces";
    /* Short tokens can be guessed over the network; 16 bytes is the least we accept. */
    return strlen(s) < OBX_API_TOKEN_MIN ? "must be at least 16 bytes long" : NULL;
}

int
obx_config_channel_readonly(const struct obx_config *c, const char *channel_id)
{
    if (!channel_id || c->nreadonly_channel_ids == 0)
        return 0;
    return bsearch(&channel_id, c->readonly_channel_ids, c->nreadonly_channel_ids,
                   sizeof *c->readonly_channel_ids, cmp_ids) != NULL;
}

/* ---- printing ---- */

/* Returns the text of o's value: borrowed from c, a constant, or written into buf. */
static const char *
value_text(const struct obx_config *c, const struct opt *o, char *buf, size_t size)
{
    const void *f = cfield(c, o);

    switch (o->type) {
    case OPT_STRING:
        if (!*(char *const *)f)
            return UNSET;
        if (o->secret)
            return MASK;
        /* A PostgreSQL URI may carry a password (SPEC §12). */
        if (o->off == offsetof(struct obx_config, db) && obx_pg_is_uri(*(char *const *)f)) {
            obx_pg_redact_uri(*(char *const *)f, buf, size);
            return buf;
        }
        return *(char *const *)f;
    case OPT_RATE: format_rate(*(const double *)f, buf, size); break;
    case OPT_ENUM: format_enum(o, *(const int *)f, buf, size); break;
    default: format_number(o, *(const int64_t *)f, buf, size); break;
    }
    return buf;
}

void
obx_config_print(const struct obx_config *c, FILE *out)
{
    char buf[4096 + 8];

    for (size_t i = 0; i < NOPTS; i++) {
        fprintf(out, "%s = %s\n", opts[i].name, value_text(c, &opts[i], buf, sizeof(buf)));
        if (opts[i].off == offsetof(struct obx_config, partoo_api_key_file))
            fprintf(out, "partoo_api_key = %s\n", c->partoo_api_key ? MASK : UNSET);
    }
}
