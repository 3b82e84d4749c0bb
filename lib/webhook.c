/* webhook: verify, store once, then answer. See webhook.h for the order of checks. */
#include "webhook.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <openssl/crypto.h>
#include <string.h>
#include <strings.h>

#include "err.h"
#include "httpd.h"
#include "log.h"
#include "mem.h"
#include "signature.h"

#define OBX_MODULE "webhook"

#define SIGNATURE_HEADER "X-Partoo-Signature-v1"
#define MAX_GROUP 5000

/* A verified event waiting for the group commit. */
struct pending_event {
    struct evhttp_request *req;
    char *body;
    size_t len;
    char sha[65];
};

struct obx_webhook {
    struct event_base *base;
    struct obx_store *st;
    const struct obx_config *cfg;
    struct obx_verifier *verifier;
    struct evhttp *http;
    int port;
    void (*stored)(void *ctx);
    void *stored_ctx;
    struct event *commit_ev;
    struct pending_event *pending;
    size_t npending, cap;
    int last_write_failed;
    struct obx_webhook_stats stats;
};

/* The configured key, or Partoo's production/sandbox key chosen by the base URL. */
static enum obx_err
load_verifier(const struct obx_config *cfg, struct obx_verifier **out)
{
    if (cfg->webhook_public_key_file)
        return obx_verifier_from_file(cfg->webhook_public_key_file, out);
    if (cfg->webhook_public_key)
        return obx_verifier_new(cfg->webhook_public_key, out);
    return obx_verifier_new(strstr(cfg->partoo_base_url, "sandbox") ? OBX_PARTOO_SANDBOX_KEY_HEX
                                                                     : OBX_PARTOO_PROD_KEY_HEX,
                            out);
}

/* Constant-time string equality (lengths may leak; contents do not). */
static int
secret_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);

    return la == lb && CRYPTO_memcmp(a, b, la) == 0;
}

/* /webhooks/partoo, or /webhooks/partoo/<secret> when a path secret is configured. */
static int
path_ok(struct obx_webhook *wh, struct evhttp_request *req)
{
    char *seg[4] = {0};
    int n = obx_httpd_path_segments(req, seg, 4), ok;
    const char *secret = wh->cfg->webhook_path_secret;

    ok = n >= 2 && strcmp(seg[0], "webhooks") == 0 && strcmp(seg[1], "partoo") == 0 &&
         (secret ? (n == 3 && secret_equal(seg[2], secret)) : n == 2);
    if (n > 0)
        obx_httpd_free_segments(seg, n);
    return ok;
}

/* The optional second factor: webhook_required_header = "X-Name: value". */
static int
header_ok(struct obx_webhook *wh, struct evhttp_request *req)
{
    const char *spec = wh->cfg->webhook_required_header, *colon, *got;
    char name[128];
    size_t len;

    if (!spec)
        return 1;
    colon = strchr(spec, ':');
    len = colon ? (size_t)(colon - spec) : 0;
    if (!colon || len == 0 || len >= sizeof name)
        return 0;
    memcpy(name, spec, len);
    name[len] = '\0';
    for (colon++; *colon == ' '; colon++)
        ;
    got = evhttp_find_header(evhttp_request_get_input_headers(req), name);
    return got && secret_equal(got, colon);
}

static void
reply_ok(struct evhttp_request *req)
{
    struct obx_buf b;

    obx_buf_init(&b, 64);
    if (obx_buf_puts(&b, "{\"status\":\"ok\"}") == OBX_OK)
        obx_httpd_reply_json(req, 200, &b);
    else
        evhttp_send_reply(req, 200, NULL, NULL);
    obx_buf_release(&b);
}

static const char SQL_STORE_EVENT[] =
    "INSERT INTO webhook_events (body_sha256, received_at_ms, body) VALUES (?1, ?2, ?3)"
    " ON CONFLICT (body_sha256) DO NOTHING";

static enum obx_err
store_all(struct obx_webhook *wh, int64_t *stored)
{
    sqlite3_stmt *s = obx_db_stmt(wh->st->db, SQL_STORE_EVENT);
    int64_t now_ms = obx_now_ms(wh->st->clock);
    enum obx_err err;

    *stored = 0;
    if (!s)
        return OBX_EDB;
    err = obx_db_begin(wh->st->db);
    for (size_t i = 0; err == OBX_OK && i < wh->npending; i++) {
        struct pending_event *e = &wh->pending[i];
        obx_db_bind_text(s, 1, e->sha);
        sqlite3_bind_int64(s, 2, now_ms);
        sqlite3_bind_blob(s, 3, e->body, (int)e->len, SQLITE_STATIC);
        err = obx_db_step_done(s);
        if (err == OBX_OK)
            *stored += sqlite3_changes(wh->st->db->h);
    }
    if (err == OBX_OK)
        return obx_db_commit(wh->st->db);
    obx_db_rollback(wh->st->db);
    *stored = 0;
    return err;
}

static void
on_commit(evutil_socket_t fd, short what, void *arg)
{
    struct obx_webhook *wh = arg;
    int64_t stored = 0;
    enum obx_err err;

    (void)fd;
    (void)what;
    /* Partoo waits for this answer: give another process's lock a second to clear. */
    obx_store_set_busy_timeout(wh->st, 1000);
    err = store_all(wh, &stored);
    if (err != OBX_OK && !wh->last_write_failed)
        obx_log(OBX_LOG_ERROR, "cannot store webhook events; answering 503 so Partoo retries",
                OBX_KS("error", obx_strerror(err)));
    wh->last_write_failed = err != OBX_OK;
    for (size_t i = 0; i < wh->npending; i++) {
        struct pending_event *e = &wh->pending[i];
        if (err == OBX_OK) {
            reply_ok(e->req);
        } else {
            wh->stats.write_failures++;
            evhttp_add_header(evhttp_request_get_output_headers(e->req), "Retry-After", "1");
            obx_httpd_error(e->req, 503, "unavailable", obx_strerror(err), NULL);
        }
        obx_free(e->body);
    }
    if (err == OBX_OK) {
        wh->stats.stored += stored;
        wh->stats.duplicates += (int64_t)wh->npending - stored;
    }
    wh->npending = 0;
    if (err == OBX_OK && stored && wh->stored)
        wh->stored(wh->stored_ctx);
}

static int grow_pending(struct obx_webhook *wh);

/* Adds a verified event to the group; -1 (nothing kept) when memory runs out. */
static int
queue_event(struct obx_webhook *wh, struct evhttp_request *req, char *body, size_t len)
{
    struct timeval now = {0, 0};
    struct pending_event *e;

    if (wh->npending < wh->cap || grow_pending(wh) == 0)
        e = &wh->pending[wh->npending];
    else
        return -1;
    if (obx_sha256_hex(body, len, e->sha) != OBX_OK)
        return -1;
    wh->npending++;
    e->req = req;
    e->body = body; /* now owned by the pending event */
    e->len = len;
    if (wh->npending >= MAX_GROUP)
        event_active(wh->commit_ev, EV_TIMEOUT, 1);
    else if (!evtimer_pending(wh->commit_ev, NULL))
        evtimer_add(wh->commit_ev, &now);
    return 0;
}

static int
grow_pending(struct obx_webhook *wh)
{
    size_t ncap = wh->cap ? wh->cap * 2 : 64;
    struct pending_event *p = obx_realloc(wh->pending, ncap * sizeof *p);

    if (!p)
        return -1;
    wh->pending = p;
    wh->cap = ncap;
    return 0;
}

/* Rejections are answered without detail: a forger learns nothing. */
static void
reject(struct obx_webhook *wh, struct evhttp_request *req, int status, const char *code,
       const char *why)
{
    if (status == 401 && strcmp(code, "bad_signature") == 0)
        wh->stats.rejected_signature++;
    else
        wh->stats.rejected_other++;
    obx_log(OBX_LOG_WARN, "webhook rejected", OBX_KI("status", status), OBX_KS("reason", why));
    obx_httpd_error(req, status, code, why, NULL);
}

/* Checks everything that can be checked before storing; returns 0 or replies and -1. */
static int
admit(struct obx_webhook *wh, struct evhttp_request *req)
{
    if (!path_ok(wh, req))
        reject(wh, req, 404, "not_found", "no such route");
    else if (evhttp_request_get_command(req) != EVHTTP_REQ_POST)
        reject(wh, req, 405, "method_not_allowed", "only POST is accepted");
    else if (!header_ok(wh, req))
        reject(wh, req, 401, "unauthorized", "required header missing or wrong");
    else
        return 0;
    return -1;
}

static void
on_request(struct evhttp_request *req, void *arg)
{
    struct obx_webhook *wh = arg;
    const char *sig;
    char *body = NULL;
    size_t len = 0;
    enum obx_err err;

    wh->stats.received++;
    if (admit(wh, req) != 0)
        return;
    err = obx_httpd_body(req, (size_t)wh->cfg->max_body_bytes, &body, &len);
    if (err == OBX_ETOOBIG) {
        reject(wh, req, 413, "too_large", "the body exceeds max_body_bytes");
        return;
    }
    sig = evhttp_find_header(evhttp_request_get_input_headers(req), SIGNATURE_HEADER);
    if (err == OBX_OK && (!sig || !obx_verifier_check(wh->verifier, body, len, sig))) {
        obx_free(body);
        reject(wh, req, 401, "bad_signature", "missing or invalid signature");
        return;
    }
    if (err != OBX_OK || queue_event(wh, req, body, len) != 0) {
        obx_free(body);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        obx_httpd_error(req, 503, "unavailable", "out of memory", NULL);
    }
}

enum obx_err
obx_webhook_new(struct event_base *base, struct obx_store *st, const struct obx_config *cfg,
                void (*stored)(void *ctx), void *ctx, struct obx_webhook **out)
{
    struct obx_webhook *wh;
    enum obx_err err;

    *out = NULL;
    wh = obx_calloc(1, sizeof *wh);
    if (!wh)
        return OBX_ENOMEM;
    wh->base = base;
    wh->st = st;
    wh->cfg = cfg;
    wh->stored = stored;
    wh->stored_ctx = ctx;
    err = load_verifier(cfg, &wh->verifier);
    if (err != OBX_OK) {
        obx_log(OBX_LOG_ERROR, "unusable webhook public key (webhook_public_key or "
                               "webhook_public_key_file)", OBX_KS("error", obx_strerror(err)));
        obx_webhook_free(wh);
        return OBX_ECONFIG;
    }
    wh->commit_ev = evtimer_new(base, on_commit, wh);
    err = wh->commit_ev ? obx_httpd_listen(base, cfg->webhook_listen,
                                           (size_t)cfg->max_body_bytes, &wh->http, &wh->port)
                        : OBX_ENOMEM;
    if (err != OBX_OK) {
        obx_log(OBX_LOG_ERROR, "cannot listen for webhooks",
                OBX_KS("webhook_listen", cfg->webhook_listen), OBX_KS("error", obx_strerror(err)));
        obx_webhook_free(wh);
        return err;
    }
    evhttp_set_gencb(wh->http, on_request, wh);
    *out = wh;
    return OBX_OK;
}

void
obx_webhook_free(struct obx_webhook *wh)
{
    if (!wh)
        return;
    for (size_t i = 0; i < wh->npending; i++) {
        obx_httpd_error(wh->pending[i].req, 503, "unavailable", "shutting down", NULL);
        obx_free(wh->pending[i].body);
    }
    obx_free(wh->pending);
    if (wh->http)
        evhttp_free(wh->http);
    if (wh->commit_ev)
        event_free(wh->commit_ev);
    obx_verifier_free(wh->verifier);
    obx_free(wh);
}

void
obx_webhook_reload(struct obx_webhook *wh, const struct obx_config *cfg)
{
    struct obx_verifier *v = NULL;

    if (load_verifier(cfg, &v) != OBX_OK) {
        obx_log(OBX_LOG_ERROR, "reloaded webhook public key is unusable; keeping the old one");
    } else {
        obx_verifier_free(wh->verifier);
        wh->verifier = v;
    }
    wh->cfg = cfg;
}

int
obx_webhook_port(const struct obx_webhook *wh)
{
    return wh->port;
}

void
obx_webhook_stats(const struct obx_webhook *wh, struct obx_webhook_stats *out)
{
    *out = wh->stats;
}
