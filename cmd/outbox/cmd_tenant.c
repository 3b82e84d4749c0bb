/*
 * cmd_tenant: `outbox tenant add|set|rm|ls`, the tenant registry (SPEC §11) from the shell.
 *
 * The API key comes from a file or stdin, never from argv (every local user reads argv);
 * it is read into one stack buffer, handed to the store, and wiped (explicit_bzero) before
 * the command returns. With secrets_key_file it is stored sealed (lib/secretbox.h). serve
 * notices a change within a second (the registry version), so no restart and no signal.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "buf.h"
#include "cli.h"
#include "commands.h"
#include "mem.h"
#include "secretbox.h"
#include "store_tenant.h"
#include "view.h"

#define TENANT_ID_MAX 255 /* bytes of a channel id, as for messages */
#define KEY_TOO_LONG "its first line is longer than 4096 bytes" /* OBX_TENANT_KEY_MAX */
_Static_assert(OBX_TENANT_KEY_MAX == 4096, "KEY_TOO_LONG names the bound");
#define RATE_MAX_PER_S 1000000.0 /* rate_limit's bound in the configuration table */

static const char usage_text[] =
    "usage: outbox tenant add NAME (--api-key-file F | --api-key-stdin) [--rate-limit R]\n"
    "                         [--rate-burst N] [--base-url URL] [--channel ID]...\n"
    "                         [--readonly-channel ID]...\n"
    "       outbox tenant set NAME [--api-key-file F | --api-key-stdin] [--rate-limit R]\n"
    "                         [--rate-burst N] [--base-url URL] [--channel ID]...\n"
    "                         [--readonly-channel ID]... [--remove-channel ID]...\n"
    "       outbox tenant rm NAME\n"
    "       outbox tenant ls [--json]\n\n"
    "A tenant is one Partoo organisation: its API key, its pace, its base URL and the\n"
    "channels it owns (each channel belongs to one tenant). serve applies a change within a\n"
    "second, without a restart. NAME is [A-Za-z0-9._-], 1..64 bytes; `default` is reserved\n"
    "for the configured key (OUTBOX_PARTOO_API_KEY / partoo_api_key_file), which serves\n"
    "every channel no tenant owns.\n\n"
    "  --api-key-file F        the API key is the first line of F\n"
    "  --api-key-stdin         the API key is the first line of standard input\n"
    "                          (there is no --api-key: the command line is visible to every\n"
    "                          local user). `set` without either keeps the stored key.\n"
    "  --rate-limit R          N/s, N/min or N/h (e.g. 290/min), as rate_limit;\n"
    "                          `configured` (the default) follows rate_limit\n"
    "  --rate-burst N          1..1000, as rate_burst; `configured` follows rate_burst\n"
    "  --base-url URL          https:// (http:// to loopback only), as partoo_base_url;\n"
    "                          `configured` follows partoo_base_url\n"
    "  --channel ID            a channel the tenant owns, sending and receiving\n"
    "  --readonly-channel ID   a channel the tenant owns, created with is_readonly: true\n"
    "  --remove-channel ID     (set) release a channel: its queued messages wait for an\n"
    "                          owner, or go with the configured key if there is one\n\n"
    "The key is stored AES-256-GCM sealed under secrets_key_file when that is set, else in\n"
    "the clear (doctor warns). No command prints it: `ls` shows a SHA-256 fingerprint.\n"
    "A channel another tenant owns is refused (exit 1) and nothing changes. With --json,\n"
    "ls prints an array of tenants as GET /v1/tenants/{name} shows one, add and set print\n"
    "the tenant, rm {\"deleted\":NAME}.\n\n" CLI_COMMON_HELP;

struct tenant_args {
    const char *action, *name;
    const char *key_file, *rate, *burst, *url;
    int key_stdin;
    struct cli_list channels, readonly, removed;
};

/* ---- the key: first line of a file or stdin, wiped after use ---------------------------- */

/*
 * Reads up to the first newline of fd into key (size = OBX_TENANT_KEY_MAX + 2 bytes) with
 * read(2), not stdio, so that no library buffer keeps a copy; stops at the newline, so a
 * key typed or piped needs no end of file. Returns the bytes read, or -1.
 */
static ssize_t
read_line(int fd, char *key, size_t size)
{
    size_t n = 0;

    while (n < size - 1 && !memchr(key, '\n', n)) {
        ssize_t r = read(fd, key + n, size - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        n += (size_t)r;
    }
    key[n] = '\0';
    return (ssize_t)n;
}

/*
 * The first line of fd into key: surrounding whitespace trimmed, as partoo_api_key_file.
 * Returns NULL or why not (never the key). Whatever followed the line is wiped.
 */
static const char *
read_key(int fd, char *key, size_t size)
{
    ssize_t got = read_line(fd, key, size);
    size_t n = got > 0 ? (size_t)got : 0, start = 0;
    char *nl = memchr(key, '\n', n);

    if (got < 0)
        return "cannot be read";
    if (!nl && n == size - 1)
        return KEY_TOO_LONG;
    if (nl)
        n = (size_t)(nl - key);
    while (n > 0 && (key[n - 1] == ' ' || key[n - 1] == '\t' || key[n - 1] == '\r'))
        n--;
    while (start < n && (key[start] == ' ' || key[start] == '\t'))
        start++;
    memmove(key, key + start, n - start);
    n -= start;
    explicit_bzero(key + n, size - n);
    if (n == 0)
        return "holds no key (its first line is empty)";
    if (n > OBX_TENANT_KEY_MAX)
        return KEY_TOO_LONG;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)key[i] < 0x20 || key[i] == 0x7f)
            return "contains a control character in its first line";
    return NULL;
}

/*
 * The key named by --api-key-file or --api-key-stdin into key; CLI_OK or CLI_FAIL. On a
 * terminal, the typed key is not echoed (as passwd does).
 */
static int
load_key(struct cli *c, const struct tenant_args *a, char *key, size_t size)
{
    int fd = a->key_stdin ? STDIN_FILENO : open(a->key_file, O_RDONLY | O_CLOEXEC);
    struct termios saved, quiet;
    int tty = a->key_stdin && isatty(fd) && tcgetattr(fd, &saved) == 0;
    const char *why;

    if (fd < 0) {
        cli_error(c, "cannot read --api-key-file '%s': %s", a->key_file, strerror(errno));
        return CLI_FAIL;
    }
    if (tty) {
        quiet = saved;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        fputs("API key: ", stderr);
        tty = tcsetattr(fd, TCSAFLUSH, &quiet) == 0;
    }
    why = read_key(fd, key, size);
    if (tty) {
        (void)tcsetattr(fd, TCSAFLUSH, &saved);
        fputc('\n', stderr);
    }
    if (!a->key_stdin)
        close(fd);
    if (why) {
        if (a->key_stdin)
            cli_error(c, "--api-key-stdin: standard input %s", why);
        else
            cli_error(c, "--api-key-file '%s' %s", a->key_file, why);
        return CLI_FAIL;
    }
    return CLI_OK;
}

/* ---- flags into a spec ------------------------------------------------------------------ */

static int
is_configured(const char *s)
{
    return strcmp(s, "configured") == 0 || strcmp(s, "default") == 0;
}

static const char *
check_channel(const char *id)
{
    size_t n = strlen(id);

    if (n == 0 || n > TENANT_ID_MAX)
        return "must be 1..255 bytes";
    if (!obx_buf_utf8_valid(id, n))
        return "must be valid UTF-8";
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f)
            return "must not contain control characters";
    if (strcmp(id, ".") == 0 || strcmp(id, "..") == 0)
        return "must not be \".\" or \"..\"";
    return NULL;
}

/* --rate-limit, --rate-burst and --base-url into spec; CLI_OK or CLI_USAGE. */
static int
parse_pace(struct cli *c, const struct tenant_args *a, struct obx_tenant_spec *spec)
{
    double per_s = 0;
    const char *why;

    if (a->rate) {
        spec->set_rate_limit = 1;
        if (!is_configured(a->rate)) {
            if (obx_config_parse_rate_per_s(a->rate, &per_s) != OBX_OK || per_s > RATE_MAX_PER_S) {
                cli_error(c,
                          "--rate-limit '%s': expected N/s, N/min or N/h (e.g. 290/min), at "
                          "most 1000000/s, or 'configured'",
                          a->rate);
                return CLI_USAGE;
            }
            if (per_s <= 0) {
                cli_error(c, "--rate-limit: a tenant cannot be unlimited (Partoo limits each "
                             "organisation); give N/s, N/min or N/h, or 'configured' to follow "
                             "rate_limit");
                return CLI_USAGE;
            }
            spec->rate_limit_per_min = per_s * 60.0;
        }
    }
    if (a->burst) {
        spec->set_rate_burst = 1;
        if (!is_configured(a->burst)) {
            char *end = NULL;
            long v = strtol(a->burst, &end, 10);
            if (!*a->burst || *end || v < 1 || v > 1000) {
                cli_error(c,
                          "--rate-burst '%s': expected a whole number 1..1000, or "
                          "'configured'",
                          a->burst);
                return CLI_USAGE;
            }
            spec->rate_burst = v;
        }
    }
    if (a->url) {
        spec->set_base_url = 1;
        if (!is_configured(a->url)) {
            why = obx_config_check_url(a->url);
            if (why) {
                cli_error(c, "--base-url: %s", why);
                return CLI_USAGE;
            }
            spec->partoo_base_url = a->url;
        }
    }
    return CLI_OK;
}

/* --channel and --readonly-channel into ch (room for both lists); CLI_OK or CLI_USAGE. */
static int
parse_channels(struct cli *c, const struct tenant_args *a, struct obx_tenant_channel *ch,
               struct obx_tenant_spec *spec)
{
    const struct cli_list *lists[3] = {&a->channels, &a->readonly, &a->removed};
    static const char *const flags[3] = {"--channel", "--readonly-channel", "--remove-channel"};

    for (int l = 0; l < 3; l++) {
        for (int i = 0; i < lists[l]->n; i++) {
            const char *why = check_channel(lists[l]->v[i]);
            if (why) {
                cli_error(c, "%s: a channel id %s", flags[l], why);
                return CLI_USAGE;
            }
            if (l < 2) {
                ch[spec->nchannels].channel_id = lists[l]->v[i];
                ch[spec->nchannels++].readonly = l == 1;
            }
        }
    }
    spec->channels = ch;
    spec->remove_channels = a->removed.v;
    spec->nremove = (size_t)a->removed.n;
    return CLI_OK;
}

/* ---- the actions ------------------------------------------------------------------------ */

static void
name_error(struct cli *c, const char *name)
{
    if (strcmp(name, "default") == 0)
        cli_error(c, "'default' is reserved: it is the configured key (OUTBOX_PARTOO_API_KEY or "
                     "partoo_api_key_file), which serves every channel no tenant owns");
    else
        cli_error(c, "tenant name must be 1..64 characters of A-Z a-z 0-9 . _ -");
}

static int
on_one_row(void *arg, const struct obx_tenant_row *t)
{
    struct obx_buf *b = arg;

    return obx_view_tenant(b, t) != OBX_OK;
}

/* --json after a change: the tenant's view, as GET /v1/tenants/{name} answers. */
static int
print_one(struct cli *c, struct obx_store *st, const char *name)
{
    struct obx_buf b;
    enum obx_err e;

    obx_buf_init(&b, (size_t)64 << 20);
    e = obx_store_tenant_list(st, name, on_one_row, &b);
    if (e == OBX_OK && b.len == 0)
        e = OBX_ENOMEM; /* the callback stopped: the view did not fit */
    if (e == OBX_OK)
        printf("%s\n", obx_buf_str(&b));
    else
        cli_error(c, "tenant '%s' changed, but cannot show it: %s", name, obx_strerror(e));
    obx_buf_release(&b);
    return e == OBX_OK ? CLI_OK : CLI_FAIL;
}

struct owner_ctx {
    const char *channel_id;
    char owner[OBX_TENANT_NAME_MAX + 1];
};

static int
on_owner_row(void *arg, const struct obx_tenant_row *t)
{
    struct owner_ctx *o = arg;

    for (size_t i = 0; i < t->nchannels; i++)
        if (strcmp(t->channels[i].channel_id, o->channel_id) == 0) {
            snprintf(o->owner, sizeof o->owner, "%s", t->name);
            return 1;
        }
    return 0;
}

/* Puts the tenant; the key (if any) is in key. */
static int
put_tenant(struct cli *c, struct obx_store *st, const struct tenant_args *a,
           const struct obx_tenant_spec *spec)
{
    uint8_t sealing[OBX_SECRETBOX_KEY_BYTES];
    char conflict[TENANT_ID_MAX + 1];
    int created = 0, rc = CLI_OK, sealed = 0;
    struct obx_buf err;
    enum obx_err e = OBX_OK;

    obx_buf_init(&err, 4096);
    if (c->cfg.secrets_key_file) {
        e = obx_secretbox_load_key(c->cfg.secrets_key_file, sealing, &err);
        if (e != OBX_OK) {
            cli_error(c, "%s", obx_buf_str(&err));
            rc = CLI_FAIL;
            goto out;
        }
        sealed = 1;
    }
    e = obx_store_tenant_put(st, spec,
                             strcmp(a->action, "add") == 0 ? OBX_TENANT_CREATE : OBX_TENANT_UPDATE,
                             sealed ? sealing : NULL, &created, conflict, sizeof conflict);
    if (e == OBX_ECONFLICT) {
        /* Only on a refusal: one pass over the registry to name the owner. */
        struct owner_ctx o = {conflict, "?"};
        if (obx_store_tenant_list(st, NULL, on_owner_row, &o) != OBX_OK)
            snprintf(o.owner, sizeof o.owner, "?");
        cli_error(c,
                  "channel '%s' belongs to tenant '%s'; release it there first (outbox "
                  "tenant set %s --remove-channel '%s'); nothing changed",
                  conflict, o.owner, o.owner, conflict);
        rc = CLI_FAIL;
    } else if (e == OBX_EDUP) {
        cli_error(c, "tenant '%s' exists; change it with 'outbox tenant set'", a->name);
        rc = CLI_FAIL;
    } else if (e == OBX_ENOTFOUND) {
        cli_error(c, "no tenant '%s' (see 'outbox tenant ls'; add it with 'outbox tenant add')",
                  a->name);
        rc = CLI_FAIL;
    } else if (e != OBX_OK) {
        cli_error(c, "cannot change tenant '%s': %s", a->name, obx_strerror(e));
        rc = CLI_FAIL;
    } else if (c->json) {
        rc = print_one(c, st, a->name);
    } else {
        printf("tenant %s %s%s\n", a->name, created ? "added" : "changed",
               spec->api_key ? (sealed ? " (key sealed)"
                                       : " (key stored in the clear: set "
                                         "secrets_key_file)")
                             : "");
    }
out:
    explicit_bzero(sealing, sizeof sealing);
    obx_buf_release(&err);
    return rc;
}

struct ls_ctx {
    struct cli_table table;
    struct obx_buf b;
    int json, n;
    enum obx_err err;
};

/* "a, b (ro)" into b. */
static enum obx_err
channel_text(struct obx_buf *b, const struct obx_tenant_row *t)
{
    enum obx_err err = obx_buf_puts(b, t->nchannels ? "" : "-");

    for (size_t i = 0; err == OBX_OK && i < t->nchannels; i++)
        err = obx_buf_printf(b, "%s%s%s", i ? ", " : "", t->channels[i].channel_id,
                             t->channels[i].readonly ? " (ro)" : "");
    return err;
}

static int
on_ls_row(void *arg, const struct obx_tenant_row *t)
{
    struct ls_ctx *x = arg;
    char rate[32], burst[24];
    const char *cells[7];

    if (x->json) {
        x->err = obx_buf_puts(&x->b, x->n++ ? "," : "");
        if (x->err == OBX_OK)
            x->err = obx_view_tenant(&x->b, t);
        return x->err != OBX_OK;
    }
    if (t->rate_limit_per_min > 0)
        snprintf(rate, sizeof rate, "%.10g/min", t->rate_limit_per_min);
    else
        snprintf(rate, sizeof rate, "configured");
    if (t->rate_burst > 0)
        snprintf(burst, sizeof burst, "%lld", (long long)t->rate_burst);
    else
        snprintf(burst, sizeof burst, "configured");
    obx_buf_reset(&x->b);
    x->err = channel_text(&x->b, t);
    cells[0] = t->name;
    cells[1] = t->key_fingerprint;
    cells[2] = t->key_sealed ? "sealed" : "CLEAR";
    cells[3] = rate;
    cells[4] = burst;
    cells[5] = t->partoo_base_url ? t->partoo_base_url : "configured";
    cells[6] = obx_buf_str(&x->b);
    if (x->err == OBX_OK && cli_table_add(&x->table, cells) != 0)
        x->err = OBX_ENOMEM;
    x->n++;
    return x->err != OBX_OK;
}

static int
list_tenants(struct cli *c, struct obx_store *st)
{
    static const char *const headers[] = {"TENANT", "KEY",      "AT REST", "RATE",
                                          "BURST",  "BASE URL", "CHANNELS"};
    struct ls_ctx x = {.json = c->json};
    enum obx_err e;
    int rc = CLI_OK;

    obx_buf_init(&x.b, (size_t)1 << 30);
    if (!x.json && cli_table_init(&x.table, 7, headers) != 0) {
        cli_error(c, "%s", obx_strerror(OBX_ENOMEM));
        obx_buf_release(&x.b);
        return CLI_FAIL;
    }
    e = obx_buf_puts(&x.b, x.json ? "[" : "");
    if (e == OBX_OK)
        e = obx_store_tenant_list(st, NULL, on_ls_row, &x);
    if (e == OBX_OK)
        e = x.err;
    if (e == OBX_OK && x.json)
        e = obx_buf_puts(&x.b, "]");
    if (e != OBX_OK) {
        cli_error(c, "cannot list tenants: %s", obx_strerror(e));
        rc = CLI_FAIL;
    } else if (x.json) {
        printf("%s\n", obx_buf_str(&x.b));
    } else if (x.n == 0) {
        printf("no tenants: the configured key serves every channel (tenant 'default')\n");
    } else {
        cli_table_print(&x.table, stdout);
    }
    if (!x.json)
        cli_table_release(&x.table);
    obx_buf_release(&x.b);
    return rc;
}

static int
remove_tenant(struct cli *c, struct obx_store *st, const char *name)
{
    enum obx_err e = obx_store_tenant_remove(st, name);

    if (e == OBX_ENOTFOUND) {
        cli_error(c, "no tenant '%s' (see 'outbox tenant ls')", name);
        return CLI_FAIL;
    }
    if (e != OBX_OK) {
        cli_error(c, "cannot remove tenant '%s': %s", name, obx_strerror(e));
        return CLI_FAIL;
    }
    if (c->json)
        printf("{\"deleted\":\"%s\"}\n", name); /* a valid name needs no escaping */
    else
        printf("tenant %s removed; its channels are released\n", name);
    return CLI_OK;
}

/* ---- the command ------------------------------------------------------------------------ */

/* Flags that make no sense for the action: a usage error. */
static int
check_action_flags(struct cli *c, const struct tenant_args *a)
{
    int add = strcmp(a->action, "add") == 0, set = strcmp(a->action, "set") == 0;
    int any_put = a->key_file || a->key_stdin || a->rate || a->burst || a->url || a->channels.n ||
                  a->readonly.n;

    if (!add && !set && !(strcmp(a->action, "rm") == 0 || strcmp(a->action, "ls") == 0)) {
        cli_error(c, "unknown action '%s': expected add, set, rm or ls", a->action);
        return CLI_USAGE;
    }
    if ((!add && !set && (any_put || a->removed.n)) || (add && a->removed.n)) {
        cli_error(c, "%s takes none of these options (see 'outbox tenant --help')", a->action);
        return CLI_USAGE;
    }
    if (a->key_file && a->key_stdin) {
        cli_error(c, "give one of --api-key-file and --api-key-stdin");
        return CLI_USAGE;
    }
    if (add && !a->key_file && !a->key_stdin) {
        cli_error(c, "missing required option --api-key-file F or --api-key-stdin (there is no "
                     "--api-key: the command line is visible to every local user)");
        return CLI_USAGE;
    }
    if ((strcmp(a->action, "ls") == 0) != (a->name == NULL)) {
        cli_error(c, "%s", a->name ? "ls takes no NAME" : "missing NAME");
        return CLI_USAGE;
    }
    if (a->name && !obx_store_tenant_name_valid(a->name)) {
        name_error(c, a->name);
        return CLI_USAGE;
    }
    if (a->name && strcmp(a->name, "default") == 0) {
        name_error(c, a->name);
        return CLI_USAGE;
    }
    return CLI_OK;
}

/* add/set after the flags were checked: reads the key, builds the spec, puts it. */
static int
add_or_set(struct cli *c, struct obx_store *st, const struct tenant_args *a,
           struct obx_tenant_channel *ch)
{
    char key[OBX_TENANT_KEY_MAX + 2];
    struct obx_tenant_spec spec = {.name = a->name};
    int rc = parse_pace(c, a, &spec);

    key[0] = '\0';
    if (rc == CLI_OK)
        rc = parse_channels(c, a, ch, &spec);
    if (rc == CLI_OK && (a->key_file || a->key_stdin)) {
        rc = load_key(c, a, key, sizeof key);
        spec.api_key = key;
    }
    if (rc == CLI_OK)
        rc = put_tenant(c, st, a, &spec);
    explicit_bzero(key, sizeof key);
    return rc;
}

int
cmd_tenant(int argc, char **argv)
{
    struct tenant_args a = {0};
    struct obx_tenant_channel *ch = NULL;
    const char **lists = argc > 0 ? obx_calloc((size_t)argc * 3, sizeof *lists) : NULL;
    struct cli_opt opts[] = {
        {"api-key-file", &a.key_file},
        {"api-key-stdin", NULL, &a.key_stdin},
        {"rate-limit", &a.rate},
        {"rate-burst", &a.burst},
        {"base-url", &a.url},
        {"channel", NULL, NULL, 0, &a.channels},
        {"readonly-channel", NULL, NULL, 0, &a.readonly},
        {"remove-channel", NULL, NULL, 0, &a.removed},
        {0},
    };
    struct cli c = {.command = "tenant", .usage = usage_text, .postgresql_ok = 1};
    struct obx_store *st = NULL;
    int rc = CLI_FAIL;

    if (!lists) {
        cli_error(&c, "%s", obx_strerror(OBX_ENOMEM));
        return CLI_FAIL;
    }
    /* Each list has room for every argument: a value cannot be given more often. */
    a.channels = (struct cli_list){lists, 0, argc};
    a.readonly = (struct cli_list){lists + argc, 0, argc};
    a.removed = (struct cli_list){lists + 2 * argc, 0, argc};
    if (!cli_start(&c, argc, argv, opts, 1, 2, &rc))
        goto out;
    a.action = c.positional[0];
    a.name = c.npositional > 1 ? c.positional[1] : NULL;
    rc = check_action_flags(&c, &a);
    if (rc != CLI_OK)
        goto out;
    if ((size_t)a.channels.n + (size_t)a.readonly.n > OBX_TENANT_CHANNELS_MAX) {
        cli_error(&c, "at most %d channels in one change", OBX_TENANT_CHANNELS_MAX);
        rc = CLI_USAGE;
        goto out;
    }
    ch = obx_calloc((size_t)a.channels.n + (size_t)a.readonly.n + 1, sizeof *ch);
    rc = ch ? cli_open_store(&c, 0, &st) : CLI_FAIL;
    if (rc != CLI_OK)
        goto out;
    if (strcmp(a.action, "ls") == 0)
        rc = list_tenants(&c, st);
    else if (strcmp(a.action, "rm") == 0)
        rc = remove_tenant(&c, st, a.name);
    else
        rc = add_or_set(&c, st, &a, ch);
out:
    obx_store_free(st);
    cli_release(&c);
    obx_free(ch);
    obx_free(lists);
    return rc;
}
