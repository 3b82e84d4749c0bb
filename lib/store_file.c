/*
 * store_file: the database as a file (see store_file.h). Its statements are prepared and
 * finalized per call rather than cached: the tools run them once, and the statement cache
 * (OBX_DB_STMT_CACHE) is kept for the daemon's.
 */
#include "store_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "mem.h"
#include "migrate.h"

enum obx_err
obx_store_file_open(const char *path, struct obx_store **out, char *errmsg, size_t n)
{
    struct obx_store *st = obx_calloc(1, sizeof *st);
    struct obx_db *db = obx_calloc(1, sizeof *db);
    enum obx_err err;
    int rc;

    *out = NULL;
    if (!st || !db) {
        obx_free(st);
        obx_free(db);
        snprintf(errmsg, n, "%s", obx_strerror(OBX_ENOMEM));
        return OBX_ENOMEM;
    }
    st->db = db;
    st->clock = obx_clock_real();
    rc = sqlite3_open_v2(path, &db->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_extended_result_codes(db->h, 1);
        sqlite3_busy_timeout(db->h, 5000);
        *out = st;
        return OBX_OK;
    }
    snprintf(errmsg, n, "%s", db->h ? sqlite3_errmsg(db->h) : sqlite3_errstr(rc));
    obx_store_free(st);
    /* obx_err_from_sqlite() calls SQLITE_ROW and SQLITE_DONE success: never here, where
     * success would hand the caller a NULL *out. */
    err = obx_err_from_sqlite(rc);
    return err != OBX_OK ? err : OBX_EDB;
}

/*
 * Counts the problems of one quick_check row (several lines when the file is damaged,
 * after a "*** in database main ***" header) and keeps the first one in msg.
 */
static void
count_problems(const char *row, char *msg, size_t n, int *count)
{
    while (row && *row) {
        size_t len = strcspn(row, "\n");
        if (strncmp(row, "*** in database", 15) != 0) {
            if ((*count)++ == 0)
                snprintf(msg, n, "%.*s", (int)len, row);
        }
        row += len + (row[len] == '\n');
    }
}

enum obx_err
obx_store_file_quick_check(struct obx_store *st, int *ok, int *problems, char *msg, size_t n)
{
    sqlite3_stmt *s = NULL;
    int rc, seen_ok = 0;

    *ok = 0;
    *problems = 0;
    msg[0] = '\0';
    rc = sqlite3_prepare_v2(st->db->h, "PRAGMA quick_check(100)", -1, &s, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *row = (const char *)sqlite3_column_text(s, 0);
        if (row && strcmp(row, "ok") == 0)
            seen_ok = 1;
        else
            count_problems(row, msg, n, problems);
        rc = SQLITE_OK;
    }
    if (rc != SQLITE_DONE)
        snprintf(msg, n, "%s", sqlite3_errmsg(st->db->h));
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        enum obx_err err = obx_err_from_sqlite(rc);
        return err != OBX_OK ? err : OBX_EDB;
    }
    *ok = seen_ok && *problems == 0;
    return OBX_OK;
}

/* One integer from a single-value query (sql run once, not cached). */
static enum obx_err
query_int64(struct obx_store *st, const char *sql, int64_t *out)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db->h, sql, -1, &s, NULL);

    *out = 0;
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    if (rc == SQLITE_ROW)
        return OBX_OK;
    return rc == SQLITE_DONE || rc == SQLITE_OK ? OBX_EDB : obx_err_from_sqlite(rc);
}

enum obx_err
obx_store_file_schema_version(struct obx_store *st, int *version)
{
    return obx_migrate_version(st->db, version);
}

enum obx_err
obx_store_file_snapshot(struct obx_store *st, int *version)
{
    int64_t v = 0;
    enum obx_err err = obx_db_exec(st->db, "BEGIN");

    *version = 0;
    if (err == OBX_OK)
        err = query_int64(st, "SELECT count(*) FROM sqlite_master", &v);
    if (err == OBX_OK)
        err = query_int64(st, "PRAGMA user_version", &v);
    if (err == OBX_OK)
        *version = (int)v;
    return err;
}

enum obx_err
obx_store_file_count_messages(struct obx_store *st, int64_t *n)
{
    return query_int64(st, "SELECT count(*) FROM outbox", n);
}

const char *
obx_store_file_errmsg(struct obx_store *st)
{
    return obx_db_errmsg(st->db);
}

/* Copies every page into dst, step_pages at a time. */
static enum obx_err
copy_pages(struct obx_store *st, sqlite3 *dst, const char *dest, int step_pages, int busy_retries,
           obx_copy_progress_fn progress, void *ctx, int64_t *pages, char *errmsg, size_t n)
{
    sqlite3_backup *bk = sqlite3_backup_init(dst, "main", st->db->h, "main");
    int rc = SQLITE_OK, busy = 0;

    if (!bk) {
        snprintf(errmsg, n, "cannot start the copy: %s", sqlite3_errmsg(dst));
        return OBX_EDB;
    }
    while (rc == SQLITE_OK ||
           ((rc == SQLITE_BUSY || rc == SQLITE_LOCKED) && busy++ < busy_retries)) {
        if (rc != SQLITE_OK)
            sqlite3_sleep(20);
        rc = sqlite3_backup_step(bk, step_pages);
        if (progress)
            progress(ctx, sqlite3_backup_pagecount(bk) - sqlite3_backup_remaining(bk),
                     sqlite3_backup_pagecount(bk));
    }
    *pages = sqlite3_backup_pagecount(bk);
    sqlite3_backup_finish(bk);
    if (rc != SQLITE_DONE) {
        snprintf(errmsg, n, "copy to '%s' failed: %s", dest, sqlite3_errstr(rc));
        return rc == SQLITE_BUSY || rc == SQLITE_LOCKED ? OBX_EBUSY : OBX_EDB;
    }
    return OBX_OK;
}

enum obx_err
obx_store_file_copy(struct obx_store *st, const char *dest, mode_t mode, int step_pages,
                    int busy_retries, obx_copy_progress_fn progress, void *ctx, int64_t *pages,
                    char *errmsg, size_t n)
{
    sqlite3 *dst = NULL;
    enum obx_err err = OBX_EDB;

    *pages = 0;
    errmsg[0] = '\0';
    if (sqlite3_open_v2(dest, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        snprintf(errmsg, n, "cannot create '%s': %s", dest,
                 dst ? sqlite3_errmsg(dst) : "out of memory");
        goto out;
    }
    /* The copy holds the same messages: no wider access than the database has. */
    if (chmod(dest, mode) != 0) {
        snprintf(errmsg, n, "cannot set the permissions of '%s': %s", dest, strerror(errno));
        err = OBX_EIO;
        goto out;
    }
    if (sqlite3_exec(dst, "PRAGMA synchronous=FULL", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(errmsg, n, "cannot prepare '%s': %s", dest, sqlite3_errmsg(dst));
        goto out;
    }
    err = copy_pages(st, dst, dest, step_pages, busy_retries, progress, ctx, pages, errmsg, n);
    if (err != OBX_OK)
        goto out;
    if (sqlite3_exec(dst, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(errmsg, n, "cannot finish '%s': %s", dest, sqlite3_errmsg(dst));
        err = OBX_EDB;
        goto out;
    }
out:
    if (sqlite3_close(dst) != SQLITE_OK && err == OBX_OK) {
        snprintf(errmsg, n, "cannot close '%s'", dest);
        err = OBX_EDB;
    }
    return err;
}

int
obx_store_file_has_header(const char *path)
{
    static const char magic[16] = "SQLite format 3";
    char head[16];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, head, sizeof head) : -1;

    if (fd >= 0)
        close(fd);
    return n == 0 || (n == (ssize_t)sizeof head && memcmp(head, magic, sizeof magic) == 0);
}
