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
 * Sends one request to 127.0.0.1:port and runs the loop until the answer is in.
 * headers: "Name", "value" pairs, NULL-terminated (may be NULL). body may be NULL.
 * Returns the status (0 when no HTTP answer came); *out (may be NULL) gets the answer.
 */
static inline int
http_call(struct event_base *base, int port, enum evhttp_cmd_type method, const char *path,
          const char *const *headers, const char *body, size_t len, struct http_reply *out)
{
    struct http_reply local = {0}, *r = out ? out : &local;
    struct evhttp_connection *conn;
    struct evhttp_request *req;

    memset(r, 0, sizeof *r);
    conn = evhttp_connection_base_new(base, NULL, "127.0.0.1", (unsigned short)port);
    if (!conn)
        return 0;
    req = evhttp_request_new(http_on_reply, r);
    if (!req) {
        evhttp_connection_free(conn);
        return 0;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Host", "127.0.0.1");
    for (int i = 0; headers && headers[i]; i += 2)
        evhttp_add_header(evhttp_request_get_output_headers(req), headers[i], headers[i + 1]);
    if (body)
        evbuffer_add(evhttp_request_get_output_buffer(req), body, len);
    if (evhttp_make_request(conn, req, method, path) != 0) {
        evhttp_connection_free(conn);
        return 0;
    }
    http_run_until(base, &r->done);
    evhttp_connection_free(conn);
    {
        int status = r->status;
        if (!out)
            http_reply_release(&local);
        return status;
    }
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

#endif
