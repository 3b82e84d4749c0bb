/*
 * cmd_backup: `outbox backup`: a consistent copy of a live database.
 *
 * backup copies the database with SQLite's online backup API, BACKUP_STEP_PAGES per
 * step, inside one read transaction on the source. In WAL mode a reader never blocks
 * serve's commits, and holding one snapshot keeps the copy consistent; without it,
 * every commit by serve would restart the copy from the first page. The copy goes to
 * FILE.tmp.<pid>, is switched to a single-file journal mode, is checked (quick_check,
 * schema version, message count) and only then renamed to FILE, so a failed backup
 * never replaces a good one.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "err.h"
#include "progress.h"
#include "store_file.h"
#include "store_tx.h"

#define BACKUP_STEP_PAGES 1000
#define BACKUP_BUSY_RETRIES 500 /* x 20 ms: give up after ~10 s of SQLITE_BUSY */

struct backup {
    struct cli *c;
    const char *dest;      /* FILE, borrowed from argv */
    char tmp[PATH_MAX];    /* FILE.tmp.<pid>: the copy until it is checked */
    int force;             /* --force: replace FILE */
    int tmp_made;          /* tmp exists and must go on failure */
    mode_t mode;           /* permission bits of the database, given to the copy */
    struct obx_store *src; /* the database, as it is, in one read snapshot */
    int src_version;       /* schema version of the snapshot copied */
    int64_t pages;         /* pages copied */
    int64_t bytes;         /* size of the copy */
    int64_t messages;      /* rows of outbox in the copy */
};

/* Refuses a missing source, an existing FILE without --force, and FILE being the database. */
static int
backup_precheck(struct backup *b)
{
    struct stat db_sb, dest_sb;
    const char *db = b->c->cfg.db;

    if (stat(db, &db_sb) != 0) {
        cli_error(b->c, "cannot back up '%s': %s", db, strerror(errno));
        return CLI_FAIL;
    }
    b->mode = db_sb.st_mode & 0777;
    if (stat(b->dest, &dest_sb) != 0)
        return CLI_OK;
    if (dest_sb.st_dev == db_sb.st_dev && dest_sb.st_ino == db_sb.st_ino) {
        cli_error(b->c, "'%s' is the database itself; choose another file", b->dest);
        return CLI_FAIL;
    }
    if (!S_ISREG(dest_sb.st_mode)) {
        cli_error(b->c, "'%s' exists and is not a regular file", b->dest);
        return CLI_FAIL;
    }
    if (!b->force) {
        cli_error(b->c, "'%s' already exists; add --force to replace it", b->dest);
        return CLI_FAIL;
    }
    return CLI_OK;
}

/*
 * Opens the source and starts the read transaction the whole copy runs in, and reads
 * the schema version of that same snapshot.
 */
static int
backup_open_source(struct backup *b)
{
    char msg[512];

    if (obx_store_file_open(b->c->cfg.db, &b->src, msg, sizeof msg) != OBX_OK) {
        cli_error(b->c, "cannot open '%s': %s", b->c->cfg.db, msg);
        return CLI_FAIL;
    }
    if (obx_store_file_snapshot(b->src, &b->src_version) != OBX_OK) {
        cli_error(b->c, "cannot read '%s': %s (run 'outbox doctor')", b->c->cfg.db,
                  obx_store_file_errmsg(b->src));
        return CLI_FAIL;
    }
    return CLI_OK;
}

/* The progress line: started at the first step, when the number of pages is known. */
struct copy_progress {
    struct progress p;
    int started;
};

static void
on_copy_progress(void *ctx, int64_t done, int64_t total)
{
    struct copy_progress *cp = ctx;

    if (!cp->started) {
        progress_start(&cp->p, "backup", "pages", total);
        cp->started = 1;
    }
    progress_set(&cp->p, done);
}

/*
 * Writes the copy to b->tmp. Afterwards the copy is switched from WAL to the
 * rollback journal, so it is one self-contained file (serve turns WAL back on when it
 * opens a restored copy).
 */
static int
backup_copy(struct backup *b)
{
    struct copy_progress cp;
    char msg[PATH_MAX + 512];
    enum obx_err err;

    memset(&cp, 0, sizeof cp);
    snprintf(b->tmp, sizeof b->tmp, "%s.tmp.%ld", b->dest, (long)getpid());
    unlink(b->tmp);
    b->tmp_made = 1;
    err = obx_store_file_copy(b->src, b->tmp, b->mode, BACKUP_STEP_PAGES, BACKUP_BUSY_RETRIES,
                              on_copy_progress, &cp, &b->pages, msg, sizeof msg);
    if (cp.started)
        progress_end(&cp.p);
    if (err != OBX_OK) {
        cli_error(b->c, "%s", msg);
        return CLI_FAIL;
    }
    return CLI_OK;
}

/* Opens the copy as a reader would: quick_check, schema version, message count. */
static int
backup_verify(struct backup *b)
{
    struct obx_store *db = NULL;
    char msg[512];
    int version = 0;
    int n = 0, ok = 0, rc = CLI_FAIL;

    if (obx_store_file_open(b->tmp, &db, msg, sizeof msg) != OBX_OK) {
        cli_error(b->c, "cannot open the copy '%s': %s", b->tmp, msg);
        goto out;
    }
    if (obx_store_file_quick_check(db, &ok, &n, msg, sizeof msg) != OBX_OK || !ok) {
        cli_error(b->c,
                  "the copy fails PRAGMA quick_check (%s); the database itself is "
                  "probably damaged: run 'outbox doctor'",
                  msg);
        goto out;
    }
    if (obx_store_file_schema_version(db, &version) != OBX_OK || version != b->src_version) {
        cli_error(b->c, "the copy has schema version %d, the database %d", version, b->src_version);
        goto out;
    }
    if (obx_store_file_count_messages(db, &b->messages) != OBX_OK) {
        cli_error(b->c, "cannot count the messages of the copy: %s", obx_store_file_errmsg(db));
        goto out;
    }
    b->bytes = cli_file_size(b->tmp);
    rc = CLI_OK;
out:
    obx_store_free(db);
    return rc;
}

/* fsync of the directory holding path, so that a rename survives a power cut. */
static void
sync_dir(const char *path)
{
    char dir[PATH_MAX];
    int fd;

    cli_dir_of(path, dir, sizeof dir);
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/*
 * Moves the checked copy to FILE. Without --force, link() refuses an existing FILE
 * atomically (a FILE created since the precheck is not replaced either); where hard
 * links are not supported, a re-check and rename stand in.
 */
static int
backup_publish(struct backup *b)
{
    int rc;

    if (b->force) {
        rc = rename(b->tmp, b->dest);
    } else {
        rc = link(b->tmp, b->dest);
        if (rc != 0 && errno != EEXIST && access(b->dest, F_OK) != 0)
            rc = rename(b->tmp, b->dest);
        else if (rc != 0)
            errno = EEXIST;
    }
    if (rc != 0) {
        cli_error(b->c, "cannot write '%s': %s%s", b->dest, strerror(errno),
                  errno == EEXIST ? " (add --force to replace it)" : "");
        return CLI_FAIL;
    }
    unlink(b->tmp); /* after link(): the second name; after rename(): already gone */
    b->tmp_made = 0;
    sync_dir(b->dest);
    return CLI_OK;
}

static void
backup_print(const struct backup *b)
{
    char path[PATH_MAX], size[32];
    struct obx_buf j;

    if (!realpath(b->dest, path))
        snprintf(path, sizeof path, "%s", b->dest);
    cli_format_bytes(b->bytes, size, sizeof size);
    if (!b->c->json) {
        printf("backed up '%s' to '%s': %s, %lld message%s, schema version %d, quick_check "
               "ok\n",
               b->c->cfg.db, path, size, (long long)b->messages, b->messages == 1 ? "" : "s",
               b->src_version);
        return;
    }
    obx_buf_init(&j, 3 * PATH_MAX + 256);
    if (obx_buf_puts(&j, "{\"path\":") == OBX_OK && obx_buf_json_str(&j, path) == OBX_OK &&
        obx_buf_puts(&j, ",\"source\":") == OBX_OK &&
        obx_buf_json_str(&j, b->c->cfg.db) == OBX_OK &&
        obx_buf_printf(&j,
                       ",\"bytes\":%lld,\"pages\":%lld,\"messages\":%lld,"
                       "\"schema_version\":%d,\"quick_check\":\"ok\"}\n",
                       (long long)b->bytes, (long long)b->pages, (long long)b->messages,
                       b->src_version) == OBX_OK)
        fputs(obx_buf_str(&j), stdout);
    else
        cli_error(b->c, "cannot format output: %s", obx_strerror(OBX_ENOMEM));
    obx_buf_release(&j);
}

static const char backup_usage[] =
    "usage: outbox backup FILE [--force] [options]\n\n"
    "Writes a consistent copy of the database to FILE while serve keeps running (SQLite's\n"
    "online backup, 1000 pages per step, one snapshot), then opens the copy and checks it\n"
    "(PRAGMA quick_check, schema version) before giving it the name FILE. Prints its path,\n"
    "size and number of messages. The copy is a single file in rollback-journal mode; to\n"
    "restore, stop serve, replace the database with it (removing any -wal and -shm files\n"
    "beside the database), start serve. A progress line is drawn on a terminal.\n\n"
    "  --force            replace FILE if it exists\n\n" CLI_COMMON_HELP;

int
cmd_backup(int argc, char **argv)
{
    int force = 0;
    struct cli_opt opts[] = {{"force", NULL, &force}, {0}};
    struct cli c = {.command = "backup", .usage = backup_usage};
    struct backup b = {.c = &c};
    int rc;

    if (!cli_start(&c, argc, argv, opts, 1, 1, &rc))
        goto out;
    b.dest = c.positional[0];
    b.force = force;
    rc = backup_precheck(&b);
    if (rc == CLI_OK)
        rc = backup_open_source(&b);
    if (rc == CLI_OK)
        rc = backup_copy(&b);
    if (b.src) {
        if (obx_store_tx_read_end(b.src) != OBX_OK) {
            /* Moot: closing the database just below ends the snapshot all the same. */
        }
        obx_store_free(b.src);
        b.src = NULL;
    }
    if (rc == CLI_OK)
        rc = backup_verify(&b);
    if (rc == CLI_OK)
        rc = backup_publish(&b);
    if (rc == CLI_OK)
        backup_print(&b);
out:
    if (b.tmp_made) {
        char journal[PATH_MAX + 16];
        snprintf(journal, sizeof journal, "%s-journal", b.tmp);
        unlink(b.tmp);
        unlink(journal);
    }
    cli_release(&c);
    return rc;
}
