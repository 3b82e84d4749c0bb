/*
 * buf: the one growable byte buffer of the project.
 *
 * Invariants (fields are private: use the API):
 *   - data is always NUL-terminated once anything was appended; len excludes the NUL;
 *   - len never exceeds max: an append that would is refused whole with OBX_ETOOBIG;
 *   - after obx_buf_take() the buffer is empty and may be reused.
 */
#ifndef OBX_BUF_H
#define OBX_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "outbox.h"

struct obx_buf {
    char *data; /* NULL until the first append */
    size_t len; /* bytes used, excluding the NUL */
    size_t cap; /* bytes allocated */
    size_t max; /* hard cap on len */
};

/* Initialises an empty buffer that refuses to grow past max bytes. */
void obx_buf_init(struct obx_buf *b, size_t max);
/* Frees the bytes; the buffer is empty and reusable. NULL is a no-op. */
void obx_buf_release(struct obx_buf *b);
/* Empties the buffer, keeping its allocation. */
void obx_buf_reset(struct obx_buf *b);

OBX_MUST_CHECK enum obx_err obx_buf_append(struct obx_buf *b, const void *p, size_t n);
OBX_MUST_CHECK enum obx_err obx_buf_puts(struct obx_buf *b, const char *s);
OBX_MUST_CHECK enum obx_err obx_buf_printf(struct obx_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
OBX_MUST_CHECK enum obx_err obx_buf_vprintf(struct obx_buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/*
 * Appends s as a JSON string literal, quotes included: escapes ", \, control
 * characters (\n \r \t, others as \u00XX), and replaces bytes that are not valid
 * UTF-8 with U+FFFD, so the output is always valid JSON even for rows written by
 * plain SQL.
 */
OBX_MUST_CHECK enum obx_err obx_buf_json_str(struct obx_buf *b, const char *s);

/*
 * Length of the UTF-8 character at p (1..4) given avail bytes, or 0 when the bytes
 * there are not a valid, shortest-form, non-surrogate character.
 */
size_t obx_buf_utf8_char_len(const unsigned char *p, size_t avail);

/* The largest length <= max that does not cut s inside a character. */
size_t obx_buf_utf8_prefix(const char *s, size_t max);

/* 1 when bytes [s, s+len) are valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
int obx_buf_utf8_valid(const char *s, size_t len);

/* Returns the contents ("" when empty); borrowed, valid until the next append. */
const char *obx_buf_str(const struct obx_buf *b);

/*
 * Moves the bytes out: returns a NUL-terminated string the caller owns (free with
 * obx_free()), or NULL on allocation failure. The buffer is left empty.
 */
char *obx_buf_take(struct obx_buf *b);

#endif
