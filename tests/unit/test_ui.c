/*
 * test_ui: the embedded dashboard as a browser sees it, through a real evhttp on
 * 127.0.0.1 port 0 that hands /ui/... paths to obx_ui_serve: the files and their types,
 * deep links answering the page, ETag and If-None-Match (304), gzip only when accepted
 * (and worth it), the security headers on every answer, and 404 JSON for a missing asset.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "check.h"
#include "loop_http.h"
#include "ui.h"

struct fixture {
    struct event_base *base;
    struct evhttp *http;
    int port;
};

/* Splits the request's path into segments and lets obx_ui_serve answer it. */
static void
on_request(struct evhttp_request *req, void *arg)
{
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    char buf[512], *seg[16], *save = NULL;
    int n = 0;

    (void)arg;
    snprintf(buf, sizeof buf, "%s", path ? path : "/");
    for (char *t = strtok_r(buf, "/", &save); t && n < 16; t = strtok_r(NULL, "/", &save))
        seg[n++] = t;
    if (n < 1 || strcmp(seg[0], "ui") != 0) {
        evhttp_send_error(req, 400, NULL);
        return;
    }
    obx_ui_serve(req, seg, n);
}

static int
fixture_open(struct fixture *f)
{
    struct evhttp_bound_socket *bs;
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;

    memset(f, 0, sizeof *f);
    f->base = event_base_new();
    f->http = f->base ? evhttp_new(f->base) : NULL;
    if (!f->http)
        return -1;
    bs = evhttp_bind_socket_with_handle(f->http, "127.0.0.1", 0);
    if (!bs || getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sin, &len) != 0)
        return -1;
    f->port = ntohs(sin.sin_port);
    evhttp_set_gencb(f->http, on_request, NULL);
    return 0;
}

static void
fixture_close(struct fixture *f)
{
    if (f->http)
        evhttp_free(f->http);
    if (f->base)
        event_base_free(f->base);
}

/*
 * One GET of path with the extra header lines hdrs ("" or "Name: value\r\n..."); the
 * whole answer, headers and body, as sent (malloc'd; caller frees), or NULL.
 */
static char *
get(struct fixture *f, const char *path, const char *hdrs)
{
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s\r\n", path,
                     hdrs);

    return raw_call(f->base, f->port, req, (size_t)n);
}

/* The value of header name in answer a, into out[n] ("" when absent). */
static const char *
header(const char *a, const char *name, char *out, size_t n)
{
    const char *end = strstr(a, "\r\n\r\n"), *p = a;
    size_t l = strlen(name);

    out[0] = '\0';
    while ((p = strstr(p, "\r\n")) != NULL && p < end) {
        p += 2;
        if (strncasecmp(p, name, l) == 0 && p[l] == ':') {
            const char *v = p + l + 1, *e = strstr(v, "\r\n");
            while (*v == ' ')
                v++;
            snprintf(out, n, "%.*s", (int)(e - v), v);
            break;
        }
    }
    return out;
}

/* The body of answer a (after the blank line). */
static const char *
body_of(const char *a)
{
    const char *p = strstr(a, "\r\n\r\n");
    return p ? p + 4 : "";
}

static int
status_of(const char *a)
{
    return a && strncmp(a, "HTTP/1.1 ", 9) == 0 ? atoi(a + 9) : 0;
}

/* Every answer of a file carries the same security headers. */
static int
has_security_headers(const char *a)
{
    char v[512];

    return strcmp(header(a, "Content-Security-Policy", v, sizeof v), OBX_UI_CSP) == 0 &&
           strcmp(header(a, "X-Content-Type-Options", v, sizeof v), "nosniff") == 0 &&
           strcmp(header(a, "X-Frame-Options", v, sizeof v), "DENY") == 0 &&
           strcmp(header(a, "Referrer-Policy", v, sizeof v), "no-referrer") == 0 &&
           strcmp(header(a, "Cache-Control", v, sizeof v), "no-cache") == 0;
}

/* The embedded table: index.html and the assets, each with a type, a quoted ETag, a gzip copy. */
static int
test_find(void)
{
    const struct obx_ui_file *page = obx_ui_find("index.html");
    int files = 0;
    TEST_BEGIN;

    CHECK(page != NULL);
    CHECK(strncmp(page->type, "text/html", 9) == 0);
    CHECK(obx_ui_find("assets/app.js") != NULL);
    CHECK(obx_ui_find("assets/app.css") != NULL);
    CHECK(obx_ui_find("nope.html") == NULL);
    CHECK(obx_ui_find("") == NULL);
    CHECK(obx_ui_find("/index.html") == NULL);
    for (const struct obx_ui_file *f = obx_ui_files; f->path; f++, files++) {
        size_t el = strlen(f->etag);
        CHECK(f->len > 0 && f->data && f->gz && f->gzlen > 0);
        CHECK(el > 2 && f->etag[0] == '"' && f->etag[el - 1] == '"');
        CHECK((unsigned char)f->gz[0] == 0x1f && (unsigned char)f->gz[1] == 0x8b);
        CHECK(f->type && f->type[0]);
    }
    CHECK(files >= 3);
end:
    TEST_END;
}

/* An asset, the page, and a deep link (the page again), all with the security headers. */
static int
test_serves_files(void)
{
    struct fixture f = {0};
    const struct obx_ui_file *js = obx_ui_find("assets/app.js");
    const struct obx_ui_file *page = obx_ui_find("index.html");
    char *a = NULL, v[256], len[32];
    TEST_BEGIN;

    CHECK(js && page);
    CHECK_OK(fixture_open(&f));
    a = get(&f, "/ui/assets/app.js", "");
    CHECK(a);
    CHECK_INT(status_of(a), 200);
    CHECK(has_security_headers(a));
    CHECK_STR(header(a, "Content-Type", v, sizeof v), js->type);
    CHECK_STR(header(a, "ETag", v, sizeof v), js->etag);
    CHECK_STR(header(a, "Content-Encoding", v, sizeof v), ""); /* not asked for */
    snprintf(len, sizeof len, "%zu", js->len);
    CHECK_STR(header(a, "Content-Length", v, sizeof v), len);
    CHECK(memcmp(body_of(a), js->data, js->len) == 0);
    free(a);

    for (int i = 0; i < 3; i++) {
        static const char *const paths[] = {"/ui/", "/ui/messages/42", "/ui/index.html"};
        a = get(&f, paths[i], "");
        CHECK(a);
        CHECK_INT(status_of(a), 200);
        CHECK(has_security_headers(a));
        CHECK_STR(header(a, "ETag", v, sizeof v), page->etag);
        CHECK(memcmp(body_of(a), page->data, page->len) == 0);
        free(a);
        a = NULL;
    }
end:
    free(a);
    fixture_close(&f);
    TEST_END;
}

/* If-None-Match naming the ETag (alone, in a list, weak, or "*"): 304 without a body. */
static int
test_etag_304(void)
{
    struct fixture f = {0};
    const struct obx_ui_file *css = obx_ui_find("assets/app.css");
    char *a = NULL, hdr[512], v[256];
    TEST_BEGIN;

    CHECK(css);
    CHECK_OK(fixture_open(&f));
    /* Prefix, then the ETag (unless NULL: "*" alone), then suffix. */
    const char *const match[][2] = {{"", ""}, {"\"other\", ", ""}, {"W/", ", \"b\""}, {"*", NULL}};
    for (int i = 0; i < 4; i++) {
        char inm[256];
        snprintf(inm, sizeof inm, "%s%s%s", match[i][0], match[i][1] ? css->etag : "",
                 match[i][1] ? match[i][1] : "");
        snprintf(hdr, sizeof hdr, "If-None-Match: %s\r\n", inm);
        a = get(&f, "/ui/assets/app.css", hdr);
        CHECK(a);
        CHECK_INT(status_of(a), 304);
        CHECK_STR(header(a, "ETag", v, sizeof v), css->etag);
        CHECK(has_security_headers(a));
        CHECK_STR(body_of(a), "");
        free(a);
        a = NULL;
    }
    /* Another ETag, or ours with something glued on: the file again. */
    const char *const miss[][2] = {{"\"nope\"", NULL}, {"", "x"}, {"x", ""}};
    for (int i = 0; i < 3; i++) {
        char inm[256];
        snprintf(inm, sizeof inm, "%s%s%s", miss[i][0], miss[i][1] ? css->etag : "",
                 miss[i][1] ? miss[i][1] : "");
        snprintf(hdr, sizeof hdr, "If-None-Match: %s\r\n", inm);
        a = get(&f, "/ui/assets/app.css", hdr);
        CHECK(a);
        CHECK_INT(status_of(a), 200);
        CHECK(memcmp(body_of(a), css->data, css->len) == 0);
        free(a);
        a = NULL;
    }
end:
    free(a);
    fixture_close(&f);
    TEST_END;
}

/* gzip when Accept-Encoding lists it with q > 0 and the copy is smaller; identity otherwise. */
static int
test_gzip(void)
{
    struct fixture f = {0};
    const struct obx_ui_file *js = obx_ui_find("assets/app.js");
    char *a = NULL, v[256], len[32];
    TEST_BEGIN;

    CHECK(js);
    CHECK(js->gzlen < js->len); /* the script compresses */
    CHECK_OK(fixture_open(&f));
    const char *const yes[] = {"gzip", "deflate, gzip", "GZIP;q=0.5, br", "x-gzip"};
    for (int i = 0; i < 4; i++) {
        char hdr[128];
        snprintf(hdr, sizeof hdr, "Accept-Encoding: %s\r\n", yes[i]);
        a = get(&f, "/ui/assets/app.js", hdr);
        CHECK(a);
        CHECK_INT(status_of(a), 200);
        CHECK_STR(header(a, "Content-Encoding", v, sizeof v), "gzip");
        CHECK_STR(header(a, "Vary", v, sizeof v), "Accept-Encoding");
        CHECK_STR(header(a, "Content-Type", v, sizeof v), js->type);
        snprintf(len, sizeof len, "%zu", js->gzlen);
        CHECK_STR(header(a, "Content-Length", v, sizeof v), len);
        CHECK(memcmp(body_of(a), js->gz, js->gzlen) == 0);
        free(a);
        a = NULL;
    }
    const char *const no[] = {"gzip;q=0", "deflate, br", "identity"};
    for (int i = 0; i < 3; i++) {
        char hdr[128];
        snprintf(hdr, sizeof hdr, "Accept-Encoding: %s\r\n", no[i]);
        a = get(&f, "/ui/assets/app.js", hdr);
        CHECK(a);
        CHECK_INT(status_of(a), 200);
        CHECK_STR(header(a, "Content-Encoding", v, sizeof v), "");
        snprintf(len, sizeof len, "%zu", js->len);
        CHECK_STR(header(a, "Content-Length", v, sizeof v), len);
        free(a);
        a = NULL;
    }
end:
    free(a);
    fixture_close(&f);
    TEST_END;
}

/* A missing asset is 404 with the JSON error body, not the page. */
static int
test_missing_asset_404(void)
{
    struct fixture f = {0};
    char *a = NULL, v[256];
    TEST_BEGIN;

    CHECK_OK(fixture_open(&f));
    const char *const paths[] = {"/ui/assets/nope.js", "/ui/assets/app.js/x", "/ui/assets/vendor"};
    for (int i = 0; i < 3; i++) {
        a = get(&f, paths[i], "");
        CHECK(a);
        CHECK_INT(status_of(a), 404);
        CHECK(strncmp(header(a, "Content-Type", v, sizeof v), "application/json", 16) == 0);
        CHECK(strstr(body_of(a), "\"not_found\"") != NULL);
        CHECK(strstr(body_of(a), "no such dashboard file") != NULL);
        free(a);
        a = NULL;
    }
end:
    free(a);
    fixture_close(&f);
    TEST_END;
}

static const struct test_case tests[] = {
    {"find", test_find}, {"serves_files", test_serves_files},           {"etag_304", test_etag_304},
    {"gzip", test_gzip}, {"missing_asset_404", test_missing_asset_404}, {NULL, NULL},
};

TEST_MAIN(tests)
