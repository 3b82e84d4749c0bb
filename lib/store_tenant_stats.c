/* store_tenant_stats: the tenants section of the stats documents (see store_tenant_stats.h). */
#include "store_tenant_stats.h"

#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "pg.h"
#include "err.h"
#include "mem.h"
#include "store_tx.h"

/* Kept counts per owner and state: one pass over state_counts (one row per channel and
   state), each channel's owner found by its primary key. '' = no tenant (default). */
static const char SQL_COUNTS[] =
    "SELECT coalesce(tc.tenant, ''), sc.state, sum(sc.n) FROM state_counts sc"
    " LEFT JOIN tenant_channels tc ON tc.channel_id = sc.channel_id"
    " WHERE sc.n <> 0 GROUP BY 1, 2";

static const char SQL_TENANTS[] = "SELECT name, rate_limit_per_min FROM tenants ORDER BY name";

static const char SQL_CHANNELS[] =
    "SELECT tenant, channel_id FROM tenant_channels ORDER BY tenant, channel_id";

/* The default tenant's channels: those with messages that no tenant owns. */
static const char SQL_UNOWNED[] =
    "SELECT DISTINCT sc.channel_id FROM state_counts sc WHERE sc.n <> 0"
    " AND NOT EXISTS (SELECT 1 FROM tenant_channels tc WHERE tc.channel_id = sc.channel_id)"
    " ORDER BY sc.channel_id LIMIT ?1";

static const char SQL_OWNER[] = "SELECT tenant FROM tenant_channels WHERE channel_id = ?1";

static int
cmp_name(const void *a, const void *b)
{
    return strcmp(((const struct obx_tenant_stats *)a)->name,
                  ((const struct obx_tenant_stats *)b)->name);
}

/* The index of the tenant named, or s->n. Linear: after finish the order is no longer by
   name, and it is used for a few names. */
static size_t
find_index(const struct obx_tenant_stats_set *s, const char *name)
{
    int want_default = strcmp(name, "default") == 0;
    size_t i;

    if (s->by_name && s->n && s->v[0].is_default) {
        const struct obx_tenant_stats *t;
        struct obx_tenant_stats key;

        if (want_default)
            return 0;
        if (strlen(name) >= sizeof key.name || s->n < 2)
            return s->n;
        snprintf(key.name, sizeof key.name, "%s", name);
        t = bsearch(&key, s->v + 1, s->n - 1, sizeof key, cmp_name);
        return t ? (size_t)(t - s->v) : s->n;
    }
    for (i = 0; i < s->n; i++)
        if (want_default ? s->v[i].is_default
                         : !s->v[i].is_default && strcmp(s->v[i].name, name) == 0)
            break;
    return i;
}

const struct obx_tenant_stats *
obx_store_tenant_stats_find(const struct obx_tenant_stats_set *s, const char *name)
{
    size_t i = find_index(s, name);

    return i < s->n ? &s->v[i] : NULL;
}

/* During collect, while v[1..n) is sorted by name; "" is the default tenant. */
static struct obx_tenant_stats *
find_sorted(struct obx_tenant_stats_set *s, const char *name)
{
    size_t i = name[0] ? find_index(s, name) : 0;

    return i < s->n ? &s->v[i] : NULL;
}

static enum obx_err
add_channel(struct obx_tenant_stats *t, const char *channel)
{
    char **v;

    if (!channel)
        return OBX_OK;
    if (t->nchannels >= OBX_TENANT_STATS_CHANNELS_MAX) {
        t->channels_truncated = 1;
        return OBX_OK;
    }
    v = obx_realloc(t->channels, (t->nchannels + 1) * sizeof *v);
    if (!v)
        return OBX_ENOMEM;
    t->channels = v;
    v[t->nchannels] = obx_strdup(channel);
    if (!v[t->nchannels])
        return OBX_ENOMEM;
    t->nchannels++;
    return OBX_OK;
}

/* ---- one row at a time, whichever backend read it ---------------------------------------- */

static enum obx_err
add_tenant(struct obx_tenant_stats_set *s, size_t *cap, const char *name, double rate_per_min)
{
    struct obx_tenant_stats *t;

    if (!name || strlen(name) > OBX_TENANT_NAME_MAX)
        return OBX_OK;
    if (s->n == *cap) {
        struct obx_tenant_stats *v = obx_realloc(s->v, *cap * 2 * sizeof *v);
        if (!v)
            return OBX_ENOMEM;
        s->v = v;
        *cap *= 2;
    }
    t = &s->v[s->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->rate_limit_per_min = rate_per_min;
    return OBX_OK;
}

static void
add_count(struct obx_tenant_stats_set *s, const char *owner, const char *state_name, int64_t n)
{
    int state = obx_store_state_parse(state_name);
    struct obx_tenant_stats *t = owner ? find_sorted(s, owner) : NULL;

    /* A channel given to a tenant removed meanwhile: no row to count it in. */
    if (t && state >= 0)
        t->counts[state] += n;
}

static enum obx_err
add_owned_channel(struct obx_tenant_stats_set *s, const char *owner, const char *channel)
{
    struct obx_tenant_stats *t = owner && owner[0] ? find_sorted(s, owner) : NULL;

    return t ? add_channel(t, channel) : OBX_OK;
}

/* ---- SQLite -------------------------------------------------------------------------------- */

static enum obx_err
read_tenants(struct obx_store *st, struct obx_tenant_stats_set *s)
{
    sqlite3_stmt *q = obx_db_stmt(st->db, SQL_TENANTS);
    size_t cap = 1;
    enum obx_err err = OBX_OK;
    int rc = SQLITE_DONE;

    if (!q)
        return OBX_EDB;
    while (err == OBX_OK && (rc = sqlite3_step(q)) == SQLITE_ROW)
        err = add_tenant(s, &cap, (const char *)sqlite3_column_text(q, 0),
                         sqlite3_column_double(q, 1));
    sqlite3_reset(q);
    if (err != OBX_OK)
        return err;
    return rc == SQLITE_DONE ? OBX_OK : obx_err_from_sqlite(rc);
}

static enum obx_err
read_counts(struct obx_store *st, struct obx_tenant_stats_set *s)
{
    sqlite3_stmt *q = obx_db_stmt(st->db, SQL_COUNTS);
    int rc;

    if (!q)
        return OBX_EDB;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW)
        add_count(s, (const char *)sqlite3_column_text(q, 0),
                  (const char *)sqlite3_column_text(q, 1), sqlite3_column_int64(q, 2));
    sqlite3_reset(q);
    return rc == SQLITE_DONE ? OBX_OK : obx_err_from_sqlite(rc);
}

static enum obx_err
read_channels(struct obx_store *st, struct obx_tenant_stats_set *s)
{
    sqlite3_stmt *q = obx_db_stmt(st->db, SQL_CHANNELS);
    enum obx_err err = OBX_OK;
    int rc = SQLITE_DONE;

    if (!q)
        return OBX_EDB;
    while (err == OBX_OK && (rc = sqlite3_step(q)) == SQLITE_ROW)
        err = add_owned_channel(s, (const char *)sqlite3_column_text(q, 0),
                                (const char *)sqlite3_column_text(q, 1));
    sqlite3_reset(q);
    if (err != OBX_OK)
        return err;
    if (rc != SQLITE_DONE)
        return obx_err_from_sqlite(rc);
    q = obx_db_stmt(st->db, SQL_UNOWNED);
    if (!q)
        return OBX_EDB;
    sqlite3_bind_int(q, 1, OBX_TENANT_STATS_CHANNELS_MAX + 1);
    while (err == OBX_OK && (rc = sqlite3_step(q)) == SQLITE_ROW)
        err = add_channel(&s->v[0], (const char *)sqlite3_column_text(q, 0));
    sqlite3_reset(q);
    if (err != OBX_OK)
        return err;
    return rc == SQLITE_DONE ? OBX_OK : obx_err_from_sqlite(rc);
}

/* ---- PostgreSQL (no state_counts there: the counts come from outbox itself) ---------------- */

static const char *
pg_text(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/*
 * A tenant's sending paused, as its node recorded it with its attempts or its breaker (0002's
 * tenant_pacing): SQLite has the running serve's publication instead (service_state); here
 * any node may hold the tenant, and the pacing row is what they share.
 */
static const char SQL_PACING_PG[] =
    "SELECT tenant, CASE WHEN auth_paused THEN 'auth'"
    " WHEN paused_until_ms > outbox_now_ms() THEN 'rate_limited' ELSE 'circuit_open' END,"
    " CASE WHEN auth_paused THEN 0 WHEN paused_until_ms > outbox_now_ms() THEN paused_until_ms"
    " ELSE circuit_open_until_ms END FROM tenant_pacing"
    " WHERE auth_paused OR paused_until_ms > outbox_now_ms()"
    " OR circuit_open_until_ms > outbox_now_ms()";

static enum obx_err
read_pacing_pg(struct obx_store *st, struct obx_tenant_stats_set *s)
{
    PGresult *r = obx_pg_run(st->pg, SQL_PACING_PG, 0, NULL, NULL, NULL);

    if (!r)
        return OBX_EDB;
    for (int i = 0; i < PQntuples(r); i++) {
        size_t k = find_index(s, PQgetvalue(r, i, 0));
        if (k == s->n)
            continue;
        snprintf(s->v[k].paused_reason, sizeof s->v[k].paused_reason, "%s", PQgetvalue(r, i, 1));
        s->v[k].paused_until_ms = strtoll(PQgetvalue(r, i, 2), NULL, 10);
    }
    PQclear(r);
    return OBX_OK;
}

static enum obx_err
read_all_pg(struct obx_store *st, struct obx_tenant_stats_set *s)
{
    static const char *const sql[4] = {
        "SELECT name, coalesce(rate_limit_per_min, 0) FROM tenants ORDER BY name COLLATE \"C\"",
        "SELECT coalesce(tc.tenant, ''), o.state, count(*) FROM outbox o"
        " LEFT JOIN tenant_channels tc ON tc.channel_id = o.channel_id GROUP BY 1, 2",
        "SELECT tenant, channel_id FROM tenant_channels ORDER BY tenant, channel_id",
        "SELECT DISTINCT o.channel_id FROM outbox o WHERE NOT EXISTS (SELECT 1 FROM"
        " tenant_channels tc WHERE tc.channel_id = o.channel_id) ORDER BY 1 LIMIT $1::integer"};
    char lim[24];
    const char *vals[1] = {lim};
    size_t cap = 1;
    enum obx_err err = OBX_OK;

    snprintf(lim, sizeof lim, "%d", OBX_TENANT_STATS_CHANNELS_MAX + 1);
    for (int k = 0; k < 4 && err == OBX_OK; k++) {
        PGresult *r = obx_pg_run(st->pg, sql[k], k == 3, k == 3 ? vals : NULL, NULL, NULL);
        if (!r)
            return OBX_EDB;
        for (int i = 0; i < PQntuples(r) && err == OBX_OK; i++) {
            if (k == 0)
                err = add_tenant(s, &cap, pg_text(r, i, 0), strtod(PQgetvalue(r, i, 1), NULL));
            else if (k == 1)
                add_count(s, pg_text(r, i, 0), pg_text(r, i, 1),
                          strtoll(PQgetvalue(r, i, 2), NULL, 10));
            else if (k == 2)
                err = add_owned_channel(s, pg_text(r, i, 0), pg_text(r, i, 1));
            else
                err = add_channel(&s->v[0], pg_text(r, i, 0));
        }
        PQclear(r);
        if (k == 0)
            s->by_name = 1; /* sorted by name from here: find_sorted may search */
    }
    return err == OBX_OK ? read_pacing_pg(st, s) : err;
}

enum obx_err
obx_store_tenant_stats_collect(struct obx_store *st, struct obx_tenant_stats_set *out)
{
    enum obx_err err;

    memset(out, 0, sizeof *out);
    out->v = obx_calloc(1, sizeof *out->v);
    if (!out->v)
        return OBX_ENOMEM;
    out->n = 1;
    snprintf(out->v[0].name, sizeof out->v[0].name, "default");
    out->v[0].is_default = 1;
    /* One read transaction: counts, tenants and channels of one moment. */
    err = obx_store_tx_read_begin(st);
    if (err != OBX_OK) {
        obx_store_tenant_stats_release(out);
        return err;
    }
    if (st->pg) {
        err = read_all_pg(st, out);
    } else {
        err = read_tenants(st, out);
        out->by_name = 1;
        if (err == OBX_OK)
            err = read_counts(st, out);
        if (err == OBX_OK)
            err = read_channels(st, out);
    }
    if (obx_store_tx_read_end(st) != OBX_OK && err == OBX_OK)
        err = OBX_EDB;
    obx_store_end_reads(st);
    if (err != OBX_OK)
        obx_store_tenant_stats_release(out);
    return err;
}

void
obx_store_tenant_stats_release(struct obx_tenant_stats_set *s)
{
    for (size_t i = 0; s->v && i < s->n; i++) {
        for (size_t k = 0; k < s->v[i].nchannels; k++)
            obx_free(s->v[i].channels[k]);
        obx_free(s->v[i].channels);
    }
    obx_free(s->v);
    s->v = NULL;
    s->n = 0;
}

static int
cmp_shown(const void *a, const void *b)
{
    const struct obx_tenant_stats *x = a, *y = b;
    int64_t bx = x->counts[OBX_ST_QUEUED] + x->counts[OBX_ST_SENDING];
    int64_t by = y->counts[OBX_ST_QUEUED] + y->counts[OBX_ST_SENDING];

    if ((x->paused_reason[0] != 0) != (y->paused_reason[0] != 0))
        return x->paused_reason[0] ? -1 : 1;
    if (bx != by)
        return bx > by ? -1 : 1;
    return strcmp(x->name, y->name);
}

void
obx_store_tenant_stats_finish(struct obx_tenant_stats_set *s)
{
    if (s->n && s->v[0].is_default && s->v[0].no_key && s->v[0].nchannels == 0) {
        memmove(s->v, s->v + 1, (s->n - 1) * sizeof *s->v);
        s->n--;
    }
    if (s->n > 1)
        qsort(s->v, s->n, sizeof *s->v, cmp_shown);
    s->by_name = 0;
}

/* PostgreSQL: every owner in one read, in byte order (strcmp's), each channel found by
 * binary search. */
static enum obx_err
owners_pg(struct obx_store *st, const struct obx_channel_stats *c, size_t n, char *tenant)
{
    PGresult *r = obx_pg_run(st->pg,
                             "SELECT channel_id, tenant FROM tenant_channels"
                             " ORDER BY channel_id COLLATE \"C\"",
                             0, NULL, NULL, NULL);

    if (!r)
        return OBX_EDB;
    for (size_t i = 0; i < n; i++) {
        char *out = tenant + i * (OBX_TENANT_NAME_MAX + 1);
        int lo = 0, hi = PQntuples(r);
        out[0] = '\0';
        while (lo < hi) {
            int mid = lo + (hi - lo) / 2, cmp = strcmp(PQgetvalue(r, mid, 0), c[i].channel_id);
            if (cmp == 0) {
                snprintf(out, OBX_TENANT_NAME_MAX + 1, "%s", PQgetvalue(r, mid, 1));
                break;
            }
            if (cmp < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
    }
    PQclear(r);
    return OBX_OK;
}

enum obx_err
obx_store_tenant_stats_owners(struct obx_store *st, const struct obx_channel_stats *c, size_t n,
                              char *tenant)
{
    sqlite3_stmt *q;
    enum obx_err err = OBX_OK;

    if (n == 0)
        return OBX_OK;
    if (st->pg)
        return owners_pg(st, c, n, tenant);
    q = obx_db_stmt(st->db, SQL_OWNER);
    if (!q)
        return OBX_EDB;
    for (size_t i = 0; err == OBX_OK && i < n; i++) {
        char *out = tenant + i * (OBX_TENANT_NAME_MAX + 1);
        int rc;

        out[0] = '\0';
        obx_db_bind_text(q, 1, c[i].channel_id);
        rc = sqlite3_step(q);
        if (rc == SQLITE_ROW) {
            const char *t = (const char *)sqlite3_column_text(q, 0);
            snprintf(out, OBX_TENANT_NAME_MAX + 1, "%s", t ? t : "");
        } else if (rc != SQLITE_DONE) {
            err = obx_err_from_sqlite(rc);
        }
        sqlite3_reset(q);
    }
    obx_store_end_reads(st);
    return err;
}

void
obx_store_tenant_stats_apply_published(struct obx_tenant_stats_set *s, const char *json)
{
    cJSON *root = json ? cJSON_Parse(json) : NULL;
    const cJSON *e;

    if (!cJSON_IsArray(root)) {
        cJSON_Delete(root);
        return;
    }
    cJSON_ArrayForEach(e, root)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "tenant");
        const cJSON *reason = cJSON_GetObjectItemCaseSensitive(e, "reason");
        const cJSON *until = cJSON_GetObjectItemCaseSensitive(e, "until_ms");
        struct obx_tenant_stats *t;
        size_t i;

        if (!cJSON_IsString(name) || !cJSON_IsString(reason))
            continue;
        i = find_index(s, name->valuestring);
        if (i == s->n)
            continue;
        t = &s->v[i];
        snprintf(t->paused_reason, sizeof t->paused_reason, "%s", reason->valuestring);
        t->paused_until_ms = cJSON_IsNumber(until) ? (int64_t)until->valuedouble : 0;
        if (t->is_default && strcmp(t->paused_reason, "no_key") == 0)
            t->no_key = 1;
    }
    cJSON_Delete(root);
}
