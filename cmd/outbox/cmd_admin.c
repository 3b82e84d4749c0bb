/* cmd_admin: migrate, retry, cancel, purge, version. */
#include <event2/event.h>
#include <cjson/cJSON.h>
#include <openssl/opensslv.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "cli.h"
#include "progress.h"
#include "commands.h"
#include "http_client.h"
#include "migrate.h"
#include "migrate_pg.h"
#include "pg.h"
#include "retention.h"

static void
print_migrated(const struct cli *c, int from, int to)
{
    if (c->json)
        printf("{\"from\":%d,\"to\":%d}\n", from, to);
    else if (from == to)
        printf("schema already at version %d\n", to);
    else
        printf("migrated schema from version %d to %d\n", from, to);
}

/* migrate on PostgreSQL (SPEC §12): the schema db_schema, created when missing. */
static int
migrate_postgresql(struct cli *c)
{
    struct obx_pg *pg = NULL;
    char shown[4096], msg[256];
    int from = 0, to = 0;
    enum obx_err err;

    obx_pg_redact_uri(c->cfg.db, shown, sizeof shown);
    err = obx_pg_open(c->cfg.db, c->cfg.db_schema, &pg, msg, sizeof msg);
    if (err != OBX_OK) {
        cli_error(c, "cannot open '%s': %s", shown, msg);
        return CLI_FAIL;
    }
    err = obx_migrate_pg_apply(pg, &from, &to);
    if (err == OBX_ESCHEMA)
        cli_error(c,
                  "schema '%s' of '%s' is at version %d, newer than this binary's %d; "
                  "upgrade outbox",
                  c->cfg.db_schema, shown, from, obx_migrate_pg_latest());
    else if (err != OBX_OK)
        cli_error(c, "migration failed: %s (%s)", obx_strerror(err), obx_pg_errmsg(pg));
    else
        print_migrated(c, from, to);
    obx_pg_free(pg);
    return err == OBX_OK ? CLI_OK : CLI_FAIL;
}

int
cmd_migrate(int argc, char **argv)
{
    struct cli c = {
        .command = "migrate",
        .usage =
            "usage: outbox migrate [options]\n\n"
            "Creates the database or applies pending migrations, each in its own\n"
            "transaction. Running it again is a no-op. A database newer than this\n"
            "binary is refused. With a PostgreSQL db (postgresql://...), the schema\n"
            "db_schema (default outbox) is created and migrated; the password comes\n"
            "from PGPASSWORD, ~/.pgpass or the config file, never from --db.\n\n" CLI_COMMON_HELP,
        .postgresql_ok = 1};
    struct obx_db *db = NULL;
    int rc, from = 0, to = 0;
    char msg[256];
    enum obx_err err;

    if (!cli_start(&c, argc, argv, NULL, 0, 0, &rc))
        goto out;
    if (obx_pg_is_uri(c.cfg.db)) {
        rc = migrate_postgresql(&c);
        goto out;
    }
    rc = CLI_FAIL;
    err = obx_db_open(c.cfg.db, c.cfg.synchronous_full, 5000, &db, msg, sizeof msg);
    if (err != OBX_OK) {
        cli_error(&c, "cannot open '%s': %s", c.cfg.db, msg);
        goto out;
    }
    err = obx_migrate_apply(db, &from, &to);
    if (err == OBX_ESCHEMA) {
        if (obx_migrate_version(db, &from) != OBX_OK)
            from = -1;
        cli_error(&c,
                  "database '%s' is at schema version %d, newer than this binary's %d; "
                  "upgrade outbox",
                  c.cfg.db, from, obx_migrate_latest());
        goto out;
    }
    if (err != OBX_OK) {
        cli_error(&c, "migration failed: %s (%s)", obx_strerror(err), obx_db_errmsg(db));
        goto out;
    }
    print_migrated(&c, from, to);
    rc = CLI_OK;
out:
    obx_db_free(db);
    cli_release(&c);
    return rc;
}

/* retry and cancel by key share everything but the store call. */
static int
by_key(struct cli *c,
       enum obx_err (*fn)(struct obx_store *, const char *, const char *, const char *),
       const char *done)
{
    struct obx_store *st = NULL;
    enum obx_err err;
    int rc = cli_open_store(c, 0, &st);

    if (rc != CLI_OK)
        return rc;
    err = fn(st, c->positional[0], c->positional[1], NULL);
    if (err == OBX_ENOTFOUND)
        cli_error(c, "no message '%s' in channel '%s'", c->positional[1], c->positional[0]);
    else if (err == OBX_ECONFLICT)
        cli_error(c, "message '%s' is not in a state this applies to (see 'outbox show')",
                  c->positional[1]);
    else if (err != OBX_OK)
        cli_error(c, "%s", obx_strerror(err));
    else if (c->json)
        cli_print_key_json(c->positional[0], c->positional[1], "result", done);
    else
        printf("%s %s/%s\n", done, c->positional[0], c->positional[1]);
    obx_store_free(st);
    return err == OBX_OK ? CLI_OK : CLI_FAIL;
}

int
cmd_retry(int argc, char **argv)
{
    const char *state = NULL, *channel = NULL;
    struct cli_opt opts[] = {{"state", &state, NULL}, {"channel", &channel, NULL}, {0}};
    struct cli c = {
        .command = "retry",
        .usage = "usage: outbox retry CHANNEL EXT_ID\n"
                 "       outbox retry --state failed [--channel C]\n\n"
                 "Moves a failed (or accepted but unconfirmed) message back to queued,\n"
                 "resetting its attempt budget and resend count.\n\n" CLI_COMMON_HELP,
        .postgresql_ok = 1};
    struct obx_store *st = NULL;
    int64_t count = 0;
    int rc;
    enum obx_err err;

    if (!cli_start(&c, argc, argv, opts, 0, 2, &rc))
        goto out;
    if (!state && c.npositional == 2) {
        rc = by_key(&c, obx_store_retry, "requeued");
        goto out;
    }
    if (!state || strcmp(state, "failed") != 0 || c.npositional) {
        cli_error(&c, "give CHANNEL EXT_ID, or --state failed");
        rc = CLI_USAGE;
        goto out;
    }
    rc = cli_open_store(&c, 0, &st);
    if (rc != CLI_OK)
        goto out;
    err = obx_store_retry_failed(st, channel, &count);
    if (err != OBX_OK) {
        cli_error(&c, "%s", obx_strerror(err));
        rc = CLI_FAIL;
    } else if (c.json) {
        printf("{\"requeued\":%lld}\n", (long long)count);
    } else {
        printf("requeued %lld failed message%s\n", (long long)count, count == 1 ? "" : "s");
    }
out:
    obx_store_free(st);
    cli_release(&c);
    return rc;
}

int
cmd_cancel(int argc, char **argv)
{
    struct cli c = {.command = "cancel",
                    .usage = "usage: outbox cancel CHANNEL EXT_ID\n\n"
                             "Cancels a queued message; it will not be sent.\n\n" CLI_COMMON_HELP,
                    .postgresql_ok = 1};
    int rc;

    if (cli_start(&c, argc, argv, NULL, 2, 2, &rc))
        rc = by_key(&c, obx_store_cancel, "cancelled");
    cli_release(&c);
    return rc;
}

/*
 * Between two retention steps `outbox purge` sleeps about twice as long as the step
 * took: a serve waiting for the write lock polls it every few milliseconds (SQLite's
 * busy handler) and must find it free, or its producers wait on our purge.
 */
#define PURGE_PAUSE_MIN_US 2000
#define PURGE_PAUSE_MAX_US 50000

static void
purge_pause(int64_t step_us)
{
    int64_t us = 2 * step_us;

    if (us < PURGE_PAUSE_MIN_US)
        us = PURGE_PAUSE_MIN_US;
    if (us > PURGE_PAUSE_MAX_US)
        us = PURGE_PAUSE_MAX_US;
    (void)usleep((useconds_t)us);
}

static int64_t
mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int
cmd_purge(int argc, char **argv)
{
    const char *older = NULL;
    int keep_failed = 0;
    struct cli_opt opts[] = {
        {"older-than", &older, NULL, 1}, {"keep-failed", NULL, &keep_failed}, {0}};
    struct cli c = {
        .command = "purge",
        .usage = "usage: outbox purge --older-than DURATION [--keep-failed]\n\n"
                 "Deletes messages in terminal states whose last change is older than\n"
                 "DURATION (e.g. 30d): confirmed, cancelled, failed (unless --keep-failed)\n"
                 "and accepted messages of read-only channels. Queued, sending and\n"
                 "unconfirmed messages are never deleted. Audit rows older than DURATION\n"
                 "are removed too, behind a checkpoint hash: 'audit verify' still passes.\n"
                 "So are delivered or acknowledged replies older than DURATION and the\n"
                 "bodies of webhook events; a reply still to deliver keeps its event. The\n"
                 "SHA-256 of each webhook body stays for webhook_hash_retention (replay\n"
                 "guard). This is the same pass as serve's hourly retention: many short\n"
                 "transactions, so a running serve keeps answering meanwhile.\n\n" CLI_COMMON_HELP,
        .postgresql_ok = 1};
    struct obx_store *st = NULL;
    struct obx_retention_opts ro;
    struct obx_retention r = {0};
    const struct obx_retention_counts *n = obx_retention_counts(&r);
    struct progress pr;
    int64_t age_ms = 0, t0;
    int rc, done = 0;
    enum obx_err err = OBX_OK;

    if (!cli_start(&c, argc, argv, opts, 0, 0, &rc))
        goto out;
    if (!older || obx_config_parse_duration_ms(older, &age_ms) != OBX_OK) {
        cli_error(&c, "--older-than needs a duration such as 30d, 12h or 90m");
        rc = CLI_USAGE;
        goto out;
    }
    rc = cli_open_store(&c, 0, &st);
    if (rc != CLI_OK)
        goto out;
    /* Pruning audit rows seals them first: a keyed chain needs its key, so check before
       deleting anything rather than stop half-way. */
    {
        char msg[512];
        if (obx_audit_check_key(st, msg, sizeof msg) != OBX_OK) {
            cli_error(&c, "%s", msg[0] ? msg : "cannot read the audit chain's mode");
            rc = CLI_FAIL;
            goto out;
        }
    }
    /*
     * No fsync per step: a purge step lost to a power cut is redone by the next purge,
     * and every fsync here competes with the ones a running serve owes its producers.
     * The checkpoints still sync the database file.
     */
    if (st->db && obx_db_exec(st->db, "PRAGMA synchronous = NORMAL") != OBX_OK) {
        cli_error(&c, "cannot set up the database: %s", obx_db_errmsg(st->db));
        rc = CLI_FAIL;
        goto out;
    }
    obx_retention_opts_for(&c.cfg, obx_now_ms(st->clock), age_ms, &ro);
    ro.include_failed = !keep_failed;
    obx_retention_init(&r, &ro);
    progress_start(&pr, "purge", "rows", 0);
    while (!done) {
        t0 = mono_us();
        err = obx_retention_step(st, &r, &done);
        if (err != OBX_OK)
            break;
        progress_set(&pr, n->messages + n->replies + n->event_bodies + n->audit_rows);
        if (!done)
            purge_pause(mono_us() - t0);
    }
    progress_end(&pr);
    if (err != OBX_OK) {
        cli_error(&c, "%s: %s (after %lld messages in %lld transactions; run it again to finish)",
                  obx_strerror(err), obx_store_errmsg(st), (long long)n->messages,
                  (long long)n->steps);
        rc = CLI_FAIL;
    } else if (c.json) {
        printf("{\"purged\":%lld,\"audit_rows_pruned\":%lld,\"webhook_events_pruned\":%lld,"
               "\"webhook_hashes_pruned\":%lld,\"replies_pruned\":%lld,\"transactions\":%lld}\n",
               (long long)n->messages, (long long)n->audit_rows, (long long)n->event_bodies,
               (long long)n->event_hashes, (long long)n->replies, (long long)n->steps);
    } else {
        printf("purged %lld message%s and %lld audit row%s (behind a checkpoint), "
               "%lld webhook event%s and %lld repl%s in %lld transaction%s\n",
               (long long)n->messages, n->messages == 1 ? "" : "s", (long long)n->audit_rows,
               n->audit_rows == 1 ? "" : "s", (long long)n->event_bodies,
               n->event_bodies == 1 ? "" : "s", (long long)n->replies,
               n->replies == 1 ? "y" : "ies", (long long)n->steps, n->steps == 1 ? "" : "s");
    }
out:
    obx_store_free(st);
    cli_release(&c);
    return rc;
}

int
cmd_version(int argc, char **argv)
{
    struct cli c = {.command = "version",
                    .usage = "usage: outbox version [--json]\n\n"
                             "Prints the version of outbox, its schema and its libraries.\n"};
    int rc = cli_parse(&c, argc, argv, NULL);

    if (rc != CLI_OK)
        return rc;
    if (c.help) {
        fputs(c.usage, stdout);
        return CLI_OK;
    }
    if (c.npositional) {
        cli_error(&c, "expected no arguments");
        return CLI_USAGE;
    }
    if (c.json)
        printf("{\"version\":\"%s\",\"schema\":%d,\"sqlite\":\"%s\",\"libcurl\":\"%s\","
               "\"libevent\":\"%s\",\"cjson\":\"%s\",\"openssl\":\"%s\"}\n",
               OBX_VERSION, obx_migrate_latest(), obx_db_libversion(), obx_http_client_libversion(),
               event_get_version(), cJSON_Version(), OPENSSL_VERSION_STR);
    else
        printf("outbox %s (schema %d; sqlite %s, libcurl %s, libevent %s, cJSON %s, OpenSSL %s)\n",
               OBX_VERSION, obx_migrate_latest(), obx_db_libversion(), obx_http_client_libversion(),
               event_get_version(), cJSON_Version(), OPENSSL_VERSION_STR);
    return CLI_OK;
}
