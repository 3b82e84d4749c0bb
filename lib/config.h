/*
 * config: the one table of configuration options, and its parsing.
 *
 * Sources, each overriding the previous: built-in defaults, the `key = value`
 * file (`#` comments), OUTBOX_<KEY> environment variables, then command-line
 * flags (obx_config_set with OBX_SRC_FLAG). Every value is validated when it is
 * set; an unknown key or bad value is an error whose message names the key and
 * where it came from. The struct is plain data: logic modules read it, never
 * the environment.
 *
 * Secrets: partoo_api_key is never a config key. It is read by
 * obx_config_load_secrets() from OUTBOX_PARTOO_API_KEY (which wins) or
 * partoo_api_key_file. api_token is a config key but is masked when printed.
 */
#ifndef OBX_CONFIG_H
#define OBX_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "buf.h"
#include "outbox.h"

enum obx_config_source { OBX_SRC_DEFAULT = 0, OBX_SRC_FILE, OBX_SRC_ENV, OBX_SRC_FLAG };

struct obx_config {
    /* storage */
    char *db;                          /* path of the SQLite file; default "outbox.db" */
    char *db_schema;                   /* PostgreSQL schema; default "outbox" */
    char *node_name;                   /* PostgreSQL: this node's name; NULL: hostname:pid */
    int64_t node_lease_ms;             /* PostgreSQL: default 10s */
    int synchronous_full;              /* synchronous = full (1, default) | normal (0) */
    int64_t max_db_size;               /* bytes, 0 = no quota */
    int64_t retention_ms;              /* default 30d; 0 = keep forever */
    int64_t webhook_hash_retention_ms; /* default 365d; 0 = forever (replay guard) */

    /* Partoo */
    char *partoo_base_url;     /* default "https://api.partoo.co/v2" */
    char *partoo_api_key_file; /* NULL = none */
    char *partoo_api_key;      /* secret, loaded by obx_config_load_secrets(); never printed */
    char *ca_file;             /* NULL = system CA store */
    char *readonly_channels;   /* comma-separated channel ids, NULL = none */
    char *audit_key_file;      /* key of the keyed audit chain (audit.h); NULL = plain */
    char *secrets_key_file;    /* key sealing tenant API keys (secretbox.h); NULL = clear */

    /* delivery */
    int64_t max_inflight;    /* concurrent requests; default 16, 1..1024 */
    double rate_limit_per_s; /* requests per second per API key; 0 = unlimited; default 290/min */
    int64_t rate_burst;      /* token bucket size; default 1 */
    int64_t retry_base_ms;   /* default 1s */
    int64_t retry_cap_ms;    /* default 5m */
    int64_t max_attempts;    /* default 25; attempts that count (not 401/403/429/outage) */
    int64_t max_age_ms;      /* 0 = never (default) */
    int64_t confirm_timeout_ms;     /* default 10m */
    int64_t max_resends;            /* default 2 */
    int64_t auth_probe_interval_ms; /* default 60s */
    int64_t connect_timeout_ms;     /* default 10s */
    int64_t request_timeout_ms;     /* default 30s */
    int64_t shutdown_timeout_ms;    /* default 10s */

    /* listeners */
    char *api_listen;         /* default "127.0.0.1:8787" */
    char *api_token;          /* secret; NULL = no auth (loopback only) */
    char *webhook_listen;     /* default "127.0.0.1:8788" */
    char *webhook_public_key; /* 64 hex chars or PEM base64 line; NULL = default for base URL */
    char *webhook_public_key_file; /* PEM file; NULL = none */
    char *webhook_path_secret; /* extra path segment required after /webhooks/partoo; NULL = none */
    char *webhook_required_header; /* "X-Name: value" required on webhooks; NULL = none */
    char *inbox_url;               /* where replies are relayed; NULL = pull only */

    /* limits */
    int64_t max_body_bytes;         /* HTTP request bodies; default 1M */
    int64_t webhook_max_body_bytes; /* webhook request bodies; default 8M */
    int64_t http_body_budget;       /* unanswered request bytes per listener; default 64M */
    int64_t max_content_bytes;      /* message content; default 64K */
    int64_t max_json_depth;         /* default 32 */

    /* logging */
    int log_level;  /* enum obx_log_level; default info */
    int log_format; /* enum obx_log_format; default text */

    /*
     * Parsed forms of the string options above, built when the option is set (so they are
     * never parsed again at use time) and freed by obx_config_release. Read them; never
     * set them, nor the strings they come from, directly.
     */
    char **readonly_channel_ids; /* readonly_channels split, sorted by strcmp, no
                                    duplicates (obx_config_channel_readonly bsearches it) */
    size_t nreadonly_channel_ids;
    char *webhook_header_name;  /* webhook_required_header's name; NULL = none */
    char *webhook_header_value; /* and its value (secret: wiped when freed) */
};

/* Fills c with the defaults. Release with obx_config_release(). */
OBX_MUST_CHECK enum obx_err obx_config_init(struct obx_config *c);

/* Frees every string in c. NULL is a no-op. */
void obx_config_release(struct obx_config *c);

/*
 * Sets one option by name from a string. src only shapes the error message.
 * On failure returns OBX_ECONFIG (unknown key, bad value) or OBX_ENOMEM, appends
 * a one-line message naming the key to err (may be NULL) and leaves c unchanged.
 */
OBX_MUST_CHECK enum obx_err obx_config_set(struct obx_config *c, const char *key, const char *value,
                                           enum obx_config_source src, struct obx_buf *err);

/* Reads a `key = value` file. Errors name the file, line and key. */
OBX_MUST_CHECK enum obx_err obx_config_load_file(struct obx_config *c, const char *path,
                                                 struct obx_buf *err);

/*
 * Applies every OUTBOX_<KEY> variable of envp (NULL-terminated, like environ)
 * whose key is a known option. OUTBOX_PARTOO_API_KEY is skipped here (secret).
 * An OUTBOX_ variable naming no option is an error.
 */
OBX_MUST_CHECK enum obx_err obx_config_load_env(struct obx_config *c, char *const *envp,
                                                struct obx_buf *err);

/*
 * Loads partoo_api_key: OUTBOX_PARTOO_API_KEY from envp wins, else the first line
 * of partoo_api_key_file (trailing whitespace trimmed). No key at all is not an
 * error here (serve decides). The key's value never appears in err.
 */
OBX_MUST_CHECK enum obx_err obx_config_load_secrets(struct obx_config *c, char *const *envp,
                                                    struct obx_buf *err);

/*
 * Takes OUTBOX_PARTOO_API_KEY out of the process environment (serve, at start): its value
 * is overwritten in place (so that /proc/PID/environ and a core no longer show it) and the
 * variable is unset (so that no child inherits it). A copy is kept in this module, and
 * obx_config_load_secrets() uses it whenever envp has no OUTBOX_PARTOO_API_KEY, so a
 * SIGHUP reload, which re-reads the environment, still finds the key exactly as before (a
 * running process's environment cannot change from outside anyway). envp is usually
 * environ. Returns OBX_ENOMEM if the copy cannot be made (then nothing is changed).
 * Process-wide, like the environment it stands for; not thread-safe (call before threads).
 */
OBX_MUST_CHECK enum obx_err obx_config_hide_env_key(char **envp);

/* Wipes and frees the copy kept by obx_config_hide_env_key(). */
void obx_config_forget_env_key(void);

/* Cross-field checks (e.g. retry_base <= retry_cap). */
OBX_MUST_CHECK enum obx_err obx_config_validate(const struct obx_config *c, struct obx_buf *err);

/* Prints every option as `key = value` with secrets masked ("********" or "(unset)"). */
void obx_config_print(const struct obx_config *c, FILE *out);

/* Returns 1 when name is an option key. */
int obx_config_has_key(const char *name);

/* Returns 1 when name is an option key whose value is a secret (masked when printed). */
int obx_config_is_secret(const char *name);

/*
 * Returns 1 when channel_id is listed in readonly_channels: a binary search of the list
 * parsed when the option was set (O(log n), no parsing).
 */
int obx_config_channel_readonly(const struct obx_config *c, const char *channel_id);

/*
 * NULL when s is a URL partoo_base_url accepts (http:// or https:// and a host; http:// only
 * to a loopback host), else why not (static text): tenants' base URLs obey the same rule.
 */
const char *obx_config_check_url(const char *s);

/* Value parsers shared with the CLI. Each returns OBX_EINVAL on a malformed value. */
OBX_MUST_CHECK enum obx_err obx_config_parse_duration_ms(const char *s, int64_t *out /* OUT */);
OBX_MUST_CHECK enum obx_err obx_config_parse_rate_per_s(const char *s, double *out /* OUT */);
OBX_MUST_CHECK enum obx_err obx_config_parse_size(const char *s, int64_t *out /* OUT */);

#endif
