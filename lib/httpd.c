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
 *   ARMED --on_deadline: evhttp still waiting for request bytes--> 408 (when part of a
 *                        request came; an idle kept-alive connection just goes), then
 *                        closed like evhttp's own read timeout
 *   ARMED --on_input: the listener's body budget is full--> on_deadline at once: 503,
 *                     closed the same way (unless evhttp already has the whole request)
 *   NEW   --deadline_attach: evhttp dropped the connection already--> freed
 *   ARMED --on_conn_close (evhttp frees the connection, whatever the reason)--> freed;
 *                         the socket lingers (below)
 *
 * Errors of the HTTP layer (SPEC §14). evhttp 2.1 answers some requests by itself with
 * evhttp_send_error(): 400 (bad request line or headers, headers over 16 KiB), 413 (body
 * over the limit), 417, 501 (method outside the allowed set), and there is no hook for it
 * (evhttp_set_errorcb is 2.2). evhttp_send_error() always builds the same response:
 * evhttp_send_page_() clears the headers, sets "Content-Type: text/html" and
 * "Connection: close", and evhttp_make_header() appends the status line, the headers and
 * last the fixed HTML page (ERR_FORMAT in http.c) to the bufferevent's output buffer, all
 * in one call and before anything is written to the socket (writing waits for the loop).
 * We own that bufferevent and watch its output buffer anyway (on_output), so when the
 * buffer ends with exactly that page, rewrite_error_page() swaps the page for the §5 JSON
 * error with the same status, before the first byte is sent. The match is strict (whole
 * page, status and reason as in the status line, text/html, response at most 4 KiB), so a
 * reply of ours can never be mistaken for it; were a future libevent to change the page,
 * the check fails safe: the client gets evhttp's HTML, as before. 408 and 503 are ours and
 * go out as JSON directly (send_direct).
 *
 * Lingering close. evhttp closes a connection right after an error reply, often while the
 * client is still sending the body it refused; closing a socket with unread data makes
 * the kernel send RST, which can destroy the reply before the client reads it. So, as
 * nginx's lingering_close: the close callback (which runs before evhttp closes the
 * descriptor) dup()s the socket; evhttp then shuts down the sending side (the reply
 * and a FIN go out) and closes its copy, and we read and discard what the client still
 * sends until its EOF, at most LINGER_MAX_BYTES and LINGER_MAX_S (LINGER_IDLE_S without a
 * byte), then close. At most max_lingering sockets linger; beyond that a socket is closed
 * as before.
 *
 * Memory before authentication. evhttp reads a whole request (headers up to 16 KiB, the
 * body up to max_body_bytes) before the request callback can check the bearer token:
 * libevent 2.1 has no callback between the headers and the body for a server request
 * (evhttp_request_set_header_cb only serves responses to our own outgoing requests), so
 * checking the token earlier would mean parsing HTTP ourselves. What bounds memory
 * instead is a budget per listener: every byte received on a connection since its last
 * reply counts (on_input) until that reply is written or the connection goes; past
 * body_budget_bytes, the connection whose byte crossed it (if it carries more than a
 * header's worth) gets 503 + Retry-After and is closed.
 */
#include "httpd.h"

#include <assert.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "mem.h"
#include "net.h"

#define MAX_HEADERS_BYTES (16 * 1024)
/*
 * Inactivity: no byte in or out for this long closes a connection. A little longer than
 * the request deadline, so that a stalled request gets the deadline's 408 rather than
 * evhttp's silent close.
 */
#define IO_TIMEOUT_S 12
#define REQUEST_DEADLINE_S 10 /* a whole request, however fast its bytes come */
#define DEFAULT_MAX_CONNECTIONS 400
#define DEFAULT_BODY_BUDGET (64 * 1024 * 1024)
#define LINGER_MAX_BYTES (64 * 1024 * 1024) /* what a lingering socket reads at most */
#define LINGER_MAX_S 10
#define LINGER_IDLE_S 2
#define MAX_ERROR_RESPONSE 4096 /* evhttp's error responses are ~300 bytes */

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

struct lingerer;

/*
 * One listener. Its connections and lingering sockets hold references too (a
 * connection can outlive obx_httpd_free by a loop turn, see on_new_bev), so the last
 * one frees it.
 *
 * At max_connections open connections accepting stops; further clients wait in the
 * kernel's backlog, costing no descriptor, until one closes. An EMFILE pause may
 * end early when a connection closes: a descriptor was just freed, so that is safe.
 */
struct obx_httpd {
    struct evhttp *http;             /* NULL once obx_httpd_free ran */
    struct evconnlistener *listener; /* evhttp's; NULL once obx_httpd_free ran */
    struct event_base *base;
    size_t open; /* connections with a deadline (all but OOM ones) */
    size_t max_connections, max_lingering, body_budget;
    const char *body_limit_message; /* the 413's message */
    size_t inflight;                /* request bytes received and not answered yet */
    struct lingerer *lingering;     /* list of sockets draining before their close */
    size_t nlingering;
    struct obx_httpd_stats stats;
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
    if (h->open >= h->max_connections)
        evconnlistener_disable(h->listener);
    else if (h->open == h->max_connections - 1)
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

/* ---- lingering close ------------------------------------------------------------------ */

struct lingerer {
    struct lingerer *prev, *next;
    struct obx_httpd *httpd; /* holds a reference */
    struct event *ev;        /* readable, or LINGER_IDLE_S without a byte */
    int fd;                  /* our dup() of the connection's socket */
    size_t drained;
    int64_t until_ms; /* monotonic: closed by then whatever the client does */
};

static void
linger_free(struct lingerer *l)
{
    struct obx_httpd *h = l->httpd;

    if (l->prev)
        l->prev->next = l->next;
    else
        h->lingering = l->next;
    if (l->next)
        l->next->prev = l->prev;
    h->nlingering--;
    if (l->ev)
        event_free(l->ev);
    close(l->fd);
    obx_free(l);
    httpd_unref(h);
}

/* 1 when the socket is done with: the client's EOF, an error, or a bound reached. */
static int
linger_drain(struct lingerer *l)
{
    char scratch[16384];

    for (int i = 0; i < 64; i++) {
        ssize_t n = recv(l->fd, scratch, sizeof scratch, MSG_DONTWAIT);
        if (n == 0)
            return 1;
        if (n < 0)
            return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
        l->drained += (size_t)n;
        if (l->drained >= LINGER_MAX_BYTES)
            return 1;
    }
    return obx_mono_ms(obx_clock_real()) >= l->until_ms;
}

static void
on_linger(evutil_socket_t fd, short what, void *arg)
{
    struct lingerer *l = arg;

    (void)fd;
    if ((what & EV_TIMEOUT) || linger_drain(l) || obx_mono_ms(obx_clock_real()) >= l->until_ms)
        linger_free(l);
}

/*
 * Called from evhttp's close callback, before evhttp shuts the socket down and closes
 * it. Best effort: without a slot, a descriptor or memory the socket is simply closed by
 * evhttp as before.
 */
static void
linger_start(struct obx_httpd *h, int fd)
{
    const struct timeval idle = {LINGER_IDLE_S, 0};
    struct lingerer *l;
    int copy;

    if (fd < 0 || !h->http || h->nlingering >= h->max_lingering)
        return;
    copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0)
        return;
    l = obx_calloc(1, sizeof *l);
    if (l)
        l->ev = event_new(h->base, copy, EV_READ | EV_PERSIST, on_linger, l);
    if (!l || !l->ev || event_add(l->ev, &idle) != 0) {
        if (l && l->ev)
            event_free(l->ev);
        obx_free(l);
        close(copy);
        return;
    }
    l->fd = copy;
    l->httpd = h;
    l->until_ms = obx_mono_ms(obx_clock_real()) + LINGER_MAX_S * 1000;
    l->next = h->lingering;
    if (l->next)
        l->next->prev = l;
    h->lingering = l;
    h->nlingering++;
    h->refs++;
}

/* ---- errors in JSON ---------------------------------------------------------------------- */

/* Appends {"error":{"code","message","field"}}; field may be NULL. */
static enum obx_err
error_json(struct obx_buf *b, const char *code, const char *message, const char *field)
{
    enum obx_err err = obx_buf_puts(b, "{\"error\":{\"code\":");

    if (err == OBX_OK)
        err = obx_buf_json_str(b, code);
    if (err == OBX_OK)
        err = obx_buf_puts(b, ",\"message\":");
    if (err == OBX_OK)
        err = obx_buf_json_str(b, message);
    if (err == OBX_OK)
        err = obx_buf_puts(b, ",\"field\":");
    if (err == OBX_OK)
        err = field ? obx_buf_json_str(b, field) : obx_buf_puts(b, "null");
    if (err == OBX_OK)
        err = obx_buf_puts(b, "}}");
    return err;
}

/* The code and message for an error the HTTP layer answers; counts it. */
static void
layer_error(struct obx_httpd *h, int status, const char *reason, const char **code,
            const char **message /* OUT */)
{
    switch (status) {
    case 400:
        h->stats.bad_request++;
        *code = "bad_request";
        *message = "the request line or headers are malformed";
        break;
    case 408:
        h->stats.timeout++;
        *code = "timeout";
        *message = "the request did not arrive in time";
        break;
    case 413:
        h->stats.too_large++;
        *code = "too_large";
        *message = h->body_limit_message;
        break;
    case 417:
        h->stats.bad_request++;
        *code = "expectation_failed";
        *message = "only Expect: 100-continue is supported";
        break;
    case 501:
        h->stats.bad_request++;
        *code = "not_implemented";
        *message = "the method is not supported";
        break;
    case 503:
        h->stats.shed++;
        *code = "unavailable";
        *message = "too many request bytes in flight; retry later";
        break;
    default:
        h->stats.bad_request++;
        *code = "http_error";
        *message = reason;
        break;
    }
}

/* A whole response carrying the JSON error: status line, headers, body. */
static enum obx_err
error_response(struct obx_httpd *h, struct obx_buf *out, const char *status_line,
               const char *kept_headers, int status, const char *reason)
{
    const char *code = NULL, *message = NULL;
    struct obx_buf json;
    enum obx_err err;

    layer_error(h, status, reason, &code, &message);
    obx_buf_init(&json, MAX_ERROR_RESPONSE);
    err = error_json(&json, code, message, NULL);
    if (err == OBX_OK)
        err = obx_buf_printf(out,
                             "%s\r\n%sContent-Type: application/json\r\n"
                             "Content-Length: %zu\r\n%s\r\n%s",
                             status_line, kept_headers, json.len,
                             status == 503 ? "Retry-After: 1\r\n" : "", obx_buf_str(&json));
    obx_buf_release(&json);
    return err;
}

/*
 * When out ends with evhttp_send_error()'s page, replaces that response with the JSON
 * error of the same status (see the top of this file). A "100 Continue" still waiting in
 * front of it stays.
 */
static void
rewrite_error_page(struct obx_httpd *h, struct evbuffer *out)
{
    static const char tail[] = "</BODY></HTML>\n";
    char text[MAX_ERROR_RESPONSE + 1], page[MAX_ERROR_RESPONSE], reason[256];
    char status_line[300], kept[MAX_ERROR_RESPONSE];
    size_t len = evbuffer_get_length(out), start = 0, kept_len = 0;
    char *line, *head_end, *body;
    int status = 0, reason_at = 0, html = 0;
    struct evbuffer_ptr pos;
    struct obx_buf resp;

    if (len < sizeof tail - 1 || len > MAX_ERROR_RESPONSE)
        return;
    /* Most replies end otherwise: look at the end first. */
    if (evbuffer_ptr_set(out, &pos, len - (sizeof tail - 1), EVBUFFER_PTR_SET) != 0 ||
        evbuffer_copyout_from(out, &pos, text, sizeof tail - 1) != (ev_ssize_t)(sizeof tail - 1) ||
        memcmp(text, tail, sizeof tail - 1) != 0)
        return;
    if (evbuffer_copyout(out, text, len) != (ev_ssize_t)len)
        return;
    text[len] = '\0';
    if (memcmp(text + len - (sizeof tail - 1), tail, sizeof tail - 1) != 0 || strlen(text) != len)
        return;
    /* evhttp_send_continue()'s interim "100 Continue", not yet written. */
    while (strncmp(text + start, "HTTP/1.1 100 ", 13) == 0 ||
           strncmp(text + start, "HTTP/1.0 100 ", 13) == 0) {
        char *end = strstr(text + start, "\r\n\r\n");
        if (!end)
            return;
        start = (size_t)(end + 4 - text);
    }
    head_end = strstr(text + start, "\r\n\r\n");
    if (!head_end)
        return;
    *head_end = '\0';
    body = head_end + 4;
    line = strstr(text + start, "\r\n");
    if (!line)
        return;
    *line = '\0';
    if (sscanf(text + start, "HTTP/1.%*1[01] %3d %n", &status, &reason_at) != 1 || reason_at == 0 ||
        status < 400 || status > 599 ||
        snprintf(reason, sizeof reason, "%s", text + start + reason_at) >= (int)sizeof reason ||
        snprintf(status_line, sizeof status_line, "%s", text + start) >= (int)sizeof status_line)
        return;
    /* ERR_FORMAT of libevent 2.1's http.c, exactly. */
    snprintf(page, sizeof page,
             "<HTML><HEAD>\n<TITLE>%d %s</TITLE>\n</HEAD><BODY>\n<H1>%s</H1>\n</BODY></HTML>\n",
             status, reason, reason);
    if (strcmp(body, page) != 0)
        return;
    /* The headers evhttp wrote (Date, Connection, ...), without the page's type and length. */
    for (char *hdr = line + 2; *hdr;) {
        char *next = strstr(hdr, "\r\n");
        size_t n = next ? (size_t)(next - hdr) : strlen(hdr);
        if (strncasecmp(hdr, "Content-Type:", 13) == 0)
            html = strncasecmp(hdr, "Content-Type: text/html", n) == 0;
        else if (strncasecmp(hdr, "Content-Length:", 15) != 0) {
            memcpy(kept + kept_len, hdr, n);
            memcpy(kept + kept_len + n, "\r\n", 2);
            kept_len += n + 2;
        }
        hdr = next ? next + 2 : hdr + n;
    }
    kept[kept_len] = '\0';
    if (!html)
        return;
    obx_buf_init(&resp, 2 * MAX_ERROR_RESPONSE);
    if (error_response(h, &resp, status_line, kept, status, reason) == OBX_OK) {
        /* Nothing has been sent yet: the socket writes only once the loop runs again. */
        evbuffer_drain(out, len);
        if (evbuffer_add(out, text, start) != 0 || evbuffer_add(out, resp.data, resp.len) != 0)
            evbuffer_drain(out, evbuffer_get_length(out)); /* no memory: close, say nothing */
    }
    obx_buf_release(&resp);
}

/* ---- connections ------------------------------------------------------------------------- */

struct conn_deadline {
    struct bufferevent *bev;             /* the connection's; we hold a reference while NEW */
    struct evhttp_connection *evcon;     /* NULL while NEW */
    struct event *timer;                 /* fires once to attach, then at each deadline */
    struct evbuffer_cb_entry *output_cb; /* watches bev's output buffer; NULL while NEW */
    struct evbuffer_cb_entry *input_cb;  /* counts bev's input; NULL while NEW */
    struct obx_httpd *httpd;             /* counted in httpd->open; holds a reference */
    size_t in_bytes;                     /* received since the last reply, in httpd->inflight */
    int rewriting;                       /* on_output: our own change of the buffer */
    int shed;                            /* over the body budget: on_deadline answers 503 */
};

/* The bytes of the current request no longer count against the budget. */
static void
release_inflight(struct conn_deadline *cd)
{
    cd->httpd->inflight -= cd->in_bytes;
    cd->in_bytes = 0;
}

static void
deadline_free(struct conn_deadline *cd)
{
    struct obx_httpd *h = cd->httpd;

    if (cd->output_cb)
        evbuffer_remove_cb_entry(bufferevent_get_output(cd->bev), cd->output_cb);
    if (cd->input_cb)
        evbuffer_remove_cb_entry(bufferevent_get_input(cd->bev), cd->input_cb);
    release_inflight(cd);
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

    if (cd->rewriting)
        return;
    if (info->n_added > 0) {
        cd->rewriting = 1; /* the rewrite changes this buffer: not a reply going out */
        rewrite_error_page(cd->httpd, out);
        cd->rewriting = 0;
    }
    if (info->n_deleted == 0 || evbuffer_get_length(out) > 0)
        return;
    /*
     * A reply is out (evhttp writes replies without a read callback; a "100 Continue" is
     * written with one, and the body it asks for is still part of the same request).
     */
    bufferevent_getcb(cd->bev, &readcb, NULL, NULL, NULL);
    if (!readcb) {
        release_inflight(cd);
        deadline_arm(cd);
    }
}

/*
 * Counts what arrives against the listener's budget. Runs inside the bufferevent's read,
 * so it must not close anything: on_deadline, made active here, does that.
 */
static void
on_input(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg)
{
    struct conn_deadline *cd = arg;
    struct obx_httpd *h = cd->httpd;

    (void)in;
    if (info->n_added == 0)
        return;
    cd->in_bytes += info->n_added;
    h->inflight += info->n_added;
    if (h->inflight > h->body_budget && cd->in_bytes > MAX_HEADERS_BYTES && !cd->shed) {
        cd->shed = 1;
        event_active(cd->timer, EV_TIMEOUT, 0);
    }
}

static void
on_conn_close(struct evhttp_connection *evcon, void *arg)
{
    struct conn_deadline *cd = arg;

    evhttp_connection_set_closecb(evcon, NULL, NULL); /* once is all cd can take */
    linger_start(cd->httpd, (int)bufferevent_getfd(cd->bev));
    deadline_free(cd);
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
    cd->input_cb = evbuffer_add_cb(bufferevent_get_input(cd->bev), on_input, cd);
    /*
     * Without the output callback a kept-alive connection would be cut off mid-stream; it
     * keeps evhttp's inactivity timeout only (out of memory, so unlikely to matter).
     */
    if (cd->output_cb)
        deadline_arm(cd);
}

/*
 * Writes a JSON error straight to the socket, outside evhttp, which is waiting for request
 * bytes and has nothing to write (awaiting_request). The reply is a few hundred bytes
 * and the socket's send buffer is empty but for replies the client has not read: when it
 * does not all fit, the client gets a cut reply and then the close, as it would have got
 * the close alone before.
 */
static void
send_direct(struct conn_deadline *cd, int status, const char *reason)
{
    struct obx_buf resp;
    char line[64];

    snprintf(line, sizeof line, "HTTP/1.1 %d %s", status, reason);
    obx_buf_init(&resp, 2 * MAX_ERROR_RESPONSE);
    if (error_response(cd->httpd, &resp, line, "Connection: close\r\n", status, reason) == OBX_OK)
        (void)send((int)bufferevent_getfd(cd->bev), resp.data, resp.len,
                   MSG_DONTWAIT | MSG_NOSIGNAL);
    obx_buf_release(&resp);
}

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct conn_deadline *cd = arg;
    int shed;

    (void)fd;
    (void)what;
    if (!cd->evcon) {
        deadline_attach(cd);
        return;
    }
    shed = cd->shed;
    cd->shed = 0;
    if (!awaiting_request(cd)) {
        /* The server has the turn (not the client's delay), or the whole request came. */
        deadline_arm(cd);
        return;
    }
    if (shed)
        send_direct(cd, 503, "Service Unavailable");
    else if (cd->in_bytes > 0)
        send_direct(cd, 408, "Request Timeout");
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
obx_httpd_new(struct event_base *base, const char *listen, const struct obx_httpd_limits *lim,
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
    h->base = base;
    h->max_connections = lim->max_connections ? lim->max_connections : DEFAULT_MAX_CONNECTIONS;
    /* Lingering sockets are descriptors too: a quarter of the connection cap. */
    h->max_lingering = lim->max_lingering ? lim->max_lingering : h->max_connections / 4 + 1;
    h->body_budget = lim->body_budget_bytes ? lim->body_budget_bytes : DEFAULT_BODY_BUDGET;
    /* One request of the largest size must always fit, or it could never be answered. */
    if (h->body_budget < lim->max_body_bytes + MAX_HEADERS_BYTES)
        h->body_budget = lim->max_body_bytes + MAX_HEADERS_BYTES;
    h->body_limit_message = lim->body_limit_message ? lim->body_limit_message
                                                    : "the request body or headers are too large";
    h->http = evhttp_new(base);
    if (!h->http) {
        obx_httpd_free(h);
        return OBX_ENOMEM;
    }
    evhttp_set_max_headers_size(h->http, MAX_HEADERS_BYTES);
    /* evhttp answers 413 by itself past this (in JSON, see rewrite_error_page). */
    evhttp_set_max_body_size(h->http, (ev_ssize_t)lim->max_body_bytes);
    evhttp_set_timeout(h->http, IO_TIMEOUT_S);
    evhttp_set_bevcb(h->http, on_new_bev, h);
    /*
     * Every method evhttp knows reaches the router, which answers 405 where needed; one it
     * does not know gets evhttp's 501 (in JSON, see rewrite_error_page).
     */
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT);
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
            *bound_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                         : ((struct sockaddr_in *)&ss)->sin_port);
    }
    *out = h;
    return OBX_OK;
}

void
obx_httpd_stats(const struct obx_httpd *h, struct obx_httpd_stats *out)
{
    *out = h->stats;
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
    while (h->lingering)
        linger_free(h->lingering); /* they hold references: h stays until the last */
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

    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
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
    err = error_json(&b, code, message, field);
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
            return OBX_HTTPD_PATH_NOMEM;
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
