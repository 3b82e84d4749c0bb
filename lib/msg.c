/* msg: message validation and (de)serialisation. */
#include "msg.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct obx_msg_limits
obx_msg_limits_default(void)
{
    struct obx_msg_limits l = {255, 255, 2048, 64 * 1024};
    return l;
}

static enum obx_err __attribute__((format(printf, 4, 5)))
field_error(struct obx_field_error *fe, const char *code, const char *field, const char *fmt, ...)
{
    va_list ap;


    fe->code = code;
    fe->field = field;
    va_start(ap, fmt);
    vsnprintf(fe->message, sizeof fe->message, fmt, ap);
    va_end(ap);
    return OBX_EINVAL;
}

/* A string field: required ones must be non-empty; all must fit and be UTF-8. */
static enum obx_err
check_string(const char *value, const char *field, int required, size_t max,
             struct obx_field_error *fe)
{
    size_t len;

    if (!value)
        return required ? field_error(fe, "missing_field", field, "'%s' is required", field)
                        : OBX_OK;
    len = strlen(value);
    if (required && len == 0)
        return field_error(fe, "invalid_value", field, "'%s' must not be empty", field);
    if (len > max)
        return field_error(fe, "too_long", field, "'%s' is too long", field);
    if (!obx_buf_utf8_valid(value, len))
        return field_error(fe, "invalid_utf8", field, "'%s' is not valid UTF-8", field);
    return OBX_OK;
}

/* Ids are keys and appear in URLs, logs and the audit trail: no control characters. */
static enum obx_err
check_id(const char *value, const char *field, size_t max, struct obx_field_error *fe)
{
    enum obx_err err = check_string(value, field, 1, max, fe);

    assert(err != OBX_OK || value); /* required: check_string() refused NULL */
    for (const unsigned char *p = (const unsigned char *)value; err == OBX_OK && *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            err = field_error(fe, "invalid_value", field,
                              "'%s' must not contain control characters", field);
    return err;
}

enum obx_err
obx_msg_validate(const struct obx_msg *m, const struct obx_msg_limits *lim,
                 struct obx_field_error *fe)
{
    enum obx_err err = check_id(m->channel_id, "channel_id", lim->max_id_bytes, fe);

    /* The channel id is a segment of the request path: a dot segment would be removed by
     * URL normalisation and send the message, with its API key, to another path of
     * Partoo's host. The schema's channel_id_not_dot_segment CHECK says the same. */
    if (err == OBX_OK && m->channel_id &&
        (strcmp(m->channel_id, ".") == 0 || strcmp(m->channel_id, "..") == 0))
        err = field_error(fe, "invalid_value", "channel_id", "'%s' must not be \".\" or \"..\"",
                          "channel_id");

    if (err == OBX_OK)
        err = check_id(m->external_message_id, "external_message_id", lim->max_id_bytes, fe);
    if (err == OBX_OK)
        err = check_id(m->business_id, "business_id", lim->max_id_bytes, fe);
    if (err == OBX_OK)
        err = check_id(m->external_conversation_id, "external_conversation_id", lim->max_id_bytes,
                       fe);
    if (err == OBX_OK)
        err = check_string(m->content, "content", 1, lim->max_content_bytes, fe);
    if (err == OBX_OK)
        err = check_string(m->sender_type, "sender_type", 1, 16, fe);
    assert(err != OBX_OK || m->sender_type); /* required: check_string() refused NULL */
    if (err == OBX_OK && strcmp(m->sender_type, "User") != 0 &&
        strcmp(m->sender_type, "Consumer") != 0)
        err = field_error(fe, "invalid_value", "sender_type",
                          "'%s' must be \"User\" or \"Consumer\"", "sender_type");
    if (err == OBX_OK)
        err = check_string(m->consumer_name, "consumer_name", 0, lim->max_name_bytes, fe);
    if (err == OBX_OK)
        err = check_string(m->consumer_image, "consumer_image", 0, lim->max_image_bytes, fe);
    return err;
}

/* The members a message object may carry, and where each goes in struct obx_msg. */
struct member {
    const char *name;
    size_t offset; /* of the const char * field; unused for priority */
    int optional;  /* may be null */
};

static const struct member members[] = {
    {"channel_id", offsetof(struct obx_msg, channel_id), 0},
    {"external_message_id", offsetof(struct obx_msg, external_message_id), 0},
    {"business_id", offsetof(struct obx_msg, business_id), 0},
    {"external_conversation_id", offsetof(struct obx_msg, external_conversation_id), 0},
    {"content", offsetof(struct obx_msg, content), 0},
    {"sender_type", offsetof(struct obx_msg, sender_type), 0},
    {"consumer_name", offsetof(struct obx_msg, consumer_name), 1},
    {"consumer_image", offsetof(struct obx_msg, consumer_image), 1},
    {"priority", 0, 1},
};
#define N_MEMBERS (sizeof members / sizeof members[0])

static enum obx_err
read_priority(const obx_json *v, struct obx_msg *m, struct obx_field_error *fe)
{
    double d;

    if (obx_json_is_null(v))
        return OBX_OK;
    if (!obx_json_is_number(v))
        return field_error(fe, "invalid_type", "priority", "'%s' must be an integer", "priority");
    d = obx_json_number(v);
    if (d != floor(d) || d < -1e15 || d > 1e15)
        return field_error(fe, "invalid_value", "priority", "'%s' must be an integer in range",
                           "priority");
    m->priority = (int64_t)d;
    return OBX_OK;
}

static enum obx_err
read_member(const obx_json *v, const struct member *mb, const char *channel_id, struct obx_msg *m,
            struct obx_field_error *fe)
{
    if (strcmp(mb->name, "priority") == 0)
        return read_priority(v, m, fe);
    if (channel_id && strcmp(mb->name, "channel_id") == 0)
        return field_error(fe, "unknown_field", "channel_id",
                           "'%s' is given by the URL, not the body", "channel_id");
    if (obx_json_is_null(v) && mb->optional)
        return OBX_OK;
    if (!obx_json_is_string(v))
        return field_error(fe, "invalid_type", mb->name, "'%s' must be a string", mb->name);
    *(const char **)((char *)m + mb->offset) = obx_json_string(v);
    return OBX_OK;
}

enum obx_err
obx_msg_from_json(const obx_json *obj, const char *channel_id, const struct obx_msg_limits *lim,
                  struct obx_msg *out, struct obx_field_error *fe)
{
    struct obx_msg m = {0};
    unsigned seen = 0;
    enum obx_err err = OBX_OK;

    memset(out, 0, sizeof *out);
    if (!obx_json_is_object(obj))
        return field_error(fe, "invalid_type", NULL, "a message must be a JSON %s", "object");
    for (obx_json *v = obx_json_child(obj); v && err == OBX_OK; v = obx_json_next(v)) {
        size_t i;
        for (i = 0; i < N_MEMBERS; i++)
            if (strcmp(obx_json_name(v), members[i].name) == 0)
                break;
        if (i == N_MEMBERS)
            /* The name is not one of ours; it may be anything, so it is not echoed as field,
             * and it is cut at a character boundary to keep the message valid UTF-8. */
            return field_error(fe, "unknown_field", NULL, "unknown field '%.*s'",
                               (int)obx_buf_utf8_prefix(obx_json_name(v), 64), obx_json_name(v));
        if (seen & (1u << i))
            return field_error(fe, "duplicate_field", members[i].name, "'%s' appears twice",
                               members[i].name);
        seen |= 1u << i;
        err = read_member(v, &members[i], channel_id, &m, fe);
    }
    if (err != OBX_OK)
        return err;
    if (channel_id)
        m.channel_id = channel_id;
    err = obx_msg_validate(&m, lim, fe);
    if (err == OBX_OK)
        *out = m;
    return err;
}

static enum obx_err
put_field(struct obx_buf *b, const char *name, const char *value, int first)
{
    enum obx_err err = obx_buf_printf(b, "%s\"%s\":", first ? "" : ",", name);

    if (err == OBX_OK)
        err = obx_buf_json_str(b, value);
    return err;
}

/* A JSON string literal of s takes at most 6 bytes per input byte (a control character
 * becomes \u00XX; an invalid byte becomes the 3-byte U+FFFD) plus its two quotes. */
static size_t
json_str_max(const char *s)
{
    return s ? 6 * strlen(s) + 2 : 0;
}

size_t
obx_msg_partoo_body_max(const struct obx_msg *m)
{
    /* Braces, commas, colons and the quoted member names of obx_msg_partoo_body(). */
    size_t n = 256;

    n += json_str_max(m->business_id) + json_str_max(m->external_conversation_id);
    n += json_str_max(m->external_message_id) + json_str_max(m->content);
    n += json_str_max(m->sender_type) + json_str_max(m->consumer_name);
    n += json_str_max(m->consumer_image);
    return n;
}

enum obx_err
obx_msg_partoo_body(const struct obx_msg *m, struct obx_buf *b)
{
    enum obx_err err = obx_buf_puts(b, "{");

    if (err == OBX_OK)
        err = put_field(b, "business_id", m->business_id, 1);
    if (err == OBX_OK)
        err = put_field(b, "external_conversation_id", m->external_conversation_id, 0);
    if (err == OBX_OK)
        err = put_field(b, "external_message_id", m->external_message_id, 0);
    if (err == OBX_OK)
        err = put_field(b, "content", m->content, 0);
    if (err == OBX_OK)
        err = put_field(b, "sender_type", m->sender_type, 0);
    if (err == OBX_OK && m->consumer_name)
        err = put_field(b, "consumer_name", m->consumer_name, 0);
    if (err == OBX_OK && m->consumer_image)
        err = put_field(b, "consumer_image", m->consumer_image, 0);
    if (err == OBX_OK)
        err = obx_buf_puts(b, "}");
    return err;
}

static int
str_eq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

int
obx_msg_same(const struct obx_msg *a, const struct obx_msg *b)
{
    return str_eq(a->channel_id, b->channel_id) &&
           str_eq(a->external_message_id, b->external_message_id) &&
           str_eq(a->business_id, b->business_id) &&
           str_eq(a->external_conversation_id, b->external_conversation_id) &&
           str_eq(a->content, b->content) && str_eq(a->sender_type, b->sender_type) &&
           str_eq(a->consumer_name, b->consumer_name) &&
           str_eq(a->consumer_image, b->consumer_image) && a->priority == b->priority;
}

int
obx_msg_partoo_id_valid(const char *id)
{
    size_t n = 0;

    if (!id)
        return 0;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++, n++)
        if (n >= OBX_PARTOO_ID_MAX || !((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                                        (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
            return 0;
    return n > 0;
}
