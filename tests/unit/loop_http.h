/*
 * loop_http.h: a loopback HTTP client for the unit tests of the event-loop modules
 * (webhook, httpd, api, ...). The server under test and this client share one
 * event_base, so a request is sent and its answer read by running that loop until the
 * answer is in: no threads, no sleeps. Every call is bounded by a 5 s safety timer that
 * only stops a hung test (it asserts nothing about speed).
 */
#ifndef OBX_LOOP_HTTP_H
#define OBX_LOOP_HTTP_H

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct http_reply {
    int done;   /* 1 once the answer (or a connection error) came back */
    int status; /* 0: no HTTP answer (connection refused, reset, timed out) */
    char *body; /* NUL-terminated, malloc'd; free with http_reply_release */
    size_t len;
    char retry_after[32];
    char content_type[64];
};

static inline void
http_reply_release(struct http_reply *r)
{
    free(r->body);
    memset(r, 0, sizeof *r);
}

static inline void
http_on_guard(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

/* Runs base until *done is set (or the safety timer fires); returns *done. */
static inline int
http_run_until(struct event_base *base, const int *done)
{
    struct timeval tv = {5, 0};
    struct event *guard = evtimer_new(base, http_on_guard, base);

    evtimer_add(guard, &tv);
    while (!*done) {
        if (event_base_loop(base, EVLOOP_ONCE) != 0 || event_base_got_break(base))
            break;
    }
    event_free(guard);
    return *done;
}

static inline void
http_on_reply(struct evhttp_request *req, void *arg)
{
    struct http_reply *r = arg;
    const char *h;

    r->done = 1;
    if (!req || evhttp_request_get_response_code(req) == 0)
        return;
    r->status = evhttp_request_get_response_code(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    r->len = evbuffer_get_length(in);
    r->body = malloc(r->len + 1);
    if (r->body) {
        evbuffer_copyout(in, r->body, r->len);
        r->body[r->len] = '\0';
    }
    h = evhttp_find_header(evhttp_request_get_input_headers(req), "Retry-After");
    if (h)
        snprintf(r->retry_after, sizeof r->retry_after, "%s", h);
    h = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    if (h)
        snprintf(r->content_type, sizeof r->content_type, "%s", h);
}

/*
 * Starts one request to 127.0.0.1:port without waiting (http_finish waits). headers:
 * "Name", "value" pairs, NULL-terminated (may be NULL). body may be NULL. *r is filled
 * when the answer comes. Returns the connection, or NULL (then r->done is set).
 */
static inline struct evhttp_connection *
http_begin(struct event_base *base, int port, enum evhttp_cmd_type method, const char *path,
           const char *const *headers, const char *body, size_t len, struct http_reply *r)
{
    struct evhttp_connection *conn;
    struct evhttp_request *req;

    memset(r, 0, sizeof *r);
    conn = evhttp_connection_base_new(base, NULL, "127.0.0.1", (unsigned short)port);
    req = conn ? evhttp_request_new(http_on_reply, r) : NULL;
    if (!req) {
        if (conn)
            evhttp_connection_free(conn);
        r->done = 1;
        return NULL;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Host", "127.0.0.1");
    for (int i = 0; headers && headers[i]; i += 2)
        evhttp_add_header(evhttp_request_get_output_headers(req), headers[i], headers[i + 1]);
    if (body)
        evbuffer_add(evhttp_request_get_output_buffer(req), body, len);
    if (evhttp_make_request(conn, req, method, path) != 0) {
        evhttp_connection_free(conn);
        r->done = 1;
        return NULL;
    }
    return conn;
}

/* Runs at most turns loop turns (each bounded by the safety timer) while the answer is out. */
static inline void
http_run_turns(struct event_base *base, const int *done, int turns)
{
    struct timeval tv = {5, 0};
    struct event *guard = evtimer_new(base, http_on_guard, base);

    evtimer_add(guard, &tv);
    for (int i = 0; i < turns && !*done; i++)
        if (event_base_loop(base, EVLOOP_ONCE) != 0 || event_base_got_break(base))
            break;
    event_free(guard);
}

/* Waits for the answer of http_begin's request and frees the connection; returns the status. */
static inline int
http_finish(struct event_base *base, struct evhttp_connection *conn, struct http_reply *r)
{
    if (conn) {
        http_run_until(base, &r->done);
        evhttp_connection_free(conn);
    }
    return r->status;
}

/*
 * Sends one request to 127.0.0.1:port and runs the loop until the answer is in.
 * Returns the status (0 when no HTTP answer came); *out (may be NULL) gets the answer.
 */
static inline int
http_call(struct event_base *base, int port, enum evhttp_cmd_type method, const char *path,
          const char *const *headers, const char *body, size_t len, struct http_reply *out)
{
    struct http_reply local = {0}, *r = out ? out : &local;
    struct evhttp_connection *conn = http_begin(base, port, method, path, headers, body, len, r);
    int status = http_finish(base, conn, r);

    if (!out)
        http_reply_release(&local);
    return status;
}

/* A raw exchange: sends bytes as they are, reads until the server closes (or 5 s). */
struct raw_exchange {
    int done;
    struct evbuffer *got;
};

static inline void
raw_on_read(struct bufferevent *bev, void *arg)
{
    struct raw_exchange *x = arg;

    evbuffer_add_buffer(x->got, bufferevent_get_input(bev));
}

static inline void
raw_on_event(struct bufferevent *bev, short what, void *arg)
{
    struct raw_exchange *x = arg;

    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        evbuffer_add_buffer(x->got, bufferevent_get_input(bev));
        x->done = 1;
    }
}

/* Returns the bytes answered (malloc'd, NUL-terminated; caller frees) or NULL. */
static inline char *
raw_call(struct event_base *base, int port, const char *bytes, size_t len)
{
    struct raw_exchange x = {0};
    struct sockaddr_in sin = {0};
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    char *out = NULL;
    size_t n;

    if (!bev)
        return NULL;
    x.got = evbuffer_new();
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)port);
    sin.sin_addr.s_addr = htonl(0x7f000001);
    bufferevent_setcb(bev, raw_on_read, NULL, raw_on_event, &x);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    if (x.got && bufferevent_socket_connect(bev, (struct sockaddr *)&sin, sizeof sin) == 0) {
        bufferevent_write(bev, bytes, len);
        http_run_until(base, &x.done);
        n = evbuffer_get_length(x.got);
        out = malloc(n + 1);
        if (out) {
            evbuffer_copyout(x.got, out, n);
            out[n] = '\0';
        }
    }
    bufferevent_free(bev);
    if (x.got)
        evbuffer_free(x.got);
    return out;
}

/* A raw connection kept open: send in pieces, read what comes, see the close. */
struct raw_conn {
    struct bufferevent *bev;
    struct raw_exchange x; /* x.done: the server closed; x.got: what it sent */
};

static inline int
raw_open(struct raw_conn *c, struct event_base *base, int port)
{
    struct sockaddr_in sin = {0};

    memset(c, 0, sizeof *c);
    c->x.got = evbuffer_new();
    c->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!c->x.got || !c->bev)
        return -1;
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)port);
    sin.sin_addr.s_addr = htonl(0x7f000001);
    bufferevent_setcb(c->bev, raw_on_read, NULL, raw_on_event, &c->x);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    return bufferevent_socket_connect(c->bev, (struct sockaddr *)&sin, sizeof sin);
}

static inline void
raw_send(struct raw_conn *c, const void *bytes, size_t len)
{
    bufferevent_write(c->bev, bytes, len);
}

/* What the server sent so far, NUL-terminated (malloc'd; caller frees). */
static inline char *
raw_got(const struct raw_conn *c)
{
    size_t n = evbuffer_get_length(c->x.got);
    char *out = malloc(n + 1);

    if (out) {
        evbuffer_copyout(c->x.got, out, n);
        out[n] = '\0';
    }
    return out;
}

static inline void
raw_close(struct raw_conn *c)
{
    if (c->bev)
        bufferevent_free(c->bev);
    if (c->x.got)
        evbuffer_free(c->x.got);
    memset(c, 0, sizeof *c);
}

/*
 * A stub HTTP server on 127.0.0.1:0 for the modules that are clients (http_client, inbox,
 * worker): it records what it got and answers with the status, Retry-After and body the
 * test set (status 0: do not answer, hold the request until stub_free).
 */
#define STUB_MAX_SEEN 16

struct stub_seen {
    enum evhttp_cmd_type method;
    char uri[256];
    char idempotency_key[160];
    char content_type[64];
    char authorization[160];
    char api_key[160]; /* x-APIKey (Partoo's) */
    char *body;        /* malloc'd, NUL-terminated */
    size_t len;
};

struct stub_server {
    struct evhttp *http;
    int port;
    int status;              /* what to answer; 0: hold the request */
    const char *retry_after; /* NULL: none */
    const char *reply_body;  /* NULL: "" */
    int nseen;               /* requests received (all, even past STUB_MAX_SEEN) */
    struct stub_seen seen[STUB_MAX_SEEN];
    struct evhttp_request *held;
};

static inline void
stub_copy_header(struct evhttp_request *req, const char *name, char *out, size_t n)
{
    const char *v = evhttp_find_header(evhttp_request_get_input_headers(req), name);

    snprintf(out, n, "%s", v ? v : "");
}

static inline void
stub_on_request(struct evhttp_request *req, void *arg)
{
    struct stub_server *s = arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);

    if (s->nseen < STUB_MAX_SEEN) {
        struct stub_seen *x = &s->seen[s->nseen];
        x->method = evhttp_request_get_command(req);
        snprintf(x->uri, sizeof x->uri, "%s", evhttp_request_get_uri(req));
        stub_copy_header(req, "Idempotency-Key", x->idempotency_key, sizeof x->idempotency_key);
        stub_copy_header(req, "Content-Type", x->content_type, sizeof x->content_type);
        stub_copy_header(req, "Authorization", x->authorization, sizeof x->authorization);
        stub_copy_header(req, "x-APIKey", x->api_key, sizeof x->api_key);
        x->len = evbuffer_get_length(in);
        x->body = malloc(x->len + 1);
        if (x->body) {
            evbuffer_copyout(in, x->body, x->len);
            x->body[x->len] = '\0';
        }
    }
    s->nseen++;
    if (s->status == 0) {
        s->held = req; /* answered (dropped) by stub_free */
        return;
    }
    struct evbuffer *out = evbuffer_new();
    if (s->retry_after)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", s->retry_after);
    if (out && s->reply_body)
        evbuffer_add(out, s->reply_body, strlen(s->reply_body));
    evhttp_send_reply(req, s->status, "stub", out);
    if (out)
        evbuffer_free(out);
}

/* 0 when listening; s->port is the port. */
static inline int
stub_start(struct stub_server *s, struct event_base *base, int status)
{
    struct evhttp_bound_socket *bs;
    struct sockaddr_in sin;
    socklen_t sl = sizeof sin;

    memset(s, 0, sizeof *s);
    s->status = status;
    s->http = evhttp_new(base);
    if (!s->http)
        return -1;
    evhttp_set_gencb(s->http, stub_on_request, s);
    bs = evhttp_bind_socket_with_handle(s->http, "127.0.0.1", 0);
    if (!bs || getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sin, &sl) != 0)
        return -1;
    s->port = ntohs(sin.sin_port);
    return 0;
}

static inline void
stub_free(struct stub_server *s)
{
    for (int i = 0; i < s->nseen && i < STUB_MAX_SEEN; i++)
        free(s->seen[i].body);
    if (s->http)
        evhttp_free(s->http);
    memset(s, 0, sizeof *s);
}

/* Runs base until cond(arg) is true (checked after every loop turn) or 5 s pass. */
static inline int
run_until_cond(struct event_base *base, int (*cond)(void *), void *arg)
{
    struct timeval tv = {5, 0}, tick = {0, 10000};
    struct event *guard = evtimer_new(base, http_on_guard, base);
    int ok = cond(arg);

    evtimer_add(guard, &tv);
    while (!ok) {
        /* A 10 ms tick, so a condition set by another thread is seen too. */
        event_base_loopexit(base, &tick);
        event_base_dispatch(base);
        ok = cond(arg);
        if (event_base_got_break(base))
            break;
    }
    event_free(guard);
    return ok;
}

#endif
