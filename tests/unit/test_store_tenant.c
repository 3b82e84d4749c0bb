/* Unit tests for lib/store_tenant.c and the per-tenant claim (SPEC §11). */
#include <string.h>

#include "check.h"
#include "secretbox.h"
#include "store_tenant.h"
#include "testdb.h"

static char db_path[256];
static struct obx_fake_clock fake;

static struct obx_store *
fresh_store(void)
{
    return testdb_fresh_store(db_path, sizeof db_path, "store_tenant", &fake, 1000000, 1000000);
}

static enum obx_err
put_msg(struct obx_store *st, const char *channel, const char *id)
{
    struct obx_msg m = {channel, id, "b1", id, "hello", "Consumer", NULL, NULL, 0};
    enum obx_enqueue_result r;

    return obx_enqueue(st, &m, &r, NULL);
}

static enum obx_err
add(struct obx_store *st, const char *name, const char *key, const char *channel, int readonly,
    enum obx_tenant_put_mode mode, char *conflict, size_t n)
{
    struct obx_tenant_channel ch = {channel, readonly};
    struct obx_tenant_spec t = {.name = name, .api_key = key};
    int created;

    if (channel) {
        t.channels = &ch;
        t.nchannels = 1;
    }
    return obx_store_tenant_put(st, &t, mode, NULL, &created, conflict, n);
}

static long long
tenant_of(const char *channel)
{
    char q[256];

    snprintf(q, sizeof q,
             "SELECT count(*) FROM outbox WHERE channel_id = '%s' AND tenant IS NOT NULL", channel);
    return testdb_int(db_path, q);
}

/* A tenant claims a channel: its messages, queued before and after, carry the tenant; the
 * channel released (rm), they carry none again. */
static int
test_channel_changes_hands(void)
{
    struct obx_store *st = fresh_store();
    char conflict[256];
    int64_t v0 = 0, v1 = 0;
    TEST_BEGIN;

    CHECK(st != NULL);
    CHECK_OK(put_msg(st, "ch-a", "before"));
    CHECK_INT(tenant_of("ch-a"), 0);
    CHECK_OK(obx_store_tenant_version(st, &v0));
    CHECK_OK(add(st, "acme", "key-acme", "ch-a", 0, OBX_TENANT_CREATE, conflict, sizeof conflict));
    CHECK_OK(obx_store_tenant_version(st, &v1));
    CHECK(v1 > v0);
    CHECK_INT(tenant_of("ch-a"), 1);
    CHECK_OK(put_msg(st, "ch-a", "after"));
    CHECK_INT(tenant_of("ch-a"), 2);
    /* A second claim of the channel is a conflict naming it, and changes nothing. */
    CHECK_INT(add(st, "other", "key-other", "ch-a", 0, OBX_TENANT_CREATE, conflict,
                  sizeof conflict),
              OBX_ECONFLICT);
    CHECK_STR(conflict, "ch-a");
    CHECK_INT(testdb_int(db_path, "SELECT count(*) FROM tenants WHERE name = 'other'"), 0);
    /* add of an existing tenant, set of a missing one */
    CHECK_INT(add(st, "acme", "k", NULL, 0, OBX_TENANT_CREATE, conflict, sizeof conflict),
              OBX_EDUP);
    CHECK_INT(add(st, "nobody", "k", NULL, 0, OBX_TENANT_UPDATE, conflict, sizeof conflict),
              OBX_ENOTFOUND);
    /* "default" is the configured key's tenant; bad names are refused */
    CHECK_INT(add(st, "default", "k", NULL, 0, OBX_TENANT_UPSERT, conflict, sizeof conflict),
              OBX_EINVAL);
    CHECK_INT(add(st, "a b", "k", NULL, 0, OBX_TENANT_UPSERT, conflict, sizeof conflict),
              OBX_EINVAL);
    CHECK_OK(obx_store_tenant_remove(st, "acme"));
    CHECK_INT(tenant_of("ch-a"), 0);
    CHECK_INT(testdb_int(db_path, "SELECT count(*) FROM tenant_channels"), 0);
    CHECK_INT(obx_store_tenant_remove(st, "acme"), OBX_ENOTFOUND);
end:
    obx_store_free(st);
    testdb_remove(db_path);
    TEST_END;
}

/* Rows inserted through plain SQL learn their tenant when the store links them. */
static int
test_plain_sql_rows(void)
{
    struct obx_store *st = fresh_store();
    struct obx_claimed c[4];
    int n = 0;
    char conflict[64];
    TEST_BEGIN;

    CHECK(st != NULL);
    CHECK_OK(add(st, "acme", "key-acme", "ch-a", 1, OBX_TENANT_CREATE, conflict, sizeof conflict));
    CHECK_INT(testdb_exec(db_path, "INSERT INTO outbox (channel_id, external_message_id,"
                                   " business_id, external_conversation_id, content, sender_type)"
                                   " VALUES ('ch-a', 'sql1', 'b', 'c', 'x', 'Consumer')"),
              SQLITE_OK);
    /* The default tenant's claim links the row but does not take it: it is acme's. */
    CHECK_OK(obx_store_claim(st, 4, 60000, c, &n));
    CHECK_INT(n, 0);
    CHECK_INT(tenant_of("ch-a"), 1);
    {
        struct obx_claim_cursor cur = {0};
        struct obx_claim_want w = {"acme", &cur, 4, 0};
        CHECK_OK(obx_store_claim_tenants(st, &w, 1, 60000, c, &n));
        CHECK_INT(n, 1);
        CHECK_INT(w.got, 1);
        CHECK_STR(c[0].tenant, "acme");
        CHECK_INT(c[0].readonly, 1);
        obx_store_claimed_release(&c[0]);
    }
end:
    obx_store_free(st);
    testdb_remove(db_path);
    TEST_END;
}

/* One claim serves several tenants, each its own share, in the order asked; the default
 * tenant gets only what no tenant owns. */
static int
test_claim_per_tenant(void)
{
    struct obx_store *st = fresh_store();
    struct obx_claimed c[16];
    struct obx_claim_cursor ca = {0}, cb = {0}, cd = {0};
    struct obx_claim_want w[3] = {{"a", &ca, 2, 0}, {"b", &cb, 5, 0}, {NULL, &cd, 5, 0}};
    char conflict[64], id[16];
    int n = 0;
    TEST_BEGIN;

    CHECK(st != NULL);
    CHECK_OK(add(st, "a", "key-a", "ch-a", 0, OBX_TENANT_CREATE, conflict, sizeof conflict));
    CHECK_OK(add(st, "b", "key-b", "ch-b", 0, OBX_TENANT_CREATE, conflict, sizeof conflict));
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof id, "m%d", i);
        CHECK_OK(put_msg(st, "ch-a", id));
        CHECK_OK(put_msg(st, "ch-b", id));
        CHECK_OK(put_msg(st, "ch-x", id));
    }
    CHECK_OK(obx_store_claim_tenants(st, w, 3, 60000, c, &n));
    CHECK_INT(n, 2 + 3 + 3);
    CHECK_INT(w[0].got, 2);
    CHECK_INT(w[1].got, 3);
    CHECK_INT(w[2].got, 3);
    for (int i = 0; i < n; i++) {
        const char *want_ch = i < 2 ? "ch-a" : i < 5 ? "ch-b" : "ch-x";
        CHECK_STR(c[i].msg.channel_id, want_ch);
        CHECK_INT(c[i].readonly, i < 5 ? 0 : -1);
        CHECK_STR(c[i].tenant, i < 2 ? "a" : i < 5 ? "b" : "");
    }
    for (int i = 0; i < n; i++)
        obx_store_claimed_release(&c[i]);
    /* A paused tenant's messages are held. */
    CHECK_INT(testdb_exec(db_path, "INSERT INTO pauses (scope, key, reason, by, paused_at_ms)"
                                   " VALUES ('tenant', 'a', 'test', 'cli', 0)"),
              SQLITE_OK);
    w[0].want = 5;
    CHECK_OK(obx_store_claim_tenants(st, w, 1, 60000, c, &n));
    CHECK_INT(n, 0);
end:
    obx_store_free(st);
    testdb_remove(db_path);
    TEST_END;
}

/* The key never leaves but through load; sealed, the row holds no trace of it, and it opens
 * only with the sealing key and under its own tenant's name. */
static int
test_key_write_only_and_sealed(void)
{
    struct obx_store *st = fresh_store();
    uint8_t sk[OBX_SECRETBOX_KEY_BYTES];
    struct obx_tenant_spec t = {.name = "acme", .api_key = "s3cret-key-123"};
    struct obx_tenant_conf *conf = NULL;
    size_t n = 0;
    int created = 0;
    char conflict[8];
    int64_t tenants = 0, clear = 0;
    TEST_BEGIN;

    CHECK(st != NULL);
    memset(sk, 7, sizeof sk);
    CHECK_OK(obx_store_tenant_put(st, &t, OBX_TENANT_CREATE, sk, &created, conflict,
                                  sizeof conflict));
    CHECK_INT(created, 1);
    CHECK_INT(testdb_int(db_path, "SELECT count(*) FROM tenants WHERE key_sealed = 1 AND"
                                  " instr(api_key, CAST('s3cret' AS BLOB)) = 0"),
              1);
    CHECK_OK(obx_store_tenant_count(st, &tenants, &clear));
    CHECK_INT(tenants, 1);
    CHECK_INT(clear, 0);
    CHECK_OK(obx_store_tenant_load(st, sk, &conf, &n));
    CHECK_INT(n, 1);
    CHECK_STR(conf[0].api_key, "s3cret-key-123");
    obx_store_tenant_conf_free(conf, n);
    conf = NULL;
    /* without the sealing key, or with another one: no key, and a reason */
    CHECK_OK(obx_store_tenant_load(st, NULL, &conf, &n));
    CHECK(conf[0].api_key == NULL && conf[0].key_error != NULL);
    obx_store_tenant_conf_free(conf, n);
    conf = NULL;
    sk[0] ^= 1;
    CHECK_OK(obx_store_tenant_load(st, sk, &conf, &n));
    CHECK(conf[0].api_key == NULL && conf[0].key_error != NULL);
    obx_store_tenant_conf_free(conf, n);
    conf = NULL;
    /* a sealed key copied onto another tenant's row does not open there */
    sk[0] ^= 1;
    CHECK_INT(testdb_exec(db_path, "INSERT INTO tenants SELECT 'evil', api_key, 1,"
                                   " key_fingerprint, NULL, NULL, NULL, 0, 0 FROM tenants"),
              SQLITE_OK);
    CHECK_OK(obx_store_tenant_load(st, sk, &conf, &n));
    CHECK_INT(n, 2);
    CHECK_STR(conf[0].name, "acme");
    CHECK(conf[0].api_key != NULL);
    CHECK(conf[1].api_key == NULL);
end:
    obx_store_tenant_conf_free(conf, n);
    obx_store_free(st);
    testdb_remove(db_path);
    TEST_END;
}

static const struct test_case tests[] = {
    {"channel_changes_hands", test_channel_changes_hands},
    {"plain_sql_rows", test_plain_sql_rows},
    {"claim_per_tenant", test_claim_per_tenant},
    {"key_write_only_and_sealed", test_key_write_only_and_sealed},
    {NULL, NULL},
};

TEST_MAIN(tests)
