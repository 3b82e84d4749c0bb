/* buf: capped, NUL-terminated growable buffer. See buf.h for the invariants. */
#include "buf.h"

#include <stdio.h>
#include <string.h>

#include "mem.h"

void
obx_buf_init(struct obx_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void
obx_buf_release(struct obx_buf *b)
{
    if (!b)
        return;
    obx_free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void
obx_buf_reset(struct obx_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

static enum obx_err
reserve(struct obx_buf *b, size_t extra)
{
    size_t need, cap;
    char *p;

    if (extra > b->max - b->len)
        return OBX_ETOOBIG;
    need = b->len + extra + 1;
    if (need <= b->cap)
        return OBX_OK;
    cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    p = obx_realloc(b->data, cap);
    if (!p)
        return OBX_ENOMEM;
    b->data = p;
    b->cap = cap;
    return OBX_OK;
}

enum obx_err
obx_buf_append(struct obx_buf *b, const void *p, size_t n)
{
    enum obx_err err = reserve(b, n);

    if (err != OBX_OK)
        return err;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return OBX_OK;
}

enum obx_err
obx_buf_puts(struct obx_buf *b, const char *s)
{
    return obx_buf_append(b, s, strlen(s));
}

enum obx_err
obx_buf_vprintf(struct obx_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    int n;
    enum obx_err err;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return OBX_EINVAL;
    err = reserve(b, (size_t)n);
    if (err != OBX_OK)
        return err;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return OBX_OK;
}

enum obx_err
obx_buf_printf(struct obx_buf *b, const char *fmt, ...)
{
    va_list ap;
    enum obx_err err;

    va_start(ap, fmt);
    err = obx_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return err;
}

enum obx_err
obx_buf_json_str(struct obx_buf *b, const char *s)
{
    enum obx_err err = obx_buf_append(b, "\"", 1);
    const unsigned char *p;

    for (p = (const unsigned char *)s; err == OBX_OK && *p; p++) {
        switch (*p) {
        case '"': err = obx_buf_append(b, "\\\"", 2); break;
        case '\\': err = obx_buf_append(b, "\\\\", 2); break;
        case '\n': err = obx_buf_append(b, "\\n", 2); break;
        case '\r': err = obx_buf_append(b, "\\r", 2); break;
        case '\t': err = obx_buf_append(b, "\\t", 2); break;
        default:
            if (*p < 0x20)
                err = obx_buf_printf(b, "\\u%04x", *p);
            else
                err = obx_buf_append(b, p, 1);
        }
    }
    if (err == OBX_OK)
        err = obx_buf_append(b, "\"", 1);
    return err;
}

const char *
obx_buf_str(const struct obx_buf *b)
{
    return b->data ? b->data : "";
}

char *
obx_buf_take(struct obx_buf *b)
{
    char *p = b->data;

    if (!p)
        p = obx_strdup("");
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}
