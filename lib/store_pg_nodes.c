/*
 * store_pg_nodes: the node thread (store_pg_nodes.h).
 *
 * Threads: the node thread runs rounds (beat, rebalance) on its own connection; the loop
 * thread reads the result. What they share is under `lock`: the tenants to spread, the
 * tenants held, and `stopping`. The eventfd carries "held changed" to the loop.
 */
#include "store_pg_nodes.h"

#include <errno.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "mem.h"
#include "pg.h"

#define HELD_MAX 4096 /* tenants one node may hold */

static const char SQL_BEAT[] = "SELECT count(*) FROM node_beat($1::text, $2::bigint)";
static const char SQL_REBALANCE[] =
    "SELECT tenant, epoch FROM lease_rebalance($1::text, $2::text[], $3::bigint)";
static const char SQL_LEAVE[] = "SELECT node_leave($1::text)";

struct obx_store_pg_nodes {
    /* Set at start, read-only after. */
    struct event_base *base;
    char *uri, *schema, *node; /* owned; uri wiped on free */
    int64_t lease_ms, beat_ms;
    obx_store_pg_nodes_fn fn;
    void *ctx;
    struct event *wake_ev; /* loop thread */
    int wake_fd;
    pthread_t thread;
    int started;

    /* Node thread only. */
    struct obx_pg *pg; /* NULL while disconnected */

    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t cond;  /* signalled on stop */
    int stopping;
    struct obx_buf tenants; /* the tenants as an array parameter, "" until set */
    struct obx_store_pg_held *held;
    size_t nheld;
};

static void
on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct obx_store_pg_nodes *nd = arg;
    uint64_t v;

    (void)what;
    while (read(fd, &v, sizeof v) == (ssize_t)sizeof v)
        ;
    nd->fn(nd->ctx);
}

/* Runs sql with params; the result, or NULL after dropping the connection. */
static PGresult *
query(struct obx_store_pg_nodes *nd, const char *sql, int nparams, const char *const *vals)
{
    PGresult *r;

    if (!nd->pg) {
        char msg[256];
        if (obx_pg_open(nd->uri, nd->schema, &nd->pg, msg, sizeof msg) != OBX_OK)
            return NULL;
    }
    r = PQexecParams(obx_pg_conn(nd->pg), sql, nparams, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        return r;
    PQclear(r);
    /* Whatever failed, the next round starts from a new connection. */
    obx_pg_free(nd->pg);
    nd->pg = NULL;
    return NULL;
}

/* Compares two held lists by tenant and epoch (the order is the query's: by tenant). */
static int
same_held(const struct obx_store_pg_held *a, size_t na, const struct obx_store_pg_held *b,
          size_t nb)
{
    if (na != nb)
        return 0;
    for (size_t i = 0; i < na; i++)
        if (a[i].epoch != b[i].epoch || strcmp(a[i].tenant, b[i].tenant) != 0)
            return 0;
    return 1;
}

/* One round: beat, rebalance, publish. */
static void
round_once(struct obx_store_pg_nodes *nd, struct obx_store_pg_held *fresh)
{
    int64_t start = obx_mono_ms(obx_clock_real());
    char lease[24], *tenants;
    const char *vals[3];
    PGresult *r;
    size_t n = 0;
    int changed;

    snprintf(lease, sizeof lease, "%lld", (long long)nd->lease_ms);
    pthread_mutex_lock(&nd->lock);
    tenants = obx_strdup(nd->tenants.len ? obx_buf_str(&nd->tenants) : "{}");
    pthread_mutex_unlock(&nd->lock);
    if (!tenants)
        return;
    vals[0] = nd->node;
    vals[1] = lease;
    r = query(nd, SQL_BEAT, 2, vals);
    PQclear(r);
    if (r) {
        vals[1] = tenants;
        vals[2] = lease;
        r = query(nd, SQL_REBALANCE, 3, vals);
    }
    obx_free(tenants);
    if (!r)
        return; /* what it held stays valid until its until_mono_ms, no longer */
    for (int i = 0; i < PQntuples(r) && n < HELD_MAX; i++, n++) {
        snprintf(fresh[n].tenant, sizeof fresh[n].tenant, "%s", PQgetvalue(r, i, 0));
        fresh[n].epoch = strtoll(PQgetvalue(r, i, 1), NULL, 10);
        fresh[n].until_mono_ms = start + nd->lease_ms - nd->beat_ms;
    }
    PQclear(r);
    pthread_mutex_lock(&nd->lock);
    changed = !same_held(nd->held, nd->nheld, fresh, n);
    memcpy(nd->held, fresh, n * sizeof *fresh);
    nd->nheld = n;
    pthread_mutex_unlock(&nd->lock);
    if (changed) {
        uint64_t one = 1;
        /* A full counter already holds a wake-up: EAGAIN loses nothing. */
        if (write(nd->wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
            return;
    }
}

static void *
node_thread(void *arg)
{
    struct obx_store_pg_nodes *nd = arg;
    struct obx_store_pg_held *fresh = obx_calloc(HELD_MAX, sizeof *fresh);

    pthread_mutex_lock(&nd->lock);
    while (!nd->stopping && fresh) {
        struct timespec until;
        pthread_mutex_unlock(&nd->lock);
        round_once(nd, fresh);
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += nd->beat_ms / 1000;
        until.tv_nsec += (nd->beat_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&nd->lock);
        while (!nd->stopping && pthread_cond_timedwait(&nd->cond, &nd->lock, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&nd->lock);
    obx_free(fresh);
    return NULL;
}

enum obx_err
obx_store_pg_nodes_new(struct event_base *base, const struct obx_store_pg_nodes_opts *o,
                       obx_store_pg_nodes_fn fn, void *ctx, struct obx_store_pg_nodes **out,
                       char *errmsg, size_t n)
{
    struct obx_store_pg_nodes *nd = obx_calloc(1, sizeof *nd);
    enum obx_err err = OBX_OK;

    *out = NULL;
    if (!nd)
        return OBX_ENOMEM;
    nd->wake_fd = -1;
    pthread_mutex_init(&nd->lock, NULL);
    pthread_cond_init(&nd->cond, NULL);
    obx_buf_init(&nd->tenants, (size_t)4 << 20);
    nd->base = base;
    nd->fn = fn;
    nd->ctx = ctx;
    nd->lease_ms = o->lease_ms;
    nd->beat_ms = o->beat_ms > 0 ? o->beat_ms : o->lease_ms / 3;
    nd->uri = obx_strdup(o->uri);
    nd->schema = obx_strdup(o->schema);
    nd->node = obx_strdup(o->node);
    nd->held = obx_calloc(HELD_MAX, sizeof *nd->held);
    nd->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!nd->uri || !nd->schema || !nd->node || !nd->held || nd->wake_fd < 0)
        err = OBX_ENOMEM;
    if (err == OBX_OK && (o->lease_ms <= 0 || nd->beat_ms <= 0 || nd->beat_ms >= o->lease_ms)) {
        snprintf(errmsg, n, "node_lease must be longer than the beat");
        err = OBX_ECONFIG;
    }
    /* Connect once here, so that a wrong URI fails at start rather than in the thread. */
    if (err == OBX_OK)
        err = obx_pg_open(nd->uri, nd->schema, &nd->pg, errmsg, n);
    if (err == OBX_OK) {
        nd->wake_ev = event_new(base, nd->wake_fd, EV_READ | EV_PERSIST, on_wake, nd);
        if (!nd->wake_ev || event_add(nd->wake_ev, NULL) != 0)
            err = OBX_ENOMEM;
    }
    if (err == OBX_OK && pthread_create(&nd->thread, NULL, node_thread, nd) != 0)
        err = OBX_ENOMEM;
    if (err != OBX_OK) {
        obx_store_pg_nodes_free(nd, 0);
        return err;
    }
    nd->started = 1;
    *out = nd;
    return OBX_OK;
}

enum obx_err
obx_store_pg_nodes_set_tenants(struct obx_store_pg_nodes *nd, const char *const *tenants,
                               size_t count)
{
    struct obx_buf b;
    enum obx_err err = OBX_OK;

    obx_buf_init(&b, (size_t)4 << 20);
    for (size_t i = 0; i < count && err == OBX_OK; i++)
        err = obx_pg_array_text(&b, tenants[i]);
    if (err == OBX_OK)
        err = obx_pg_array_end(&b);
    if (err == OBX_OK) {
        pthread_mutex_lock(&nd->lock);
        obx_buf_reset(&nd->tenants);
        err = obx_buf_append(&nd->tenants, obx_buf_str(&b), b.len);
        pthread_mutex_unlock(&nd->lock);
    }
    obx_buf_release(&b);
    return err;
}

size_t
obx_store_pg_nodes_held(struct obx_store_pg_nodes *nd, struct obx_store_pg_held *out, size_t max)
{
    size_t n;

    pthread_mutex_lock(&nd->lock);
    n = nd->nheld;
    memcpy(out, nd->held, (n < max ? n : max) * sizeof *out);
    pthread_mutex_unlock(&nd->lock);
    return n;
}

int64_t
obx_store_pg_nodes_until(struct obx_store_pg_nodes *nd, const char *tenant, int64_t epoch)
{
    int64_t until = 0;

    pthread_mutex_lock(&nd->lock);
    for (size_t i = 0; i < nd->nheld; i++)
        if (nd->held[i].epoch == epoch && strcmp(nd->held[i].tenant, tenant) == 0)
            until = nd->held[i].until_mono_ms;
    pthread_mutex_unlock(&nd->lock);
    return until;
}

void
obx_store_pg_nodes_free(struct obx_store_pg_nodes *nd, int leave)
{
    if (!nd)
        return;
    if (nd->started) {
        pthread_mutex_lock(&nd->lock);
        nd->stopping = 1;
        pthread_cond_signal(&nd->cond);
        pthread_mutex_unlock(&nd->lock);
        pthread_join(nd->thread, NULL);
    }
    if (leave) {
        const char *vals[1] = {nd->node};
        PQclear(query(nd, SQL_LEAVE, 1, vals));
    }
    obx_pg_free(nd->pg);
    if (nd->wake_ev)
        event_free(nd->wake_ev);
    if (nd->wake_fd >= 0)
        close(nd->wake_fd);
    if (nd->uri)
        explicit_bzero(nd->uri, strlen(nd->uri));
    obx_free(nd->uri);
    obx_free(nd->schema);
    obx_free(nd->node);
    obx_free(nd->held);
    obx_buf_release(&nd->tenants);
    pthread_cond_destroy(&nd->cond);
    pthread_mutex_destroy(&nd->lock);
    obx_free(nd);
}
