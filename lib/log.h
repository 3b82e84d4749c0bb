/*
 * log: one line per event, as key=value text or JSON, on stderr (or a FILE the
 * daemon chooses). The level check happens in the macro, so a disabled level
 * costs no formatting.
 *
 * Each .c file that logs defines OBX_MODULE ("worker", "store", ...) before
 * including this header; it becomes the mod= key.
 *
 *   obx_log(OBX_LOG_INFO, "message accepted",
 *           OBX_KS("channel_id", ch), OBX_KI("attempt", n));
 *
 * Secrets (API key, tokens) must never be passed here; nothing redacts them.
 */
#ifndef OBX_LOG_H
#define OBX_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum obx_log_level { OBX_LOG_DEBUG = 0, OBX_LOG_INFO, OBX_LOG_WARN, OBX_LOG_ERROR, OBX_LOG_OFF };
enum obx_log_format { OBX_LOG_TEXT = 0, OBX_LOG_JSON };

/* One key and a string or integer value. Use the OBX_KS / OBX_KI constructors. */
struct obx_kv {
    const char *key;
    const char *str; /* used when is_num == 0; NULL prints as null */
    int64_t num;
    int is_num;
};

#define OBX_KS(k, v) ((struct obx_kv){(k), (v), 0, 0})
#define OBX_KI(k, v) ((struct obx_kv){(k), NULL, (int64_t)(v), 1})

/*
 * The log sink and its threshold: the only process-wide mutable state (see STYLE.md).
 * Atomic: serve's store thread logs while a reload on the loop may change them.
 */
extern _Atomic enum obx_log_level obx_log_threshold;

/* Sets level, format and sink (NULL: stderr). Safe to call again on reload. */
void obx_log_setup(enum obx_log_level level, enum obx_log_format format, FILE *sink);

/* Parses "debug|info|warn|error" / "text|json"; returns -1 when unknown. */
int obx_log_level_parse(const char *s);
int obx_log_format_parse(const char *s);

/* Writes one line. Prefer the macros, which skip disabled levels cheaply. */
void obx_log_write(enum obx_log_level level, const char *module, const char *msg,
                   const struct obx_kv *kv, size_t nkv);
void obx_log_writef(enum obx_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define obx_log(level, msg, ...)                                                 \
    do {                                                                         \
        if ((level) >= obx_log_threshold) {                                      \
            const struct obx_kv obx_kv_[] = {{NULL, NULL, 0, 0}, ##__VA_ARGS__}; \
            obx_log_write((level), OBX_MODULE, (msg), obx_kv_ + 1,               \
                          sizeof(obx_kv_) / sizeof(obx_kv_[0]) - 1);             \
        }                                                                        \
    } while (0)

#define obx_logf(level, ...)                                  \
    do {                                                      \
        if ((level) >= obx_log_threshold)                     \
            obx_log_writef((level), OBX_MODULE, __VA_ARGS__); \
    } while (0)

#endif
