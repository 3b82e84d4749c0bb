/*
 * store_tenant: the tenant registry (see store_tenant.h). Every change is one transaction
 * that also bumps tenant_registry.version, which serve polls every second: a change made by
 * `outbox tenant` in another process reaches delivery without a restart or a signal.
 */
#include "store_tenant.h"

#include <stdio.h>
#include <string.h>

#include "db.h"
#include "err.h"
#include "mem.h"
#include "secretbox.h"
#include "store_pg_tenant.h"

int
obx_store_tenant_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;

    if (n < 1 || n > OBX_TENANT_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static const char SQL_BUMP[] = "UPDATE tenant_registry SET version = version + 1 WHERE id = 1";

static const char SQL_EXISTS[] = "SELECT 1 FROM tenants WHERE name = ?1";

static const char SQL_INSERT[] =
    "INSERT INTO tenants (name, api_key, key_sealed, key_fingerprint, rate_limit_per_min,"
    " rate_burst, partoo_base_url, created_at_ms, updated_at_ms)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)";

static const char SQL_SET_KEY[] = "UPDATE tenants SET api_key = ?2, key_sealed = ?3,"
                                  " key_fingerprint = ?4 WHERE name = ?1";
static const char SQL_SET_RATE[] = "UPDATE tenants SET rate_limit_per_min = ?2 WHERE name = ?1";
static const char SQL_SET_BURST[] = "UPDATE tenants SET rate_burst = ?2 WHERE name = ?1";
static const char SQL_SET_URL[] = "UPDATE tenants SET partoo_base_url = ?2 WHERE name = ?1";
static const char SQL_TOUCH[] = "UPDATE tenants SET updated_at_ms = ?2 WHERE name = ?1";

static const char SQL_OWNER[] = "SELECT tenant FROM tenant_channels WHERE channel_id = ?1";
static const char SQL_OWN[] =
    "INSERT INTO tenant_channels (channel_id, tenant, readonly) VALUES (?1, ?2, ?3)"
    " ON CONFLICT (channel_id) DO UPDATE SET readonly = excluded.readonly"
    " WHERE readonly <> excluded.readonly";
static const char SQL_RELEASE[] =
    "DELETE FROM tenant_channels WHERE channel_id = ?1 AND tenant = ?2";
static const char SQL_RELEASE_ALL[] = "DELETE FROM tenant_channels WHERE tenant = ?1";
/* PUT: every channel of the tenant is marked first; those named again are unmarked. */
static const char SQL_CHANNELS_OF[] =
    "SELECT channel_id FROM tenant_channels WHERE tenant = ?1 ORDER BY channel_id";
static const char SQL_DELETE[] = "DELETE FROM tenants WHERE name = ?1";

static enum obx_err
step_sql(struct obx_store *st, const char *sql, const char *name, sqlite3_stmt **out)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, sql);

    *out = s;
    if (!s)
        return OBX_EDB;
    obx_db_bind_text(s, 1, name);
    return OBX_OK;
}

/* Binds the key (sealed when a sealing key is given) to ?2 ?3 ?4 of s. */
static enum obx_err
bind_key(sqlite3_stmt *s, const char *name, const char *key, const uint8_t *sealing_key,
         uint8_t **sealed)
{
    char fp[OBX_SECRETBOX_FINGERPRINT_LEN + 1];
    size_t n = strlen(key), sealed_len = 0;
    enum obx_err err;

    obx_secretbox_fingerprint(key, n, fp);
    if (sealing_key) {
        err = obx_secretbox_seal(sealing_key, name, key, n, sealed, &sealed_len);
        if (err != OBX_OK)
            return err;
        sqlite3_bind_blob(s, 2, *sealed, (int)sealed_len, SQLITE_TRANSIENT);
    } else {
        sqlite3_bind_blob(s, 2, key, (int)n, SQLITE_TRANSIENT);
    }
    sqlite3_bind_int(s, 3, sealing_key != NULL);
    sqlite3_bind_text(s, 4, fp, -1, SQLITE_TRANSIENT);
    return OBX_OK;
}

/* Binds a "0 = the configured one" number as NULL. */
static void
bind_real_or_null(sqlite3_stmt *s, int i, double v)
{
    if (v > 0)
        sqlite3_bind_double(s, i, v);
    else
        sqlite3_bind_null(s, i);
}

static void
bind_int_or_null(sqlite3_stmt *s, int i, int64_t v)
{
    if (v > 0)
        sqlite3_bind_int64(s, i, v);
    else
        sqlite3_bind_null(s, i);
}

static enum obx_err
set_fields(struct obx_store *st, const struct obx_tenant_spec *t, const uint8_t *sealing_key)
{
    sqlite3_stmt *s;
    uint8_t *sealed = NULL;
    enum obx_err err = OBX_OK;

    if (t->api_key) {
        err = step_sql(st, SQL_SET_KEY, t->name, &s);
        if (err == OBX_OK)
            err = bind_key(s, t->name, t->api_key, sealing_key, &sealed);
        if (err == OBX_OK)
            err = obx_db_step_done(s);
        else if (s)
            sqlite3_reset(s);
        obx_free(sealed);
    }
    if (err == OBX_OK && t->set_rate_limit) {
        err = step_sql(st, SQL_SET_RATE, t->name, &s);
        if (err == OBX_OK) {
            bind_real_or_null(s, 2, t->rate_limit_per_min);
            err = obx_db_step_done(s);
        }
    }
    if (err == OBX_OK && t->set_rate_burst) {
        err = step_sql(st, SQL_SET_BURST, t->name, &s);
        if (err == OBX_OK) {
            bind_int_or_null(s, 2, t->rate_burst);
            err = obx_db_step_done(s);
        }
    }
    if (err == OBX_OK && t->set_base_url) {
        err = step_sql(st, SQL_SET_URL, t->name, &s);
        if (err == OBX_OK) {
            obx_db_bind_text(s, 2, t->partoo_base_url);
            err = obx_db_step_done(s);
        }
    }
    return err;
}

static enum obx_err
insert_tenant(struct obx_store *st, const struct obx_tenant_spec *t, const uint8_t *sealing_key,
              int64_t now)
{
    sqlite3_stmt *s;
    uint8_t *sealed = NULL;
    enum obx_err err = step_sql(st, SQL_INSERT, t->name, &s);

    if (err == OBX_OK)
        err = bind_key(s, t->name, t->api_key, sealing_key, &sealed);
    if (err == OBX_OK) {
        bind_real_or_null(s, 5, t->set_rate_limit ? t->rate_limit_per_min : 0);
        bind_int_or_null(s, 6, t->set_rate_burst ? t->rate_burst : 0);
        obx_db_bind_text(s, 7, t->set_base_url ? t->partoo_base_url : NULL);
        sqlite3_bind_int64(s, 8, now);
        err = obx_db_step_done(s);
    } else if (s) {
        sqlite3_reset(s);
    }
    obx_free(sealed);
    return err;
}

/* Takes channel c for tenant `name`; OBX_ECONFLICT when another tenant owns it. */
static enum obx_err
own_channel(struct obx_store *st, const char *name, const struct obx_tenant_channel *c,
            char *conflict, size_t conflict_len)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_OWNER);
    int rc;

    if (!s)
        return OBX_EDB;
    obx_db_bind_text(s, 1, c->channel_id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(s, 0), name) != 0) {
        snprintf(conflict, conflict_len, "%s", c->channel_id);
        sqlite3_reset(s);
        return OBX_ECONFLICT;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return obx_err_from_sqlite(rc);
    s = obx_db_stmt(st->db, SQL_OWN);
    if (!s)
        return OBX_EDB;
    obx_db_bind_text(s, 1, c->channel_id);
    obx_db_bind_text(s, 2, name);
    sqlite3_bind_int(s, 3, c->readonly ? 1 : 0);
    return obx_db_step_done(s);
}

static enum obx_err
release_channel(struct obx_store *st, const char *name, const char *channel_id)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_RELEASE);

    if (!s)
        return OBX_EDB;
    obx_db_bind_text(s, 1, channel_id);
    obx_db_bind_text(s, 2, name);
    return obx_db_step_done(s);
}

static int
named(const struct obx_tenant_spec *t, const char *channel_id)
{
    for (size_t i = 0; i < t->nchannels; i++)
        if (strcmp(t->channels[i].channel_id, channel_id) == 0)
            return 1;
    return 0;
}

/* PUT: releases the tenant's channels that the new list leaves out. */
static enum obx_err
release_unnamed(struct obx_store *st, const struct obx_tenant_spec *t)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_CHANNELS_OF);
    char **gone = NULL;
    size_t ngone = 0, cap = 0;
    enum obx_err err = OBX_OK;
    int rc;

    if (!s)
        return OBX_EDB;
    obx_db_bind_text(s, 1, t->name);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *ch = (const char *)sqlite3_column_text(s, 0);
        if (named(t, ch))
            continue;
        if (ngone == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **p = obx_realloc(gone, ncap * sizeof *p);
            if (!p) {
                err = OBX_ENOMEM;
                break;
            }
            gone = p;
            cap = ncap;
        }
        gone[ngone] = obx_strdup(ch);
        if (!gone[ngone]) {
            err = OBX_ENOMEM;
            break;
        }
        ngone++;
    }
    sqlite3_reset(s);
    if (err == OBX_OK && rc != SQLITE_DONE)
        err = obx_err_from_sqlite(rc);
    for (size_t i = 0; i < ngone; i++) {
        if (err == OBX_OK)
            err = release_channel(st, t->name, gone[i]);
        obx_free(gone[i]);
    }
    obx_free(gone);
    return err;
}

enum obx_err
obx_store_tenant_put_allowed(const struct obx_tenant_spec *t, enum obx_tenant_put_mode mode,
                             int exists)
{
    if (exists && mode == OBX_TENANT_CREATE)
        return OBX_EDUP;
    if (!exists && mode == OBX_TENANT_UPDATE)
        return OBX_ENOTFOUND;
    if (!exists && !t->api_key)
        return OBX_EINVAL; /* a new tenant needs its key */
    return OBX_OK;
}

static enum obx_err
put_in_tx(struct obx_store *st, const struct obx_tenant_spec *t, enum obx_tenant_put_mode mode,
          const uint8_t *sealing_key, int *created, char *conflict, size_t conflict_len)
{
    int64_t now = obx_now_ms(st->clock), exists = 0;
    sqlite3_stmt *s;
    enum obx_err err = step_sql(st, SQL_EXISTS, t->name, &s);

    if (err == OBX_OK)
        err = obx_db_step_int64(s, &exists);
    if (err != OBX_OK)
        return err;
    err = obx_store_tenant_put_allowed(t, mode, exists != 0);
    if (err != OBX_OK)
        return err;
    if (exists) {
        err = set_fields(st, t, sealing_key);
    } else {
        err = insert_tenant(st, t, sealing_key, now);
        *created = 1;
    }
    if (err == OBX_OK && t->replace_channels)
        err = release_unnamed(st, t);
    for (size_t i = 0; err == OBX_OK && i < t->nremove; i++)
        err = release_channel(st, t->name, t->remove_channels[i]);
    for (size_t i = 0; err == OBX_OK && i < t->nchannels; i++)
        err = own_channel(st, t->name, &t->channels[i], conflict, conflict_len);
    if (err == OBX_OK && exists) {
        err = step_sql(st, SQL_TOUCH, t->name, &s);
        if (err == OBX_OK) {
            sqlite3_bind_int64(s, 2, now);
            err = obx_db_step_done(s);
        }
    }
    if (err == OBX_OK)
        err = obx_db_exec(st->db, SQL_BUMP);
    return err;
}

enum obx_err
obx_store_tenant_put(struct obx_store *st, const struct obx_tenant_spec *t,
                     enum obx_tenant_put_mode mode, const uint8_t *sealing_key, int *created,
                     char *conflict, size_t conflict_len)
{
    enum obx_err err;

    *created = 0;
    if (conflict_len)
        conflict[0] = '\0';
    /* "default" is the implicit tenant of the configured key (SPEC §11). */
    if (!obx_store_tenant_name_valid(t->name) || strcmp(t->name, "default") == 0)
        return OBX_EINVAL;
    if (st->pg)
        return obx_store_pg_tenant_put(st, t, mode, sealing_key, created, conflict, conflict_len);
    err = obx_db_begin(st->db);
    if (err != OBX_OK)
        return err;
    err = put_in_tx(st, t, mode, sealing_key, created, conflict, conflict_len);
    err = obx_db_end(st->db, err);
    if (err != OBX_OK)
        *created = 0;
    return err;
}

enum obx_err
obx_store_tenant_remove(struct obx_store *st, const char *name)
{
    sqlite3_stmt *s;
    enum obx_err err;

    if (st->pg)
        return obx_store_pg_tenant_remove(st, name);
    err = obx_db_begin(st->db);
    if (err != OBX_OK)
        return err;
    err = step_sql(st, SQL_RELEASE_ALL, name, &s);
    if (err == OBX_OK)
        err = obx_db_step_done(s);
    if (err == OBX_OK)
        err = step_sql(st, SQL_DELETE, name, &s);
    if (err == OBX_OK)
        err = obx_db_step_done(s);
    if (err == OBX_OK && sqlite3_changes(st->db->h) == 0)
        err = OBX_ENOTFOUND;
    if (err == OBX_OK)
        err = obx_db_exec(st->db, SQL_BUMP);
    return obx_db_end(st->db, err);
}

/* ---- reading ------------------------------------------------------------------------- */

static const char SQL_LIST[] =
    "SELECT name, key_fingerprint, key_sealed, rate_limit_per_min, rate_burst,"
    " partoo_base_url, created_at_ms, updated_at_ms FROM tenants"
    " WHERE ?1 IS NULL OR name = ?1 ORDER BY name";
static const char SQL_CHANNELS[] = "SELECT channel_id, readonly FROM tenant_channels"
                                   " WHERE tenant = ?1 ORDER BY channel_id";

/* The tenant's channels, copied (the list statement is still stepping). */
static enum obx_err
read_channels(struct obx_store *st, const char *name, struct obx_tenant_channel **out, size_t *n,
              char **strings)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_CHANNELS);
    struct obx_tenant_channel *ch = NULL;
    size_t cap = 0, len = 0, used = 0, scap = 0;
    char *buf = NULL;
    enum obx_err err = OBX_OK;
    int rc;

    *out = NULL;
    *n = 0;
    *strings = NULL;
    if (!s)
        return OBX_EDB;
    obx_db_bind_text(s, 1, name);
    /* First pass collects offsets into one string block; pointers are fixed up after. */
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        size_t l = (size_t)sqlite3_column_bytes(s, 0) + 1;
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            struct obx_tenant_channel *p = obx_realloc(ch, ncap * sizeof *p);
            if (!p) {
                err = OBX_ENOMEM;
                break;
            }
            ch = p;
            cap = ncap;
        }
        if (used + l > scap) {
            size_t ncap = (used + l) * 2;
            char *p = obx_realloc(buf, ncap);
            if (!p) {
                err = OBX_ENOMEM;
                break;
            }
            buf = p;
            scap = ncap;
        }
        memcpy(buf + used, sqlite3_column_text(s, 0), l);
        ch[len].channel_id = (const char *)(uintptr_t)used; /* offset until fixed up */
        ch[len].readonly = sqlite3_column_int(s, 1);
        used += l;
        len++;
    }
    sqlite3_reset(s);
    if (err == OBX_OK && rc != SQLITE_DONE)
        err = obx_err_from_sqlite(rc);
    if (err != OBX_OK) {
        obx_free(ch);
        obx_free(buf);
        return err;
    }
    for (size_t i = 0; i < len; i++)
        ch[i].channel_id = buf + (uintptr_t)ch[i].channel_id;
    *out = ch;
    *n = len;
    *strings = buf;
    return OBX_OK;
}

enum obx_err
obx_store_tenant_list(struct obx_store *st, const char *name, obx_tenant_fn fn, void *ctx)
{
    sqlite3_stmt *s;
    enum obx_err err = OBX_OK;
    int rc, found = 0;

    if (st->pg)
        return obx_store_pg_tenant_list(st, name, fn, ctx);
    s = obx_db_stmt(st->db, SQL_LIST);
    if (!s)
        return OBX_EDB;
    obx_db_bind_text(s, 1, name);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct obx_tenant_row t = {0};
        struct obx_tenant_channel *ch;
        char *strings;
        int stop;
        found = 1;
        t.name = (const char *)sqlite3_column_text(s, 0);
        t.key_fingerprint = (const char *)sqlite3_column_text(s, 1);
        t.key_sealed = sqlite3_column_int(s, 2);
        t.rate_limit_per_min = sqlite3_column_double(s, 3);
        t.rate_burst = sqlite3_column_int64(s, 4);
        t.partoo_base_url = (const char *)sqlite3_column_text(s, 5);
        t.created_at_ms = sqlite3_column_int64(s, 6);
        t.updated_at_ms = sqlite3_column_int64(s, 7);
        err = read_channels(st, t.name, &ch, &t.nchannels, &strings);
        if (err != OBX_OK)
            break;
        t.channels = ch;
        stop = fn(ctx, &t);
        obx_free(ch);
        obx_free(strings);
        if (stop) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(s);
    obx_store_end_reads(st);
    if (err == OBX_OK && rc != SQLITE_DONE)
        err = obx_err_from_sqlite(rc);
    if (err == OBX_OK && name && !found)
        err = OBX_ENOTFOUND;
    return err;
}

enum obx_err
obx_store_tenant_version(struct obx_store *st, int64_t *version)
{
    sqlite3_stmt *s;
    enum obx_err err;

    *version = 0;
    if (st->pg)
        return obx_store_pg_tenant_version(st, version);
    s = obx_db_stmt(st->db, "SELECT version FROM tenant_registry WHERE id = 1");
    if (!s)
        return OBX_EDB;
    err = obx_db_step_int64(s, version);
    obx_store_end_reads(st);
    return err;
}

static const char SQL_LOAD[] =
    "SELECT name, api_key, key_sealed, key_fingerprint, rate_limit_per_min, rate_burst,"
    " partoo_base_url FROM tenants ORDER BY name";

/* Opens one row's key into t (api_key NULL with a reason when it cannot be opened). */
static enum obx_err
open_key(sqlite3_stmt *s, const uint8_t *sealing_key, struct obx_tenant_conf *t)
{
    const void *blob = sqlite3_column_blob(s, 1);
    size_t n = (size_t)sqlite3_column_bytes(s, 1), len = 0;

    if (!sqlite3_column_int(s, 2)) {
        t->api_key = obx_malloc(n + 1);
        if (!t->api_key)
            return OBX_ENOMEM;
        if (n)
            memcpy(t->api_key, blob, n);
        t->api_key[n] = '\0';
        return OBX_OK;
    }
    if (!sealing_key) {
        t->key_error = "the key is sealed and no secrets_key_file is configured";
        return OBX_OK;
    }
    if (obx_secretbox_open(sealing_key, t->name, blob, n, &t->api_key, &len) != OBX_OK) {
        t->api_key = NULL;
        t->key_error = "the key does not open with secrets_key_file (another key?)";
    }
    return OBX_OK;
}

enum obx_err
obx_store_tenant_load(struct obx_store *st, const uint8_t *sealing_key,
                      struct obx_tenant_conf **out, size_t *n)
{
    sqlite3_stmt *s;
    struct obx_tenant_conf *t = NULL;
    size_t len = 0, cap = 0;
    enum obx_err err = OBX_OK;
    int rc;

    *out = NULL;
    *n = 0;
    if (st->pg)
        return obx_store_pg_tenant_load(st, sealing_key, out, n);
    s = obx_db_stmt(st->db, SQL_LOAD);
    if (!s)
        return OBX_EDB;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct obx_tenant_conf *c;
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct obx_tenant_conf *p = obx_realloc(t, ncap * sizeof *p);
            if (!p) {
                err = OBX_ENOMEM;
                break;
            }
            t = p;
            cap = ncap;
        }
        c = &t[len++];
        memset(c, 0, sizeof *c);
        snprintf(c->name, sizeof c->name, "%s", (const char *)sqlite3_column_text(s, 0));
        snprintf(c->key_fingerprint, sizeof c->key_fingerprint, "%s",
                 (const char *)sqlite3_column_text(s, 3));
        c->rate_limit_per_min = sqlite3_column_double(s, 4);
        c->rate_burst = sqlite3_column_int64(s, 5);
        if (sqlite3_column_type(s, 6) != SQLITE_NULL) {
            c->partoo_base_url = obx_db_column_dup(s, 6);
            if (!c->partoo_base_url) {
                err = OBX_ENOMEM;
                break;
            }
        }
        err = open_key(s, sealing_key, c);
        if (err != OBX_OK)
            break;
    }
    sqlite3_reset(s);
    obx_store_end_reads(st);
    if (err == OBX_OK && rc != SQLITE_DONE)
        err = obx_err_from_sqlite(rc);
    if (err != OBX_OK) {
        obx_store_tenant_conf_free(t, len);
        return err;
    }
    *out = t;
    *n = len;
    return OBX_OK;
}

void
obx_store_tenant_conf_free(struct obx_tenant_conf *t, size_t n)
{
    if (!t)
        return;
    for (size_t i = 0; i < n; i++) {
        if (t[i].api_key)
            obx_secretbox_free_plain(t[i].api_key);
        obx_free(t[i].partoo_base_url);
    }
    obx_free(t);
}

enum obx_err
obx_store_tenant_count(struct obx_store *st, int64_t *tenants, int64_t *clear_keys)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, "SELECT count(*), total(key_sealed = 0) FROM tenants");
    int rc;

    *tenants = *clear_keys = 0;
    if (!s)
        return OBX_EDB;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *tenants = sqlite3_column_int64(s, 0);
        *clear_keys = (int64_t)sqlite3_column_double(s, 1);
    }
    sqlite3_reset(s);
    obx_store_end_reads(st);
    return rc == SQLITE_ROW ? OBX_OK : obx_err_from_sqlite(rc);
}

/* Distinct channels of the unowned part of the claim index, one seek each. */
static const char SQL_UNOWNED[] =
    "SELECT DISTINCT channel_id FROM outbox INDEXED BY outbox_claim"
    " WHERE state = 'queued' AND head = 1 AND tenant IS NULL LIMIT ?1";

enum obx_err
obx_store_tenant_unowned_waiting(struct obx_store *st, int max, obx_tenant_channel_fn fn, void *ctx)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_UNOWNED);
    int rc;

    if (!s)
        return OBX_EDB;
    sqlite3_bind_int(s, 1, max);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if (fn(ctx, (const char *)sqlite3_column_text(s, 0))) {
            rc = SQLITE_DONE;
            break;
        }
    sqlite3_reset(s);
    obx_store_end_reads(st);
    return rc == SQLITE_DONE ? OBX_OK : obx_err_from_sqlite(rc);
}

enum obx_err
obx_store_tenant_channel_readonly(struct obx_store *st, const char *channel_id, int *readonly)
{
    sqlite3_stmt *s;
    int rc;

    *readonly = -1;
    if (st->pg)
        return obx_store_pg_tenant_channel_readonly(st, channel_id, readonly);
    s = obx_db_stmt(st->db, "SELECT readonly FROM tenant_channels WHERE channel_id = ?1");
    if (!s)
        return OBX_EDB;
    obx_db_bind_text(s, 1, channel_id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *readonly = sqlite3_column_int(s, 0);
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? OBX_OK : obx_err_from_sqlite(rc);
}

enum obx_err
obx_store_tenant_any_readonly(struct obx_store *st, int *any)
{
    sqlite3_stmt *s;
    int rc;

    *any = 0;
    if (st->pg)
        return obx_store_pg_tenant_any_readonly(st, any);
    s = obx_db_stmt(st->db, "SELECT EXISTS (SELECT 1 FROM tenant_channels WHERE readonly = 1)");
    if (!s)
        return OBX_EDB;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *any = sqlite3_column_int(s, 0);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? OBX_OK : obx_err_from_sqlite(rc);
}
