/*
 * store_tenant: the tenant registry (SPEC §11). Tables tenants, tenant_channels and
 * tenant_registry (migrations/0012); written here only. A tenant is one Partoo organisation:
 * its API key, its pace, its base URL and the channels it owns. Messages carry their
 * channel's tenant in outbox.tenant, kept true by 0012's triggers when a channel changes
 * hands, and the claim selects by it (obx_store_claim_tenants).
 *
 * The key is write-only: it goes in through obx_store_tenant_put and out only through
 * obx_store_tenant_load, which serve's delivery calls; every other view has the fingerprint.
 * With a sealing key (secrets_key_file) it is stored AES-256-GCM sealed (lib/secretbox.h).
 */
#ifndef OBX_STORE_TENANT_H
#define OBX_STORE_TENANT_H

#include "store.h"

#define OBX_TENANT_NAME_MAX 64
#define OBX_TENANT_KEY_MAX 4096       /* the longest API key taken, as for partoo_api_key_file */
#define OBX_TENANT_CHANNELS_MAX 10000 /* channels named in one change */

/* 1 when name is [A-Za-z0-9._-]{1,64}. */
int obx_store_tenant_name_valid(const char *name);

struct obx_tenant_channel {
    const char *channel_id;
    int readonly;
};

/* How a put treats an existing or missing tenant. */
enum obx_tenant_put_mode {
    OBX_TENANT_CREATE, /* `tenant add`: OBX_EDUP when it exists */
    OBX_TENANT_UPDATE, /* `tenant set`: OBX_ENOTFOUND when it does not */
    OBX_TENANT_UPSERT, /* PUT /v1/tenants/{name} */
};

/*
 * A change to one tenant. Every field left unset keeps the stored value (a new tenant gets
 * the configured defaults, shown as null). api_key is required for a new tenant.
 */
struct obx_tenant_spec {
    const char *name;
    const char *api_key; /* NUL-terminated; NULL keeps the stored key */
    int set_rate_limit;
    double rate_limit_per_min; /* with set_rate_limit: > 0, or 0 for "the configured one" */
    int set_rate_burst;
    int64_t rate_burst; /* with set_rate_burst: >= 1, or 0 for "the configured one" */
    int set_base_url;
    const char *partoo_base_url; /* with set_base_url: NULL for "the configured one" */
    /* Channels to own (a channel already owned gets the readonly flag given here). */
    const struct obx_tenant_channel *channels;
    size_t nchannels;
    int replace_channels; /* PUT: the channels given are all of them; others are released */
    const char *const *remove_channels; /* `tenant set --remove-channel` */
    size_t nremove;
};

/*
 * Applies spec in one transaction. sealing_key (32 bytes, or NULL) seals a new key.
 * *created = 1 when the tenant is new. A channel another tenant owns is OBX_ECONFLICT with
 * its id in conflict (nothing changed); a removed channel the tenant does not own is
 * ignored.
 */
OBX_MUST_CHECK enum obx_err obx_store_tenant_put(struct obx_store *st,
                                                 const struct obx_tenant_spec *spec,
                                                 enum obx_tenant_put_mode mode,
                                                 const uint8_t *sealing_key, int *created /* OUT */,
                                                 char *conflict /* OUT */, size_t conflict_len);

/* Whether a put in mode may go on when the tenant exists (or not): OBX_EDUP, OBX_ENOTFOUND,
 * OBX_EINVAL (a new tenant without a key) or OBX_OK. Both backends' rule. */
OBX_MUST_CHECK enum obx_err obx_store_tenant_put_allowed(const struct obx_tenant_spec *t,
                                                         enum obx_tenant_put_mode mode, int exists);

/* Removes the tenant; its channels are released (their messages wait for an owner, or go
 * with the default key). OBX_ENOTFOUND when there is no such tenant. */
OBX_MUST_CHECK enum obx_err obx_store_tenant_remove(struct obx_store *st, const char *name);

/* A tenant as shown (borrowed during the callback). Never the key. */
struct obx_tenant_row {
    const char *name;
    const char *key_fingerprint;
    int key_sealed;
    double rate_limit_per_min;   /* 0: the configured one */
    int64_t rate_burst;          /* 0: the configured one */
    const char *partoo_base_url; /* NULL: the configured one */
    int64_t created_at_ms, updated_at_ms;
    const struct obx_tenant_channel *channels;
    size_t nchannels;
};
typedef int (*obx_tenant_fn)(void *ctx, const struct obx_tenant_row *t);

/* Every tenant by name, or only `name` (OBX_ENOTFOUND when it does not exist). fn returns
 * nonzero to stop. */
OBX_MUST_CHECK enum obx_err obx_store_tenant_list(struct obx_store *st, const char *name,
                                                  obx_tenant_fn fn, void *ctx);

/* The registry's version: it changes with every put and remove (serve polls it). */
OBX_MUST_CHECK enum obx_err obx_store_tenant_version(struct obx_store *st,
                                                     int64_t *version /* OUT */);

/* A tenant as serve's delivery needs it: the key opened. */
struct obx_tenant_conf {
    char name[OBX_TENANT_NAME_MAX + 1];
    char *api_key;         /* owned; NULL when it cannot be opened (see key_error) */
    const char *key_error; /* static text: why api_key is NULL */
    char key_fingerprint[16];
    double rate_limit_per_min; /* 0: the configured one */
    int64_t rate_burst;        /* 0: the configured one */
    char *partoo_base_url;     /* owned; NULL: the configured one */
};

/* Every tenant, by name, keys opened with sealing_key (NULL: none configured). A sealed key
 * that does not open leaves api_key NULL and says why; it stops nothing else. */
OBX_MUST_CHECK enum obx_err obx_store_tenant_load(struct obx_store *st, const uint8_t *sealing_key,
                                                  struct obx_tenant_conf **out /* OUT */,
                                                  size_t *n /* OUT */);

/* Wipes the keys and frees what obx_store_tenant_load returned. */
void obx_store_tenant_conf_free(struct obx_tenant_conf *t, size_t n);

/* How many tenants there are and how many of their keys are stored in the clear. */
OBX_MUST_CHECK enum obx_err obx_store_tenant_count(struct obx_store *st, int64_t *tenants /* OUT */,
                                                   int64_t *clear_keys /* OUT */);

/*
 * Channels with messages waiting that no tenant owns (the default key would send them), by
 * id, at most max: what `status` names when there is no default key.
 */
typedef int (*obx_tenant_channel_fn)(void *ctx, const char *channel_id);
OBX_MUST_CHECK enum obx_err obx_store_tenant_unowned_waiting(struct obx_store *st, int max,
                                                             obx_tenant_channel_fn fn, void *ctx);

/* 1 read-only, 0 bidirectional, -1 no tenant owns the channel (readonly_channels decides). */
OBX_MUST_CHECK enum obx_err obx_store_tenant_channel_readonly(struct obx_store *st,
                                                              const char *channel_id,
                                                              int *readonly /* OUT */);

/* 1 when some tenant owns a read-only channel: retention walks accepted messages only then. */
OBX_MUST_CHECK enum obx_err obx_store_tenant_any_readonly(struct obx_store *st, int *any /* OUT */);

#endif
