/*
 * store_pg_listen: LISTEN on the event loop (store_pg_listen.h).
 */
#include "store_pg_listen.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

#include "mem.h"
#include "store_dash.h"
#include "pg.h"

#define RECONNECT_MS 1000

struct obx_store_pg_listen {
    struct event_base *base;
    char *uri, *schema; /* owned; uri may hold a password: wiped on free */
    struct obx_pg *pg;  /* NULL while disconnected */
    struct event *read_ev, *retry_ev;
    obx_store_pg_listen_fn fn;
    obx_store_pg_pause_fn pause_fn; /* may be NULL */
    void *ctx;
    int64_t count;
};

static void on_read(evutil_socket_t fd, short what, void *arg);

/* Opens the connection, LISTENs, and starts watching its socket. */
static enum obx_err
connect_listen(struct obx_store_pg_listen *l, char *errmsg, size_t n)
{
    PGconn *c;
    char *channel, sql[200];
    enum obx_err err = obx_pg_open(l->uri, l->schema, &l->pg, errmsg, n);

    if (err != OBX_OK)
        return err;
    c = obx_pg_conn(l->pg);
    snprintf(sql, sizeof sql, "%s.outbox", l->schema);
    channel = PQescapeIdentifier(c, sql, strlen(sql));
    if (!channel) {
        err = OBX_ENOMEM;
    } else {
        snprintf(sql, sizeof sql, "LISTEN %s", channel);
        PQfreemem(channel);
        err = obx_pg_exec(l->pg, sql);
    }
    if (err == OBX_OK && PQsetnonblocking(c, 1) != 0)
        err = OBX_EDB;
    if (err == OBX_OK) {
        l->read_ev = event_new(l->base, PQsocket(c), EV_READ | EV_PERSIST, on_read, l);
        if (!l->read_ev || event_add(l->read_ev, NULL) != 0)
            err = OBX_ENOMEM;
    }
    if (err != OBX_OK) {
        snprintf(errmsg, n, "%s", obx_pg_errmsg(l->pg));
        if (l->read_ev)
            event_free(l->read_ev);
        l->read_ev = NULL;
        obx_pg_free(l->pg);
        l->pg = NULL;
    }
    return err;
}

static void
disconnect(struct obx_store_pg_listen *l)
{
    if (l->read_ev)
        event_free(l->read_ev);
    l->read_ev = NULL;
    obx_pg_free(l->pg);
    l->pg = NULL;
}

static void
schedule_retry(struct obx_store_pg_listen *l)
{
    struct timeval tv = {RECONNECT_MS / 1000, (RECONNECT_MS % 1000) * 1000};

    evtimer_add(l->retry_ev, &tv);
}

static void
on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct obx_store_pg_listen *l = arg;
    char msg[256];

    (void)fd;
    (void)what;
    if (connect_listen(l, msg, sizeof msg) != OBX_OK) {
        schedule_retry(l);
        return;
    }
    l->fn(l->ctx); /* whatever was committed while it was away */
    if (l->pause_fn)
        l->pause_fn(l->ctx, NULL, NULL); /* and the pauses it did not hear of */
}

static void
on_read(evutil_socket_t fd, short what, void *arg)
{
    struct obx_store_pg_listen *l = arg;
    PGconn *c = obx_pg_conn(l->pg);
    PGnotify *note;
    int got = 0;

    (void)fd;
    (void)what;
    if (!PQconsumeInput(c)) {
        /* The server or the network went away: listen again from a new connection. */
        disconnect(l);
        schedule_retry(l);
        l->fn(l->ctx);
        return;
    }
    while ((note = PQnotifies(c)) != NULL) {
        /* 0012's trigger: "pause <channel_id>", "pause-tenant <name>"; an insert's payload
         * is empty. */
        if (strncmp(note->extra, "pause ", 6) == 0) {
            if (l->pause_fn)
                l->pause_fn(l->ctx, OBX_PAUSE_CHANNEL, note->extra + 6);
        } else if (strncmp(note->extra, "pause-tenant ", 13) == 0) {
            if (l->pause_fn)
                l->pause_fn(l->ctx, OBX_PAUSE_TENANT, note->extra + 13);
        } else {
            got++;
        }
        PQfreemem(note);
    }
    if (got) {
        l->count += got;
        l->fn(l->ctx);
    }
}

enum obx_err
obx_store_pg_listen_new(struct event_base *base, const char *uri, const char *schema,
                        obx_store_pg_listen_fn fn, obx_store_pg_pause_fn pause_fn, void *ctx,
                        struct obx_store_pg_listen **out, char *errmsg, size_t n)
{
    struct obx_store_pg_listen *l = obx_calloc(1, sizeof *l);
    enum obx_err err;

    *out = NULL;
    if (!l)
        return OBX_ENOMEM;
    l->base = base;
    l->fn = fn;
    l->pause_fn = pause_fn;
    l->ctx = ctx;
    l->uri = obx_strdup(uri);
    l->schema = obx_strdup(schema);
    l->retry_ev = evtimer_new(base, on_retry, l);
    if (!l->uri || !l->schema || !l->retry_ev) {
        obx_store_pg_listen_free(l);
        return OBX_ENOMEM;
    }
    err = connect_listen(l, errmsg, n);
    if (err != OBX_OK) {
        obx_store_pg_listen_free(l);
        return err;
    }
    *out = l;
    return OBX_OK;
}

void
obx_store_pg_listen_free(struct obx_store_pg_listen *l)
{
    if (!l)
        return;
    disconnect(l);
    if (l->retry_ev)
        event_free(l->retry_ev);
    if (l->uri)
        explicit_bzero(l->uri, strlen(l->uri));
    obx_free(l->uri);
    obx_free(l->schema);
    obx_free(l);
}

int64_t
obx_store_pg_listen_count(const struct obx_store_pg_listen *l)
{
    return l->count;
}
