/*
 * ui: the dashboard's static files (ui/, embedded at build time by cmake/embed_ui.cmake)
 * served under /ui/ on api_listen (SPEC §13). /ui/assets/<file> answers that file; every
 * other /ui/... path answers the page itself, so deep links reload.
 */
#ifndef OBX_UI_H
#define OBX_UI_H

#include <event2/http.h>
#include <stddef.h>

struct obx_ui_file {
    const char *path; /* relative to ui/, e.g. "assets/app.js" */
    const char *type; /* Content-Type */
    const char *etag; /* quoted strong ETag */
    const char *data;
    size_t len;
    const char *gz; /* the same bytes, gzip-compressed */
    size_t gzlen;
};

/* Terminated by a row whose path is NULL. */
extern const struct obx_ui_file obx_ui_files[];

/* The Content-Security-Policy of every /ui/ answer: nothing inline, nothing from elsewhere. */
#define OBX_UI_CSP                                                                   \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;" \
    " connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none';"     \
    " frame-ancestors 'none'"

/* The file for a path under ui/, or NULL. */
const struct obx_ui_file *obx_ui_find(const char *path);

/*
 * Answers a GET under /ui (seg[0] == "ui", n segments, already decoded): an asset, the
 * page, or 404 for a missing asset. 304 when If-None-Match names the ETag; gzip when the
 * client accepts it.
 */
void obx_ui_serve(struct evhttp_request *req, char **seg, int n);

#endif
