/*
 * Internal header of mock_partoo, the fake Partoo ingest API used by the integration tests and
 * benchmarks (see README.md beside this file). Not part of liboutbox: nothing here is API.
 *
 * One process, one libevent loop, no threads. Every function below runs on that loop.
 *
 * Modules (each non-static symbol is mock_<file>_<verb>):
 *   table.c        string pool + open-addressing hash table (dedup, conversations, API keys)
 *   keys.c         API keys: accepted list, forced 401/403, sliding-window rate limit
 *   recvlog.c      compact log of accepted deliveries, in arrival order
 *   util.c         growable buffer, clocks, PRNG, JSON replies
 *   ingest.c       POST .../custom-channels/{channel_id}/messages: faults, validation, records
 *   control.c      /_mock/ endpoints
 *   webhook.c      signed message_created events sent to the receiver under test
 *   mock_partoo.c  command line, listeners, signals, start-up and teardown
 */
#ifndef MOCK_PARTOO_MOCK_H
#define MOCK_PARTOO_MOCK_H

/* Every .c file includes this header first: strndup, getopt_long, clock_gettime, gmtime_r. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

struct cJSON;
struct event;
struct event_base;
struct evhttp;
struct evhttp_bound_socket;
struct evhttp_connection;
struct evhttp_request;
struct evp_pkey_st;

#define MOCK_BODY_LIMIT (1024 * 1024)          /* larger request bodies get 413 */
#define MOCK_BODY_HARD_LIMIT (4 * 1024 * 1024) /* evhttp itself refuses beyond this */
#define MOCK_MAX_KEYS 4096                     /* distinct API keys tracked at once */
#define MOCK_MAX_RATE_LIMIT 1000000            /* requests per minute per key */
#define MOCK_MAX_SCRIPT 100000                 /* scripted responses queued at once */
#define MOCK_WINDOW_MS 60000                   /* Partoo's rate-limit window */

/* ---- util.c ---------------------------------------------------------------------------- */

/* Growable byte buffer. Invariant: p is NULL or NUL-terminated at p[len]; len excludes the NUL. */
struct mock_buf {
    char *p;
    size_t len;
    size_t cap;
};

int mock_util_buf_add(struct mock_buf *b, const void *data, size_t len);
int mock_util_buf_addc(struct mock_buf *b, char c);
void mock_util_buf_release(struct mock_buf *b);

int64_t mock_util_now_ms(void);  /* wall clock, epoch milliseconds */
int64_t mock_util_mono_ms(void); /* monotonic clock, for timers and rate windows */
uint64_t mock_util_rand(uint64_t *state);
int mock_util_roll(uint64_t *state, double p); /* 1 with probability p; no draw when p <= 0 */

/* Sends code with body (a NUL-terminated JSON text) and Content-Type: application/json. */
void mock_util_reply(struct evhttp_request *req, int code, const char *body);
/* Same, with a JSON tree; the tree is borrowed. Replies 500 when it cannot be printed. */
void mock_util_reply_tree(struct evhttp_request *req, int code, const struct cJSON *tree);
/* Replies {"error":msg} with code. */
void mock_util_reply_error(struct evhttp_request *req, int code, const char *msg);
/* Closes req's connection without an answer. req and its connection are freed. */
void mock_util_drop(struct evhttp_request *req);
/* Parses a request body as JSON. Returns NULL when it is not complete, valid JSON. */
struct cJSON *mock_util_parse_body(struct evhttp_request *req);
void mock_util_log(int quiet, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- table.c --------------------------------------------------------------------------- */

/* Append-only storage for keys. Offsets stay valid when it grows; pointers do not. */
struct mock_pool {
    char *data;
    size_t len; /* bytes in use; offset 0 is reserved so that 0 means "none" */
    size_t cap;
};

struct mock_slot {
    uint64_t hash;
    uint32_t key_off; /* offset of the key in the pool; 0 = empty slot */
    uint32_t value;
};

/* Byte-string keys -> uint32 values. No deletion: mock_table_clear() empties it. */
struct mock_table {
    struct mock_slot *slots;
    size_t cap; /* power of two, 0 until the first insert */
    size_t count;
    struct mock_pool pool;
};

void mock_table_init(struct mock_table *t);
void mock_table_release(struct mock_table *t);
void mock_table_clear(struct mock_table *t);
/* Finds key or inserts it with *value. Returns 1 when inserted, 0 when it existed (then *value
 * receives the stored value), -1 when out of memory. *key_off receives the key's pool offset. */
int mock_table_put(struct mock_table *t, const char *key, size_t len, uint32_t *value,
                   uint32_t *key_off);
/* Returns 1 and sets *value when key is present, else 0. */
int mock_table_get(const struct mock_table *t, const char *key, size_t len, uint32_t *value);
/* The key stored at key_off; borrowed, valid until the next mock_table_put on t. */
const char *mock_table_key(const struct mock_table *t, uint32_t key_off, size_t *len);

/* ---- keys.c ---------------------------------------------------------------------------- */

struct mock_key {
    char *name;
    uint32_t idx;      /* position in mock_keys.v */
    int listed;        /* accepted: named by --api-keys, or any key when none were */
    int forced_status; /* 0, 401 or 403, set through /_mock/faults key_status */
    uint64_t requests; /* Partoo requests that presented this key and passed auth */
    uint64_t accepted;
    uint64_t rate_limited;
    int64_t *window;    /* ring: mono ms of the last window_cap admitted requests */
    size_t window_cap;  /* the rate limit the ring was sized for */
    size_t window_head; /* oldest entry */
    size_t window_len;
};

struct mock_keys {
    struct mock_key **v;
    size_t n;
    size_t cap;
    struct mock_table index; /* name -> idx */
    int any_key;             /* 1 when --api-keys was not given */
};

int mock_keys_init(struct mock_keys *k, const char *csv);
void mock_keys_release(struct mock_keys *k);
/* Finds name; with create, adds it (listed when any key is accepted). NULL when absent, when
 * MOCK_MAX_KEYS is reached or out of memory. Borrowed, valid until mock_keys_release(). */
struct mock_key *mock_keys_find(struct mock_keys *k, const char *name, int create);
/* Sliding 60 s window. Returns 0 when the request is admitted (and recorded), else the
 * milliseconds until a slot frees. limit_per_min <= 0 admits everything. */
int64_t mock_keys_admit(struct mock_key *key, int64_t limit_per_min, int64_t now_mono_ms);
/* Clears counters, windows and forced statuses. */
void mock_keys_reset(struct mock_keys *k);

/* ---- recvlog.c ------------------------------------------------------------------------- */

/* One accepted delivery: 24 bytes, strings live in the dedup and conversation pools. */
struct mock_recv {
    int64_t arrival_ms; /* epoch ms */
    uint32_t msg_off;   /* dedup pool: "channel\0external_message_id" */
    uint32_t conv_off;  /* conversation pool: "channel\0external_conversation_id" */
    uint32_t key_idx;   /* index in mock_keys.v */
    uint32_t dup;       /* 1 when the same key had been delivered before */
};

struct mock_body {
    uint64_t seq; /* 0 = empty */
    char *data;
    size_t len;
    size_t cap;
};

struct mock_recvlog {
    struct mock_recv *v; /* seq n is v[n - 1] */
    size_t n;
    size_t cap;
    size_t max; /* entries kept at most; later ones are counted in overflow */
    uint64_t overflow;
    struct mock_body *bodies; /* ring: raw bodies of the last nbodies entries */
    size_t nbodies;
};

int mock_recvlog_init(struct mock_recvlog *l, size_t max, size_t keep_bodies);
void mock_recvlog_release(struct mock_recvlog *l);
void mock_recvlog_clear(struct mock_recvlog *l);
/* Appends r (and a copy of body). Returns its seq, 0 when not logged (full or no memory). */
uint64_t mock_recvlog_add(struct mock_recvlog *l, const struct mock_recv *r, const char *body,
                          size_t len);
/* Raw body of seq; NULL once it left the ring. Borrowed until the next add or clear. */
const char *mock_recvlog_body(const struct mock_recvlog *l, uint64_t seq, size_t *len);

/* ---- webhook.c ------------------------------------------------------------------------- */

enum mock_sign {
    MOCK_SIGN_OK,        /* X-Partoo-Signature-v1 with the configured key */
    MOCK_SIGN_NONE,      /* no signature header */
    MOCK_SIGN_OTHER_KEY, /* signed with a key the receiver does not know */
    MOCK_SIGN_FLIPPED    /* right key, one bit of the signature flipped */
};

/* What a message_created / message_updated event says. NULL strings become JSON null. */
struct mock_event {
    const char *type;
    int64_t message_id;
    int64_t conversation_id;
    const char *date; /* NULL: now */
    const char *content_type;
    const char *sender_type;
    const char *sender_label;
    const char *status;
    const char *content;
    const char *external_message_id; /* NULL: message.custom_channel is null */
    const char *consumer_name;
    const char *business_id;
    const char *channel_id;
    const char *external_conversation_id;
};

/* Called once per send when the receiver answered (status 0: no answer). sent/resp are
 * borrowed for the call only. */
typedef void (*mock_webhook_done_fn)(void *arg, int status, const char *sent, size_t sent_len,
                                     const char *resp, size_t resp_len);

struct mock_wh_job;

struct mock_webhook {
    struct event_base *base;
    struct evp_pkey_st *key;   /* from --webhook-seed, NULL when not given */
    struct evp_pkey_st *other; /* a second key, for forged signatures */
    char *url;                 /* as given */
    char *host;
    int port;
    char *path;                       /* path and query sent in the request line */
    struct evhttp_connection **conns; /* keep-alive pool, created on first use */
    int *conn_load;                   /* requests queued on each connection */
    int nconns;
    LIST_HEAD(mock_wh_jobs, mock_wh_job) jobs;
    uint64_t sent;   /* answered 2xx */
    uint64_t failed; /* other status or no answer */
    int64_t next_message_id;
    int quiet;
};

int mock_webhook_init(struct mock_webhook *wh, struct event_base *base, const char *seed_hex,
                      int nconns, int quiet);
/* Sets the receiver URL (http://host[:port]/path); NULL or "" clears it. Fails, changing
 * nothing, on a bad URL or while deliveries are in flight. Returns 0 or -1 with *why set to a
 * fixed string. */
int mock_webhook_set_url(struct mock_webhook *wh, const char *url, const char **why);
/* Returns 0 when url is acceptable to mock_webhook_set_url, else -1 with *why set. */
int mock_webhook_check_url(const char *url, const char **why);
int mock_webhook_ready(const struct mock_webhook *wh);
/* Writes the public key as 64 hex characters + NUL. Returns -1 without a key. */
int mock_webhook_public_hex(const struct mock_webhook *wh, char out[65]);
/* Builds the event JSON text. Caller frees with free(); NULL when out of memory. */
char *mock_webhook_build(const struct mock_event *ev);
/* Sends body (takes ownership) after delay_ms. done may be NULL. Returns 0, or -1 and then
 * neither done is called nor body kept. */
int mock_webhook_send(struct mock_webhook *wh, char *body, enum mock_sign sign, int64_t delay_ms,
                      mock_webhook_done_fn done, void *arg);
/* Frees connections and pending sends without calling their done callbacks. */
void mock_webhook_release(struct mock_webhook *wh);

/* ---- the server (mock_partoo.c, ingest.c, control.c) ----------------------------------- */

/* Everything /_mock/faults can change. /_mock/reset restores the copy taken at start-up. */
struct mock_settings {
    int down;             /* Partoo requests closed unanswered (see README) */
    double drop_rate;     /* fraction closed unanswered */
    int64_t delay_ms;     /* answer this late */
    double error_rate;    /* fraction answered 500 */
    double rate_429;      /* fraction answered 429 */
    char retry_after[64]; /* Retry-After of injected 429s */
    int64_t rate_limit;   /* per key per minute, 0 = unlimited */
    int echo;             /* send a message_created echo per accepted message */
    int64_t echo_delay_ms;
    int echo_duplicate;       /* send each echo twice */
    int echo_redeliveries;    /* also echo a key accepted before (Partoo ignores those) */
    int echo_before_response; /* answer the client only once the echo was answered */
    char echo_status[32];     /* "status" of echoed messages */
};

struct mock_stats {
    uint64_t requests; /* every request outside /_mock/ */
    uint64_t accepted; /* answered 200 */
    uint64_t unique;
    uint64_t duplicates;
    uint64_t rate_limited;  /* 429 from the per-key limiter */
    uint64_t injected;      /* answers chosen by faults (script, error_rate, rate_429) */
    uint64_t rejected[600]; /* non-200 answers by status code */
    uint64_t dropped;       /* closed without an answer, down included */
    uint64_t down_closed;   /* closed because the mock was down */
    uint64_t nulls_seen;    /* bodies with a JSON null at the top level */
    uint64_t unknown_fields_seen;
    uint64_t bad_user_agent;
    uint64_t in_flight;      /* Partoo requests not answered yet */
    uint64_t max_concurrent; /* highest in_flight */
    uint64_t log_full;       /* accepted but not logged: --max-log reached */
};

/* The scripted answers queued by /_mock/faults "script". */
struct mock_script {
    int *codes;
    size_t len;
    size_t pos; /* next to use */
};

/* The last request outside /_mock/, kept raw and turned into JSON on demand. */
struct mock_last {
    int present;
    char method[16];
    struct mock_buf uri;
    struct mock_buf headers; /* name\0value\0 pairs */
    struct mock_buf body;
};

struct mock_pending;

struct mock {
    struct event_base *base;
    struct evhttp *http;               /* main listener: Partoo API and /_mock/ */
    struct evhttp *control_http;       /* --control-listen: /_mock/ only; NULL when not given */
    struct evhttp_bound_socket *bound; /* main socket; NULL while closed by down */
    char *listen_host;
    int port;               /* actual port of the main socket */
    struct event *up_timer; /* ends a down_ms outage */
    struct mock_settings set;
    struct mock_settings startup;
    struct mock_script script;
    struct mock_stats st;
    struct mock_keys keys;
    struct mock_table dedup; /* "channel\0external_message_id" */
    struct mock_table convs; /* "channel\0external_conversation_id" -> conversation number */
    struct mock_recvlog log;
    struct mock_last last;
    struct mock_webhook wh;
    LIST_HEAD(mock_pendings, mock_pending) pending;
    struct mock_buf scratch;
    uint64_t rng;
    int quiet;
};

/* mock_partoo.c: takes the mock down or up. down_ms > 0 brings it back up by itself. */
int mock_partoo_set_down(struct mock *m, int down, int64_t down_ms);

/* ingest.c */
void mock_ingest_handle(struct mock *m, struct evhttp_request *req);
/* Conversation number of (channel, conv), allocated on first use; -1 when out of memory.
 * *conv_off (may be NULL) receives the key's offset in m->convs. */
int64_t mock_ingest_conversation(struct mock *m, const char *channel, const char *conv,
                                 uint32_t *conv_off);
/* Frees deferred answers without sending them (shutdown). */
void mock_ingest_release(struct mock *m);

/* control.c */
void mock_control_handle(struct mock *m, struct evhttp_request *req, const char *path);

#endif
