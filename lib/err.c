/* err: the single error vocabulary of the library and its mapping from SQLite and libcurl. */
#include "err.h"

#include <curl/curl.h>
#include <sqlite3.h>

const char *
obx_strerror(enum obx_err err)
{
    switch (err) {
    case OBX_OK: return "ok";
    case OBX_EINVAL: return "invalid input";
    case OBX_EDUP: return "duplicate";
    case OBX_ECONFLICT: return "conflict";
    case OBX_ENOTFOUND: return "not found";
    case OBX_EBUSY: return "database is busy";
    case OBX_EFULL: return "database or disk is full";
    case OBX_EREADONLY: return "database is read-only";
    case OBX_ENOMEM: return "out of memory";
    case OBX_EDB: return "database error";
    case OBX_ESCHEMA: return "unsupported database schema";
    case OBX_EIO: return "i/o error";
    case OBX_ECONFIG: return "bad configuration";
    case OBX_ETOOBIG: return "too large";
    case OBX_EQUOTA: /* the API's 507 and the CLI say the same (SPEC §10) */
        return "the outbox reached max_db_size; new messages are refused until delivery and "
               "retention free space";
    }
    return "unknown error";
}

enum obx_err
obx_err_from_sqlite(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE: return OBX_OK;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return OBX_EBUSY;
    case SQLITE_FULL: return OBX_EFULL;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_CANTOPEN: return OBX_EREADONLY;
    case SQLITE_NOMEM: return OBX_ENOMEM;
    case SQLITE_CONSTRAINT: return OBX_EINVAL;
    case SQLITE_IOERR: return OBX_EIO;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return OBX_ESCHEMA;
    default: return OBX_EDB;
    }
}

enum obx_err
obx_err_from_curl(int code)
{
    switch ((CURLcode)code) {
    case CURLE_OK: return OBX_OK;
    case CURLE_OUT_OF_MEMORY: return OBX_ENOMEM;
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL: return OBX_ECONFIG;
    default: return OBX_EIO;
    }
}
