/* json: bounded parsing of untrusted JSON on top of cJSON, and typed getters. */
#include "json.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"

static void
set_error(struct obx_json_error *e, const char *code, const char *message)
{
    if (!e)
        return;
    e->code = code;
    snprintf(e->message, sizeof e->message, "%s", message);
}

/*
 * cJSON decodes "\u0000" into a NUL that silently truncates the string. Find such
 * escapes in the raw text: inside a string, a backslash always consumes the next
 * character, so "\\u0000" (an escaped backslash) is not a match.
 */
static int
has_nul_escape(const char *s, size_t len)
{
    int in_string = 0;

    for (size_t i = 0; i < len; i++) {
        if (!in_string) {
            in_string = s[i] == '"';
            continue;
        }
        if (s[i] == '"') {
            in_string = 0;
        } else if (s[i] == '\\' && i + 1 < len) {
            if (s[i + 1] == 'u' && i + 5 < len && memcmp(s + i + 2, "0000", 4) == 0)
                return 1;
            i++;
        }
    }
    return 0;
}

static int
depth_of(const cJSON *j)
{
    int max = 0;

    for (const cJSON *c = j->child; c; c = c->next) {
        int d = depth_of(c);
        if (d > max)
            max = d;
    }
    return (cJSON_IsArray(j) || cJSON_IsObject(j)) ? max + 1 : 0;
}

enum obx_err
obx_json_parse(const char *data, size_t len, size_t max_bytes, int max_depth, obx_json **out,
               struct obx_json_error *e)
{
    const char *end = NULL;
    cJSON *doc;

    *out = NULL;
    if (len > max_bytes) {
        set_error(e, "too_large", "document exceeds the size limit");
        return OBX_ETOOBIG;
    }
    if (!obx_buf_utf8_valid(data, len)) {
        set_error(e, "invalid_utf8", "document is not valid UTF-8");
        return OBX_EINVAL;
    }
    /* A raw NUL would end cJSON's view of the text early and truncate silently. */
    if (memchr(data, '\0', len) || has_nul_escape(data, len)) {
        set_error(e, "invalid_json", "strings may not contain \\u0000");
        return OBX_EINVAL;
    }
    doc = cJSON_ParseWithLengthOpts(data, len, &end, 0);
    if (!doc) {
        set_error(e, "invalid_json", "malformed JSON");
        return OBX_EINVAL;
    }
    /* Only whitespace may follow the value. */
    while (end && end < data + len && (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t'))
        end++;
    if (end && end < data + len) {
        cJSON_Delete(doc);
        set_error(e, "invalid_json", "trailing data after the JSON value");
        return OBX_EINVAL;
    }
    if (depth_of(doc) > max_depth) {
        cJSON_Delete(doc);
        set_error(e, "too_deep", "document is nested too deeply");
        return OBX_EINVAL;
    }
    *out = doc;
    return OBX_OK;
}

void
obx_json_free(obx_json *doc)
{
    cJSON_Delete(doc);
}

int
obx_json_is_object(const obx_json *j)
{
    return j && cJSON_IsObject(j);
}
int
obx_json_is_array(const obx_json *j)
{
    return j && cJSON_IsArray(j);
}
int
obx_json_is_string(const obx_json *j)
{
    return j && cJSON_IsString(j);
}
int
obx_json_is_null(const obx_json *j)
{
    return j && cJSON_IsNull(j);
}
int
obx_json_is_number(const obx_json *j)
{
    return j && cJSON_IsNumber(j);
}
int
obx_json_is_bool(const obx_json *j)
{
    return j && cJSON_IsBool(j);
}
int
obx_json_is_true(const obx_json *j)
{
    return j && cJSON_IsTrue(j);
}

obx_json *
obx_json_get(const obx_json *obj, const char *name)
{
    return obj ? cJSON_GetObjectItemCaseSensitive(obj, name) : NULL;
}

const char *
obx_json_string(const obx_json *j)
{
    return (j && cJSON_IsString(j)) ? j->valuestring : NULL;
}

double
obx_json_number(const obx_json *j)
{
    return j ? j->valuedouble : 0;
}

obx_json *
obx_json_child(const obx_json *j)
{
    return j ? j->child : NULL;
}

obx_json *
obx_json_next(const obx_json *j)
{
    return j ? j->next : NULL;
}

const char *
obx_json_name(const obx_json *j)
{
    return j ? j->string : NULL;
}

int
obx_json_array_size(const obx_json *j)
{
    return j ? cJSON_GetArraySize(j) : 0;
}
