/*
 * The Partoo endpoint: POST <any prefix>/custom-channels/{channel_id}/messages.
 *
 * Every request outside /_mock/ goes down this pipeline; each step answers or passes on, and
 * every path ends in exactly one answer() or close_unanswered():
 *
 *   mock_ingest_handle    count it, keep it as last_request
 *     down                     -> close, no answer
 *     path shape / method      -> 404 / 405
 *     drop_rate                -> close, no answer
 *     delay_ms                 -> timer (on_delay_timer), then after_delay
 *   after_delay
 *     down (went down during the delay) -> close
 *     script: 0 -> close; 200 -> go on; other -> that status (injected)
 *     error_rate -> 500; rate_429 -> 429 with the configured Retry-After (injected)
 *   validate               Partoo's checks, in Partoo's order:
 *     x-APIKey -> 401/403, rate limit -> 429, Content-Type -> 415, body -> 413/400,
 *     User-Agent (only counted)
 *   accept                 dedup, log, echo webhook, then 200; with echo_before_response
 *                          the 200 waits for the receiver's answer (on_echo_answered)
 *
 * Deferred answers (delay, echo first) are mock_pending records on m->pending, so that a
 * shutdown can free them; evhttp keeps the request and its connection alive until answered.
 */
#include "mock.h"

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BODY_OK "{\"status\":\"success\"}"
#define BODY_400_JSON "{\"error\":{\"json\":{\"_schema\":[\"Invalid JSON body.\"]}}}"
#define BODY_400_TYPE "{\"error\":{\"json\":{\"_schema\":[\"Invalid input type.\"]}}}"
#define BODY_401 "{\"error\":{\"authentication\":\"User not authenticated\"}}"
#define BODY_403 "{\"error\":{\"authorization\":\"Operation not allowed\"}}"
#define BODY_404 "{\"error\":{\"json\":\"Resource not found\"}}"
#define BODY_405 "{\"error\":{\"json\":\"Method not allowed\"}}"
#define BODY_413 "{\"error\":{\"json\":\"Request entity too large\"}}"
#define BODY_415 "{\"errors\":{\"json\":\"Unsupported media type\"}}"
#define BODY_429 "{\"error\":{\"rate_limit\":\"Too many requests\"}}"
#define BODY_500 "{\"error\":\"Internal server error\"}"
#define CHANNEL_MAX 1024        /* longer channel ids are answered 404 */
#define CONVERSATION_BASE 10000 /* conversation ids handed out in webhooks start above this */
#define USER_AGENT_PREFIX "partoo-outbox/"

struct mock_pending {
    LIST_ENTRY(mock_pending) link;
    struct mock *m;
    struct evhttp_request *req;
    struct event *timer; /* the delay; NULL while waiting for an echo */
};

/* Bodies for statuses chosen by faults. */
static const struct {
    int code;
    const char *body;
} canned[] = {
    {400, BODY_400_TYPE},
    {401, BODY_401},
    {403, BODY_403},
    {404, BODY_404},
    {405, BODY_405},
    {413, BODY_413},
    {415, BODY_415},
    {429, BODY_429},
    {500, BODY_500},
    {502, "{\"error\":\"Bad gateway\"}"},
    {503, "{\"error\":\"Service unavailable\"}"},
    {504, "{\"error\":\"Gateway timeout\"}"},
};

/* The request body fields Partoo documents, and how each is checked. */
static const struct field {
    const char *name;
    int required;
    int non_empty;
    int sender_type; /* must be "User" or "Consumer" */
} fields[] = {
    {"business_id", 1, 1, 0},         {"external_conversation_id", 1, 1, 0},
    {"external_message_id", 1, 1, 0}, {"content", 1, 1, 0},
    {"sender_type", 1, 0, 1},         {"consumer_name", 0, 0, 0},
    {"consumer_image", 0, 0, 0},
};

static const char *
canned_body(int code)
{
    size_t i;

    for (i = 0; i < sizeof(canned) / sizeof(canned[0]); i++) {
        if (canned[i].code == code) {
            return canned[i].body;
        }
    }
    return "{\"error\":\"injected by mock_partoo\"}";
}

/* ---- answering ------------------------------------------------------------------------- */

static void
answer(struct mock *m, struct evhttp_request *req, int code, const char *body,
       const char *retry_after)
{
    if (retry_after != NULL) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", retry_after);
    }
    if (code != 200 && code > 0 && code < 600) {
        m->st.rejected[code]++;
    }
    m->st.in_flight--;
    mock_util_reply(req, code, body);
}

static void
answer_tree(struct mock *m, struct evhttp_request *req, int code, const cJSON *tree)
{
    char *text = cJSON_PrintUnformatted(tree);

    answer(m, req, text != NULL ? code : 500, text != NULL ? text : BODY_500, NULL);
    cJSON_free(text);
}

static void
close_unanswered(struct mock *m, struct evhttp_request *req)
{
    m->st.dropped++;
    m->st.in_flight--;
    mock_util_drop(req);
}

static void
answer_injected(struct mock *m, struct evhttp_request *req, int code)
{
    m->st.injected++;
    answer(m, req, code, canned_body(code), code == 429 ? m->set.retry_after : NULL);
}

/* ---- pending answers ------------------------------------------------------------------- */

static struct mock_pending *
pending_new(struct mock *m, struct evhttp_request *req)
{
    struct mock_pending *p = calloc(1, sizeof(*p));

    if (p == NULL) {
        return NULL;
    }
    p->m = m;
    p->req = req;
    LIST_INSERT_HEAD(&m->pending, p, link);
    return p;
}

static void
pending_free(struct mock_pending *p)
{
    LIST_REMOVE(p, link);
    if (p->timer != NULL) {
        event_free(p->timer);
    }
    free(p);
}

void
mock_ingest_release(struct mock *m)
{
    while (!LIST_EMPTY(&m->pending)) {
        pending_free(LIST_FIRST(&m->pending));
    }
}

/* ---- request details ------------------------------------------------------------------- */

static const char *
method_name(enum evhttp_cmd_type cmd)
{
    static const struct {
        enum evhttp_cmd_type cmd;
        const char *name;
    } names[] = {
        {EVHTTP_REQ_GET, "GET"},       {EVHTTP_REQ_POST, "POST"},
        {EVHTTP_REQ_HEAD, "HEAD"},     {EVHTTP_REQ_PUT, "PUT"},
        {EVHTTP_REQ_DELETE, "DELETE"}, {EVHTTP_REQ_OPTIONS, "OPTIONS"},
        {EVHTTP_REQ_TRACE, "TRACE"},   {EVHTTP_REQ_CONNECT, "CONNECT"},
        {EVHTTP_REQ_PATCH, "PATCH"},
    };
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (names[i].cmd == cmd) {
            return names[i].name;
        }
    }
    return "UNKNOWN";
}

/* Copies what /_mock/last_request shows. Losing it to a failed allocation is harmless. */
static void
remember_last(struct mock *m, struct evhttp_request *req)
{
    struct mock_last *last = &m->last;
    struct evkeyval *kv;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const char *uri = evhttp_request_get_uri(req);
    int bad = 0;

    snprintf(last->method, sizeof(last->method), "%s",
             method_name(evhttp_request_get_command(req)));
    last->uri.len = 0;
    last->headers.len = 0;
    last->body.len = 0;
    bad = bad || mock_util_buf_add(&last->uri, uri, strlen(uri)) != 0;
    TAILQ_FOREACH(kv, evhttp_request_get_input_headers(req), next)
    {
        bad = bad || mock_util_buf_add(&last->headers, kv->key, strlen(kv->key) + 1) != 0;
        bad = bad || mock_util_buf_add(&last->headers, kv->value, strlen(kv->value) + 1) != 0;
    }
    if (len > 0) {
        bad = bad || mock_util_buf_add(&last->body, evbuffer_pullup(in, -1), len) != 0;
    }
    last->present = !bad;
}

static int
hex_digit(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Percent-decodes a path segment into out. -1 when too long or it decodes to a NUL. */
static int
decode_segment(const char *s, size_t len, char *out, size_t size)
{
    size_t i = 0;
    size_t n = 0;
    int hi;
    int lo;

    while (i < len) {
        hi = s[i] == '%' && i + 2 < len ? hex_digit(s[i + 1]) : -1;
        lo = hi >= 0 ? hex_digit(s[i + 2]) : -1;
        if (n + 1 >= size) {
            return -1;
        }
        if (hi >= 0 && lo >= 0) {
            out[n] = (char)(hi * 16 + lo);
            i += 3;
        } else {
            out[n] = s[i];
            i++;
        }
        if (out[n] == '\0') {
            return -1;
        }
        n++;
    }
    out[n] = '\0';
    return 0;
}

/* Checks that path is <prefix>/custom-channels/{channel}/messages and decodes the channel. */
static int
parse_channel(const char *path, char *out, size_t size)
{
    static const char suffix[] = "/messages";
    static const char parent[] = "/custom-channels/";
    size_t len = path != NULL ? strlen(path) : 0;
    const char *end;
    const char *seg;

    if (len < sizeof(suffix) - 1 || strcmp(path + len - (sizeof(suffix) - 1), suffix) != 0) {
        return -1;
    }
    end = path + len - (sizeof(suffix) - 1);
    seg = end;
    while (seg > path && seg[-1] != '/') {
        seg--;
    }
    if (seg == end || (size_t)(seg - path) < sizeof(parent) - 1 ||
        memcmp(seg - (sizeof(parent) - 1), parent, sizeof(parent) - 1) != 0) {
        return -1;
    }
    return decode_segment(seg, (size_t)(end - seg), out, size);
}

static const char *
request_path(struct evhttp_request *req)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);

    return uri != NULL ? evhttp_uri_get_path(uri) : NULL;
}

/* ---- validation ------------------------------------------------------------------------ */

/* Step 2: the API key. Answers and returns -1 when it is refused. */
static int
check_key(struct mock *m, struct evhttp_request *req, struct mock_key **out)
{
    const char *name = evhttp_find_header(evhttp_request_get_input_headers(req), "x-APIKey");
    struct mock_key *key = NULL;

    if (name != NULL && *name != '\0') {
        key = mock_keys_find(&m->keys, name, m->keys.any_key);
    }
    if (key == NULL) {
        answer(m, req, 401, BODY_401, NULL);
        return -1;
    }
    key->requests++;
    if (key->forced_status != 0 || !key->listed) {
        answer(m, req, key->forced_status == 403 ? 403 : 401,
               key->forced_status == 403 ? BODY_403 : BODY_401, NULL);
        return -1;
    }
    *out = key;
    return 0;
}

/* Step 3: the per-key sliding window. */
static int
check_rate(struct mock *m, struct evhttp_request *req, struct mock_key *key)
{
    int64_t wait_ms = mock_keys_admit(key, m->set.rate_limit, mock_util_mono_ms());
    char retry_after[32];

    if (wait_ms <= 0) {
        return 0;
    }
    snprintf(retry_after, sizeof(retry_after), "%lld", (long long)((wait_ms + 999) / 1000));
    key->rate_limited++;
    m->st.rate_limited++;
    answer(m, req, 429, BODY_429, retry_after);
    return -1;
}

/* Step 4: application/json, parameters allowed. */
static int
check_content_type(struct mock *m, struct evhttp_request *req)
{
    static const char json[] = "application/json";
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");

    while (ct != NULL && (*ct == ' ' || *ct == '\t')) {
        ct++;
    }
    if (ct != NULL && strncasecmp(ct, json, sizeof(json) - 1) == 0 &&
        strchr("; \t", ct[sizeof(json) - 1]) != NULL) {
        return 0; /* strchr also matches the terminating NUL */
    }
    answer(m, req, 415, BODY_415, NULL);
    return -1;
}

static const char *
field_problem(const struct field *f, const cJSON *item)
{
    if (item == NULL) {
        return f->required ? "Missing data for required field." : NULL;
    }
    if (cJSON_IsNull(item)) {
        return f->required ? "Field may not be null." : NULL;
    }
    if (!cJSON_IsString(item)) {
        return "Not a valid string.";
    }
    if (f->non_empty && item->valuestring[0] == '\0') {
        return "Shorter than minimum length 1.";
    }
    if (f->sender_type && strcmp(item->valuestring, "User") != 0 &&
        strcmp(item->valuestring, "Consumer") != 0) {
        return "Must be one of: User, Consumer.";
    }
    return NULL;
}

/* {"field":["reason"],...} for every field in error, or NULL when all are fine (or no memory,
 * in which case *oom is set). */
static cJSON *
field_errors(const cJSON *root, int *oom)
{
    cJSON *errors = NULL;
    cJSON *list;
    const char *problem;
    size_t i;

    *oom = 0;
    for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        problem = field_problem(&fields[i], cJSON_GetObjectItemCaseSensitive(root, fields[i].name));
        if (problem == NULL) {
            continue;
        }
        errors = errors != NULL ? errors : cJSON_CreateObject();
        list = errors != NULL ? cJSON_AddArrayToObject(errors, fields[i].name) : NULL;
        if (list == NULL || !cJSON_AddItemToArray(list, cJSON_CreateString(problem))) {
            *oom = 1;
            cJSON_Delete(errors);
            return NULL;
        }
    }
    return errors;
}

static int
is_known_field(const char *name)
{
    size_t i;

    for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        if (strcmp(fields[i].name, name) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Counts bodies carrying nulls or unknown fields: the client is expected to send neither. */
static void
count_extras(struct mock *m, const cJSON *root)
{
    const cJSON *child;
    int nulls = 0;
    int unknown = 0;

    cJSON_ArrayForEach(child, root)
    {
        nulls = nulls || cJSON_IsNull(child);
        unknown = unknown || child->string == NULL || !is_known_field(child->string);
    }
    m->st.nulls_seen += (uint64_t)nulls;
    m->st.unknown_fields_seen += (uint64_t)unknown;
}

static void
answer_field_errors(struct mock *m, struct evhttp_request *req, cJSON *errors)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *error = root != NULL ? cJSON_AddObjectToObject(root, "error") : NULL;

    if (error == NULL || !cJSON_AddItemToObject(error, "json", errors)) {
        cJSON_Delete(errors);
        answer(m, req, 500, BODY_500, NULL);
    } else {
        answer_tree(m, req, 400, root);
    }
    cJSON_Delete(root);
}

/* Step 5: the body. Returns the parsed object, or NULL once it has answered. */
static cJSON *
check_body(struct mock *m, struct evhttp_request *req)
{
    cJSON *root = NULL;
    cJSON *errors;
    int oom;

    if (evbuffer_get_length(evhttp_request_get_input_buffer(req)) > MOCK_BODY_LIMIT) {
        answer(m, req, 413, BODY_413, NULL);
        return NULL;
    }
    root = mock_util_parse_body(req);
    if (root == NULL || !cJSON_IsObject(root)) {
        answer(m, req, 400, root == NULL ? BODY_400_JSON : BODY_400_TYPE, NULL);
        cJSON_Delete(root);
        return NULL;
    }
    count_extras(m, root);
    errors = field_errors(root, &oom);
    if (errors == NULL && !oom) {
        return root;
    }
    if (oom) {
        answer(m, req, 500, BODY_500, NULL);
    } else {
        answer_field_errors(m, req, errors);
    }
    cJSON_Delete(root);
    return NULL;
}

static void
check_user_agent(struct mock *m, struct evhttp_request *req)
{
    const char *ua = evhttp_find_header(evhttp_request_get_input_headers(req), "User-Agent");

    if (ua == NULL || strncmp(ua, USER_AGENT_PREFIX, sizeof(USER_AGENT_PREFIX) - 1) != 0) {
        m->st.bad_user_agent++;
    }
}

/* ---- accepting ------------------------------------------------------------------------- */

int64_t
mock_ingest_conversation(struct mock *m, const char *channel, const char *conv, uint32_t *conv_off)
{
    uint32_t number = (uint32_t)m->convs.count + 1;
    uint32_t off;
    int bad;

    m->scratch.len = 0;
    bad = mock_util_buf_add(&m->scratch, channel, strlen(channel) + 1) != 0;
    bad = bad || mock_util_buf_add(&m->scratch, conv, strlen(conv)) != 0;
    if (bad || mock_table_put(&m->convs, m->scratch.p, m->scratch.len, &number, &off) < 0) {
        return -1;
    }
    if (conv_off != NULL) {
        *conv_off = off;
    }
    return CONVERSATION_BASE + (int64_t)number;
}

static const char *
str_field(const cJSON *root, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, name);

    return cJSON_IsString(item) ? item->valuestring : NULL;
}

static void
on_echo_answered(void *arg, int status, const char *sent, size_t sent_len, const char *resp,
                 size_t resp_len)
{
    struct mock_pending *p = arg;

    (void)status;
    (void)sent;
    (void)sent_len;
    (void)resp;
    (void)resp_len;
    answer(p->m, p->req, 200, BODY_OK, NULL);
    pending_free(p);
}

static char *
build_echo(struct mock *m, const char *channel, const cJSON *root, int64_t conversation_id)
{
    struct mock_event ev;
    const char *sender_type = str_field(root, "sender_type");
    const char *consumer = str_field(root, "consumer_name");

    memset(&ev, 0, sizeof(ev));
    ev.type = "message_created";
    ev.message_id = m->wh.next_message_id++;
    ev.conversation_id = conversation_id;
    ev.content_type = "Text";
    ev.sender_type = sender_type;
    ev.sender_label = strcmp(sender_type, "Consumer") == 0 && consumer != NULL ? consumer
                                                                               : "Mock User";
    ev.status = m->set.echo_status;
    ev.content = str_field(root, "content");
    ev.external_message_id = str_field(root, "external_message_id");
    ev.consumer_name = consumer;
    ev.business_id = str_field(root, "business_id");
    ev.channel_id = channel;
    ev.external_conversation_id = str_field(root, "external_conversation_id");
    return mock_webhook_build(&ev);
}

/* Sends the echo. Returns 1 when the 200 now waits for the receiver, else 0. */
static int
send_echo(struct mock *m, struct evhttp_request *req, const char *channel, const cJSON *root,
          int64_t conversation_id)
{
    char *body = build_echo(m, channel, root, conversation_id);
    char *copy = NULL;
    struct mock_pending *p = NULL;
    int waits = 0;

    if (body != NULL && m->set.echo_duplicate) {
        copy = strdup(body);
    }
    if (body != NULL && m->set.echo_before_response) {
        p = pending_new(m, req);
    }
    if (body == NULL || (m->set.echo_duplicate && copy == NULL) ||
        (m->set.echo_before_response && p == NULL)) {
        mock_util_log(m->quiet, "cannot build the echo webhook: out of memory");
        free(body);
        free(copy);
        if (p != NULL) {
            pending_free(p);
        }
        return 0;
    }
    if (mock_webhook_send(&m->wh, body, MOCK_SIGN_OK, m->set.echo_delay_ms,
                          p != NULL ? on_echo_answered : NULL, p) == 0) {
        waits = p != NULL;
    } else if (p != NULL) {
        pending_free(p);
    }
    if (copy != NULL) {
        (void)mock_webhook_send(&m->wh, copy, MOCK_SIGN_OK, m->set.echo_delay_ms, NULL, NULL);
    }
    return waits;
}

/* Records the delivery. Returns the conversation id, or -1 when out of memory. *dup tells
 * whether the key had been accepted before. */
static int64_t
record(struct mock *m, struct evhttp_request *req, const char *channel, struct mock_key *key,
       const cJSON *root, int *dup)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    struct mock_recv rec;
    uint32_t unused = 0;
    int64_t conversation_id;
    int created;
    const char *ext = str_field(root, "external_message_id");

    memset(&rec, 0, sizeof(rec));
    m->scratch.len = 0;
    if (mock_util_buf_add(&m->scratch, channel, strlen(channel) + 1) != 0 ||
        mock_util_buf_add(&m->scratch, ext, strlen(ext)) != 0) {
        return -1;
    }
    created = mock_table_put(&m->dedup, m->scratch.p, m->scratch.len, &unused, &rec.msg_off);
    conversation_id = created < 0
                          ? -1
                          : mock_ingest_conversation(m, channel,
                                                     str_field(root, "external_conversation_id"),
                                                     &rec.conv_off);
    if (conversation_id < 0) {
        return -1;
    }
    rec.arrival_ms = mock_util_now_ms();
    rec.key_idx = key->idx;
    rec.dup = created == 0;
    *dup = rec.dup;
    if (mock_recvlog_add(&m->log, &rec, (const char *)evbuffer_pullup(in, -1),
                         evbuffer_get_length(in)) == 0) {
        m->st.log_full++;
    }
    m->st.accepted++;
    m->st.unique += (uint64_t)(created == 1);
    m->st.duplicates += (uint64_t)(created == 0);
    key->accepted++;
    return conversation_id;
}

static void
accept_message(struct mock *m, struct evhttp_request *req, struct mock_key *key, const cJSON *root)
{
    char channel[CHANNEL_MAX];
    int64_t conversation_id;
    int dup = 0;

    if (parse_channel(request_path(req), channel, sizeof(channel)) != 0) {
        answer(m, req, 404, BODY_404, NULL); /* cannot happen: checked on arrival */
        return;
    }
    conversation_id = record(m, req, channel, key, root, &dup);
    if (conversation_id < 0) {
        mock_util_log(m->quiet, "cannot record a delivery: out of memory");
        answer(m, req, 500, BODY_500, NULL);
        return;
    }
    /* Partoo ignores a known key, so by default no message_created follows a redelivery. */
    if (m->set.echo && (!dup || m->set.echo_redeliveries) && mock_webhook_ready(&m->wh) &&
        send_echo(m, req, channel, root, conversation_id)) {
        return; /* on_echo_answered answers */
    }
    answer(m, req, 200, BODY_OK, NULL);
}

static void
validate(struct mock *m, struct evhttp_request *req)
{
    struct mock_key *key = NULL;
    cJSON *root;

    if (check_key(m, req, &key) != 0 || check_rate(m, req, key) != 0 ||
        check_content_type(m, req) != 0) {
        return;
    }
    root = check_body(m, req);
    if (root == NULL) {
        return;
    }
    check_user_agent(m, req);
    accept_message(m, req, key, root);
    cJSON_Delete(root);
}

/* ---- faults ---------------------------------------------------------------------------- */

/* The next scripted status, or -1 when the script is used up. */
static int
next_scripted(struct mock *m)
{
    if (m->script.pos >= m->script.len) {
        return -1;
    }
    return m->script.codes[m->script.pos++];
}

static void
after_delay(struct mock *m, struct evhttp_request *req)
{
    int code;

    if (m->set.down) {
        m->st.down_closed++;
        close_unanswered(m, req);
        return;
    }
    code = next_scripted(m);
    if (code == 0) {
        close_unanswered(m, req);
    } else if (code > 0 && code != 200) {
        answer_injected(m, req, code);
    } else if (mock_util_roll(&m->rng, m->set.error_rate)) {
        answer_injected(m, req, 500);
    } else if (mock_util_roll(&m->rng, m->set.rate_429)) {
        answer_injected(m, req, 429);
    } else {
        validate(m, req);
    }
}

static void
on_delay_timer(evutil_socket_t fd, short what, void *arg)
{
    struct mock_pending *p = arg;
    struct mock *m = p->m;
    struct evhttp_request *req = p->req;

    (void)fd;
    (void)what;
    pending_free(p);
    after_delay(m, req);
}

static void
defer(struct mock *m, struct evhttp_request *req)
{
    struct mock_pending *p = pending_new(m, req);
    struct timeval tv;

    tv.tv_sec = m->set.delay_ms / 1000;
    tv.tv_usec = (m->set.delay_ms % 1000) * 1000;
    if (p != NULL) {
        p->timer = evtimer_new(m->base, on_delay_timer, p);
    }
    if (p == NULL || p->timer == NULL || evtimer_add(p->timer, &tv) != 0) {
        if (p != NULL) {
            pending_free(p);
        }
        answer(m, req, 500, BODY_500, NULL);
    }
}

void
mock_ingest_handle(struct mock *m, struct evhttp_request *req)
{
    char channel[CHANNEL_MAX];

    m->st.requests++;
    m->st.in_flight++;
    if (m->st.in_flight > m->st.max_concurrent) {
        m->st.max_concurrent = m->st.in_flight;
    }
    remember_last(m, req);
    if (m->set.down) {
        m->st.down_closed++;
        close_unanswered(m, req);
    } else if (parse_channel(request_path(req), channel, sizeof(channel)) != 0) {
        answer(m, req, 404, BODY_404, NULL);
    } else if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
        answer(m, req, 405, BODY_405, NULL);
    } else if (mock_util_roll(&m->rng, m->set.drop_rate)) {
        close_unanswered(m, req);
    } else if (m->set.delay_ms > 0) {
        defer(m, req);
    } else {
        after_delay(m, req);
    }
}
