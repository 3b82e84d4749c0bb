/*
 * json: the only user of cJSON. Parses untrusted documents under a size and depth
 * bound after checking that the bytes are valid UTF-8 (cJSON does not), and offers
 * typed getters so other modules never touch cJSON directly.
 *
 * Output JSON is written with obx_buf (obx_buf_json_str): emitting needs no parser.
 */
#ifndef OBX_JSON_H
#define OBX_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "outbox.h"

typedef struct cJSON obx_json; /* borrowed view into a parsed document */

/* Why a document was refused, for a 400/413 with a message. */
struct obx_json_error {
    const char *code; /* "invalid_json", "invalid_utf8", "too_deep", "too_large" */
    char message[128];
};

/*
 * Parses len bytes (need not be NUL-terminated). Refuses: more than max_bytes
 * (OBX_ETOOBIG), invalid UTF-8 or a \u0000 escape (OBX_EINVAL), nesting deeper
 * than max_depth (OBX_EINVAL), trailing garbage (OBX_EINVAL). *out is owned by
 * the caller: free with obx_json_free().
 */
OBX_MUST_CHECK enum obx_err obx_json_parse(const char *data, size_t len, size_t max_bytes,
                                           int max_depth, obx_json **out /* OUT */,
                                           struct obx_json_error *e /* OUT, may be NULL */);
void obx_json_free(obx_json *doc);

int obx_json_is_object(const obx_json *j);
int obx_json_is_array(const obx_json *j);
int obx_json_is_string(const obx_json *j);
int obx_json_is_null(const obx_json *j);
int obx_json_is_number(const obx_json *j);
int obx_json_is_bool(const obx_json *j);
int obx_json_is_true(const obx_json *j);

/* Member of an object by exact (case-sensitive) name, or NULL. Borrowed. */
obx_json *obx_json_get(const obx_json *obj, const char *name);
/* String value or NULL when j is not a string. Borrowed from the document. */
const char *obx_json_string(const obx_json *j);
double obx_json_number(const obx_json *j);
/* Iterates an object's members or an array's items: first child, then next. */
obx_json *obx_json_child(const obx_json *j);
obx_json *obx_json_next(const obx_json *j);
/* Member name while iterating an object. */
const char *obx_json_name(const obx_json *j);
int obx_json_array_size(const obx_json *j);

#endif
