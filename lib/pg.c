/*
 * pg: libpq connection helper (pg.h).
 */
#include "pg.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "mem.h"

struct obx_pg {
    PGconn *conn;
    char schema[64];
    char err[256];                         /* the last error: libpq's message, newlines folded */
    const char *prepared[OBX_PG_PREPARED]; /* names prepared on conn (static strings) */
    int nprepared;
    int in_group;      /* obx_pg_group_begin ran: calls work at savepoints of its transaction */
    char session[160]; /* obx_pg_set_session's SQL, run again on every new session */
};

int
obx_pg_is_uri(const char *db)
{
    return db && (strncmp(db, "postgresql://", 13) == 0 || strncmp(db, "postgres://", 11) == 0);
}

/* Appends text to out[*o], keeping room for the terminator. */
static void
append(char *out, size_t n, size_t *o, const char *text)
{
    while (*text && *o + 1 < n)
        out[(*o)++] = *text++;
}

void
obx_pg_redact_uri(const char *uri, char *out, size_t n)
{
    const char *scheme_end = strstr(uri, "://");
    const char *authority = scheme_end ? scheme_end + 3 : uri;
    const char *at = NULL, *colon = NULL, *p = uri;
    size_t o = 0;

    if (n == 0)
        return;
    /* The userinfo ends at the last '@' before the path: "user:pass@host". */
    for (const char *q = authority; *q && *q != '/' && *q != '?'; q++)
        if (*q == '@')
            at = q;
    if (at)
        colon = memchr(authority, ':', (size_t)(at - authority));
    while (*p && o + 1 < n) {
        if (colon && p == colon + 1) {
            append(out, n, &o, "****");
            p = at;
        } else if (p > authority && (p[-1] == '?' || p[-1] == '&') &&
                   strncmp(p, "password=", 9) == 0) {
            append(out, n, &o, "password=****");
            p += 9 + strcspn(p + 9, "&");
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
}

const char *
obx_pg_check_schema(const char *schema)
{
    size_t len = schema ? strlen(schema) : 0;

    if (len < 1 || len > 63)
        return "must be 1 to 63 characters";
    if (schema[0] >= '0' && schema[0] <= '9')
        return "must not start with a digit";
    for (size_t i = 0; i < len; i++)
        if (!((schema[i] >= 'a' && schema[i] <= 'z') || (schema[i] >= '0' && schema[i] <= '9') ||
              schema[i] == '_'))
            return "may hold only a-z, 0-9 and _";
    return NULL;
}

/* Notices ("schema already exists, skipping") are not errors: libpq would print them. */
static void
quiet_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static void
keep_error(struct obx_pg *pg, const char *msg)
{
    snprintf(pg->err, sizeof pg->err, "%s", msg ? msg : "");
    for (char *p = pg->err; *p; p++)
        if (*p == '\n')
            *p = ' ';
    for (size_t len = strlen(pg->err); len > 0 && pg->err[len - 1] == ' ';)
        pg->err[--len] = '\0';
}

enum obx_err
obx_pg_exec(struct obx_pg *pg, const char *sql)
{
    PGresult *r = PQexec(pg->conn, sql);
    ExecStatusType st = PQresultStatus(r);
    enum obx_err err = OBX_OK;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        keep_error(pg, PQerrorMessage(pg->conn));
        err = OBX_EDB;
    }
    PQclear(r);
    return err;
}

void
obx_pg_exec_quiet(struct obx_pg *pg, const char *sql)
{
    PQclear(PQexec(pg->conn, sql));
}

enum obx_err
obx_pg_query_int(struct obx_pg *pg, const char *sql, long long *out, int *found)
{
    PGresult *r = PQexec(pg->conn, sql);
    enum obx_err err = OBX_OK;

    *out = 0;
    *found = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        keep_error(pg, PQerrorMessage(pg->conn));
        err = OBX_EDB;
    } else if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)) {
        *out = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        *found = 1;
    }
    PQclear(r);
    return err;
}

enum obx_err
obx_pg_open(const char *uri, const char *schema, struct obx_pg **out, char *errmsg, size_t n)
{
    struct obx_pg *pg;
    char sql[256], *ident;
    enum obx_err err;

    *out = NULL;
    if (obx_pg_check_schema(schema)) {
        snprintf(errmsg, n, "db_schema '%s' %s", schema ? schema : "", obx_pg_check_schema(schema));
        return OBX_ECONFIG;
    }
    pg = obx_calloc(1, sizeof *pg);
    if (!pg)
        return OBX_ENOMEM;
    snprintf(pg->schema, sizeof pg->schema, "%s", schema);
    pg->conn = PQconnectdb(uri);
    if (!pg->conn || PQstatus(pg->conn) != CONNECTION_OK) {
        keep_error(pg, pg->conn ? PQerrorMessage(pg->conn) : "out of memory");
        snprintf(errmsg, n, "%s", pg->err);
        obx_pg_free(pg);
        return OBX_EIO;
    }
    PQsetNoticeProcessor(pg->conn, quiet_notice, NULL);
    ident = PQescapeIdentifier(pg->conn, schema, strlen(schema));
    if (!ident) {
        obx_pg_free(pg);
        return OBX_ENOMEM;
    }
    snprintf(sql, sizeof sql, "CREATE SCHEMA IF NOT EXISTS %s; SET search_path = %s", ident, ident);
    PQfreemem(ident);
    err = obx_pg_exec(pg, sql);
    if (err != OBX_OK) {
        snprintf(errmsg, n, "%s", pg->err);
        obx_pg_free(pg);
        return err;
    }
    *out = pg;
    return OBX_OK;
}

void
obx_pg_free(struct obx_pg *pg)
{
    if (!pg)
        return;
    if (pg->conn)
        PQfinish(pg->conn);
    obx_free(pg);
}

struct pg_conn *
obx_pg_conn(struct obx_pg *pg)
{
    return pg->conn;
}

void
obx_pg_set_error(struct obx_pg *pg, const char *msg)
{
    keep_error(pg, msg);
}

enum obx_err
obx_pg_prepare(struct obx_pg *pg, const char *name, const char *sql)
{
    PGresult *r;
    enum obx_err err = OBX_OK;

    for (int i = 0; i < pg->nprepared; i++)
        if (strcmp(pg->prepared[i], name) == 0)
            return OBX_OK;
    if (pg->nprepared == OBX_PG_PREPARED)
        return OBX_ETOOBIG;
    r = PQprepare(pg->conn, name, sql, 0, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        keep_error(pg, PQerrorMessage(pg->conn));
        err = OBX_EDB;
    } else {
        pg->prepared[pg->nprepared++] = name;
    }
    PQclear(r);
    return err;
}

enum obx_err
obx_pg_group_begin(struct obx_pg *pg)
{
    enum obx_err err = obx_pg_exec(pg, "BEGIN");

    pg->in_group = err == OBX_OK;
    return err;
}

enum obx_err
obx_pg_group_commit(struct obx_pg *pg)
{
    PGresult *r = PQexec(pg->conn, "COMMIT");
    enum obx_err err = OBX_OK;

    pg->in_group = 0;
    /* A transaction that failed outside every savepoint answers COMMIT with ROLLBACK. */
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        keep_error(pg, PQerrorMessage(pg->conn));
        err = OBX_EDB;
    } else if (strcmp(PQcmdStatus(r), "COMMIT") != 0) {
        keep_error(pg, "the transaction was rolled back");
        err = OBX_EDB;
    }
    PQclear(r);
    return err;
}

void
obx_pg_group_abort(struct obx_pg *pg)
{
    pg->in_group = 0;
    obx_pg_exec_quiet(pg, "ROLLBACK");
}

int
obx_pg_in_group(const struct obx_pg *pg)
{
    return pg->in_group;
}

enum obx_err
obx_pg_tx_begin(struct obx_pg *pg)
{
    return obx_pg_exec(pg, pg->in_group ? "SAVEPOINT obx_call" : "BEGIN");
}

enum obx_err
obx_pg_tx_end(struct obx_pg *pg, enum obx_err err)
{
    if (err == OBX_OK)
        return obx_pg_exec(pg, pg->in_group ? "RELEASE SAVEPOINT obx_call" : "COMMIT");
    obx_pg_exec_quiet(pg, pg->in_group
                              ? "ROLLBACK TO SAVEPOINT obx_call; RELEASE SAVEPOINT obx_call"
                              : "ROLLBACK");
    return err;
}

enum obx_err
obx_pg_revive(struct obx_pg *pg)
{
    char sql[160], *ident;
    enum obx_err err;

    /*
     * A call that lost its connection in the middle of a pipeline leaves it in pipeline
     * mode with results that will never come; every later synchronous call would fail
     * ("not allowed in pipeline mode"). Such a connection is opened again too.
     */
    if (PQstatus(pg->conn) == CONNECTION_OK && PQpipelineStatus(pg->conn) == PQ_PIPELINE_OFF)
        return OBX_OK;
    PQreset(pg->conn);
    if (PQstatus(pg->conn) == CONNECTION_OK && PQpipelineStatus(pg->conn) != PQ_PIPELINE_OFF)
        (void)PQexitPipelineMode(pg->conn); /* a fresh session has nothing pending */
    if (PQstatus(pg->conn) != CONNECTION_OK || PQpipelineStatus(pg->conn) != PQ_PIPELINE_OFF) {
        keep_error(pg, PQerrorMessage(pg->conn));
        return OBX_EIO;
    }
    pg->nprepared = 0; /* a new session: nothing is prepared on it */
    pg->in_group = 0;
    ident = PQescapeIdentifier(pg->conn, pg->schema, strlen(pg->schema));
    if (!ident)
        return OBX_ENOMEM;
    snprintf(sql, sizeof sql, "SET search_path = %s", ident);
    PQfreemem(ident);
    err = obx_pg_exec(pg, sql);
    if (err == OBX_OK && pg->session[0])
        err = obx_pg_exec(pg, pg->session);
    return err;
}

enum obx_err
obx_pg_set_session(struct obx_pg *pg, const char *sql)
{
    if (strlen(sql) >= sizeof pg->session)
        return OBX_ETOOBIG;
    snprintf(pg->session, sizeof pg->session, "%s", sql);
    return obx_pg_exec(pg, sql);
}

struct pg_result *
obx_pg_run(struct obx_pg *pg, const char *sql, int n, const char *const *vals, const int *lens,
           const int *formats)
{
    PGresult *r = PQexecParams(pg->conn, sql, n, NULL, vals, lens, formats, 0);
    ExecStatusType st = PQresultStatus(r);

    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return r;
    keep_error(pg, PQresultErrorMessage(r));
    PQclear(r);
    return NULL;
}

const char *
obx_pg_errmsg(const struct obx_pg *pg)
{
    return pg ? pg->err : "";
}

const char *
obx_pg_schema(const struct obx_pg *pg)
{
    return pg->schema;
}

int
obx_pg_libversion(void)
{
    return PQlibVersion();
}

static enum obx_err
array_sep(struct obx_buf *b)
{
    return obx_buf_puts(b, b->len == 0 ? "{" : ",");
}

enum obx_err
obx_pg_array_text(struct obx_buf *b, const char *v)
{
    enum obx_err err = array_sep(b);

    if (err != OBX_OK || !v)
        return err == OBX_OK ? obx_buf_puts(b, "NULL") : err;
    err = obx_buf_puts(b, "\"");
    while (err == OBX_OK && *v) {
        size_t run = strcspn(v, "\"\\");
        err = obx_buf_append(b, v, run);
        v += run;
        if (err == OBX_OK && *v) {
            char esc[2] = {'\\', *v++};
            err = obx_buf_append(b, esc, 2);
        }
    }
    return err == OBX_OK ? obx_buf_puts(b, "\"") : err;
}

enum obx_err
obx_pg_array_int(struct obx_buf *b, int64_t v, int is_null)
{
    enum obx_err err = array_sep(b);

    if (err != OBX_OK)
        return err;
    return is_null ? obx_buf_puts(b, "NULL") : obx_buf_printf(b, "%lld", (long long)v);
}

enum obx_err
obx_pg_array_end(struct obx_buf *b)
{
    return obx_buf_puts(b, b->len == 0 ? "{}" : "}");
}

/* ---- COPY FROM STDIN ------------------------------------------------------------------- */

/* Rows are sent to the server in chunks of about this many bytes. */
#define COPY_CHUNK (256 * 1024)

enum obx_err
obx_pg_copy_begin(struct obx_pg *pg, const char *sql)
{
    PGresult *r = PQexec(pg->conn, sql);
    enum obx_err err = OBX_OK;

    if (PQresultStatus(r) != PGRES_COPY_IN) {
        keep_error(pg, PQerrorMessage(pg->conn));
        err = OBX_EDB;
    }
    PQclear(r);
    return err;
}

static enum obx_err
copy_flush(struct obx_pg *pg, struct obx_buf *b)
{
    if (b->len && PQputCopyData(pg->conn, b->data, (int)b->len) != 1) {
        keep_error(pg, PQerrorMessage(pg->conn));
        return OBX_EDB;
    }
    obx_buf_reset(b);
    return OBX_OK;
}

/* One field in COPY's text format: \N for NULL; backslash, tab, newline and CR escaped. */
static enum obx_err
copy_field(struct obx_buf *b, const char *v)
{
    enum obx_err err = OBX_OK;
    const char *run = v;

    if (!v)
        return obx_buf_append(b, "\\N", 2);
    for (const char *p = v; err == OBX_OK && *p; p++) {
        const char *e = *p == '\\'   ? "\\\\"
                        : *p == '\t' ? "\\t"
                        : *p == '\n' ? "\\n"
                        : *p == '\r' ? "\\r"
                                     : NULL;
        if (!e)
            continue;
        err = obx_buf_append(b, run, (size_t)(p - run));
        if (err == OBX_OK)
            err = obx_buf_append(b, e, 2);
        run = p + 1;
    }
    return err == OBX_OK ? obx_buf_puts(b, run) : err;
}

enum obx_err
obx_pg_copy_row(struct obx_pg *pg, struct obx_buf *b, int n, const char *const *v)
{
    enum obx_err err = OBX_OK;

    for (int i = 0; err == OBX_OK && i < n; i++) {
        if (i)
            err = obx_buf_append(b, "\t", 1);
        if (err == OBX_OK)
            err = copy_field(b, v[i]);
    }
    if (err == OBX_OK)
        err = obx_buf_append(b, "\n", 1);
    return err == OBX_OK && b->len >= COPY_CHUNK ? copy_flush(pg, b) : err;
}

enum obx_err
obx_pg_copy_end(struct obx_pg *pg, struct obx_buf *b, enum obx_err err)
{
    PGresult *r;

    if (err == OBX_OK)
        err = copy_flush(pg, b);
    obx_buf_reset(b);
    /* A failure on our side ends the COPY with an error: the server keeps none of its rows. */
    if (PQputCopyEnd(pg->conn, err == OBX_OK ? NULL : "outbox: the copy was abandoned") != 1 &&
        err == OBX_OK) {
        keep_error(pg, PQerrorMessage(pg->conn));
        err = OBX_EDB;
    }
    while ((r = PQgetResult(pg->conn))) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK && err == OBX_OK) {
            keep_error(pg, PQresultErrorMessage(r));
            err = OBX_EDB;
        }
        PQclear(r);
    }
    return err;
}

enum obx_err
obx_pg_tx_change(struct obx_pg *pg, const char *sql, int n, const char *const *vals,
                 int64_t *changed)
{
    enum obx_err err = obx_pg_tx_begin(pg);
    PGresult *r;

    *changed = 0;
    if (err != OBX_OK)
        return err;
    r = obx_pg_run(pg, sql, n, vals, NULL, NULL);
    if (r)
        *changed = strtoll(PQcmdTuples(r), NULL, 10);
    else
        err = OBX_EDB;
    PQclear(r);
    return obx_pg_tx_end(pg, err);
}
