/*
 * The /_mock/ endpoints: what tests use to look inside the mock and to steer it. They are
 * never rate-limited, never faulted and never counted in the statistics they report.
 *
 * POST /_mock/faults is all-or-nothing: the document is checked completely into a
 * `struct change` (a copy of the settings plus the parts that need work to apply), and only
 * then committed. The only step that can still fail after the check is creating API key
 * records for key_status (MOCK_MAX_KEYS), reported as 500.
 */
#include "mock.h"

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLUSH_BYTES (64 * 1024)
#define MAX_DELAY_MS (10 * 60 * 1000)
#define MAX_DOWN_MS (24 * 60 * 60 * 1000)

/* ---- GET /_mock/stats ------------------------------------------------------------------ */

static int
add_count(cJSON *obj, const char *name, uint64_t n)
{
    return cJSON_AddNumberToObject(obj, name, (double)n) != NULL ? 0 : -1;
}

static int
add_rejected(struct mock *m, cJSON *root)
{
    cJSON *rejected = cJSON_AddObjectToObject(root, "rejected");
    char code[16];
    int i;

    if (rejected == NULL) {
        return -1;
    }
    for (i = 100; i < 600; i++) {
        if (m->st.rejected[i] == 0) {
            continue;
        }
        snprintf(code, sizeof(code), "%d", i);
        if (add_count(rejected, code, m->st.rejected[i]) != 0) {
            return -1;
        }
    }
    return 0;
}

static int
add_by_key(struct mock *m, cJSON *root)
{
    cJSON *by_key = cJSON_AddObjectToObject(root, "by_key");
    cJSON *entry;
    struct mock_key *key;
    size_t i;
    int bad = by_key == NULL;

    for (i = 0; i < m->keys.n && !bad; i++) {
        key = m->keys.v[i];
        entry = cJSON_AddObjectToObject(by_key, key->name);
        bad = entry == NULL;
        bad = bad || add_count(entry, "requests", key->requests) != 0;
        bad = bad || add_count(entry, "accepted", key->accepted) != 0;
        bad = bad || add_count(entry, "rate_limited", key->rate_limited) != 0;
    }
    return bad ? -1 : 0;
}

static void
on_stats(struct mock *m, struct evhttp_request *req)
{
    cJSON *root = cJSON_CreateObject();
    const struct mock_stats *st = &m->st;
    int bad = root == NULL;

    /* by_key first: its members reuse top-level names, and scripts that scrape this text
     * with a greedy regex then still find the top-level value last. */
    bad = bad || add_by_key(m, root) != 0;
    bad = bad || add_count(root, "requests", st->requests) != 0;
    bad = bad || add_count(root, "accepted", st->accepted) != 0;
    bad = bad || add_count(root, "unique", st->unique) != 0;
    bad = bad || add_count(root, "duplicates", st->duplicates) != 0;
    bad = bad || add_count(root, "rate_limited", st->rate_limited) != 0;
    bad = bad || add_rejected(m, root) != 0;
    bad = bad || add_count(root, "dropped", st->dropped) != 0;
    bad = bad || add_count(root, "down_closed", st->down_closed) != 0;
    bad = bad || add_count(root, "injected", st->injected) != 0;
    bad = bad || add_count(root, "nulls_seen", st->nulls_seen) != 0;
    bad = bad || add_count(root, "unknown_fields_seen", st->unknown_fields_seen) != 0;
    bad = bad || add_count(root, "bad_user_agent", st->bad_user_agent) != 0;
    bad = bad || add_count(root, "max_concurrent", st->max_concurrent) != 0;
    bad = bad || add_count(root, "in_flight", st->in_flight) != 0;
    bad = bad || add_count(root, "webhooks_sent", m->wh.sent) != 0;
    bad = bad || add_count(root, "webhooks_failed", m->wh.failed) != 0;
    bad = bad || add_count(root, "received", m->log.n) != 0;
    bad = bad || add_count(root, "log_full", st->log_full) != 0;
    bad = bad || cJSON_AddBoolToObject(root, "down", m->set.down) == NULL;
    if (bad) {
        mock_util_reply_error(req, 500, "out of memory");
    } else {
        mock_util_reply_tree(req, 200, root);
    }
    cJSON_Delete(root);
}

/* ---- GET /_mock/received --------------------------------------------------------------- */

/* One accepted delivery, its strings borrowed from the pools. */
struct row {
    uint64_t seq;
    const struct mock_recv *rec;
    const char *key_name;
    const char *channel;
    const char *conv;
    const char *ext;
};

static void
load_row(struct mock *m, uint64_t seq, struct row *row)
{
    size_t len;
    const char *msg;
    const char *conv;

    row->seq = seq;
    row->rec = &m->log.v[seq - 1];
    row->key_name = m->keys.v[row->rec->key_idx]->name;
    msg = mock_table_key(&m->dedup, row->rec->msg_off, &len);
    conv = mock_table_key(&m->convs, row->rec->conv_off, &len);
    /* Both keys are "channel\0id", NUL-terminated by the pool. */
    row->channel = msg;
    row->ext = msg + strlen(msg) + 1;
    row->conv = conv + strlen(conv) + 1;
}

static int
tsv_field(struct mock_buf *b, const char *s, size_t len)
{
    size_t i;
    int bad = 0;

    for (i = 0; i < len && !bad; i++) {
        if (s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == '\\') {
            bad = mock_util_buf_addc(b, '\\') != 0;
            bad = bad || mock_util_buf_addc(b, s[i] == '\t'   ? 't'
                                               : s[i] == '\n' ? 'n'
                                               : s[i] == '\r' ? 'r'
                                                              : '\\') != 0;
        } else {
            bad = mock_util_buf_addc(b, s[i]) != 0;
        }
    }
    return bad ? -1 : 0;
}

static int
tsv_row(struct mock_buf *b, const struct row *row)
{
    char num[64];
    int bad;
    size_t prefix = strlen(row->key_name) < 4 ? strlen(row->key_name) : 4;

    snprintf(num, sizeof(num), "%llu\t%lld\t", (unsigned long long)row->seq,
             (long long)row->rec->arrival_ms);
    bad = mock_util_buf_add(b, num, strlen(num)) != 0;
    bad = bad || tsv_field(b, row->key_name, prefix) != 0;
    bad = bad || mock_util_buf_addc(b, '\t') != 0;
    bad = bad || tsv_field(b, row->channel, strlen(row->channel)) != 0;
    bad = bad || mock_util_buf_addc(b, '\t') != 0;
    bad = bad || tsv_field(b, row->conv, strlen(row->conv)) != 0;
    bad = bad || mock_util_buf_addc(b, '\t') != 0;
    bad = bad || tsv_field(b, row->ext, strlen(row->ext)) != 0;
    bad = bad || mock_util_buf_add(b, row->rec->dup ? "\t1\n" : "\t0\n", 3) != 0;
    return bad ? -1 : 0;
}

static void
received_tsv(struct mock *m, struct evhttp_request *req, uint64_t first, uint64_t last)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    struct mock_buf b = {NULL, 0, 0};
    struct row row;
    uint64_t seq;
    int bad = 0;

    for (seq = first; seq <= last && !bad; seq++) {
        load_row(m, seq, &row);
        bad = tsv_row(&b, &row) != 0;
        if (!bad && (b.len >= FLUSH_BYTES || seq == last)) {
            bad = evbuffer_add(out, b.p, b.len) != 0;
            b.len = 0;
        }
    }
    mock_util_buf_release(&b);
    if (bad) {
        evbuffer_drain(out, evbuffer_get_length(out));
        mock_util_reply_error(req, 500, "out of memory");
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/tab-separated-values");
    evhttp_send_reply(req, 200, NULL, NULL);
}

static cJSON *
json_row(struct mock *m, const struct row *row)
{
    cJSON *obj = cJSON_CreateObject();
    char prefix[5];
    const char *body;
    size_t len;
    cJSON *parsed = NULL;
    int bad = obj == NULL;

    snprintf(prefix, sizeof(prefix), "%s", row->key_name);
    bad = bad || add_count(obj, "seq", row->seq) != 0;
    bad = bad || cJSON_AddNumberToObject(obj, "arrival_ms", (double)row->rec->arrival_ms) == NULL;
    bad = bad || cJSON_AddStringToObject(obj, "api_key_prefix4", prefix) == NULL;
    bad = bad || cJSON_AddStringToObject(obj, "channel_id", row->channel) == NULL;
    bad = bad || cJSON_AddStringToObject(obj, "external_conversation_id", row->conv) == NULL;
    bad = bad || cJSON_AddStringToObject(obj, "external_message_id", row->ext) == NULL;
    bad = bad || cJSON_AddBoolToObject(obj, "duplicate", row->rec->dup) == NULL;
    body = mock_recvlog_body(&m->log, row->seq, &len);
    parsed = body != NULL ? cJSON_ParseWithLength(body, len) : cJSON_CreateNull();
    if (bad || parsed == NULL || !cJSON_AddItemToObject(obj, "body", parsed)) {
        cJSON_Delete(parsed);
        cJSON_Delete(obj);
        return NULL;
    }
    return obj; /* parsed is now owned by obj */
}

static void
received_json(struct mock *m, struct evhttp_request *req, uint64_t first, uint64_t last)
{
    cJSON *array = cJSON_CreateArray();
    cJSON *item;
    struct row row;
    uint64_t seq;
    int bad = array == NULL;

    for (seq = first; seq <= last && !bad; seq++) {
        load_row(m, seq, &row);
        item = json_row(m, &row);
        bad = item == NULL || !cJSON_AddItemToArray(array, item);
    }
    if (bad) {
        mock_util_reply_error(req, 500, "out of memory");
    } else {
        mock_util_reply_tree(req, 200, array);
    }
    cJSON_Delete(array);
}

/* Reads a non-negative integer query parameter; def when absent, -1 when malformed. */
static int64_t
query_int(const struct evkeyvalq *q, const char *name, int64_t def)
{
    const char *s = evhttp_find_header(q, name);
    char *end = NULL;
    long long v;

    if (s == NULL) {
        return def;
    }
    v = strtoll(s, &end, 10);
    return *s != '\0' && *end == '\0' && v >= 0 ? (int64_t)v : -1;
}

static void
on_received(struct mock *m, struct evhttp_request *req)
{
    struct evkeyvalq q;
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    const char *format;
    int64_t since;
    int64_t limit;
    uint64_t last;
    int json;

    TAILQ_INIT(&q);
    if (query != NULL && evhttp_parse_query_str(query, &q) != 0) {
        mock_util_reply_error(req, 400, "bad query string");
        return;
    }
    format = evhttp_find_header(&q, "format");
    json = format != NULL && strcmp(format, "json") == 0;
    since = query_int(&q, "since", 0);
    limit = query_int(&q, "limit", INT64_MAX);
    evhttp_clear_headers(&q);
    if (since < 0 || limit < 0) {
        mock_util_reply_error(req, 400, "since and limit must be non-negative integers");
        return;
    }
    last = (uint64_t)since + (uint64_t)limit < (uint64_t)since ? m->log.n
                                                               : (uint64_t)since + (uint64_t)limit;
    last = last < m->log.n ? last : m->log.n;
    if (json) {
        received_json(m, req, (uint64_t)since + 1, last);
    } else {
        received_tsv(m, req, (uint64_t)since + 1, last);
    }
}

/* ---- GET /_mock/last_request ----------------------------------------------------------- */

static int
add_headers(cJSON *root, const struct mock_buf *h)
{
    cJSON *obj = cJSON_AddObjectToObject(root, "headers");
    const char *p = h->p;
    const char *end = h->p + h->len;
    const char *value;

    if (obj == NULL) {
        return -1;
    }
    while (p != NULL && p < end) {
        value = p + strlen(p) + 1;
        if (cJSON_AddStringToObject(obj, p, value) == NULL) {
            return -1;
        }
        p = value + strlen(value) + 1;
    }
    return 0;
}

static void
on_last_request(struct mock *m, struct evhttp_request *req)
{
    cJSON *root;
    int bad;

    if (!m->last.present) {
        mock_util_reply_error(req, 404, "no request received yet");
        return;
    }
    root = cJSON_CreateObject();
    bad = root == NULL;
    bad = bad || cJSON_AddStringToObject(root, "method", m->last.method) == NULL;
    bad = bad || cJSON_AddStringToObject(root, "path", m->last.uri.p) == NULL;
    bad = bad || add_headers(root, &m->last.headers) != 0;
    bad = bad || cJSON_AddStringToObject(root, "body",
                                         m->last.body.p != NULL ? m->last.body.p : "") == NULL;
    if (bad) {
        mock_util_reply_error(req, 500, "out of memory");
    } else {
        mock_util_reply_tree(req, 200, root);
    }
    cJSON_Delete(root);
}

/* ---- POST /_mock/faults ---------------------------------------------------------------- */

struct change {
    struct mock_settings set;
    int has_down;
    int64_t down_ms;
    int has_script;
    int *script; /* owned until committed */
    size_t script_len;
    const cJSON *key_status; /* checked; applied at commit */
    int has_webhook_url;
    const char *webhook_url; /* NULL clears */
};

struct fault_field;
typedef const char *(*fault_parse_fn)(struct change *c, const cJSON *item,
                                      const struct fault_field *f);

/* One member of the faults document. Parsers return NULL or why the value is refused. */
struct fault_field {
    const char *name;
    fault_parse_fn parse;
    size_t offset; /* in struct mock_settings, for the generic parsers */
    size_t size;   /* string capacity, for parse_str */
    int64_t max;   /* for parse_int */
};

static const char *
parse_bool(struct change *c, const cJSON *item, const struct fault_field *f)
{
    if (!cJSON_IsBool(item)) {
        return "must be true or false";
    }
    *(int *)((char *)&c->set + f->offset) = cJSON_IsTrue(item);
    return NULL;
}

static const char *
parse_prob(struct change *c, const cJSON *item, const struct fault_field *f)
{
    if (!cJSON_IsNumber(item) || !(item->valuedouble >= 0.0 && item->valuedouble <= 1.0)) {
        return "must be a number from 0 to 1";
    }
    *(double *)((char *)&c->set + f->offset) = item->valuedouble;
    return NULL;
}

static const char *
parse_int(struct change *c, const cJSON *item, const struct fault_field *f)
{
    double v = cJSON_IsNumber(item) ? item->valuedouble : -1.0;

    if (!(v >= 0.0 && v <= (double)f->max) || (double)(int64_t)v != v) {
        return "must be a non-negative integer in range";
    }
    *(int64_t *)((char *)&c->set + f->offset) = (int64_t)v;
    return NULL;
}

/* Strings go into headers or JSON: refuse what would break a header line. */
static const char *
parse_str(struct change *c, const cJSON *item, const struct fault_field *f)
{
    char *dst = (char *)&c->set + f->offset;
    char num[32];
    const char *s = cJSON_IsString(item) ? item->valuestring : NULL;

    if (s == NULL && cJSON_IsNumber(item) && item->valuedouble >= 0 && item->valuedouble < 1e15) {
        snprintf(num, sizeof(num), "%.0f", item->valuedouble);
        s = num;
    }
    if (s == NULL || *s == '\0' || strlen(s) >= f->size || strpbrk(s, "\r\n") != NULL) {
        return "must be a short non-empty string";
    }
    memcpy(dst, s, strlen(s) + 1);
    return NULL;
}

static const char *
parse_down(struct change *c, const cJSON *item, const struct fault_field *f)
{
    const char *why = parse_bool(c, item, f);

    c->has_down = why == NULL;
    return why;
}

static const char *
parse_down_ms(struct change *c, const cJSON *item, const struct fault_field *f)
{
    double v = cJSON_IsNumber(item) ? item->valuedouble : -1.0;

    (void)f;
    if (!(v >= 0.0 && v <= MAX_DOWN_MS) || (double)(int64_t)v != v) {
        return "must be a number of milliseconds";
    }
    c->down_ms = (int64_t)v;
    return NULL;
}

static const char *
parse_script(struct change *c, const cJSON *item, const struct fault_field *f)
{
    const cJSON *code;
    size_t n = 0;
    int v;

    (void)f;
    if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) > MOCK_MAX_SCRIPT) {
        return "must be an array of at most 100000 status codes";
    }
    free(c->script);
    c->script = calloc((size_t)cJSON_GetArraySize(item) + 1, sizeof(*c->script));
    if (c->script == NULL) {
        return "out of memory";
    }
    cJSON_ArrayForEach(code, item)
    {
        v = cJSON_IsNumber(code) ? code->valueint : -1;
        if (!cJSON_IsNumber(code) || (double)v != code->valuedouble ||
            !(v == 0 || (v >= 100 && v <= 599))) {
            return "entries must be 0 (drop) or an HTTP status 100-599";
        }
        c->script[n++] = v;
    }
    c->script_len = n;
    c->has_script = 1;
    return NULL;
}

static const char *
parse_key_status(struct change *c, const cJSON *item, const struct fault_field *f)
{
    const cJSON *entry;

    (void)f;
    if (!cJSON_IsObject(item)) {
        return "must be an object of key: 0|401|403";
    }
    cJSON_ArrayForEach(entry, item)
    {
        if (!cJSON_IsNumber(entry) ||
            (entry->valuedouble != 0 && entry->valuedouble != 401 && entry->valuedouble != 403)) {
            return "values must be 0, 401 or 403";
        }
        if (entry->string == NULL || *entry->string == '\0') {
            return "keys must be non-empty";
        }
    }
    c->key_status = item;
    return NULL;
}

static const char *
parse_webhook_url(struct change *c, const cJSON *item, const struct fault_field *f)
{
    const char *why = NULL;

    (void)f;
    if (!cJSON_IsString(item) && !cJSON_IsNull(item)) {
        return "must be a URL string or null";
    }
    if (cJSON_IsString(item) && mock_webhook_check_url(item->valuestring, &why) != 0) {
        return why;
    }
    c->has_webhook_url = 1;
    c->webhook_url = cJSON_IsString(item) ? item->valuestring : NULL;
    return NULL;
}

#define SET(field) offsetof(struct mock_settings, field)
#define SIZE(field) sizeof(((struct mock_settings *)0)->field)

static const struct fault_field fault_fields[] = {
    {"down", parse_down, SET(down), 0, 0},
    {"down_ms", parse_down_ms, 0, 0, 0},
    {"drop_rate", parse_prob, SET(drop_rate), 0, 0},
    {"delay_ms", parse_int, SET(delay_ms), 0, MAX_DELAY_MS},
    {"error_rate", parse_prob, SET(error_rate), 0, 0},
    {"rate_429", parse_prob, SET(rate_429), 0, 0},
    {"retry_after", parse_str, SET(retry_after), SIZE(retry_after), 0},
    {"script", parse_script, 0, 0, 0},
    {"key_status", parse_key_status, 0, 0, 0},
    {"rate_limit", parse_int, SET(rate_limit), 0, MOCK_MAX_RATE_LIMIT},
    {"echo", parse_bool, SET(echo), 0, 0},
    {"echo_delay_ms", parse_int, SET(echo_delay_ms), 0, MAX_DELAY_MS},
    {"echo_duplicate", parse_bool, SET(echo_duplicate), 0, 0},
    {"echo_redeliveries", parse_bool, SET(echo_redeliveries), 0, 0},
    {"echo_before_response", parse_bool, SET(echo_before_response), 0, 0},
    {"echo_status", parse_str, SET(echo_status), SIZE(echo_status), 0},
    {"webhook_url", parse_webhook_url, 0, 0, 0},
};

static const struct fault_field *
find_fault_field(const char *name)
{
    size_t i;

    for (i = 0; name != NULL && i < sizeof(fault_fields) / sizeof(fault_fields[0]); i++) {
        if (strcmp(fault_fields[i].name, name) == 0) {
            return &fault_fields[i];
        }
    }
    return NULL;
}

/* Checks doc into c. Returns NULL, or why it is refused; *field names the culprit. */
static const char *
check_faults(struct mock *m, const cJSON *doc, struct change *c, const char **field)
{
    const cJSON *item;
    const struct fault_field *f;
    const char *why;

    c->set = m->set;
    cJSON_ArrayForEach(item, doc)
    {
        *field = item->string;
        f = find_fault_field(item->string);
        if (f == NULL) {
            return "unknown field";
        }
        why = f->parse(c, item, f);
        if (why != NULL) {
            return why;
        }
    }
    if (c->down_ms > 0 && !c->has_down) {
        c->has_down = 1;
        c->set.down = 1;
    }
    return NULL;
}

static int
apply_key_status(struct mock *m, const cJSON *key_status)
{
    const cJSON *entry;
    struct mock_key *key;

    cJSON_ArrayForEach(entry, key_status)
    {
        key = mock_keys_find(&m->keys, entry->string, 1);
        if (key == NULL) {
            return -1;
        }
        key->forced_status = (int)entry->valuedouble;
    }
    return 0;
}

/* Applies a checked change. Returns NULL, or why it could not be applied. */
static const char *
commit_faults(struct mock *m, struct change *c)
{
    const char *why = NULL;
    int down = m->set.down;

    if (c->has_webhook_url && mock_webhook_set_url(&m->wh, c->webhook_url, &why) != 0) {
        return why;
    }
    m->set = c->set;
    m->set.down = down; /* changed by mock_partoo_set_down only */
    if (c->has_script) {
        free(m->script.codes);
        m->script.codes = c->script;
        m->script.len = c->script_len;
        m->script.pos = 0;
        c->script = NULL; /* now owned by m->script */
    }
    if (c->has_down && mock_partoo_set_down(m, c->set.down, c->down_ms) != 0) {
        return "cannot re-open the listening socket";
    }
    if (c->key_status != NULL && apply_key_status(m, c->key_status) != 0) {
        return "too many API keys";
    }
    return NULL;
}

static void
reply_refused(struct evhttp_request *req, int code, const char *field, const char *why)
{
    char msg[256];

    snprintf(msg, sizeof(msg), "%s%s%s", field != NULL ? field : "", field != NULL ? ": " : "",
             why);
    mock_util_reply_error(req, code, msg);
}

static void
on_faults(struct mock *m, struct evhttp_request *req)
{
    cJSON *doc = mock_util_parse_body(req);
    struct change c;
    const char *field = NULL;
    const char *why;

    memset(&c, 0, sizeof(c));
    if (doc == NULL || !cJSON_IsObject(doc)) {
        mock_util_reply_error(req, 400, "body must be a JSON object");
        goto out;
    }
    why = check_faults(m, doc, &c, &field);
    if (why != NULL) {
        reply_refused(req, 400, field, why);
        goto out;
    }
    why = commit_faults(m, &c);
    if (why != NULL) {
        reply_refused(req, c.has_webhook_url ? 409 : 500, NULL, why);
        goto out;
    }
    mock_util_log(m->quiet, "faults changed");
    mock_util_reply(req, 200, "{\"ok\":true}");
out:
    free(c.script);
    cJSON_Delete(doc);
}

static void
on_get_faults(struct mock *m, struct evhttp_request *req)
{
    cJSON *root = cJSON_CreateObject();
    const struct mock_settings *s = &m->set;
    int bad = root == NULL;

    bad = bad || cJSON_AddBoolToObject(root, "down", s->down) == NULL;
    bad = bad || cJSON_AddNumberToObject(root, "drop_rate", s->drop_rate) == NULL;
    bad = bad || cJSON_AddNumberToObject(root, "delay_ms", (double)s->delay_ms) == NULL;
    bad = bad || cJSON_AddNumberToObject(root, "error_rate", s->error_rate) == NULL;
    bad = bad || cJSON_AddNumberToObject(root, "rate_429", s->rate_429) == NULL;
    bad = bad || cJSON_AddStringToObject(root, "retry_after", s->retry_after) == NULL;
    bad = bad || add_count(root, "script_left", m->script.len - m->script.pos) != 0;
    bad = bad || cJSON_AddNumberToObject(root, "rate_limit", (double)s->rate_limit) == NULL;
    bad = bad || cJSON_AddBoolToObject(root, "echo", s->echo) == NULL;
    bad = bad || cJSON_AddNumberToObject(root, "echo_delay_ms", (double)s->echo_delay_ms) == NULL;
    bad = bad || cJSON_AddBoolToObject(root, "echo_duplicate", s->echo_duplicate) == NULL;
    bad = bad || cJSON_AddBoolToObject(root, "echo_redeliveries", s->echo_redeliveries) == NULL;
    bad = bad ||
          cJSON_AddBoolToObject(root, "echo_before_response", s->echo_before_response) == NULL;
    bad = bad || cJSON_AddStringToObject(root, "echo_status", s->echo_status) == NULL;
    bad = bad || (m->wh.url != NULL ? cJSON_AddStringToObject(root, "webhook_url", m->wh.url)
                                    : cJSON_AddNullToObject(root, "webhook_url")) == NULL;
    if (bad) {
        mock_util_reply_error(req, 500, "out of memory");
    } else {
        mock_util_reply_tree(req, 200, root);
    }
    cJSON_Delete(root);
}

/* ---- POST /_mock/reset ----------------------------------------------------------------- */

static void
on_reset(struct mock *m, struct evhttp_request *req)
{
    uint64_t in_flight = m->st.in_flight;

    memset(&m->st, 0, sizeof(m->st));
    m->st.in_flight = in_flight; /* still to be answered: keep the gauge honest */
    m->st.max_concurrent = in_flight;
    m->set = m->startup;
    free(m->script.codes);
    memset(&m->script, 0, sizeof(m->script));
    mock_keys_reset(&m->keys);
    mock_table_clear(&m->dedup);
    mock_recvlog_clear(&m->log);
    m->last.present = 0;
    m->wh.sent = 0;
    m->wh.failed = 0;
    if (mock_partoo_set_down(m, m->startup.down, 0) != 0) {
        mock_util_reply_error(req, 500, "cannot re-open the listening socket");
        return;
    }
    mock_util_log(m->quiet, "reset");
    mock_util_reply(req, 200, "{\"ok\":true}");
}

/* ---- POST /_mock/webhook --------------------------------------------------------------- */

/* doc[name] as a string; def when absent or null; *bad set when of another type. */
static const char *
opt_str(const cJSON *doc, const char *name, const char *def, int *bad)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(doc, name);

    if (item == NULL || cJSON_IsNull(item)) {
        return def;
    }
    if (!cJSON_IsString(item)) {
        *bad = 1;
        return def;
    }
    return item->valuestring;
}

static enum mock_sign
sign_mode(const cJSON *doc, int *bad)
{
    const cJSON *forge = cJSON_GetObjectItemCaseSensitive(doc, "forge");
    const cJSON *unsigned_ = cJSON_GetObjectItemCaseSensitive(doc, "unsigned");

    if (cJSON_IsTrue(unsigned_)) {
        return MOCK_SIGN_NONE;
    }
    if (cJSON_IsString(forge) && strcmp(forge->valuestring, "flip") == 0) {
        return MOCK_SIGN_FLIPPED;
    }
    *bad = *bad || (forge != NULL && !cJSON_IsBool(forge) && !cJSON_IsNull(forge)) ||
           (unsigned_ != NULL && !cJSON_IsBool(unsigned_) && !cJSON_IsNull(unsigned_));
    return cJSON_IsTrue(forge) ? MOCK_SIGN_OTHER_KEY : MOCK_SIGN_OK;
}

static int64_t
message_id(struct mock *m, const cJSON *doc, int *bad)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "partoo_message_id");

    if (id == NULL || cJSON_IsNull(id)) {
        return m->wh.next_message_id++;
    }
    if (!cJSON_IsNumber(id) || !(id->valuedouble >= 0 && id->valuedouble < 9e15) ||
        (double)(int64_t)id->valuedouble != id->valuedouble) {
        *bad = 1;
        return 0;
    }
    return (int64_t)id->valuedouble;
}

/* Builds the event body described by doc (or takes doc.raw). NULL when doc is invalid (then
 * *bad is set) or memory ran out; *why says which. */
static char *
build_manual(struct mock *m, const cJSON *doc, int *bad, const char **why)
{
    struct mock_event ev;
    const char *raw = opt_str(doc, "raw", NULL, bad);

    memset(&ev, 0, sizeof(ev));
    *why = "out of memory";
    if (raw != NULL) {
        return strdup(raw);
    }
    ev.type = opt_str(doc, "type", "message_created", bad);
    ev.channel_id = opt_str(doc, "channel_id", NULL, bad);
    ev.external_conversation_id = opt_str(doc, "external_conversation_id", NULL, bad);
    ev.content = opt_str(doc, "content", "Hello from Partoo", bad);
    ev.content_type = opt_str(doc, "content_type", "Text", bad);
    ev.sender_type = opt_str(doc, "sender_type", "User", bad);
    ev.sender_label = opt_str(doc, "sender_label", "Mock User", bad);
    ev.status = opt_str(doc, "status", "Success", bad);
    ev.external_message_id = opt_str(doc, "external_message_id", NULL, bad);
    ev.consumer_name = opt_str(doc, "consumer_name", NULL, bad);
    ev.business_id = opt_str(doc, "business_id", "mock-business", bad);
    ev.date = opt_str(doc, "date", NULL, bad);
    ev.message_id = message_id(m, doc, bad);
    if (*bad || ev.channel_id == NULL || ev.external_conversation_id == NULL) {
        *bad = 1;
        *why = "channel_id and external_conversation_id are required strings; other fields "
               "must be strings, partoo_message_id an integer";
        return NULL;
    }
    ev.conversation_id = mock_ingest_conversation(m, ev.channel_id, ev.external_conversation_id,
                                                  NULL);
    return ev.conversation_id < 0 ? NULL : mock_webhook_build(&ev);
}

static void
on_manual_done(void *arg, int status, const char *sent, size_t sent_len, const char *resp,
               size_t resp_len)
{
    struct evhttp_request *req = arg;
    cJSON *root = cJSON_CreateObject();
    char *resp_copy = strndup(resp, resp_len);
    int bad = root == NULL || resp_copy == NULL;

    (void)sent_len;
    bad = bad || cJSON_AddNumberToObject(root, "status", status) == NULL;
    bad = bad || cJSON_AddStringToObject(root, "body", sent) == NULL;
    bad = bad || cJSON_AddStringToObject(root, "response", resp_copy) == NULL;
    if (bad) {
        mock_util_reply_error(req, 500, "out of memory");
    } else {
        mock_util_reply_tree(req, 200, root);
    }
    free(resp_copy);
    cJSON_Delete(root);
}

static void
on_webhook(struct mock *m, struct evhttp_request *req)
{
    cJSON *doc = mock_util_parse_body(req);
    char *body = NULL;
    const char *why = NULL;
    int bad = 0;
    enum mock_sign sign;

    if (doc == NULL || !cJSON_IsObject(doc)) {
        mock_util_reply_error(req, 400, "body must be a JSON object");
        goto out;
    }
    sign = sign_mode(doc, &bad);
    if (m->wh.host == NULL || (m->wh.key == NULL && sign != MOCK_SIGN_NONE)) {
        mock_util_reply_error(req, 409, "webhook not configured: need a URL and --webhook-seed");
        goto out;
    }
    why = "forge must be true, false or \"flip\"; unsigned true or false";
    body = bad ? NULL : build_manual(m, doc, &bad, &why);
    if (body == NULL) {
        mock_util_reply_error(req, bad ? 400 : 500, why);
        goto out;
    }
    if (mock_webhook_send(&m->wh, body, sign, 0, on_manual_done, req) != 0) {
        mock_util_reply_error(req, 500, "cannot send the webhook");
    }
    body = NULL; /* owned by the webhook module in every case */
out:
    free(body);
    cJSON_Delete(doc);
}

/* ---- dispatch -------------------------------------------------------------------------- */

static const struct route {
    enum evhttp_cmd_type method;
    const char *path;
    void (*handle)(struct mock *m, struct evhttp_request *req);
} routes[] = {
    {EVHTTP_REQ_GET, "/_mock/stats", on_stats},
    {EVHTTP_REQ_GET, "/_mock/received", on_received},
    {EVHTTP_REQ_GET, "/_mock/last_request", on_last_request},
    {EVHTTP_REQ_GET, "/_mock/faults", on_get_faults},
    {EVHTTP_REQ_POST, "/_mock/faults", on_faults},
    {EVHTTP_REQ_POST, "/_mock/reset", on_reset},
    {EVHTTP_REQ_POST, "/_mock/webhook", on_webhook},
};

void
mock_control_handle(struct mock *m, struct evhttp_request *req, const char *path)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    int path_known = 0;
    size_t i;

    for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strcmp(routes[i].path, path) != 0) {
            continue;
        }
        path_known = 1;
        if (routes[i].method == cmd) {
            routes[i].handle(m, req);
            return;
        }
    }
    mock_util_reply_error(req, path_known ? 405 : 404,
                          path_known ? "method not allowed" : "no such control endpoint");
}
