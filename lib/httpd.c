/*
 * httpd: shared evhttp plumbing for the producer API and the webhook listener.
 *
 * Request deadline (slowloris). evhttp's timeouts are inactivity timeouts that every byte
 * restarts, so a client sending one byte a second could hold a connection for hours. Each
 * connection therefore carries a deadline: a complete request must have arrived
 * REQUEST_DEADLINE_S after the accept, or after the previous reply on a kept-alive
 * connection. libevent 2.1 has no per-request hook (evhttp_set_newreqcb is 2.2), so the
 * deadline (struct conn_deadline) rides on the bufferevent evhttp asks us for, and the
 * connection's close callback says when it goes:
 *
 *   on_new_bev (accept) --> NEW --on_deadline, same loop turn: deadline_attach--> ARMED
 *   ARMED --on_output: a reply fully written--> ARMED, counting from now
 *   ARMED --on_deadline: evhttp has the request, or is writing--> ARMED, counting from now
 *   ARMED --on_deadline: evhttp still waiting for request bytes--> closed like evhttp's own
 *                                                                  read timeout
 *   NEW   --deadline_attach: evhttp dropped the connection already--> freed
 *   ARMED --on_conn_close (evhttp frees the connection, whatever the reason)--> freed
 */
#include "httpd.h"

#include <assert.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "mem.h"
#include "net.h"

#define MAX_HEADERS_BYTES  (16 * 1024)
#define IO_TIMEOUT_S       10 /* inactivity: no byte in or out for this long closes a connection */
#define REQUEST_DEADLINE_S 10 /* a whole request, however fast its bytes come */
/*
 * Open connections per listener. Both listeners together stay under the usual soft
 * limit of 1024 descriptors, with room for SQLite and libcurl.
 */
#define MAX_CONNECTIONS 400

/* Splits "host:port" / "[v6]:port" into host and port. */
static int
split_listen(const char *listen, char *host, size_t n, int *port)
{
    const char *colon;
    char *end;
    long p;

    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (!close || close[1] != ':' || (size_t)(close - listen - 1) >= n)
            return -1;
        memcpy(host, listen + 1, (size_t)(close - listen - 1));
        host[close - listen - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(listen, ':');
        if (!colon || (size_t)(colon - listen) >= n)
            return -1;
        memcpy(host, listen, (size_t)(colon - listen));
        host[colon - listen] = '\0';
    }
    p = strtol(colon + 1, &end, 10);
    if (*end || p < 0 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

int
obx_httpd_is_loopback(const char *listen)
{
    char host[256];
    int port;

    if (split_listen(listen, host, sizeof host, &port) != 0)
        return 0;
    /* Resolved, not spelled: "127.1" and "::ffff:127.0.0.1" are loopback, a name is
     * loopback only if every address it resolves to is. */
    return obx_net_host_is_loopback(host);
}


/*
 * One listener. Its connections hold references too (a connection can outlive
 * obx_httpd_free by a loop turn, see on_new_bev), so the last one frees it.
 *
 * At MAX_CONNECTIONS open connections accepting stops; further clients wait in the
 * kernel's backlog, costing no descriptor, until one closes. An EMFILE pause may
 * end early when a connection closes: a descriptor was just freed, so that is safe.
 */
struct obx_httpd {
    struct evhttp *http;             /* NULL once obx_httpd_free ran */
    struct evconnlistener *listener; /* evhttp's; NULL once obx_httpd_free ran */
    size_t open;                     /* connections with a deadline (all but OOM ones) */
    int refs;
};

static void
httpd_unref(struct obx_httpd *h)
{
    if (--h->refs == 0)
        obx_free(h);
}

static void
update_accepting(struct obx_httpd *h)
{
    if (!h->listener)
        return;
    if (h->open >= MAX_CONNECTIONS)
        evconnlistener_disable(h->listener);
    else if (h->open == MAX_CONNECTIONS - 1)
        evconnlistener_enable(h->listener); /* back under the cap */
}

static void
on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    /* At the cap, the next accepted connection turns accepting off again. */
    evconnlistener_enable(arg);
}

/*
 * Out of file descriptors, accept() fails while the listening socket stays readable:
 * without this the loop would spin at 100% CPU. Pause accepting for a second instead;
 * connections wait in the kernel's backlog meanwhile. (The error callback gets evhttp's
 * argument, not ours, so the resume is a one-shot event carrying the listener.)
 */
static void
on_accept_error(struct evconnlistener *listener, void *arg)
{
    struct timeval pause = {1, 0};

    (void)arg;
    evconnlistener_disable(listener);
    if (event_base_once(evconnlistener_get_base(listener), -1, EV_TIMEOUT, on_accept_resume,
                        listener, &pause) != 0)
        evconnlistener_enable(listener); /* cannot schedule: better spin than go deaf */
}

struct conn_deadline {
    struct bufferevent *bev;             /* the connection's; we hold a reference while NEW */
    struct evhttp_connection *evcon;     /* NULL while NEW */
    struct event *timer;                 /* fires once to attach, then at each deadline */
    struct evbuffer_cb_entry *output_cb; /* watches bev's output buffer; NULL while NEW */
    struct obx_httpd *httpd;             /* counted in httpd->open; holds a reference */
};

static void
deadline_free(struct conn_deadline *cd)
{
    struct obx_httpd *h = cd->httpd;

    if (cd->output_cb)
        evbuffer_remove_cb_entry(bufferevent_get_output(cd->bev), cd->output_cb);
    event_free(cd->timer);
    obx_free(cd);
    h->open--;
    update_accepting(h);
    httpd_unref(h);
}

/* Re-adding a pending timer moves it: the deadline counts from now. */
static void
deadline_arm(struct conn_deadline *cd)
{
    const struct timeval tv = {REQUEST_DEADLINE_S, 0};

    /* Fails only without memory; the connection then has evhttp's inactivity timeout alone. */
    (void)event_add(cd->timer, &tv);
}

/*
 * 1 while evhttp waits for request bytes: it stops reading once a request with a body is
 * complete, takes its read callback away while it writes a reply, and a reply or
 * "100 Continue" not yet written is the client's to read, not to send.
 */
static int
awaiting_request(const struct conn_deadline *cd)
{
    bufferevent_data_cb readcb = NULL;

    bufferevent_getcb(cd->bev, &readcb, NULL, NULL, NULL);
    return readcb && (bufferevent_get_enabled(cd->bev) & EV_READ) &&
           evbuffer_get_length(bufferevent_get_output(cd->bev)) == 0;
}

static void
on_output(struct evbuffer *out, const struct evbuffer_cb_info *info, void *arg)
{
    struct conn_deadline *cd = arg;
    bufferevent_data_cb readcb = NULL;

    if (info->n_deleted == 0 || evbuffer_get_length(out) > 0)
        return;
    /*
     * A reply is out (evhttp writes replies without a read callback; a "100 Continue" is
     * written with one, and the body it asks for is still part of the same request).
     */
    bufferevent_getcb(cd->bev, &readcb, NULL, NULL, NULL);
    if (!readcb)
        deadline_arm(cd);
}

static void
on_conn_close(struct evhttp_connection *evcon, void *arg)
{
    evhttp_connection_set_closecb(evcon, NULL, NULL); /* once is all cd can take */
    deadline_free(arg);
}

static void
deadline_attach(struct conn_deadline *cd)
{
    bufferevent_event_cb eventcb = NULL;
    void *cbarg = NULL;

    bufferevent_getcb(cd->bev, NULL, NULL, &eventcb, &cbarg);
    if (!eventcb) {
        /* bufferevent_free() clears the callbacks: evhttp dropped the connection already. */
        bufferevent_decref(cd->bev); /* the last reference: the bufferevent goes */
        deadline_free(cd);
        return;
    }
    /* evhttp hands its connection to its bufferevent callbacks as their argument. */
    cd->evcon = cbarg;
    assert(evhttp_connection_get_bufferevent(cd->evcon) == cd->bev);
    evhttp_connection_set_closecb(cd->evcon, on_conn_close, cd);
    bufferevent_decref(cd->bev); /* evhttp's alone now: on_conn_close says when it goes */
    cd->output_cb = evbuffer_add_cb(bufferevent_get_output(cd->bev), on_output, cd);
    /*
     * Without the output callback a kept-alive connection would be cut off mid-stream; it
     * keeps evhttp's inactivity timeout only (out of memory, so unlikely to matter).
     */
    if (cd->output_cb)
        deadline_arm(cd);
}

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct conn_deadline *cd = arg;

    (void)fd;
    (void)what;
    if (!cd->evcon) {
        deadline_attach(cd);
        return;
    }
    if (!awaiting_request(cd)) {
        deadline_arm(cd); /* the server has the turn: not the client's delay */
        return;
    }
    /*
     * What evhttp does when its own read timeout fires: the connection is freed (cd with it,
     * in on_conn_close) and a request a handler still holds is detached from it, so the
     * handler's late reply is dropped safely. Nothing may touch cd after this call.
     */
    bufferevent_trigger_event(cd->bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, 0);
}

/*
 * evhttp's hook for making a connection's bufferevent, used here to start its deadline.
 * NULL lets evhttp make its own: the connection then goes without a deadline (out of
 * memory only).
 */
static struct bufferevent *
on_new_bev(struct event_base *base, void *arg)
{
    struct conn_deadline *cd = obx_calloc(1, sizeof *cd);
    struct obx_httpd *h = arg;
    struct bufferevent *bev = NULL;

    if (!cd)
        goto fail;
    /* Options 0, as evhttp's own: evhttp closes the socket itself, even while we hold a
     * reference on the bufferevent. */
    bev = bufferevent_socket_new(base, -1, 0);
    cd->timer = event_new(base, -1, 0, on_deadline, cd);
    if (!bev || !cd->timer)
        goto fail;
    /*
     * evhttp wires the connection up after this returns; on_deadline finishes the job later
     * in this loop turn. Should evhttp drop the connection meanwhile, the reference keeps
     * the bufferevent readable for deadline_attach to see it.
     */
    cd->bev = bev;
    bufferevent_incref(bev);
    event_active(cd->timer, EV_TIMEOUT, 0);
    cd->httpd = h;
    h->refs++;
    h->open++;
    update_accepting(h);
    return bev;
fail:
    if (bev)
        bufferevent_free(bev);
    if (cd && cd->timer)
        event_free(cd->timer);
    obx_free(cd);
    return NULL;
}

enum obx_err
obx_httpd_new(struct event_base *base, const char *listen, size_t max_body_bytes,
              struct obx_httpd **out, int *bound_port)
{
    struct evhttp_bound_socket *sock;
    struct obx_httpd *h;
    char host[256];
    int port;

    *out = NULL;
    if (split_listen(listen, host, sizeof host, &port) != 0)
        return OBX_ECONFIG;
    h = obx_calloc(1, sizeof *h);
    if (!h)
        return OBX_ENOMEM;
    h->refs = 1;
    h->http = evhttp_new(base);
    if (!h->http) {
        obx_httpd_free(h);
        return OBX_ENOMEM;
    }
    evhttp_set_max_headers_size(h->http, MAX_HEADERS_BYTES);
    /* evhttp answers 413 by itself past this; we answer with JSON up to max_body_bytes. */
    evhttp_set_max_body_size(h->http, (ev_ssize_t)(max_body_bytes * 2));
    evhttp_set_timeout(h->http, IO_TIMEOUT_S);
    evhttp_set_bevcb(h->http, on_new_bev, h);
    /* Every common method reaches the router, which answers 405 in JSON where needed. */
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH |
                                            EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS);
    sock = evhttp_bind_socket_with_handle(h->http, host, (ev_uint16_t)port);
    if (!sock) {
        obx_httpd_free(h);
        return OBX_EIO;
    }
    h->listener = evhttp_bound_socket_get_listener(sock);
    evconnlistener_set_error_cb(h->listener, on_accept_error);
    if (bound_port) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;

        memset(&ss, 0, sizeof ss); /* clang-analyzer cannot see getsockname() fill it */
        *bound_port = port;
        if (getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&ss, &len) == 0)
            *bound_port = ntohs(ss.ss_family == AF_INET6
                                    ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                    : ((struct sockaddr_in *)&ss)->sin_port);
    }
    *out = h;
    return OBX_OK;
}

struct evhttp *
obx_httpd_evhttp(const struct obx_httpd *h)
{
    return h->http;
}

void
obx_httpd_free(struct obx_httpd *h)
{
    struct evhttp *http;

    if (!h)
        return;
    /* evhttp_free closes every connection (their deadlines go, via on_conn_close) and the
     * listener with them: nothing may touch the listener from here on. */
    http = h->http;
    h->http = NULL;
    h->listener = NULL;
    if (http)
        evhttp_free(http);
    httpd_unref(h);
}

void
obx_httpd_hold(struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);

    if (evcon)
        bufferevent_disable(evhttp_connection_get_bufferevent(evcon), EV_READ);
}

void
obx_httpd_reply_json(struct evhttp_request *req, int status, struct obx_buf *b)
{
    struct evbuffer *out = evbuffer_new();

    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    if (out)
        evbuffer_add(out, obx_buf_str(b), b->len);
    evhttp_send_reply(req, status, NULL, out);
    if (out)
        evbuffer_free(out);
    obx_buf_reset(b);
}

void
obx_httpd_error(struct evhttp_request *req, int status, const char *code, const char *message,
                const char *field)
{
    struct obx_buf b;
    enum obx_err err;

    obx_buf_init(&b, 4096);
    err = obx_buf_puts(&b, "{\"error\":{\"code\":");
    if (err == OBX_OK) err = obx_buf_json_str(&b, code);
    if (err == OBX_OK) err = obx_buf_puts(&b, ",\"message\":");
    if (err == OBX_OK) err = obx_buf_json_str(&b, message);
    if (err == OBX_OK) err = obx_buf_puts(&b, ",\"field\":");
    if (err == OBX_OK) err = field ? obx_buf_json_str(&b, field) : obx_buf_puts(&b, "null");
    if (err == OBX_OK) err = obx_buf_puts(&b, "}}");
    if (err != OBX_OK) {
        /* Out of memory for a few hundred bytes: reply without a body rather than not at all. */
        evhttp_send_reply(req, status, NULL, NULL);
        obx_buf_release(&b);
        return;
    }
    obx_httpd_reply_json(req, status, &b);
    obx_buf_release(&b);
}

enum obx_err
obx_httpd_body(struct evhttp_request *req, size_t max, char **out, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    char *p;

    *out = NULL;
    *len = 0;
    if (n > max)
        return OBX_ETOOBIG;
    p = obx_malloc(n + 1);
    if (!p)
        return OBX_ENOMEM;
    evbuffer_copyout(in, p, n);
    p[n] = '\0';
    *out = p;
    *len = n;
    return OBX_OK;
}

int
obx_httpd_is_json(struct evhttp_request *req)
{
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    size_t n = strlen("application/json");

    return ct && strncasecmp(ct, "application/json", n) == 0 &&
           (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

int
obx_httpd_path_segments(struct evhttp_request *req, char **seg, int n)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    size_t decoded_len;
    int count = 0;

    if (!path || path[0] != '/')
        return -1;
    while (*path) {
        const char *start = ++path, *end = strchr(start, '/');
        size_t len = end ? (size_t)(end - start) : strlen(start);
        char *raw;
        if (len == 0 && !end)
            break; /* trailing slash */
        if (count == n) {
            obx_httpd_free_segments(seg, count);
            return -1;
        }
        raw = obx_strndup(start, len);
        decoded_len = 0;
        seg[count] = raw ? evhttp_uridecode(raw, 0, &decoded_len) : NULL;
        obx_free(raw);
        if (seg[count] && strlen(seg[count]) != decoded_len) {
            count++; /* an encoded NUL: refuse the path */
            obx_httpd_free_segments(seg, count);
            return -1;
        }
        if (!seg[count]) {
            obx_httpd_free_segments(seg, count);
            return -1;
        }
        count++;
        path = start + len;
    }
    return count;
}

void
obx_httpd_free_segments(char **seg, int n)
{
    for (int i = 0; i < n; i++) {
        free(seg[i]); /* allocated by libevent */
        seg[i] = NULL;
    }
}

char *
obx_httpd_query_param(struct evhttp_request *req, const char *name)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *q = uri ? evhttp_uri_get_query(uri) : NULL;
    struct evkeyvalq params;
    const char *v;
    char *copy = NULL;

    if (!q || evhttp_parse_query_str(q, &params) != 0)
        return NULL;
    v = evhttp_find_header(&params, name);
    if (v)
        copy = obx_strdup(v);
    evhttp_clear_headers(&params);
    return copy;
}
