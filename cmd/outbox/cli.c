/* cli: shared plumbing of the subcommands. */
#include "cli.h"

#include <assert.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "audit.h"
#include "clock.h"
#include "log.h"
#include "mem.h"
#include "pg.h"
#include "store_pg.h"

extern char **environ;

void
cli_error(const struct cli *c, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "outbox %s: ", c->command);
    va_start(ap, fmt);
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): va_start is right above */
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static const struct cli_opt *
find_opt(const struct cli_opt *opts, const char *name, size_t len)
{
    for (; opts && opts->name; opts++)
        if (strlen(opts->name) == len && strncmp(opts->name, name, len) == 0)
            return opts;
    return NULL;
}

/* Whether --name (dashes for underscores) names a configuration key. */
static int
is_config_key(const char *name, size_t len)
{
    char key[64];

    if (len >= sizeof key)
        return 0;
    for (size_t i = 0; i < len; i++)
        key[i] = name[i] == '-' ? '_' : name[i];
    key[len] = '\0';
    return obx_config_has_key(key);
}

#define CLI_SECRET_FLAG 3 /* add_config_flag: refused and explained */

/* Remembers a configuration key given as a flag; applied after the file and env. */
static int
add_config_flag(struct cli *c, const char *name, size_t len, const char *value)
{
    if (c->nflags == CLI_MAX_CONFIG_FLAGS || len >= sizeof c->flags[0].key_buf)
        return CLI_USAGE;
    memcpy(c->flags[c->nflags].key_buf, name, len);
    c->flags[c->nflags].key_buf[len] = '\0';
    for (char *p = c->flags[c->nflags].key_buf; *p; p++)
        if (*p == '-')
            *p = '_';
    if (!obx_config_has_key(c->flags[c->nflags].key_buf))
        return CLI_USAGE;
    /* argv is readable by every local user (/proc/PID/cmdline, ps): no secret may pass there. */
    if (obx_config_is_secret(c->flags[c->nflags].key_buf)) {
        const char *key = c->flags[c->nflags].key_buf;
        char env[sizeof c->flags[0].key_buf];
        size_t i;
        for (i = 0; i < sizeof env - 1 && key[i]; i++)
            env[i] = (char)toupper((unsigned char)key[i]);
        env[i] = '\0';
        cli_error(c,
                  "--%.*s is a secret and the command line is visible to every local user; "
                  "set OUTBOX_%s in the environment or %s in the configuration file",
                  (int)len, name, env, key);
        return CLI_SECRET_FLAG;
    }
    c->flags[c->nflags].key = c->flags[c->nflags].key_buf;
    c->flags[c->nflags].value = value;
    c->nflags++;
    return CLI_OK;
}

/* Handles one --name[=value] at argv[*i]; advances *i past a separate value. */
static int
parse_long(struct cli *c, int argc, char **argv, int *i, const struct cli_opt *opts)
{
    const char *arg = argv[*i] + 2, *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    const struct cli_opt *o = find_opt(opts, arg, len);
    const char *value = eq ? eq + 1 : NULL;
    int takes_value = !o || o->value || o->list;
    int rc;

    /* every option of a table has exactly one of the three */
    assert(!o || (o->value != NULL) + (o->flag != NULL) + (o->list != NULL) == 1);
    if (!o && len == 14 && strncmp(arg, "partoo-api-key", 14) == 0) {
        cli_error(c, "--partoo-api-key is a secret and the command line is visible to every "
                     "local user; set OUTBOX_PARTOO_API_KEY or partoo_api_key_file");
        return CLI_USAGE;
    }
    if (!o && !(len == 6 && strncmp(arg, "config", 6) == 0) && !is_config_key(arg, len)) {
        cli_error(c, "unknown option --%.*s (see 'outbox %s --help')", (int)len, arg, c->command);
        return CLI_USAGE;
    }
    if (o && o->flag) {
        if (eq) {
            cli_error(c, "option --%.*s takes no value", (int)len, arg);
            return CLI_USAGE;
        }
        *o->flag = 1;
        return CLI_OK;
    }
    if (!value && takes_value) {
        if (*i + 1 >= argc) {
            cli_error(c, "option --%.*s needs a value", (int)len, arg);
            return CLI_USAGE;
        }
        value = argv[++*i];
    }
    if (o && o->list) {
        if (o->list->n >= o->list->max) {
            cli_error(c, "option --%.*s is given more than %d times", (int)len, arg, o->list->max);
            return CLI_USAGE;
        }
        o->list->v[o->list->n++] = value;
        return CLI_OK;
    }
    if (o) {
        *o->value = value;
        return CLI_OK;
    }
    if (len == 6 && strncmp(arg, "config", 6) == 0) {
        c->config_file = value;
        return CLI_OK;
    }
    rc = add_config_flag(c, arg, len, value);
    if (rc == CLI_SECRET_FLAG)
        return CLI_USAGE; /* already explained */
    if (rc != CLI_OK) {
        cli_error(c, "unknown option --%.*s (see 'outbox %s --help')", (int)len, arg, c->command);
        return CLI_USAGE;
    }
    return CLI_OK;
}

int
cli_parse(struct cli *c, int argc, char **argv, const struct cli_opt *opts)
{
    int only_positional = 0;

    c->config_file = getenv("OUTBOX_CONFIG");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int rc = CLI_OK;
        if (!only_positional && strcmp(a, "--") == 0) {
            only_positional = 1;
        } else if (!only_positional && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
            c->help = 1;
        } else if (!only_positional && strcmp(a, "--json") == 0) {
            c->json = 1;
        } else if (!only_positional && strncmp(a, "--", 2) == 0) {
            rc = parse_long(c, argc, argv, &i, opts);
        } else if (!only_positional && a[0] == '-' && a[1]) {
            cli_error(c, "unknown option %s (see 'outbox %s --help')", a, c->command);
            rc = CLI_USAGE;
        } else if (c->npositional == CLI_MAX_POSITIONAL) {
            cli_error(c, "too many arguments");
            rc = CLI_USAGE;
        } else {
            c->positional[c->npositional++] = a;
        }
        if (rc != CLI_OK)
            return rc;
    }
    return CLI_OK;
}

enum obx_err
cli_build_config(const struct cli *c, struct obx_config *out, struct obx_buf *err)
{
    enum obx_err e = obx_config_init(out);

    if (e == OBX_OK && c->config_file)
        e = obx_config_load_file(out, c->config_file, err);
    if (e == OBX_OK)
        e = obx_config_load_env(out, environ, err);
    for (int i = 0; e == OBX_OK && i < c->nflags; i++)
        e = obx_config_set(out, c->flags[i].key, c->flags[i].value, OBX_SRC_FLAG, err);
    if (e == OBX_OK)
        e = obx_config_validate(out, err);
    if (e != OBX_OK && !err->len && obx_buf_puts(err, obx_strerror(e)) != OBX_OK)
        e = OBX_ENOMEM;
    return e;
}

int
cli_load_config(struct cli *c)
{
    struct obx_buf err;
    enum obx_err e;

    obx_buf_init(&err, 4096);
    e = cli_build_config(c, &c->cfg, &err);
    if (e != OBX_OK)
        cli_error(c, "%s", obx_buf_str(&err));
    obx_buf_release(&err);
    if (e == OBX_OK)
        obx_log_setup(c->cfg.log_level, c->cfg.log_format, NULL);
    return e == OBX_OK ? CLI_OK : CLI_FAIL;
}

static int
open_with(struct cli *c, struct obx_store_opts *o, struct obx_store **out)
{
    enum obx_err err;

    if (obx_pg_is_uri(c->cfg.db)) {
        /* Only the commands marked postgresql_ok get here (check_postgresql). */
        char msg[512], shown[4096];
        obx_pg_redact_uri(c->cfg.db, shown, sizeof shown);
        err = obx_store_pg_open_store(c->cfg.db, c->cfg.db_schema, "cli", 1, out, msg, sizeof msg);
        if (err != OBX_OK) {
            cli_error(c, "cannot open '%s': %s", shown, msg);
            return CLI_FAIL;
        }
    } else {
        o->synchronous_normal = !c->cfg.synchronous_full;
        o->max_db_size = c->cfg.max_db_size;
        err = obx_store_open(c->cfg.db, o, out);
    }
    /* The CLI continues a keyed audit chain but never starts one (audit.h). */
    if (err == OBX_OK && c->cfg.audit_key_file) {
        char msg[512];
        err = obx_audit_use_key(*out, c->cfg.audit_key_file, 0, msg, sizeof msg);
        if (err != OBX_OK) {
            cli_error(c, "%s", msg);
            obx_store_free(*out);
            *out = NULL;
            return CLI_FAIL;
        }
    }
    if (err == OBX_ESCHEMA)
        cli_error(c,
                  "cannot open '%s': its schema is not the one this binary supports "
                  "(newer than this binary, damaged, or not migrated: run 'outbox migrate')",
                  c->cfg.db);
    else if (err != OBX_OK)
        cli_error(c, "cannot open '%s': %s", c->cfg.db, obx_strerror(err));
    return err == OBX_OK ? CLI_OK : CLI_FAIL;
}

int
cli_open_store(struct cli *c, int no_migrate, struct obx_store **out)
{
    struct obx_store_opts o = {0};

    o.no_migrate = no_migrate;
    return open_with(c, &o, out);
}

int
cli_open_bulk_store(struct cli *c, struct obx_store **out)
{
    struct obx_store_opts o = {0};

    o.cache_kib = 64 * 1024;
    o.wal_pages = 20000;
    return open_with(c, &o, out);
}

void
cli_release(struct cli *c)
{
    obx_config_release(&c->cfg);
}

static int
is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

/* RFC 3339: 2026-11-24T10:00:00Z, with optional fraction and +hh:mm offset. */
static int
parse_rfc3339(const char *s, int64_t *out_ms)
{
    struct tm tm = {0};
    int frac_ms = 0, off_min = 0, consumed = 0;
    const char *p;

    if (sscanf(s, "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6)
        return -1;
    p = s + consumed;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 3)
                frac_ms = frac_ms * 10 + (*p - '0');
        for (; digits < 3; digits++)
            frac_ms *= 10;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        /* Exactly [+-]hh:mm, checked byte by byte: sscanf's %2d takes "1", " 1" or "-1"
           too, and the six bytes skipped afterwards must be the six that were read. */
        const char *o = p + 1;
        if (!is_digit(o[0]) || !is_digit(o[1]) || o[2] != ':' || !is_digit(o[3]) || !is_digit(o[4]))
            return -1;
        off_min = ((o[0] - '0') * 10 + (o[1] - '0')) * 60 + (o[3] - '0') * 10 + (o[4] - '0');
        off_min *= *p == '-' ? -1 : 1;
        p += 6;
    } else {
        return -1;
    }
    if (*p || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out_ms = ((int64_t)timegm(&tm) - off_min * 60) * 1000 + frac_ms;
    return 0;
}

int
cli_parse_time(const char *s, int64_t now_ms, int64_t *out_ms)
{
    int64_t ago = 0;

    *out_ms = 0;
    if (parse_rfc3339(s, out_ms) == 0)
        return 0;
    if (obx_config_parse_duration_ms(s, &ago) == OBX_OK) {
        *out_ms = now_ms - ago;
        return 0;
    }
    return -1;
}

void
cli_format_age(int64_t ms, char *out, size_t n)
{
    int64_t s = ms / 1000;

    if (ms < 0)
        s = 0;
    if (s < 60)
        snprintf(out, n, "%llds", (long long)s);
    else if (s < 3600)
        snprintf(out, n, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
    else if (s < 86400)
        snprintf(out, n, "%lldh%02lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
    else
        snprintf(out, n, "%lldd%02lldh", (long long)(s / 86400), (long long)(s % 86400 / 3600));
}

void
cli_format_time(int64_t at_ms, char *out, size_t n)
{
    time_t secs = (time_t)(at_ms / 1000);
    struct tm tm;

    if (!at_ms) {
        snprintf(out, n, "-");
        return;
    }
    gmtime_r(&secs, &tm);
    strftime(out, n, "%Y-%m-%d %H:%M:%SZ", &tm);
}

/* Bytes of the UTF-8 sequence starting at s (2..4), or 0 when it is not well formed. */
static size_t
utf8_len(const unsigned char *s)
{
    size_t n = s[0] >= 0xc2 && s[0] <= 0xdf   ? 2
               : s[0] >= 0xe0 && s[0] <= 0xef ? 3
               : s[0] >= 0xf0 && s[0] <= 0xf4 ? 4
                                              : 0;

    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    /* Overlong three-byte forms and surrogates; beyond U+10FFFF. */
    if ((n == 3 && s[0] == 0xe0 && s[1] < 0xa0) || (n == 3 && s[0] == 0xed && s[1] >= 0xa0) ||
        (n == 4 && s[0] == 0xf0 && s[1] < 0x90) || (n == 4 && s[0] == 0xf4 && s[1] >= 0x90))
        return 0;
    return n;
}

char *
cli_safe_dup(const char *s, int keep_layout)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s), o = 0;
    char *out = obx_malloc(len * 6 + 1); /* the longest escape, \u009b, is 6 bytes for 2 */

    if (!out)
        return NULL;
    while (*p) {
        size_t n = *p < 0x80 ? 1 : utf8_len(p);
        if (n == 1 && (*p >= 0x20 || (keep_layout && (*p == '\n' || *p == '\t'))) && *p != 0x7f) {
            out[o++] = (char)*p;
        } else if (n == 0 || n == 1) {
            o += (size_t)snprintf(out + o, 5, "\\x%02x", *p);
            n = 1;
        } else if (n == 2 && p[0] == 0xc2 && p[1] < 0xa0) {
            o += (size_t)snprintf(out + o, 7, "\\u%04x", p[1]);
        } else {
            memcpy(out + o, p, n);
            o += n;
        }
        p += n;
    }
    out[o] = '\0';
    return out;
}

void
cli_printf_safe(FILE *out, const char *fmt, ...)
{
    va_list ap, ap2;
    char *text = NULL, *safe = NULL;
    int n;

    va_start(ap, fmt);
    va_copy(ap2, ap);
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): va_start is right above */
    n = vsnprintf(NULL, 0, fmt, ap);
    if (n >= 0)
        text = obx_malloc((size_t)n + 1);
    if (text)
        vsnprintf(text, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    va_end(ap);
    safe = text ? cli_safe_dup(text, 1) : NULL;
    if (safe)
        fputs(safe, out);
    obx_free(text);
    obx_free(safe);
}

int
cli_table_init(struct cli_table *t, int ncols, const char *const *headers)
{
    memset(t, 0, sizeof *t);
    t->ncols = ncols;
    return cli_table_add(t, headers);
}

int
cli_table_add(struct cli_table *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        int ncap = t->cap ? t->cap * 2 : 16;
        char **p = obx_realloc(t->cells, (size_t)ncap * (size_t)t->ncols * sizeof *p);
        if (!p)
            return -1;
        t->cells = p;
        t->cap = ncap;
    }
    for (int i = 0; i < t->ncols; i++)
        t->cells[t->nrows * t->ncols + i] = cli_safe_dup(cells[i] ? cells[i] : "-", 0);
    t->nrows++;
    return 0;
}

/* Display width: counts UTF-8 code points, not bytes, so accents do not skew columns. */
static int
display_width(const char *s)
{
    int w = 0;

    for (; s && *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            w++;
    return w;
}

void
cli_table_print(const struct cli_table *t, FILE *out)
{
    int width[16] = {0};

    for (int r = 0; r < t->nrows; r++)
        for (int col = 0; col < t->ncols && col < 16; col++) {
            int w = display_width(t->cells[r * t->ncols + col]);
            if (w > width[col])
                width[col] = w;
        }
    for (int r = 0; r < t->nrows; r++) {
        for (int col = 0; col < t->ncols; col++) {
            const char *cell = t->cells[r * t->ncols + col];
            int last = col == t->ncols - 1;
            fputs(cell ? cell : "", out);
            if (!last)
                fprintf(out, "%*s", width[col] - display_width(cell) + 2, "");
        }
        fputc('\n', out);
    }
}

void
cli_table_release(struct cli_table *t)
{
    if (!t || !t->cells)
        return;
    for (int i = 0; i < t->nrows * t->ncols; i++)
        obx_free(t->cells[i]);
    obx_free(t->cells);
    memset(t, 0, sizeof *t);
}

/* Names the first required option missing (a usage error), so the operator sees which. */
static int
check_required(const struct cli *c, const struct cli_opt *opts)
{
    int any = 0;

    for (const struct cli_opt *o = opts; o && o->name; o++)
        any |= o->value ? *o->value != NULL : o->flag ? *o->flag : o->list->n > 0;
    if (c->required_with_any && !any)
        return CLI_OK;
    for (const struct cli_opt *o = opts; o && o->name; o++)
        if (o->required && o->value && !*o->value) {
            cli_error(c, "missing required option --%s (see 'outbox %s --help')", o->name,
                      c->command);
            return CLI_USAGE;
        }
    return CLI_OK;
}

/*
 * A PostgreSQL db (SPEC §12): its password never on the command line (any user may read
 * a process's arguments), and only the commands that support PostgreSQL go on.
 */
static int
check_postgresql(const struct cli *c)
{
    char shown[4096];

    obx_pg_redact_uri(c->cfg.db, shown, sizeof shown);
    for (int i = 0; i < c->nflags; i++) {
        if (strcmp(c->flags[i].key, "db") == 0 && strcmp(c->flags[i].value, shown) != 0) {
            cli_error(c, "--db: a password on the command line is visible to every user of "
                         "this machine; put it in PGPASSWORD, ~/.pgpass or the config file");
            return CLI_USAGE;
        }
    }
    return c->postgresql_ok ? CLI_OK : cli_refuse_postgresql(c);
}

int
cli_refuse_postgresql(const struct cli *c)
{
    char shown[4096];

    obx_pg_redact_uri(c->cfg.db, shown, sizeof shown);
    cli_error(c,
              "db is a PostgreSQL database (%s): `%s` needs a SQLite file (on PostgreSQL, use "
              "PostgreSQL's own tools: pg_dump for a backup)",
              shown, c->command);
    return CLI_FAIL;
}

int
cli_start(struct cli *c, int argc, char **argv, const struct cli_opt *opts, int min_pos,
          int max_pos, int *exit_code)
{
    *exit_code = cli_parse(c, argc, argv, opts);
    if (*exit_code != CLI_OK)
        return 0;
    if (c->help) {
        fputs(c->usage, stdout);
        return 0;
    }
    if (check_required(c, opts) != CLI_OK) {
        *exit_code = CLI_USAGE;
        return 0;
    }
    if (c->npositional < min_pos || c->npositional > max_pos) {
        /* The usage line names the arguments (CHANNEL EXT_ID, FILE). */
        const char *line = strncmp(c->usage, "usage: ", 7) == 0 ? c->usage + 7 : c->command;
        cli_error(c, "%s arguments; usage: %.*s", c->npositional < min_pos ? "missing" : "too many",
                  (int)strcspn(line, "\n"), line);
        *exit_code = CLI_USAGE;
        return 0;
    }
    *exit_code = cli_load_config(c);
    if (*exit_code == CLI_OK && obx_pg_is_uri(c->cfg.db))
        *exit_code = check_postgresql(c);
    return *exit_code == CLI_OK;
}

void
cli_print_key_json(const char *channel, const char *ext_id, const char *name, const char *value)
{
    struct obx_buf b;
    enum obx_err err;

    obx_buf_init(&b, 4096);
    err = obx_buf_puts(&b, "{\"channel_id\":");
    if (err == OBX_OK)
        err = obx_buf_json_str(&b, channel);
    if (err == OBX_OK)
        err = obx_buf_puts(&b, ",\"external_message_id\":");
    if (err == OBX_OK)
        err = obx_buf_json_str(&b, ext_id);
    if (err == OBX_OK)
        err = obx_buf_printf(&b, ",\"%s\":", name);
    if (err == OBX_OK)
        err = obx_buf_json_str(&b, value);
    if (err == OBX_OK)
        err = obx_buf_puts(&b, "}\n");
    if (err == OBX_OK)
        fputs(obx_buf_str(&b), stdout);
    obx_buf_release(&b);
}

/* "512 B", "3.4 KiB", "12.0 MiB", "1.5 GiB". */
void
cli_format_bytes(int64_t n, char *out, size_t size)
{
    if (n < 1024)
        snprintf(out, size, "%lld B", (long long)n);
    else if (n < CLI_MIB)
        snprintf(out, size, "%.1f KiB", (double)n / 1024);
    else if (n < CLI_GIB)
        snprintf(out, size, "%.1f MiB", (double)n / (double)CLI_MIB);
    else
        snprintf(out, size, "%.1f GiB", (double)n / (double)CLI_GIB);
}

/* Size of a file in bytes; 0 when it does not exist. */
int64_t
cli_file_size(const char *path)
{
    struct stat sb;

    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

/* The directory part of path ("." when there is none) into out[size]. */
void
cli_dir_of(const char *path, char *out, size_t size)
{
    const char *slash = strrchr(path, '/');

    if (!slash)
        snprintf(out, size, ".");
    else if (slash == path)
        snprintf(out, size, "/");
    else
        snprintf(out, size, "%.*s", (int)(slash - path), path);
}
