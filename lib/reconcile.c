/* reconcile: stored webhook events -> confirmations and inbox replies. */
#include "reconcile.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "store_tenant.h"
#include "err.h"
#include "buf.h"
#include "json.h"
#include "mem.h"
#include "msg.h"
#include "store_inbox.h"
#include "store_tx.h"

/* What one event says, borrowed from its parsed document. */
struct event_view {
    const char *type;
    char message_id[256]; /* Partoo's message id as text; "" when absent */
    char conversation_id[256];
    char business_id[256];
    int id_too_long; /* an id did not fit: the event is not interpreted */
    const char *status;
    const char *sender_type;
    const char *sender_label;
    const char *content_type;
    const char *content;
    const char *date;
    const char *external_message_id;      /* ours, when we ingested the message */
    const char *channel_id;               /* conversation.custom_channel.id */
    const char *external_conversation_id; /* conversation.custom_channel.external_conversation_id */
    int channel_readonly;                 /* conversation.custom_channel.is_readonly */
};

/*
 * Partoo ids are integers in some payloads and strings in others; keep them as text.
 * Returns -1 when a string id does not fit: it is never truncated (two ids sharing a
 * prefix would collapse into one).
 */
static int
id_text(const obx_json *v, char *out, size_t n)
{
    out[0] = '\0';
    if (obx_json_is_string(v)) {
        if (strlen(obx_json_string(v)) >= n)
            return -1;
        snprintf(out, n, "%s", obx_json_string(v));
    } else if (obx_json_is_number(v)) {
        double d = obx_json_number(v);
        if (d == floor(d) && fabs(d) < 1e15)
            snprintf(out, n, "%.0f", d);
    }
    return 0;
}

static const char *
str_at(const obx_json *obj, const char *name)
{
    return obx_json_string(obx_json_get(obj, name));
}

static void
read_event(const obx_json *doc, struct event_view *e)
{
    const obx_json *payload = obx_json_get(doc, "payload");
    const obx_json *msg = obx_json_get(payload, "message");
    const obx_json *conv = obx_json_get(payload, "conversation");
    const obx_json *cc = obx_json_get(conv, "custom_channel");

    memset(e, 0, sizeof *e);
    e->type = str_at(doc, "type");
    e->id_too_long = id_text(obx_json_get(msg, "id"), e->message_id, sizeof e->message_id) != 0 ||
                     id_text(obx_json_get(conv, "id"), e->conversation_id,
                             sizeof e->conversation_id) != 0 ||
                     id_text(obx_json_get(obx_json_get(conv, "business"), "id"), e->business_id,
                             sizeof e->business_id) != 0;
    e->status = str_at(msg, "status");
    e->sender_type = str_at(msg, "sender_type");
    e->sender_label = str_at(msg, "sender_label");
    e->content_type = str_at(msg, "content_type");
    e->content = str_at(msg, "content");
    e->date = str_at(msg, "date");
    e->external_message_id = str_at(obx_json_get(msg, "custom_channel"), "external_message_id");
    e->channel_id = str_at(cc, "id");
    e->external_conversation_id = str_at(cc, "external_conversation_id");
    e->channel_readonly = obx_json_is_true(obx_json_get(cc, "is_readonly"));
}

static enum obx_err
insert_reply(struct obx_store *st, int64_t event_id, const struct event_view *e, int *added)
{
    struct obx_new_reply r = {
        .partoo_message_id = e->message_id,
        .event_id = event_id,
        .channel_id = e->channel_id,
        .external_conversation_id = e->external_conversation_id,
        .partoo_conversation_id = e->conversation_id,
        .business_id = e->business_id,
        .sender_type = e->sender_type,
        .sender_label = e->sender_label,
        .content_type = e->content_type,
        .content = e->content,
        .message_date = e->date,
    };

    return obx_store_inbox_add_reply(st, &r, added);
}

static int
is_message_event(const char *type)
{
    return type && (strcmp(type, "message_created") == 0 || strcmp(type, "message_updated") == 0);
}

/* Applies one parsed event; returns the outcome name through *outcome. */
/* The owning tenant's flag decides (SPEC §11); readonly_channels decides for the others. */
static int
channel_readonly(struct obx_store *st, const struct obx_config *cfg, const char *channel)
{
    int ro = -1;

    if (obx_store_tenant_channel_readonly(st, channel, &ro) != OBX_OK)
        ro = -1;
    return ro >= 0 ? ro : obx_config_channel_readonly(cfg, channel);
}

static enum obx_err
apply_event(struct obx_store *st, const struct obx_config *cfg, int64_t event_id,
            const struct event_view *e, const char **outcome, struct obx_reconcile_result *r)
{
    char reason[200];
    enum obx_err err;
    int added = 0;

    *outcome = "ignored";
    if (!is_message_event(e->type) || !e->message_id[0] || e->id_too_long)
        return OBX_OK;
    if (e->external_message_id) {
        /* Cut at character boundaries: the reason lands in the audit trail. */
        const char *status = e->status ? e->status : "unknown";
        snprintf(reason, sizeof reason, "confirmed by %s (partoo message %.*s, status %.*s)",
                 e->type, (int)obx_buf_utf8_prefix(e->message_id, 64), e->message_id,
                 (int)obx_buf_utf8_prefix(status, 32), status);
        err = obx_store_confirm(st, e->channel_id, e->external_message_id, e->message_id, e->status,
                                reason);
        if (err == OBX_ENOTFOUND || err == OBX_ECONFLICT) {
            *outcome = "unmatched";
            return OBX_OK;
        }
        if (err == OBX_OK)
            *outcome = "confirmed";
        return err;
    }
    /* No external id: a message typed in Partoo. A reply when a user wrote it in a
     * conversation of a bidirectional custom channel. */
    if (strcmp(e->type, "message_created") != 0 || !e->sender_type ||
        strcmp(e->sender_type, "User") != 0 || !e->channel_id || e->channel_readonly ||
        channel_readonly(st, cfg, e->channel_id))
        return OBX_OK;
    /* The id becomes the relay's Idempotency-Key header: CR/LF would inject headers. A
     * reply whose id is not [A-Za-z0-9_-]{1,128} is not taken into the inbox. */
    if (!obx_msg_partoo_id_valid(e->message_id)) {
        *outcome = "unparsable";
        return OBX_OK;
    }
    err = insert_reply(st, event_id, e, &added);
    if (err == OBX_OK) {
        *outcome = "reply";
        r->replies += added;
    }
    return err;
}

static enum obx_err
mark_event(struct obx_store *st, int64_t id, const struct event_view *e, const char *outcome)
{
    return obx_store_inbox_mark_event(st, id, e->type, e->message_id, outcome);
}

static void
count_outcome(struct obx_reconcile_result *r, const char *outcome)
{
    r->processed++;
    if (strcmp(outcome, "confirmed") == 0)
        r->confirmed++;
    else if (strcmp(outcome, "unmatched") == 0)
        r->unmatched++;
    else if (strcmp(outcome, "unparsable") == 0)
        r->unparsable++;
    else if (strcmp(outcome, "ignored") == 0)
        r->ignored++;
}

/* Processes one stored event (id, raw body). */
static enum obx_err
process_one(struct obx_store *st, const struct obx_config *cfg, int64_t id, const char *body,
            size_t len, struct obx_reconcile_result *r)
{
    struct event_view e;
    obx_json *doc = NULL;
    const char *outcome = "unparsable";
    enum obx_err err = OBX_OK;

    memset(&e, 0, sizeof e);
    /* Events were admitted up to webhook_max_body_bytes (max_body_bytes before it existed). */
    if (obx_json_parse(body, len,
                       (size_t)(cfg->webhook_max_body_bytes > cfg->max_body_bytes
                                    ? cfg->webhook_max_body_bytes
                                    : cfg->max_body_bytes),
                       (int)cfg->max_json_depth, &doc, NULL) == OBX_OK &&
        obx_json_is_object(doc)) {
        read_event(doc, &e);
        err = apply_event(st, cfg, id, &e, &outcome, r);
    }
    if (err == OBX_OK)
        err = mark_event(st, id, &e, outcome);
    if (err == OBX_OK)
        count_outcome(r, outcome);
    obx_json_free(doc);
    return err;
}

enum obx_err
obx_reconcile_has_backlog(struct obx_store *st, int *backlog)
{
    return obx_store_inbox_has_backlog(st, backlog);
}

enum obx_err
obx_reconcile_events(struct obx_store *st, const struct obx_config *cfg,
                     const struct obx_reconcile_event *ev, size_t n, struct obx_reconcile_result *r)
{
    enum obx_err err = OBX_OK;

    for (size_t i = 0; err == OBX_OK && i < n; i++)
        err = process_one(st, cfg, ev[i].id, ev[i].body ? ev[i].body : "", ev[i].len, r);
    return err;
}

enum obx_err
obx_reconcile_run(struct obx_store *st, const struct obx_config *cfg, int max,
                  struct obx_reconcile_result *r)
{
    struct obx_reconcile_result res = {0};
    struct obx_stored_event *ev = obx_calloc((size_t)max, sizeof *ev);
    size_t n = 0;
    enum obx_err err = obx_store_tx_begin(st);

    if (err == OBX_OK && !ev)
        err = OBX_ENOMEM;
    /* The bodies are copies: the read is over before the events are marked. */
    if (err == OBX_OK)
        err = obx_store_inbox_pending_events(st, max, ev, &n);
    for (size_t i = 0; err == OBX_OK && i < n; i++)
        err = process_one(st, cfg, ev[i].id, ev[i].body ? ev[i].body : "", ev[i].len, &res);
    obx_store_inbox_events_release(ev, n);
    obx_free(ev);
    err = obx_store_tx_end(st, err);
    if (err == OBX_OK && r)
        *r = res;
    return err;
}
