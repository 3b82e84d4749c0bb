/* partoo_request: Partoo's ingest request, built once for the worker and the doctor. */
#include "partoo_request.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

#include "mem.h"

#define PROBE_BODY "{}"

/* Percent-encodes everything but RFC 3986 unreserved characters. */
static enum obx_err
append_path_segment(struct obx_buf *b, const char *s)
{
    enum obx_err err = OBX_OK;

    for (const unsigned char *p = (const unsigned char *)s; *p && err == OBX_OK; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~')
            err = obx_buf_append(b, p, 1);
        else
            err = obx_buf_printf(b, "%%%02X", *p);
    }
    return err;
}

static enum obx_err
build_url(struct obx_buf *url, const char *base_url, const char *channel_id)
{
    enum obx_err err = obx_buf_puts(url, base_url);

    if (err == OBX_OK && url->len && url->data[url->len - 1] == '/')
        url->data[--url->len] = '\0';
    if (err == OBX_OK)
        err = obx_buf_puts(url, "/custom-channels/");
    if (err == OBX_OK)
        err = append_path_segment(url, channel_id);
    if (err == OBX_OK)
        err = obx_buf_puts(url, "/messages");
    return err;
}

/* One allocation of the exact size: a growing buffer would leave copies of the key in
 * the blocks it reallocated away from. */
static enum obx_err
build_key_header(struct obx_partoo_request *r, const char *api_key)
{
    static const char name[] = "x-APIKey: ";
    size_t klen = strlen(api_key), n = sizeof name - 1 + klen;

    r->key_header = obx_malloc(n + 1);
    if (!r->key_header)
        return OBX_ENOMEM;
    memcpy(r->key_header, name, sizeof name); /* with its NUL, for an empty key */
    memcpy(r->key_header + sizeof name - 1, api_key, klen + 1);
    r->key_header_len = n;
    return OBX_OK;
}

enum obx_err
obx_partoo_request_init(struct obx_partoo_request *r, const char *base_url, const char *api_key,
                        const char *channel_id, const struct obx_msg *msg)
{
    enum obx_err err;

    memset(r, 0, sizeof *r);
    /* Percent-encoding at most triples the channel id. */
    obx_buf_init(&r->url_buf, strlen(base_url) + 3 * strlen(channel_id) + 64);
    /* Sized from the message itself, so no message can be too big to send: a row written
     * by plain SQL may hold 1 MiB of control characters, 6 MiB once JSON-escaped. */
    obx_buf_init(&r->body_buf, msg ? obx_msg_partoo_body_max(msg) : sizeof PROBE_BODY);
    err = build_url(&r->url_buf, base_url, channel_id);
    if (err == OBX_OK)
        err = msg ? obx_msg_partoo_body(msg, &r->body_buf) : obx_buf_puts(&r->body_buf, PROBE_BODY);
    if (err == OBX_OK)
        err = build_key_header(r, api_key ? api_key : "");
    if (err != OBX_OK)
        return err;
    r->url = obx_buf_str(&r->url_buf);
    r->body = obx_buf_str(&r->body_buf);
    r->body_len = r->body_buf.len;
    r->headers[0] = r->key_header;
    r->headers[1] = "Content-Type: application/json";
    r->headers[2] = "Expect:"; /* no 100-continue round trip for larger bodies */
    return OBX_OK;
}

enum obx_err
obx_partoo_request_post(struct obx_partoo_request *r, struct obx_http *h, obx_http_done_fn done,
                        void *ctx)
{
    enum obx_err err = obx_http_client_post(h, r->url, r->headers, OBX_PARTOO_REQUEST_NHEADERS,
                                            r->body, r->body_len, done, ctx);

    obx_partoo_request_wipe_key(r); /* the key lives on in libcurl's copy only */
    return err;
}

void
obx_partoo_request_wipe_key(struct obx_partoo_request *r)
{
    if (r->key_header)
        explicit_bzero(r->key_header, r->key_header_len);
}

void
obx_partoo_request_release(struct obx_partoo_request *r)
{
    if (!r)
        return;
    obx_partoo_request_wipe_key(r);
    obx_free(r->key_header);
    obx_buf_release(&r->url_buf);
    obx_buf_release(&r->body_buf);
    memset(r, 0, sizeof *r);
}

/* ---- the probe: one request on a loop of its own ----------------------------------------- */

struct probe {
    int done;
    int status;
    char *error;
    size_t errsz;
};

static void
on_probe_done(void *ctx, const struct obx_http_result *res)
{
    struct probe *p = ctx;

    p->done = 1;
    p->status = res->status;
    if (res->error)
        snprintf(p->error, p->errsz, "%s", res->error);
}

enum obx_err
obx_partoo_request_probe(const char *base_url, const char *api_key, const char *channel_id,
                         const struct obx_http_opts *o, int *status, char *error, size_t errsz)
{
    struct obx_partoo_request r;
    struct probe p = {0, 0, error, errsz};
    struct event_base *base = NULL;
    struct obx_http *h = NULL;
    int curl_ready = 0;
    enum obx_err err;

    *status = 0;
    if (errsz)
        error[0] = '\0';
    err = obx_partoo_request_init(&r, base_url, api_key, channel_id, NULL);
    if (err == OBX_OK) {
        curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
        err = curl_ready ? OBX_OK : OBX_EIO;
    }
    if (err == OBX_OK) {
        base = event_base_new();
        err = base ? OBX_OK : OBX_ENOMEM;
    }
    if (err == OBX_OK)
        err = obx_http_client_new(base, o, &h);
    if (err == OBX_OK)
        err = obx_partoo_request_post(&r, h, on_probe_done, &p);
    /* The transfer's own timeouts (o) end it; the loop returns once nothing is pending. */
    while (err == OBX_OK && !p.done) {
        int rc = event_base_loop(base, EVLOOP_ONCE);
        if (rc < 0 || (rc == 1 && !p.done)) /* 1: nothing left to wait for, yet no answer */
            err = OBX_EIO;
    }
    if (err == OBX_OK)
        *status = p.status;
    obx_http_client_free(h);
    if (base)
        event_base_free(base);
    if (curl_ready)
        curl_global_cleanup();
    obx_partoo_request_release(&r);
    return err;
}
