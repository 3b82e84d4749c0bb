/*
 * mock_partoo: a fake Partoo ingest API for partoo-outbox's integration tests and benchmarks.
 * This file holds the command line, the listeners, "down" and the process lifecycle; the rest
 * is described in mock.h. Usage and endpoints: README.md beside this file.
 *
 * Listening sockets and "down":
 *
 *   main socket (--listen)        Partoo API + /_mock/
 *   control socket (optional)     /_mock/ only (--control-listen)
 *
 *   down=true:  every Partoo request, on new or kept-alive connections, is closed unanswered.
 *               The main socket itself is closed (clients get "connection refused") when that
 *               cannot lock the tests out: when a control socket exists, or when the outage
 *               has a duration (down_ms), after which on_up_timer re-opens it on the same port.
 *               Otherwise it keeps accepting so that /_mock/ stays reachable.
 *   down=false: the main socket is re-opened if it was closed.
 */
#include "mock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/http.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define DEFAULT_RATE_LIMIT 300
#define DEFAULT_MAX_LOG 20000000
#define DEFAULT_KEEP_BODIES 100000
#define DEFAULT_WEBHOOK_CONNS 4
#define MAX_HEADERS_SIZE (64 * 1024)
#define IDLE_TIMEOUT_S 120

struct options {
    const char *listen;
    const char *port_file;
    const char *control_listen;
    const char *control_port_file;
    const char *api_keys;
    const char *webhook_url;
    const char *webhook_seed;
    int64_t webhook_conns;
    int64_t max_log;
    int64_t keep_bodies;
    int64_t seed;
    int64_t quiet;
    int64_t help;
    struct mock_settings set;
};

/* ---- command line ---------------------------------------------------------------------- */

struct opt;
typedef const char *(*opt_apply_fn)(struct options *o, const char *arg, const struct opt *spec);

/* One command-line option. apply returns NULL or why the value is refused. */
struct opt {
    const char *name;
    const char *arg_name; /* NULL: a flag */
    opt_apply_fn apply;
    size_t offset; /* of the target in struct options */
    int64_t max;   /* for opt_int */
    const char *help;
};

static const char *
opt_str(struct options *o, const char *arg, const struct opt *spec)
{
    *(const char **)((char *)o + spec->offset) = arg;
    return NULL;
}

static const char *
opt_flag(struct options *o, const char *arg, const struct opt *spec)
{
    (void)arg;
    *(int64_t *)((char *)o + spec->offset) = 1;
    return NULL;
}

static const char *
opt_bool_setting(struct options *o, const char *arg, const struct opt *spec)
{
    (void)arg;
    *(int *)((char *)o + spec->offset) = 1;
    return NULL;
}

static const char *
opt_int(struct options *o, const char *arg, const struct opt *spec)
{
    char *end = NULL;
    long long v;

    errno = 0;
    v = strtoll(arg, &end, 10);
    if (errno != 0 || *arg == '\0' || *end != '\0' || v < 0 || v > spec->max) {
        return "must be a non-negative integer in range";
    }
    *(int64_t *)((char *)o + spec->offset) = (int64_t)v;
    return NULL;
}

static const char *
opt_prob(struct options *o, const char *arg, const struct opt *spec)
{
    char *end = NULL;
    double v = strtod(arg, &end);

    if (*arg == '\0' || *end != '\0' || !(v >= 0.0 && v <= 1.0)) {
        return "must be a number from 0 to 1";
    }
    *(double *)((char *)o + spec->offset) = v;
    return NULL;
}

static const char *
opt_retry_after(struct options *o, const char *arg, const struct opt *spec)
{
    (void)spec;
    if (*arg == '\0' || strlen(arg) >= sizeof(o->set.retry_after) || strpbrk(arg, "\r\n") != NULL) {
        return "must be a short non-empty string";
    }
    snprintf(o->set.retry_after, sizeof(o->set.retry_after), "%s", arg);
    return NULL;
}

#define OPT(field) offsetof(struct options, field)
#define SETTING(field) (offsetof(struct options, set) + offsetof(struct mock_settings, field))

static const struct opt opts[] = {
    {"listen", "HOST:PORT", opt_str, OPT(listen), 0,
     "address to listen on (default 127.0.0.1:0, a free port)"},
    {"port-file", "FILE", opt_str, OPT(port_file), 0,
     "write the bound port to FILE (via FILE.tmp and rename)"},
    {"control-listen", "HOST:PORT", opt_str, OPT(control_listen), 0,
     "also serve /_mock/ on a second socket that stays up while down"},
    {"control-port-file", "FILE", opt_str, OPT(control_port_file), 0,
     "write the control socket's port to FILE"},
    {"api-keys", "K1,K2", opt_str, OPT(api_keys), 0,
     "accepted API keys (default: any non-empty key)"},
    {"rate-limit", "N", opt_int, SETTING(rate_limit), MOCK_MAX_RATE_LIMIT,
     "requests per minute per key, sliding window (default 300, 0 = unlimited)"},
    {"delay-ms", "N", opt_int, SETTING(delay_ms), 600000, "answer every request N ms late"},
    {"error-rate", "P", opt_prob, SETTING(error_rate), 0, "fraction answered 500"},
    {"rate-429", "P", opt_prob, SETTING(rate_429), 0, "fraction answered 429, Retry-After"},
    {"retry-after", "VALUE", opt_retry_after, 0, 0,
     "Retry-After of injected 429s (default 1; seconds or an HTTP date)"},
    {"drop-rate", "P", opt_prob, SETTING(drop_rate), 0, "fraction closed without an answer"},
    {"down", NULL, opt_bool_setting, SETTING(down), 0, "start down (see README)"},
    {"seed", "N", opt_int, OPT(seed), INT64_MAX, "PRNG seed (default 1)"},
    {"webhook-url", "URL", opt_str, OPT(webhook_url), 0,
     "where message_created events go (http://host:port/path)"},
    {"webhook-seed", "HEX64", opt_str, OPT(webhook_seed), 0,
     "Ed25519 private seed signing the events (32 bytes, hex)"},
    {"webhook-conns", "N", opt_int, OPT(webhook_conns), 64,
     "keep-alive connections to the receiver (default 4)"},
    {"echo", NULL, opt_bool_setting, SETTING(echo), 0, "echo each accepted message as a webhook"},
    {"echo-redeliveries", NULL, opt_bool_setting, SETTING(echo_redeliveries), 0,
     "echo redeliveries of a known key too (Partoo ignores them)"},
    {"max-log", "N", opt_int, OPT(max_log), INT64_MAX / 2,
     "accepted deliveries kept for /_mock/received (default 20000000)"},
    {"keep-bodies", "N", opt_int, OPT(keep_bodies), 100000000,
     "raw bodies kept for ?format=json, most recent first (default 100000)"},
    {"quiet", NULL, opt_flag, OPT(quiet), 0, "log only start-up lines and errors"},
    {"help", NULL, opt_flag, OPT(help), 0, "show this help"},
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static void
usage(FILE *f)
{
    size_t i;
    char left[64];

    fprintf(f, "usage: mock_partoo [options]\n\n");
    for (i = 0; i < NOPTS; i++) {
        snprintf(left, sizeof(left), "--%s%s%s", opts[i].name, opts[i].arg_name ? " " : "",
                 opts[i].arg_name ? opts[i].arg_name : "");
        fprintf(f, "  %-28s %s\n", left, opts[i].help);
    }
    fprintf(f, "\nControl endpoints live under /_mock/ (see tests/mock_partoo/README.md).\n");
}

static void
options_defaults(struct options *o)
{
    memset(o, 0, sizeof(*o));
    o->listen = "127.0.0.1:0";
    o->webhook_conns = DEFAULT_WEBHOOK_CONNS;
    o->max_log = DEFAULT_MAX_LOG;
    o->keep_bodies = DEFAULT_KEEP_BODIES;
    o->seed = 1;
    o->set.rate_limit = DEFAULT_RATE_LIMIT;
    snprintf(o->set.retry_after, sizeof(o->set.retry_after), "1");
    snprintf(o->set.echo_status, sizeof(o->set.echo_status), "Success");
}

/* Returns 0, or -1 after printing why. */
static int
options_parse(struct options *o, int argc, char **argv)
{
    struct option longopts[NOPTS + 1];
    const char *why;
    int index = 0;
    int c;
    size_t i;

    options_defaults(o);
    memset(longopts, 0, sizeof(longopts));
    for (i = 0; i < NOPTS; i++) {
        longopts[i].name = opts[i].name;
        longopts[i].has_arg = opts[i].arg_name != NULL ? required_argument : no_argument;
    }
    for (;;) {
        c = getopt_long(argc, argv, "", longopts, &index);
        if (c == -1) {
            break;
        }
        if (c != 0) {
            return -1; /* getopt printed the problem */
        }
        why = opts[index].apply(o, optarg, &opts[index]);
        if (why != NULL) {
            fprintf(stderr, "mock_partoo: --%s: %s\n", opts[index].name, why);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "mock_partoo: unexpected argument \"%s\"\n", argv[optind]);
        return -1;
    }
    return 0;
}

/* ---- listeners ------------------------------------------------------------------------- */

/* Splits HOST:PORT ([v6]:PORT allowed; empty host = 127.0.0.1). *host is malloc'd. */
static int
split_host_port(const char *s, char **host, int *port)
{
    const char *colon = strrchr(s, ':');
    const char *h = s;
    size_t len;
    char *end = NULL;
    long p;

    *host = NULL;
    if (colon == NULL) {
        return -1;
    }
    p = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || p < 0 || p > 65535) {
        return -1;
    }
    len = (size_t)(colon - s);
    if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
        h = s + 1;
        len -= 2;
    }
    *host = len > 0 ? strndup(h, len) : strdup("127.0.0.1");
    *port = (int)p;
    return *host != NULL ? 0 : -1;
}

static int
bound_port(struct evhttp_bound_socket *bound)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&ss, &len) != 0) {
        return -1;
    }
    if (ss.ss_family == AF_INET6) {
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static int
write_port_file(const char *path, int port)
{
    char tmp[4096];
    FILE *f;
    int bad;

    if (path == NULL) {
        return 0;
    }
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
        return -1;
    }
    f = fopen(tmp, "w");
    if (f == NULL) {
        return -1;
    }
    bad = fprintf(f, "%d\n", port) < 0;
    bad = fclose(f) != 0 || bad;
    return bad || rename(tmp, path) != 0 ? -1 : 0;
}

static const char *
request_path(struct evhttp_request *req)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;

    return path != NULL ? path : "";
}

static int
is_control(const char *path)
{
    return strncmp(path, "/_mock/", 7) == 0;
}

static void
on_request(struct evhttp_request *req, void *arg)
{
    struct mock *m = arg;
    const char *path = request_path(req);

    if (is_control(path)) {
        mock_control_handle(m, req, path);
    } else {
        mock_ingest_handle(m, req);
    }
}

static void
on_control_request(struct evhttp_request *req, void *arg)
{
    struct mock *m = arg;
    const char *path = request_path(req);

    if (is_control(path)) {
        mock_control_handle(m, req, path);
    } else {
        mock_util_reply_error(req, 404, "the control socket serves /_mock/ only");
    }
}

static struct evhttp *
http_new(struct mock *m, void (*cb)(struct evhttp_request *, void *))
{
    struct evhttp *http = evhttp_new(m->base);

    if (http == NULL) {
        return NULL;
    }
    evhttp_set_gencb(http, cb, m);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                         EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                         EVHTTP_REQ_PATCH);
    evhttp_set_max_body_size(http, MOCK_BODY_HARD_LIMIT);
    evhttp_set_max_headers_size(http, MAX_HEADERS_SIZE);
    evhttp_set_timeout(http, IDLE_TIMEOUT_S);
    return http;
}

static void
on_up_timer(evutil_socket_t fd, short what, void *arg)
{
    struct mock *m = arg;

    (void)fd;
    (void)what;
    if (mock_partoo_set_down(m, 0, 0) != 0) {
        mock_util_log(0, "cannot re-open %s:%d after the outage", m->listen_host, m->port);
    }
}

int
mock_partoo_set_down(struct mock *m, int down, int64_t down_ms)
{
    int close_socket = down && (m->control_http != NULL || down_ms > 0);
    struct timeval tv;

    if (m->set.down != down) {
        mock_util_log(m->quiet, "%s", down ? "down" : "up");
    }
    m->set.down = down;
    evtimer_del(m->up_timer);
    if (down && down_ms > 0) {
        tv.tv_sec = down_ms / 1000;
        tv.tv_usec = (down_ms % 1000) * 1000;
        evtimer_add(m->up_timer, &tv);
    }
    if (close_socket && m->bound != NULL) {
        evhttp_del_accept_socket(m->http, m->bound);
        m->bound = NULL;
        mock_util_log(m->quiet, "down: %s:%d closed", m->listen_host, m->port);
    } else if (!close_socket && m->bound == NULL) {
        m->bound = evhttp_bind_socket_with_handle(m->http, m->listen_host, (ev_uint16_t)m->port);
        if (m->bound == NULL) {
            return -1;
        }
        mock_util_log(m->quiet, "up: %s:%d open again", m->listen_host, m->port);
    }
    return 0;
}

/* Binds the main socket, and the control socket when asked; writes the port files. */
static int
open_listeners(struct mock *m, const struct options *o)
{
    char *control_host = NULL;
    int control_port = 0;
    struct evhttp_bound_socket *control = NULL;
    int rc = -1;

    if (split_host_port(o->listen, &m->listen_host, &m->port) != 0) {
        fprintf(stderr, "mock_partoo: --listen: expected HOST:PORT, got \"%s\"\n", o->listen);
        goto out;
    }
    m->bound = evhttp_bind_socket_with_handle(m->http, m->listen_host, (ev_uint16_t)m->port);
    if (m->bound == NULL) {
        fprintf(stderr, "mock_partoo: cannot listen on %s: %s\n", o->listen, strerror(errno));
        goto out;
    }
    m->port = bound_port(m->bound);
    if (o->control_listen != NULL) {
        if (split_host_port(o->control_listen, &control_host, &control_port) != 0) {
            fprintf(stderr, "mock_partoo: --control-listen: expected HOST:PORT\n");
            goto out;
        }
        control = evhttp_bind_socket_with_handle(m->control_http, control_host,
                                                 (ev_uint16_t)control_port);
        if (control == NULL) {
            fprintf(stderr, "mock_partoo: cannot listen on %s\n", o->control_listen);
            goto out;
        }
        control_port = bound_port(control);
    }
    if (write_port_file(o->port_file, m->port) != 0 ||
        write_port_file(o->control_port_file, control_port) != 0) {
        fprintf(stderr, "mock_partoo: cannot write the port file: %s\n", strerror(errno));
        goto out;
    }
    fprintf(stderr, "mock_partoo: listening on %s:%d\n", m->listen_host, m->port);
    if (control != NULL) {
        fprintf(stderr, "mock_partoo: control on %s:%d\n", control_host, control_port);
    }
    rc = 0;
out:
    free(control_host);
    return rc;
}

/* ---- lifecycle ------------------------------------------------------------------------- */

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct mock *m = arg;

    (void)sig;
    (void)what;
    event_base_loopbreak(m->base);
}

static int
init_state(struct mock *m, const struct options *o)
{
    const char *why = NULL;
    char hex[65];

    mock_table_init(&m->dedup);
    mock_table_init(&m->convs);
    if (mock_keys_init(&m->keys, o->api_keys) != 0 ||
        mock_recvlog_init(&m->log, (size_t)o->max_log, (size_t)o->keep_bodies) != 0) {
        fprintf(stderr, "mock_partoo: out of memory\n");
        return -1;
    }
    if (mock_webhook_init(&m->wh, m->base, o->webhook_seed, (int)o->webhook_conns, m->quiet) != 0) {
        fprintf(stderr, "mock_partoo: --webhook-seed: expected 64 hex characters\n");
        return -1;
    }
    if (o->webhook_url != NULL && mock_webhook_set_url(&m->wh, o->webhook_url, &why) != 0) {
        fprintf(stderr, "mock_partoo: --webhook-url: %s\n", why);
        return -1;
    }
    if (mock_webhook_public_hex(&m->wh, hex) == 0) {
        fprintf(stderr, "mock_partoo: webhook public key %s\n", hex);
    }
    return 0;
}

/* epoll with a changelist: evhttp flips read/write interest several times per request, and
 * the changelist folds those flips into one epoll_ctl per fd and loop turn. */
static struct event_base *
base_new(void)
{
    struct event_config *cfg = event_config_new();
    struct event_base *base = NULL;

    if (cfg == NULL) {
        return NULL;
    }
    event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}

static int
mock_init(struct mock *m, const struct options *o, struct event **sigs)
{
    memset(m, 0, sizeof(*m));
    LIST_INIT(&m->pending);
    m->quiet = (int)o->quiet;
    m->rng = (uint64_t)o->seed;
    m->set = o->set;
    m->startup = o->set;
    m->set.down = 0; /* applied below, once the socket is bound */
    m->base = base_new();
    if (m->base == NULL) {
        return -1;
    }
    m->http = http_new(m, on_request);
    m->control_http = o->control_listen != NULL ? http_new(m, on_control_request) : NULL;
    m->up_timer = evtimer_new(m->base, on_up_timer, m);
    sigs[0] = evsignal_new(m->base, SIGTERM, on_signal, m);
    sigs[1] = evsignal_new(m->base, SIGINT, on_signal, m);
    if (m->http == NULL || (o->control_listen != NULL && m->control_http == NULL) ||
        m->up_timer == NULL || sigs[0] == NULL || sigs[1] == NULL ||
        evsignal_add(sigs[0], NULL) != 0 || evsignal_add(sigs[1], NULL) != 0) {
        fprintf(stderr, "mock_partoo: cannot set up the event loop\n");
        return -1;
    }
    if (init_state(m, o) != 0 || open_listeners(m, o) != 0) {
        return -1;
    }
    return mock_partoo_set_down(m, o->set.down, 0);
}

/* Frees everything mock_init() made, in an order where nothing calls back into freed state:
 * outgoing webhooks first, then deferred answers, then the servers and their connections. */
static void
mock_release(struct mock *m, struct event **sigs)
{
    int i;

    mock_webhook_release(&m->wh);
    mock_ingest_release(m);
    if (m->control_http != NULL) {
        evhttp_free(m->control_http);
    }
    if (m->http != NULL) {
        evhttp_free(m->http);
    }
    for (i = 0; i < 2; i++) {
        if (sigs[i] != NULL) {
            event_free(sigs[i]);
        }
    }
    if (m->up_timer != NULL) {
        event_free(m->up_timer);
    }
    mock_keys_release(&m->keys);
    mock_table_release(&m->dedup);
    mock_table_release(&m->convs);
    mock_recvlog_release(&m->log);
    mock_util_buf_release(&m->last.uri);
    mock_util_buf_release(&m->last.headers);
    mock_util_buf_release(&m->last.body);
    mock_util_buf_release(&m->scratch);
    free(m->script.codes);
    free(m->listen_host);
    if (m->base != NULL) {
        event_base_free(m->base);
    }
}

int
main(int argc, char **argv)
{
    struct options o;
    struct mock m;
    struct event *sigs[2] = {NULL, NULL};
    int rc = 1;

    if (options_parse(&o, argc, argv) != 0) {
        fprintf(stderr, "try: mock_partoo --help\n");
        return 2;
    }
    if (o.help) {
        usage(stdout);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    if (mock_init(&m, &o, sigs) != 0) {
        goto out;
    }
    rc = event_base_dispatch(m.base) < 0 ? 1 : 0;
out:
    mock_release(&m, sigs);
    libevent_global_shutdown();
    return rc;
}
