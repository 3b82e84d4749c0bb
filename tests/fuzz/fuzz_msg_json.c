/*
 * fuzz_msg_json: the producer API's message parser (lib/json.c + lib/msg.c).
 *
 * The input is one POST /v1/messages body, read the way lib/api.c reads it:
 * obx_json_parse under the default limits (max_body_bytes, max_json_depth), then
 * either one message object or the items of a {"messages":[...]} batch, each through
 * obx_msg_from_json with no channel from the URL and max_content_bytes from the
 * configuration defaults.
 *
 * Besides ASan, UBSan and LeakSanitizer, these properties are checked; a violation
 * abort()s, so libFuzzer keeps the input as a crash:
 *   - a refused document or message comes with a code, and its message is valid
 *     UTF-8 (the API puts it in a JSON 400 body, which must be UTF-8, RFC 8259 §8.1);
 *   - an accepted message validates again, equals itself (obx_msg_same), and its
 *     Partoo request body (obx_msg_partoo_body) parses back to the same fields;
 *   - an accepted channel_id is never a dot segment ("." or ".."), which URL
 *     normalisation would remove from the request path (issue 19 finding 4);
 *   - the Partoo body always fits obx_msg_partoo_body_max(), the size worker.c gives
 *     its buffer (issue 19 finding 1).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "config.h"
#include "json.h"
#include "log.h"
#include "msg.h"

#define MAX_BATCH 1000             /* items of a batch, as lib/api.c allows */
#define BODY_MAX (8 * 1024 * 1024) /* cap of a rendered Partoo body: far above any valid one */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t max_body_bytes;
static int max_json_depth;
static struct obx_msg_limits limits;

static void
oracle_fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_msg_json: property violated: %s%s%s\n", what, detail ? ": " : "",
            detail ? detail : "");
    abort();
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct obx_config cfg;

    (void)argc;
    (void)argv;
    obx_log_setup(OBX_LOG_OFF, OBX_LOG_TEXT, NULL);
    if (obx_config_init(&cfg) != OBX_OK)
        oracle_fail("obx_config_init failed", NULL);
    max_body_bytes = (size_t)cfg.max_body_bytes;
    max_json_depth = (int)cfg.max_json_depth;
    limits = obx_msg_limits_default();
    limits.max_content_bytes = (size_t)cfg.max_content_bytes;
    obx_config_release(&cfg);
    return 0;
}

/* A refusal must say why, in UTF-8. */
static void
check_field_error(const struct obx_field_error *fe)
{
    if (!fe->code)
        oracle_fail("refused message without an error code", NULL);
    if (memchr(fe->message, '\0', sizeof fe->message) == NULL)
        oracle_fail("field error message not NUL-terminated", NULL);
    if (!obx_buf_utf8_valid(fe->message, strlen(fe->message)))
        oracle_fail("field error message is not valid UTF-8", fe->message);
}

/* An accepted message survives validation and the Partoo body round trip. */
static void
check_accepted(const struct obx_msg *m)
{
    struct obx_field_error fe;
    struct obx_msg back;
    struct obx_buf body;
    obx_json *doc = NULL;

    if (obx_msg_validate(m, &limits, &fe) != OBX_OK)
        oracle_fail("accepted message fails obx_msg_validate", fe.message);
    if (!obx_msg_same(m, m))
        oracle_fail("obx_msg_same(m, m) is 0", NULL);
    if (strcmp(m->channel_id, ".") == 0 || strcmp(m->channel_id, "..") == 0)
        oracle_fail("accepted a dot-segment channel_id", m->channel_id);
    obx_buf_init(&body, obx_msg_partoo_body_max(m));
    if (obx_msg_partoo_body(m, &body) != OBX_OK)
        oracle_fail("obx_msg_partoo_body failed within obx_msg_partoo_body_max", NULL);
    if (obx_json_parse(obx_buf_str(&body), body.len, BODY_MAX, max_json_depth, &doc, NULL) !=
        OBX_OK)
        oracle_fail("Partoo body is not valid JSON", obx_buf_str(&body));
    /* The Partoo body has no channel_id or priority: take them from the original. */
    if (obx_msg_from_json(doc, m->channel_id, &limits, &back, &fe) != OBX_OK)
        oracle_fail("Partoo body does not parse back", fe.message);
    back.priority = m->priority;
    if (!obx_msg_same(m, &back))
        oracle_fail("Partoo body round trip changed a field", obx_buf_str(&body));
    obx_json_free(doc);
    obx_buf_release(&body);
}

static void
one_message(const obx_json *obj)
{
    struct obx_field_error fe;
    struct obx_msg m;

    memset(&fe, 0, sizeof fe);
    if (obx_msg_from_json(obj, NULL, &limits, &m, &fe) == OBX_OK)
        check_accepted(&m);
    else
        check_field_error(&fe);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct obx_json_error je;
    obx_json *doc = NULL;
    const obx_json *list;

    memset(&je, 0, sizeof je);
    if (obx_json_parse((const char *)data, size, max_body_bytes, max_json_depth, &doc, &je) !=
        OBX_OK) {
        if (doc)
            oracle_fail("obx_json_parse failed but returned a document", NULL);
        if (!je.code || !obx_buf_utf8_valid(je.message, strlen(je.message)))
            oracle_fail("JSON error without a code or with a non-UTF-8 message", je.message);
        return 0;
    }
    list = obx_json_get(doc, "messages");
    if (obx_json_is_object(doc) && obx_json_is_array(list) &&
        obx_json_array_size(list) <= MAX_BATCH) {
        for (const obx_json *it = obx_json_child(list); it; it = obx_json_next(it))
            one_message(it);
    } else {
        one_message(doc);
    }
    obx_json_free(doc);
    return 0;
}
