/* cmd_inspect: status, ls, show and inbox: read-only views for people and scripts. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "mem.h"
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

static void
status_table(const struct obx_channel_stats *s, size_t n, int64_t now_ms)
{
    static const char *const head[] = {"CHANNEL", "QUEUED", "SENDING", "ACCEPTED", "CONFIRMED",
                                       "FAILED", "CANCELLED", "OLDEST QUEUED", "LAST ERROR"};
    struct cli_table t;

    if (cli_table_init(&t, 9, head) != 0)
        return;
    for (size_t i = 0; i < n; i++) {
        char num[OBX_N_STATES][24], age[24];
        const char *row[9];
        row[0] = s[i].channel_id;
        for (int k = 0; k < OBX_N_STATES; k++) {
            snprintf(num[k], sizeof num[k], "%lld", (long long)s[i].counts[k]);
            row[k + 1] = num[k];
        }
        if (s[i].oldest_queued_at_ms)
            cli_format_age(now_ms - s[i].oldest_queued_at_ms, age, sizeof age);
        else
            snprintf(age, sizeof age, "-");
        row[7] = age;
        row[8] = s[i].last_error[0] ? s[i].last_error : "-";
        if (cli_table_add(&t, row) != 0)
            break;
    }
    cli_table_print(&t, stdout);
    cli_table_release(&t);
}

int
cmd_status(int argc, char **argv)
{
    struct cli c = {.command = "status",
                    .usage = "usage: outbox status [options]\n\n"
                             "Per channel: messages in each state, age of the oldest queued\n"
                             "message and the last delivery error.\n\n" CLI_COMMON_HELP};
    struct obx_store *st = NULL;
    struct obx_channel_stats *s = NULL;
    struct obx_view_stats_extra x = {0};
    struct obx_buf b;
    size_t n = 0;
    int64_t sent = 0;
    int rc;
    enum obx_err err;

    obx_buf_init(&b, 64 * 1024 * 1024);
    if (!cli_start(&c, argc, argv, NULL, 0, 0, &rc))
        goto out;
    rc = cli_open_store(&c, 0, &st);
    if (rc != CLI_OK)
        goto out;
    x.now_ms = obx_now_ms(st->clock);
    err = obx_query_stats(st, &s, &n);
    if (err == OBX_OK)
        err = obx_query_count_accepted_since(st, x.now_ms - 60000, &sent);
    if (err != OBX_OK) {
        cli_error(&c, "%s", obx_strerror(err));
        rc = CLI_FAIL;
        goto out;
    }
    x.send_rate_per_min = (double)sent;
    if (c.json) {
        rc = emit(&c, &b, obx_view_stats(&b, s, n, &x));
    } else if (n == 0) {
        printf("no messages in %s\n", c.cfg.db);
    } else {
        status_table(s, n, x.now_ms);
        printf("\nsent in the last minute: %lld\n", (long long)sent);
    }
out:
    obx_free(s);
    obx_buf_release(&b);
    obx_store_free(st);
    cli_release(&c);
    return rc;
}

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
    static const char *const head[] = {"ID", "CHANNEL", "MESSAGE", "STATE", "ATTEMPTS", "AGE",
                                       "LAST RESULT"};
    const char *state = NULL, *channel = NULL, *limit = "50", *cursor = NULL;
    struct cli_opt opts[] = {{"state", &state, NULL}, {"channel", &channel, NULL},
                             {"limit", &limit, NULL}, {"cursor", &cursor, NULL}, {0}};
    struct cli c = {.command = "ls",
                    .usage = "usage: outbox ls [--state S] [--channel C] [--limit N] [--cursor X]\n\n"
                             "Lists messages, newest first. --state is a state name or\n"
                             "'unconfirmed' (accepted, no confirmation after max_resends).\n"
                             "--limit is 1..1000 (default 50);\n"
                             "pass the printed next cursor as --cursor for the next page.\n\n"
                             CLI_COMMON_HELP};
    struct ls_ctx l = {.c = &c, .first = 1};
    struct obx_list_query q = {0};
    struct obx_store *st = NULL;
    int64_t next = 0;
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
    q.limit = (int)strtol(limit, &end, 10);
    q.before_id = cursor ? strtoll(cursor, NULL, 10) : 0;
    if (*end || q.limit < 1 || q.limit > 1000 ||
        (state && !q.unconfirmed && obx_state_parse(state) < 0) ||
        (cursor && q.before_id <= 0)) {
        cli_error(&c, "bad --limit (1..1000), --state (queued, sending, accepted, confirmed, "
                      "failed, cancelled, unconfirmed) or --cursor");
        rc = CLI_USAGE;
        goto out;
    }
    rc = cli_open_store(&c, 0, &st);
    if (rc != CLI_OK)
        goto out;
    l.now_ms = obx_now_ms(st->clock);
    if (cli_table_init(&l.t, 7, head) != 0 || obx_buf_puts(&l.b, "{\"messages\":[") != OBX_OK ||
        obx_query_list(st, &q, on_ls_row, &l, &next) != OBX_OK) {
        cli_error(&c, "cannot list messages: %s", obx_db_errmsg(st->db));
        rc = CLI_FAIL;
        goto out;
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

static int
on_show_row(void *ctx, const struct obx_row *r)
{
    (void)ctx;
    char t1[32], t2[32], t3[32];

    cli_format_time(r->created_at_ms, t1, sizeof t1);
    cli_format_time(r->accepted_at_ms, t2, sizeof t2);
    cli_format_time(r->confirmed_at_ms, t3, sizeof t3);
    printf("message      %s / %s (id %lld)\n", r->msg.channel_id, r->msg.external_message_id,
           (long long)r->id);
    printf("conversation %s   business %s   sender %s   priority %lld\n",
           r->msg.external_conversation_id, r->msg.business_id, r->msg.sender_type,
           (long long)r->msg.priority);
    printf("state        %s (%s)   attempts %d   resends %d\n", r->state, r->state_reason,
           r->attempts, r->resends);
    printf("created      %s   accepted %s   confirmed %s\n", t1, t2, t3);
    if (r->partoo_message_id)
        printf("partoo       message %s, status %s\n", r->partoo_message_id,
               r->partoo_status ? r->partoo_status : "-");
    if (r->last_error || r->last_http_status)
        printf("last result  %d %s\n", r->last_http_status, r->last_error ? r->last_error : "");
    printf("content      %s\n\ntransitions:\n", r->msg.content);
    return 0;
}

static int
on_show_transition(void *ctx, const struct obx_transition_row *t)
{
    char ts[32];

    (void)ctx;
    cli_format_time(t->at_ms, ts, sizeof ts);
    printf("  %s  %-9s -> %-9s  %s\n", ts, t->from_state, t->to_state, t->reason);
    return 0;
}

static int
on_show_attempt(void *ctx, const struct obx_attempt_row *a)
{
    int *nattempts = ctx;
    char ts[32];

    if ((*nattempts)++ == 0)
        printf("\nattempts:\n");
    cli_format_time(a->started_at_ms, ts, sizeof ts);
    printf("  %s  %-12s http %-3d %5lldms  %s\n", ts, a->outcome, a->http_status,
           (long long)a->duration_ms, a->error ? a->error : (a->excerpt ? a->excerpt : ""));
    return 0;
}

int
cmd_show(int argc, char **argv)
{
    struct cli c = {.command = "show",
                    .usage = "usage: outbox show CHANNEL EXT_ID\n\n"
                             "Shows one message with every state transition and delivery\n"
                             "attempt.\n\n" CLI_COMMON_HELP};
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
        err = obx_query_get(st, c.positional[0], c.positional[1], on_show_row,
                            on_show_transition, on_show_attempt, &nattempts);
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
    static const char *const head[] = {"ID", "RECEIVED", "CHANNEL", "CONVERSATION", "FROM",
                                       "STATE", "CONTENT"};
    const char *limit = "50", *cursor = NULL;
    int all = 0;
    struct cli_opt opts[] = {{"limit", &limit, NULL}, {"cursor", &cursor, NULL},
                             {"all", NULL, &all}, {0}};
    struct cli c = {.command = "inbox",
                    .usage = "usage: outbox inbox [--all] [--limit N] [--cursor X]\n\n"
                             "Lists replies written by Partoo users, oldest first: those not\n"
                             "yet acknowledged, or every one with --all.\n\n" CLI_COMMON_HELP};
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
    after = cursor ? strtoll(cursor, NULL, 10) : 0;
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
        cli_error(&c, "cannot list the inbox: %s", obx_db_errmsg(st->db));
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
