/*
 * server: the daemon's composition and lifecycle.
 *
 *   start:  lock <db>.lock (one serve per database) -> open + migrate -> return
 *           every `sending` row of a dead process to `queued` -> the store thread
 *           (lib/store_queue.c, every write from now on) -> worker -> loop
 *   SIGHUP: reload the configuration; an invalid one is logged and ignored
 *   SIGTERM/SIGINT: worker stops claiming, drains in-flight requests up to
 *           shutdown_timeout, releases the rest; the loop ends; exit 0
 */
#include "server.h"

#include <curl/curl.h>
#include <sqlite3.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "audit.h"
#include "httpd.h"
#include "cron.h"
#include "store_dash.h"
#include "inbox.h"
#include "reconcile.h"
#include "sealer.h"
#include "log.h"
#include "metrics.h"
#include "query.h"
#include "mem.h"
#include "store.h"
#include "pg.h"
#include "store_pg.h"
#include "store_pg_listen.h"
#include "store_pg_nodes.h"
#include "store_queue.h"
#include "store_tenant_stats.h"
#include "webhook.h"
#include "worker.h"

extern char **environ;

#define OBX_MODULE "server"

/* Extra time after shutdown_timeout before the loop is left regardless. */
#define HARD_STOP_GRACE_MS 5000

/* The state published for `outbox status`, written by the store thread. */
#define N_STATE_KEYS 11
struct publish_job {
    struct obx_storeq_job job;
    const char *values[N_STATE_KEYS];
    char text[N_STATE_KEYS][32];
    char tenants[OBX_TENANT_STATS_PUBLISH_MAX + 1]; /* the last key: paused tenants */
    char snapshot[512];
    int64_t mono_ms;
};

/* The store thread interprets stored webhook events with this configuration. */
struct reconcile_job {
    struct obx_storeq_job job;
    const struct obx_config *cfg;
    struct obx_reconcile_result r;
};

/* Loop thread only. */
/* How long serve's store thread waits for a lock on PostgreSQL (start_pg): under the
 * server's deadlock_timeout (1 s by default), so that serve, not a producer, gives way. */
#define SERVE_PG_LOCK_TIMEOUT_MS 300

struct server {
    struct event_base *base;
    struct obx_config *cfg;   /* owned; replaced on reload */
    struct obx_store *st;     /* the loop's connection: reads only */
    struct obx_store *writer; /* until the store thread takes it over */
    struct obx_storeq *q;     /* the store thread: every write */
    struct publish_job pub;
    int publishing;
    struct reconcile_job rec;
    int reconciling;
    struct obx_worker *worker;
    struct obx_api *api;
    struct obx_webhook *webhook;
    struct obx_inbox *inbox;
    struct event *reconcile_ev; /* one-shot: interpret stored webhook events */
    struct obx_cron *cron;      /* every periodic job, heartbeat included (lib/cron.c) */
    /* PostgreSQL (start_pg): the ear for producers' COMMITs, this node among the others */
    struct obx_store_pg_listen *listen;
    struct obx_store_pg_nodes *nodes;
    struct obx_sealer *sealer; /* the audit chain's seals, beside delivery */
    char node[128];
    char published[512]; /* what was published last, to write only changes */
    int64_t published_mono_ms;
    struct event *sig_term, *sig_int, *sig_hup, *hard_stop;
    int lock_fd;
    int stopping;
    int64_t start_time_ms;
    obx_reload_fn reload;
    void *reload_ctx;
};

static void
on_libevent_log(int severity, const char *msg)
{
    obx_log_write(severity >= EVENT_LOG_ERR ? OBX_LOG_ERROR : OBX_LOG_DEBUG, "libevent", msg, NULL,
                  0);
}

/* SQLite's own diagnostics (recovered WAL frames, I/O trouble) go to our log. */
static void
on_sqlite_log(void *ctx, int code, const char *msg)
{
    int primary = code & 0xff;

    (void)ctx;
    obx_log_writef(primary == SQLITE_NOTICE || primary == SQLITE_WARNING ? OBX_LOG_INFO
                                                                         : OBX_LOG_WARN,
                   "sqlite", "%s (code %d)", msg, code);
}

static enum obx_err
take_lock(struct server *s)
{
    char path[4096];

    snprintf(path, sizeof path, "%s.lock", s->cfg->db);
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0) {
        obx_log(OBX_LOG_ERROR, "cannot open the lock file", OBX_KS("path", path),
                OBX_KS("error", strerror(errno)));
        return OBX_EIO;
    }
    /* flock is released by the kernel when the process dies, even by SIGKILL. */
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        /* SPEC §12: SQLite is single-node; several serve processes need PostgreSQL. */
        obx_log(OBX_LOG_ERROR,
                "another outbox serve is running on this database: a SQLite outbox has one "
                "serve (several nodes need PostgreSQL)",
                OBX_KS("db", s->cfg->db));
        return OBX_EBUSY;
    }
    return OBX_OK;
}

static void
on_drained(void *ctx)
{
    struct server *s = ctx;

    obx_log(OBX_LOG_INFO, "drained; exiting");
    event_base_loopexit(s->base, NULL);
}

static void
on_hard_stop(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;

    (void)fd;
    (void)what;
    obx_log(OBX_LOG_WARN, "shutdown did not finish in time; exiting (unfinished messages are "
                          "recovered at the next start)");
    event_base_loopexit(s->base, NULL);
}

static void
on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    struct server *s = arg;
    int64_t t = s->cfg->shutdown_timeout_ms + HARD_STOP_GRACE_MS;
    struct timeval tv = {t / 1000, (t % 1000) * 1000};

    (void)what;
    if (s->stopping)
        return;
    s->stopping = 1;
    obx_log(OBX_LOG_INFO, "stopping", OBX_KS("signal", sig == SIGTERM ? "TERM" : "INT"),
            OBX_KI("shutdown_timeout_ms", s->cfg->shutdown_timeout_ms));
    s->hard_stop = evtimer_new(s->base, on_hard_stop, s);
    if (s->hard_stop)
        evtimer_add(s->hard_stop, &tv);
    if (s->cron)
        obx_cron_stop(s->cron);
    obx_worker_stop(s->worker, s->cfg->shutdown_timeout_ms, on_drained, s);
}

static int
str_differs(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

/*
 * Keys read only at start (listening sockets, the HTTP clients' options, the store's
 * pragmas): a reload keeps their running values, so say so rather than seem to apply them.
 */
static void
warn_restart_keys(const struct obx_config *old, const struct obx_config *fresh)
{
    const struct {
        const char *key;
        int changed;
    } keys[] = {
        {"api_listen", str_differs(old->api_listen, fresh->api_listen)},
        {"webhook_listen", str_differs(old->webhook_listen, fresh->webhook_listen)},
        {"ca_file", str_differs(old->ca_file, fresh->ca_file)},
        {"connect_timeout", old->connect_timeout_ms != fresh->connect_timeout_ms},
        {"request_timeout", old->request_timeout_ms != fresh->request_timeout_ms},
        {"synchronous", old->synchronous_full != fresh->synchronous_full},
        {"audit_key_file", str_differs(old->audit_key_file, fresh->audit_key_file)},
    };

    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (keys[i].changed)
            obx_log(OBX_LOG_WARN, "key changed but needs a restart; the running value stays",
                    OBX_KS("key", keys[i].key));
}

/* Store thread: the writer's quota follows a reload. */
static enum obx_err
set_quota(struct obx_store *st, void *arg)
{
    st->max_db_size = *(const int64_t *)arg;
    return OBX_OK;
}

/* A configuration replaced by a reload, freed once the jobs queued before are done. */
struct retired_config {
    struct obx_storeq_job job;
    struct obx_config *cfg;
};

static enum obx_err
run_nothing(struct obx_store *st, void *arg)
{
    (void)st;
    (void)arg;
    return OBX_OK;
}

static void
on_config_unused(void *arg, enum obx_err err)
{
    struct retired_config *r = arg;

    (void)err;
    obx_config_release(r->cfg);
    obx_free(r->cfg);
    obx_free(r);
}

/*
 * Jobs already queued (a webhook group, a retention step) may still read the old
 * configuration on the store thread; jobs run in order, so a job queued now runs after
 * all of them, and its done callback is where the old configuration can go.
 */
static void
retire_config(struct server *s, struct obx_config *old)
{
    struct retired_config *r = obx_calloc(1, sizeof *r);

    if (!r) {
        obx_storeq_drain(s->q); /* out of memory: wait for them instead */
        obx_config_release(old);
        obx_free(old);
        return;
    }
    r->cfg = old;
    r->job.run = run_nothing;
    r->job.done = on_config_unused;
    r->job.arg = r;
    r->job.flags = OBX_STOREQ_OWN_TX;
    obx_storeq_submit(s->q, &r->job);
}

static void
on_reload_signal(evutil_socket_t sig, short what, void *arg)
{
    struct server *s = arg;
    struct obx_config *fresh = obx_calloc(1, sizeof *fresh);
    struct obx_buf err;

    (void)sig;
    (void)what;
    obx_buf_init(&err, 4096);
    if (!fresh || !s->reload || s->reload(s->reload_ctx, fresh, &err) != OBX_OK) {
        obx_log(OBX_LOG_ERROR, "reload failed; keeping the running configuration",
                OBX_KS("error", err.len ? obx_buf_str(&err) : "out of memory"));
        if (fresh)
            obx_config_release(fresh);
        obx_free(fresh);
        obx_buf_release(&err);
        return;
    }
    obx_buf_release(&err);
    /* The start-up rule of obx_api_new, against the address the API is bound to now. */
    if (!fresh->api_token && !obx_httpd_is_loopback(s->cfg->api_listen)) {
        obx_log(OBX_LOG_ERROR, "reload refused; keeping the running configuration",
                OBX_KS("error", "api_token removed while api_listen is not a loopback address"),
                OBX_KS("api_listen", s->cfg->api_listen));
        obx_config_release(fresh);
        obx_free(fresh);
        return;
    }
    if (strcmp(fresh->db, s->cfg->db) != 0) {
        char shown[512];
        obx_pg_redact_uri(fresh->db, shown, sizeof shown);
        obx_log(OBX_LOG_WARN, "db cannot change on reload; restart to use it", OBX_KS("db", shown));
    }
    warn_restart_keys(s->cfg, fresh);
    obx_log_setup(fresh->log_level, fresh->log_format, NULL);
    int64_t quota = fresh->max_db_size;
    if (obx_storeq_call(s->q, set_quota, &quota) != OBX_OK)
        obx_log(OBX_LOG_WARN, "max_db_size not applied");
    obx_worker_reload(s->worker, fresh);
    obx_api_reload(s->api, fresh);
    if (s->webhook)
        obx_webhook_reload(s->webhook, fresh);
    if (s->inbox)
        obx_inbox_reload(s->inbox, fresh);
    retire_config(s, s->cfg);
    s->cfg = fresh;
    obx_log(OBX_LOG_INFO, "configuration reloaded");
}

#define RECONCILE_BATCH 500

/* Store thread: interprets a batch of stored webhook events. */
static enum obx_err
run_reconcile(struct obx_store *st, void *arg)
{
    struct reconcile_job *j = arg;

    memset(&j->r, 0, sizeof j->r);
    return obx_reconcile_run(st, j->cfg, RECONCILE_BATCH, &j->r);
}

static void
on_reconciled(void *arg, enum obx_err err)
{
    struct server *s = (struct server *)((char *)arg - offsetof(struct server, rec));
    const struct obx_reconcile_result *r = &s->rec.r;

    s->reconciling = 0;
    if (err != OBX_OK) {
        struct timeval retry = {1, 0};
        obx_log(OBX_LOG_ERROR, "cannot process webhook events; retrying",
                OBX_KS("error", obx_strerror(err)));
        evtimer_add(s->reconcile_ev, &retry);
        return;
    }
    if (r->processed)
        obx_log(OBX_LOG_DEBUG, "webhook events processed", OBX_KI("events", r->processed),
                OBX_KI("confirmed", r->confirmed), OBX_KI("replies", r->replies),
                OBX_KI("unmatched", r->unmatched), OBX_KI("ignored", r->ignored),
                OBX_KI("unparsable", r->unparsable));
    if (r->replies && s->inbox)
        obx_inbox_notify(s->inbox);
    if (r->processed == RECONCILE_BATCH)
        event_active(s->reconcile_ev, EV_TIMEOUT, 1);
}

/* Interprets stored webhook events, a batch at a time on the store thread until none is left. */
static void
on_reconcile(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;

    (void)fd;
    (void)what;
    if (s->reconciling) {
        struct timeval soon = {0, 10000};
        evtimer_add(s->reconcile_ev, &soon); /* after the batch being interpreted */
        return;
    }
    s->rec.cfg = s->cfg;
    s->reconciling = 1;
    obx_storeq_submit(s->q, &s->rec.job);
}

static void
on_events_stored(void *ctx, const struct obx_reconcile_result *r, int leftover)
{
    struct server *s = ctx;
    struct timeval now = {0, 0};

    if (r->replies && s->inbox)
        obx_inbox_notify(s->inbox);
    if (leftover && !evtimer_pending(s->reconcile_ev, NULL))
        evtimer_add(s->reconcile_ev, &now);
}

static int64_t
file_size(const char *path)
{
    struct stat sb;

    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

/* Gathers every module's counters and the database figures for GET /metrics. */

/* The held channels or tenants, copied out of the pause rows for the metrics. */
struct held {
    char **v;
    size_t n, cap;
};

static int
add_held(struct held *h, const char *key)
{
    if (h->n == h->cap) {
        size_t ncap = h->cap ? h->cap * 2 : 8;
        char **nv = obx_realloc(h->v, ncap * sizeof *nv);
        if (!nv)
            return 1;
        h->v = nv;
        h->cap = ncap;
    }
    h->v[h->n] = obx_strdup(key);
    return h->v[h->n++] == NULL;
}

static void
held_release(struct held *h)
{
    for (size_t i = 0; i < h->n; i++)
        obx_free(h->v[i]);
    obx_free(h->v);
}

/* What /metrics reads from the store: on the loop on SQLite, on the store thread (between
 * groups) on PostgreSQL, where the loop has no connection. */
struct metrics_reads {
    struct obx_channel_stats *ch;
    size_t nch;
    int64_t inbox_by_state[4];
    int64_t webhook_events_by_outcome[7];
    int64_t db_bytes;
    struct held held, held_tenants; /* the open pauses */
    struct obx_tenant_stats_set ts;
};

static int
collect_held(void *ctx, const struct obx_pause_row *p)
{
    struct metrics_reads *m = ctx;

    return add_held(strcmp(p->scope, OBX_PAUSE_CHANNEL) == 0 ? &m->held : &m->held_tenants, p->key);
}

static void *
collect_metrics(struct obx_store *st, void *ctx, enum obx_err *errp)
{
    struct metrics_reads *m = obx_calloc(1, sizeof *m);
    enum obx_err err = m ? OBX_OK : OBX_ENOMEM;

    (void)ctx;
    if (err == OBX_OK)
        err = obx_query_stats(st, &m->ch, &m->nch);
    if (err == OBX_OK)
        err = obx_query_inbox_counts(st, m->inbox_by_state);
    if (err == OBX_OK)
        err = obx_query_webhook_outcomes(st, obx_metrics_webhook_outcomes, 7,
                                         m->webhook_events_by_outcome);
    if (err == OBX_OK)
        err = obx_query_db_bytes(st, &m->db_bytes);
    if (err == OBX_OK)
        err = obx_store_dash_pauses(st, collect_held, m);
    if (err == OBX_OK)
        err = obx_store_tenant_stats_collect(st, &m->ts);
    *errp = err;
    return m;
}

/* Loop thread: the counters of the loop's modules beside what collect_metrics read. */
static enum obx_err
render_metrics(void *ctx, void *reads, enum obx_err err, struct obx_buf *b)
{
    struct server *s = ctx;
    struct metrics_reads *m = reads;
    struct obx_metrics_input in = {0};
    struct obx_worker_stats ws;
    struct obx_api_stats as;
    struct obx_webhook_stats hs;
    struct obx_storeq_stats qs;
    char wal[4096];

    if (!m)
        return err;
    obx_storeq_stats(s->q, &qs);
    in.store_groups = qs.groups;
    in.store_jobs = qs.jobs;
    in.store_failed_groups = qs.failed_groups;
    obx_worker_stats(s->worker, &ws);
    obx_api_stats(s->api, &as);
    obx_webhook_stats(s->webhook, &hs);
    in.nchannels = m->nch;
    memcpy(in.inbox_by_state, m->inbox_by_state, sizeof in.inbox_by_state);
    memcpy(in.webhook_events_by_outcome, m->webhook_events_by_outcome,
           sizeof in.webhook_events_by_outcome);
    in.db_bytes = m->db_bytes;
    if (!obx_store_pg_in_use(s->st)) {
        snprintf(wal, sizeof wal, "%s-wal", s->cfg->db);
        in.wal_bytes = file_size(wal);
    }
    in.channels = m->ch;
    in.now_ms = obx_now_ms(s->st->clock);
    in.start_time_ms = s->start_time_ms;
    in.attempts_by_status = ws.by_status;
    in.attempts_by_outcome = ws.by_outcome;
    in.request_latency = &ws.latency;
    in.inflight = ws.inflight;
    in.circuit = ws.circuit;
    in.paused_reason = ws.paused_reason;
    in.rate_limit_per_s = s->cfg->rate_limit_per_s;
    in.api_requests = as.requests;
    in.api_accepted = as.messages_accepted;
    in.api_duplicates = as.messages_duplicate;
    in.api_commits = as.commits;
    in.api_write_failures = as.write_failures;
    in.wh_received = hs.received;
    in.wh_stored = hs.stored;
    in.wh_duplicates = hs.duplicates;
    in.wh_bad_signature = hs.rejected_signature;
    in.wh_rejected_other = hs.rejected_other;
    in.wh_write_failures = hs.write_failures;
    in.wh_too_large = hs.rejected_too_large;
    for (int l = 0; l < 2; l++) {
        const struct obx_httpd_stats *h = l == 0 ? &as.http : &hs.http;
        in.http_rejected[l][0] = h->too_large;
        in.http_rejected[l][1] = h->bad_request;
        in.http_rejected[l][2] = h->timeout;
        in.http_rejected[l][3] = h->shed;
    }
    in.held_channels = (const char *const *)m->held.v;
    in.nheld = m->held.n;
    in.held_tenants = (const char *const *)m->held_tenants.v;
    in.nheld_tenants = m->held_tenants.n;
    if (err == OBX_OK) {
        obx_worker_tenant_stats(s->worker, &m->ts);
        obx_store_tenant_stats_finish(&m->ts);
        in.tenants = &m->ts;
    }
    if (err == OBX_OK)
        err = obx_metrics_render(b, &in);
    obx_store_tenant_stats_release(&m->ts);
    obx_free(m->ch);
    held_release(&m->held);
    held_release(&m->held_tenants);
    obx_free(m);
    return err;
}

#define STATE_HEARTBEAT_MS 30000

/* The paused tenants as published (OBX_STATE_TENANTS_PAUSED), and a hash of their names and
   reasons so that a change is written at once. */
struct paused_pub {
    char text[OBX_TENANT_STATS_PUBLISH_MAX + 1];
    size_t len;
    uint64_t sig;
};

static uint64_t
fnv(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return (h ^ 0xff) * 1099511628211ULL;
}

static int
on_paused_lane(void *ctx, const struct obx_worker_tenant *t)
{
    struct paused_pub *p = ctx;
    size_t room = sizeof p->text - 1 - p->len; /* one byte kept for the closing ] */
    int n;

    if (!t->paused_reason)
        return 0;
    /* Names are [A-Za-z0-9._-] (the registry's CHECK) and reasons static words: no escaping. */
    n = snprintf(p->text + p->len, room,
                 "%s{\"tenant\":\"%s\",\"reason\":\"%s\",\"until_ms\":%lld}", p->len > 1 ? "," : "",
                 t->name, t->paused_reason, (long long)t->paused_until_ms);
    if (n < 0 || (size_t)n >= room) {
        p->text[p->len] = '\0'; /* bounded: the rest is left out */
        return 1;
    }
    p->len += (size_t)n;
    p->sig = fnv(fnv(p->sig, t->name), t->paused_reason);
    return 0;
}

/*
 * Publishes pause and circuit state into service_state for `outbox status`: when it
 * changes, and every STATE_HEARTBEAT_MS otherwise (so an idle serve writes rarely).
 */
static void
publish_state(struct server *s, int running)
{
    char pid[24], started[24], until[24], api[16], wh[16], bad_sig[24], too_large[24];
    char snapshot[512];
    const char *values[N_STATE_KEYS - 1]; /* the last key, the paused tenants, is pp */
    static struct paused_pub pp;          /* loop thread only; too big for the stack */
    struct obx_worker_stats ws;
    struct obx_webhook_stats hs = {0};
    int64_t now = obx_mono_ms(obx_clock_real());

    obx_worker_stats(s->worker, &ws);
    if (s->webhook)
        obx_webhook_stats(s->webhook, &hs);
    pp.text[0] = '[';
    pp.len = 1;
    pp.sig = 14695981039346656037ULL;
    obx_worker_tenants(s->worker, on_paused_lane, &pp);
    pp.text[pp.len++] = ']';
    pp.text[pp.len] = '\0';
    /* Refused webhooks are lost (Partoo never retries a 4xx): `status` shows them too. */
    snprintf(bad_sig, sizeof bad_sig, "%lld", (long long)hs.rejected_signature);
    snprintf(too_large, sizeof too_large, "%lld", (long long)hs.rejected_too_large);
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    snprintf(started, sizeof started, "%lld", (long long)s->start_time_ms);
    snprintf(until, sizeof until, "%lld", (long long)ws.paused_until_ms);
    snprintf(api, sizeof api, "%d", s->api ? obx_api_port(s->api) : 0);
    snprintf(wh, sizeof wh, "%d", s->webhook ? obx_webhook_port(s->webhook) : 0);
    values[0] = running ? "1" : "0";
    values[1] = pid;
    values[2] = started;
    values[3] = ws.circuit;
    values[4] = ws.paused_reason;
    values[5] = ws.paused_reason ? until : NULL;
    values[6] = api;
    values[7] = wh;
    values[8] = bad_sig;
    values[9] = too_large;
    snprintf(snapshot, sizeof snapshot, "%d|%s|%s|%s|%s|%016llx", running, ws.circuit,
             ws.paused_reason ? ws.paused_reason : "-", bad_sig, too_large,
             (unsigned long long)pp.sig);
    if (strcmp(snapshot, s->published) == 0 && now - s->published_mono_ms < STATE_HEARTBEAT_MS)
        return;
    if (s->publishing)
        return; /* the next tick publishes what changed meanwhile */
    for (int i = 0; i < N_STATE_KEYS - 1; i++) {
        s->pub.values[i] = NULL;
        if (values[i]) {
            snprintf(s->pub.text[i], sizeof s->pub.text[i], "%s", values[i]);
            s->pub.values[i] = s->pub.text[i];
        }
    }
    memcpy(s->pub.tenants, pp.text, pp.len + 1);
    s->pub.values[N_STATE_KEYS - 1] = s->pub.tenants;
    snprintf(s->pub.snapshot, sizeof s->pub.snapshot, "%s", snapshot);
    s->pub.mono_ms = now;
    s->publishing = 1;
    obx_storeq_submit(s->q, &s->pub.job);
}

/* Store thread. */
static enum obx_err
run_publish(struct obx_store *st, void *arg)
{
    static const char *const keys[N_STATE_KEYS] = {"running",
                                                   "pid",
                                                   "started_at_ms",
                                                   "circuit",
                                                   "paused_reason",
                                                   "paused_until_ms",
                                                   "api_port",
                                                   "webhook_port",
                                                   OBX_STATE_WEBHOOKS_REJECTED_SIGNATURE,
                                                   OBX_STATE_WEBHOOKS_REJECTED_TOO_LARGE,
                                                   OBX_STATE_TENANTS_PAUSED};
    struct publish_job *j = arg;

    return obx_store_publish_state(st, keys, j->values, N_STATE_KEYS);
}

static void
on_published(void *arg, enum obx_err err)
{
    struct server *s = (struct server *)((char *)arg - offsetof(struct server, pub));

    s->publishing = 0;
    if (err != OBX_OK)
        return; /* status shows stale state; the next tick tries again */
    snprintf(s->published, sizeof s->published, "%s", s->pub.snapshot);
    s->published_mono_ms = s->pub.mono_ms;
}

/* The cron's heartbeat job. */
static void
heartbeat(void *arg)
{
    publish_state(arg, 1);
}

static enum obx_err
add_signal(struct server *s, struct event **ev, int sig, event_callback_fn fn)
{
    *ev = evsignal_new(s->base, sig, fn, s);
    if (!*ev || event_add(*ev, NULL) != 0)
        return OBX_EIO;
    return OBX_OK;
}

/* TERM and INT drain and stop; HUP reloads. */
static enum obx_err
add_signals(struct server *s)
{
    enum obx_err err = add_signal(s, &s->sig_term, SIGTERM, on_stop_signal);

    if (err == OBX_OK)
        err = add_signal(s, &s->sig_int, SIGINT, on_stop_signal);
    if (err == OBX_OK)
        err = add_signal(s, &s->sig_hup, SIGHUP, on_reload_signal);
    return err;
}

/* The keyed audit chain: serve seals with audit_key_file's key, and refuses to start
   without the key of a chain that is keyed already (it could not seal). */
static enum obx_err
use_audit_key(struct server *s, struct obx_store *st, int may_start)
{
    char msg[512];
    enum obx_err err = OBX_OK;

    if (s->cfg->audit_key_file)
        err = obx_audit_use_key(st, s->cfg->audit_key_file, may_start, msg, sizeof msg);
    if (err == OBX_OK)
        err = obx_audit_check_key(st, msg, sizeof msg);
    if (err != OBX_OK)
        obx_log(OBX_LOG_ERROR, "cannot use the audit key", OBX_KS("error", msg));
    return err;
}

static enum obx_err
open_store(struct server *s)
{
    struct obx_store_opts o = {0};
    int64_t recovered = 0;
    enum obx_err err;

    o.synchronous_normal = !s->cfg->synchronous_full;
    o.max_db_size = s->cfg->max_db_size;
    /* Short: a lock held elsewhere must not stall the loop; callers answer 503 instead. */
    o.busy_timeout_ms = 1000;
    /*
     * Checkpoint every ~40 MB of WAL instead of SQLite's 4 MB: the hot pages (index tails,
     * the audit log's end, the sha256 dedup index) are rewritten into the WAL many times
     * between checkpoints but copied back once, and each checkpoint is an fsync'ed write
     * burst on the loop thread. Measured: +10-20 % verified webhooks/s
     * (docs/benchmarks.md). The WAL file then stays up to that size on disk.
     */
    o.wal_pages = 10000;
    /* Two connections: the writer, which the store thread takes over, and the loop's,
     * which only reads (WAL: it never waits for the writer). */
    err = obx_store_open(s->cfg->db, &o, &s->writer);
    /* The loop's reads (lists, stats, the dashboard) are small: a quarter of the page
     * cache keeps serve's memory near what one connection used. */
    o.cache_kib = 2048;
    if (err == OBX_OK)
        err = obx_store_open(s->cfg->db, &o, &s->st);
    if (err != OBX_OK) {
        obx_log(OBX_LOG_ERROR, "cannot open the database", OBX_KS("db", s->cfg->db),
                OBX_KS("error", obx_strerror(err)));
        return err;
    }
    err = use_audit_key(s, s->writer, 1);
    if (err == OBX_OK)
        err = use_audit_key(s, s->st, 0); /* verifying and exporting the chain read with it */
    /* Every write goes through the store thread: one that does not fails loudly. */
    if (err == OBX_OK)
        err = obx_store_forbid_writes(s->st);
    /* We hold the serve lock: any `sending` row belongs to a process that died. */
    if (err == OBX_OK)
        err = obx_store_recover(s->writer, 1, &recovered);
    if (err == OBX_OK && recovered)
        obx_log(OBX_LOG_WARN, "returned messages of a previous process to the queue",
                OBX_KI("count", recovered));
    return err;
}

/*
 * Descriptor budget. Raises the soft RLIMIT_NOFILE to the hard limit, then gives each
 * listener what the rest of the process cannot need: a fixed part (stdio, the lock, the
 * event loop, logs), SQLite's files, the worker's libcurl connections and resolver
 * socketpairs (2 per request in flight, and the multi handle's own), the inbox relay's
 * (the same for its 4), the verify pool's wake pipe and the two listening sockets. Each
 * listener's share holds its connections and its lingering sockets (a quarter of the
 * connections, httpd.c). Beyond the cap, clients wait in the kernel's backlog, which costs
 * no descriptor; without this, accept() would hit EMFILE and a descriptor SQLite or libcurl
 * needed could be missing. Returns the cap per listener.
 */
#define FD_FIXED 16
#define FD_SQLITE 12 /* three connections (writer, loop, sealer) and their WAL files */
#define FD_INBOX (2 * 4 + 4)
#define FD_VERIFY_POOL 2
#define FD_LISTENING 2
#define MIN_CONNECTIONS 8
#define MAX_CONNECTIONS 4096 /* past this the loop's own work per connection is the limit */

static size_t
descriptor_budget(const struct obx_config *cfg)
{
    struct rlimit rl;
    int64_t curl = 2 * cfg->max_inflight + 4, reserved, share, conns;
    int raised = 0;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        rl.rlim_cur = 1024;
        rl.rlim_max = 1024;
    } else if (rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max;
        rl.rlim_cur = want;
        raised = setrlimit(RLIMIT_NOFILE, &rl) == 0;
        if (!raised && getrlimit(RLIMIT_NOFILE, &rl) != 0)
            rl.rlim_cur = 1024;
    }
    reserved = FD_FIXED + FD_SQLITE + curl + FD_INBOX + FD_VERIFY_POOL + FD_LISTENING;
    share = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > INT32_MAX
                ? INT32_MAX
                : ((int64_t)rl.rlim_cur - reserved) / 2;
    /* A listener's share holds conns + conns / 4 + 1 lingering sockets. */
    conns = (share - 1) * 4 / 5;
    if (conns > MAX_CONNECTIONS)
        conns = MAX_CONNECTIONS;
    if (conns < MIN_CONNECTIONS)
        conns = MIN_CONNECTIONS; /* too few descriptors: accept() will pause on EMFILE */
    obx_log(conns == MIN_CONNECTIONS ? OBX_LOG_WARN : OBX_LOG_INFO, "descriptor budget",
            OBX_KI("nofile", rl.rlim_cur == RLIM_INFINITY ? -1 : (int64_t)rl.rlim_cur),
            OBX_KI("raised", raised), OBX_KI("fixed", FD_FIXED), OBX_KI("sqlite", FD_SQLITE),
            OBX_KI("libcurl", curl), OBX_KI("inbox", FD_INBOX),
            OBX_KI("verify_pool", FD_VERIFY_POOL), OBX_KI("listening", FD_LISTENING),
            OBX_KI("connections_per_listener", conns),
            OBX_KI("lingering_per_listener", conns / 4 + 1));
    return (size_t)conns;
}

static enum obx_err
start(struct server *s)
{
    enum obx_err err = take_lock(s);
    size_t conns = descriptor_budget(s->cfg);

    if (err == OBX_OK)
        err = open_store(s);
    if (err == OBX_OK) {
        s->base = event_base_new();
        if (!s->base)
            err = OBX_ENOMEM;
    }
    if (err == OBX_OK) {
        struct obx_store *writer = s->writer;
        s->writer = NULL; /* the store thread's now, even if it could not start */
        err = obx_storeq_new(s->base, writer, &s->q);
        s->pub.job.run = run_publish;
        s->pub.job.done = on_published;
        s->pub.job.arg = &s->pub;
        s->rec.job.run = run_reconcile;
        s->rec.job.done = on_reconciled;
        s->rec.job.arg = &s->rec;
    }
    if (err == OBX_OK)
        err = add_signals(s);
    if (err == OBX_OK)
        err = obx_worker_new(s->base, s->st, s->q, s->cfg, &s->worker);
    if (err == OBX_OK)
        err = obx_inbox_new(s->base, s->st, s->q, s->cfg, &s->inbox);
    if (err == OBX_OK)
        err = obx_api_new(s->base, s->st, s->q, s->cfg, s->worker, conns, &s->api);
    if (err == OBX_OK) {
        s->reconcile_ev = evtimer_new(s->base, on_reconcile, s);
        err = s->reconcile_ev ? OBX_OK : OBX_ENOMEM;
    }
    if (err == OBX_OK)
        err = obx_webhook_new(s->base, s->q, s->cfg, conns, on_events_stored, s, &s->webhook);
    if (err == OBX_OK) {
        struct obx_cron_env env = {s->q, &s->cfg, s->worker, heartbeat, s};
        err = obx_cron_new(s->base, &env, &s->cron);
    }
    if (err == OBX_OK) {
        char msg[512];
        err = obx_sealer_start_sqlite(s->cfg->db, s->q, s->cfg->audit_key_file, &s->sealer, msg,
                                      sizeof msg);
        if (err != OBX_OK)
            obx_log(OBX_LOG_ERROR, "cannot start the audit sealer", OBX_KS("error", msg));
    }
    if (err == OBX_OK) {
        publish_state(s, 1);
        obx_api_set_metrics(s->api, collect_metrics, render_metrics, s);
        event_active(s->reconcile_ev, EV_TIMEOUT, 1); /* events stored before a crash */
    }
    return err;
}

/* ---- PostgreSQL -------------------------------------------------------------------------- */

static void
on_pg_notify(void *ctx)
{
    struct server *s = ctx;

    obx_worker_notify(s->worker);
}

/* The open pauses, read on the store thread for a listener that was away. */
struct pause_resync {
    struct obx_storeq_job job;
    struct server *s;
    struct obx_buf pairs; /* "scope\0key\0" for each open pause */
};

static int
collect_pause(void *ctx, const struct obx_pause_row *p)
{
    struct pause_resync *r = ctx;
    enum obx_err err = obx_buf_append(&r->pairs, p->scope, strlen(p->scope) + 1);

    if (err == OBX_OK)
        err = obx_buf_append(&r->pairs, p->key, strlen(p->key) + 1);
    return err != OBX_OK;
}

static enum obx_err
run_pause_resync(struct obx_store *st, void *arg)
{
    return obx_store_dash_pauses(st, collect_pause, arg);
}

static void
on_pause_resync(void *arg, enum obx_err err)
{
    struct pause_resync *r = arg;
    const char *p = r->pairs.data, *end = p ? p + r->pairs.len : p;

    while (err == OBX_OK && p < end) {
        const char *scope = p, *key = scope + strlen(scope) + 1;
        obx_worker_release_held(r->s->worker, scope, key);
        p = key + strlen(key) + 1;
    }
    obx_buf_release(&r->pairs);
    obx_free(r);
}

/*
 * A channel or tenant paused on some node: this node sends nothing more of it (SPEC §13).
 * scope NULL: the listener was away and may have missed some: every open pause is applied.
 */
static void
on_pg_pause(void *ctx, const char *scope, const char *key)
{
    struct server *s = ctx;
    struct pause_resync *r;

    if (scope) {
        obx_worker_release_held(s->worker, scope, key);
        return;
    }
    r = obx_calloc(1, sizeof *r);
    if (!r)
        return; /* the claim skips them anyway; only what was claimed ahead may go */
    r->s = s;
    obx_buf_init(&r->pairs, 64 * 1024 * 1024);
    r->job.run = run_pause_resync;
    r->job.done = on_pause_resync;
    r->job.arg = r;
    r->job.flags = OBX_STOREQ_OWN_TX;
    obx_storeq_submit(s->q, &r->job);
}

static void
on_nodes_changed(void *ctx)
{
    struct server *s = ctx;

    obx_worker_nodes_changed(s->worker);
}

/*
 * serve on PostgreSQL (SPEC §12; issue 15, in progress): the delivery core, tenants and
 * webhooks. The store thread writes through its own connection, the loop has none (so it
 * never waits on the network), a listener hears producers' COMMITs, and the node thread
 * holds this node's tenant leases, which fence every write. Not yet here: the reply relay,
 * the periodic jobs and the read routes (they answer 501).
 */
static enum obx_err
start_pg(struct server *s, size_t conns)
{
    char msg[512], shown[512], host[64] = "localhost";
    struct obx_store_pg_nodes_opts no = {0};
    enum obx_err err;

    obx_pg_redact_uri(s->cfg->db, shown, sizeof shown);
    if (s->cfg->node_name)
        snprintf(s->node, sizeof s->node, "%s", s->cfg->node_name);
    else {
        (void)gethostname(host, sizeof host - 1);
        snprintf(s->node, sizeof s->node, "%s:%d", host, (int)getpid());
    }
    err = obx_store_pg_open_store(s->cfg->db, s->cfg->db_schema, s->node, 1, &s->writer, msg,
                                  sizeof msg);
    if (err == OBX_OK) {
        /*
         * A node stopped inside a transaction (SIGSTOP, a VM paused) holds its lease row
         * locked (lease_check's FOR SHARE), and a taker skips locked rows: without a limit
         * its tenants would wait for it however long it sleeps. PostgreSQL ends such a
         * session after a third of node_lease, well before the lease runs out; a node that
         * wakes up finds its connection gone and its lease lost.
         *
         * lock_timeout: serve gives way to producers. A producer's INSERT takes its
         * conversations' locks in its own row order, and a group of serve's calls (a finish
         * leaving several lines, an enqueue) takes others in another: each could wait for the
         * other, and PostgreSQL would break the deadlock after deadlock_timeout (1 s) by
         * failing one of them, maybe the producer's own transaction. Serve's wait ends first
         * instead: its call fails alone (its savepoint), a finish is written again later, an
         * enqueue answers 503, and the producer goes on.
         */
        char set[128];
        snprintf(set, sizeof set,
                 "SET idle_in_transaction_session_timeout = %lld; SET lock_timeout = %d",
                 (long long)(s->cfg->node_lease_ms / 3), SERVE_PG_LOCK_TIMEOUT_MS);
        err = obx_pg_set_session(s->writer->pg, set);
        if (err != OBX_OK)
            snprintf(msg, sizeof msg, "%s", obx_pg_errmsg(s->writer->pg));
    }
    if (err == OBX_OK)
        err = obx_store_pg_open_store(s->cfg->db, s->cfg->db_schema, s->node, 0, &s->st, msg,
                                      sizeof msg);
    if (err != OBX_OK) {
        obx_log(OBX_LOG_ERROR, "cannot open the database", OBX_KS("db", shown),
                OBX_KS("error", msg));
        return err;
    }
    s->writer->max_db_size = s->cfg->max_db_size; /* enqueue checks it (SIGHUP: set_quota) */
    /* The store thread seals, verifies and exports the chain: the key is its store's. */
    err = use_audit_key(s, s->writer, 1);
    if (err != OBX_OK)
        return err;
    s->base = event_base_new();
    if (!s->base)
        return OBX_ENOMEM;
    err = obx_storeq_new(s->base, s->writer, &s->q);
    s->writer = NULL; /* the store thread's now, even if it could not start */
    if (err == OBX_OK)
        err = add_signals(s);
    if (err == OBX_OK)
        err = obx_worker_new(s->base, s->st, s->q, s->cfg, &s->worker);
    if (err == OBX_OK)
        err = obx_inbox_new(s->base, s->st, s->q, s->cfg, &s->inbox);
    if (err == OBX_OK)
        err = obx_api_new(s->base, s->st, s->q, s->cfg, s->worker, conns, &s->api);
    if (err == OBX_OK) {
        s->rec.job.run = run_reconcile;
        s->rec.job.done = on_reconciled;
        s->rec.job.arg = &s->rec;
        s->reconcile_ev = evtimer_new(s->base, on_reconcile, s);
        err = s->reconcile_ev ? OBX_OK : OBX_ENOMEM;
    }
    if (err == OBX_OK) {
        /* Re-sending overdue confirmations and returning expired leases. */
        struct obx_cron_env env = {s->q, &s->cfg, s->worker, NULL, NULL, 1};
        err = obx_cron_new(s->base, &env, &s->cron);
    }
    if (err == OBX_OK)
        obx_api_set_metrics(s->api, collect_metrics, render_metrics, s);
    if (err == OBX_OK)
        err = obx_webhook_new(s->base, s->q, s->cfg, conns, on_events_stored, s, &s->webhook);
    if (err == OBX_OK) {
        err = obx_store_pg_listen_new(s->base, s->cfg->db, s->cfg->db_schema, on_pg_notify,
                                      on_pg_pause, s, &s->listen, msg, sizeof msg);
        if (err != OBX_OK)
            obx_log(OBX_LOG_ERROR, "cannot listen for new messages", OBX_KS("error", msg));
    }
    if (err == OBX_OK) {
        no.uri = s->cfg->db;
        no.schema = s->cfg->db_schema;
        no.node = s->node;
        no.lease_ms = s->cfg->node_lease_ms;
        err = obx_store_pg_nodes_new(s->base, &no, on_nodes_changed, s, &s->nodes, msg, sizeof msg);
        if (err != OBX_OK)
            obx_log(OBX_LOG_ERROR, "cannot join the nodes", OBX_KS("error", msg));
    }
    if (err == OBX_OK) {
        err = obx_sealer_start_pg(s->cfg->db, s->cfg->db_schema, s->node, s->cfg->audit_key_file,
                                  &s->sealer, msg, sizeof msg);
        if (err != OBX_OK)
            obx_log(OBX_LOG_ERROR, "cannot start the audit sealer", OBX_KS("error", msg));
    }
    if (err == OBX_OK) {
        obx_worker_use_nodes(s->worker, s->nodes);
        event_active(s->reconcile_ev, EV_TIMEOUT, 1); /* events stored before a crash */
        obx_log(OBX_LOG_INFO, "node of an outbox on PostgreSQL", OBX_KS("node", s->node),
                OBX_KI("node_lease_ms", s->cfg->node_lease_ms));
    }
    return err;
}

static void
stop(struct server *s)
{
    if (s->cron && !obx_store_pg_in_use(s->st)) {
        s->published[0] = '\0'; /* force the write */
        if (s->publishing)
            obx_storeq_drain(s->q);
        publish_state(s, 0);
    }
    /* Every job still queued runs, and its done callback, while its module exists. */
    if (s->q)
        obx_storeq_drain(s->q);
    obx_cron_free(s->cron);
    obx_webhook_free(s->webhook);
    obx_api_free(s->api);
    obx_inbox_free(s->inbox);
    obx_store_pg_listen_free(s->listen);
    obx_worker_free(s->worker);
    /* After the worker: its last outcomes are written; a clean stop hands the tenants on
     * at once (a killed node's move after node_lease). */
    obx_store_pg_nodes_free(s->nodes, 1);
    obx_sealer_stop(s->sealer); /* after the last outcomes: they are sealed later */
    if (s->reconcile_ev)
        event_free(s->reconcile_ev);
    if (s->sig_term)
        event_free(s->sig_term);
    if (s->sig_int)
        event_free(s->sig_int);
    if (s->sig_hup)
        event_free(s->sig_hup);
    if (s->hard_stop)
        event_free(s->hard_stop);
    obx_storeq_free(s->q); /* joins the store thread; frees the writer */
    if (s->base)
        event_base_free(s->base);
    obx_store_free(s->writer);
    obx_store_free(s->st);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    obx_config_release(s->cfg);
    obx_free(s->cfg);
}

/*
 * The API key lives in this process's memory (and in libcurl's copies of the request
 * headers, which it frees without wiping): no core file may carry it. RLIMIT_CORE 0 stops
 * the kernel writing one; not dumpable also stops core handlers that ignore the limit
 * (systemd-coredump honours PR_SET_DUMPABLE) and ptrace by other processes of the same
 * user. Failures are not fatal: the unit file sets LimitCORE=0 as well.
 */
static void
harden_process(void)
{
    struct rlimit none = {0, 0};

    if (setrlimit(RLIMIT_CORE, &none) != 0)
        obx_log(OBX_LOG_WARN, "cannot disable core dumps", OBX_KS("error", strerror(errno)));
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        obx_log(OBX_LOG_WARN, "cannot mark the process not dumpable",
                OBX_KS("error", strerror(errno)));
}

enum obx_err
obx_server_run(struct obx_config *cfg, obx_reload_fn reload, void *reload_ctx)
{
    struct server s = {.lock_fd = -1,
                       .reload = reload,
                       .reload_ctx = reload_ctx,
                       .start_time_ms = obx_now_ms(obx_clock_real())};
    enum obx_err err;

    s.cfg = obx_malloc(sizeof *s.cfg);
    if (!s.cfg) {
        obx_config_release(cfg);
        return OBX_ENOMEM;
    }
    *s.cfg = *cfg; /* moved: the caller's copy is no longer released */
    memset(cfg, 0, sizeof *cfg);
    harden_process();
    if (obx_config_hide_env_key(environ) != OBX_OK) {
        obx_config_release(s.cfg);
        obx_free(s.cfg);
        return OBX_ENOMEM;
    }
    event_set_log_callback(on_libevent_log);
    /* Only possible before SQLite initialises, i.e. before the database is opened. */
    if (obx_db_route_log(on_sqlite_log) != OBX_OK)
        obx_log(OBX_LOG_WARN, "cannot route SQLite's diagnostics to the log");
    if (obx_db_tune_process() != OBX_OK)
        obx_log(OBX_LOG_WARN, "cannot turn SQLite's allocation statistics off");
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        stop(&s);
        return OBX_EIO;
    }
    if (obx_pg_is_uri(s.cfg->db))
        err = start_pg(&s, descriptor_budget(s.cfg));
    else
        err = start(&s);
    if (err == OBX_OK) {
        char shown[512];
        obx_pg_redact_uri(s.cfg->db, shown, sizeof shown);
        obx_log(OBX_LOG_INFO, "serving", OBX_KS("db", shown),
                OBX_KS("partoo_base_url", s.cfg->partoo_base_url),
                OBX_KS("api_listen", s.cfg->api_listen), OBX_KI("api_port", obx_api_port(s.api)),
                OBX_KS("webhook_listen", s.cfg->webhook_listen),
                OBX_KI("webhook_port", s.webhook ? obx_webhook_port(s.webhook) : 0),
                OBX_KI("max_inflight", s.cfg->max_inflight),
                OBX_KI("rate_limit_per_min", (int64_t)(s.cfg->rate_limit_per_s * 60 + 0.5)),
                OBX_KI("pid", getpid()));
        event_base_dispatch(s.base);
    }
    stop(&s);
    curl_global_cleanup();
    obx_config_forget_env_key();
    return err;
}
