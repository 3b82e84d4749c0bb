/*
 * Outgoing webhooks: Partoo-shaped message_created events, signed like Partoo signs them
 * (X-Partoo-Signature-v1 = base64 of the Ed25519 signature of the raw body), POSTed to the
 * receiver under test over a small pool of keep-alive evhttp client connections.
 *
 * A send is a job:
 *
 *   mock_webhook_send --(timer, delay_ms or 0)--> on_job_timer: evhttp_make_request
 *        --(receiver answered, or the connection failed)--> on_job_response: count, done(), free
 *
 * Requests always leave from a timer callback, never from inside the caller's handler, so a
 * done() callback never runs re-entrantly. Every job is on wh->jobs until it is freed;
 * mock_webhook_release() frees the connections first (evhttp frees their queued requests
 * without calling back), then the jobs.
 */
#include "mock.h"

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SEED_LEN 32
#define SIG_LEN 64
#define SIG_B64_LEN 88
#define FIRST_MESSAGE_ID 100000
#define TIMEOUT_S 10

struct mock_wh_job {
    LIST_ENTRY(mock_wh_job) link;
    struct mock_webhook *wh;
    char *body; /* owned, NUL-terminated */
    size_t len;
    char sig[SIG_B64_LEN + 1]; /* empty: send unsigned */
    struct event *timer;
    int conn; /* connection carrying the request, -1 before dispatch */
    mock_webhook_done_fn done;
    void *arg;
};

static int
hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static int
parse_seed(const char *hex, unsigned char seed[SEED_LEN])
{
    int i;
    int hi;
    int lo;

    if (strlen(hex) != 2 * SEED_LEN) {
        return -1;
    }
    for (i = 0; i < SEED_LEN; i++) {
        hi = hex_value(hex[2 * i]);
        lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return -1;
        }
        seed[i] = (unsigned char)(hi * 16 + lo);
    }
    return 0;
}

static int
load_keys(struct mock_webhook *wh, const char *seed_hex)
{
    unsigned char seed[SEED_LEN];
    int i;

    if (parse_seed(seed_hex, seed) != 0) {
        return -1;
    }
    wh->key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, SEED_LEN);
    for (i = 0; i < SEED_LEN; i++) {
        seed[i] ^= 0x5a; /* any other seed gives a key the receiver does not trust */
    }
    wh->other = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, SEED_LEN);
    return wh->key != NULL && wh->other != NULL ? 0 : -1;
}

int
mock_webhook_init(struct mock_webhook *wh, struct event_base *base, const char *seed_hex,
                  int nconns, int quiet)
{
    memset(wh, 0, sizeof(*wh));
    LIST_INIT(&wh->jobs);
    wh->base = base;
    wh->quiet = quiet;
    wh->next_message_id = FIRST_MESSAGE_ID;
    wh->nconns = nconns > 0 ? nconns : 1;
    wh->conns = calloc((size_t)wh->nconns, sizeof(*wh->conns));
    wh->conn_load = calloc((size_t)wh->nconns, sizeof(*wh->conn_load));
    if (wh->conns == NULL || wh->conn_load == NULL) {
        return -1;
    }
    if (seed_hex != NULL && load_keys(wh, seed_hex) != 0) {
        return -1;
    }
    return 0;
}

static void
free_conns(struct mock_webhook *wh)
{
    int i;

    for (i = 0; i < wh->nconns && wh->conns != NULL; i++) {
        if (wh->conns[i] != NULL) {
            evhttp_connection_free(wh->conns[i]);
            wh->conns[i] = NULL;
        }
        wh->conn_load[i] = 0;
    }
}

static void
clear_url(struct mock_webhook *wh)
{
    free_conns(wh);
    free(wh->url);
    free(wh->host);
    free(wh->path);
    wh->url = NULL;
    wh->host = NULL;
    wh->path = NULL;
    wh->port = 0;
}

/* The parts of a receiver URL; all NULL or all owned. */
struct target {
    char *url;
    char *host;
    int port;
    char *path; /* path and query */
};

static void
target_release(struct target *t)
{
    free(t->url);
    free(t->host);
    free(t->path);
    memset(t, 0, sizeof(*t));
}

static int
parse_url(const char *url, struct target *t, const char **why)
{
    struct evhttp_uri *uri = evhttp_uri_parse(url);
    const char *path;
    const char *query;
    size_t len;
    int rc = -1;

    memset(t, 0, sizeof(*t));
    *why = "webhook url must be http://host[:port]/path";
    if (uri == NULL || evhttp_uri_get_scheme(uri) == NULL ||
        strcmp(evhttp_uri_get_scheme(uri), "http") != 0 || evhttp_uri_get_host(uri) == NULL ||
        *evhttp_uri_get_host(uri) == '\0') {
        goto out;
    }
    path = evhttp_uri_get_path(uri);
    path = path != NULL && *path != '\0' ? path : "/";
    query = evhttp_uri_get_query(uri);
    len = strlen(path) + (query != NULL ? strlen(query) + 1 : 0) + 1;
    t->path = malloc(len);
    t->host = strdup(evhttp_uri_get_host(uri));
    t->url = strdup(url);
    *why = "out of memory";
    if (t->path == NULL || t->host == NULL || t->url == NULL) {
        goto out;
    }
    snprintf(t->path, len, "%s%s%s", path, query != NULL ? "?" : "", query != NULL ? query : "");
    t->port = evhttp_uri_get_port(uri) > 0 ? evhttp_uri_get_port(uri) : 80;
    rc = 0;
out:
    if (rc != 0) {
        target_release(t);
    }
    if (uri != NULL) {
        evhttp_uri_free(uri);
    }
    return rc;
}

int
mock_webhook_check_url(const char *url, const char **why)
{
    struct target t;

    if (url == NULL || *url == '\0') {
        return 0;
    }
    if (parse_url(url, &t, why) != 0) {
        return -1;
    }
    target_release(&t);
    return 0;
}

int
mock_webhook_set_url(struct mock_webhook *wh, const char *url, const char **why)
{
    struct target t;

    memset(&t, 0, sizeof(t));
    if (!LIST_EMPTY(&wh->jobs)) {
        *why = "webhook deliveries are in flight";
        return -1;
    }
    if (url != NULL && *url != '\0' && parse_url(url, &t, why) != 0) {
        return -1;
    }
    clear_url(wh);
    wh->url = t.url; /* t's strings are now owned by wh */
    wh->host = t.host;
    wh->path = t.path;
    wh->port = t.port;
    return 0;
}

int
mock_webhook_ready(const struct mock_webhook *wh)
{
    return wh->key != NULL && wh->host != NULL;
}

int
mock_webhook_public_hex(const struct mock_webhook *wh, char out[65])
{
    unsigned char pub[32];
    size_t len = sizeof(pub);
    int i;

    if (wh->key == NULL || EVP_PKEY_get_raw_public_key(wh->key, pub, &len) != 1 || len != 32) {
        return -1;
    }
    for (i = 0; i < 32; i++) {
        snprintf(out + 2 * i, 3, "%02x", pub[i]);
    }
    return 0;
}

/* ---- building events ------------------------------------------------------------------- */

static void
format_date(char *out, size_t size)
{
    struct timespec ts;
    struct tm tm;
    char base[32];

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(base, sizeof(base), "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(out, size, "%s.%06ld+00:00", base, ts.tv_nsec / 1000);
}

/* Adds name: s, or name: null when s is NULL. Returns 0 or -1 (out of memory). */
static int
add_str(cJSON *obj, const char *name, const char *s)
{
    cJSON *item = s != NULL ? cJSON_CreateString(s) : cJSON_CreateNull();

    if (item == NULL || !cJSON_AddItemToObject(obj, name, item)) {
        cJSON_Delete(item);
        return -1;
    }
    return 0;
}

static cJSON *
build_message(const struct mock_event *ev, const char *date)
{
    cJSON *msg = cJSON_CreateObject();
    cJSON *cc = NULL;
    int bad = msg == NULL;

    bad = bad || cJSON_AddNumberToObject(msg, "id", (double)ev->message_id) == NULL;
    bad = bad ||
          cJSON_AddNumberToObject(msg, "conversation_id", (double)ev->conversation_id) == NULL;
    bad = bad || add_str(msg, "date", date) != 0;
    bad = bad || add_str(msg, "content_type", ev->content_type) != 0;
    bad = bad || add_str(msg, "sender_type", ev->sender_type) != 0;
    bad = bad || add_str(msg, "sender_label", ev->sender_label) != 0;
    bad = bad || add_str(msg, "status", ev->status) != 0;
    bad = bad || cJSON_AddFalseToObject(msg, "is_deleted") == NULL;
    bad = bad || cJSON_AddFalseToObject(msg, "is_automated") == NULL;
    bad = bad || add_str(msg, "content", ev->content) != 0;
    bad = bad || cJSON_AddNullToObject(msg, "user_id") == NULL;
    if (!bad && ev->external_message_id != NULL) {
        cc = cJSON_AddObjectToObject(msg, "custom_channel");
        bad = cc == NULL || add_str(cc, "external_message_id", ev->external_message_id) != 0;
    } else if (!bad) {
        bad = cJSON_AddNullToObject(msg, "custom_channel") == NULL;
    }
    if (bad) {
        cJSON_Delete(msg);
        return NULL;
    }
    return msg;
}

static cJSON *
build_conversation(const struct mock_event *ev)
{
    cJSON *conv = cJSON_CreateObject();
    cJSON *biz = NULL;
    cJSON *cc = NULL;
    int bad = conv == NULL;

    bad = bad || cJSON_AddNumberToObject(conv, "id", (double)ev->conversation_id) == NULL;
    bad = bad || add_str(conv, "consumer_name", ev->consumer_name) != 0;
    bad = bad || add_str(conv, "status", "Open") != 0;
    biz = bad ? NULL : cJSON_AddObjectToObject(conv, "business");
    bad = bad || biz == NULL || add_str(biz, "id", ev->business_id) != 0;
    bad = bad || add_str(biz, "name", "Mock Business") != 0;
    cc = bad ? NULL : cJSON_AddObjectToObject(conv, "custom_channel");
    bad = bad || cc == NULL || add_str(cc, "id", ev->channel_id) != 0;
    bad = bad || add_str(cc, "name", "Mock channel") != 0;
    bad = bad || cJSON_AddFalseToObject(cc, "is_readonly") == NULL;
    bad = bad || add_str(cc, "external_conversation_id", ev->external_conversation_id) != 0;
    if (bad) {
        cJSON_Delete(conv);
        return NULL;
    }
    return conv;
}

char *
mock_webhook_build(const struct mock_event *ev)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *payload = NULL;
    cJSON *msg = NULL;
    cJSON *conv = NULL;
    char date[64];
    char *text = NULL;

    format_date(date, sizeof(date));
    msg = build_message(ev, ev->date != NULL ? ev->date : date);
    conv = build_conversation(ev);
    if (root == NULL || msg == NULL || conv == NULL || add_str(root, "type", ev->type) != 0) {
        goto out;
    }
    payload = cJSON_AddObjectToObject(root, "payload");
    if (payload == NULL) {
        goto out;
    }
    if (!cJSON_AddItemToObject(payload, "message", msg)) {
        goto out;
    }
    msg = NULL; /* now owned by payload */
    if (!cJSON_AddItemToObject(payload, "conversation", conv)) {
        goto out;
    }
    conv = NULL;
    if (cJSON_AddNumberToObject(payload, "org_id", 1) != NULL) {
        text = cJSON_PrintUnformatted(root);
    }
out:
    cJSON_Delete(msg);
    cJSON_Delete(conv);
    cJSON_Delete(root);
    return text;
}

/* ---- signing and sending --------------------------------------------------------------- */

static int
sign_body(EVP_PKEY *key, const char *body, size_t len, unsigned char sig[SIG_LEN])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t sig_len = SIG_LEN;
    int rc = -1;

    if (ctx == NULL || EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) != 1) {
        goto out;
    }
    if (EVP_DigestSign(ctx, sig, &sig_len, (const unsigned char *)body, len) != 1) {
        goto out;
    }
    rc = sig_len == SIG_LEN ? 0 : -1;
out:
    EVP_MD_CTX_free(ctx);
    return rc;
}

static int
sign_job(struct mock_wh_job *job, enum mock_sign sign)
{
    unsigned char sig[SIG_LEN];
    EVP_PKEY *key = sign == MOCK_SIGN_OTHER_KEY ? job->wh->other : job->wh->key;

    job->sig[0] = '\0';
    if (sign == MOCK_SIGN_NONE) {
        return 0;
    }
    if (key == NULL || sign_body(key, job->body, job->len, sig) != 0) {
        return -1;
    }
    if (sign == MOCK_SIGN_FLIPPED) {
        sig[SIG_LEN / 2] ^= 0x01;
    }
    EVP_EncodeBlock((unsigned char *)job->sig, sig, SIG_LEN);
    return 0;
}

static void
job_free(struct mock_wh_job *job)
{
    LIST_REMOVE(job, link);
    if (job->timer != NULL) {
        event_free(job->timer);
    }
    free(job->body);
    free(job);
}

/* Completes a job: counts it, tells its owner, frees it. */
static void
job_finish(struct mock_wh_job *job, int status, const char *resp, size_t resp_len)
{
    struct mock_webhook *wh = job->wh;

    if (status >= 200 && status < 300) {
        wh->sent++;
    } else {
        wh->failed++;
        mock_util_log(wh->quiet, "webhook to \"%s\" failed: status %d", wh->url, status);
    }
    if (job->done != NULL) {
        job->done(job->arg, status, job->body, job->len, resp, resp_len);
    }
    job_free(job);
}

static void
on_job_response(struct evhttp_request *req, void *arg)
{
    struct mock_wh_job *job = arg;
    struct evbuffer *in = NULL;
    const char *resp = "";
    size_t resp_len = 0;
    int status = req != NULL ? evhttp_request_get_response_code(req) : 0;

    if (req != NULL) {
        in = evhttp_request_get_input_buffer(req);
        resp_len = evbuffer_get_length(in);
        resp = resp_len > 0 ? (const char *)evbuffer_pullup(in, -1) : "";
    }
    job->wh->conn_load[job->conn]--;
    job_finish(job, status, resp, resp_len);
}

/* The least loaded connection of the pool, created on first use; -1 when out of memory. */
static int
pick_conn(struct mock_webhook *wh)
{
    int best = 0;
    int i;

    for (i = 1; i < wh->nconns; i++) {
        if (wh->conn_load[i] < wh->conn_load[best]) {
            best = i;
        }
    }
    if (wh->conns[best] == NULL) {
        wh->conns[best] = evhttp_connection_base_new(wh->base, NULL, wh->host,
                                                     (ev_uint16_t)wh->port);
        if (wh->conns[best] == NULL) {
            return -1;
        }
        evhttp_connection_set_timeout(wh->conns[best], TIMEOUT_S);
    }
    return best;
}

static int
add_headers(struct mock_wh_job *job, struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char host[300];
    int bad = 0;

    snprintf(host, sizeof(host), "%s:%d", job->wh->host, job->wh->port);
    bad = bad || evhttp_add_header(h, "Host", host) != 0;
    bad = bad || evhttp_add_header(h, "Content-Type", "application/json") != 0;
    bad = bad || evhttp_add_header(h, "User-Agent", "mock-partoo-webhooks/1") != 0;
    if (job->sig[0] != '\0') {
        bad = bad || evhttp_add_header(h, "X-Partoo-Signature-v1", job->sig) != 0;
    }
    bad = bad || evbuffer_add(evhttp_request_get_output_buffer(req), job->body, job->len) != 0;
    return bad ? -1 : 0;
}

static void
on_job_timer(evutil_socket_t fd, short what, void *arg)
{
    struct mock_wh_job *job = arg;
    struct mock_webhook *wh = job->wh;
    struct evhttp_request *req = NULL;
    int conn;

    (void)fd;
    (void)what;
    conn = wh->host != NULL ? pick_conn(wh) : -1;
    if (conn >= 0) {
        req = evhttp_request_new(on_job_response, job);
    }
    if (req != NULL && add_headers(job, req) != 0) {
        evhttp_request_free(req);
        req = NULL;
    }
    if (req == NULL) {
        job_finish(job, 0, "", 0);
        return;
    }
    job->conn = conn;
    wh->conn_load[conn]++;
    if (evhttp_make_request(wh->conns[conn], req, EVHTTP_REQ_POST, wh->path) != 0) {
        /* evhttp has freed req */
        wh->conn_load[conn]--;
        job_finish(job, 0, "", 0);
    }
}

int
mock_webhook_send(struct mock_webhook *wh, char *body, enum mock_sign sign, int64_t delay_ms,
                  mock_webhook_done_fn done, void *arg)
{
    struct mock_wh_job *job = calloc(1, sizeof(*job));
    struct timeval tv;

    if (job == NULL) {
        free(body);
        return -1;
    }
    LIST_INSERT_HEAD(&wh->jobs, job, link);
    job->wh = wh;
    job->body = body; /* now owned by the job */
    job->len = strlen(body);
    job->conn = -1;
    job->done = done;
    job->arg = arg;
    job->timer = evtimer_new(wh->base, on_job_timer, job);
    tv.tv_sec = delay_ms / 1000;
    tv.tv_usec = (delay_ms % 1000) * 1000;
    if (job->timer == NULL || sign_job(job, sign) != 0 || evtimer_add(job->timer, &tv) != 0) {
        job_free(job); /* without calling done */
        return -1;
    }
    return 0;
}

void
mock_webhook_release(struct mock_webhook *wh)
{
    clear_url(wh);
    while (!LIST_EMPTY(&wh->jobs)) {
        job_free(LIST_FIRST(&wh->jobs));
    }
    free(wh->conns);
    free(wh->conn_load);
    EVP_PKEY_free(wh->key);
    EVP_PKEY_free(wh->other);
    memset(wh, 0, sizeof(*wh));
}
