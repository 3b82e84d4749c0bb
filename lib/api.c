/*
 * api: producer routes, dispatched through one table.
 *
 *   POST /v1/messages                          enqueue one or {"messages":[...]} (group commit)
 *   GET  /v1/messages                          list, newest first, cursor pagination
 *   GET  /v1/messages/{channel}/{ext_id}       one message with transitions and attempts
 *   POST /v1/messages/{channel}/{ext_id}/retry failed|accepted -> queued
 *   POST /v1/messages/{channel}/{ext_id}/cancel queued -> cancelled
 *   GET  /v1/stats                             counts per state and channel, pauses
 *   GET  /v1/inbox                             replies from Partoo users, unacknowledged
 *   POST /v1/inbox/{id}/ack                    acknowledge a reply
 *   GET  /metrics                              Prometheus text (lib/metrics.c)
 *   GET  /v1/tenants                           the tenant registry (SPEC §11), never a key
 *   GET|PUT|DELETE /v1/tenants/{name}          one tenant: read, create or change, remove
 *   GET  /healthz, /readyz                     open even when api_token is set
 *
 * Group commit: a POST /v1/messages is parsed and validated at once, its valid
 * items are appended to `group`, and a zero-delay timer runs commit_group() after
 * the events of the current loop turn, so every request that arrived in that turn
 * shares one transaction. Replies go out only after COMMIT returned.
 */
#include "api.h"

#include <event2/buffer.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "store_dash.h"
#include "store_pg.h"
#include "httpd.h"
#include "inbox.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "msg.h"
#include "query.h"
#include "secretbox.h"
#include "store_queue.h"
#include "store_tenant.h"
#include "ui.h"
#include "view.h"

#define OBX_MODULE "api"

#define MAX_BATCH 1000
#define MAX_SEGMENTS 8
#define MAX_GROUP_ITEMS 20000 /* commit at once past this many pending items */
/* On PostgreSQL fewer: each conversation written is a lock held until the COMMIT
 * (OBX_STOREQ_PG_GROUP_WEIGHT). A batch may take a group past it by MAX_BATCH - 1. */
#define MAX_GROUP_ITEMS_PG 2000
#define READY_AFTER_FAILURE_MS 2000
#define READYZ_PROBE_MS 1000 /* at most one write probe per second (on_readyz) */

/* One POST /v1/messages waiting for the group commit. */
struct post {
    struct evhttp_request *req;
    obx_json *doc; /* owns the strings the items borrow */
    int batch;     /* 1: {"messages":[...]} */
    int nitems;
    struct item *items;
};

/* One message of a POST: a parse/validation error, or its slot in the group. */
struct item {
    int invalid;
    struct obx_field_error fe;
    size_t slot; /* index into group.items when valid */
};

/* Messages and requests that share one commit. */
struct group {
    struct obx_enq_item *items;
    size_t n, cap;
    struct post **posts;
    size_t nposts, capposts;
};

/* A group being committed on the store thread (belongs to it until on_committed). */
struct commit_job {
    struct obx_storeq_job job;
    struct obx_api *api;
    struct group g;
    struct obx_msg_limits lim;
};

struct obx_api {
    struct event_base *base;
    struct obx_store *st;    /* the loop's connection: reads */
    struct obx_clock *clock; /* borrowed: st's (a test may swap it) */
    struct obx_storeq *q;    /* the store thread: every write */
    const struct obx_config *cfg;
    struct obx_worker *worker;
    struct obx_httpd *http;
    int port;
    unsigned char token_hash[SHA256_DIGEST_LENGTH];
    int has_token;
    struct event *commit_ev;
    struct group group; /* filling up while `commit` is written */
    int committing;     /* groups submitted, not yet answered */
    int last_write_failed;
    int64_t last_failure_mono_ms; /* when a commit last failed */
    int64_t probes;               /* /readyz write probes so far */
    int64_t probe_mono_ms;        /* when the last one ran */
    enum obx_err probe_err;       /* and what it found */
    struct obx_api_stats stats;
    obx_api_metrics_collect_fn metrics_collect;
    obx_api_metrics_render_fn metrics_render;
    void *metrics_ctx;
};

/* A matched route gets the decoded path segments. */
typedef void (*route_fn)(struct obx_api *api, struct evhttp_request *req, char **seg);

/*
 * 8 bytes of padding a row (clang-tidy's Padding check): putting method next to open would
 * save them, at the cost of every row below reading out of order. Not worth it for 11 rows.
 */
/* NOLINTNEXTLINE(clang-analyzer-optin.performance.Padding) */
struct route {
    enum evhttp_cmd_type method;
    const char *pattern[MAX_SEGMENTS]; /* literal segments; "*" matches any one */
    route_fn fn;
    int open; /* no token needed */
};

/* ---- small helpers ----------------------------------------------------------------- */

/* A whole decimal number in [min, max]; 0 on success, -1 otherwise. */
static int
parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end = NULL;
    long long v;

    if (!*s)
        return -1;
    v = strtoll(s, &end, 10);
    if (*end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/*
 * An RFC 3339 time (2026-11-24T05:48:33.406Z, or with an offset such as +02:00) into epoch
 * ms; a fraction past the millisecond rounds up when up is set (so "created_at < t" in whole
 * ms keeps its meaning), down otherwise. 0 on success, -1 otherwise.
 */
static int
parse_rfc3339(const char *s, int up, int64_t *out)
{
    struct tm tm = {0};
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    int64_t ms = 0, scale = 100, secs;
    int oh = 0, om = 0, n = 0;

    if (!p || strlen(s) > 40 || tm.tm_year < 0 || tm.tm_year > 8000)
        return -1;
    if (*p == '.') {
        if (!(p[1] >= '0' && p[1] <= '9'))
            return -1;
        for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10) {
            ms += scale * (*p - '0');
            if (!scale && *p != '0' && up)
                up = 2; /* a non-zero digit past the millisecond */
        }
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if ((*p == '+' || *p == '-') && sscanf(p + 1, "%2d:%2d%n", &oh, &om, &n) == 2 &&
               n == 5 && oh <= 23 && om <= 59) {
        int sign = *p == '+' ? 1 : -1;

        p += 1 + n;
        ms -= sign * ((int64_t)oh * 3600 + om * 60) * 1000;
    } else {
        return -1;
    }
    if (*p)
        return -1;
    secs = (int64_t)timegm(&tm);
    *out = secs * 1000 + ms + (up == 2);
    return *out > 0 ? 0 : -1; /* 0 stands for "no bound" */
}

/*
 * Reads ?created_after=&created_before= into w and derives its id range; -1 after answering
 * 400 naming the field (or 500 when the store cannot be read).
 */
static int
parse_window(struct obx_api *api, struct evhttp_request *req, struct obx_id_window *w)
{
    static const char *const names[2] = {"created_after", "created_before"};
    int64_t *dst[2] = {&w->after_ms, &w->before_ms};

    for (int i = 0; i < 2; i++) {
        char *v = obx_httpd_query_param(req, names[i]);
        int bad = v && *v && parse_rfc3339(v, i == 1, dst[i]) != 0;

        obx_free(v);
        if (bad) {
            obx_httpd_error(req, 400, "invalid_value",
                            "created_after and created_before are RFC 3339 times, such as "
                            "2026-11-24T05:48:33.406Z",
                            names[i]);
            return -1;
        }
    }
    /* On PostgreSQL the times are compared as they are (the loop has no connection to
     * turn them into an id range with). */
    if (!obx_store_pg_in_use(api->st) && obx_store_dash_id_window(api->st, w) != OBX_OK) {
        obx_httpd_error(req, 500, "internal", "cannot read the store", NULL);
        return -1;
    }
    return 0;
}

/* The audit export's answer: JSON Lines, as a file to save. */
static void
reply_ndjson(struct evhttp_request *req, struct obx_buf *b, enum obx_err err)
{
    struct evbuffer *out;

    if (err != OBX_OK) {
        obx_httpd_error(req, 500, "internal", "cannot export the audit log", NULL);
        return;
    }
    out = evbuffer_new();
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/x-ndjson; charset=utf-8");
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Disposition",
                      "attachment; filename=\"audit.jsonl\"");
    if (out)
        evbuffer_add(out, obx_buf_str(b), b->len);
    evhttp_send_reply(req, 200, NULL, out);
    if (out)
        evbuffer_free(out);
}

static void
reply_doc(struct evhttp_request *req, int status, struct obx_buf *b, enum obx_err err)
{
    if (err != OBX_OK) {
        obx_httpd_error(req, 500, "internal", "cannot build the response", NULL);
        return;
    }
    obx_httpd_reply_json(req, status, b);
}

/* Maps a store write error to 503 + Retry-After (or 507 for the quota). */
static void
reply_write_error(struct obx_api *api, struct evhttp_request *req, enum obx_err err)
{
    api->stats.write_failures++;
    if (err == OBX_EQUOTA) {
        obx_httpd_error(req, 507, "quota_exceeded", obx_strerror(err), NULL);
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
    obx_httpd_error(req, 503, "unavailable", obx_strerror(err), NULL);
}

static void
hash_token(const char *token, unsigned char *out)
{
    SHA256((const unsigned char *)token, strlen(token), out);
}

/* Constant-time check of "Authorization: Bearer <token>" (hashes compared, not strings). */
static int
authorized(struct obx_api *api, struct evhttp_request *req)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    unsigned char got[SHA256_DIGEST_LENGTH];

    if (!api->has_token)
        return 1;
    if (!h || strncmp(h, "Bearer ", 7) != 0)
        return 0;
    hash_token(h + 7, got);
    return CRYPTO_memcmp(got, api->token_hash, sizeof got) == 0;
}

/* ---- POST /v1/messages: parse now, commit with the group ------------------------------ */

static struct obx_enq_item *
group_slot(struct obx_api *api, size_t *slot)
{
    if (api->group.n == api->group.cap) {
        size_t ncap = api->group.cap ? api->group.cap * 2 : 256;
        struct obx_enq_item *p = obx_realloc(api->group.items, ncap * sizeof *p);
        if (!p)
            return NULL;
        api->group.items = p;
        api->group.cap = ncap;
    }
    *slot = api->group.n;
    memset(&api->group.items[*slot], 0, sizeof api->group.items[0]);
    return &api->group.items[api->group.n++];
}

static int
group_add_post(struct obx_api *api, struct post *p)
{
    if (api->group.nposts == api->group.capposts) {
        size_t ncap = api->group.capposts ? api->group.capposts * 2 : 64;
        struct post **np = obx_realloc(api->group.posts, ncap * sizeof *np);
        if (!np)
            return -1;
        api->group.posts = np;
        api->group.capposts = ncap;
    }
    api->group.posts[api->group.nposts++] = p;
    return 0;
}

static void
post_free(struct post *p)
{
    if (!p)
        return;
    obx_json_free(p->doc);
    obx_free(p->items);
    obx_free(p);
}

/* Reads one message object into the group (valid) or into it->fe (invalid). */
static int
add_item(struct obx_api *api, const obx_json *obj, struct item *it)
{
    struct obx_msg_limits lim = obx_msg_limits_default();
    struct obx_enq_item *slot;
    struct obx_msg m;

    lim.max_content_bytes = (size_t)api->cfg->max_content_bytes;
    if (obx_msg_from_json(obj, NULL, &lim, &m, &it->fe) != OBX_OK) {
        it->invalid = 1;
        return 0;
    }
    slot = group_slot(api, &it->slot);
    if (!slot)
        return -1;
    slot->msg = m;
    return 0;
}

/* Replies 503 to a request that cannot be taken for want of memory; returns -1. */
static int
refuse_no_memory(struct evhttp_request *req)
{
    obx_httpd_error(req, 503, "unavailable", "out of memory", NULL);
    return -1;
}

/* Checks the envelope and fills p->items. Replies and returns -1 when the request is refused. */
static int
parse_post(struct obx_api *api, struct evhttp_request *req, struct post *p)
{
    obx_json *list = obx_json_get(p->doc, "messages");
    int n;

    if (!obx_json_is_object(p->doc)) {
        obx_httpd_error(req, 400, "invalid_type", "the body must be a JSON object", NULL);
        return -1;
    }
    p->batch = list != NULL;
    if (p->batch &&
        (!obx_json_is_array(list) || obx_json_array_size(list) > MAX_BATCH ||
         obx_json_array_size(list) == 0 || obx_json_child(p->doc) != list || obx_json_next(list))) {
        obx_httpd_error(req, 400, "invalid_value",
                        "a batch is {\"messages\":[...]} with 1 to 1000 message objects",
                        "messages");
        return -1;
    }
    n = p->batch ? obx_json_array_size(list) : 1;
    p->items = obx_calloc((size_t)n, sizeof *p->items);
    if (!p->items) {
        obx_httpd_error(req, 503, "unavailable", "out of memory", NULL);
        return -1;
    }
    p->nitems = n;
    if (!p->batch)
        return add_item(api, p->doc, &p->items[0]) == 0 ? 0 : refuse_no_memory(req);
    n = 0;
    for (obx_json *m = obx_json_child(list); m; m = obx_json_next(m), n++)
        if (add_item(api, m, &p->items[n]) != 0)
            return refuse_no_memory(req);
    return 0;
}

static void reply_single(const struct obx_enq_item *items, struct post *p, struct obx_buf *b);
static void reply_batch(const struct obx_enq_item *items, struct post *p, struct obx_buf *b);

static void on_commit(evutil_socket_t fd, short what, void *arg);

/*
 * The group goes to the store once this loop turn is done, or at once when it is full:
 * requests that came together are read in the same turn, and would all join it first.
 */
static void
schedule_commit(struct obx_api *api)
{
    struct timeval now = {0, 0};

    if (api->group.n >= (obx_store_pg_in_use(api->st) ? MAX_GROUP_ITEMS_PG : MAX_GROUP_ITEMS))
        on_commit(-1, 0, api);
    else if (!evtimer_pending(api->commit_ev, NULL))
        evtimer_add(api->commit_ev, &now);
}

static void
on_post_messages(struct obx_api *api, struct evhttp_request *req, char **seg)
{
    struct obx_json_error je;
    struct post *p = NULL;
    char *body = NULL;
    size_t len = 0, group_mark = api->group.n;
    enum obx_err err;

    (void)seg;
    if (!obx_httpd_is_json(req)) {
        obx_httpd_error(req, 415, "unsupported_media_type", "Content-Type must be application/json",
                        NULL);
        return;
    }
    err = obx_httpd_body(req, (size_t)api->cfg->max_body_bytes, &body, &len);
    if (err == OBX_ETOOBIG) {
        obx_httpd_error(req, 413, "too_large", "the body exceeds max_body_bytes", NULL);
        return;
    }
    p = obx_calloc(1, sizeof *p);
    if (err != OBX_OK || !p) {
        obx_httpd_error(req, 503, "unavailable", "out of memory", NULL);
        goto fail;
    }
    p->req = req;
    err = obx_json_parse(body, len, (size_t)api->cfg->max_body_bytes, (int)api->cfg->max_json_depth,
                         &p->doc, &je);
    if (err != OBX_OK) {
        obx_httpd_error(req, 400, je.code, je.message, NULL);
        goto fail;
    }
    group_mark = api->group.n;
    if (parse_post(api, req, p) != 0)
        goto fail;
    if (api->group.n == group_mark) {
        /* Nothing valid to store: answer now, without waiting for the group. */
        struct obx_buf b;
        obx_buf_init(&b, 64 * 1024 * 1024);
        if (p->batch)
            reply_batch(api->group.items, p, &b);
        else
            reply_single(api->group.items, p, &b);
        obx_buf_release(&b);
        goto done;
    }
    if (group_add_post(api, p) != 0) {
        obx_httpd_error(req, 503, "unavailable", "out of memory", NULL);
        goto fail;
    }
    obx_free(body);
    obx_httpd_hold(req); /* answered after the group's commit */
    schedule_commit(api);
    return;
fail:
    /* Take back what this request added: nothing it was refused for may be committed. */
    api->group.n = group_mark;
done:
    obx_free(body);
    post_free(p);
}

/* {"id":..,"state":..,"duplicate":..} or the item's error object. */
static enum obx_err
item_json(struct obx_buf *b, const struct obx_enq_item *items, const struct post *p, int i)
{
    const struct item *it = &p->items[i];
    const struct obx_enq_item *e = it->invalid ? NULL : &items[it->slot];
    const struct obx_field_error *fe = e && e->err == OBX_EINVAL ? &e->fe : &it->fe;
    char field[300];
    enum obx_err err;

    if (e && e->err == OBX_OK)
        return obx_buf_printf(b, "{\"id\":%lld,\"state\":\"%s\",\"duplicate\":%s}",
                              (long long)e->id, e->state,
                              e->result == OBX_ENQ_DUPLICATE ? "true" : "false");
    if (e && e->err == OBX_ECONFLICT)
        snprintf(field, sizeof field, "messages[%d].external_message_id", i);
    else if (fe->field)
        snprintf(field, sizeof field, "messages[%d].%s", i, fe->field);
    else
        snprintf(field, sizeof field, "messages[%d]", i);
    err = obx_buf_puts(b, "{\"error\":{\"code\":");
    if (err == OBX_OK)
        err = obx_buf_json_str(b, e && e->err == OBX_ECONFLICT ? "conflict" : fe->code);
    if (err == OBX_OK)
        err = obx_buf_puts(b, ",\"message\":");
    if (err == OBX_OK)
        err = obx_buf_json_str(b, e && e->err == OBX_ECONFLICT
                                      ? "the key exists with different fields"
                                      : fe->message);
    if (err == OBX_OK)
        err = obx_buf_puts(b, ",\"field\":");
    if (err == OBX_OK)
        err = obx_buf_json_str(b, field);
    if (err == OBX_OK)
        err = obx_buf_puts(b, "}}");
    return err;
}

static void
reply_single(const struct obx_enq_item *items, struct post *p, struct obx_buf *b)
{
    const struct item *it = &p->items[0];
    const struct obx_enq_item *e = it->invalid ? NULL : &items[it->slot];

    if (!e) {
        obx_httpd_error(p->req, 400, it->fe.code, it->fe.message, it->fe.field);
    } else if (e->err == OBX_EINVAL) {
        /* Refused by the store itself (a schema CHECK the validator did not cover). */
        obx_httpd_error(p->req, 400, e->fe.code, e->fe.message, e->fe.field);
    } else if (e->err == OBX_ECONFLICT) {
        obx_httpd_error(p->req, 409, "conflict",
                        "a message with this channel_id and external_message_id exists with "
                        "different fields",
                        "external_message_id");
    } else {
        enum obx_err err = obx_buf_printf(b, "{\"id\":%lld,\"state\":\"%s\",\"duplicate\":%s}",
                                          (long long)e->id, e->state,
                                          e->result == OBX_ENQ_DUPLICATE ? "true" : "false");
        reply_doc(p->req, 202, b, err);
    }
}

static void
reply_batch(const struct obx_enq_item *items, struct post *p, struct obx_buf *b)
{
    enum obx_err err = obx_buf_puts(b, "{\"results\":[");

    for (int i = 0; err == OBX_OK && i < p->nitems; i++) {
        if (i)
            err = obx_buf_puts(b, ",");
        if (err == OBX_OK)
            err = item_json(b, items, p, i);
    }
    if (err == OBX_OK)
        err = obx_buf_puts(b, "]}");
    reply_doc(p->req, 202, b, err);
}

static void
count_results(struct obx_api *api, const struct group *g)
{
    for (size_t i = 0; i < g->n; i++) {
        const struct obx_enq_item *e = &g->items[i];
        if (e->err != OBX_OK)
            continue;
        if (e->result == OBX_ENQ_DUPLICATE)
            api->stats.messages_duplicate++;
        else
            api->stats.messages_accepted++;
    }
}

/* Store thread: the group's messages, in the store thread's transaction. */
static enum obx_err
run_commit(struct obx_store *st, void *arg)
{
    struct commit_job *c = arg;

    return c->g.n ? obx_store_enqueue_batch(st, c->g.items, c->g.n, &c->lim) : OBX_OK;
}

/* Loop thread: the group is committed (or not): answer its requests. */
static void
on_committed(void *arg, enum obx_err err)
{
    struct commit_job *c = arg;
    struct obx_api *api = c->api;
    struct group *g = &c->g;
    struct obx_buf b;

    api->committing--;
    api->stats.commits++;
    if (err != OBX_OK && !api->last_write_failed)
        obx_log(OBX_LOG_ERROR,
                err == OBX_EQUOTA ? "cannot commit messages; answering 507"
                                  : "cannot commit messages; answering 503",
                OBX_KS("error", obx_strerror(err)), OBX_KI("messages", g->n));
    else if (err == OBX_OK && api->last_write_failed)
        obx_log(OBX_LOG_INFO, "messages are committed again");
    api->last_write_failed = err != OBX_OK;
    if (err != OBX_OK)
        api->last_failure_mono_ms = obx_mono_ms(api->clock);
    if (err == OBX_OK)
        count_results(api, g);
    /* Wake the tenants whose channels got messages (the strings live until post_free). */
    for (size_t i = 0; err == OBX_OK && api->worker && i < g->n; i++)
        if (g->items[i].err == OBX_OK && g->items[i].result == OBX_ENQ_ACCEPTED &&
            (i == 0 || strcmp(g->items[i].msg.channel_id, g->items[i - 1].msg.channel_id) != 0))
            obx_worker_notify_channel(api->worker, g->items[i].msg.channel_id);
    obx_buf_init(&b, 64 * 1024 * 1024);
    for (size_t i = 0; i < g->nposts; i++) {
        struct post *p = g->posts[i];
        if (err != OBX_OK)
            reply_write_error(api, p->req, err);
        else if (p->batch)
            reply_batch(g->items, p, &b);
        else
            reply_single(g->items, p, &b);
        post_free(p);
    }
    obx_buf_release(&b);
    obx_free(g->items);
    obx_free(g->posts);
    obx_free(c);
    if (api->group.nposts)
        schedule_commit(api); /* what waited for this commit (PostgreSQL, on_commit) */
}

/*
 * Hands the group to the store thread at the end of the loop turn in which its requests
 * arrived; the next one fills up meanwhile and goes as soon as its turn ends, without
 * waiting for this one's commit (the store thread runs them in order, in one transaction
 * when they queue up behind a commit).
 *
 * On PostgreSQL the next group waits for the commit instead (until it is full): there each
 * job costs round trips of its own (a savepoint, its statements, the release), and jobs of
 * one or two requests each, one per loop turn, made the group's transaction longer. Waiting
 * gave 8 % more enqueues per second at 32 clients (docs/benchmarks.md, 2026-12-07).
 */
static void
on_commit(evutil_socket_t fd, short what, void *arg)
{
    struct obx_api *api = arg;
    struct commit_job *c;

    (void)fd;
    (void)what;
    if (!api->group.nposts)
        return;
    if (api->committing > 0 && obx_store_pg_in_use(api->st) && api->group.n < MAX_GROUP_ITEMS_PG)
        return; /* on_committed sends it */
    c = obx_calloc(1, sizeof *c);
    if (!c) {
        struct timeval soon = {0, 1000}; /* out of memory: try again shortly */
        evtimer_add(api->commit_ev, &soon);
        return;
    }
    c->api = api;
    c->g = api->group;
    memset(&api->group, 0, sizeof api->group);
    c->lim = obx_msg_limits_default();
    c->lim.max_content_bytes = (size_t)api->cfg->max_content_bytes;
    c->job.run = run_commit;
    c->job.done = on_committed;
    c->job.arg = c;
    c->job.weight = (int64_t)c->g.n;
    api->committing++;
    obx_storeq_submit(api->q, &c->job);
}

/* ---- reads and operator actions --------------------------------------------------------- */

/* ---- reads on PostgreSQL ---------------------------------------------------------------- */

/*
 * On PostgreSQL the loop has no connection (it must never wait on the network): a read
 * route builds its document on the store thread, between groups (OBX_STOREQ_OWN_TX, so it
 * sees only what is committed), and is answered here when it is done. evhttp keeps the
 * request until it is answered, as for an enqueue waiting for its commit.
 */
/* A read on PostgreSQL found the database away (serve connects again): try again soon. */
static void
reply_db_away(struct evhttp_request *req, enum obx_err err)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
    obx_httpd_error(req, 503, "unavailable", obx_strerror(err), NULL);
}

struct read_job {
    struct obx_storeq_job job;
    struct evhttp_request *req;
    enum obx_err (*build)(struct obx_store *st, struct read_job *r);
    int status;                     /* of the answer (200 unless set) */
    const char *not_found;          /* the 404's message (OBX_ENOTFOUND) */
    char *channel, *id;             /* GET /v1/messages/{channel}/{id}; channel: a tenant's name */
    struct obx_list_query q;        /* GET /v1/messages */
    char *state, *list_channel;     /* q's strings */
    struct obx_audit_cursor cursor; /* GET /v1/audit/verify */
    int64_t max_seals;
    int64_t since_ms, until_ms; /* GET /v1/audit/export (channel: its channel_id) */
    int ndjson;                 /* the answer is JSON Lines (the export), not one document */
    int64_t now_ms;             /* the dashboard's reads: history, count, conversation, find */
    int week;
    int64_t limit;
    struct obx_store_dash_filter filter;
    char *filter_strings[3]; /* the filter's state, channel and conversation, owned */
    struct obx_buf body;
};

static enum obx_err
run_read(struct obx_store *st, void *arg)
{
    struct read_job *r = arg;

    return r->build(st, r);
}

/* Loop thread: the document is built (or not). */
static void
on_read_done(void *arg, enum obx_err err)
{
    struct read_job *r = arg;

    if (err == OBX_ENOTFOUND) {
        obx_httpd_error(r->req, 404, "not_found", r->not_found, NULL);
    } else if (err == OBX_EDB || err == OBX_EIO) {
        reply_db_away(r->req, err);
    } else if (r->ndjson) {
        reply_ndjson(r->req, &r->body, err);
    } else {
        reply_doc(r->req, r->status, &r->body, err);
    }
    obx_free(r->channel);
    obx_free(r->id);
    obx_free(r->state);
    obx_free(r->list_channel);
    for (int i = 0; i < 3; i++)
        obx_free(r->filter_strings[i]);
    obx_buf_release(&r->body);
    obx_free(r);
}

/* Hands a read to the store thread, between groups (OBX_STOREQ_OWN_TX): it sees only what
 * is committed, and done() answers on the loop. */
static void
submit_store_read(struct obx_api *api, struct obx_storeq_job *job, obx_storeq_run_fn run,
                  obx_storeq_done_fn done, void *arg)
{
    job->run = run;
    job->done = done;
    job->arg = arg;
    job->flags = OBX_STOREQ_OWN_TX;
    obx_storeq_submit(api->q, job);
}

/* Hands r (its build and arguments set) to the store thread. */
static void
submit_read(struct obx_api *api, struct evhttp_request *req, struct read_job *r)
{
    r->req = req;
    submit_store_read(api, &r->job, run_read, on_read_done, r);
}

static struct read_job *
read_job_new(struct evhttp_request *req, size_t body_max)
{
    struct read_job *r = obx_calloc(1, sizeof *r);

    if (!r) {
        obx_httpd_error(req, 503, "unavailable", "out of memory", NULL);
        return NULL;
    }
    obx_buf_init(&r->body, body_max);
    r->status = 200;
    r->not_found = "no such message";
    return r;
}

static enum obx_err
build_message(struct obx_store *st, struct read_job *r)
{
    return obx_view_message_document(st, r->channel, r->id, &r->body);
}

/* A message with its history (SPEC §9), read on the store thread on PostgreSQL. */
static void
reply_message(struct obx_api *api, struct evhttp_request *req, const char *channel, const char *id)
{
    struct obx_buf b;
    enum obx_err err;

    if (obx_store_pg_in_use(api->st)) {
        struct read_job *r = read_job_new(req, 64 * 1024 * 1024);
        if (!r)
            return;
        r->build = build_message;
        r->channel = obx_strdup(channel);
        r->id = obx_strdup(id);
        if (!r->channel || !r->id) {
            on_read_done(r, OBX_ENOMEM);
            return;
        }
        submit_read(api, req, r);
        return;
    }
    obx_buf_init(&b, 64 * 1024 * 1024);
    err = obx_view_message_document(api->st, channel, id, &b);
    if (err == OBX_ENOTFOUND)
        obx_httpd_error(req, 404, "not_found", "no such message", NULL);
    else if (err != OBX_OK)
        reply_write_error(api, req, err);
    else
        obx_httpd_reply_json(req, 200, &b);
    obx_buf_release(&b);
}

static void
on_get_message(struct obx_api *api, struct evhttp_request *req, char **seg)
{
    reply_message(api, req, seg[2], seg[3]);
}

struct list_ctx {
    struct obx_buf *b;
    int n;
    enum obx_err err;
};

static int
on_list_row(void *ctx, const struct obx_row *r)
{
    struct list_ctx *l = ctx;

    if (l->n++)
        l->err = obx_buf_puts(l->b, ",");
    if (l->err == OBX_OK)
        l->err = obx_view_message(l->b, r);
    return l->err != OBX_OK;
}

/* Reads ?state=&channel_id=&limit=&cursor=; replies 400 naming the field when bad. */
static int
parse_list_query(struct evhttp_request *req, struct obx_list_query *q, char **state, char **channel)
{
    char *limit = obx_httpd_query_param(req, "limit");
    char *cursor = obx_httpd_query_param(req, "cursor");
    int64_t lim = 50;
    const char *bad = NULL;

    *state = obx_httpd_query_param(req, "state");
    *channel = obx_httpd_query_param(req, "channel_id");
    q->state = *state;
    q->channel_id = *channel;
    if (*state && strcmp(*state, "unconfirmed") == 0) {
        q->state = NULL;
        q->unconfirmed = 1;
    } else if (*state && obx_store_state_parse(*state) < 0) {
        bad = "state";
    }
    if (!bad && limit && parse_int(limit, 1, 1000, &lim) != 0)
        bad = "limit";
    q->limit = (int)lim;
    if (!bad && cursor && parse_int(cursor, 1, INT64_MAX, &q->before_id) != 0)
        bad = "cursor";
    obx_free(limit);
    obx_free(cursor);
    if (bad)
        obx_httpd_error(req, 400, "invalid_value",
                        "state must be a known state, limit 1..1000, cursor from next_cursor", bad);
    return bad ? -1 : 0;
}

/* Ends a page's array with its cursor: ],"next_cursor":"N"} (null on the last page). */
static enum obx_err
close_page(struct obx_buf *b, enum obx_err err, int64_t next)
{
    if (err != OBX_OK)
        return err;
    return next ? obx_buf_printf(b, "],\"next_cursor\":\"%lld\"}", (long long)next)
                : obx_buf_puts(b, "],\"next_cursor\":null}");
}

/* {"messages":[...],"next_cursor":...}: the page q asks for. */
static enum obx_err
list_document(struct obx_store *st, const struct obx_list_query *q, struct obx_buf *b)
{
    struct list_ctx l = {b, 0, OBX_OK};
    int64_t next = 0;
    enum obx_err err = obx_buf_puts(b, "{\"messages\":[");

    if (err == OBX_OK)
        err = obx_query_list(st, q, on_list_row, &l, &next);
    return close_page(b, err == OBX_OK ? l.err : err, next);
}

static enum obx_err
build_list(struct obx_store *st, struct read_job *r)
{
    return list_document(st, &r->q, &r->body);
}

static void
on_list_messages(struct obx_api *api, struct evhttp_request *req, char **seg)
{
    struct obx_list_query q = {0};
    char *state = NULL, *channel = NULL;
    struct obx_buf b;

    (void)seg;
    if (parse_list_query(req, &q, &state, &channel) != 0 || parse_window(api, req, &q.win) != 0) {
        obx_free(state);
        obx_free(channel);
        return;
    }
    if (obx_store_pg_in_use(api->st)) {
        struct read_job *r = read_job_new(req, 256 * 1024 * 1024);
        if (!r) {
            obx_free(state);
            obx_free(channel);
            return;
        }
        r->build = build_list;
        r->q = q; /* its strings are state and channel, which the job frees */
        r->state = state;
        r->list_channel = channel;
        submit_read(api, req, r);
        return;
    }
    obx_buf_init(&b, 256 * 1024 * 1024);
    reply_doc(req, 200, &b, list_document(api->st, &q, &b));
    obx_free(state);
    obx_free(channel);
    obx_buf_release(&b);
}

static const char *actor(struct evhttp_request *req);
static enum obx_err append_holds(struct obx_api *api, struct obx_buf *b);

/*
 * Operator actions (retry, cancel, ack, pause, bulk) and the readiness probe write through
 * the store thread like everything else, but wait for their group's commit in place
 * (obx_storeq_call): they are rare, and answering them in line keeps each handler whole.
 * The hot paths (enqueue, webhooks, delivery) never wait.
 */
#define COUNT_CAP 100000 /* a count stops here: "100000 or more" */

enum op_kind { OP_RETRY, OP_CANCEL, OP_ACK, OP_PROBE, OP_PAUSE, OP_RESUME, OP_BULK };

struct op_call {
    enum op_kind kind;
    const char *channel, *ext_id, *reason, *by;
    const char *scope; /* OP_PAUSE, OP_RESUME: OBX_PAUSE_CHANNEL (channel) or _TENANT (ext_id) */
    int64_t id;
    const char *const *keys, *const *values; /* OP_PROBE */
    const struct obx_store_dash_filter *filter;
    int retry, limit;
    int64_t out;  /* OP_BULK: messages touched */
    int64_t left; /* OP_BULK on PostgreSQL: messages still matching, capped at COUNT_CAP */
    int created;  /* OP_PAUSE */
};

static enum obx_err
run_op(struct obx_store *st, void *arg)
{
    struct op_call *o = arg;
    enum obx_err err;

    switch (o->kind) {
    case OP_RETRY: return obx_store_retry(st, o->channel, o->ext_id, o->reason);
    case OP_CANCEL: return obx_store_cancel(st, o->channel, o->ext_id, o->reason);
    case OP_ACK: return obx_inbox_ack(st, o->id);
    case OP_PROBE:
        if (obx_store_pg_in_use(st)) {
            err = obx_store_pg_ping(st->pg);
            return err == OBX_OK ? obx_store_check_quota(st) : err;
        }
        err = obx_store_publish_state(st, o->keys, o->values, 1);
        return err == OBX_OK ? obx_store_check_quota(st) : err; /* producers would get 507 */
    case OP_PAUSE:
        return obx_store_dash_pause(st, o->scope, o->channel, o->reason, o->by, &o->created);
    case OP_RESUME: return obx_store_dash_resume(st, o->scope, o->channel, o->by);
    case OP_BULK:
        err = obx_store_dash_bulk(st, o->filter, o->retry, o->limit, o->reason, &o->out);
        /* The loop has no connection there: what is left is counted here. */
        if (err == OBX_OK && obx_store_pg_in_use(st))
            err = obx_store_dash_count(st, o->filter, COUNT_CAP, &o->left);
        return err;
    }
    return OBX_EINVAL;
}

/* Store thread: OBX_ENOTFOUND unless tenant `arg` is in the registry. */
static int
tenant_found(void *ctx, const struct obx_tenant_row *t)
{
    (void)ctx;
    (void)t;
    return 1;
}

static enum obx_err
run_tenant_exists(struct obx_store *st, void *arg)
{
    return obx_store_tenant_list(st, arg, tenant_found, NULL);
}

static void
on_action(struct obx_api *api, struct evhttp_request *req, char **seg, int retry)
{
    int dash = strcmp(actor(req), "dashboard") == 0;
    enum obx_err err;
    struct op_call op = {retry ? OP_RETRY : OP_CANCEL, seg[2], seg[3], NULL, NULL};

    op.reason = retry ? (dash ? "retried from the dashboard" : "retried over the API")
                      : (dash ? "cancelled from the dashboard" : "cancelled over the API");
    err = obx_storeq_call(api->q, run_op, &op);

    if (err == OBX_ENOTFOUND) {
        obx_httpd_error(req, 404, "not_found", "no such message", NULL);
        return;
    }
    if (err == OBX_ECONFLICT) {
        obx_httpd_error(req, 409, "invalid_state",
                        retry ? "only failed or accepted messages can be retried"
                              : "only queued messages can be cancelled",
                        "state");
        return;
    }
    if (err != OBX_OK) {
        reply_write_error(api, req, err);
        return;
    }
    if (retry && api->worker)
        obx_worker_notify(api->worker);
    reply_message(api, req, seg[2], seg[3]);
}

static void
on_retry(struct obx_api *api, struct evhttp_request *req, char **seg)
{
    on_action(api, req, seg, 1);
}

static void
on_cancel(struct obx_api *api, struct evhttp_request *req, char **seg)
{
    on_action(api, req, seg, 0);
}

/* What /v1/stats reads from the store (the rest comes from the worker, on the loop). */
struct stats_read {
    struct obx_storeq_job job; /* PostgreSQL: collect_stats on the store thread */
    struct obx_api *api;
    struct evhttp_request *req;
    int64_t now_ms;
    struct obx_channel_stats *s;
    size_t n;
    int64_t sent;
    int64_t rejected_signature, rejected_too_large;
    struct obx_tenant_stats_set ts;
    char *owners;         /* each channel's tenant, OBX_TENANT_NAME_MAX + 1 bytes apiece */
    struct obx_buf holds; /* PostgreSQL: the open pauses, a JSON array */
};

static enum obx_err
collect_stats(struct obx_store *st, void *arg)
{
    struct stats_read *d = arg;
    enum obx_err err = obx_query_stats(st, &d->s, &d->n);

    if (err == OBX_OK)
        err = obx_query_count_accepted_since(st, d->now_ms - 60000, &d->sent);
    if (err == OBX_OK)
        err = obx_query_webhook_rejections(st, &d->rejected_signature, &d->rejected_too_large);
    /* SPEC §11: per tenant, pause and pace from the worker's lanes (added by reply_stats). */
    if (err == OBX_OK)
        err = obx_store_tenant_stats_collect(st, &d->ts);
    if (err == OBX_OK && d->n && !(d->owners = obx_calloc(d->n, OBX_TENANT_NAME_MAX + 1)))
        err = OBX_ENOMEM;
    if (err == OBX_OK)
        err = obx_store_tenant_stats_owners(st, d->s, d->n, d->owners);
    if (err == OBX_OK && obx_store_pg_in_use(st))
        err = obx_store_dash_holds(st, &d->holds);
    return err;
}

/* Loop thread: the worker's part, the document, the answer; frees what d holds. */
static void
reply_stats(struct obx_api *api, struct evhttp_request *req, struct stats_read *d, enum obx_err err)
{
    struct obx_view_stats_extra x = {0};
    struct obx_worker_stats ws = {0};
    struct obx_buf b;

    x.now_ms = d->now_ms;
    x.webhooks_rejected_signature = d->rejected_signature;
    x.webhooks_rejected_too_large = d->rejected_too_large;
    if (api->worker) {
        obx_worker_stats(api->worker, &ws);
        x.paused_reason = ws.paused_reason;
        x.paused_until_ms = ws.paused_until_ms;
    }
    x.send_rate_per_min = (double)d->sent;
    if (err == OBX_OK) {
        if (api->worker)
            obx_worker_tenant_stats(api->worker, &d->ts);
        obx_store_tenant_stats_finish(&d->ts);
        x.tenants = &d->ts;
        x.channel_owners = api->worker ? d->owners : NULL;
    }
    obx_buf_init(&b, 64 * 1024 * 1024);
    if (err == OBX_OK)
        err = obx_view_stats(&b, d->s, d->n, &x);
    /* On PostgreSQL the store thread read them with the rest. */
    if (err == OBX_OK && !obx_store_pg_in_use(api->st))
        err = append_holds(api, &b);
    else if (err == OBX_OK && b.len && obx_buf_str(&b)[b.len - 1] == '}') {
        b.len--;
        err = obx_buf_printf(&b, ",\"holds\":%s}", obx_buf_str(&d->holds));
    }
    if (obx_store_pg_in_use(api->st) && (err == OBX_EDB || err == OBX_EIO)) {
        reply_db_away(req, err);
    } else {
        reply_doc(req, 200, &b, err);
    }
    obx_buf_release(&b);
    obx_store_tenant_stats_release(&d->ts);
    obx_free(d->owners);
    obx_free(d->s);
    obx_buf_release(&d->holds);
}

static void
on_stats_read(void *arg, enum obx_err err)
{
    struct stats_read *d = arg;

    reply_stats(d->api, d->req, d, err);
    obx_free(d);
}

static void
on_stats(struct obx_api *api, struct evhttp_request *req, char **seg)
{
    struct stats_read local = {0}, *d = &local;

    (void)seg;
    if (obx_store_pg_in_use(api->st)) {
        /* The loop has no connection there: the reads run on the store thread. */
        d = obx_calloc(1, sizeof *d);
        if (!d) {
            obx_httpd_error(req, 503, "unavailable", "out of memory", NULL);
            return;
        }
    }
    d->api = api;
    d->req = req;
    d->now_ms = obx_now_ms(api->st->clock);
    obx_buf_init(&d->holds, 1024 * 1024);
    if (d != &local) {
        submit_store_read(api, &d->job, collect_stats, on_stats_read, d);
        return;
    }
    reply_stats(api, req, d, collect_stats(api->st, d));
}

static int
on_inbox_row(void *ctx, const struct obx_inbox_row *r)
{
    struct list_ctx *l = ctx;

    if (l->n++)
        l->err = obx_buf_puts(l->b, ",");
    if (l->err == OBX_OK)
        l->err = obx_view_inbox(l->b, r);
    return l->err != OBX_OK;
}

/* {"replies":[...],"next_cursor":...}: up to limit unacknowledged replies after id `after`. */
static enum obx_err
inbox_document(struct obx_store *st, int64_t after, int limit, struct obx_buf *b)
{
    struct list_ctx l = {b, 0, OBX_OK};
    int64_t next = 0;
    enum obx_err err = obx_buf_puts(b, "{\"replies\":[");

    if (err == OBX_OK)
        err = obx_query_inbox(st, after, limit, 0, on_inbox_row, &l, &next);
    return close_page(b, err == OBX_OK ? l.err : err, next);
}

static enum obx_err
build_inbox(struct obx_store *st, struct read_job *r)
{
    return inbox_document(st, r->q.before_id, r->q.limit, &r->body);
}

/* GET /v1/inbox?cursor=&limit=: unacknowledged replies, oldest first. */
static void
on_list_inbox(struct obx_api *api, struct evhttp_request *req, char **seg)
{
    char *limit = obx_httpd_query_param(req, "limit");
    char *cursor = obx_httpd_query_param(req, "cursor");
    int64_t after = 0, lim = 50;
    struct obx_buf b;

    (void)seg;
    obx_buf_init(&b, 256 * 1024 * 1024);
    if (limit && parse_int(limit, 1, 1000, &lim) != 0) {
        obx_httpd_error(req, 400, "invalid_value", "limit must be 1..1000", "limit");
        goto out;
    }
    if (cursor && parse_int(cursor, 0, INT64_MAX, &after) != 0) {
        obx_httpd_error(req, 400, "invalid_value", "cursor comes from next_cursor", "cursor");
        goto out;
    }
    if (obx_store_pg_in_use(api->st)) {
        struct read_job *r = read_job_new(req, 256 * 1024 * 1024);
        if (r) {
            r->build = build_inbox;
            r->q.before_id = after; /* the page: replies after this id, oldest first */
            r->q.limit = (int)lim;
            submit_read(api, req, r);
        }
        goto out;
    }
    reply_doc(req, 200, &b, inbox_document(api->st, after, (int)lim, &b));
out:
    obx_free(limit);
    obx_free(cursor);
    obx_buf_release(&b);
}

/* POST /v1/inbox/{id}/ack: idempotent. */
static void
on_ack_inbox(struct obx_api *api, struct evhttp_request *req, char **seg)
{
    struct op_call op = {.kind = OP_ACK};
    enum obx_err err = parse_int(seg[2], 1, INT64_MAX, &op.id) == 0
                           ? obx_storeq_call(api->q, run_op, &op)
                           : OBX_ENOTFOUND;
    struct obx_buf b;

    if (err == OBX_ENOTFOUND) {
        obx_httpd_error(req, 404, "not_found", "no such reply", NULL);
        return;
    }
    if (err != OBX_OK) {
        reply_write_error(api, req, err);
        return;
    }
    obx_buf_init(&b, 128);
    reply_doc(req, 200, &b,
              obx_buf_printf(&b, "{\"id\":%lld,\"state\":\"acked\"}", (long long)op.id));
    obx_buf_release(&b);
}

/* Renders what was collected and answers with it. */
static void
reply_metrics(struct obx_api *api, struct evhttp_request *req, void *reads, enum obx_err err)
{
    struct obx_buf b;

    obx_buf_init(&b, 64 * 1024 * 1024);
    err = api->metrics_render(api->metrics_ctx, reads, err, &b);
    if (err != OBX_OK) {
        obx_httpd_error(req, 500, "internal", obx_strerror(err), NULL);
    } else {
        struct evbuffer *out = evbuffer_new();
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                          "text/plain; version=0.0.4; charset=utf-8");
        if (out)
            evbuffer_add(out, obx_buf_str(&b), b.len);
        evhttp_send_reply(req, 200, NULL, out);
        if (out)
            evbuffer_free(out);
    }
    obx_buf_release(&b);
}

/* PostgreSQL: /metrics's reads on the store thread. */
struct metrics_job {
    struct obx_storeq_job job;
    struct obx_api *api;
    struct evhttp_request *req;
    void *reads;
};

static enum obx_err
run_metrics(struct obx_store *st, void *arg)
{
    struct metrics_job *m = arg;
    enum obx_err err = OBX_OK;

    m->reads = m->api->metrics_collect(st, m->api->metrics_ctx, &err);
    return err;
}

static void
on_metrics_read(void *arg, enum obx_err err)
{
    struct metrics_job *m = arg;

    reply_metrics(m->api, m->req, m->reads, err);
    obx_free(m);
}

static void
on_metrics(struct obx_api *api, struct evhttp_request *req, char **seg)
{
    enum obx_err err = OBX_OK;
    void *reads;

    (void)seg;
    if (!api->metrics_collect) {
        obx_httpd_error(req, 404, "not_found", "no metrics here", NULL);
        return;
    }
    if (obx_store_pg_in_use(api->st)) {
        struct metrics_job *m = obx_calloc(1, sizeof *m);
        if (!m) {
            obx_httpd_error(req, 503, "unavailable", "out of memory", NULL);
            return;
        }
        m->api = api;
        m->req = req;
        submit_store_read(api, &m->job, run_metrics, on_metrics_read, m);
        return;
    }
    reads = api->metrics_collect(api->st, api->metrics_ctx, &err);
    reply_metrics(api, req, reads, err);
}

void
obx_api_set_metrics(struct obx_api *api, obx_api_metrics_collect_fn collect,
                    obx_api_metrics_render_fn render, void *ctx)
{
    api->metrics_collect = collect;
    api->metrics_render = render;
    api->metrics_ctx = ctx;
}

static void
on_healthz(struct obx_api *api, struct evhttp_request *req, char **seg)
{
    struct obx_buf b;

    (void)api;
    (void)seg;
    obx_buf_init(&b, 64);
    reply_doc(req, 200, &b, obx_buf_puts(&b, "{\"status\":\"ok\"}"));
    obx_buf_release(&b);
}

/*
 * Ready when a small real write commits (a lock alone would not show a full disk). A
 * success also clears the memory of an earlier failed commit, so readiness comes back
 * without waiting for a producer's request.
 *
 * The write is fsync'ed: probing on every request would let anyone who can reach /readyz
 * (open without the token) load the disk. So the probe runs at most once every
 * READYZ_PROBE_MS, and again when a commit failed since the last one; other requests are
 * answered from its result. The probe row's value counts the probes.
 */
static void
on_readyz(struct obx_api *api, struct evhttp_request *req, char **seg)
{
    static const char *const keys[] = {"readyz_probe"};
    int64_t now = obx_mono_ms(api->clock);
    char count[24];
    const char *values[] = {count};
    enum obx_err err;
    struct obx_buf b;

    (void)seg;
    if (api->probes == 0 || now - api->probe_mono_ms >= READYZ_PROBE_MS ||
        (api->last_write_failed && api->probe_mono_ms <= api->last_failure_mono_ms)) {
        snprintf(count, sizeof count, "%lld", (long long)++api->probes);
        struct op_call op = {.kind = OP_PROBE, .keys = keys, .values = values};
        api->probe_err = obx_storeq_call(api->q, run_op, &op);
        api->probe_mono_ms = now;
    }
    err = api->probe_err;
    /* A tiny probe can fit where a real batch does not (a nearly full disk): stay not
     * ready for a moment after a failed commit, then trust the probe. */
    if (err == OBX_OK && api->last_write_failed &&
        obx_mono_ms(api->clock) - api->last_failure_mono_ms < READY_AFTER_FAILURE_MS)
        err = OBX_EFULL;
    if (err == OBX_OK || err == OBX_EQUOTA)
        api->last_write_failed = 0;
    obx_buf_init(&b, 256);
    if (err == OBX_OK) {
        reply_doc(req, 200, &b, obx_buf_puts(&b, "{\"status\":\"ready\"}"));
    } else {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        obx_httpd_error(req, 503, "not_ready",
                        "the database cannot be written or is over max_db_size", NULL);
    }
    obx_buf_release(&b);
}

/* ---- dashboard (SPEC §13): pauses, chart history, counts, bulk actions, conversations ---- */

/* Who acts, for reasons and the audit trail: the dashboard says so; anything else is "api". */
static const char *
actor(struct evhttp_request *req)
{
    const char *c = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Outbox-Client");

    return c && strcmp(c, "dashboard") == 0 ? "dashboard" : "api";
}

/* The JSON object body of a dashboard POST, or NULL after answering the error. */
static obx_json *
read_object(struct obx_api *api, struct evhttp_request *req)
{
    struct obx_json_error je = {0};
    obx_json *doc = NULL;
    char *body = NULL;
    size_t len = 0;
    enum obx_err err = obx_httpd_body(req, 64 * 1024, &body, &len);

    if (err == OBX_ETOOBIG) {
        obx_httpd_error(req, 413, "too_large", "the body exceeds 64 KiB", NULL);
        return NULL;
    }
    if (err != OBX_OK) {
        obx_httpd_error(req, 500, "internal", "cannot read the body", NULL);
        return NULL;
    }
    err = obx_json_parse(body, len, 64 * 1024, (int)api->cfg->max_json_depth, &doc, &je);
    obx_free(body);
    if (err != OBX_OK) {
        obx_httpd_error(req, 400, je.code, je.message, NULL);
        return NULL;
    }
    if (!obx_json_is_object(doc)) {
        obx_json_free(doc);
        obx_httpd_error(req, 400, "invalid_json", "the body must be a JSON object", NULL);
        return NULL;
    }
    return doc;
}

/*
 * An optional string member of 1..max bytes: *out = NULL when absent or null; -1 after
 * answering 400 naming the field.
 */
static int
opt_string(struct evhttp_request *req, const obx_json *doc, const char *name, size_t max,
           const char **out)
{
    const obx_json *j = obx_json_get(doc, name);
    size_t len;

    *out = NULL;
    if (!j || obx_json_is_null(j))
        return 0;
    len = obx_json_is_string(j) ? strlen(obx_json_string(j)) : 0;
    if (len == 0 || len > max) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s must be a string of 1..%zu bytes", name, max);
        obx_httpd_error(req, 400, "invalid_value", msg, name);
        return -1;
    }
    *out = obx_json_string(j);
    return 0;
}

/*
 * POST /v1/pause and /v1/resume: {"channel_id": "..."} or {"tenant": "..."}, and for a pause
 * an optional "reason". A tenant is paused only when it exists ("default" always does: the
 * configured key's); a resume needs no tenant, so that a removed tenant's hold can end.
 */
static void
on_pause_resume(struct obx_api *api, struct evhttp_request *req, int pause)
{
    obx_json *doc = read_object(api, req);
    const char *channel = NULL, *reason = NULL, *tenant = NULL, *by = actor(req), *key, *scope;
    char why[320];
    struct obx_buf b;
    int created = 0;
    enum obx_err err;

    if (!doc)
        return;
    if (opt_string(req, doc, "tenant", OBX_TENANT_NAME_MAX, &tenant) != 0 ||
        opt_string(req, doc, "channel_id", 255, &channel) != 0 ||
        opt_string(req, doc, "reason", 255, &reason) != 0)
        goto out;
    if (tenant && channel) {
        obx_httpd_error(req, 400, "invalid_value",
                        "give channel_id or tenant, not both: a pause holds one of them", "tenant");
        goto out;
    }
    if (!tenant && !channel) {
        obx_httpd_error(req, 400, "missing_field", "channel_id or tenant is required",
                        "channel_id");
        goto out;
    }
    scope = tenant ? OBX_PAUSE_TENANT : OBX_PAUSE_CHANNEL;
    key = tenant ? tenant : channel;
    if (pause) {
        struct op_call op = {
            .kind = OP_PAUSE, .scope = scope, .channel = key, .reason = why, .by = by};
        snprintf(why, sizeof why, "%s", reason ? reason : by);
        err = tenant && strcmp(tenant, "default") != 0
                  ? obx_storeq_call(api->q, run_tenant_exists, (void *)tenant)
                  : OBX_OK;
        if (err == OBX_ENOTFOUND) {
            obx_httpd_error(req, 404, "not_found", "no such tenant", "tenant");
            goto out;
        }
        if (err == OBX_OK)
            err = obx_storeq_call(api->q, run_op, &op);
        created = op.created;
        /* Messages claimed ahead but not sent yet must not go out either. */
        if (err == OBX_OK && api->worker)
            obx_worker_release_held(api->worker, scope, key);
    } else {
        struct op_call op = {.kind = OP_RESUME, .scope = scope, .channel = key, .by = by};
        err = obx_storeq_call(api->q, run_op, &op);
        created = err == OBX_OK;
        if (err == OBX_ENOTFOUND)
            err = OBX_OK;
    }
    if (err != OBX_OK) {
        reply_write_error(api, req, err);
        goto out;
    }
    if (created)
        obx_log(OBX_LOG_INFO, pause ? "paused" : "resumed", OBX_KS("scope", scope),
                OBX_KS(tenant ? "tenant" : "channel_id", key), OBX_KS("by", by));
    if (!pause && api->worker)
        obx_worker_notify(api->worker);
    obx_buf_init(&b, 1024);
    err = obx_buf_printf(&b, "{\"scope\":\"%s\",\"%s\":", scope, tenant ? "tenant" : "channel_id");
    if (err == OBX_OK)
        err = obx_buf_json_str(&b, key);
    if (err == OBX_OK)
        err = obx_buf_printf(&b, ",\"paused\":%s,\"changed\":%s}", pause ? "true" : "false",
                             created ? "true" : "false");
    reply_doc(req, 200, &b, err);
    obx_buf_release(&b);
out:
    obx_json_free(doc);
}

static void
on_pause(struct obx_api *api, struct evhttp_request *req, char **seg)
{
    (void)seg;
    on_pause_resume(api, req, 1);
}

static void
on_resume(struct obx_api *api, struct evhttp_request *req, char **seg)
{
    (void)seg;
    on_pause_resume(api, req, 0);
}

/* Appends "holds":[...] (the open pauses) to the stats document in b. */
static enum obx_err
append_holds(struct obx_api *api, struct obx_buf *b)
{
    return obx_store_dash_append_holds(api->st, b);
}

struct overview_ctx {
    struct obx_buf *b;
    int n;
    int64_t now_ms;
    int64_t totals[OBX_N_STATES];
    int64_t oldest_ms;
    enum obx_err err;
};

static enum obx_err
counts_json(struct obx_buf *b, const int64_t *c)
{
    enum obx_err err = obx_buf_puts(b, "{");

    for (int i = 0; err == OBX_OK && i < OBX_N_STATES; i++)
        err = obx_buf_printf(b, "%s\"%s\":%lld", i ? "," : "",
                             obx_store_state_name((enum obx_state)i), (long long)c[i]);
    return err == OBX_OK ? obx_buf_puts(b, "}") : err;
}

static double
age_s(int64_t now_ms, int64_t at_ms)
{
    return at_ms ? (double)(now_ms - at_ms) / 1000.0 : 0;
}

static int
on_overview_row(void *ctx, const struct obx_overview_row *r)
{
    struct overview_ctx *o = ctx;
    enum obx_err err = obx_buf_puts(o->b, o->n++ ? ",{\"channel_id\":" : "{\"channel_id\":");

    for (int i = 0; i < OBX_N_STATES; i++)
        o->totals[i] += r->counts[i];
    if (r->oldest_queued_at_ms && (!o->oldest_ms || r->oldest_queued_at_ms < o->oldest_ms))
        o->oldest_ms = r->oldest_queued_at_ms;
    if (err == OBX_OK)
        err = obx_buf_json_str(o->b, r->channel_id);
    if (err == OBX_OK)
        err = obx_buf_puts(o->b, ",\"counts\":");
    if (err == OBX_OK)
        err = counts_json(o->b, r->counts);
    if (err == OBX_OK)
        err = obx_buf_puts(o->b, ",\"tenant\":");
    if (err == OBX_OK)
        err = obx_buf_json_str(o->b, r->tenant);
    if (err == OBX_OK)
        err = obx_buf_printf(o->b, ",\"oldest_queued_age_s\":%.3f}",
                             age_s(o->now_ms, r->oldest_queued_at_ms));
    o->err = err;
    return err != OBX_OK;
}

static int
on_overview_tenant(void *ctx, const struct obx_overview_row *r)
{
    struct overview_ctx *o = ctx;
    enum obx_err err = obx_buf_puts(o->b, o->n++ ? ",{\"tenant\":" : "{\"tenant\":");

    if (err == OBX_OK)
        err = obx_buf_json_str(o->b, r->tenant);
    if (err == OBX_OK)
        err = obx_buf_puts(o->b, ",\"counts\":");
    if (err == OBX_OK)
        err = counts_json(o->b, r->counts);
    if (err == OBX_OK)
        err = obx_buf_puts(o->b, "}");
    o->err = err;
    return err != OBX_OK;
}

/*
 * GET /v1/stats/overview: what the dashboard's overview refreshes, from kept counts (no
 * count over the outbox): totals and channels per state, oldest queued, sends of the last
 * minute, the worker's pause and circuit, the holds.
 */
/* The overview's store part: the tenants' and the channels' counts and the sends of the
 * last minute. */
static enum obx_err
overview_counts(struct obx_store *st, struct overview_ctx *o, int64_t *sent)
{
    enum obx_err err = obx_buf_puts(o->b, "{\"tenants\":[");

    if (err == OBX_OK)
        err = obx_store_dash_overview_tenants(st, on_overview_tenant, o);
    if (err == OBX_OK)
        err = o->err;
    o->n = 0;
    if (err == OBX_OK)
        err = obx_buf_puts(o->b, "],\"channels\":[");
    if (err == OBX_OK)
        err = obx_store_dash_overview(st, on_overview_row, o);
    if (err == OBX_OK)
        err = o->err;
    if (err == OBX_OK)
        err = obx_query_count_accepted_since(st, o->now_ms - 60000, sent);
    return err;
}

/* The worker's paused tenants, as "tenant_pauses" entries. */
struct tenant_pauses {
    struct obx_buf *b;
    int n;
    enum obx_err err;
};

static int
on_tenant_pause(void *ctx, const struct obx_worker_tenant *t)
{
    struct tenant_pauses *p = ctx;
    enum obx_err err;

    if (!t->paused_reason || t->held_elsewhere)
        return 0; /* another node's lane: not this worker's to report */
    err = obx_buf_puts(p->b, p->n++ ? ",{\"tenant\":" : "{\"tenant\":");
    if (err == OBX_OK)
        err = obx_buf_json_str(p->b, t->name);
    if (err == OBX_OK)
        err = obx_buf_puts(p->b, ",\"reason\":");
    if (err == OBX_OK)
        err = obx_buf_json_str(p->b, t->paused_reason);
    if (err == OBX_OK)
        err = obx_buf_puts(p->b, ",\"until\":");
    if (err == OBX_OK)
        err = obx_view_time_or_null(p->b, t->paused_until_ms);
    if (err == OBX_OK)
        err = obx_buf_puts(p->b, "}");
    p->err = err;
    return err != OBX_OK;
}

/* The rest, on the loop: totals, the worker's pause and circuit; holds: the open pauses
 * read with the counts (PostgreSQL), NULL to read them here (SQLite). */
static void
overview_reply(struct obx_api *api, struct evhttp_request *req, struct overview_ctx *o,
               int64_t sent, const struct obx_buf *holds, enum obx_err err)
{
    struct obx_worker_stats ws = {0};
    struct obx_buf *b = o->b;

    if (api->worker)
        obx_worker_stats(api->worker, &ws);
    if (err == OBX_OK)
        err = obx_buf_puts(b, "],\"counts\":");
    if (err == OBX_OK)
        err = counts_json(b, o->totals);
    if (err == OBX_OK)
        err = obx_buf_printf(b,
                             ",\"oldest_queued_age_s\":%.3f,\"send_rate_per_min\":%lld,"
                             "\"circuit\":",
                             age_s(o->now_ms, o->oldest_ms), (long long)sent);
    if (err == OBX_OK)
        err = obx_view_str_or_null(b, ws.circuit);
    if (err == OBX_OK)
        err = obx_buf_puts(b, ",\"paused\":");
    if (err == OBX_OK && ws.paused_reason) {
        err = obx_buf_puts(b, "{\"reason\":");
        if (err == OBX_OK)
            err = obx_buf_json_str(b, ws.paused_reason);
        if (err == OBX_OK)
            err = obx_buf_puts(b, ",\"until\":");
        if (err == OBX_OK)
            err = obx_view_time_or_null(b, ws.paused_until_ms);
        if (err == OBX_OK)
            err = obx_buf_puts(b, "}");
    } else if (err == OBX_OK) {
        err = obx_buf_puts(b, "null");
    }
    if (err == OBX_OK) {
        struct tenant_pauses tp = {b, 0, OBX_OK};
        err = obx_buf_puts(b, ",\"tenant_pauses\":[");
        if (err == OBX_OK && api->worker)
            obx_worker_tenants(api->worker, on_tenant_pause, &tp);
        if (err == OBX_OK)
            err = tp.err;
        if (err == OBX_OK)
            err = obx_buf_puts(b, "]}");
    }
    if (err == OBX_OK && !holds)
        err = append_holds(api, b);
    else if (err == OBX_OK) {
        b->len--; /* reopen the object */
        err = obx_buf_printf(b, ",\"holds\":%s}", obx_buf_str(holds));
    }
    if (obx_store_pg_in_use(api->st) && (err == OBX_EDB || err == OBX_EIO))
        reply_db_away(req, err);
    else
        reply_doc(req, 200, b, err);
}

/* PostgreSQL: the store part on the store thread, the rest on the loop. */
struct overview_read {
    struct obx_storeq_job job;
    struct obx_api *api;
    struct evhttp_request *req;
    struct obx_buf b, holds;
    struct overview_ctx o;
    int64_t sent;
};

static enum obx_err
run_overview_read(struct obx_store *st, void *arg)
{
    struct overview_read *d = arg;
    enum obx_err err = overview_counts(st, &d->o, &d->sent);

    return err == OBX_OK ? obx_store_dash_holds(st, &d->holds) : err;
}

static void
on_overview_read(void *arg, enum obx_err err)
{
    struct overview_read *d = arg;

    overview_reply(d->api, d->req, &d->o, d->sent, &d->holds, err);
    obx_buf_release(&d->b);
    obx_buf_release(&d->holds);
    obx_free(d);
}

/*
 * GET /v1/stats/overview: what the dashboard's overview refreshes, from kept counts (no
 * count over the outbox): totals and channels per state, oldest queued, sends of the last
 * minute, the worker's pause and circuit, the holds.
 */
static void
on_overview(struct obx_api *api, struct evhttp_request *req, char **seg)
{
    struct obx_buf b;
    struct overview_ctx o = {&b, 0, 0, {0}, 0, OBX_OK};
    int64_t sent = 0;
    enum obx_err err;

    (void)seg;
    if (obx_store_pg_in_use(api->st)) {
        struct overview_read *d = obx_calloc(1, sizeof *d);
        if (!d) {
            obx_httpd_error(req, 503, "unavailable", "out of memory", NULL);
            return;
        }
        d->api = api;
        d->req = req;
        obx_buf_init(&d->b, 64 * 1024 * 1024);
        obx_buf_init(&d->holds, 1024 * 1024);
        d->o = o;
        d->o.b = &d->b;
        d->o.now_ms = obx_now_ms(api->st->clock);
        submit_store_read(api, &d->job, run_overview_read, on_overview_read, d);
        return;
    }
    o.now_ms = obx_now_ms(api->st->clock);
    obx_buf_init(&b, 64 * 1024 * 1024);
    err = overview_counts(api->st, &o, &sent);
    overview_reply(api, req, &o, sent, NULL, err);
    obx_buf_release(&b);
}

/* The chart's document: per-minute (last hour) or per-hour (7 days) counts. */
static enum obx_err
history_doc(struct obx_store *st, int64_t now_ms, int week, struct obx_buf *b)
{
    static const char *const kinds[] = {"sent", "accepted", "failed", "confirmed"};
    int n = week ? 168 : 60;
    int64_t bucket = week ? 3600000 : 60000;
    struct obx_history_point pts[168];
    enum obx_err err = obx_store_dash_history(st, now_ms, bucket, n, pts);

    if (err == OBX_OK)
        err = obx_buf_printf(b, "{\"range\":\"%s\",\"bucket_seconds\":%lld,\"t\":[",
                             week ? "week" : "hour", (long long)(bucket / 1000));
    for (int i = 0; err == OBX_OK && i < n; i++)
        err = obx_buf_printf(b, "%s%lld", i ? "," : "", (long long)(pts[i].at_ms / 1000));
    for (int k = 0; err == OBX_OK && k < 4; k++) {
        err = obx_buf_printf(b, "],\"%s\":[", kinds[k]);
        for (int i = 0; err == OBX_OK && i < n; i++) {
            int64_t v = k == 0   ? pts[i].sent
                        : k == 1 ? pts[i].accepted
                        : k == 2 ? pts[i].failed
                                 : pts[i].confirmed;
            err = obx_buf_printf(b, "%s%lld", i ? "," : "", (long long)v);
        }
    }
    return err == OBX_OK ? obx_buf_puts(b, "]}") : err;
}

static enum obx_err
build_history(struct obx_store *st, struct read_job *r)
{
    return history_doc(st, r->now_ms, r->week, &r->body);
}

/* GET /v1/stats/history?range=hour|week: per-minute (last hour) or per-hour (7 days) counts. */
static void
on_history(struct obx_api *api, struct evhttp_request *req, char **seg)
{
    char *range = obx_httpd_query_param(req, "range");
    int week = range && strcmp(range, "week") == 0;
    struct obx_buf b;

    (void)seg;
    if (range && !week && strcmp(range, "hour") != 0) {
        obx_httpd_error(req, 400, "invalid_value", "range must be hour or week", "range");
        obx_free(range);
        return;
    }
    obx_free(range);
    if (obx_store_pg_in_use(api->st)) {
        struct read_job *r = read_job_new(req, 64 * 1024);
        if (r) {
            r->build = build_history;
            r->now_ms = obx_now_ms(api->st->clock);
            r->week = week;
            submit_read(api, req, r);
        }
        return;
    }
    obx_buf_init(&b, 64 * 1024);
    reply_doc(req, 200, &b, history_doc(api->st, obx_now_ms(api->st->clock), week, &b));
    obx_buf_release(&b);
}

/* GET /v1/nodes on PostgreSQL, built on the store thread. */
struct nodes_doc {
    struct obx_buf *b;
    int n;
    enum obx_err err;
};

/* One node's entry, with the tenants it holds. */
static int
node_doc(void *ctx, const struct obx_store_pg_node_row *n)
{
    struct nodes_doc *d = ctx;
    enum obx_err err = d->n++ ? obx_buf_puts(d->b, ",") : OBX_OK;

    if (err == OBX_OK)
        err = obx_view_node(d->b, n);
    d->err = err;
    return err != OBX_OK;
}

static enum obx_err
build_nodes(struct obx_store *st, struct read_job *r)
{
    struct nodes_doc d = {&r->body, 0, OBX_OK};
    enum obx_err err = obx_buf_puts(&r->body, "{\"backend\":\"postgresql\",\"nodes\":[");

    if (err == OBX_OK)
        err = obx_store_pg_list_nodes_of(st, node_doc, &d);
    if (err == OBX_OK)
        err = d.err;
    return err == OBX_OK ? obx_buf_puts(&r->body, "]}") : err;
}

/*
 * GET /v1/nodes: the serve nodes sharing the PostgreSQL database, live ones first, with the
 * tenants each holds and their fencing epochs (SPEC §12); on SQLite there is one node, this
 * one, and the list is empty.
 */
static void
on_nodes(struct obx_api *api, struct evhttp_request *req, char **seg)
{
    struct read_job *r;
    struct obx_buf b;

    (void)seg;
    if (!obx_store_pg_in_use(api->st)) {
        obx_buf_init(&b, 64);
        reply_doc(req, 200, &b, obx_buf_puts(&b, "{\"backend\":\"sqlite\",\"nodes\":[]}"));
        obx_buf_release(&b);
        return;
    }
    r = read_job_new(req, 16 * 1024 * 1024);
    if (r) {
        r->build = build_nodes;
        submit_read(api, req, r);
    }
}

#define BULK_MAX 1000 /* messages one bulk request touches at most */

/* Reads state, channel_id and external_conversation_id; -1 after answering 400. */
static int
parse_filter(struct evhttp_request *req, char **state, char **channel, char **conv,
             struct obx_store_dash_filter *f)
{
    *state = obx_httpd_query_param(req, "state");
    *channel = obx_httpd_query_param(req, "channel_id");
    *conv = obx_httpd_query_param(req, "external_conversation_id");
    f->state = *state && **state ? *state : NULL;
    f->channel_id = *channel && **channel ? *channel : NULL;
    f->conversation = *conv && **conv ? *conv : NULL;
    if (f->state && obx_store_state_parse(f->state) < 0) {
        obx_httpd_error(req, 400, "invalid_value", "state must be a known state", "state");
        return -1;
    }
    return 0;
}

static enum obx_err
count_doc(struct obx_store *st, const struct obx_store_dash_filter *f, struct obx_buf *b)
{
    int64_t n = 0;
    enum obx_err err = obx_store_dash_count(st, f, COUNT_CAP, &n);

    return err == OBX_OK ? obx_buf_printf(b, "{\"count\":%lld,\"capped\":%s}", (long long)n,
                                          n >= COUNT_CAP ? "true" : "false")
                         : err;
}

static enum obx_err
build_count(struct obx_store *st, struct read_job *r)
{
    return count_doc(st, &r->filter, &r->body);
}

/* PostgreSQL: a read of the filter f on the store thread, its strings copied into r. */
static struct read_job *
filter_job(struct evhttp_request *req, const struct obx_store_dash_filter *f)
{
    struct read_job *r = read_job_new(req, 1024 * 1024);
    const char *strs[3] = {f->state, f->channel_id, f->conversation};

    if (!r)
        return NULL;
    r->filter = *f;
    for (int i = 0; i < 3; i++) {
        if (strs[i] && !(r->filter_strings[i] = obx_strdup(strs[i]))) {
            on_read_done(r, OBX_ENOMEM);
            return NULL;
        }
    }
    r->filter.state = r->filter_strings[0];
    r->filter.channel_id = r->filter_strings[1];
    r->filter.conversation = r->filter_strings[2];
    return r;
}

/* GET /v1/messages/count?state=&channel_id=&external_conversation_id=: capped at COUNT_CAP. */
static void
on_count(struct obx_api *api, struct evhttp_request *req, char **seg)
{
    char *state, *channel, *conv;
    struct obx_store_dash_filter f = {0};
    struct obx_buf b;

    (void)seg;
    obx_buf_init(&b, 256);
    if (parse_filter(req, &state, &channel, &conv, &f) == 0 &&
        parse_window(api, req, &f.win) == 0) {
        if (obx_store_pg_in_use(api->st)) {
            struct read_job *r = filter_job(req, &f);
            if (r) {
                r->build = build_count;
                submit_read(api, req, r);
            }
        } else {
            reply_doc(req, 200, &b, count_doc(api->st, &f, &b));
        }
    }
    obx_buf_release(&b);
    obx_free(state);
    obx_free(channel);
    obx_free(conv);
}

/*
 * POST /v1/messages/retry|cancel?state=&channel_id=&external_conversation_id=&limit=:
 * touches at most limit (<= BULK_MAX) matching messages; repeat until "remaining" is 0.
 */
static void
on_bulk(struct obx_api *api, struct evhttp_request *req, int retry)
{
    char *state, *channel, *conv, *limit = obx_httpd_query_param(req, "limit");
    struct obx_store_dash_filter f = {0};
    int64_t lim = 500, touched = 0, left = 0;
    char reason[64];
    struct obx_buf b;
    enum obx_err err;

    obx_buf_init(&b, 256);
    if (parse_filter(req, &state, &channel, &conv, &f) != 0 || parse_window(api, req, &f.win) != 0)
        goto out;
    if (!f.state)
        f.state = retry ? "failed" : "queued";
    if (retry ? strcmp(f.state, "failed") != 0 && strcmp(f.state, "accepted") != 0
              : strcmp(f.state, "queued") != 0) {
        obx_httpd_error(req, 409, "invalid_state",
                        retry ? "only failed or accepted messages can be retried"
                              : "only queued messages can be cancelled",
                        "state");
        goto out;
    }
    if (limit && parse_int(limit, 1, BULK_MAX, &lim) != 0) {
        obx_httpd_error(req, 400, "invalid_value", "limit must be 1..1000", "limit");
        goto out;
    }
    snprintf(reason, sizeof reason, "%s in bulk by %s", retry ? "retried" : "cancelled",
             actor(req));
    struct op_call op = {
        .kind = OP_BULK, .filter = &f, .retry = retry, .limit = (int)lim, .reason = reason};
    err = obx_storeq_call(api->q, run_op, &op);
    touched = op.out;
    if (err != OBX_OK) {
        reply_write_error(api, req, err);
        goto out;
    }
    if (touched)
        obx_log(OBX_LOG_INFO, retry ? "bulk retry" : "bulk cancel", OBX_KI("messages", touched),
                OBX_KS("by", actor(req)));
    if (retry && touched && api->worker)
        obx_worker_notify(api->worker);
    err = obx_store_pg_in_use(api->st) ? OBX_OK
                                       : obx_store_dash_count(api->st, &f, COUNT_CAP, &left);
    if (obx_store_pg_in_use(api->st))
        left = op.left;
    if (err == OBX_OK)
        err = obx_buf_printf(&b, "{\"touched\":%lld,\"remaining\":%lld,\"capped\":%s}",
                             (long long)touched, (long long)left,
                             left >= COUNT_CAP ? "true" : "false");
    reply_doc(req, 200, &b, err);
out:
    obx_buf_release(&b);
    obx_free(state);
    obx_free(channel);
    obx_free(conv);
    obx_free(limit);
}

static void
on_bulk_retry(struct obx_api *api, struct evhttp_request *req, char **seg)
{
    (void)seg;
    on_bulk(api, req, 1);
}

static void
on_bulk_cancel(struct obx_api *api, struct evhttp_request *req, char **seg)
{
    (void)seg;
    on_bulk(api, req, 0);
}

static int
on_conv_row(void *ctx, const struct obx_conv_row *r)
{
    struct list_ctx *l = ctx;
    struct obx_buf *b = l->b;
    enum obx_err err = obx_buf_puts(b, l->n++ ? ",{\"external_message_id\":"
                                              : "{\"external_message_id\":");

    if (err == OBX_OK)
        err = obx_buf_json_str(b, r->external_message_id);
    if (err == OBX_OK)
        err = obx_buf_puts(b, ",\"state\":");
    if (err == OBX_OK)
        err = obx_buf_json_str(b, r->state);
    if (err == OBX_OK)
        err = obx_buf_puts(b, ",\"state_reason\":");
    if (err == OBX_OK)
        err = obx_view_str_or_null(b, r->state_reason);
    if (err == OBX_OK)
        err = obx_buf_printf(b, ",\"attempts\":%d,\"head\":%s,\"created_at\":", r->attempts,
                             r->head ? "true" : "false");
    if (err == OBX_OK)
        err = obx_view_time_or_null(b, r->created_at_ms);
    if (err == OBX_OK)
        err = obx_buf_puts(b, ",\"state_at\":");
    if (err == OBX_OK)
        err = obx_view_time_or_null(b, r->state_at_ms);
    if (err == OBX_OK)
        err = obx_buf_puts(b, ",\"next_attempt_at\":");
    if (err == OBX_OK)
        err = obx_view_time_or_null(b, r->next_attempt_at_ms);
    if (err == OBX_OK)
        err = obx_buf_puts(b, ",\"last_error\":");
    if (err == OBX_OK)
        err = obx_view_str_or_null(b, r->last_error);
    if (err == OBX_OK)
        err = obx_buf_puts(b, "}");
    l->err = err;
    return err != OBX_OK;
}

static enum obx_err
conversation_doc(struct obx_store *st, const char *channel, const char *conv, int64_t lim,
                 struct obx_buf *b)
{
    struct list_ctx l = {b, 0, OBX_OK};
    int truncated = 0;
    enum obx_err err = obx_buf_puts(b, "{\"channel_id\":");

    if (err == OBX_OK)
        err = obx_buf_json_str(b, channel);
    if (err == OBX_OK)
        err = obx_buf_puts(b, ",\"external_conversation_id\":");
    if (err == OBX_OK)
        err = obx_buf_json_str(b, conv);
    if (err == OBX_OK)
        err = obx_buf_puts(b, ",\"messages\":[");
    if (err == OBX_OK)
        err = obx_store_dash_conversation(st, channel, conv, (int)lim, on_conv_row, &l, &truncated);
    if (err == OBX_OK)
        err = l.err;
    return err == OBX_OK ? obx_buf_printf(b, "],\"truncated\":%s}", truncated ? "true" : "false")
                         : err;
}

static enum obx_err
build_conversation(struct obx_store *st, struct read_job *r)
{
    return conversation_doc(st, r->channel, r->id, r->limit, &r->body);
}

/*
 * GET /v1/conversations/{channel_id}/{external_conversation_id}?limit=: the unfinished
 * messages in sending order (or the last one when none is), the head first.
 */
static void
on_conversation(struct obx_api *api, struct evhttp_request *req, char **seg)
{
    char *limit = obx_httpd_query_param(req, "limit");
    int64_t lim = 200;
    struct obx_buf b;

    obx_buf_init(&b, 64 * 1024 * 1024);
    if (limit && parse_int(limit, 1, 1000, &lim) != 0) {
        obx_httpd_error(req, 400, "invalid_value", "limit must be 1..1000", "limit");
        goto out;
    }
    if (obx_store_pg_in_use(api->st)) {
        struct read_job *r = read_job_new(req, 64 * 1024 * 1024);
        if (!r)
            goto out;
        r->build = build_conversation;
        r->limit = lim;
        r->channel = obx_strdup(seg[2]);
        r->id = obx_strdup(seg[3]);
        if (!r->channel || !r->id)
            on_read_done(r, OBX_ENOMEM);
        else
            submit_read(api, req, r);
        goto out;
    }
    reply_doc(req, 200, &b, conversation_doc(api->st, seg[2], seg[3], lim, &b));
out:
    obx_free(limit);
    obx_buf_release(&b);
}

static int
on_found_channel(void *ctx, const char *channel_id)
{
    struct list_ctx *l = ctx;

    l->err = obx_buf_puts(l->b, l->n++ ? ",{\"channel_id\":" : "{\"channel_id\":");
    if (l->err == OBX_OK)
        l->err = obx_buf_json_str(l->b, channel_id);
    if (l->err == OBX_OK)
        l->err = obx_buf_puts(l->b, "}");
    return l->err != OBX_OK;
}

static enum obx_err
find_doc(struct obx_store *st, const char *id, struct obx_buf *b)
{
    struct list_ctx l = {b, 0, OBX_OK};
    enum obx_err err = obx_buf_puts(b, "{\"matches\":[");

    if (err == OBX_OK)
        err = obx_store_dash_find(st, id, 10000, on_found_channel, &l);
    if (err == OBX_OK)
        err = l.err;
    return err == OBX_OK ? obx_buf_puts(b, "]}") : err;
}

static enum obx_err
build_find(struct obx_store *st, struct read_job *r)
{
    return find_doc(st, r->id, &r->body);
}

/* GET /v1/messages/find?external_message_id=: the channels holding that id (exact lookup). */
static void
on_find(struct obx_api *api, struct evhttp_request *req, char **seg)
{
    char *id = obx_httpd_query_param(req, "external_message_id");
    struct obx_buf b;

    (void)seg;
    obx_buf_init(&b, 1024 * 1024);
    if (!id || !*id || strlen(id) > 255) {
        obx_httpd_error(req, 400, "invalid_value", "external_message_id must be 1..255 bytes",
                        "external_message_id");
        goto out;
    }
    if (obx_store_pg_in_use(api->st)) {
        struct read_job *r = read_job_new(req, 1024 * 1024);
        if (!r)
            goto out;
        r->build = build_find;
        r->id = id; /* the job's now */
        id = NULL;
        submit_read(api, req, r);
        goto out;
    }
    reply_doc(req, 200, &b, find_doc(api->st, id, &b));
out:
    obx_free(id);
    obx_buf_release(&b);
}

/* GET /v1/auth (open): whether a token is needed and whether the one sent is good, so the
 * dashboard can ask for it without provoking a 401. */
static void
on_auth(struct obx_api *api, struct evhttp_request *req, char **seg)
{
    struct obx_buf b;

    (void)seg;
    obx_buf_init(&b, 128);
    reply_doc(req, 200, &b,
              obx_buf_printf(&b, "{\"token_required\":%s,\"token_valid\":%s}",
                             api->has_token ? "true" : "false",
                             authorized(api, req) ? "true" : "false"));
    obx_buf_release(&b);
}


/*
 * GET /v1/audit/verify[?cursor=&max_seals=]: verifies the chain (lib/audit.h) in slices of at
 * most AUDIT_VERIFY_SLICE_MS (or max_seals seals), so that serve's loop is never held long
 * (SPEC §13: every dashboard call < 100 ms). The answer's cursor (null once done) carries what
 * the next slice needs: the last row verified, the chain's hash there and the counts so far.
 * Nothing in it is secret (hashes are exported anyway); a keyed chain's key stays here.
 */
#define AUDIT_VERIFY_SLICE_MS 50
#define AUDIT_VERIFY_CURSOR_MAX 200
#define AUDIT_VERIFY_SEALS_MAX 1000000

/* "v1.last_id.head_id.checked.unsealed.seals.hash" (audit_cursor_format) into *c. */
static int
audit_cursor_parse(const char *text, struct obx_audit_cursor *c)
{
    char buf[AUDIT_VERIFY_CURSOR_MAX + 1], *save = NULL, *part;
    int64_t *nums[] = {&c->last_id, &c->head_id, &c->checked, &c->unsealed, &c->seals};
    size_t n = strlen(text);

    memset(c, 0, sizeof *c);
    if (n > AUDIT_VERIFY_CURSOR_MAX)
        return -1;
    memcpy(buf, text, n + 1);
    part = strtok_r(buf, ".", &save);
    if (!part || strcmp(part, "v1") != 0)
        return -1;
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        part = strtok_r(NULL, ".", &save);
        if (!part || parse_int(part, 0, INT64_MAX, nums[i]) != 0)
            return -1;
    }
    part = strtok_r(NULL, ".", &save);
    if (!part || strlen(part) != 64 || strspn(part, "0123456789abcdef") != 64 ||
        strtok_r(NULL, ".", &save))
        return -1;
    memcpy(c->hash, part, 65);
    c->started = 1;
    return 0;
}

/* One slice of the verification from *c on, as the answer's document (both backends). */
static enum obx_err
audit_verify_doc(struct obx_store *st, int64_t max_seals, struct obx_audit_cursor *c,
                 struct obx_buf *b)
{
    struct obx_audit_report r;
    int done = 0;
    enum obx_err err = obx_audit_verify_slice(st, (int)max_seals, AUDIT_VERIFY_SLICE_MS, c, &r,
                                              &done);

    /* problem and key_id are fixed texts and hex digits, as in `outbox audit verify --json`. */
    if (err == OBX_OK)
        err = obx_buf_printf(b,
                             "{\"done\":%s,\"ok\":%s,\"verified_seals\":%lld,\"checked\":%lld,"
                             "\"unsealed\":%lld,\"first_bad_id\":%lld,"
                             "\"problem\":\"%s\",\"keyed_from_id\":%lld,\"key_id\":\"%s\","
                             "\"head\":{\"id\":%lld,\"hash\":\"%s\"},\"cursor\":",
                             done ? "true" : "false",
                             !done            ? "null"
                             : r.first_bad_id ? "false"
                                              : "true",
                             (long long)r.seals, (long long)r.checked, (long long)r.unsealed,
                             (long long)r.first_bad_id, r.problem, (long long)r.keyed_from_id,
                             r.key_id, (long long)r.head_id, r.head_hash);
    if (err == OBX_OK)
        err = done ? obx_buf_puts(b, "null}")
                   : obx_buf_printf(b, "\"v1.%lld.%lld.%lld.%lld.%lld.%s\"}", (long long)c->last_id,
                                    (long long)c->head_id, (long long)c->checked,
                                    (long long)c->unsealed, (long long)c->seals, c->hash);
    return err;
}

static enum obx_err
build_audit_verify(struct obx_store *st, struct read_job *r)
{
    return audit_verify_doc(st, r->max_seals, &r->cursor, &r->body);
}

static void
on_audit_verify(struct obx_api *api, struct evhttp_request *req, char **seg)
{
    char *cursor = obx_httpd_query_param(req, "cursor");
    char *max = obx_httpd_query_param(req, "max_seals");
    struct obx_audit_cursor c;
    int64_t max_seals = AUDIT_VERIFY_SEALS_MAX;
    struct obx_buf b;
    enum obx_err err;

    (void)seg;
    obx_buf_init(&b, 1024);
    memset(&c, 0, sizeof c);
    if (cursor && *cursor && audit_cursor_parse(cursor, &c) != 0) {
        obx_httpd_error(req, 400, "invalid_value", "cursor must be the cursor of an earlier answer",
                        "cursor");
        goto out;
    }
    if (max && parse_int(max, 1, AUDIT_VERIFY_SEALS_MAX, &max_seals) != 0) {
        obx_httpd_error(req, 400, "invalid_value", "max_seals must be 1 to 1000000", "max_seals");
        goto out;
    }
    if (obx_store_pg_in_use(api->st)) {
        /* The store thread's store holds the audit key (lib/server.c). */
        struct read_job *r = read_job_new(req, 1024);
        if (r) {
            r->build = build_audit_verify;
            r->cursor = c;
            r->max_seals = max_seals;
            submit_read(api, req, r);
        }
        goto out;
    }
    err = audit_verify_doc(api->st, max_seals, &c, &b);
    if (err == OBX_EINVAL)
        obx_httpd_error(req, 400, "invalid_value", "cursor must be the cursor of an earlier answer",
                        "cursor");
    else
        reply_doc(req, 200, &b, err);
out:
    obx_free(cursor);
    obx_free(max);
    obx_buf_release(&b);
}

#define AUDIT_EXPORT_MAX 100000 /* rows per export request */
#define AUDIT_EXPORT_BYTES_MAX (512 * 1024 * 1024)

struct export_ctx {
    struct obx_buf *b;
    int64_t rows;
    int64_t next_since_ms; /* set when the answer stops at AUDIT_EXPORT_MAX */
    enum obx_err err;
};

static int
on_export_row(void *ctx, const struct obx_audit_entry *e)
{
    struct export_ctx *x = ctx;
    char ts[40];
    enum obx_err err;

    if (x->rows++ == AUDIT_EXPORT_MAX) {
        x->next_since_ms = e->at_ms;
        return 1;
    }
    obx_clock_format_ms(e->at_ms, ts, sizeof ts);
    err = obx_buf_printf(x->b, "{\"id\":%lld,\"at\":\"%s\",\"kind\":", (long long)e->id, ts);
    if (err == OBX_OK)
        err = obx_buf_json_str(x->b, e->kind);
    if (err == OBX_OK)
        err = obx_buf_puts(x->b, ",\"channel_id\":");
    if (err == OBX_OK)
        err = obx_buf_json_str(x->b, e->channel_id);
    if (err == OBX_OK)
        err = obx_buf_puts(x->b, ",\"external_message_id\":");
    if (err == OBX_OK)
        err = obx_buf_json_str(x->b, e->external_message_id);
    /* record is a JSON object written by SQLite's json_object(): embedded as is. */
    if (err == OBX_OK)
        err = obx_buf_printf(x->b, ",\"record\":%s,\"prev_hash\":", e->record);
    if (err == OBX_OK)
        err = obx_view_str_or_null(x->b, e->prev_hash);
    if (err == OBX_OK)
        err = obx_buf_puts(x->b, ",\"hash\":");
    if (err == OBX_OK)
        err = obx_view_str_or_null(x->b, e->hash);
    if (err == OBX_OK)
        err = obx_buf_puts(x->b, "}\n");
    x->err = err;
    return err != OBX_OK;
}

/* The export's rows into b, and where to continue when it stops at AUDIT_EXPORT_MAX. */
static enum obx_err
audit_export_doc(struct obx_store *st, int64_t since_ms, int64_t until_ms, const char *channel,
                 struct obx_buf *b)
{
    struct export_ctx x = {b, 0, 0, OBX_OK};
    enum obx_err err = obx_audit_export(st, since_ms, until_ms, channel, on_export_row, &x);

    if (err == OBX_OK)
        err = x.err;
    if (err == OBX_OK && x.next_since_ms)
        err = obx_buf_printf(b, "{\"next_since_ms\":%lld}\n", (long long)x.next_since_ms);
    return err;
}

static enum obx_err
build_audit_export(struct obx_store *st, struct read_job *r)
{
    return audit_export_doc(st, r->since_ms, r->until_ms, r->channel, &r->body);
}

/*
 * GET /v1/audit/export?since_ms=&until_ms=&channel_id=: JSON Lines, the format of
 * `outbox audit export`, at most AUDIT_EXPORT_MAX rows; a last line {"next_since_ms":N}
 * says where to continue.
 */
static void
on_audit_export(struct obx_api *api, struct evhttp_request *req, char **seg)
{
    char *since = obx_httpd_query_param(req, "since_ms");
    char *until = obx_httpd_query_param(req, "until_ms");
    char *channel = obx_httpd_query_param(req, "channel_id");
    int64_t since_ms = 0, until_ms = INT64_MAX;
    struct obx_buf b;

    (void)seg;
    obx_buf_init(&b, AUDIT_EXPORT_BYTES_MAX);
    if ((since && parse_int(since, 0, INT64_MAX, &since_ms) != 0) ||
        (until && parse_int(until, 0, INT64_MAX, &until_ms) != 0)) {
        obx_httpd_error(req, 400, "invalid_value", "since_ms and until_ms are epoch milliseconds",
                        since && parse_int(since, 0, INT64_MAX, &since_ms) != 0 ? "since_ms"
                                                                                : "until_ms");
        goto out;
    }
    if (obx_store_pg_in_use(api->st)) {
        struct read_job *r = read_job_new(req, AUDIT_EXPORT_BYTES_MAX);
        if (!r)
            goto out;
        r->build = build_audit_export;
        r->ndjson = 1;
        r->since_ms = since_ms;
        r->until_ms = until_ms;
        if (channel && *channel && !(r->channel = obx_strdup(channel))) {
            on_read_done(r, OBX_ENOMEM);
            goto out;
        }
        submit_read(api, req, r);
        goto out;
    }
    reply_ndjson(req, &b,
                 audit_export_doc(api->st, since_ms, until_ms, channel && *channel ? channel : NULL,
                                  &b));
out:
    obx_free(since);
    obx_free(until);
    obx_free(channel);
    obx_buf_release(&b);
}

/* ---- tenants (SPEC §11): PUT, GET, DELETE /v1/tenants/{name} --------------------------------- */

#define TENANT_ID_MAX 255                  /* bytes of a channel id, as for messages */
#define TENANT_RATE_MAX_PER_MIN 60000000.0 /* rate_limit's bound, 1000000/s */

/* A PUT's body, as the store takes it; strings borrowed from the parsed document. */
struct tenant_put {
    struct obx_tenant_spec spec;
    struct obx_tenant_channel *channels;
    enum obx_tenant_put_mode mode;
    const uint8_t *sealing_key;
    int created;
    char conflict[TENANT_ID_MAX + 1];
    char owner[OBX_TENANT_NAME_MAX + 1]; /* conflict's owner, "?" when it cannot be read */
};

struct owner_find {
    const char *channel_id;
    char *owner;
};

static int
on_owner_row(void *ctx, const struct obx_tenant_row *t)
{
    struct owner_find *o = ctx;

    for (size_t i = 0; i < t->nchannels; i++)
        if (strcmp(t->channels[i].channel_id, o->channel_id) == 0) {
            snprintf(o->owner, OBX_TENANT_NAME_MAX + 1, "%s", t->name);
            return 1;
        }
    return 0;
}

static enum obx_err
run_tenant_put(struct obx_store *st, void *arg)
{
    struct tenant_put *p = arg;
    enum obx_err err = obx_store_tenant_put(st, &p->spec, p->mode, p->sealing_key, &p->created,
                                            p->conflict, sizeof p->conflict);

    if (err == OBX_ECONFLICT) {
        /* Who owns it, for the 409, read here: the loop has no connection on PostgreSQL. */
        struct owner_find o = {p->conflict, p->owner};
        snprintf(p->owner, sizeof p->owner, "?");
        if (obx_store_tenant_list(st, NULL, on_owner_row, &o) != OBX_OK)
            snprintf(p->owner, sizeof p->owner, "?"); /* the 409 stands without the name */
    }
    return err;
}

static enum obx_err
run_tenant_remove(struct obx_store *st, void *arg)
{
    return obx_store_tenant_remove(st, arg);
}

/* NULL when id may name a channel (as a message's channel_id), else why not. */
static const char *
tenant_channel_problem(const char *id)
{
    size_t n = id ? strlen(id) : 0;

    if (n == 0 || n > TENANT_ID_MAX)
        return "must be a string of 1..255 bytes";
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f)
            return "must not contain control characters";
    if (strcmp(id, ".") == 0 || strcmp(id, "..") == 0)
        return "must not be \".\" or \"..\"";
    return NULL; /* valid UTF-8: obx_json_parse checked the whole body */
}

/* 400 naming the field: "<field> <what>"; returns -1 for the caller to pass on. */
static int
field_400(struct evhttp_request *req, const char *code, const char *field, const char *what)
{
    char msg[320];

    snprintf(msg, sizeof msg, "%s %s", field, what);
    obx_httpd_error(req, 400, code, msg, field);
    return -1;
}

/* "rate_limit": null (the configured one), a number per minute, or "290/min" as configured. */
static int
tenant_rate(struct evhttp_request *req, const obx_json *j, struct tenant_put *p)
{
    struct obx_tenant_spec *s = &p->spec;
    static const char why[] = "must be null (the configured rate_limit), a number of requests "
                              "per minute (0 < n <= 60000000), or N/s, N/min or N/h; a tenant "
                              "cannot be unlimited (Partoo limits each organisation)";
    double per_s = 0;

    s->set_rate_limit = 1;
    if (obx_json_is_null(j))
        return 0;
    if (obx_json_is_number(j)) {
        s->rate_limit_per_min = obx_json_number(j);
        if (s->rate_limit_per_min > 0 && s->rate_limit_per_min <= TENANT_RATE_MAX_PER_MIN)
            return 0;
        return field_400(req, "invalid_value", "rate_limit", why);
    }
    if (obx_json_is_string(j) &&
        obx_config_parse_rate_per_s(obx_json_string(j), &per_s) == OBX_OK && per_s > 0 &&
        per_s * 60.0 <= TENANT_RATE_MAX_PER_MIN) {
        s->rate_limit_per_min = per_s * 60.0;
        return 0;
    }
    return field_400(req, "invalid_value", "rate_limit", why);
}

static int
tenant_burst(struct evhttp_request *req, const obx_json *j, struct tenant_put *p)
{
    struct obx_tenant_spec *s = &p->spec;
    double v = obx_json_is_number(j) ? obx_json_number(j) : 0;

    s->set_rate_burst = 1;
    if (obx_json_is_null(j))
        return 0;
    if (obx_json_is_number(j) && v >= 1 && v <= 1000 && v == (double)(int64_t)v) {
        s->rate_burst = (int64_t)v;
        return 0;
    }
    return field_400(req, "invalid_value", "rate_burst",
                     "must be null (the configured rate_burst) or a whole number 1..1000");
}

static int
tenant_url(struct evhttp_request *req, const obx_json *j, struct tenant_put *p)
{
    struct obx_tenant_spec *s = &p->spec;
    const char *why;

    s->set_base_url = 1;
    if (obx_json_is_null(j))
        return 0;
    if (!obx_json_is_string(j))
        return field_400(req, "invalid_value", "partoo_base_url",
                         "must be null (the configured one) or a URL");
    why = obx_config_check_url(obx_json_string(j));
    if (why) {
        char msg[256];
        snprintf(msg, sizeof msg, "is not accepted: %s", why);
        return field_400(req, "invalid_value", "partoo_base_url", msg);
    }
    s->partoo_base_url = obx_json_string(j);
    return 0;
}

/* "api_key": 1..OBX_TENANT_KEY_MAX bytes, no control character. Never echoed. */
static int
tenant_key(struct evhttp_request *req, const obx_json *j, struct tenant_put *p)
{
    struct obx_tenant_spec *s = &p->spec;
    const char *k = obx_json_string(j);
    size_t n = k ? strlen(k) : 0;

    if (obx_json_is_null(j))
        return 0; /* keep the stored key */
    if (n == 0 || n > OBX_TENANT_KEY_MAX)
        return field_400(req, n ? "too_large" : "invalid_value", "api_key",
                         "must be a string of 1..4096 bytes"); /* OBX_TENANT_KEY_MAX */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] < 0x20 || k[i] == 0x7f)
            return field_400(req, "invalid_value", "api_key",
                             "must not contain control characters");
    s->api_key = k;
    return 0;
}

/* A member name as echoed in an error: at most size - 4 bytes, whole UTF-8 characters. */
static const char *
short_name(const char *name, char *buf, size_t size)
{
    size_t n = obx_buf_utf8_prefix(name, size - 4);

    snprintf(buf, size, "%.*s%s", (int)n, name, name[n] ? "..." : "");
    return buf;
}

/* One item of "channels": {"channel_id": "...", "readonly": false}. */
static int
tenant_channel(struct evhttp_request *req, const obx_json *item, int i, struct tenant_put *p)
{
    char field[64], buf[36];
    const char *why;
    size_t n = p->spec.nchannels;

    snprintf(field, sizeof field, "channels[%d]", i);
    if (!obx_json_is_object(item))
        return field_400(req, "invalid_value", field,
                         "must be an object {\"channel_id\", \"readonly\"}");
    for (const obx_json *m = obx_json_child(item); m; m = obx_json_next(m)) {
        const char *name = obx_json_name(m);
        if (strcmp(name, "readonly") == 0 && obx_json_is_bool(m)) {
            p->channels[n].readonly = obx_json_is_true(m);
        } else if (strcmp(name, "readonly") == 0) {
            snprintf(field, sizeof field, "channels[%d].readonly", i);
            return field_400(req, "invalid_value", field, "must be true or false");
        } else if (strcmp(name, "channel_id") != 0) {
            snprintf(field, sizeof field, "channels[%d].%s", i, short_name(name, buf, 36));
            return field_400(req, "unknown_field", field, "is not a field of a channel");
        }
    }
    p->channels[n].channel_id = obx_json_string(obx_json_get(item, "channel_id"));
    snprintf(field, sizeof field, "channels[%d].channel_id", i);
    why = tenant_channel_problem(p->channels[n].channel_id);
    if (why)
        return field_400(req, "invalid_value", field, why);
    for (size_t k = 0; k < n; k++)
        if (strcmp(p->channels[k].channel_id, p->channels[n].channel_id) == 0)
            return field_400(req, "invalid_value", field, "names a channel given before");
    p->spec.nchannels++;
    return 0;
}

static int
tenant_channels(struct evhttp_request *req, const obx_json *j, struct tenant_put *p)
{
    int n = obx_json_is_array(j) ? obx_json_array_size(j) : -1, i = 0;

    if (n < 0)
        return field_400(req, "invalid_value", "channels",
                         "must be an array of {\"channel_id\", \"readonly\"}");
    if (n > OBX_TENANT_CHANNELS_MAX)
        return field_400(req, "too_large", "channels",
                         "holds at most 10000 channels"); /* OBX_TENANT_CHANNELS_MAX */
    p->channels = obx_calloc((size_t)n + 1, sizeof *p->channels);
    if (!p->channels) {
        refuse_no_memory(req);
        return -1;
    }
    p->spec.channels = p->channels;
    p->spec.replace_channels = 1; /* the whole set: channels left out are released */
    for (const obx_json *item = obx_json_child(j); item; item = obx_json_next(item), i++)
        if (tenant_channel(req, item, i, p) != 0)
            return -1;
    return 0;
}

/* Reads the body's members into p; -1 after answering 400 naming the field. */
static const struct {
    const char *name;
    int (*read)(struct evhttp_request *req, const obx_json *j, struct tenant_put *p);
} tenant_members[] = {
    {"api_key", tenant_key},         {"rate_limit", tenant_rate},   {"rate_burst", tenant_burst},
    {"partoo_base_url", tenant_url}, {"channels", tenant_channels},
};
#define N_TENANT_MEMBERS (sizeof tenant_members / sizeof tenant_members[0])

static int
tenant_parse(struct evhttp_request *req, const obx_json *doc, struct tenant_put *p)
{
    unsigned seen = 0;
    char buf[68];

    for (const obx_json *m = obx_json_child(doc); m; m = obx_json_next(m)) {
        const char *name = obx_json_name(m);
        size_t i = 0;
        while (i < N_TENANT_MEMBERS && strcmp(name, tenant_members[i].name) != 0)
            i++;
        if (i == N_TENANT_MEMBERS)
            return field_400(req, "unknown_field", short_name(name, buf, sizeof buf),
                             "is not a field of a tenant (api_key, rate_limit, rate_burst, "
                             "partoo_base_url, channels)");
        if (seen & (1u << i))
            return field_400(req, "duplicate_field", name, "is given twice");
        seen |= 1u << i;
        if (tenant_members[i].read(req, m, p) != 0)
            return -1;
    }
    return 0;
}

static int
on_tenant_row(void *ctx, const struct obx_tenant_row *t)
{
    struct list_ctx *l = ctx;

    if (l->n++)
        l->err = obx_buf_puts(l->b, ",");
    if (l->err == OBX_OK)
        l->err = obx_view_tenant(l->b, t);
    return l->err != OBX_OK;
}

/* The view of tenant r->channel, or (NULL) of every tenant as {"tenants":[...]}. */
static enum obx_err
build_tenants(struct obx_store *st, struct read_job *r)
{
    struct list_ctx l = {&r->body, 0, OBX_OK};
    enum obx_err err = r->channel ? OBX_OK : obx_buf_puts(&r->body, "{\"tenants\":[");

    if (err == OBX_OK)
        err = obx_store_tenant_list(st, r->channel, on_tenant_row, &l);
    if (err == OBX_OK)
        err = l.err;
    if (err == OBX_OK && !r->channel)
        err = obx_buf_puts(&r->body, "]}");
    return err;
}

/* PostgreSQL: the tenant's view (name; NULL: every tenant's) read on the store thread. */
static void
submit_tenant_read(struct obx_api *api, struct evhttp_request *req, int status, const char *name)
{
    struct read_job *r = read_job_new(req, 64 * 1024 * 1024);

    if (!r)
        return;
    r->build = build_tenants;
    r->status = status;
    r->not_found = "no such tenant";
    if (name && !(r->channel = obx_strdup(name))) {
        on_read_done(r, OBX_ENOMEM);
        return;
    }
    submit_read(api, req, r);
}

/* Answers status with the tenant's view (after a change, or for GET). */
static void
reply_tenant(struct obx_api *api, struct evhttp_request *req, int status, const char *name)
{
    struct obx_buf b;
    struct list_ctx l = {&b, 0, OBX_OK};
    enum obx_err err;

    if (obx_store_pg_in_use(api->st)) {
        submit_tenant_read(api, req, status, name);
        return;
    }
    obx_buf_init(&b, 64 * 1024 * 1024);
    err = obx_store_tenant_list(api->st, name, on_tenant_row, &l);
    if (err == OBX_ENOTFOUND)
        obx_httpd_error(req, 404, "not_found", "no such tenant", NULL);
    else
        reply_doc(req, status, &b, err == OBX_OK ? l.err : err);
    obx_buf_release(&b);
}

/* 409: the channel another tenant owns, named by its index in the body. */
static void
reply_tenant_conflict(struct evhttp_request *req, const struct tenant_put *p)
{
    char field[64] = "channels", msg[512];

    for (size_t i = 0; i < p->spec.nchannels; i++)
        if (strcmp(p->spec.channels[i].channel_id, p->conflict) == 0)
            snprintf(field, sizeof field, "channels[%zu].channel_id", i);
    snprintf(msg, sizeof msg, "channel '%.255s' belongs to tenant '%s'; nothing changed",
             p->conflict, p->owner);
    obx_httpd_error(req, 409, "conflict", msg, field);
}

/* Reads a PUT's JSON object body under max_body_bytes, or answers the error (NULL). */
static obx_json *
read_tenant_body(struct obx_api *api, struct evhttp_request *req, char **body, size_t *len)
{
    struct obx_json_error je = {0};
    size_t cap = (size_t)api->cfg->max_body_bytes;
    obx_json *doc = NULL;
    enum obx_err err = obx_httpd_body(req, cap, body, len);

    if (err == OBX_ETOOBIG) {
        obx_httpd_error(req, 413, "too_large", "the body exceeds max_body_bytes", NULL);
        return NULL;
    }
    if (err != OBX_OK) {
        obx_httpd_error(req, 500, "internal", "cannot read the body", NULL);
        return NULL;
    }
    err = obx_json_parse(*body, *len, cap, (int)api->cfg->max_json_depth, &doc, &je);
    if (err != OBX_OK) {
        obx_httpd_error(req, 400, je.code, je.message, NULL);
        return NULL;
    }
    if (!obx_json_is_object(doc)) {
        obx_json_free(doc);
        obx_httpd_error(req, 400, "invalid_json", "the body must be a JSON object", NULL);
        return NULL;
    }
    return doc;
}

/* 400 for a name that cannot be a tenant's; 0 when it can. */
static int
tenant_name_problem(struct evhttp_request *req, const char *name)
{
    if (strcmp(name, "default") == 0) {
        obx_httpd_error(req, 400, "invalid_value",
                        "'default' is reserved for the configured key (partoo_api_key_file), "
                        "which serves every channel no tenant owns",
                        "tenant");
        return -1;
    }
    if (!obx_store_tenant_name_valid(name)) {
        obx_httpd_error(req, 400, "invalid_value",
                        "a tenant name is 1..64 characters of A-Z a-z 0-9 . _ -", "tenant");
        return -1;
    }
    return 0;
}

/* Stores p through the store thread with the sealing key, if one is configured. */
static enum obx_err
tenant_store(struct obx_api *api, struct evhttp_request *req, struct tenant_put *p)
{
    uint8_t key[OBX_SECRETBOX_KEY_BYTES];
    struct obx_buf why;
    enum obx_err err = OBX_OK;

    obx_buf_init(&why, 4096);
    if (api->cfg->secrets_key_file) {
        err = obx_secretbox_load_key(api->cfg->secrets_key_file, key, &why);
        if (err != OBX_OK) {
            obx_log(OBX_LOG_ERROR, "cannot read secrets_key_file",
                    OBX_KS("error", obx_buf_str(&why)));
            obx_httpd_error(req, 500, "internal",
                            "secrets_key_file cannot be read: nothing changed (see the log)", NULL);
        } else {
            p->sealing_key = key;
        }
    }
    if (err == OBX_OK)
        err = obx_storeq_call(api->q, run_tenant_put, p);
    else
        err = OBX_ECONFIG; /* answered above */
    p->sealing_key = NULL;
    explicit_bzero(key, sizeof key);
    obx_buf_release(&why);
    return err;
}

/* PUT /v1/tenants/{name}: create (201) or change (200); the whole view comes back. */
static void
on_tenant_put(struct obx_api *api, struct evhttp_request *req, char **seg)
{
    struct tenant_put p = {.mode = OBX_TENANT_UPSERT};
    char *body = NULL;
    size_t len = 0;
    obx_json *doc = NULL;
    enum obx_err err;

    p.spec.name = seg[2];
    if (tenant_name_problem(req, seg[2]) != 0)
        goto out;
    doc = read_tenant_body(api, req, &body, &len);
    if (!doc || tenant_parse(req, doc, &p) != 0)
        goto out;
    err = tenant_store(api, req, &p);
    if (err == OBX_ECONFIG)
        goto out;
    if (err == OBX_EINVAL && !p.spec.api_key) {
        obx_httpd_error(req, 400, "missing_field", "api_key is required for a new tenant",
                        "api_key");
    } else if (err == OBX_ECONFLICT) {
        reply_tenant_conflict(req, &p);
    } else if (err != OBX_OK) {
        reply_write_error(api, req, err);
    } else {
        obx_log(OBX_LOG_INFO, p.created ? "tenant added" : "tenant changed",
                OBX_KS("tenant", seg[2]), OBX_KS("by", actor(req)),
                OBX_KS("key", !p.spec.api_key              ? "kept"
                              : api->cfg->secrets_key_file ? "set, sealed"
                                                           : "set, in the clear"));
        if (api->worker)
            obx_worker_tenants_changed(api->worker);
        reply_tenant(api, req, p.created ? 201 : 200, seg[2]);
    }
out:
    /* The key passed through these buffers: wipe them before they go back to the heap. */
    if (p.spec.api_key)
        explicit_bzero((char *)p.spec.api_key, strlen(p.spec.api_key));
    if (body)
        explicit_bzero(body, len);
    obx_free(body);
    obx_json_free(doc);
    obx_free(p.channels);
}

static void
on_tenant_get(struct obx_api *api, struct evhttp_request *req, char **seg)
{
    reply_tenant(api, req, 200, seg[2]);
}

static void
on_tenants_list(struct obx_api *api, struct evhttp_request *req, char **seg)
{
    struct obx_buf b;
    struct list_ctx l = {&b, 0, OBX_OK};
    enum obx_err err;

    (void)seg;
    if (obx_store_pg_in_use(api->st)) {
        submit_tenant_read(api, req, 200, NULL);
        return;
    }
    obx_buf_init(&b, 256 * 1024 * 1024);
    err = obx_buf_puts(&b, "{\"tenants\":[");
    if (err == OBX_OK)
        err = obx_store_tenant_list(api->st, NULL, on_tenant_row, &l);
    if (err == OBX_OK)
        err = l.err;
    if (err == OBX_OK)
        err = obx_buf_puts(&b, "]}");
    reply_doc(req, 200, &b, err);
    obx_buf_release(&b);
}

/* DELETE /v1/tenants/{name}: 200 {"deleted": name}; its channels are released. */
static void
on_tenant_delete(struct obx_api *api, struct evhttp_request *req, char **seg)
{
    enum obx_err err = obx_store_tenant_name_valid(seg[2])
                           ? obx_storeq_call(api->q, run_tenant_remove, seg[2])
                           : OBX_ENOTFOUND;
    struct obx_buf b;

    if (err == OBX_ENOTFOUND) {
        obx_httpd_error(req, 404, "not_found", "no such tenant", NULL);
        return;
    }
    if (err != OBX_OK) {
        reply_write_error(api, req, err);
        return;
    }
    obx_log(OBX_LOG_INFO, "tenant removed", OBX_KS("tenant", seg[2]), OBX_KS("by", actor(req)));
    if (api->worker)
        obx_worker_tenants_changed(api->worker);
    obx_buf_init(&b, 256);
    err = obx_buf_puts(&b, "{\"deleted\":");
    if (err == OBX_OK)
        err = obx_buf_json_str(&b, seg[2]);
    if (err == OBX_OK)
        err = obx_buf_puts(&b, "}");
    reply_doc(req, 200, &b, err);
    obx_buf_release(&b);
}

/* ---- routing ------------------------------------------------------------------------------ */

static const struct route routes[] = {
    {EVHTTP_REQ_POST, {"v1", "messages"}, on_post_messages, 0},
    {EVHTTP_REQ_GET, {"v1", "messages"}, on_list_messages, 0},
    {EVHTTP_REQ_GET, {"v1", "messages", "*", "*"}, on_get_message, 0},
    {EVHTTP_REQ_POST, {"v1", "messages", "*", "*", "retry"}, on_retry, 0},
    {EVHTTP_REQ_POST, {"v1", "messages", "*", "*", "cancel"}, on_cancel, 0},
    {EVHTTP_REQ_GET, {"v1", "stats"}, on_stats, 0},
    {EVHTTP_REQ_GET, {"v1", "inbox"}, on_list_inbox, 0},
    {EVHTTP_REQ_POST, {"v1", "inbox", "*", "ack"}, on_ack_inbox, 0},
    {EVHTTP_REQ_GET, {"metrics"}, on_metrics, 0},
    {EVHTTP_REQ_GET, {"healthz"}, on_healthz, 1},
    {EVHTTP_REQ_GET, {"readyz"}, on_readyz, 1},
    {EVHTTP_REQ_POST, {"v1", "pause"}, on_pause, 0},
    {EVHTTP_REQ_POST, {"v1", "resume"}, on_resume, 0},
    {EVHTTP_REQ_GET, {"v1", "stats", "history"}, on_history, 0},
    {EVHTTP_REQ_GET, {"v1", "stats", "overview"}, on_overview, 0},
    {EVHTTP_REQ_GET, {"v1", "messages", "count"}, on_count, 0},
    {EVHTTP_REQ_POST, {"v1", "messages", "retry"}, on_bulk_retry, 0},
    {EVHTTP_REQ_POST, {"v1", "messages", "cancel"}, on_bulk_cancel, 0},
    {EVHTTP_REQ_GET, {"v1", "conversations", "*", "*"}, on_conversation, 0},
    {EVHTTP_REQ_GET, {"v1", "messages", "find"}, on_find, 0},
    {EVHTTP_REQ_GET, {"v1", "auth"}, on_auth, 1},
    {EVHTTP_REQ_GET, {"v1", "audit", "verify"}, on_audit_verify, 0},
    {EVHTTP_REQ_GET, {"v1", "audit", "export"}, on_audit_export, 0},
    {EVHTTP_REQ_GET, {"v1", "nodes"}, on_nodes, 0},
    {EVHTTP_REQ_GET, {"v1", "tenants"}, on_tenants_list, 0},
    {EVHTTP_REQ_GET, {"v1", "tenants", "*"}, on_tenant_get, 0},
    {EVHTTP_REQ_PUT, {"v1", "tenants", "*"}, on_tenant_put, 0},
    {EVHTTP_REQ_DELETE, {"v1", "tenants", "*"}, on_tenant_delete, 0},
};
#define N_ROUTES (sizeof routes / sizeof routes[0])

static int
path_matches(const struct route *r, char **seg, int n)
{
    int len = 0;

    while (len < MAX_SEGMENTS && r->pattern[len])
        len++;
    if (len != n)
        return 0;
    for (int i = 0; i < n; i++)
        if (strcmp(r->pattern[i], "*") != 0 && strcmp(r->pattern[i], seg[i]) != 0)
            return 0;
    return 1;
}

/* The Allow header for a path that exists: its methods, e.g. "GET, PUT, DELETE". */
static const char *
allowed_methods(char **seg, int n, char *buf, size_t size)
{
    static const struct {
        enum evhttp_cmd_type m;
        const char *name;
    } names[] = {{EVHTTP_REQ_GET, "GET"},
                 {EVHTTP_REQ_POST, "POST"},
                 {EVHTTP_REQ_PUT, "PUT"},
                 {EVHTTP_REQ_DELETE, "DELETE"}};
    size_t used = 0;

    buf[0] = '\0';
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        for (size_t i = 0; i < N_ROUTES; i++)
            if (routes[i].method == names[k].m && path_matches(&routes[i], seg, n)) {
                int w = snprintf(buf + used, size - used, "%s%s", used ? ", " : "", names[k].name);
                if (w > 0 && (size_t)w < size - used)
                    used += (size_t)w;
                break;
            }
    return buf;
}

static void
on_request(struct evhttp_request *req, void *arg)
{
    struct obx_api *api = arg;
    char *seg[MAX_SEGMENTS] = {0};
    int n = obx_httpd_path_segments(req, seg, MAX_SEGMENTS), path_known = 0;
    enum evhttp_cmd_type method = evhttp_request_get_command(req);

    api->stats.requests++;
    if (n == OBX_HTTPD_PATH_NOMEM) {
        /* Not a 404: the route may well exist, and the producer should try again. */
        obx_httpd_error(req, 503, "unavailable", "out of memory", NULL);
        return;
    }
    if (n >= 1 && strcmp(seg[0], "ui") == 0) {
        /* The page is open: it holds no data, and asks for the token itself (SPEC §13). */
        if (method == EVHTTP_REQ_GET) {
            obx_ui_serve(req, seg, n);
        } else {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET");
            obx_httpd_error(req, 405, "method_not_allowed", "method not allowed on this path",
                            NULL);
        }
        obx_httpd_free_segments(seg, n);
        return;
    }
    for (size_t i = 0; n >= 0 && i < N_ROUTES; i++) {
        if (!path_matches(&routes[i], seg, n))
            continue;
        path_known = 1;
        if (routes[i].method != method)
            continue;
        if (!routes[i].open && !authorized(api, req)) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
            obx_httpd_error(req, 401, "unauthorized", "a valid bearer token is required", NULL);
        } else {
            routes[i].fn(api, req, seg);
            /* The next request must see what the store thread committed since. */
            obx_store_end_reads(api->st);
        }
        obx_httpd_free_segments(seg, n);
        return;
    }
    if (path_known) {
        char allow[64];
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                          allowed_methods(seg, n, allow, sizeof allow));
        obx_httpd_error(req, 405, "method_not_allowed", "method not allowed on this path", NULL);
    } else
        obx_httpd_error(req, 404, "not_found", "no such route", NULL);
    if (n > 0)
        obx_httpd_free_segments(seg, n);
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

void
obx_api_reload(struct obx_api *api, const struct obx_config *cfg)
{
    api->cfg = cfg;
    api->has_token = cfg->api_token != NULL;
    if (api->has_token)
        hash_token(cfg->api_token, api->token_hash);
}

enum obx_err
obx_api_new(struct event_base *base, struct obx_store *st, struct obx_storeq *q,
            const struct obx_config *cfg, struct obx_worker *worker, size_t max_connections,
            struct obx_api **out)
{
    struct obx_httpd_limits lim = {
        .max_body_bytes = (size_t)cfg->max_body_bytes,
        .body_limit_message = "the body exceeds max_body_bytes",
        .max_connections = max_connections,
        .body_budget_bytes = (size_t)cfg->http_body_budget,
    };
    struct obx_api *api;
    enum obx_err err;

    *out = NULL;
    if (!cfg->api_token && !obx_httpd_is_loopback(cfg->api_listen)) {
        obx_log(OBX_LOG_ERROR, "refusing a non-loopback api_listen without api_token",
                OBX_KS("api_listen", cfg->api_listen));
        return OBX_ECONFIG;
    }
    api = obx_calloc(1, sizeof *api);
    if (!api)
        return OBX_ENOMEM;
    api->base = base;
    api->st = st;
    api->clock = st->clock;
    api->q = q;
    api->worker = worker;

    obx_api_reload(api, cfg);
    api->commit_ev = evtimer_new(base, on_commit, api);
    err = api->commit_ev ? obx_httpd_new(base, cfg->api_listen, &lim, &api->http, &api->port)
                         : OBX_ENOMEM;
    if (err != OBX_OK) {
        obx_log(OBX_LOG_ERROR, "cannot listen for the producer api",
                OBX_KS("api_listen", cfg->api_listen), OBX_KS("error", obx_strerror(err)));
        obx_api_free(api);
        return err;
    }
    evhttp_set_gencb(obx_httpd_evhttp(api->http), on_request, api);
    *out = api;
    return OBX_OK;
}

void
obx_api_free(struct obx_api *api)
{
    if (!api)
        return;
    for (size_t i = 0; i < api->group.nposts; i++) {
        obx_httpd_error(api->group.posts[i]->req, 503, "unavailable", "shutting down", NULL);
        post_free(api->group.posts[i]);
    }
    obx_httpd_free(api->http);
    if (api->commit_ev)
        event_free(api->commit_ev);
    obx_free(api->group.items);
    obx_free(api->group.posts);

    obx_free(api);
}

int
obx_api_port(const struct obx_api *api)
{
    return api->port;
}

void
obx_api_stats(const struct obx_api *api, struct obx_api_stats *out)
{
    *out = api->stats;
    obx_httpd_stats(api->http, &out->http);
}
