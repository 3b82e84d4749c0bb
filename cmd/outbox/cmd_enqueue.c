/*
 * cmd_enqueue: one message from flags, or JSON Lines on stdin in batches of
 * BATCH lines per transaction. Each line gets its own result; a bad line never
 * costs the good ones.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "json.h"
#include "mem.h"
#include "progress.h"

#define BATCH 5000

static const char usage_text[] =
    "usage: outbox enqueue --channel C --message-id ID --business B --conversation CONV\n"
    "                      --content TEXT --sender User|Consumer [--consumer-name N]\n"
    "                      [--consumer-image URL] [--priority P]\n"
    "       outbox enqueue < messages.jsonl\n\n"
    "With these flags, enqueues one message; all but the bracketed ones are required\n"
    "(a missing one is a usage error). Without any, reads JSON Lines on stdin: one\n"
    "object per line with Partoo's field names plus channel_id and optional priority, e.g.\n"
    "  {\"channel_id\":\"ch\",\"external_message_id\":\"m1\",\"business_id\":\"b\",\n"
    "   \"external_conversation_id\":\"c1\",\"content\":\"Hi\",\"sender_type\":\"Consumer\"}\n"
    "Lines are committed in batches of 5000. Each line is reported as accepted, duplicate\n"
    "(same key, same fields: nothing changes), conflict (same key, other fields) or invalid,\n"
    "with its line number; the exit status is 1 when any line was a conflict or invalid.\n\n" CLI_COMMON_HELP;

struct tally {
    long accepted, duplicate, conflict, invalid;
};

static const char *
result_name(const struct obx_enq_item *it)
{
    if (it->err == OBX_EINVAL)
        return "invalid";
    if (it->err == OBX_ECONFLICT)
        return "conflict";
    return it->result == OBX_ENQ_DUPLICATE ? "duplicate" : "accepted";
}

/* Prints one line's result: every line with --json, only the non-accepted ones otherwise. */
static void
report(const struct cli *c, long line, const struct obx_enq_item *it, struct tally *t)
{
    const char *r = result_name(it);
    struct obx_buf b;
    enum obx_err err;

    t->accepted += strcmp(r, "accepted") == 0;
    t->duplicate += strcmp(r, "duplicate") == 0;
    t->conflict += strcmp(r, "conflict") == 0;
    t->invalid += strcmp(r, "invalid") == 0;
    if (!c->json) {
        if (it->err == OBX_EINVAL)
            printf("line %ld: invalid: %s%s%s\n", line, it->fe.field ? it->fe.field : "",
                   it->fe.field ? ": " : "", it->fe.message);
        else if (strcmp(r, "accepted") != 0)
            printf("line %ld: %s: %s/%s (id %lld, %s)\n", line, r, it->msg.channel_id,
                   it->msg.external_message_id, (long long)it->id, it->state);
        return;
    }
    obx_buf_init(&b, 4096);
    err = obx_buf_printf(&b, "{\"line\":%ld,\"result\":\"%s\"", line, r);
    if (err == OBX_OK && it->id)
        err = obx_buf_printf(&b, ",\"id\":%lld,\"state\":\"%s\"", (long long)it->id, it->state);
    if (err == OBX_OK && it->err == OBX_EINVAL) {
        err = obx_buf_printf(&b, ",\"error\":{\"code\":\"%s\",\"field\":", it->fe.code);
        if (err == OBX_OK)
            err = it->fe.field ? obx_buf_json_str(&b, it->fe.field) : obx_buf_puts(&b, "null");
        if (err == OBX_OK)
            err = obx_buf_puts(&b, ",\"message\":");
        if (err == OBX_OK)
            err = obx_buf_json_str(&b, it->fe.message);
        if (err == OBX_OK)
            err = obx_buf_puts(&b, "}");
    }
    if (err == OBX_OK)
        err = obx_buf_puts(&b, "}\n");
    if (err == OBX_OK)
        fputs(obx_buf_str(&b), stdout);
    obx_buf_release(&b);
}

/* A batch of parsed lines; the documents own the strings the items borrow. */
struct batch {
    struct obx_enq_item items[BATCH];
    obx_json *docs[BATCH];
    long lines[BATCH];
    int parse_failed[BATCH];
    int n;
};

static void
batch_clear(struct batch *b)
{
    for (int i = 0; i < b->n; i++)
        obx_json_free(b->docs[i]);
    b->n = 0;
}

/* Commits a batch, reports each line, and empties it. Returns 0, or -1 on a store error. */
static int
flush(struct cli *c, struct obx_store *st, struct batch *b, const struct obx_msg_limits *lim,
      struct tally *t)
{
    struct obx_enq_item valid[BATCH];
    int idx[BATCH], nvalid = 0;
    enum obx_err err;

    for (int i = 0; i < b->n; i++)
        if (!b->parse_failed[i]) {
            idx[nvalid] = i;
            valid[nvalid++] = b->items[i];
        }
    err = obx_store_enqueue_batch(st, valid, (size_t)nvalid, lim);
    if (err != OBX_OK) {
        cli_error(c, "cannot commit lines %ld-%ld: %s; earlier lines are committed", b->lines[0],
                  b->lines[b->n - 1], obx_strerror(err));
        batch_clear(b);
        return -1;
    }
    for (int i = 0; i < nvalid; i++)
        b->items[idx[i]] = valid[i];
    for (int i = 0; i < b->n; i++)
        report(c, b->lines[i], &b->items[i], t);
    batch_clear(b);
    return 0;
}

/* Parses one line into the next batch slot; a bad line is kept as "invalid". */
static void
add_line(struct cli *c, struct batch *b, const char *line, size_t len, long lineno,
         const struct obx_msg_limits *lim)
{
    struct obx_enq_item *it = &b->items[b->n];
    struct obx_json_error je;
    enum obx_err err;

    memset(it, 0, sizeof *it);
    b->docs[b->n] = NULL;
    b->lines[b->n] = lineno;
    b->parse_failed[b->n] = 0;
    err = obx_json_parse(line, len, (size_t)c->cfg.max_body_bytes, (int)c->cfg.max_json_depth,
                         &b->docs[b->n], &je);
    if (err == OBX_OK)
        err = obx_msg_from_json(b->docs[b->n], NULL, lim, &it->msg, &it->fe);
    else {
        it->fe.code = je.code;
        it->fe.field = NULL;
        snprintf(it->fe.message, sizeof it->fe.message, "%s", je.message);
    }
    if (err != OBX_OK) {
        it->err = OBX_EINVAL;
        b->parse_failed[b->n] = 1;
    }
    b->n++;
}

static int
only_space(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return 0;
    return 1;
}

static int
enqueue_stdin(struct cli *c, struct obx_store *st, const struct obx_msg_limits *lim)
{
    struct batch *b = obx_calloc(1, sizeof *b);
    struct tally t = {0};
    struct progress pr;
    struct stat sb;
    int64_t consumed = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    int failed = 0;

    if (!b)
        return CLI_FAIL;
    /* With a regular file on stdin the total is known: show a bar, else a counter. */
    progress_start(&pr, "enqueue", "bytes",
                   fstat(STDIN_FILENO, &sb) == 0 && S_ISREG(sb.st_mode) ? sb.st_size : 0);
    while (!failed) {
        len = getline(&line, &cap, stdin);
        if (len < 0)
            break;
        consumed += len;
        progress_set(&pr, consumed);
        lineno++;
        if (only_space(line, (size_t)len))
            continue;
        add_line(c, b, line, (size_t)len, lineno, lim);
        if (b->n == BATCH)
            failed = flush(c, st, b, lim, &t) != 0;
    }
    if (!failed && b->n)
        failed = flush(c, st, b, lim, &t) != 0;
    progress_end(&pr);
    batch_clear(b);
    free(line);
    obx_free(b);
    if (!c->json)
        printf("accepted %ld, duplicate %ld, conflict %ld, invalid %ld\n", t.accepted, t.duplicate,
               t.conflict, t.invalid);
    return (failed || t.conflict || t.invalid) ? CLI_FAIL : CLI_OK;
}

static int
enqueue_one(struct cli *c, struct obx_store *st, struct obx_enq_item *it,
            const struct obx_msg_limits *lim)
{
    struct tally t = {0};
    enum obx_err err = obx_store_enqueue_batch(st, it, 1, lim);

    if (err != OBX_OK) {
        cli_error(c, "cannot enqueue: %s", obx_strerror(err));
        return CLI_FAIL;
    }
    if (it->err == OBX_EINVAL) {
        cli_error(c, "invalid %s: %s", it->fe.field ? it->fe.field : "message", it->fe.message);
        return CLI_FAIL;
    }
    if (it->err == OBX_ECONFLICT) {
        cli_error(c, "conflict: message '%s' exists in channel '%s' with different fields",
                  it->msg.external_message_id, it->msg.channel_id);
        return CLI_FAIL;
    }
    if (c->json)
        report(c, 1, it, &t);
    else
        printf("%s id=%lld state=%s\n", result_name(it), (long long)it->id, it->state);
    return CLI_OK;
}

int
cmd_enqueue(int argc, char **argv)
{
    struct obx_enq_item it;
    const char *priority = NULL;
    struct cli_opt opts[] = {
        {"channel", &it.msg.channel_id, NULL, 1},
        {"message-id", &it.msg.external_message_id, NULL, 1},
        {"business", &it.msg.business_id, NULL, 1},
        {"conversation", &it.msg.external_conversation_id, NULL, 1},
        {"content", &it.msg.content, NULL, 1},
        {"sender", &it.msg.sender_type, NULL, 1},
        {"consumer-name", &it.msg.consumer_name, NULL},
        {"consumer-image", &it.msg.consumer_image, NULL},
        {"priority", &priority, NULL},
        {0},
    };
    struct cli c = {
        .command = "enqueue", .usage = usage_text, .required_with_any = 1, .postgresql_ok = 1};
    struct obx_msg_limits lim = obx_msg_limits_default();
    struct obx_store *st = NULL;
    char *end = NULL;
    int rc;

    memset(&it, 0, sizeof it);
    if (!cli_start(&c, argc, argv, opts, 0, 0, &rc))
        goto out;
    lim.max_content_bytes = (size_t)c.cfg.max_content_bytes;
    if (priority) {
        it.msg.priority = strtoll(priority, &end, 10);
        if (!*priority || *end) {
            cli_error(&c, "--priority must be an integer");
            rc = CLI_USAGE;
            goto out;
        }
    }
    /* Bulk loads rewrite fewer index pages with a larger cache and WAL. */
    rc = it.msg.external_message_id ? cli_open_store(&c, 0, &st) : cli_open_bulk_store(&c, &st);
    if (rc != CLI_OK)
        goto out;
    if (it.msg.external_message_id)
        rc = enqueue_one(&c, st, &it, &lim);
    else
        rc = enqueue_stdin(&c, st, &lim);
out:
    obx_store_free(st);
    cli_release(&c);
    return rc;
}
