/*
 * fuzz_jsonl_line: the JSON Lines parser of `outbox enqueue < messages.jsonl`.
 *
 * The input is a stdin stream. It is cut into lines the way getline(3) cuts them in
 * cmd/outbox/cmd_enqueue.c (each line keeps its '\n'; the last one may lack it),
 * blank lines are skipped as only_space() skips them, and each other line goes through
 * what add_line() does: obx_json_parse with the line's bytes under the configuration's
 * default max_body_bytes and max_json_depth, then obx_msg_from_json with channel NULL
 * and max_content_bytes from the defaults. Every document stays alive until the end of
 * the input, as a batch keeps them until it is flushed.
 *
 * Besides ASan, UBSan and LeakSanitizer, these properties are checked (abort() on a
 * violation): an invalid line has an error code and a UTF-8 message (it is printed
 * and, with --json, written into a JSON string); a valid line validates again and
 * its Partoo request body parses back to the same fields.
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

#define MAX_LINES 1000             /* one batch of cmd_enqueue.c */
#define BODY_MAX (8 * 1024 * 1024) /* cap of a rendered Partoo body */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t max_body_bytes;
static int max_json_depth;
static struct obx_msg_limits limits;

static void
oracle_fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_jsonl_line: property violated: %s%s%s\n", what, detail ? ": " : "",
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

/* cmd_enqueue.c only_space(): a line of blanks is skipped, not reported. */
static int
only_space(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return 0;
    return 1;
}

static void
check_accepted(const struct obx_msg *m)
{
    struct obx_field_error fe;
    struct obx_msg back;
    struct obx_buf body;
    obx_json *doc = NULL;

    if (obx_msg_validate(m, &limits, &fe) != OBX_OK)
        oracle_fail("accepted line fails obx_msg_validate", fe.message);
    obx_buf_init(&body, BODY_MAX);
    if (obx_msg_partoo_body(m, &body) != OBX_OK)
        oracle_fail("obx_msg_partoo_body failed", NULL);
    if (obx_json_parse(obx_buf_str(&body), body.len, BODY_MAX, max_json_depth, &doc, NULL) !=
        OBX_OK)
        oracle_fail("Partoo body is not valid JSON", obx_buf_str(&body));
    if (obx_msg_from_json(doc, m->channel_id, &limits, &back, &fe) != OBX_OK)
        oracle_fail("Partoo body does not parse back", fe.message);
    back.priority = m->priority;
    if (!obx_msg_same(m, &back))
        oracle_fail("Partoo body round trip changed a field", obx_buf_str(&body));
    obx_json_free(doc);
    obx_buf_release(&body);
}

/* add_line(): parse, then read the message; a failure is an "invalid" line. */
static obx_json *
add_line(const char *line, size_t len)
{
    struct obx_json_error je;
    struct obx_field_error fe;
    struct obx_msg m;
    obx_json *doc = NULL;
    enum obx_err err;

    memset(&je, 0, sizeof je);
    memset(&fe, 0, sizeof fe);
    err = obx_json_parse(line, len, max_body_bytes, max_json_depth, &doc, &je);
    if (err != OBX_OK) {
        if (doc)
            oracle_fail("obx_json_parse failed but returned a document", NULL);
        fe.code = je.code;
        snprintf(fe.message, sizeof fe.message, "%s", je.message);
    } else if (obx_msg_from_json(doc, NULL, &limits, &m, &fe) == OBX_OK) {
        check_accepted(&m);
        return doc;
    }
    if (!fe.code)
        oracle_fail("invalid line without an error code", NULL);
    if (!obx_buf_utf8_valid(fe.message, strlen(fe.message)))
        oracle_fail("invalid line's message is not valid UTF-8", fe.message);
    return doc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    obx_json *docs[MAX_LINES];
    size_t n = 0;

    while (p < end && n < MAX_LINES) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = (size_t)((nl ? nl + 1 : end) - p); /* getline keeps the newline */
        /* add_line() gets the line in getline's malloc'ed buffer: give ASan an exact
         * allocation so a read past the line is caught, not hidden by the next line. */
        char *line = malloc(len ? len : 1);
        if (!line)
            break;
        memcpy(line, p, len);
        if (!only_space(line, len))
            docs[n++] = add_line(line, len);
        free(line);
        p += len;
    }
    for (size_t i = 0; i < n; i++)
        obx_json_free(docs[i]);
    return 0;
}
