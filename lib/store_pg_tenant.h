/*
 * store_pg_tenant: the tenant registry on PostgreSQL (issue 15; SPEC §11 and §12): the
 * functions of store_tenant.h with the same items and results, on the tables of
 * migrations/postgresql/0005_tenants. store_tenant.c hands its calls here when the store is
 * on PostgreSQL, so `outbox tenant` and serve's delivery use one interface.
 */
#ifndef OBX_STORE_PG_TENANT_H
#define OBX_STORE_PG_TENANT_H

#include "store_tenant.h"

OBX_MUST_CHECK enum obx_err obx_store_pg_tenant_put(struct obx_store *st,
                                                    const struct obx_tenant_spec *spec,
                                                    enum obx_tenant_put_mode mode,
                                                    const uint8_t *sealing_key,
                                                    int *created /* OUT */,
                                                    char *conflict /* OUT */, size_t conflict_len);
OBX_MUST_CHECK enum obx_err obx_store_pg_tenant_remove(struct obx_store *st, const char *name);
OBX_MUST_CHECK enum obx_err obx_store_pg_tenant_list(struct obx_store *st, const char *name,
                                                     obx_tenant_fn fn, void *ctx);
OBX_MUST_CHECK enum obx_err obx_store_pg_tenant_version(struct obx_store *st,
                                                        int64_t *version /* OUT */);
OBX_MUST_CHECK enum obx_err obx_store_pg_tenant_load(struct obx_store *st,
                                                     const uint8_t *sealing_key,
                                                     struct obx_tenant_conf **out /* OUT */,
                                                     size_t *n /* OUT */);

/* As obx_store_tenant_channel_readonly. */
OBX_MUST_CHECK enum obx_err obx_store_pg_tenant_channel_readonly(struct obx_store *st,
                                                                 const char *channel_id,
                                                                 int *readonly /* OUT */);

/* As obx_store_tenant_any_readonly. */
OBX_MUST_CHECK enum obx_err obx_store_pg_tenant_any_readonly(struct obx_store *st,
                                                             int *any /* OUT */);

#endif
