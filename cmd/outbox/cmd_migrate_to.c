/*
 * cmd_migrate_to: `outbox migrate-to URI`: moves a SQLite outbox into PostgreSQL (SPEC §12).
 *
 * The source must be still: it takes <db>.lock, the lock serve holds, for the whole move, so
 * serve can neither run nor start meanwhile. It seals what is not sealed yet and verifies the
 * source's audit chain, migrates the PostgreSQL schema, and hands both to
 * lib/store_pg_import.c, which moves everything in one transaction and commits only if the
 * chain verifies on PostgreSQL to the same head. The SQLite file is left as it was (plus the
 * last seal): keep it until the PostgreSQL outbox has run for a while.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "audit.h"
#include "cli.h"
#include "commands.h"
#include "migrate_pg.h"
#include "pg.h"
#include "store_pg.h"
#include "store_pg_import.h"

static const char usage_text[] =
    "usage: outbox migrate-to postgresql://USER@HOST/DB [--db FILE] [--db-schema S]\n\n"
    "Moves the SQLite outbox FILE (db) into the PostgreSQL database's schema db_schema\n"
    "(default outbox), which is created or migrated, and must hold no message, event,\n"
    "webhook event, reply or tenant yet: every message keeps its id, state and counters, with\n"
    "its transitions and attempts, the replies, the webhook events, the tenants and the\n"
    "audit chain, and the channel pauses. serve must be stopped (the move holds FILE.lock).\n"
    "The source's chain is sealed and verified first, and the move is\n"
    "committed only if the chain verifies on PostgreSQL to the same head row and hash, so\n"
    "`outbox audit verify` goes on from where it was. FILE is left as it is.\n"
    "The password comes from PGPASSWORD, ~/.pgpass or the config file, never from the URI.\n\n" CLI_COMMON_HELP;

/* serve's lock on the source (lib/server.c), held in *fd until the move ends. */
static int
lock_source(struct cli *c, int *lock_fd)
{
    char path[4096];
    int fd;

    snprintf(path, sizeof path, "%s.lock", c->cfg.db);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        cli_error(c, "cannot open '%s': %s", path, strerror(errno));
        return CLI_FAIL;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        cli_error(c, "serve is running on '%s' (it holds %s): stop it first", c->cfg.db, path);
        close(fd);
        return CLI_FAIL;
    }
    *lock_fd = fd;
    return CLI_OK;
}

/* Seals every row not sealed yet and verifies the whole chain of the source. */
static int
check_source(struct cli *c, struct obx_store *src, struct obx_audit_report *r)
{
    int64_t sealed = 0;
    enum obx_err err;

    do
        err = obx_audit_seal(src, 1000000, &sealed);
    while (err == OBX_OK && sealed >= 1000000);
    if (err == OBX_OK)
        err = obx_audit_verify(src, r);
    if (err != OBX_OK) {
        cli_error(c, "cannot seal and verify the audit chain of '%s': %s", c->cfg.db,
                  obx_strerror(err));
        return CLI_FAIL;
    }
    if (r->first_bad_id) {
        cli_error(c, "the audit chain of '%s' is broken at row %lld (%s): nothing moved", c->cfg.db,
                  (long long)r->first_bad_id, r->problem);
        return CLI_FAIL;
    }
    return CLI_OK;
}

/* Creates or migrates the schema, then opens the store on it (with the audit key, if any). */
static int
open_target(struct cli *c, const char *uri, const char *shown, struct obx_store **dst)
{
    struct obx_pg *pg = NULL;
    char msg[512];
    int from = 0, to = 0;
    enum obx_err err = obx_pg_open(uri, c->cfg.db_schema, &pg, msg, sizeof msg);

    if (err == OBX_OK && (err = obx_migrate_pg_apply(pg, &from, &to)) != OBX_OK)
        snprintf(msg, sizeof msg, "migration of schema '%s' failed: %s", c->cfg.db_schema,
                 err == OBX_ESCHEMA ? "it is newer than this binary" : obx_pg_errmsg(pg));
    obx_pg_free(pg);
    if (err == OBX_OK)
        err = obx_store_pg_open_store(uri, c->cfg.db_schema, "migrate-to", 1, dst, msg, sizeof msg);
    if (err == OBX_OK && c->cfg.audit_key_file)
        err = obx_audit_use_key(*dst, c->cfg.audit_key_file, 0, msg, sizeof msg);
    if (err != OBX_OK)
        cli_error(c, "cannot open '%s': %s", shown, msg);
    return err == OBX_OK ? CLI_OK : CLI_FAIL;
}

int
cmd_migrate_to(int argc, char **argv)
{
    struct cli c = {.command = "migrate-to", .usage = usage_text};
    struct obx_store *src = NULL, *dst = NULL;
    struct obx_store_pg_import_counts n;
    struct obx_audit_report report;
    char shown[4096], msg[512];
    const char *uri;
    int rc, lock_fd = -1;

    if (!cli_start(&c, argc, argv, NULL, 1, 1, &rc))
        goto out;
    uri = c.positional[0];
    obx_pg_redact_uri(uri, shown, sizeof shown);
    rc = CLI_USAGE;
    if (!obx_pg_is_uri(uri)) {
        cli_error(&c, "'%s' is not a PostgreSQL URI (postgresql://USER@HOST/DB)", uri);
        goto out;
    }
    if (strcmp(uri, shown) != 0) {
        cli_error(&c, "a password on the command line is visible to every user of this "
                      "machine; put it in PGPASSWORD or ~/.pgpass");
        goto out;
    }
    rc = lock_source(&c, &lock_fd);
    if (rc == CLI_OK)
        rc = cli_open_store(&c, 0, &src);
    if (rc == CLI_OK)
        rc = check_source(&c, src, &report);
    if (rc == CLI_OK)
        rc = open_target(&c, uri, shown, &dst);
    if (rc != CLI_OK)
        goto out;
    if (obx_store_pg_import(src, dst, &report, &n, msg, sizeof msg) != OBX_OK) {
        cli_error(&c, "cannot move '%s' into '%s' (schema %s): %s", c.cfg.db, shown,
                  c.cfg.db_schema, msg);
        rc = CLI_FAIL;
        goto out;
    }
    printf("moved '%s' into '%s' (schema %s): %lld messages, %lld transitions, %lld attempts, "
           "%lld pauses, %lld webhook events, %lld replies, %lld tenants\n",
           c.cfg.db, shown, c.cfg.db_schema, (long long)n.messages, (long long)n.transitions,
           (long long)n.attempts, (long long)n.pauses, (long long)n.webhook_events,
           (long long)n.replies, (long long)n.tenants);
    printf("audit chain verified on PostgreSQL as on SQLite: %lld rows, head row %lld hash %s\n",
           (long long)report.checked, (long long)report.head_id, report.head_hash);
out:
    obx_store_free(dst);
    obx_store_free(src);
    if (lock_fd >= 0)
        close(lock_fd);
    cli_release(&c);
    return rc;
}
