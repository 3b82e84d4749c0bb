/*
 * cmd_audit: export the audit trail (what was sent, when, with what answer) and
 * verify its hash chain (lib/audit.h describes the chain).
 */
#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "cli.h"
#include "commands.h"
#include "progress.h"

static const char usage_text[] =
    "usage: outbox audit [--since T] [--until T] [--channel C] [--format jsonl|csv]\n"
    "       outbox audit verify\n\n"
    "Exports every state transition, delivery attempt, pause and resume (with who:\n"
    "cli, api or dashboard) in the time range, in chain order, each with its hash and the hash of the row before it, then the chain head.\n"
    "An attempt row records what came back and the SHA-256 of exactly what was sent (the\n"
    "Partoo fields, content included; the message itself shows them while it is kept).\n"
    "T is RFC 3339 (2026-11-24T10:00:00Z) or a duration meaning that long ago (24h).\n\n"
    "'audit verify' recomputes the whole chain and names the first row (a seal: the\n"
    "events of about one second) that was changed, added or removed; it exits 1 when\n"
    "the chain is broken. A chain keyed with\n"
    "audit_key_file (HMAC-SHA256) needs that key to verify.\n\n"
    "Both first seal rows not yet chained (serve does it every second).\n\n" CLI_COMMON_HELP;

struct export_ctx {
    struct progress pr;
    int64_t rows;
    int csv;
    struct obx_buf b;
    int64_t last_id;
    char last_hash[65];
};

/* RFC 4180 field: quoted when it holds a comma, quote or line break. */
static void
csv_field(const char *s, int last)
{
    if (s && strpbrk(s, ",\"\r\n")) {
        putchar('"');
        for (; *s; s++) {
            if (*s == '"')
                putchar('"');
            putchar(*s);
        }
        putchar('"');
    } else if (s) {
        fputs(s, stdout);
    }
    putchar(last ? '\n' : ',');
}

static int
on_entry(void *ctx, const struct obx_audit_entry *e)
{
    struct export_ctx *x = ctx;
    char ts[40], id[24];
    enum obx_err err;

    x->last_id = e->id;
    progress_set(&x->pr, ++x->rows);
    snprintf(x->last_hash, sizeof x->last_hash, "%s", e->hash ? e->hash : "");
    obx_clock_format_ms(e->at_ms, ts, sizeof ts);
    if (x->csv) {
        snprintf(id, sizeof id, "%lld", (long long)e->id);
        csv_field(id, 0);
        csv_field(ts, 0);
        csv_field(e->kind, 0);
        csv_field(e->channel_id, 0);
        csv_field(e->external_message_id, 0);
        csv_field(e->record, 0);
        csv_field(e->prev_hash, 0);
        csv_field(e->hash ? e->hash : "", 1);
        return 0;
    }
    obx_buf_reset(&x->b);
    err = obx_buf_printf(&x->b, "{\"id\":%lld,\"at\":\"%s\",\"kind\":\"%s\",\"channel_id\":",
                         (long long)e->id, ts, e->kind);
    if (err == OBX_OK)
        err = obx_buf_json_str(&x->b, e->channel_id);
    if (err == OBX_OK)
        err = obx_buf_puts(&x->b, ",\"external_message_id\":");
    if (err == OBX_OK)
        err = obx_buf_json_str(&x->b, e->external_message_id);
    /* record is a JSON object written by SQLite's json_object(): embedded as is. */
    if (err == OBX_OK)
        err = obx_buf_printf(&x->b, ",\"record\":%s,\"prev_hash\":\"%s\",\"hash\":", e->record,
                             e->prev_hash);
    if (err == OBX_OK)
        err = e->hash ? obx_buf_printf(&x->b, "\"%s\"}\n", e->hash)
                      : obx_buf_puts(&x->b, "null}\n");
    if (err == OBX_OK)
        fputs(obx_buf_str(&x->b), stdout);
    return err != OBX_OK;
}

static int
verify(struct cli *c, struct obx_store *st)
{
    struct obx_audit_report r;
    enum obx_err err = obx_audit_verify(st, &r);

    if (err != OBX_OK) {
        cli_error(c, "cannot verify the audit log: %s", obx_strerror(err));
        return CLI_FAIL;
    }
    if (c->json) {
        /* problem and key_id are fixed texts and hex digits: nothing to escape. */
        printf("{\"ok\":%s,\"checked\":%lld,\"unsealed\":%lld,\"first_bad_id\":%lld,"
               "\"problem\":\"%s\",\"keyed_from_id\":%lld,\"key_id\":\"%s\","
               "\"head\":{\"id\":%lld,\"hash\":\"%s\"}}\n",
               r.first_bad_id ? "false" : "true", (long long)r.checked, (long long)r.unsealed,
               (long long)r.first_bad_id, r.problem, (long long)r.keyed_from_id, r.key_id,
               (long long)r.head_id, r.head_hash);
    } else if (r.first_bad_id) {
        printf("audit chain BROKEN at row %lld: %s (%lld rows verified before it)\n",
               (long long)r.first_bad_id, r.problem, (long long)r.checked);
    } else {
        printf("audit chain ok: %lld rows verified, head row %lld hash %s\n", (long long)r.checked,
               (long long)r.head_id, r.head_hash);
        if (r.keyed_from_id)
            printf("keyed (HMAC-SHA256) from row %lld on, key id %s; rows before it are plain "
                   "SHA-256\n",
                   (long long)r.keyed_from_id, r.key_id);
        else
            printf("plain SHA-256 chain (no audit_key_file): it shows changes made without "
                   "re-sealing, not re-sealed ones\n");
    }
    return r.first_bad_id ? CLI_FAIL : CLI_OK;
}

static int
export_rows(struct cli *c, struct obx_store *st, int csv, int64_t since_ms, int64_t until_ms,
            const char *channel)
{
    struct export_ctx x = {.csv = csv};
    enum obx_err err;

    obx_buf_init(&x.b, 64 * 1024 * 1024);
    if (csv)
        printf("id,at,kind,channel_id,external_message_id,record,prev_hash,hash\n");
    progress_start(&x.pr, "audit export", "rows", 0);
    err = obx_audit_export(st, since_ms, until_ms, channel, on_entry, &x);
    progress_end(&x.pr);
    obx_buf_release(&x.b);
    if (err != OBX_OK) {
        cli_error(c, "%s", obx_strerror(err));
        return CLI_FAIL;
    }
    /* The head lets an auditor check later that nothing was cut from the export's end. */
    if (!csv)
        printf("{\"chain_head\":{\"id\":%lld,\"hash\":\"%s\"}}\n", (long long)x.last_id,
               x.last_hash);
    else
        fprintf(stderr, "chain head: row %lld hash %s\n", (long long)x.last_id, x.last_hash);
    return CLI_OK;
}

int
cmd_audit(int argc, char **argv)
{
    const char *since = NULL, *until = NULL, *format = "jsonl", *channel = NULL;
    struct cli_opt opts[] = {{"since", &since, NULL},
                             {"until", &until, NULL},
                             {"format", &format, NULL},
                             {"channel", &channel, NULL},
                             {0}};
    struct cli c = {.command = "audit", .usage = usage_text, .postgresql_ok = 1};
    struct obx_store *st = NULL;
    int64_t now_ms = obx_now_ms(obx_clock_real()), since_ms = 0, until_ms = INT64_MAX, n = 0;
    int rc, csv;
    enum obx_err err;

    if (!cli_start(&c, argc, argv, opts, 0, 1, &rc))
        goto out;
    csv = strcmp(format, "csv") == 0;
    if ((c.npositional && strcmp(c.positional[0], "verify") != 0) ||
        (!csv && strcmp(format, "jsonl") != 0) ||
        (since && cli_parse_time(since, now_ms, &since_ms) != 0) ||
        (until && cli_parse_time(until, now_ms, &until_ms) != 0)) {
        cli_error(&c, "bad subcommand (verify), --format (jsonl, csv) or time (RFC 3339 or a "
                      "duration like 24h)");
        rc = CLI_USAGE;
        goto out;
    }
    rc = cli_open_store(&c, 0, &st);
    if (rc != CLI_OK)
        goto out;
    err = obx_audit_seal(st, 1000000, &n);
    if (err != OBX_OK) {
        char msg[512];
        /* A keyed chain without its key: say which key, not just "configuration error". */
        if (err != OBX_ECONFIG || obx_audit_check_key(st, msg, sizeof msg) == OBX_OK || !msg[0])
            snprintf(msg, sizeof msg, "%s", obx_strerror(err));
        cli_error(&c, "warning: cannot seal new audit rows: %s", msg);
    }
    if (c.npositional)
        rc = verify(&c, st);
    else
        rc = export_rows(&c, st, csv, since_ms, until_ms, channel);
out:
    obx_store_free(st);
    cli_release(&c);
    return rc;
}
