/*
 * curl_floor: how many requests/s can a bare libcurl client send, the way `outbox serve` sends?
 *
 * Issue #3 asks serve to drain at >= 0.8 x the mock Partoo's capacity as wrk measures it (32
 * keep-alive connections). Serve pays for SQLite claims, commits and fsyncs, but also for
 * libcurl itself; this program measures libcurl alone, so that the target can be compared with
 * what no serve could beat. It does nothing but send: no database, no JSON library, no logging.
 *
 * It is wired like lib/http_client.c: one event_base, libcurl's multi *socket* interface
 * (CURLMOPT_SOCKETFUNCTION and CURLMOPT_TIMERFUNCTION driven by libevent, one event per
 * socket, re-created when curl changes its interest), completions collected after every
 * curl_multi_socket_action(). It keeps exactly C requests in flight for D seconds, then lets
 * the last ones finish. Each request is what serve's send_one() sends: POST
 * /v2/custom-channels/bench-ch/messages with x-APIKey, Content-Type: application/json, an
 * empty Expect and a User-Agent, and a ~190-byte JSON body shaped like bench/wrk_post.lua's,
 * with a unique external_message_id.
 *
 *   new handle (default)  like serve today: per request curl_easy_init(), a fresh header list,
 *                         every option of http_client.c's setup_easy(), curl_easy_cleanup()
 *   reuse (-r)            one easy handle per slot, set up once; per request only the body
 *                         options are set again before the handle is re-added
 *
 * Both modes share the multi handle's connection cache (CURLMOPT_MAXCONNECTS = C, as serve
 * sets it), so connections are kept alive in both; the report says how many were opened.
 *
 * Output: one line for people and one RESULT line for bench/curl_floor.sh:
 *   RESULT requests= duration_us= non2xx= errors= connects= cpu_us= user_us= sys_us=
 * requests counts completed transfers (any status); duration_us runs from the first request
 * to the last completion; cpu_us is getrusage(RUSAGE_SELF) user + system over the same span.
 *
 *   curl_floor -p PORT [-c CONCURRENCY] [-d SECONDS] [-r]
 *
 * Not linked with the obx library: plain malloc and stderr are enough for a benchmark, and a
 * client without serve's code is the point.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define API_KEY_HEADER "x-APIKey: bench-key" /* bench/lib.sh's BENCH_API_KEY */
#define USER_AGENT "partoo-outbox/bench"     /* bench/wrk_post.lua's; the mock only counts it */
#define BODY_MAX 512
#define CONNECT_TIMEOUT_MS 10000L /* serve's defaults (lib/config.c) */
#define REQUEST_TIMEOUT_MS 30000L
#define CONCURRENCY_MAX 1024

struct options {
    long port;
    long concurrency; /* requests kept in flight */
    long duration_s;  /* new requests are started until then */
    int reuse;        /* -r: keep each slot's easy handle */
};

struct client;

/* One of the C requests in flight. */
struct slot {
    struct client *f;
    CURL *easy;                 /* new-handle mode: NULL between requests */
    struct curl_slist *headers; /* new-handle mode only; reuse mode uses f->headers */
    int added;                  /* easy is in the multi handle */
    char body[BODY_MAX];        /* POSTFIELDS points here: not copied by curl */
    char errbuf[CURL_ERROR_SIZE];
};

/* The client and its run; lives on main()'s stack (client_init / client_release). */
struct client {
    struct options opt;
    struct event_base *base;
    CURLM *multi;
    struct event *curl_timer;   /* curl's timeout (on_curl_timer) */
    struct event *stop_timer;   /* end of the sending period */
    struct curl_slist *headers; /* reuse mode: shared by every slot */
    struct slot *slots;         /* opt.concurrency of them */
    char url[96];
    int stopping;          /* no new requests once set */
    int inflight;          /* added to the multi, not yet collected */
    int failed;            /* a setup call failed mid-run; the loop was broken */
    long pid;              /* in external_message_id; getpid() would be a syscall each */
    uint64_t next_id;      /* makes external_message_id unique */
    uint64_t requests;     /* completed transfers */
    uint64_t non2xx;       /* completed with a status outside 200..299 */
    uint64_t errors;       /* transfer failed (no status) */
    long connects;         /* new connections, CURLINFO_NUM_CONNECTS summed */
    int64_t start_mono_us; /* first request started */
    int64_t last_mono_us;  /* last completion */
};

/* Per-socket watcher, attached with curl_multi_assign (as in lib/http_client.c). */
struct sock_watch {
    struct event *ev;
};

static void collect_done(struct client *f);

static int64_t
mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t
cpu_us(const struct timeval *tv)
{
    return (int64_t)tv->tv_sec * 1000000 + tv->tv_usec;
}

/* ---- libcurl <-> libevent (lib/http_client.c's wiring) -------------------------------------- */

static void
on_socket_ready(evutil_socket_t fd, short what, void *arg)
{
    struct client *f = arg;
    int flags = 0;
    int running = 0;

    if (what & EV_READ)
        flags |= CURL_CSELECT_IN;
    if (what & EV_WRITE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(f->multi, fd, flags, &running);
    collect_done(f);
}

static void
on_curl_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct client *f = arg;
    int running = 0;

    (void)fd;
    (void)what;
    curl_multi_socket_action(f->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    collect_done(f);
}

static int
on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct client *f = userp;
    struct timeval tv;

    (void)multi;
    if (timeout_ms < 0) {
        evtimer_del(f->curl_timer);
        return 0;
    }
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    return evtimer_add(f->curl_timer, &tv) == 0 ? 0 : -1;
}

static int
on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct client *f = userp;
    struct sock_watch *w = socketp;
    short kind = EV_PERSIST;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (w) {
            event_free(w->ev);
            free(w);
            curl_multi_assign(f->multi, s, NULL);
        }
        return 0;
    }
    if (what & CURL_POLL_IN)
        kind |= EV_READ;
    if (what & CURL_POLL_OUT)
        kind |= EV_WRITE;
    if (!w) {
        w = calloc(1, sizeof *w);
        if (!w)
            return -1;
        curl_multi_assign(f->multi, s, w);
    } else {
        event_free(w->ev);
    }
    w->ev = event_new(f->base, s, kind, on_socket_ready, f);
    if (!w->ev || event_add(w->ev, NULL) != 0)
        return -1;
    return 0;
}

/* Serve keeps the first bytes of the answer for its attempt log; here they are only dropped. */
static size_t
on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    (void)ptr;
    (void)userdata;
    return size * nmemb;
}

/* Serve looks for Retry-After here; the callback's cost is kept, the parsing is not. */
static size_t
on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
    (void)buf;
    (void)userdata;
    return size * nitems;
}

/* ---- requests ---------------------------------------------------------------------------- */

/* The options http_client.c's setup_easy() sets, except the body's (set_body). */
static CURLcode
setup_easy(struct client *f, struct slot *s, struct curl_slist *headers)
{
    CURL *e = s->easy;
    CURLcode rc = curl_easy_setopt(e, CURLOPT_URL, f->url);

    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_POST, 1L);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_USERAGENT, USER_AGENT);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, REQUEST_TIMEOUT_MS);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_WRITEDATA, s);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_HEADERDATA, s);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_ERRORBUFFER, s->errbuf);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_PRIVATE, s);
    return rc;
}

/* serve's three headers (lib/worker.c send_one); the caller owns the list. */
static struct curl_slist *
new_headers(void)
{
    static const char *const lines[] = {API_KEY_HEADER, "Content-Type: application/json",
                                        "Expect:"};
    struct curl_slist *list = NULL;

    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        struct curl_slist *l = curl_slist_append(list, lines[i]);
        if (!l) {
            curl_slist_free_all(list);
            return NULL;
        }
        list = l;
    }
    return list;
}

/* Writes the next body into s->body and points the handle at it. */
static CURLcode
set_body(struct client *f, struct slot *s)
{
    uint64_t n = ++f->next_id;
    uint64_t c = n % 10000;
    int len = snprintf(s->body, sizeof s->body,
                       "{\"business_id\":\"biz-%llu\",\"external_conversation_id\":\"conv-%llu\","
                       "\"external_message_id\":\"floor%c-%ld-%llu\",\"content\":\"Bench message "
                       "%llu: hello, this is a typical short chat message body.\",\"sender_type\":"
                       "\"Consumer\"}",
                       (unsigned long long)(c % 10), (unsigned long long)c,
                       f->opt.reuse ? 'r' : 'n', f->pid, (unsigned long long)n,
                       (unsigned long long)n);
    CURLcode rc;

    if (len < 0 || (size_t)len >= sizeof s->body)
        return CURLE_FAILED_INIT;
    rc = curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->body);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    return rc;
}

/* new-handle mode: what obx_http_client_post() does with libcurl for every request. */
static CURLcode
prepare_new(struct client *f, struct slot *s)
{
    s->easy = curl_easy_init();
    s->headers = new_headers();
    if (!s->easy || !s->headers)
        return CURLE_OUT_OF_MEMORY;
    return setup_easy(f, s, s->headers);
}

/* Starts the next request on slot s. Returns 0, or -1 after saying what failed. */
static int
start_request(struct client *f, struct slot *s)
{
    CURLcode rc = CURLE_OK;
    CURLMcode mrc;

    if (!f->opt.reuse)
        rc = prepare_new(f, s);
    if (rc == CURLE_OK)
        rc = set_body(f, s);
    if (rc != CURLE_OK) {
        fprintf(stderr, "curl_floor: cannot set up a request: %s\n", curl_easy_strerror(rc));
        return -1;
    }
    mrc = curl_multi_add_handle(f->multi, s->easy);
    if (mrc != CURLM_OK) {
        fprintf(stderr, "curl_floor: cannot add a request: %s\n", curl_multi_strerror(mrc));
        return -1;
    }
    s->added = 1;
    f->inflight++;
    return 0;
}

/* Takes slot s's finished handle out of the multi; new-handle mode frees it, as serve does. */
static void
slot_retire(struct client *f, struct slot *s)
{
    if (s->added)
        curl_multi_remove_handle(f->multi, s->easy);
    s->added = 0;
    if (f->opt.reuse)
        return;
    curl_easy_cleanup(s->easy);
    s->easy = NULL;
    curl_slist_free_all(s->headers);
    s->headers = NULL;
}

static void
count_done(struct client *f, struct slot *s, CURLcode result)
{
    long status = 0;
    long connects = 0;

    f->requests++;
    f->last_mono_us = mono_us();
    if (result != CURLE_OK) {
        f->errors++;
        if (f->errors == 1)
            fprintf(stderr, "curl_floor: first failed transfer: %s\n",
                    s->errbuf[0] ? s->errbuf : curl_easy_strerror(result));
    } else if (curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK ||
               status < 200 || status > 299) {
        f->non2xx++;
    }
    if (curl_easy_getinfo(s->easy, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK)
        f->connects += connects;
}

/* Runs outside any libcurl callback, so starting the next request here is allowed. */
static void
collect_done(struct client *f)
{
    CURLMsg *msg;
    struct slot *s;
    int left = 0;

    for (;;) {
        msg = curl_multi_info_read(f->multi, &left);
        if (!msg)
            break;
        if (msg->msg != CURLMSG_DONE)
            continue;
        s = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
        count_done(f, s, msg->data.result); /* msg is invalid after the removal below */
        slot_retire(f, s);
        f->inflight--;
        if (!f->stopping && start_request(f, s) != 0) {
            f->failed = 1;
            f->stopping = 1;
        }
    }
    if (f->stopping && f->inflight == 0)
        event_base_loopbreak(f->base);
}

static void
on_stop(evutil_socket_t fd, short what, void *arg)
{
    struct client *f = arg;

    (void)fd;
    (void)what;
    f->stopping = 1;
    if (f->inflight == 0)
        event_base_loopbreak(f->base);
}

/* ---- the run ----------------------------------------------------------------------------- */

/* Returns 0, or -1 after saying what failed; client_release() frees what was set either way. */
static int
client_init(struct client *f, const struct options *o)
{
    const char *step = NULL;

    memset(f, 0, sizeof *f);
    f->opt = *o;
    f->pid = (long)getpid();
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%ld/v2/custom-channels/bench-ch/messages",
             o->port);
    f->base = event_base_new();
    f->multi = curl_multi_init();
    f->slots = calloc((size_t)o->concurrency, sizeof *f->slots);
    f->headers = o->reuse ? new_headers() : NULL;
    if (!f->base || !f->multi || !f->slots || (o->reuse && !f->headers)) {
        step = "allocate";
        goto out;
    }
    f->curl_timer = evtimer_new(f->base, on_curl_timeout, f);
    f->stop_timer = evtimer_new(f->base, on_stop, f);
    if (!f->curl_timer || !f->stop_timer) {
        step = "evtimer_new";
        goto out;
    }
    if (curl_multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
        curl_multi_setopt(f->multi, CURLMOPT_SOCKETDATA, f) != CURLM_OK ||
        curl_multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
        curl_multi_setopt(f->multi, CURLMOPT_TIMERDATA, f) != CURLM_OK ||
        curl_multi_setopt(f->multi, CURLMOPT_MAX_HOST_CONNECTIONS, o->concurrency) != CURLM_OK ||
        curl_multi_setopt(f->multi, CURLMOPT_MAXCONNECTS, o->concurrency) != CURLM_OK)
        step = "curl_multi_setopt";
out:
    if (step)
        fprintf(stderr, "curl_floor: cannot set up: %s failed\n", step);
    return step ? -1 : 0;
}

/* reuse mode: each slot's handle is created and set up once, before the clock starts. */
static int
client_make_handles(struct client *f)
{
    for (long i = 0; i < f->opt.concurrency; i++) {
        struct slot *s = &f->slots[i];
        s->f = f;
        if (!f->opt.reuse)
            continue;
        s->easy = curl_easy_init();
        if (!s->easy || setup_easy(f, s, f->headers) != CURLE_OK) {
            fprintf(stderr, "curl_floor: cannot set up an easy handle\n");
            return -1;
        }
    }
    return 0;
}

/* Sends for opt.duration_s and waits for the last answers; fills *ru_used with the CPU spent. */
static int
client_run(struct client *f, struct rusage *ru_used /* OUT */)
{
    struct timeval stop = {f->opt.duration_s, 0};
    struct rusage ru0, ru1;

    memset(ru_used, 0, sizeof *ru_used);
    if (client_make_handles(f) != 0)
        return -1;
    getrusage(RUSAGE_SELF, &ru0);
    f->start_mono_us = mono_us();
    if (evtimer_add(f->stop_timer, &stop) != 0) {
        fprintf(stderr, "curl_floor: cannot arm the stop timer\n");
        return -1;
    }
    for (long i = 0; i < f->opt.concurrency; i++) {
        if (start_request(f, &f->slots[i]) != 0)
            return -1;
    }
    if (event_base_dispatch(f->base) < 0) {
        fprintf(stderr, "curl_floor: event_base_dispatch failed\n");
        return -1;
    }
    getrusage(RUSAGE_SELF, &ru1);
    timersub(&ru1.ru_utime, &ru0.ru_utime, &ru_used->ru_utime);
    timersub(&ru1.ru_stime, &ru0.ru_stime, &ru_used->ru_stime);
    return f->failed ? -1 : 0;
}

static void
client_report(const struct client *f, const struct rusage *ru)
{
    int64_t dur_us = f->last_mono_us > f->start_mono_us ? f->last_mono_us - f->start_mono_us : 1;
    int64_t user_us = cpu_us(&ru->ru_utime);
    int64_t sys_us = cpu_us(&ru->ru_stime);
    double per = f->requests ? (double)(user_us + sys_us) / (double)f->requests : 0.0;

    printf("curl_floor: %s, concurrency %ld: %llu requests in %.2f s = %.0f requests/s, "
           "non-2xx %llu, errors %llu, %ld connections opened, CPU %.1f us/request "
           "(user %.1f, sys %.1f)\n",
           f->opt.reuse ? "reused handles" : "new handle per request", f->opt.concurrency,
           (unsigned long long)f->requests, (double)dur_us / 1e6,
           (double)f->requests * 1e6 / (double)dur_us, (unsigned long long)f->non2xx,
           (unsigned long long)f->errors, f->connects, per,
           f->requests ? (double)user_us / (double)f->requests : 0.0,
           f->requests ? (double)sys_us / (double)f->requests : 0.0);
    printf("RESULT requests=%llu duration_us=%lld non2xx=%llu errors=%llu connects=%ld "
           "cpu_us=%lld user_us=%lld sys_us=%lld\n",
           (unsigned long long)f->requests, (long long)dur_us, (unsigned long long)f->non2xx,
           (unsigned long long)f->errors, f->connects, (long long)(user_us + sys_us),
           (long long)user_us, (long long)sys_us);
}

/* Safe in any state client_init() or client_run() left behind. */
static void
client_release(struct client *f)
{
    if (f->slots) {
        for (long i = 0; i < f->opt.concurrency; i++) {
            struct slot *s = &f->slots[i];
            if (s->added)
                curl_multi_remove_handle(f->multi, s->easy);
            curl_easy_cleanup(s->easy);
            curl_slist_free_all(s->headers);
        }
    }
    /* Before the event_base: closing connections may call on_curl_socket. */
    if (f->multi)
        curl_multi_cleanup(f->multi);
    curl_slist_free_all(f->headers);
    free(f->slots);
    if (f->curl_timer)
        event_free(f->curl_timer);
    if (f->stop_timer)
        event_free(f->stop_timer);
    if (f->base)
        event_base_free(f->base);
}

/* ---- command line ------------------------------------------------------------------------ */

/* Parses a whole decimal number in [min, max] into *out; returns 0 or -1. */
static int
parse_long(const char *s, long min, long max, long *out /* OUT */)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);

    *out = 0;
    if (end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static void
usage(FILE *fp)
{
    fprintf(fp,
            "usage: curl_floor -p PORT [-c CONCURRENCY] [-d SECONDS] [-r]\n"
            "  -p  port of the mock Partoo on 127.0.0.1\n"
            "  -c  requests kept in flight (default 32, at most %d)\n"
            "  -d  seconds of sending (default 10)\n"
            "  -r  reuse one easy handle per slot (default: a new handle per request)\n",
            CONCURRENCY_MAX);
}

/* Returns 0 to run, 1 for -h, -1 on a bad command line (after saying why). */
static int
parse_args(int argc, char **argv, struct options *o /* OUT */)
{
    int bad = 0;

    *o = (struct options){0, 32, 10, 0};
    for (;;) {
        int c = getopt(argc, argv, "p:c:d:rh");
        if (c == -1)
            break;
        if (c == 'p')
            bad |= parse_long(optarg, 1, 65535, &o->port);
        else if (c == 'c')
            bad |= parse_long(optarg, 1, CONCURRENCY_MAX, &o->concurrency);
        else if (c == 'd')
            bad |= parse_long(optarg, 1, 3600, &o->duration_s);
        else if (c == 'r')
            o->reuse = 1;
        else if (c == 'h')
            return 1;
        else
            bad = -1;
    }
    if (bad || optind != argc || o->port == 0) {
        usage(stderr);
        return -1;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    struct options o;
    struct client f;
    struct rusage ru;
    int rc = parse_args(argc, argv, &o);
    int status = 1;

    if (rc != 0) {
        if (rc > 0)
            usage(stdout);
        return rc > 0 ? 0 : 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "curl_floor: curl_global_init failed\n");
        return 1;
    }
    if (client_init(&f, &o) == 0 && client_run(&f, &ru) == 0) {
        client_report(&f, &ru);
        status = 0;
    }
    client_release(&f);
    curl_global_cleanup();
    return status;
}
