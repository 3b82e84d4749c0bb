/* log: levelled key=value / JSON line logger. */
#include "log.h"

#include <stdarg.h>
#include <string.h>

#include "buf.h"
#include "clock.h"

_Atomic enum obx_log_level obx_log_threshold = OBX_LOG_INFO;
static _Atomic enum obx_log_format log_format = OBX_LOG_TEXT;
static _Atomic(FILE *) log_sink;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void
obx_log_setup(enum obx_log_level level, enum obx_log_format format, FILE *sink)
{
    obx_log_threshold = level;
    log_format = format;
    log_sink = sink;
}

int
obx_log_level_parse(const char *s)
{
    for (int i = 0; i <= OBX_LOG_OFF; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

int
obx_log_format_parse(const char *s)
{
    if (strcmp(s, "text") == 0)
        return OBX_LOG_TEXT;
    if (strcmp(s, "json") == 0)
        return OBX_LOG_JSON;
    return -1;
}

/* A text value needs quotes when it is empty or holds a space, a quote, '=' or a control byte. */
static int
needs_quotes(const char *s)
{
    if (!*s)
        return 1;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == '"' || *s == '=')
            return 1;
    return 0;
}

static enum obx_err
put_text_value(struct obx_buf *b, const char *s)
{
    if (!s)
        return obx_buf_puts(b, "null");
    return needs_quotes(s) ? obx_buf_json_str(b, s) : obx_buf_puts(b, s);
}

static enum obx_err
format_text(struct obx_buf *b, const char *ts, enum obx_log_level level, const char *module,
            const char *msg, const struct obx_kv *kv, size_t nkv)
{
    enum obx_err err = obx_buf_printf(b, "ts=%s level=%s mod=%s msg=", ts, level_names[level],
                                      module);

    if (err == OBX_OK)
        err = put_text_value(b, msg);
    for (size_t i = 0; err == OBX_OK && i < nkv; i++) {
        err = obx_buf_printf(b, " %s=", kv[i].key);
        if (err != OBX_OK)
            break;
        if (kv[i].is_num)
            err = obx_buf_printf(b, "%lld", (long long)kv[i].num);
        else
            err = put_text_value(b, kv[i].str);
    }
    return err;
}

static enum obx_err
format_json(struct obx_buf *b, const char *ts, enum obx_log_level level, const char *module,
            const char *msg, const struct obx_kv *kv, size_t nkv)
{
    enum obx_err err = obx_buf_printf(b,
                                      "{\"ts\":\"%s\",\"level\":\"%s\",\"mod\":\"%s\",\"msg\":", ts,
                                      level_names[level], module);

    if (err == OBX_OK)
        err = obx_buf_json_str(b, msg);
    for (size_t i = 0; err == OBX_OK && i < nkv; i++) {
        err = obx_buf_printf(b, ",\"%s\":", kv[i].key);
        if (err != OBX_OK)
            break;
        if (kv[i].is_num)
            err = obx_buf_printf(b, "%lld", (long long)kv[i].num);
        else if (!kv[i].str)
            err = obx_buf_puts(b, "null");
        else
            err = obx_buf_json_str(b, kv[i].str);
    }
    if (err == OBX_OK)
        err = obx_buf_puts(b, "}");
    return err;
}

void
obx_log_write(enum obx_log_level level, const char *module, const char *msg,
              const struct obx_kv *kv, size_t nkv)
{
    struct obx_buf b;
    char ts[32];
    enum obx_err err;

    if (level < obx_log_threshold || level >= OBX_LOG_OFF)
        return;
    obx_clock_format_ms(obx_now_ms(obx_clock_real()), ts, sizeof ts);
    obx_buf_init(&b, 64 * 1024);
    if (log_format == OBX_LOG_JSON)
        err = format_json(&b, ts, level, module, msg, kv, nkv);
    else
        err = format_text(&b, ts, level, module, msg, kv, nkv);
    if (err == OBX_OK)
        err = obx_buf_puts(&b, "\n");
    if (err == OBX_OK) {
        /* One fwrite per line so concurrent writers never interleave inside a line. */
        FILE *f = log_sink ? log_sink : stderr;
        fwrite(b.data, 1, b.len, f);
        fflush(f);
    }
    obx_buf_release(&b);
}

void
obx_log_writef(enum obx_log_level level, const char *module, const char *fmt, ...)
{
    struct obx_buf b;
    va_list ap;

    obx_buf_init(&b, 16 * 1024);
    va_start(ap, fmt);
    if (obx_buf_vprintf(&b, fmt, ap) == OBX_OK)
        obx_log_write(level, module, obx_buf_str(&b), NULL, 0);
    va_end(ap);
    obx_buf_release(&b);
}
