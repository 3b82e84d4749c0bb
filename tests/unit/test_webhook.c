/*
 * Unit tests of webhook, driven through a real listener on 127.0.0.1 (port 0) with the
 * store thread behind it: the order of checks (path 404, method 405, required header 401,
 * size 413, signature 401) with nothing stored on a rejection; a signed event stored once
 * and answered 200, a byte-identical one counted as a duplicate; events interpreted in
 * the storing transaction (a reply lands in the inbox, a non-JSON body is kept as
 * unparsable); a write failure answered 503 with Retry-After; key reload; an unusable key
 * and a failed allocation at each step of obx_webhook_new end cleanly (ASan: no leak).
 */
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "log.h"
#include "loop_http.h"
#include "mem.h"
#include "signature.h"
#include "store_queue.h"
#include "webhook.h"
#include "testdb.h"

static char path[256];

/* RFC 8032 7.1 TEST 1 seed (the integration tests' mock signs with it too) and another. */
static const unsigned char SEED[32] = {
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
    0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60};
static const unsigned char SEED2[32] = {
    0x4c, 0xcd, 0x08, 0x9b, 0x28, 0xff, 0x96, 0xda, 0x9d, 0xb6, 0xc3, 0x46, 0xec, 0x11, 0x4e, 0x0f,
    0x5b, 0x8a, 0x31, 0x9f, 0x35, 0xab, 0xa6, 0x24, 0xda, 0x8c, 0xf6, 0xed, 0x4f, 0xb8, 0xa6, 0xfb};

#define REPLY_EVENT                                                                          \
    "{\"type\":\"message_created\",\"payload\":{\"message\":{\"id\":424242,"                 \
    "\"sender_type\":\"User\",\"sender_label\":\"Jane\",\"content_type\":\"TEXT\","          \
    "\"content\":\"hello\",\"date\":\"2026-11-24 09:15:02+00:00\",\"custom_channel\":null}," \
    "\"conversation\":{\"id\":77,\"business\":{\"id\":5},\"custom_channel\":{\"id\":\"ch\"," \
    "\"is_readonly\":false,\"external_conversation_id\":\"conv-42\"}}}}"

/* Base64 Ed25519 signature of body under seed into out[89]; 0 on success. */
static int
sign(const unsigned char seed[32], const char *body, size_t len, char out[89])
{
    EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char sig[64];
    size_t siglen = sizeof sig;
    int ok = k && md && EVP_DigestSignInit(md, NULL, NULL, NULL, k) == 1 &&
             EVP_DigestSign(md, sig, &siglen, (const unsigned char *)body, len) == 1;

    if (ok)
        EVP_EncodeBlock((unsigned char *)out, sig, 64);
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(k);
    return ok ? 0 : -1;
}

static void
public_hex(const unsigned char seed[32], char out[65])
{
    EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
    unsigned char pub[32];
    size_t n = sizeof pub;

    out[0] = '\0';
    if (k && EVP_PKEY_get_raw_public_key(k, pub, &n) == 1)
        for (int i = 0; i < 32; i++)
            snprintf(out + 2 * i, 3, "%02x", pub[i]);
    EVP_PKEY_free(k);
}

/* What the stored callback saw. */
struct seen {
    int calls;
    struct obx_reconcile_result r; /* summed */
    int leftover;
};

static void
on_stored(void *ctx, const struct obx_reconcile_result *r, int leftover)
{
    struct seen *s = ctx;

    s->calls++;
    s->r.processed += r->processed;
    s->r.replies += r->replies;
    s->r.unparsable += r->unparsable;
    s->r.ignored += r->ignored;
    s->leftover |= leftover;
}

/* A listener on a fresh database, with its store thread. */
struct fixture {
    struct event_base *base;
    struct obx_storeq *q;
    struct obx_config cfg;
    int cfg_ok;
    struct obx_webhook *wh;
    int port;
    struct seen seen;
};

static int
fixture_config(struct fixture *f, const char *const *kv)
{
    char pub[65];

    public_hex(SEED, pub);
    if (obx_config_init(&f->cfg) != OBX_OK)
        return -1;
    f->cfg_ok = 1;
    if (obx_config_set(&f->cfg, "webhook_listen", "127.0.0.1:0", OBX_SRC_FLAG, NULL) != OBX_OK ||
        obx_config_set(&f->cfg, "webhook_public_key", pub, OBX_SRC_FLAG, NULL) != OBX_OK)
        return -1;
    for (int i = 0; kv && kv[i]; i += 2)
        if (obx_config_set(&f->cfg, kv[i], kv[i + 1], OBX_SRC_FLAG, NULL) != OBX_OK)
            return -1;
    return 0;
}

static int
fixture_start(struct fixture *f, const char *const *kv)
{
    struct obx_store *st = NULL;

    memset(f, 0, sizeof *f);
    testdb_remove(path);
    if (fixture_config(f, kv) != 0)
        return -1;
    f->base = event_base_new();
    if (!f->base || obx_store_open(path, NULL, &st) != OBX_OK)
        return -1;
    if (obx_storeq_new(f->base, st, &f->q) != OBX_OK) {
        obx_store_free(st);
        return -1;
    }
    if (obx_webhook_new(f->base, f->q, &f->cfg, 0, on_stored, &f->seen, &f->wh) != OBX_OK)
        return -1;
    f->port = obx_webhook_port(f->wh);
    return f->port > 0 ? 0 : -1;
}

static void
fixture_stop(struct fixture *f)
{
    if (f->q)
        obx_storeq_drain(f->q);
    obx_webhook_free(f->wh);
    obx_storeq_free(f->q);
    if (f->base)
        event_base_free(f->base);
    if (f->cfg_ok)
        obx_config_release(&f->cfg);
    testdb_remove(path);
}

/* POSTs body to path, signed with seed (NULL: unsigned); extra headers appended. */
static int
post(struct fixture *f, const char *p, const unsigned char *seed, const char *body,
     const char *xname, const char *xvalue, struct http_reply *r)
{
    char sig[89];
    const char *h[8] = {"Content-Type", "application/json"};
    int i = 2;

    if (seed) {
        if (sign(seed, body, strlen(body), sig) != 0)
            return -1;
        h[i++] = "X-Partoo-Signature-v1";
        h[i++] = sig;
    }
    if (xname) {
        h[i++] = xname;
        h[i++] = xvalue;
    }
    h[i] = NULL;
    return http_call(f->base, f->port, EVHTTP_REQ_POST, p, h, body, strlen(body), r);
}

static int
test_signed_event_stored_once(void)
{
    struct fixture f;
    struct http_reply r = {0};
    struct obx_webhook_stats s;
    char sha[65], sql[200];
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, NULL));
    CHECK_INT(post(&f, "/webhooks/partoo", SEED, REPLY_EVENT, NULL, NULL, &r), 200);
    CHECK_STR(r.body, "{\"status\":\"ok\"}");
    CHECK(strstr(r.content_type, "application/json") != NULL);
    http_reply_release(&r);
    /* Committed before the 200: another connection sees the row, under its SHA-256. */
    CHECK_OK(obx_signature_sha256_hex(REPLY_EVENT, strlen(REPLY_EVENT), sha));
    snprintf(sql, sizeof sql, "SELECT count(*) FROM webhook_events WHERE body_sha256 = '%s'", sha);
    CHECK_INT(testdb_int(path, sql), 1);
    /* Interpreted in the same transaction: a user's reply is in the inbox. */
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM webhook_events WHERE outcome = 'reply' AND "
                               "processed_at_ms IS NOT NULL"),
              1);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM inbox WHERE partoo_message_id = '424242'"), 1);
    CHECK_INT(f.seen.calls, 1);
    CHECK_INT(f.seen.r.replies, 1);
    CHECK_INT(f.seen.leftover, 0);

    /* The same bytes again: 200, nothing new stored, no callback. */
    CHECK_INT(post(&f, "/webhooks/partoo", SEED, REPLY_EVENT, NULL, NULL, &r), 200);
    http_reply_release(&r);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM webhook_events"), 1);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM inbox"), 1);
    CHECK_INT(f.seen.calls, 1);
    obx_webhook_stats(f.wh, &s);
    CHECK_INT(s.received, 2);
    CHECK_INT(s.stored, 1);
    CHECK_INT(s.duplicates, 1);
    CHECK_INT(s.rejected_signature + s.rejected_other + s.rejected_too_large, 0);
end:
    http_reply_release(&r);
    fixture_stop(&f);
    TEST_END;
}

static int
test_unparsable_and_other_events_are_kept(void)
{
    struct fixture f;
    struct http_reply r = {0};
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, NULL));
    CHECK_INT(post(&f, "/webhooks/partoo", SEED, "this is not json", NULL, NULL, &r), 200);
    http_reply_release(&r);
    CHECK_INT(post(&f, "/webhooks/partoo", SEED, "{\"type\":\"conversation_closed\"}", NULL, NULL,
                   &r),
              200);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM webhook_events"), 2);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM webhook_events WHERE outcome = 'unparsable'"),
              1);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM webhook_events WHERE outcome = 'ignored' AND "
                               "event_type = 'conversation_closed'"),
              1);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM inbox"), 0);
    CHECK_INT(f.seen.calls, 2);
    CHECK_INT(f.seen.r.unparsable, 1);
    CHECK_INT(f.seen.r.ignored, 1);
end:
    http_reply_release(&r);
    fixture_stop(&f);
    TEST_END;
}

/* Each rejection answers its status and code, stores nothing and is counted. */
static int
test_rejections_store_nothing(void)
{
    static const char *const kv[] = {"webhook_max_body_bytes", "1024", NULL};
    struct fixture f;
    struct http_reply r = {0};
    struct obx_webhook_stats s;
    char big[2048];
    char sig[89];
    const char *h[] = {"X-Partoo-Signature-v1", sig, NULL};
    TEST_BEGIN;

    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK_OK(fixture_start(&f, kv));
    CHECK_INT(post(&f, "/webhooks/other", SEED, REPLY_EVENT, NULL, NULL, &r), 404);
    CHECK(strstr(r.body, "\"code\":\"not_found\"") != NULL);
    http_reply_release(&r);
    CHECK_INT(post(&f, "/webhooks/partoo/extra", SEED, REPLY_EVENT, NULL, NULL, &r), 404);
    http_reply_release(&r);
    CHECK_OK(sign(SEED, "", 0, sig));
    CHECK_INT(http_call(f.base, f.port, EVHTTP_REQ_GET, "/webhooks/partoo", h, NULL, 0, &r), 405);
    CHECK(strstr(r.body, "\"code\":\"method_not_allowed\"") != NULL);
    http_reply_release(&r);
    CHECK_INT(post(&f, "/webhooks/partoo", NULL, REPLY_EVENT, NULL, NULL, &r), 401);
    CHECK(strstr(r.body, "\"code\":\"bad_signature\"") != NULL);
    http_reply_release(&r);
    /* Signed by another key. */
    CHECK_INT(post(&f, "/webhooks/partoo", SEED2, REPLY_EVENT, NULL, NULL, &r), 401);
    CHECK(strstr(r.body, "\"code\":\"bad_signature\"") != NULL);
    http_reply_release(&r);
    /* A signature of other bytes. */
    CHECK_OK(sign(SEED, "{}", 2, sig));
    CHECK_INT(http_call(f.base, f.port, EVHTTP_REQ_POST, "/webhooks/partoo", h, REPLY_EVENT,
                        strlen(REPLY_EVENT), &r),
              401);
    http_reply_release(&r);
    /* A garbage signature header. */
    snprintf(sig, sizeof sig, "%s", "not base64 at all!");
    CHECK_INT(http_call(f.base, f.port, EVHTTP_REQ_POST, "/webhooks/partoo", h, REPLY_EVENT,
                        strlen(REPLY_EVENT), &r),
              401);
    http_reply_release(&r);
    /* Over webhook_max_body_bytes, although correctly signed. */
    CHECK_INT(post(&f, "/webhooks/partoo", SEED, big, NULL, NULL, &r), 413);
    CHECK(strstr(r.body, "webhook_max_body_bytes") != NULL);
    http_reply_release(&r);

    CHECK_INT(testdb_int(path, "SELECT count(*) FROM webhook_events"), 0);
    CHECK_INT(f.seen.calls, 0);
    obx_webhook_stats(f.wh, &s);
    CHECK_INT(s.stored, 0);
    CHECK_INT(s.rejected_signature, 4);
    CHECK_INT(s.rejected_too_large, 1);
    CHECK_INT(s.rejected_other, 3);
end:
    http_reply_release(&r);
    fixture_stop(&f);
    TEST_END;
}

/* webhook_path_secret and webhook_required_header are checked before the signature. */
static int
test_path_secret_and_required_header(void)
{
    static const char *const kv[] = {"webhook_path_secret", "s3cr3t-path",
                                     "webhook_required_header", "X-Proxy-Auth: letmein", NULL};
    struct fixture f;
    struct http_reply r = {0};
    struct obx_webhook_stats s;
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, kv));
    CHECK_INT(post(&f, "/webhooks/partoo", SEED, REPLY_EVENT, "X-Proxy-Auth", "letmein", &r), 404);
    http_reply_release(&r);
    CHECK_INT(post(&f, "/webhooks/partoo/s3cr3t-patH", SEED, REPLY_EVENT, "X-Proxy-Auth", "letmein",
                   &r),
              404);
    http_reply_release(&r);
    CHECK_INT(post(&f, "/webhooks/partoo/s3cr3t-pat", SEED, REPLY_EVENT, "X-Proxy-Auth", "letmein",
                   &r),
              404);
    http_reply_release(&r);
    CHECK_INT(post(&f, "/webhooks/partoo/s3cr3t-path", SEED, REPLY_EVENT, NULL, NULL, &r), 401);
    CHECK(strstr(r.body, "\"code\":\"unauthorized\"") != NULL);
    http_reply_release(&r);
    CHECK_INT(post(&f, "/webhooks/partoo/s3cr3t-path", SEED, REPLY_EVENT, "X-Proxy-Auth",
                   "letmeout", &r),
              401);
    http_reply_release(&r);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM webhook_events"), 0);
    CHECK_INT(post(&f, "/webhooks/partoo/s3cr3t-path", SEED, REPLY_EVENT, "X-Proxy-Auth", "letmein",
                   &r),
              200);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM webhook_events"), 1);
    obx_webhook_stats(f.wh, &s);
    CHECK_INT(s.rejected_other, 5);
    CHECK_INT(s.stored, 1);
end:
    http_reply_release(&r);
    fixture_stop(&f);
    TEST_END;
}

/*
 * An older event still waits for interpretation: a new one is stored (and answered 200)
 * but not interpreted ahead of it; the callback says work is left for obx_reconcile_run.
 */
static int
test_backlog_keeps_the_order(void)
{
    struct fixture f;
    struct http_reply r = {0};
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, NULL));
    CHECK_INT(testdb_exec(path, "INSERT INTO webhook_events (body_sha256, received_at_ms, body) "
                                "VALUES ('older', 1, '{}')"),
              SQLITE_OK);
    CHECK_INT(post(&f, "/webhooks/partoo", SEED, REPLY_EVENT, NULL, NULL, &r), 200);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM webhook_events WHERE processed_at_ms IS NULL"),
              2);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM inbox"), 0);
    CHECK_INT(f.seen.calls, 1);
    CHECK_INT(f.seen.leftover, 1);
    CHECK_INT(f.seen.r.processed + f.seen.r.replies, 0);
end:
    http_reply_release(&r);
    fixture_stop(&f);
    TEST_END;
}

/* A failed write answers 503 with Retry-After (Partoo retries); nothing is half stored. */
static int
test_write_failure_answers_503(void)
{
    struct fixture f;
    struct http_reply r = {0};
    struct obx_webhook_stats s;
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, NULL));
    /* The store thread's connection re-prepares and fails: no such table. */
    CHECK_INT(testdb_exec(path, "ALTER TABLE webhook_events RENAME TO webhook_events_gone"),
              SQLITE_OK);
    CHECK_INT(post(&f, "/webhooks/partoo", SEED, REPLY_EVENT, NULL, NULL, &r), 503);
    CHECK_STR(r.retry_after, "1");
    CHECK(strstr(r.body, "\"code\":\"unavailable\"") != NULL);
    http_reply_release(&r);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM webhook_events_gone"), 0);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM inbox"), 0);
    obx_webhook_stats(f.wh, &s);
    CHECK_INT(s.write_failures, 1);
    CHECK_INT(s.stored, 0);
    CHECK_INT(f.seen.calls, 0);
    /* Back to normal: Partoo's retry is stored. */
    CHECK_INT(testdb_exec(path, "ALTER TABLE webhook_events_gone RENAME TO webhook_events"),
              SQLITE_OK);
    CHECK_INT(post(&f, "/webhooks/partoo", SEED, REPLY_EVENT, NULL, NULL, &r), 200);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM webhook_events"), 1);
end:
    http_reply_release(&r);
    fixture_stop(&f);
    TEST_END;
}

/* A reload swaps the key; an unusable new key keeps the old one. */
static int
test_reload_swaps_key(void)
{
    struct fixture f;
    struct obx_config bad, other;
    int bad_ok = 0, other_ok = 0;
    struct http_reply r = {0};
    char pub2[65];
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, NULL));
    CHECK_OK(obx_config_init(&bad));
    bad_ok = 1;
    CHECK_OK(obx_config_set(&bad, "webhook_listen", "127.0.0.1:0", OBX_SRC_FLAG, NULL));
    CHECK_OK(obx_config_set(&bad, "webhook_public_key_file", "/nonexistent/key.pem", OBX_SRC_FLAG,
                            NULL));
    obx_webhook_reload(f.wh, &bad);
    CHECK_INT(post(&f, "/webhooks/partoo", SEED, "{\"n\":1}", NULL, NULL, &r), 200);
    http_reply_release(&r);

    public_hex(SEED2, pub2);
    CHECK_OK(obx_config_init(&other));
    other_ok = 1;
    CHECK_OK(obx_config_set(&other, "webhook_listen", "127.0.0.1:0", OBX_SRC_FLAG, NULL));
    CHECK_OK(obx_config_set(&other, "webhook_public_key", pub2, OBX_SRC_FLAG, NULL));
    obx_webhook_reload(f.wh, &other);
    CHECK_INT(post(&f, "/webhooks/partoo", SEED, "{\"n\":2}", NULL, NULL, &r), 401);
    http_reply_release(&r);
    CHECK_INT(post(&f, "/webhooks/partoo", SEED2, "{\"n\":3}", NULL, NULL, &r), 200);
    http_reply_release(&r);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM webhook_events"), 2);
end:
    http_reply_release(&r);
    fixture_stop(&f); /* before the configs it borrows go */
    if (bad_ok)
        obx_config_release(&bad);
    if (other_ok)
        obx_config_release(&other);
    TEST_END;
}

/*
 * A failed allocation at each step of a request: the answer is 200 exactly when the
 * event was stored, else 503 with Retry-After (Partoo retries), and nothing leaks.
 */
static int
test_request_allocation_failures(void)
{
    struct fixture f;
    struct http_reply r = {0};
    char body[64], sql[200], sha[65];
    int ok = 0, unavailable = 0;
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, NULL));
    for (long n = 0; n < 40; n++) {
        snprintf(body, sizeof body, "{\"type\":\"other\",\"n\":%ld}", n);
        obx_mem_fail_after(n);
        int status = post(&f, "/webhooks/partoo", SEED, body, NULL, NULL, &r);
        obx_mem_fail_after(-1);
        CHECK_OK(obx_signature_sha256_hex(body, strlen(body), sha));
        snprintf(sql, sizeof sql, "SELECT count(*) FROM webhook_events WHERE body_sha256 = '%s'",
                 sha);
        if (status == 200) {
            ok++;
            CHECK_INT(testdb_int(path, sql), 1);
        } else {
            unavailable++;
            CHECK_INT(status, 503);
            CHECK_STR(r.retry_after, "1");
            CHECK_INT(testdb_int(path, sql), 0);
        }
        http_reply_release(&r);
    }
    CHECK(unavailable > 0);
    CHECK(ok > 0);
end:
    obx_mem_fail_after(-1);
    http_reply_release(&r);
    fixture_stop(&f);
    TEST_END;
}

/* An unusable key or listen address, or a failed allocation: an error, nothing held. */
static int
test_new_fails_cleanly(void)
{
    struct fixture f;
    struct obx_webhook *wh = NULL;
    enum obx_err err = OBX_ENOMEM;
    int failures = 0;
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, NULL));
    obx_webhook_free(f.wh);
    f.wh = NULL;
    /* The key file wins over webhook_public_key; this one cannot be read. */
    CHECK_OK(obx_config_set(&f.cfg, "webhook_public_key_file", "/nonexistent/key.pem", OBX_SRC_FLAG,
                            NULL));
    CHECK_INT(obx_webhook_new(f.base, f.q, &f.cfg, 0, NULL, NULL, &wh), OBX_ECONFIG);
    CHECK(wh == NULL);
    obx_free(f.cfg.webhook_public_key_file);
    f.cfg.webhook_public_key_file = NULL;
    CHECK_OK(obx_config_set(&f.cfg, "webhook_listen", "192.0.2.1:1", OBX_SRC_FLAG, NULL));
    CHECK(obx_webhook_new(f.base, f.q, &f.cfg, 0, NULL, NULL, &wh) != OBX_OK);
    CHECK(wh == NULL);
    CHECK_OK(obx_config_set(&f.cfg, "webhook_listen", "127.0.0.1:0", OBX_SRC_FLAG, NULL));
    for (long n = 0; n < 200 && err != OBX_OK; n++) {
        obx_mem_fail_after(n);
        err = obx_webhook_new(f.base, f.q, &f.cfg, 0, NULL, NULL, &wh);
        obx_mem_fail_after(-1);
        if (err != OBX_OK) {
            CHECK(wh == NULL);
            failures++;
        }
    }
    CHECK_OK(err);
    CHECK(failures > 0);
    CHECK(obx_webhook_port(wh) > 0);
end:
    obx_mem_fail_after(-1);
    obx_webhook_free(wh);
    fixture_stop(&f);
    TEST_END;
}

int
main(int argc, char **argv)
{
    static const struct test_case tests[] = {
        {"signed_event_stored_once", test_signed_event_stored_once},
        {"unparsable_and_other_events_are_kept", test_unparsable_and_other_events_are_kept},
        {"rejections_store_nothing", test_rejections_store_nothing},
        {"path_secret_and_required_header", test_path_secret_and_required_header},
        {"backlog_keeps_the_order", test_backlog_keeps_the_order},
        {"write_failure_answers_503", test_write_failure_answers_503},
        {"reload_swaps_key", test_reload_swaps_key},
        {"request_allocation_failures", test_request_allocation_failures},
        {"new_fails_cleanly", test_new_fails_cleanly},
        {NULL, NULL},
    };

    obx_log_setup(OBX_LOG_ERROR, OBX_LOG_TEXT, stderr);
    snprintf(path, sizeof path, "/tmp/obx_test_webhook_%d.db", (int)getpid());
    return test_run_table(tests, argc, argv);
}
