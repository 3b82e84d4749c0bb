/* store_tx: transactions over the store (see store_tx.h). */
#include "store_tx.h"

#include "pg.h"

/* On PostgreSQL a call's transaction is BEGIN, or a savepoint of the store thread's group. */
enum obx_err
obx_store_tx_begin(struct obx_store *st)
{
    return st->pg ? obx_pg_tx_begin(st->pg) : obx_db_begin(st->db);
}

enum obx_err
obx_store_tx_end(struct obx_store *st, enum obx_err err)
{
    return st->pg ? obx_pg_tx_end(st->pg, err) : obx_db_end(st->db, err);
}

enum obx_err
obx_store_tx_read_begin(struct obx_store *st)
{
    /* PostgreSQL: one snapshot for the reads; inside a group they share its transaction. */
    if (st->pg)
        return obx_pg_in_group(st->pg)
                   ? OBX_OK
                   : obx_pg_exec(st->pg, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY");
    return obx_db_exec(st->db, "BEGIN");
}

enum obx_err
obx_store_tx_read_end(struct obx_store *st)
{
    if (st->pg)
        return obx_pg_in_group(st->pg) ? OBX_OK : obx_pg_exec(st->pg, "COMMIT");
    return obx_db_exec(st->db, "COMMIT");
}

enum obx_err
obx_store_tx_savepoint(struct obx_store *st)
{
    return obx_db_exec(st->db, "SAVEPOINT obx_store_tx");
}

enum obx_err
obx_store_tx_savepoint_end(struct obx_store *st, enum obx_err err)
{
    enum obx_err e = OBX_OK;

    if (err != OBX_OK)
        e = obx_db_exec(st->db, "ROLLBACK TO obx_store_tx");
    return e == OBX_OK ? obx_db_exec(st->db, "RELEASE obx_store_tx") : e;
}
