/* cmd_inspect: status, ls, show and inbox: read-only views for people and scripts. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "store_dash.h"
#include "store_tenant_stats.h"
#include "mem.h"
#include "pg.h"
#include "store_pg.h"
#include "query.h"
#include "view.h"

/* Prints a buffer built by a view function, or reports the failure. */
static int
emit(struct cli *c, struct obx_buf *b, enum obx_err err)
{
    if (err == OBX_OK)
        err = obx_buf_puts(b, "\n");
    if (err != OBX_OK) {
        cli_error(c, "cannot format output: %s", obx_strerror(err));
        return CLI_FAIL;
    }
    fputs(obx_buf_str(b), stdout);
    obx_buf_reset(b);
    return CLI_OK;
}

/* What the running serve published (service_state), for the status header. */
struct serve_state {
    int running; /* 1 when the last publication says running and is recent */
    long pid;
    int64_t started_at_ms, updated_at_ms, paused_until_ms;
    char circuit[16];
    char paused_reason[32];
    char *tenants_paused; /* JSON array (OBX_STATE_TENANTS_PAUSED), owned; NULL = none */
};

#define SERVE_FRESH_MS 65000 /* serve writes at least every 30 s while it runs */

static int
on_state(void *ctx, const char *key, const char *value, int64_t updated_at_ms)
{
    struct serve_state *ss = ctx;

    if (!value)
        value = "";
    if (updated_at_ms > ss->updated_at_ms)
        ss->updated_at_ms = updated_at_ms;
    if (strcmp(key, "running") == 0)
        ss->running = strcmp(value, "1") == 0;
    else if (strcmp(key, "pid") == 0)
        ss->pid = strtol(value, NULL, 10);
    else if (strcmp(key, "started_at_ms") == 0)
        ss->started_at_ms = strtoll(value, NULL, 10);
    else if (strcmp(key, "circuit") == 0)
        snprintf(ss->circuit, sizeof ss->circuit, "%s", value);
    else if (strcmp(key, "paused_reason") == 0)
        snprintf(ss->paused_reason, sizeof ss->paused_reason, "%s", value);
    else if (strcmp(key, "paused_until_ms") == 0)
        ss->paused_until_ms = strtoll(value, NULL, 10);
    else if (strcmp(key, OBX_STATE_TENANTS_PAUSED) == 0 && !ss->tenants_paused)
        ss->tenants_paused = obx_strdup(value);
    return 0;
}

static void
print_serve_line(const struct serve_state *ss, int64_t now_ms)
{
    char up[24], until[32];

    if (!ss->running) {
        printf("serve: not running%s\n",
               ss->updated_at_ms ? " (state below is from the database)" : "");
        return;
    }
    cli_format_age(now_ms - ss->started_at_ms, up, sizeof up);
    printf("serve: running (pid %ld, up %s), circuit %s", ss->pid, up,
           ss->circuit[0] ? ss->circuit : "closed");
    if (ss->paused_reason[0]) {
        cli_format_time(ss->paused_until_ms, until, sizeof until);
        printf(", sending PAUSED (%s) until %s", ss->paused_reason, until);
    }
    printf("\n\n");
}

static void
status_table(const struct obx_channel_stats *s, size_t n, int64_t now_ms)
{
    static const char *const head[] = {"CHANNEL",     "QUEUED",    "SENDING", "AWAITING CONF",
                                       "UNCONFIRMED", "CONF 24H",  "FAILED",  "OLDEST QUEUED",
                                       "SENT/MIN",    "LAST ERROR"};
    struct cli_table t;

    if (cli_table_init(&t, 10, head) != 0)
        return;
    for (size_t i = 0; i < n; i++) {
        char num[8][24], age[24];
        const char *row[10];
        int64_t v[8] = {s[i].counts[OBX_ST_QUEUED],
                        s[i].counts[OBX_ST_SENDING],
                        s[i].counts[OBX_ST_ACCEPTED] - s[i].unconfirmed,
                        s[i].unconfirmed,
                        s[i].confirmed_24h,
                        s[i].counts[OBX_ST_FAILED],
                        0,
                        s[i].sent_last_min};
        row[0] = s[i].channel_id;
        for (int k = 0; k < 8; k++) {
            snprintf(num[k], sizeof num[k], "%lld", (long long)v[k]);
            row[k + 1] = num[k];
        }
        if (s[i].oldest_queued_at_ms)
            cli_format_age(now_ms - s[i].oldest_queued_at_ms, age, sizeof age);
        else
            snprintf(age, sizeof age, "-");
        row[7] = age;
        row[9] = s[i].last_error[0] ? s[i].last_error : "-";
        if (cli_table_add(&t, row) != 0)
            break;
    }
    cli_table_print(&t, stdout);
    cli_table_release(&t);
}

/* One line per hold (outbox pause, POST /v1/pause, the dashboard). */
static int
print_hold(void *ctx, const struct obx_pause_row *p)
{
    char ts[40];

    (void)ctx;
    obx_clock_format_ms(p->paused_at_ms, ts, sizeof ts);
    printf("held: %s %s since %s by %s (%s): nothing is sent until `outbox resume`\n", p->scope,
           p->key, ts, p->by, p->reason);
    return 0;
}

#define STATUS_TENANT_ROWS 20      /* tenants in the table, by backlog */
#define STATUS_UNOWNED_CHANNELS 10 /* channels named as waiting for a tenant */

/*
 * The tenants section (SPEC §11): counts from the database, pace from the registry or the
 * configuration, send rate from the attempts of its channels in the last minute, pauses
 * from what the running serve published. owners gets each channel's owner.
 */
static enum obx_err
tenant_stats(struct cli *c, struct obx_store *st, const struct obx_channel_stats *s, size_t n,
             const struct serve_state *ss, struct obx_tenant_stats_set *ts /* OUT */,
             char **owners /* OUT */)
{
    enum obx_err err = obx_store_tenant_stats_collect(st, ts);

    *owners = NULL;
    if (err == OBX_OK && n && !(*owners = obx_calloc(n, OBX_TENANT_NAME_MAX + 1)))
        err = OBX_ENOMEM;
    if (err == OBX_OK)
        err = obx_store_tenant_stats_owners(st, s, n, *owners);
    if (err != OBX_OK)
        return err;
    for (size_t i = 0; i < ts->n; i++)
        if (ts->v[i].rate_limit_per_min <= 0)
            ts->v[i].rate_limit_per_min = c->cfg.rate_limit_per_s * 60.0;
    for (size_t i = 0; i < n; i++) {
        const char *o = *owners + i * (OBX_TENANT_NAME_MAX + 1);
        const struct obx_tenant_stats *t = obx_store_tenant_stats_find(ts, o[0] ? o : "default");

        if (t)
            ts->v[t - ts->v].send_rate_per_min += s[i].sent_last_min;
    }
    if (ss->running)
        obx_store_tenant_stats_apply_published(ts, ss->tenants_paused);
    obx_store_tenant_stats_finish(ts);
    return OBX_OK;
}

static void
tenant_table(const struct obx_tenant_stats_set *ts, int64_t now_ms)
{
    static const char *const head[] = {"TENANT",   "QUEUED",   "SENDING",  "FAILED",
                                       "SENT/MIN", "RATE/MIN", "CHANNELS", "PAUSED"};
    size_t shown = ts->n < STATUS_TENANT_ROWS ? ts->n : STATUS_TENANT_ROWS;
    struct cli_table t;

    if (cli_table_init(&t, 8, head) != 0)
        return;
    for (size_t i = 0; i < shown; i++) {
        const struct obx_tenant_stats *x = &ts->v[i];
        char num[6][24], paused[96], until[32];
        const char *row[8];

        snprintf(num[0], sizeof num[0], "%lld", (long long)x->counts[OBX_ST_QUEUED]);
        snprintf(num[1], sizeof num[1], "%lld", (long long)x->counts[OBX_ST_SENDING]);
        snprintf(num[2], sizeof num[2], "%lld", (long long)x->counts[OBX_ST_FAILED]);
        snprintf(num[3], sizeof num[3], "%lld", (long long)x->send_rate_per_min);
        snprintf(num[4], sizeof num[4], "%.0f", x->rate_limit_per_min);
        snprintf(num[5], sizeof num[5], "%zu%s", x->nchannels, x->channels_truncated ? "+" : "");
        if (x->paused_reason[0] && x->paused_until_ms > now_ms) {
            cli_format_time(x->paused_until_ms, until, sizeof until);
            snprintf(paused, sizeof paused, "%s until %s", x->paused_reason, until);
        } else {
            snprintf(paused, sizeof paused, "%s", x->paused_reason[0] ? x->paused_reason : "-");
        }
        row[0] = x->name;
        for (int k = 0; k < 6; k++)
            row[k + 1] = num[k];
        row[7] = paused;
        if (cli_table_add(&t, row) != 0)
            break;
    }
    cli_table_print(&t, stdout);
    cli_table_release(&t);
    if (shown < ts->n)
        printf("... and %zu more tenants (outbox status --json lists up to %d)\n", ts->n - shown,
               OBX_TENANT_STATS_MAX);
}

static int
print_unowned(void *ctx, const char *channel_id)
{
    (void)ctx;
    cli_printf_safe(stdout,
                    "waiting: no tenant owns channel %s and no default API key is configured: "
                    "its messages stay queued until a tenant owns it (outbox tenant set NAME "
                    "--channel %s)\n",
                    channel_id, channel_id);
    return 0;
}

/* ---- status on PostgreSQL: the nodes (SPEC §12) ------------------------------------------ */

struct pg_status {
    struct cli_table t;
    struct obx_buf *json; /* --json: the nodes array being built */
    int first, live, gone;
};

static int
on_pg_node(void *ctx, const struct obx_store_pg_node_row *n)
{
    struct pg_status *ps = ctx;
    struct obx_buf held;
    const char *p = n->held;
    char age[32], name[OBX_TENANT_NAME_MAX + 1];
    const char *row[4];
    int64_t epoch;
    enum obx_err err = OBX_OK;

    n->live ? ps->live++ : ps->gone++;
    if (ps->json) {
        err = ps->first ? OBX_OK : obx_buf_puts(ps->json, ",");
        if (err == OBX_OK)
            err = obx_view_node(ps->json, n);
        ps->first = 0;
        return err != OBX_OK;
    }
    obx_buf_init(&held, 1024 * 1024);
    for (int k = 0; err == OBX_OK && obx_store_pg_held_next(&p, name, sizeof name, &epoch); k++)
        err = obx_buf_printf(&held, "%s%s (epoch %lld)", k ? ", " : "", name, (long long)epoch);
    snprintf(age, sizeof age, "%.1f s ago", (double)n->beat_age_ms / 1000.0);
    row[0] = n->name;
    row[1] = n->live ? "live" : "gone";
    row[2] = age;
    row[3] = held.len ? obx_buf_str(&held) : "-";
    if (err == OBX_OK && cli_table_add(&ps->t, row) != 0)
        err = OBX_ENOMEM;
    obx_buf_release(&held);
    return err != OBX_OK;
}

/*
 * On PostgreSQL, what status adds: the schema and the serve nodes, live or gone, with the
 * tenants each holds. Text: printed, in place of the serve line of SQLite. JSON (doc not
 * NULL): "backend", "schema" and "nodes" added to the status document in doc.
 */
static enum obx_err
pg_nodes_section(struct cli *c, struct obx_store *st, struct obx_buf *doc)
{
    static const char *const headers[] = {"NODE", "STATE", "BEAT", "TENANTS (EPOCH)"};
    struct pg_status ps = {.first = 1};
    struct obx_buf nodes;
    enum obx_err err;

    if (cli_table_init(&ps.t, 4, headers) != 0)
        return OBX_ENOMEM;
    obx_buf_init(&nodes, 64 * 1024 * 1024);
    ps.json = doc ? &nodes : NULL;
    err = obx_store_pg_list_nodes_of(st, on_pg_node, &ps);
    if (err == OBX_OK && doc) {
        if (doc->len == 0 || obx_buf_str(doc)[doc->len - 1] != '}')
            err = OBX_EINVAL;
        else
            doc->len--; /* reopen the object */
        if (err == OBX_OK)
            err = obx_buf_puts(doc, ",\"backend\":\"postgresql\",\"schema\":");
        if (err == OBX_OK)
            err = obx_buf_json_str(doc, c->cfg.db_schema);
        if (err == OBX_OK)
            err = obx_buf_printf(doc, ",\"nodes\":[%s]}", obx_buf_str(&nodes));
    } else if (err == OBX_OK) {
        printf("PostgreSQL outbox, schema %s\nnodes: %d live, %d gone\n", c->cfg.db_schema, ps.live,
               ps.gone);
        if (ps.live + ps.gone)
            cli_table_print(&ps.t, stdout);
        printf("\n");
    }
    cli_table_release(&ps.t);
    obx_buf_release(&nodes);
    return err;
}

/* One status screen (or JSON document). */
static int
status_once(struct cli *c, struct obx_store *st, struct obx_buf *b)
{
    struct obx_channel_stats *s = NULL;
    struct obx_view_stats_extra x = {0};
    struct serve_state ss = {0};
    struct obx_tenant_stats_set ts = {0};
    char *owners = NULL;
    size_t n = 0;
    int64_t sent = 0;
    int rc = CLI_OK;
    enum obx_err err;

    x.now_ms = obx_now_ms(st->clock);
    err = obx_query_stats(st, &s, &n);
    if (err == OBX_OK)
        err = obx_query_count_accepted_since(st, x.now_ms - 60000, &sent);
    if (err == OBX_OK)
        err = obx_query_service_state(st, on_state, &ss);
    if (err == OBX_OK)
        err = obx_query_webhook_rejections(st, &x.webhooks_rejected_signature,
                                           &x.webhooks_rejected_too_large);
    ss.running = ss.running && x.now_ms - ss.updated_at_ms < SERVE_FRESH_MS;
    if (err == OBX_OK)
        err = tenant_stats(c, st, s, n, &ss, &ts, &owners);
    if (err != OBX_OK) {
        cli_error(c, "%s", obx_strerror(err));
        rc = CLI_FAIL;
        goto out;
    }
    x.send_rate_per_min = (double)sent;
    if (ss.running && ss.paused_reason[0]) {
        x.paused_reason = ss.paused_reason;
        x.paused_until_ms = ss.paused_until_ms;
    }
    x.tenants = &ts;
    x.channel_owners = ss.running ? owners : NULL;
    if (c->json) {
        err = obx_view_stats(b, s, n, &x);
        if (err == OBX_OK)
            err = obx_store_dash_append_holds(st, b);
        if (err == OBX_OK && obx_store_pg_in_use(st))
            err = pg_nodes_section(c, st, b);
        rc = emit(c, b, err);
    } else {
        if (obx_store_pg_in_use(st)) {
            err = pg_nodes_section(c, st, NULL);
            if (err != OBX_OK)
                cli_error(c, "cannot read the nodes: %s", obx_strerror(err));
        } else {
            print_serve_line(&ss, x.now_ms);
        }
        err = obx_store_dash_pauses(st, print_hold, NULL);
        if (err != OBX_OK)
            cli_error(c, "cannot read the pauses: %s", obx_strerror(err));
        if (n == 0)
            printf("no messages in %s\n", c->cfg.db);
        else
            status_table(s, n, x.now_ms);
        printf("\nsent in the last minute: %lld\n", (long long)sent);
        if (ts.n && (ts.n > 1 || !ts.v[0].is_default)) {
            printf("\n");
            tenant_table(&ts, x.now_ms);
        }
        /* The default tenant has no key: name the channels that wait for a tenant. */
        for (size_t i = 0; i < ts.n; i++)
            if (ts.v[i].is_default && ts.v[i].no_key &&
                obx_store_tenant_unowned_waiting(st, STATUS_UNOWNED_CHANNELS, print_unowned,
                                                 NULL) != OBX_OK)
                cli_error(c, "cannot read the channels waiting for a tenant");
        if (x.webhooks_rejected_signature || x.webhooks_rejected_too_large)
            printf("WARNING: webhooks refused since serve started: %lld bad signature, %lld "
                   "over webhook_max_body_bytes (Partoo does not retry them)\n",
                   (long long)x.webhooks_rejected_signature,
                   (long long)x.webhooks_rejected_too_large);
    }
out:
    obx_store_tenant_stats_release(&ts);
    obx_free(ss.tenants_paused);
    obx_free(owners);
    obx_free(s);
    return rc;
}

int
cmd_status(int argc, char **argv)
{
    int watch = 0;
    struct cli_opt opts[] = {{"watch", NULL, &watch}, {0}};
    struct cli c = {
        .command = "status",
        .usage = "usage: outbox status [--watch] [options]\n\n"
                 "Whether serve runs (and why sending is paused, if it is), then per\n"
                 "channel: queued, sending, accepted awaiting confirmation,\n"
                 "unconfirmed (no confirmation after max_resends), confirmed in the\n"
                 "last 24 h, failed, age of the oldest queued message, messages sent\n"
                 "in the last minute and the last delivery error; with tenants, per\n"
                 "tenant (the first 20 by backlog) its counts, pace and pause, and the\n"
                 "channels waiting for a tenant. --watch redraws it every 2 s until\n"
                 "interrupted. On a PostgreSQL db the same, with the serve nodes, live\n"
                 "or gone, and the tenants each holds with their fencing epochs, in\n"
                 "place of the serve line; a tenant's pause (auth, rate_limited) is the\n"
                 "one its node recorded with its attempts.\n\n" CLI_COMMON_HELP,
        .postgresql_ok = 1};
    struct obx_store *st = NULL;
    struct obx_buf b;
    int rc;

    obx_buf_init(&b, 64 * 1024 * 1024);
    if (!cli_start(&c, argc, argv, opts, 0, 0, &rc))
        goto out;
    rc = cli_open_store(&c, 0, &st);
    if (rc != CLI_OK)
        goto out;
    for (;;) {
        if (watch && isatty(STDOUT_FILENO))
            fputs("\033[H\033[2J", stdout); /* home and clear */
        rc = status_once(&c, st, &b);
        if (!watch || rc != CLI_OK)
            break;
        fflush(stdout);
        sleep(2);
    }
out:
    obx_buf_release(&b);
    obx_store_free(st);
    cli_release(&c);
    return rc;
}

#define LS_PAGE 1000 /* rows per read of ls; --limit may ask for more */

struct ls_ctx {
    struct cli *c;
    struct cli_table t;
    struct obx_buf b;
    int first;
    int64_t now_ms;
};

static int
on_ls_row(void *ctx, const struct obx_row *r)
{
    struct ls_ctx *l = ctx;
    char id[24], attempts[16], age[24], status[64];
    const char *row[7];

    if (l->c->json) {
        if ((!l->first && obx_buf_puts(&l->b, ",") != OBX_OK) || obx_view_message(&l->b, r))
            return 1;
        l->first = 0;
        return 0;
    }
    snprintf(id, sizeof id, "%lld", (long long)r->id);
    snprintf(attempts, sizeof attempts, "%d", r->attempts);
    cli_format_age(l->now_ms - r->created_at_ms, age, sizeof age);
    if (r->last_http_status)
        snprintf(status, sizeof status, "%d %s", r->last_http_status,
                 r->last_error ? r->last_error : "");
    else
        snprintf(status, sizeof status, "%s", r->last_error ? r->last_error : "-");
    row[0] = id;
    row[1] = r->msg.channel_id;
    row[2] = r->msg.external_message_id;
    row[3] = r->unconfirmed_at_ms ? "unconfirmed" : r->state;
    row[4] = attempts;
    row[5] = age;
    row[6] = status;
    return cli_table_add(&l->t, row) != 0;
}

int
cmd_ls(int argc, char **argv)
{
    static const char *const head[] = {"ID",       "CHANNEL", "MESSAGE",    "STATE",
                                       "ATTEMPTS", "AGE",     "LAST RESULT"};
    const char *state = NULL, *channel = NULL, *limit = "50", *cursor = NULL;
    struct cli_opt opts[] = {{"state", &state, NULL},
                             {"channel", &channel, NULL},
                             {"limit", &limit, NULL},
                             {"cursor", &cursor, NULL},
                             {0}};
    struct cli c = {
        .command = "ls",
        .usage = "usage: outbox ls [--state S] [--channel C] [--limit N] [--cursor X]\n\n"
                 "Lists messages, newest first. --state is a state name or\n"
                 "'unconfirmed' (accepted, no confirmation after max_resends).\n"
                 "--limit is any number from 1 (default 50); more than 1000 are\n"
                 "read 1000 at a time. Pass the printed next cursor as --cursor\n"
                 "for the next page.\n\n" CLI_COMMON_HELP,
        .postgresql_ok = 1};
    struct ls_ctx l = {.c = &c, .first = 1};
    struct obx_list_query q = {0};
    struct obx_store *st = NULL;
    int64_t next = 0;
    long long want;
    char *end;
    int rc;

    obx_buf_init(&l.b, 256 * 1024 * 1024);
    if (!cli_start(&c, argc, argv, opts, 0, 0, &rc))
        goto out;
    q.state = state;
    q.channel_id = channel;
    if (state && strcmp(state, "unconfirmed") == 0) {
        q.state = NULL;
        q.unconfirmed = 1;
    }
    errno = 0;
    want = strtoll(limit, &end, 10);
    if (!*end && cursor) {
        q.before_id = strtoll(cursor, &end, 10);
        if (!*cursor)
            q.before_id = -1;
    }
    if (*end || !*limit || errno == ERANGE || want < 1 ||
        (state && !q.unconfirmed && obx_store_state_parse(state) < 0) ||
        (cursor && q.before_id <= 0)) {
        cli_error(&c, "bad --limit (a number from 1), --state (queued, sending, accepted, "
                      "confirmed, failed, cancelled, unconfirmed) or --cursor");
        rc = CLI_USAGE;
        goto out;
    }
    rc = cli_open_store(&c, 0, &st);
    if (rc != CLI_OK)
        goto out;
    l.now_ms = obx_now_ms(st->clock);
    if (cli_table_init(&l.t, 7, head) != 0 || obx_buf_puts(&l.b, "{\"messages\":[") != OBX_OK) {
        cli_error(&c, "cannot list messages: out of memory");
        rc = CLI_FAIL;
        goto out;
    }
    /* Pages of at most LS_PAGE rows, each its own short read; JSON is written page by page. */
    for (;;) {
        q.limit = (int)(want < LS_PAGE ? want : LS_PAGE);
        if (obx_query_list(st, &q, on_ls_row, &l, &next) != OBX_OK) {
            cli_error(&c, "cannot list messages: %s", obx_store_errmsg(st));
            rc = CLI_FAIL;
            goto out;
        }
        want -= q.limit;
        if (c.json) {
            fputs(obx_buf_str(&l.b), stdout);
            obx_buf_reset(&l.b);
        }
        if (!next || want == 0)
            break;
        q.before_id = next;
    }
    if (c.json) {
        enum obx_err err = next ? obx_buf_printf(&l.b, "],\"next_cursor\":\"%lld\"}",
                                                 (long long)next)
                                : obx_buf_puts(&l.b, "],\"next_cursor\":null}");
        rc = emit(&c, &l.b, err);
    } else {
        cli_table_print(&l.t, stdout);
        if (next)
            printf("next page: --cursor %lld\n", (long long)next);
    }
out:
    cli_table_release(&l.t);
    obx_buf_release(&l.b);
    obx_store_free(st);
    cli_release(&c);
    return rc;
}

/* show prints producer and Partoo text: made safe for the terminal (cli_safe_dup). */
#define SHOW(...) cli_printf_safe(stdout, __VA_ARGS__)

static int
on_show_row(void *ctx, const struct obx_row *r)
{
    (void)ctx;
    char t1[32], t2[32], t3[32];

    cli_format_time(r->created_at_ms, t1, sizeof t1);
    cli_format_time(r->accepted_at_ms, t2, sizeof t2);
    cli_format_time(r->confirmed_at_ms, t3, sizeof t3);
    SHOW("message      %s / %s (id %lld)\n", r->msg.channel_id, r->msg.external_message_id,
         (long long)r->id);
    SHOW("tenant       %s\n", r->tenant ? r->tenant : "default (no tenant owns the channel)");
    SHOW("conversation %s   business %s   sender %s   priority %lld\n",
         r->msg.external_conversation_id, r->msg.business_id, r->msg.sender_type,
         (long long)r->msg.priority);
    SHOW("state        %s (%s)   attempts %d   resends %d\n", r->state, r->state_reason,
         r->attempts, r->resends);
    SHOW("created      %s   accepted %s   confirmed %s\n", t1, t2, t3);
    if (r->partoo_message_id)
        SHOW("partoo       message %s, status %s\n", r->partoo_message_id,
             r->partoo_status ? r->partoo_status : "-");
    if (r->last_error || r->last_http_status)
        SHOW("last result  %d %s\n", r->last_http_status, r->last_error ? r->last_error : "");
    SHOW("content      %s\n\ntransitions:\n", r->msg.content);
    return 0;
}

static int
on_show_transition(void *ctx, const struct obx_transition_row *t)
{
    char ts[32];

    (void)ctx;
    cli_format_time(t->at_ms, ts, sizeof ts);
    SHOW("  %s  %-9s -> %-9s  %s\n", ts, t->from_state, t->to_state, t->reason);
    return 0;
}

static int
on_show_attempt(void *ctx, const struct obx_attempt_row *a)
{
    int *nattempts = ctx;
    char ts[32];

    if ((*nattempts)++ == 0)
        SHOW("\nattempts:\n");
    cli_format_time(a->started_at_ms, ts, sizeof ts);
    SHOW("  %s  %-12s http %-3d %5lldms  %s\n", ts, a->outcome, a->http_status,
         (long long)a->duration_ms, a->error ? a->error : (a->excerpt ? a->excerpt : ""));
    return 0;
}

#undef SHOW

int
cmd_show(int argc, char **argv)
{
    struct cli c = {.command = "show",
                    .usage = "usage: outbox show CHANNEL EXT_ID\n\n"
                             "Shows one message with every state transition and delivery\n"
                             "attempt.\n\n" CLI_COMMON_HELP,
                    .postgresql_ok = 1};
    struct obx_store *st = NULL;
    struct obx_buf b;
    int rc, nattempts = 0;
    enum obx_err err;

    obx_buf_init(&b, 64 * 1024 * 1024);
    if (!cli_start(&c, argc, argv, NULL, 2, 2, &rc))
        goto out;
    rc = cli_open_store(&c, 0, &st);
    if (rc != CLI_OK)
        goto out;
    if (c.json)
        err = obx_view_message_document(st, c.positional[0], c.positional[1], &b);
    else
        err = obx_query_get(st, c.positional[0], c.positional[1], on_show_row, on_show_transition,
                            on_show_attempt, &nattempts);
    if (err == OBX_ENOTFOUND) {
        cli_error(&c, "no message '%s' in channel '%s'", c.positional[1], c.positional[0]);
        rc = CLI_FAIL;
    } else if (err != OBX_OK) {
        cli_error(&c, "%s", obx_strerror(err));
        rc = CLI_FAIL;
    } else if (c.json) {
        rc = emit(&c, &b, OBX_OK);
    }
out:
    obx_buf_release(&b);
    obx_store_free(st);
    cli_release(&c);
    return rc;
}

/* ---- inbox --------------------------------------------------------------------------------- */

struct inbox_ctx {
    struct cli *c;
    struct cli_table t;
    struct obx_buf b;
    int n;
};

static int
on_inbox(void *ctx, const struct obx_inbox_row *r)
{
    struct inbox_ctx *x = ctx;
    char id[24], at[32];
    const char *row[7];

    if (x->c->json) {
        if ((x->n++ && obx_buf_puts(&x->b, ",") != OBX_OK) || obx_view_inbox(&x->b, r) != OBX_OK)
            return 1;
        return 0;
    }
    snprintf(id, sizeof id, "%lld", (long long)r->id);
    cli_format_time(r->received_at_ms, at, sizeof at);
    row[0] = id;
    row[1] = at;
    row[2] = r->channel_id;
    row[3] = r->external_conversation_id;
    row[4] = r->sender_label;
    row[5] = r->state;
    row[6] = r->content;
    return cli_table_add(&x->t, row) != 0;
}

int
cmd_inbox(int argc, char **argv)
{
    static const char *const head[] = {"ID",   "RECEIVED", "CHANNEL", "CONVERSATION",
                                       "FROM", "STATE",    "CONTENT"};
    const char *limit = "50", *cursor = NULL;
    int all = 0;
    struct cli_opt opts[] = {
        {"limit", &limit, NULL}, {"cursor", &cursor, NULL}, {"all", NULL, &all}, {0}};
    struct cli c = {.command = "inbox",
                    .usage = "usage: outbox inbox [--all] [--limit N] [--cursor X]\n\n"
                             "Lists replies written by Partoo users, oldest first: those not\n"
                             "yet acknowledged, or every one with --all.\n\n" CLI_COMMON_HELP,
                    .postgresql_ok = 1};
    struct inbox_ctx x = {.c = &c};
    struct obx_store *st = NULL;
    int64_t next = 0, after;
    long lim;
    char *end = NULL;
    int rc;

    obx_buf_init(&x.b, 256 * 1024 * 1024);
    if (!cli_start(&c, argc, argv, opts, 0, 0, &rc))
        goto out;
    lim = strtol(limit, &end, 10);
    after = 0;
    if (!*end && cursor) {
        after = strtoll(cursor, &end, 10);
        if (!*cursor)
            after = -1;
    }
    if (*end || lim < 1 || lim > 1000 || after < 0) {
        cli_error(&c, "bad --limit (1..1000) or --cursor");
        rc = CLI_USAGE;
        goto out;
    }
    rc = cli_open_store(&c, 0, &st);
    if (rc != CLI_OK)
        goto out;
    if (cli_table_init(&x.t, 7, head) != 0 || obx_buf_puts(&x.b, "{\"replies\":[") != OBX_OK ||
        obx_query_inbox(st, after, (int)lim, all, on_inbox, &x, &next) != OBX_OK) {
        cli_error(&c, "cannot list the inbox: %s", obx_store_errmsg(st));
        rc = CLI_FAIL;
        goto out;
    }
    if (c.json) {
        enum obx_err err = next ? obx_buf_printf(&x.b, "],\"next_cursor\":\"%lld\"}",
                                                 (long long)next)
                                : obx_buf_puts(&x.b, "],\"next_cursor\":null}");
        rc = emit(&c, &x.b, err);
    } else {
        cli_table_print(&x.t, stdout);
        if (next)
            printf("next page: --cursor %lld\n", (long long)next);
    }
out:
    cli_table_release(&x.t);
    obx_buf_release(&x.b);
    obx_store_free(st);
    cli_release(&c);
    return rc;
}
