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
#include "reconcile.h"
#include "signature.h"
#include "store_queue.h"
#include "store_tx.h"
#include "verify_pool.h"

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

/* The group being stored on the store thread (belongs to it while obx_webhook.storing). */
struct store_job {
    struct obx_storeq_job job;
    struct pending_event *events;
    size_t n, cap;
    const struct obx_config *cfg; /* this group's configuration (server.c keeps it alive) */
    int64_t now_ms;
    int64_t stored;                /* out: new (not duplicate) events */
    struct obx_reconcile_result r; /* out */
    int leftover;                  /* out */
};

struct obx_webhook {
    struct event_base *base;
    struct obx_storeq *q; /* the store thread: every write */
    const struct obx_config *cfg;
    struct obx_verify_pool *pool; /* owns the public key */
    int closing;                  /* set while freeing: verdicts still coming back get 503 */
    struct obx_httpd *http;
    int port;
    obx_webhook_stored_fn stored;
    void *stored_ctx;
    struct event *commit_ev;
    struct pending_event *pending; /* verified, waiting for the next group */
    size_t npending, cap;
    struct store_job sj;
    int storing;
    int last_write_failed;
    struct obx_webhook_stats stats;
};

/* The configured key, or Partoo's production/sandbox key chosen by the base URL. */
static enum obx_err
load_verifier(const struct obx_config *cfg, struct obx_verifier **out)
{
    if (cfg->webhook_public_key_file)
        return obx_signature_verifier_from_file(cfg->webhook_public_key_file, out);
    if (cfg->webhook_public_key)
        return obx_signature_verifier_new(cfg->webhook_public_key, out);
    return obx_signature_verifier_new(strstr(cfg->partoo_base_url, "sandbox")
                                          ? OBX_PARTOO_SANDBOX_KEY_HEX
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

/*
 * /webhooks/partoo, or /webhooks/partoo/<secret> when a path secret is configured: 1 when
 * it is, 0 when not, -1 when memory ran out (the caller answers 503 so Partoo sends the
 * event again; a 404 would lose it).
 */
static int
path_ok(struct obx_webhook *wh, struct evhttp_request *req)
{
    char *seg[4] = {0};
    int n = obx_httpd_path_segments(req, seg, 4), ok;
    const char *secret = wh->cfg->webhook_path_secret;

    if (n == OBX_HTTPD_PATH_NOMEM)
        return -1;
    ok = n >= 2 && strcmp(seg[0], "webhooks") == 0 && strcmp(seg[1], "partoo") == 0 &&
         (secret ? (n == 3 && secret_equal(seg[2], secret)) : n == 2);
    if (n > 0)
        obx_httpd_free_segments(seg, n);
    return ok;
}

/* The optional second factor: webhook_required_header = "X-Name: value" (split at load). */
static int
header_ok(struct obx_webhook *wh, struct evhttp_request *req)
{
    const char *got;

    if (!wh->cfg->webhook_header_name)
        return 1;
    got = evhttp_find_header(evhttp_request_get_input_headers(req), wh->cfg->webhook_header_name);
    return got && secret_equal(got, wh->cfg->webhook_header_value);
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

/* Inserts the group's events; the new ones (not duplicates) are listed in fresh[]. */
static enum obx_err
insert_events(struct obx_store *st, const struct store_job *j, struct obx_reconcile_event *fresh,
              size_t *nfresh)
{
    enum obx_err err = OBX_OK;
    int64_t id = 0;

    *nfresh = 0;
    for (size_t i = 0; err == OBX_OK && i < j->n; i++) {
        const struct pending_event *e = &j->events[i];
        err = obx_store_inbox_add_webhook_event(st, e->sha, e->body, e->len, j->now_ms, &id);
        if (err == OBX_OK && id) {
            fresh[*nfresh].id = id;
            fresh[*nfresh].body = e->body;
            fresh[*nfresh].len = e->len;
            (*nfresh)++;
        }
    }
    return err;
}

/*
 * Interprets the new events in the transaction that stores them, so a group
 * costs one commit, not two. Only when no older event is still waiting (events
 * are applied in the order they were stored), and at a savepoint of its own: should
 * interpretation fail, the events are committed all the same and
 * obx_reconcile_run tries them again later. *leftover says it has work.
 */
static enum obx_err
reconcile_inline(struct obx_store *st, const struct obx_config *cfg,
                 const struct obx_reconcile_event *fresh, size_t n, int backlog,
                 struct obx_reconcile_result *r, int *leftover)
{
    enum obx_err err;

    *leftover = 1;
    memset(r, 0, sizeof *r);
    if (backlog)
        return OBX_OK;
    err = obx_store_tx_begin(st); /* a savepoint in the group's transaction */
    if (err != OBX_OK)
        return err;
    err = obx_reconcile_events(st, cfg, fresh, n, r);
    *leftover = err != OBX_OK;
    if (err != OBX_OK) {
        obx_log(OBX_LOG_WARN, "webhook events stored; interpreting them later",
                OBX_KS("error", obx_strerror(err)));
        memset(r, 0, sizeof *r);
        /* Undoes this level only: the events stay. Returns err itself, which the group
         * must not see as its own failure. */
        if (obx_store_tx_end(st, err) != err)
            return OBX_EDB;
        return OBX_OK;
    }
    return obx_store_tx_end(st, OBX_OK);
}

/* Store thread: stores the group in the store thread's transaction. */
static enum obx_err
run_store(struct obx_store *st, void *arg)
{
    struct store_job *j = &((struct obx_webhook *)arg)->sj;
    struct obx_reconcile_event *fresh = obx_calloc(j->n ? j->n : 1, sizeof *fresh);
    size_t nfresh = 0;
    int backlog = 1;
    enum obx_err err = fresh ? OBX_OK : OBX_ENOMEM;

    j->stored = 0;
    j->leftover = 0;
    memset(&j->r, 0, sizeof j->r);
    /* Asked before inserting: the group's own events are not a backlog. */
    if (err == OBX_OK && obx_reconcile_has_backlog(st, &backlog) != OBX_OK)
        backlog = 1;
    if (err == OBX_OK)
        err = insert_events(st, j, fresh, &nfresh);
    if (err == OBX_OK && nfresh)
        err = reconcile_inline(st, j->cfg, fresh, nfresh, backlog, &j->r, &j->leftover);
    obx_free(fresh);
    if (err == OBX_OK)
        j->stored = (int64_t)nfresh;
    return err;
}

/* Loop thread: the group is committed (or not): answer Partoo. */
static void
on_stored(void *arg, enum obx_err err)
{
    struct obx_webhook *wh = arg;
    struct store_job *j = &wh->sj;

    wh->storing = 0;
    if (err != OBX_OK && !wh->last_write_failed)
        obx_log(OBX_LOG_ERROR, "cannot store webhook events; answering 503 so Partoo retries",
                OBX_KS("error", obx_strerror(err)));
    wh->last_write_failed = err != OBX_OK;
    for (size_t i = 0; i < j->n; i++) {
        struct pending_event *e = &j->events[i];
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
        wh->stats.stored += j->stored;
        wh->stats.duplicates += (int64_t)j->n - j->stored;
    }
    j->n = 0;
    if (err == OBX_OK && j->stored && wh->stored)
        wh->stored(wh->stored_ctx, &j->r, j->leftover);
    if (wh->npending) {
        struct timeval now = {0, 0};
        evtimer_add(wh->commit_ev, &now); /* what arrived meanwhile */
    }
}

/* Hands the waiting events to the store thread as one group; one group at a time. */
static void
on_commit(evutil_socket_t fd, short what, void *arg)
{
    struct obx_webhook *wh = arg;
    struct pending_event *spare = wh->sj.events;
    size_t spare_cap = wh->sj.cap;

    (void)fd;
    (void)what;
    if (wh->storing || !wh->npending)
        return;
    wh->sj.events = wh->pending;
    wh->sj.cap = wh->cap;
    wh->sj.n = wh->npending;
    wh->pending = spare; /* empty, keeps its capacity */
    wh->cap = spare_cap;
    wh->npending = 0;
    wh->sj.cfg = wh->cfg;
    wh->sj.now_ms = obx_now_ms(obx_clock_real());
    wh->sj.job.weight = (int64_t)wh->sj.n; /* a confirmation may end a message's place in line */
    wh->storing = 1;
    obx_storeq_submit(wh->q, &wh->sj.job);
}

static int grow_pending(struct obx_webhook *wh);

/*
 * Adds a verified event to the group, taking the body over from job; -1 (the
 * job keeps it) when memory runs out.
 */
static int
queue_event(struct obx_webhook *wh, struct obx_verify_job *job)
{
    struct timeval now = {0, 0};
    struct pending_event *e;

    if (wh->npending < wh->cap || grow_pending(wh) == 0)
        e = &wh->pending[wh->npending];
    else
        return -1;
    wh->npending++;
    e->req = job->ctx;
    e->body = job->body; /* now owned by the pending event */
    e->len = job->len;
    job->body = NULL;
    memcpy(e->sha, job->sha, sizeof e->sha);
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
    else if (status == 413)
        wh->stats.rejected_too_large++;
    else
        wh->stats.rejected_other++;
    obx_log(OBX_LOG_WARN, "webhook rejected", OBX_KI("status", status), OBX_KS("reason", why));
    obx_httpd_error(req, status, code, why, NULL);
}

static void reply_unavailable(struct evhttp_request *req, const char *why);

/* Checks everything that can be checked before storing; returns 0 or replies and -1. */
static int
admit(struct obx_webhook *wh, struct evhttp_request *req)
{
    int path = path_ok(wh, req);

    if (path < 0)
        reply_unavailable(req, "out of memory");
    else if (!path)
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
reply_unavailable(struct evhttp_request *req, const char *why)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
    obx_httpd_error(req, 503, "unavailable", why, NULL);
}

/* The verdict on one request, back on the loop thread (verify_pool.h). */
static void
on_verified(struct obx_verify_job *job, void *arg)
{
    struct obx_webhook *wh = arg;
    struct evhttp_request *req = job->ctx;

    if (wh->closing || job->verdict == OBX_VERIFY_CANCELLED)
        reply_unavailable(req, "shutting down");
    else if (job->verdict == OBX_VERIFY_FORGED)
        reject(wh, req, 401, "bad_signature", "missing or invalid signature");
    else if (job->verdict != OBX_VERIFY_VALID || queue_event(wh, job) != 0)
        reply_unavailable(req, "out of memory");
    obx_verify_pool_job_free(job);
}

static void
on_request(struct evhttp_request *req, void *arg)
{
    struct obx_webhook *wh = arg;
    struct obx_verify_job *job;
    const char *sig;
    enum obx_err err;

    wh->stats.received++;
    if (admit(wh, req) != 0)
        return;
    job = obx_calloc(1, sizeof *job);
    if (!job) {
        reply_unavailable(req, "out of memory");
        return;
    }
    job->ctx = req;
    err = obx_httpd_body(req, (size_t)wh->cfg->webhook_max_body_bytes, &job->body, &job->len);
    sig = evhttp_find_header(evhttp_request_get_input_headers(req), SIGNATURE_HEADER);
    if (err == OBX_OK && sig) {
        job->sig = obx_strdup(sig);
        if (!job->sig)
            err = OBX_ENOMEM;
    }
    if (err == OBX_ETOOBIG)
        reject(wh, req, 413, "too_large", "the body exceeds webhook_max_body_bytes");
    else if (err == OBX_OK && !sig)
        reject(wh, req, 401, "bad_signature", "missing or invalid signature");
    else if (err != OBX_OK)
        reply_unavailable(req, "out of memory");
    else {
        obx_httpd_hold(req);
        obx_verify_pool_submit(wh->pool, job); /* on_verified answers */
        return;
    }
    obx_verify_pool_job_free(job);
}

enum obx_err
obx_webhook_new(struct event_base *base, struct obx_storeq *q, const struct obx_config *cfg,
                size_t max_connections, obx_webhook_stored_fn stored, void *ctx,
                struct obx_webhook **out)
{
    struct obx_httpd_limits lim = {
        .max_body_bytes = (size_t)cfg->webhook_max_body_bytes,
        .body_limit_message = "the body exceeds webhook_max_body_bytes",
        .max_connections = max_connections,
        .body_budget_bytes = (size_t)cfg->http_body_budget,
    };
    struct obx_webhook *wh;
    struct obx_verifier *v = NULL;
    enum obx_err err;

    *out = NULL;
    wh = obx_calloc(1, sizeof *wh);
    if (!wh)
        return OBX_ENOMEM;
    wh->base = base;
    wh->q = q;
    wh->sj.job.run = run_store;
    wh->sj.job.done = on_stored;
    wh->sj.job.arg = wh;
    wh->cfg = cfg;
    wh->stored = stored;
    wh->stored_ctx = ctx;
    err = load_verifier(cfg, &v);
    if (err != OBX_OK) {
        obx_log(OBX_LOG_ERROR,
                "unusable webhook public key (webhook_public_key or "
                "webhook_public_key_file)",
                OBX_KS("error", obx_strerror(err)));
        obx_webhook_free(wh);
        return OBX_ECONFIG;
    }
    err = obx_verify_pool_new(base, obx_verify_pool_default_threads(), v, on_verified, wh,
                              &wh->pool);
    if (err != OBX_OK) {
        obx_webhook_free(wh);
        return err;
    }
    wh->commit_ev = evtimer_new(base, on_commit, wh);
    err = wh->commit_ev ? obx_httpd_new(base, cfg->webhook_listen, &lim, &wh->http, &wh->port)
                        : OBX_ENOMEM;
    if (err != OBX_OK) {
        obx_log(OBX_LOG_ERROR, "cannot listen for webhooks",
                OBX_KS("webhook_listen", cfg->webhook_listen), OBX_KS("error", obx_strerror(err)));
        obx_webhook_free(wh);
        return err;
    }
    evhttp_set_gencb(obx_httpd_evhttp(wh->http), on_request, wh);
    *out = wh;
    return OBX_OK;
}

void
obx_webhook_free(struct obx_webhook *wh)
{
    if (!wh)
        return;
    wh->closing = 1;
    obx_verify_pool_free(wh->pool);
    for (size_t i = 0; i < wh->npending; i++) {
        obx_httpd_error(wh->pending[i].req, 503, "unavailable", "shutting down", NULL);
        obx_free(wh->pending[i].body);
    }
    obx_free(wh->pending);
    obx_free(wh->sj.events);
    obx_httpd_free(wh->http);
    if (wh->commit_ev)
        event_free(wh->commit_ev);
    obx_free(wh);
}

void
obx_webhook_reload(struct obx_webhook *wh, const struct obx_config *cfg)
{
    struct obx_verifier *v = NULL;

    if (load_verifier(cfg, &v) != OBX_OK) {
        obx_log(OBX_LOG_ERROR, "reloaded webhook public key is unusable; keeping the old one");
    } else {
        obx_verify_pool_set_verifier(wh->pool, v);
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
    /* Requests the HTTP layer refused never reached on_request: count them here. */
    obx_httpd_stats(wh->http, &out->http);
    out->rejected_too_large += out->http.too_large;
    out->rejected_other += out->http.bad_request + out->http.timeout + out->http.shed;
}
