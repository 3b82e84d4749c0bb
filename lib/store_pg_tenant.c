/*
 * store_pg_tenant: the tenant registry on PostgreSQL (store_pg_tenant.h), the counterpart of
 * store_tenant.c over migrations/postgresql/0005_tenants. Same rules: every change is one
 * transaction that bumps tenant_registry.version; the key goes in sealed or as given and
 * comes out only through load. Each call is a transaction of its own, or a savepoint of the
 * store thread's group (pg.h, obx_pg_tx_begin).
 */
#include "store_pg_tenant.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "mem.h"
#include "pg.h"
#include "secretbox.h"

/* ---- a statement ---------------------------------------------------------------------- */

/*
 * Runs sql with text parameters (NULL = SQL NULL) and, when key is given, the bytea key as
 * the binary parameter $2 in place of vals[1]. Returns the result (PQclear it) or NULL with
 * the error kept on pg.
 */
static PGresult *
run(struct obx_pg *pg, const char *sql, int n, const char *const *vals, const void *key,
    size_t key_len)
{
    int lens[10] = {0}, formats[10] = {0};
    const char *v[10] = {NULL};

    for (int i = 0; i < n; i++)
        v[i] = vals[i];
    if (key) {
        v[1] = key;
        lens[1] = (int)key_len;
        formats[1] = 1;
    }
    return obx_pg_run(pg, sql, n, v, lens, formats);
}

/* Runs sql for its effect; *changed (may be NULL) gets the rows it touched. */
static enum obx_err
exec_sql(struct obx_pg *pg, const char *sql, int n, const char *const *vals, int64_t *changed)
{
    PGresult *r = run(pg, sql, n, vals, NULL, 0);

    if (!r)
        return OBX_EDB;
    if (changed)
        *changed = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return OBX_OK;
}

/* "0 = the configured one" as SQL NULL, else the number as text in buf. */
static const char *
num_or_null(char *buf, size_t n, double v, int integer)
{
    if (v <= 0)
        return NULL;
    if (integer)
        snprintf(buf, n, "%lld", (long long)v);
    else
        snprintf(buf, n, "%.17g", v);
    return buf;
}

/* ---- writing -------------------------------------------------------------------------- */

static const char SQL_BUMP[] = "UPDATE tenant_registry SET version = version + 1 WHERE id = 1";

/* Writes the key of t (sealed under sealing_key when given) with sql: $1 name, $2 key,
 * $3 sealed, $4 fingerprint, then extra[] as $5... */
static enum obx_err
write_key(struct obx_pg *pg, const char *sql, const struct obx_tenant_spec *t,
          const uint8_t *sealing_key, const char *const *extra, int nextra)
{
    char fp[OBX_SECRETBOX_FINGERPRINT_LEN + 1];
    const char *vals[10] = {t->name, NULL, sealing_key ? "t" : "f", fp};
    size_t n = strlen(t->api_key), sealed_len = 0;
    uint8_t *sealed = NULL;
    PGresult *r;

    obx_secretbox_fingerprint(t->api_key, n, fp);
    if (sealing_key &&
        obx_secretbox_seal(sealing_key, t->name, t->api_key, n, &sealed, &sealed_len) != OBX_OK)
        return OBX_ENOMEM;
    for (int i = 0; i < nextra; i++)
        vals[4 + i] = extra[i];
    r = run(pg, sql, 4 + nextra, vals, sealed ? (const void *)sealed : t->api_key,
            sealed ? sealed_len : n);
    obx_free(sealed);
    if (!r)
        return OBX_EDB;
    PQclear(r);
    return OBX_OK;
}

static enum obx_err
set_fields(struct obx_pg *pg, const struct obx_tenant_spec *t, const uint8_t *sealing_key)
{
    char num[32];
    const char *vals[2] = {t->name, NULL};
    enum obx_err err = OBX_OK;

    if (t->api_key)
        err = write_key(pg,
                        "UPDATE tenants SET api_key = $2, key_sealed = $3::boolean,"
                        " key_fingerprint = $4 WHERE name = $1",
                        t, sealing_key, NULL, 0);
    if (err == OBX_OK && t->set_rate_limit) {
        vals[1] = num_or_null(num, sizeof num, t->rate_limit_per_min, 0);
        err = exec_sql(pg, "UPDATE tenants SET rate_limit_per_min = $2::float8 WHERE name = $1", 2,
                       vals, NULL);
    }
    if (err == OBX_OK && t->set_rate_burst) {
        vals[1] = num_or_null(num, sizeof num, (double)t->rate_burst, 1);
        err = exec_sql(pg, "UPDATE tenants SET rate_burst = $2::bigint WHERE name = $1", 2, vals,
                       NULL);
    }
    if (err == OBX_OK && t->set_base_url) {
        vals[1] = t->partoo_base_url;
        err = exec_sql(pg, "UPDATE tenants SET partoo_base_url = $2 WHERE name = $1", 2, vals,
                       NULL);
    }
    return err;
}

/* Takes channel c for tenant `name`; OBX_ECONFLICT when another tenant owns it. */
static enum obx_err
own_channel(struct obx_pg *pg, const char *name, const struct obx_tenant_channel *c, char *conflict,
            size_t conflict_len)
{
    const char *vals[3] = {c->channel_id, name, c->readonly ? "t" : "f"};
    /* The row is locked by the upsert, so two tenants claiming one channel at once take
     * turns and the second sees the first's owner. */
    PGresult *r = run(pg,
                      "INSERT INTO tenant_channels (channel_id, tenant, readonly)"
                      " VALUES ($1, $2, $3::boolean) ON CONFLICT (channel_id) DO UPDATE"
                      " SET readonly = excluded.readonly WHERE tenant_channels.tenant = $2"
                      " RETURNING tenant",
                      3, vals, NULL, 0);

    if (!r)
        return OBX_EDB;
    if (PQntuples(r) == 0) {
        snprintf(conflict, conflict_len, "%s", c->channel_id);
        PQclear(r);
        return OBX_ECONFLICT;
    }
    PQclear(r);
    return OBX_OK;
}

/* PUT: the tenant's channels the new list leaves out are released. */
static enum obx_err
release_unnamed(struct obx_pg *pg, const struct obx_tenant_spec *t)
{
    struct obx_buf names;
    const char *vals[2] = {t->name, NULL};
    enum obx_err err = OBX_OK;

    obx_buf_init(&names, (size_t)64 << 20);
    for (size_t i = 0; i < t->nchannels && err == OBX_OK; i++)
        err = obx_pg_array_text(&names, t->channels[i].channel_id);
    if (err == OBX_OK)
        err = obx_pg_array_end(&names);
    vals[1] = obx_buf_str(&names);
    if (err == OBX_OK)
        err = exec_sql(pg,
                       "DELETE FROM tenant_channels WHERE tenant = $1"
                       " AND NOT (channel_id = ANY ($2::text[]))",
                       2, vals, NULL);
    obx_buf_release(&names);
    return err;
}

static enum obx_err
put_in_tx(struct obx_pg *pg, const struct obx_tenant_spec *t, enum obx_tenant_put_mode mode,
          const uint8_t *sealing_key, int *created, char *conflict, size_t conflict_len)
{
    char now[24], rate[32], burst[32];
    const char *name[1] = {t->name};
    int64_t exists = 0;
    enum obx_err err;

    snprintf(now, sizeof now, "%lld", (long long)obx_now_ms(obx_clock_real()));
    /* Locks the row: two changes of one tenant take turns. */
    err = exec_sql(pg, "SELECT 1 FROM tenants WHERE name = $1 FOR UPDATE", 1, name, &exists);
    if (err != OBX_OK)
        return err;
    err = obx_store_tenant_put_allowed(t, mode, exists != 0);
    if (err != OBX_OK)
        return err;
    if (exists) {
        err = set_fields(pg, t, sealing_key);
    } else {
        const char *extra[4] = {
            num_or_null(rate, sizeof rate, t->set_rate_limit ? t->rate_limit_per_min : 0, 0),
            num_or_null(burst, sizeof burst, t->set_rate_burst ? (double)t->rate_burst : 0, 1),
            t->set_base_url ? t->partoo_base_url : NULL, now};
        err = write_key(pg,
                        "INSERT INTO tenants (name, api_key, key_sealed, key_fingerprint,"
                        " rate_limit_per_min, rate_burst, partoo_base_url, created_at_ms,"
                        " updated_at_ms) VALUES ($1, $2, $3::boolean, $4, $5::float8,"
                        " $6::bigint, $7, $8::bigint, $8::bigint)",
                        t, sealing_key, extra, 4);
        *created = 1;
    }
    if (err == OBX_OK && t->replace_channels)
        err = release_unnamed(pg, t);
    for (size_t i = 0; err == OBX_OK && i < t->nremove; i++) {
        const char *vals[2] = {t->remove_channels[i], t->name};
        err = exec_sql(pg, "DELETE FROM tenant_channels WHERE channel_id = $1 AND tenant = $2", 2,
                       vals, NULL);
    }
    for (size_t i = 0; err == OBX_OK && i < t->nchannels; i++)
        err = own_channel(pg, t->name, &t->channels[i], conflict, conflict_len);
    if (err == OBX_OK && exists) {
        const char *vals[2] = {t->name, now};
        err = exec_sql(pg, "UPDATE tenants SET updated_at_ms = $2::bigint WHERE name = $1", 2, vals,
                       NULL);
    }
    if (err == OBX_OK)
        err = exec_sql(pg, SQL_BUMP, 0, NULL, NULL);
    return err;
}

enum obx_err
obx_store_pg_tenant_put(struct obx_store *st, const struct obx_tenant_spec *t,
                        enum obx_tenant_put_mode mode, const uint8_t *sealing_key, int *created,
                        char *conflict, size_t conflict_len)
{
    enum obx_err err = obx_pg_tx_begin(st->pg);

    if (err != OBX_OK)
        return err;
    err = obx_pg_tx_end(st->pg,
                        put_in_tx(st->pg, t, mode, sealing_key, created, conflict, conflict_len));
    if (err != OBX_OK)
        *created = 0;
    return err;
}

enum obx_err
obx_store_pg_tenant_remove(struct obx_store *st, const char *name)
{
    const char *vals[1] = {name};
    int64_t gone = 0;
    enum obx_err err = obx_pg_tx_begin(st->pg);

    if (err != OBX_OK)
        return err;
    err = exec_sql(st->pg, "DELETE FROM tenant_channels WHERE tenant = $1", 1, vals, NULL);
    if (err == OBX_OK)
        err = exec_sql(st->pg, "DELETE FROM tenants WHERE name = $1", 1, vals, &gone);
    if (err == OBX_OK && gone == 0)
        err = OBX_ENOTFOUND;
    if (err == OBX_OK)
        err = exec_sql(st->pg, SQL_BUMP, 0, NULL, NULL);
    return obx_pg_tx_end(st->pg, err);
}

/* ---- reading -------------------------------------------------------------------------- */

enum obx_err
obx_store_pg_tenant_list(struct obx_store *st, const char *name, obx_tenant_fn fn, void *ctx)
{
    const char *vals[1] = {name};
    PGresult *r = run(st->pg,
                      "SELECT t.name, t.key_fingerprint, t.key_sealed, t.rate_limit_per_min,"
                      " t.rate_burst, t.partoo_base_url, t.created_at_ms, t.updated_at_ms,"
                      " c.channel_id, c.readonly FROM tenants t"
                      " LEFT JOIN tenant_channels c ON c.tenant = t.name"
                      " WHERE $1::text IS NULL OR t.name = $1 ORDER BY t.name, c.channel_id",
                      1, vals, NULL, 0);
    struct obx_tenant_channel *ch;
    enum obx_err err = OBX_OK;
    int rows, found = 0;

    if (!r)
        return OBX_EDB;
    rows = PQntuples(r);
    ch = obx_calloc((size_t)(rows ? rows : 1), sizeof *ch);
    if (!ch) {
        PQclear(r);
        return OBX_ENOMEM;
    }
    /* One tenant per run of rows with its name, a row per channel (none: one NULL row). */
    for (int i = 0; i < rows;) {
        struct obx_tenant_row t = {0};
        int k = i;
        found = 1;
        t.name = PQgetvalue(r, i, 0);
        t.key_fingerprint = PQgetvalue(r, i, 1);
        t.key_sealed = strcmp(PQgetvalue(r, i, 2), "t") == 0;
        t.rate_limit_per_min = PQgetisnull(r, i, 3) ? 0 : strtod(PQgetvalue(r, i, 3), NULL);
        t.rate_burst = PQgetisnull(r, i, 4) ? 0 : strtoll(PQgetvalue(r, i, 4), NULL, 10);
        t.partoo_base_url = PQgetisnull(r, i, 5) ? NULL : PQgetvalue(r, i, 5);
        t.created_at_ms = strtoll(PQgetvalue(r, i, 6), NULL, 10);
        t.updated_at_ms = strtoll(PQgetvalue(r, i, 7), NULL, 10);
        for (; k < rows && strcmp(PQgetvalue(r, k, 0), t.name) == 0; k++) {
            if (PQgetisnull(r, k, 8))
                continue;
            ch[t.nchannels].channel_id = PQgetvalue(r, k, 8);
            ch[t.nchannels].readonly = strcmp(PQgetvalue(r, k, 9), "t") == 0;
            t.nchannels++;
        }
        t.channels = ch;
        i = k;
        if (fn(ctx, &t))
            break;
    }
    obx_free(ch);
    PQclear(r);
    if (err == OBX_OK && name && !found)
        err = OBX_ENOTFOUND;
    return err;
}

enum obx_err
obx_store_pg_tenant_version(struct obx_store *st, int64_t *version)
{
    long long v = 0;
    int found = 0;
    enum obx_err err = obx_pg_query_int(st->pg, "SELECT version FROM tenant_registry WHERE id = 1",
                                        &v, &found);

    *version = v;
    return err;
}

/* Opens row i's key into c (api_key NULL with a reason when it cannot be opened). */
static enum obx_err
open_key(PGresult *r, int i, const uint8_t *sealing_key, struct obx_tenant_conf *c)
{
    size_t n = 0, len = 0;
    unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 1), &n);
    enum obx_err err = OBX_OK;

    if (!raw)
        return OBX_ENOMEM;
    if (strcmp(PQgetvalue(r, i, 2), "t") != 0) {
        c->api_key = obx_malloc(n + 1);
        if (c->api_key) {
            memcpy(c->api_key, raw, n);
            c->api_key[n] = '\0';
        } else {
            err = OBX_ENOMEM;
        }
    } else if (!sealing_key) {
        c->key_error = "the key is sealed and no secrets_key_file is configured";
    } else if (obx_secretbox_open(sealing_key, c->name, raw, n, &c->api_key, &len) != OBX_OK) {
        c->api_key = NULL;
        c->key_error = "the key does not open with secrets_key_file (another key?)";
    }
    explicit_bzero(raw, n);
    PQfreemem(raw);
    return err;
}

enum obx_err
obx_store_pg_tenant_load(struct obx_store *st, const uint8_t *sealing_key,
                         struct obx_tenant_conf **out, size_t *n)
{
    PGresult *r = run(st->pg,
                      "SELECT name, api_key, key_sealed, key_fingerprint, rate_limit_per_min,"
                      " rate_burst, partoo_base_url FROM tenants ORDER BY name",
                      0, NULL, NULL, 0);
    struct obx_tenant_conf *t;
    enum obx_err err = OBX_OK;
    int rows;

    *out = NULL;
    *n = 0;
    if (!r)
        return OBX_EDB;
    rows = PQntuples(r);
    t = obx_calloc((size_t)(rows ? rows : 1), sizeof *t);
    for (int i = 0; t && i < rows && err == OBX_OK; i++) {
        struct obx_tenant_conf *c = &t[i];
        snprintf(c->name, sizeof c->name, "%s", PQgetvalue(r, i, 0));
        snprintf(c->key_fingerprint, sizeof c->key_fingerprint, "%s", PQgetvalue(r, i, 3));
        c->rate_limit_per_min = PQgetisnull(r, i, 4) ? 0 : strtod(PQgetvalue(r, i, 4), NULL);
        c->rate_burst = PQgetisnull(r, i, 5) ? 0 : strtoll(PQgetvalue(r, i, 5), NULL, 10);
        if (!PQgetisnull(r, i, 6) && !(c->partoo_base_url = obx_strdup(PQgetvalue(r, i, 6))))
            err = OBX_ENOMEM;
        if (err == OBX_OK)
            err = open_key(r, i, sealing_key, c);
    }
    PQclear(r);
    if (!t)
        return OBX_ENOMEM;
    if (err != OBX_OK) {
        obx_store_tenant_conf_free(t, (size_t)rows);
        return err;
    }
    *out = t;
    *n = (size_t)rows;
    return OBX_OK;
}

enum obx_err
obx_store_pg_tenant_channel_readonly(struct obx_store *st, const char *channel_id, int *readonly)
{
    const char *vals[1] = {channel_id};
    PGresult *r = run(st->pg, "SELECT readonly FROM tenant_channels WHERE channel_id = $1", 1, vals,
                      NULL, 0);

    *readonly = -1;
    if (!r)
        return OBX_EDB;
    if (PQntuples(r) == 1)
        *readonly = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    return OBX_OK;
}

enum obx_err
obx_store_pg_tenant_any_readonly(struct obx_store *st, int *any)
{
    PGresult *r = run(st->pg, "SELECT EXISTS (SELECT 1 FROM tenant_channels WHERE readonly)", 0,
                      NULL, NULL, 0);

    *any = 0;
    if (!r)
        return OBX_EDB;
    *any = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    return OBX_OK;
}
