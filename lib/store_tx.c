/* store_tx: transactions over the store (see store_tx.h). */
#include "store_tx.h"

enum obx_err
obx_store_tx_begin(struct obx_store *st)
{
    return obx_db_begin(st->db);
}

enum obx_err
obx_store_tx_end(struct obx_store *st, enum obx_err err)
{
    return obx_db_end(st->db, err);
}

enum obx_err
obx_store_tx_read_begin(struct obx_store *st)
{
    return obx_db_exec(st->db, "BEGIN");
}

enum obx_err
obx_store_tx_read_end(struct obx_store *st)
{
    return obx_db_exec(st->db, "COMMIT");
}
