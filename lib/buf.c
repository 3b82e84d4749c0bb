/* buf: capped, NUL-terminated growable buffer. See buf.h for the invariants. */
#include "buf.h"

#include <stdint.h>
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

size_t
obx_buf_utf8_char_len(const unsigned char *p, size_t avail)
{
    size_t n;
    uint32_t cp;

    if (!avail)
        return 0;
    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 1;
        cp = p[0] & 0x1f;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 2;
        cp = p[0] & 0x0f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 3;
        cp = p[0] & 0x07;
    } else {
        return 0;
    }
    if (avail <= n)
        return 0;
    for (size_t i = 1; i <= n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n + 1;
}

size_t
obx_buf_utf8_prefix(const char *s, size_t max)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s), at = 0;

    while (at < len) {
        size_t n = obx_buf_utf8_char_len(p + at, len - at);
        if (!n)
            n = 1; /* an invalid byte counts alone */
        if (at + n > max)
            break;
        at += n;
    }
    return at;
}

int
obx_buf_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;

    for (size_t at = 0; at < len;) {
        size_t n;
        /* Most text is ASCII: step over it without decoding. */
        if (p[at] < 0x80) {
            at++;
            continue;
        }
        n = obx_buf_utf8_char_len(p + at, len - at);
        if (!n)
            return 0;
        at += n;
    }
    return 1;
}

static enum obx_err
json_escape_byte(struct obx_buf *b, unsigned char c)
{
    switch (c) {
    case '"': return obx_buf_append(b, "\\\"", 2);
    case '\\': return obx_buf_append(b, "\\\\", 2);
    case '\n': return obx_buf_append(b, "\\n", 2);
    case '\r': return obx_buf_append(b, "\\r", 2);
    case '\t': return obx_buf_append(b, "\\t", 2);
    default: return obx_buf_printf(b, "\\u%04x", c);
    }
}

enum obx_err
obx_buf_json_str(struct obx_buf *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s), at = 0, run = 0;
    enum obx_err err = reserve(b, len + 2);

    if (err == OBX_OK)
        err = obx_buf_append(b, "\"", 1);
    /* Characters that need nothing are copied in runs: one append per run, not per byte
     * (the audit sealer quotes every event's record through here). */
    while (err == OBX_OK && at < len) {
        size_t n = obx_buf_utf8_char_len(p + at, len - at);
        if (n > 1 || (n == 1 && p[at] >= 0x20 && p[at] != '"' && p[at] != '\\')) {
            at += n;
            continue;
        }
        err = obx_buf_append(b, p + run, at - run);
        if (err == OBX_OK && n == 1)
            err = json_escape_byte(b, p[at]);
        else if (err == OBX_OK)
            err = obx_buf_append(b, "\xef\xbf\xbd", 3); /* U+FFFD for an invalid byte */
        at += 1;
        run = at;
    }
    if (err == OBX_OK)
        err = obx_buf_append(b, p + run, at - run);
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
