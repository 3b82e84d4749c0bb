/*
 * http_client: libcurl multi-socket <-> libevent.
 *
 * libcurl tells us which sockets to watch (on_curl_socket) and when to wake it
 * (on_curl_timer); libevent tells libcurl when a socket is ready (on_socket_ready)
 * or the timer fired (on_timeout). After each of those, finished transfers are
 * collected (collect_done) and their callbacks run outside any libcurl callback,
 * so a callback may start new requests.
 */
#include "http_client.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "mem.h"

#define SPARE_HANDLES 64

struct obx_http {
    struct event_base *base; /* borrowed */
    CURLM *multi;
    struct event *timer;
    struct obx_http_opts opts;
    struct obx_clock *clock; /* borrowed: opts.clock, or the real one */
    char *user_agent;
    char *ca_file;
    int inflight;
    struct request *requests; /* doubly linked, for freeing what is in flight */
    /*
     * Easy handles of finished transfers, reset and kept for the next ones: creating a
     * handle allocates and initialises several kilobytes of state each time. The live
     * connections themselves are in the multi handle's cache either way.
     */
    CURL *spare[SPARE_HANDLES];
    int nspare;
};

/* One transfer; owned by the client from obx_http_client_post until its callback returns. */
struct request {
    struct obx_http *h;
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    size_t body_len;
    int requests_made; /* on this transfer, by libcurl (on_prereq) */
    char resp[OBX_HTTP_BODY_KEEP + 1];
    size_t resp_len;
    char retry_after[128];
    char errbuf[CURL_ERROR_SIZE];
    int64_t started_mono_ms;
    obx_http_done_fn done;
    void *ctx;
    struct request *prev, *next;
};

/* Per-socket watcher, attached to curl's socket with curl_multi_assign. */
struct sock_watch {
    struct event *ev;
};

static void collect_done(struct obx_http *h);

static void
on_socket_ready(evutil_socket_t fd, short what, void *arg)
{
    struct obx_http *h = arg;
    int flags = 0, running = 0;

    if (what & EV_READ)
        flags |= CURL_CSELECT_IN;
    if (what & EV_WRITE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(h->multi, fd, flags, &running);
    collect_done(h);
}

static void
on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct obx_http *h = arg;
    int running = 0;

    (void)fd;
    (void)what;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    collect_done(h);
}

static int
on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct obx_http *h = userp;
    struct timeval tv;

    (void)multi;
    if (timeout_ms < 0) {
        evtimer_del(h->timer);
        return 0;
    }
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    return evtimer_add(h->timer, &tv) == 0 ? 0 : -1;
}

static int
on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct obx_http *h = userp;
    struct sock_watch *w = socketp;
    short kind = EV_PERSIST;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (w) {
            event_free(w->ev);
            obx_free(w);
            curl_multi_assign(h->multi, s, NULL);
        }
        return 0;
    }
    if (what & CURL_POLL_IN)
        kind |= EV_READ;
    if (what & CURL_POLL_OUT)
        kind |= EV_WRITE;
    if (!w) {
        w = obx_calloc(1, sizeof *w);
        if (!w)
            return -1;
        curl_multi_assign(h->multi, s, w);
    } else {
        event_free(w->ev);
    }
    w->ev = event_new(h->base, s, kind, on_socket_ready, h);
    if (!w->ev || event_add(w->ev, NULL) != 0)
        return -1;
    return 0;
}

static size_t
on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct request *r = userdata;
    size_t n = size * nmemb, room = OBX_HTTP_BODY_KEEP - r->resp_len;

    /* Keep the first bytes for the attempt log; accept and drop the rest. */
    if (room) {
        size_t take = n < room ? n : room;
        memcpy(r->resp + r->resp_len, ptr, take);
        r->resp_len += take;
        r->resp[r->resp_len] = '\0';
    }
    return n;
}

static size_t
on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
    struct request *r = userdata;
    size_t n = size * nitems, len;
    const char *v;

    if (n > 12 && strncasecmp(buf, "Retry-After:", 12) == 0) {
        v = buf + 12;
        len = n - 12;
        while (len && (*v == ' ' || *v == '\t')) {
            v++;
            len--;
        }
        while (len && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
            len--;
        if (len >= sizeof r->retry_after)
            len = sizeof r->retry_after - 1;
        memcpy(r->retry_after, v, len);
        r->retry_after[len] = '\0';
    } else if (n > 5 && strncmp(buf, "HTTP/", 5) == 0) {
        r->retry_after[0] = '\0'; /* a new response (after 100-continue) starts over */
        r->resp_len = 0;
    }
    return n;
}

/*
 * libcurl (7.88, Curl_retry_request) sends the same POST again on a fresh connection, without
 * telling the application, when a reused connection died after the request went out and
 * before any answer: Partoo would get a request that no attempt row records (issue 12). No
 * API reports that hidden retry, but each request libcurl makes is preceded by this call:
 * the second one is aborted, and the transfer ends with CURLE_ABORTED_BY_CALLBACK, a
 * transport error that the worker counts and retries with its own backoff.
 *
 * (Until 2026-12-07 the body went through a read callback whose rewind was refused, to the
 * same end. libcurl then gave every transfer a 16 KiB upload buffer for a body of a few
 * hundred bytes: 12 MB of serve's peak with 768 transfers in flight, docs/benchmarks.md.)
 */
static int
on_prereq(void *userdata, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
          int conn_local_port)
{
    struct request *r = userdata;

    (void)conn_primary_ip;
    (void)conn_local_ip;
    (void)conn_primary_port;
    (void)conn_local_port;
    return r->requests_made++ == 0 ? CURL_PREREQFUNC_OK : CURL_PREREQFUNC_ABORT;
}

static void
request_free(struct request *r)
{
    if (!r)
        return;
    if (r->easy) {
        struct obx_http *h = r->h;
        curl_multi_remove_handle(h->multi, r->easy);
        if (h->nspare < SPARE_HANDLES) {
            curl_easy_reset(r->easy); /* drops every option, the header list's pointer too */
            h->spare[h->nspare++] = r->easy;
        } else {
            curl_easy_cleanup(r->easy);
        }
    }
    /* Our copies of the headers hold the API key: wipe them (libcurl's own are out of
     * reach; serve disables core dumps for that reason). */
    for (struct curl_slist *l = r->headers; l; l = l->next)
        explicit_bzero(l->data, strlen(l->data));
    curl_slist_free_all(r->headers);
    obx_free(r->body);
    obx_free(r);
}

static void
unlink_request(struct obx_http *h, struct request *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        h->requests = r->next;
    if (r->next)
        r->next->prev = r->prev;
    h->inflight--;
}

static void
finish_request(struct obx_http *h, struct request *r, CURLcode code)
{
    struct obx_http_result res = {0};
    long status = 0;

    unlink_request(h, r);
    res.duration_ms = obx_mono_ms(h->clock) - r->started_mono_ms;
    if (code == CURLE_OK) {
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        res.status = (int)status;
    } else if (code == CURLE_ABORTED_BY_CALLBACK && r->requests_made > 1) {
        /* on_prereq refused libcurl's silent re-send; say what happened instead */
        res.error = "reused connection closed after the request was sent, without an answer";
    } else {
        res.error = r->errbuf[0] ? r->errbuf : curl_easy_strerror(code);
    }
    r->resp[r->resp_len] = '\0';
    res.body = r->resp;
    res.retry_after = r->retry_after[0] ? r->retry_after : NULL;
    r->done(r->ctx, &res);
    request_free(r);
}

static void
collect_done(struct obx_http *h)
{
    CURLMsg *msg;
    int left = 0;

    for (;;) {
        msg = curl_multi_info_read(h->multi, &left);
        if (!msg)
            break;
        if (msg->msg == CURLMSG_DONE) {
            struct request *r = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            finish_request(h, r, msg->data.result);
        }
    }
}

enum obx_err
obx_http_client_new(struct event_base *base, const struct obx_http_opts *o, struct obx_http **out)
{
    struct obx_http *h;

    *out = NULL;
    h = obx_calloc(1, sizeof *h);
    if (!h)
        return OBX_ENOMEM;
    h->base = base;
    h->opts = *o;
    h->clock = o->clock ? o->clock : obx_clock_real();
    h->user_agent = obx_strdup(o->user_agent ? o->user_agent : "partoo-outbox/" OBX_VERSION);
    h->ca_file = obx_strdup(o->ca_file);
    h->multi = curl_multi_init();
    h->timer = evtimer_new(base, on_timeout, h);
    if (!h->user_agent || (o->ca_file && !h->ca_file) || !h->multi || !h->timer) {
        obx_http_client_free(h);
        return OBX_ENOMEM;
    }
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, o->max_connections);
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, o->max_connections);
    *out = h;
    return OBX_OK;
}

void
obx_http_client_free(struct obx_http *h)
{
    if (!h)
        return;
    while (h->requests) {
        struct request *r = h->requests;
        unlink_request(h, r);
        request_free(r);
    }
    while (h->nspare > 0)
        curl_easy_cleanup(h->spare[--h->nspare]);
    if (h->multi)
        curl_multi_cleanup(h->multi);
    if (h->timer)
        event_free(h->timer);
    obx_free(h->user_agent);
    obx_free(h->ca_file);
    obx_free(h);
}

static enum obx_err
setup_easy(struct obx_http *h, struct request *r, const char *url, size_t body_len)
{
    CURL *e = r->easy;

    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    /* From our copy, which outlives the transfer; sent once (on_prereq). */
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, r);
    /*
     * A small receive buffer: only OBX_HTTP_BODY_KEEP bytes of an answer are kept (a longer
     * one just arrives in more calls of on_body), and libcurl 7.88 gives every transfer a
     * buffer of its own, so with max_inflight transfers at once (768 with 2,000 tenants)
     * each KiB here is 0.75 MB of serve's RSS: 4 KiB instead of the default 16 took serve
     * from 73.7 to 61.3 MB at 2,000 tenants (docs/benchmarks.md, "Tenants").
     */
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 4096L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, h->user_agent);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)h->opts.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)h->opts.request_timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    /* The path is ours, built from validated ids: never let libcurl merge dot segments. */
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    /* Peer and host verification stay on; only the CA bundle may change. */
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (h->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_file);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    return OBX_OK;
}

enum obx_err
obx_http_client_post(struct obx_http *h, const char *url, const char *const *headers,
                     size_t nheaders, const char *body, size_t body_len, obx_http_done_fn done,
                     void *ctx)
{
    struct request *r = obx_calloc(1, sizeof *r);
    enum obx_err err = OBX_ENOMEM;

    if (!r)
        return OBX_ENOMEM;
    r->h = h;
    r->done = done;
    r->ctx = ctx;
    r->body = obx_strndup(body, body_len);
    r->body_len = body_len;
    r->easy = h->nspare > 0 ? h->spare[--h->nspare] : curl_easy_init();
    if (!r->body || !r->easy)
        goto fail;
    for (size_t i = 0; i < nheaders; i++) {
        struct curl_slist *l = curl_slist_append(r->headers, headers[i]);
        if (!l)
            goto fail;
        r->headers = l;
    }
    err = setup_easy(h, r, url, body_len);
    if (err != OBX_OK)
        goto fail;
    r->started_mono_ms = obx_mono_ms(h->clock);
    if (curl_multi_add_handle(h->multi, r->easy) != CURLM_OK) {
        err = OBX_EIO;
        goto fail;
    }
    r->next = h->requests;
    if (h->requests)
        h->requests->prev = r;
    h->requests = r;
    h->inflight++;
    return OBX_OK;
fail:
    request_free(r);
    return err;
}

int
obx_http_client_inflight(const struct obx_http *h)
{
    return h->inflight;
}

const char *
obx_http_client_libversion(void)
{
    return curl_version_info(CURLVERSION_NOW)->version;
}
