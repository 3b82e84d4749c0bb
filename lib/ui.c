/* ui: serves the embedded dashboard files with ETag, gzip and a strict CSP. */
#include "ui.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "httpd.h"

const struct obx_ui_file *
obx_ui_find(const char *path)
{
    for (const struct obx_ui_file *f = obx_ui_files; f->path; f++)
        if (strcmp(f->path, path) == 0)
            return f;
    return NULL;
}

/* 1 when an If-None-Match list names etag (or is "*"). */
static int
etag_matches(const char *inm, const char *etag)
{
    size_t n = strlen(etag);
    const char *p = inm;

    if (strcmp(inm, "*") == 0)
        return 1;
    while ((p = strstr(p, etag)) != NULL) {
        if ((p == inm || p[-1] == ' ' || p[-1] == ',' || p[-1] == '/') &&
            (p[n] == 0 || p[n] == ',' || p[n] == ' '))
            return 1;
        p += n;
    }
    return 0;
}

/* 1 when Accept-Encoding lists gzip (or x-gzip) with a non-zero q. */
static int
accepts_gzip(const char *ae)
{
    const char *p = strcasestr(ae, "gzip");
    const char *comma, *q;

    if (!p)
        return 0;
    comma = strchr(p, ',');
    q = strstr(p, "q=");
    if (q && (!comma || q < comma))
        return strtod(q + 2, NULL) > 0;
    return 1;
}

void
obx_ui_serve(struct evhttp_request *req, char **seg, int n)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    const struct obx_ui_file *f;
    const char *inm, *ae;
    struct evbuffer *body;
    int gz;

    if (n >= 3 && strcmp(seg[1], "assets") == 0) {
        char path[512];
        size_t len = strlen("assets");

        memcpy(path, "assets", len + 1);
        for (int i = 2; i < n; i++) {
            size_t l = strlen(seg[i]);
            if (len + 1 + l + 1 > sizeof path)
                break;
            path[len++] = '/';
            memcpy(path + len, seg[i], l + 1);
            len += l;
        }
        f = obx_ui_find(path);
        if (!f) {
            obx_httpd_error(req, 404, "not_found", "no such dashboard file", NULL);
            return;
        }
    } else {
        f = obx_ui_find("index.html"); /* every other /ui path: the page (deep links) */
        if (!f) {
            obx_httpd_error(req, 404, "not_found", "the dashboard is not built in", NULL);
            return;
        }
    }
    evhttp_add_header(out, "Content-Security-Policy", OBX_UI_CSP);
    evhttp_add_header(out, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(out, "Referrer-Policy", "no-referrer");
    evhttp_add_header(out, "X-Frame-Options", "DENY");
    /* Revalidate every time: the ETag makes that a 304 without a body. */
    evhttp_add_header(out, "Cache-Control", "no-cache");
    evhttp_add_header(out, "Vary", "Accept-Encoding");
    evhttp_add_header(out, "ETag", f->etag);
    inm = evhttp_find_header(in, "If-None-Match");
    if (inm && etag_matches(inm, f->etag)) {
        evhttp_send_reply(req, 304, "Not Modified", NULL);
        return;
    }
    ae = evhttp_find_header(in, "Accept-Encoding");
    gz = ae && accepts_gzip(ae) && f->gzlen < f->len;
    evhttp_add_header(out, "Content-Type", f->type);
    if (gz)
        evhttp_add_header(out, "Content-Encoding", "gzip");
    body = evbuffer_new();
    if (!body) {
        obx_httpd_error(req, 500, "internal", "out of memory", NULL);
        return;
    }
    /* The embedded bytes live as long as the program: no copy. */
    if (evbuffer_add_reference(body, gz ? f->gz : f->data, gz ? f->gzlen : f->len, NULL, NULL) !=
        0) {
        evbuffer_free(body);
        obx_httpd_error(req, 500, "internal", "out of memory", NULL);
        return;
    }
    evhttp_send_reply(req, 200, "OK", body);
    evbuffer_free(body);
}
