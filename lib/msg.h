/*
 * msg: validation of struct obx_msg against SPEC §10's limits, conversion from a
 * JSON object (producer API, JSON Lines) and to Partoo's request body.
 */
#ifndef OBX_MSG_H
#define OBX_MSG_H

#include "buf.h"
#include "json.h"
#include "outbox.h"

/* Limits (SPEC §10). obx_msg_limits_default() gives the documented defaults. */
struct obx_msg_limits {
    size_t max_id_bytes;      /* channel, message, conversation and business ids: 255 */
    size_t max_name_bytes;    /* consumer_name: 255 */
    size_t max_image_bytes;   /* consumer_image: 2048 */
    size_t max_content_bytes; /* content: 64 KiB (max_content_bytes) */
};

struct obx_msg_limits obx_msg_limits_default(void);

/* The first problem found, for a 400 body or a CLI line. field is a static string. */
struct obx_field_error {
    const char *code;  /* "missing_field", "invalid_type", "invalid_value", "too_long",
                          "invalid_utf8", "unknown_field", "duplicate_field" */
    const char *field; /* e.g. "sender_type"; NULL for the whole object */
    char message[160];
};

/* Checks every field of m. Returns OBX_OK or OBX_EINVAL with *fe filled. */
OBX_MUST_CHECK enum obx_err obx_msg_validate(const struct obx_msg *m,
                                             const struct obx_msg_limits *lim,
                                             struct obx_field_error *fe /* OUT */);

/*
 * Reads a message object: Partoo's field names plus channel_id and priority.
 * When channel_id is non-NULL it is used and a "channel_id" member is refused.
 * Unknown or repeated members, wrong types and nulls for required fields are
 * errors. Strings in *out are borrowed from obj (valid while the document lives).
 * The result is also validated (obx_msg_validate).
 */
OBX_MUST_CHECK enum obx_err obx_msg_from_json(const obx_json *obj, const char *channel_id,
                                              const struct obx_msg_limits *lim,
                                              struct obx_msg *out /* OUT */,
                                              struct obx_field_error *fe /* OUT */);

/* Appends Partoo's request body for m to b: exactly the Partoo fields, nulls omitted. */
OBX_MUST_CHECK enum obx_err obx_msg_partoo_body(const struct obx_msg *m, struct obx_buf *b);

/*
 * The most bytes obx_msg_partoo_body() can append for m, whatever its fields hold (JSON
 * escaping grows a control character 6 times). A buffer of this max never refuses the body.
 */
size_t obx_msg_partoo_body_max(const struct obx_msg *m);

/* Longest Partoo message id accepted where it becomes a header (inbox relay). */
#define OBX_PARTOO_ID_MAX 128

/*
 * 1 when id (a Partoo message id from a webhook) is 1..OBX_PARTOO_ID_MAX bytes of
 * [A-Za-z0-9_-]: safe to put into the relay's Idempotency-Key header (no CR/LF, no
 * truncation). Partoo's ids are integers today; this leaves room for UUIDs and the like.
 */
int obx_msg_partoo_id_valid(const char *id);

/* 1 when the Partoo-visible fields and priority of a and b are equal (dedup rule). */
int obx_msg_same(const struct obx_msg *a, const struct obx_msg *b);

#endif
