/*
 * Small helpers shared by the mock's modules: a growable buffer, clocks, the PRNG and JSON
 * replies. Nothing here keeps state of its own.
 */
#include "mock.h"

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int
mock_util_buf_add(struct mock_buf *b, const void *data, size_t len)
{
    size_t need;
    size_t cap;
    char *p;

    if (len > SIZE_MAX / 2 - b->len) {
        return -1;
    }
    need = b->len + len + 1;
    if (need > b->cap) {
        cap = b->cap > 0 ? b->cap : 64;
        while (cap < need) {
            cap *= 2;
        }
        p = realloc(b->p, cap);
        if (p == NULL) {
            return -1;
        }
        b->p = p;
        b->cap = cap;
    }
    if (len > 0) {
        memcpy(b->p + b->len, data, len);
    }
    b->len += len;
    b->p[b->len] = '\0';
    return 0;
}

int
mock_util_buf_addc(struct mock_buf *b, char c)
{
    return mock_util_buf_add(b, &c, 1);
}

void
mock_util_buf_release(struct mock_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
}

static int64_t
clock_ms(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
mock_util_now_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

int64_t
mock_util_mono_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

/* splitmix64: small, fast, and good enough to pick which requests fail. */
uint64_t
mock_util_rand(uint64_t *state)
{
    uint64_t z;

    *state += 0x9e3779b97f4a7c15ULL;
    z = *state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

int
mock_util_roll(uint64_t *state, double p)
{
    double x;

    if (p <= 0.0) {
        return 0;
    }
    x = (double)(mock_util_rand(state) >> 11) * (1.0 / 9007199254740992.0);
    return x < p;
}

/* Reason phrases libevent 2.1 does not know (it would say "Client Error"); NULL: its own. */
static const char *
reason_phrase(int code)
{
    static const struct {
        int code;
        const char *phrase;
    } phrases[] = {
        {422, "Unprocessable Entity"},
        {425, "Too Early"},
        {429, "Too Many Requests"},
    };
    size_t i;

    for (i = 0; i < sizeof(phrases) / sizeof(phrases[0]); i++) {
        if (phrases[i].code == code) {
            return phrases[i].phrase;
        }
    }
    return NULL;
}

void
mock_util_reply(struct evhttp_request *req, int code, const char *body)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
    evhttp_send_reply(req, code, reason_phrase(code), NULL);
}

void
mock_util_reply_tree(struct evhttp_request *req, int code, const struct cJSON *tree)
{
    char *text = cJSON_PrintUnformatted(tree);

    if (text == NULL) {
        mock_util_reply(req, 500, "{\"error\":\"out of memory\"}");
        return;
    }
    mock_util_reply(req, code, text);
    cJSON_free(text);
}

void
mock_util_reply_error(struct evhttp_request *req, int code, const char *msg)
{
    cJSON *tree = cJSON_CreateObject();

    if (tree == NULL || cJSON_AddStringToObject(tree, "error", msg) == NULL) {
        mock_util_reply(req, 500, "{\"error\":\"out of memory\"}");
        goto out;
    }
    mock_util_reply_tree(req, code, tree);
out:
    cJSON_Delete(tree);
}

/*
 * evhttp has no "abort" for a server-side request, but freeing the connection is safe here:
 * once a request is handed to us, evhttp stops reading the connection and touches neither it
 * nor the request again until we answer, and freeing it also frees the request.
 */
void
mock_util_drop(struct evhttp_request *req)
{
    evhttp_connection_free(evhttp_request_get_connection(req));
}

struct cJSON *
mock_util_parse_body(struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const char *text;
    const char *end = NULL;
    cJSON *root;

    if (len == 0) {
        return NULL;
    }
    text = (const char *)evbuffer_pullup(in, -1);
    if (text == NULL) {
        return NULL;
    }
    root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (root == NULL) {
        return NULL;
    }
    /* cJSON stops at the end of the first value: anything but blanks after it is an error. */
    while (end < text + len && strchr(" \t\r\n", *end) != NULL && *end != '\0') {
        end++;
    }
    if (end != text + len) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

void
mock_util_log(int quiet, const char *fmt, ...)
{
    va_list ap;

    if (quiet) {
        return;
    }
    va_start(ap, fmt);
    fputs("mock_partoo: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
