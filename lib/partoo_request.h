/*
 * partoo_request: the one place that builds Partoo's ingest request,
 *
 *   POST <partoo_base_url>/custom-channels/<channel_id, percent-encoded>/messages
 *   x-APIKey: <key>
 *   Content-Type: application/json
 *   <the message's Partoo fields (obx_msg_partoo_body), or {} for a probe>
 *
 * for both the worker (every delivery) and `outbox doctor --check-api-key` (one probe),
 * so the URL, the headers and the handling of the key cannot drift apart. The key is
 * copied once into an exactly sized buffer (no realloc leaves a copy behind) and wiped
 * with explicit_bzero, which the compiler may not drop as it may a memset before free,
 * as soon as libcurl holds its own copy (obx_partoo_request_post) and again on release.
 *
 * Everything here runs on the caller's thread; nothing is shared.
 */
#ifndef OBX_PARTOO_REQUEST_H
#define OBX_PARTOO_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "http_client.h"
#include "msg.h"
#include "outbox.h"

#define OBX_PARTOO_REQUEST_NHEADERS 3

/*
 * A built request. Callers may read url, body, body_len and headers until
 * obx_partoo_request_release(); every other field is private: use the API.
 */
struct obx_partoo_request {
    const char *url;  /* NUL-terminated; borrowed from the request */
    const char *body; /* JSON, NUL-terminated; borrowed from the request */
    size_t body_len;
    const char *headers[OBX_PARTOO_REQUEST_NHEADERS]; /* "Name: value"; [0] holds the key */

    struct obx_buf url_buf;
    struct obx_buf body_buf;
    char *key_header;      /* "x-APIKey: <key>", exactly sized; secret */
    size_t key_header_len; /* strlen(key_header), kept for the wipe */
};

/*
 * Builds the request for msg on channel_id (msg NULL: the body is {}, which Partoo
 * refuses after checking the key: the doctor's probe). base_url may end in '/'.
 * api_key NULL is sent as an empty key. Everything is copied. Returns OBX_OK,
 * OBX_ENOMEM, or the error of obx_msg_partoo_body (OBX_ETOOBIG/OBX_EINVAL: this message
 * can never be sent). r can be released whatever the result.
 */
OBX_MUST_CHECK enum obx_err obx_partoo_request_init(struct obx_partoo_request *r,
                                                    const char *base_url, const char *api_key,
                                                    const char *channel_id,
                                                    const struct obx_msg *msg);

/*
 * Starts the request on h (see obx_http_client_post, which copies everything), then wipes
 * the key: from here on only libcurl's copy holds it. done(ctx, result) runs once,
 * from h's loop, unless h is freed first. Loop thread of h.
 */
OBX_MUST_CHECK enum obx_err obx_partoo_request_post(struct obx_partoo_request *r,
                                                    struct obx_http *h, obx_http_done_fn done,
                                                    void *ctx);

/* Overwrites the key with zero bytes (explicit_bzero); headers[0] then reads "". */
void obx_partoo_request_wipe_key(struct obx_partoo_request *r);

/* Wipes the key and frees everything. Safe on a request whose init failed. */
void obx_partoo_request_release(struct obx_partoo_request *r);

/*
 * Sends one probe (msg NULL above) to channel_id and waits for the answer, on a loop of
 * its own: for a command-line tool, never for serve's loop. *status gets the HTTP status
 * (0 when no answer; then error, errsz bytes, says why). Returns OBX_OK when an answer or
 * a transport error came back, OBX_ENOMEM/OBX_EIO when the request could not be made.
 * Calls curl_global_init/cleanup, so only a single-threaded program may call it.
 */
OBX_MUST_CHECK enum obx_err obx_partoo_request_probe(const char *base_url, const char *api_key,
                                                     const char *channel_id,
                                                     const struct obx_http_opts *o,
                                                     int *status /* OUT */, char *error,
                                                     size_t errsz);

#endif
