/*
 * test_err: the error vocabulary: every code has its own message, and the SQLite and
 * libcurl result codes (primary and extended) land on the code that chooses the action.
 */
#include <curl/curl.h>
#include <sqlite3.h>
#include <string.h>

#include "check.h"
#include "err.h"

/* Every code from OBX_OK to the last one has a message of its own, never the fallback. */
static int
test_strerror(void)
{
    TEST_BEGIN;

    for (int e = OBX_OK; e <= OBX_EQUOTA; e++) {
        const char *m = obx_strerror((enum obx_err)e);
        CHECK(m != NULL && m[0] != '\0');
        CHECK(strcmp(m, "unknown error") != 0);
        for (int o = OBX_OK; o < e; o++)
            CHECK(strcmp(m, obx_strerror((enum obx_err)o)) != 0);
    }
    CHECK_STR(obx_strerror(OBX_OK), "ok");
    CHECK_STR(obx_strerror(OBX_ENOMEM), "out of memory");
    CHECK(strstr(obx_strerror(OBX_EQUOTA), "max_db_size") != NULL);
    CHECK_STR(obx_strerror((enum obx_err)(OBX_EQUOTA + 1)), "unknown error");
    CHECK_STR(obx_strerror((enum obx_err) - 1), "unknown error");
end:
    TEST_END;
}

static int
test_from_sqlite(void)
{
    static const struct {
        int rc;
        enum obx_err want;
    } cases[] = {
        {SQLITE_OK, OBX_OK},
        {SQLITE_ROW, OBX_OK},
        {SQLITE_DONE, OBX_OK},
        {SQLITE_BUSY, OBX_EBUSY},
        {SQLITE_BUSY_SNAPSHOT, OBX_EBUSY}, /* extended codes map as their primary */
        {SQLITE_BUSY_TIMEOUT, OBX_EBUSY},
        {SQLITE_LOCKED, OBX_EBUSY},
        {SQLITE_LOCKED_SHAREDCACHE, OBX_EBUSY},
        {SQLITE_FULL, OBX_EFULL},
        {SQLITE_READONLY, OBX_EREADONLY},
        {SQLITE_READONLY_DBMOVED, OBX_EREADONLY},
        {SQLITE_PERM, OBX_EREADONLY},
        {SQLITE_CANTOPEN, OBX_EREADONLY},
        {SQLITE_CANTOPEN_ISDIR, OBX_EREADONLY},
        {SQLITE_NOMEM, OBX_ENOMEM},
        {SQLITE_CONSTRAINT, OBX_EINVAL},
        {SQLITE_CONSTRAINT_UNIQUE, OBX_EINVAL},
        {SQLITE_CONSTRAINT_CHECK, OBX_EINVAL},
        {SQLITE_IOERR, OBX_EIO},
        {SQLITE_IOERR_WRITE, OBX_EIO},
        {SQLITE_IOERR_FSYNC, OBX_EIO},
        {SQLITE_CORRUPT, OBX_ESCHEMA},
        {SQLITE_CORRUPT_INDEX, OBX_ESCHEMA},
        {SQLITE_NOTADB, OBX_ESCHEMA},
        {SQLITE_ERROR, OBX_EDB}, /* everything else */
        {SQLITE_ERROR_MISSING_COLLSEQ, OBX_EDB},
        {SQLITE_MISUSE, OBX_EDB},
        {SQLITE_SCHEMA, OBX_EDB},
        {SQLITE_INTERRUPT, OBX_EDB},
        {SQLITE_TOOBIG, OBX_EDB},
        {SQLITE_PROTOCOL, OBX_EDB},
    };
    TEST_BEGIN;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (obx_err_from_sqlite(cases[i].rc) != cases[i].want)
            fprintf(stderr, "  sqlite rc %d\n", cases[i].rc);
        CHECK_INT(obx_err_from_sqlite(cases[i].rc), cases[i].want);
    }
end:
    TEST_END;
}

static int
test_from_curl(void)
{
    static const struct {
        int code;
        enum obx_err want;
    } cases[] = {
        {CURLE_OK, OBX_OK},
        {CURLE_OUT_OF_MEMORY, OBX_ENOMEM},
        {CURLE_BAD_FUNCTION_ARGUMENT, OBX_ECONFIG}, /* our mistake: retrying will not help */
        {CURLE_URL_MALFORMAT, OBX_ECONFIG},
        {CURLE_UNSUPPORTED_PROTOCOL, OBX_ECONFIG},
        {CURLE_COULDNT_RESOLVE_HOST, OBX_EIO}, /* the network: try again later */
        {CURLE_COULDNT_CONNECT, OBX_EIO},
        {CURLE_OPERATION_TIMEDOUT, OBX_EIO},
        {CURLE_SEND_ERROR, OBX_EIO},
        {CURLE_RECV_ERROR, OBX_EIO},
        {CURLE_GOT_NOTHING, OBX_EIO},
        {CURLE_PEER_FAILED_VERIFICATION, OBX_EIO},
        {CURLE_SSL_CONNECT_ERROR, OBX_EIO},
        {CURLE_WRITE_ERROR, OBX_EIO},
        {CURLE_ABORTED_BY_CALLBACK, OBX_EIO},
    };
    TEST_BEGIN;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (obx_err_from_curl(cases[i].code) != cases[i].want)
            fprintf(stderr, "  curl code %d\n", cases[i].code);
        CHECK_INT(obx_err_from_curl(cases[i].code), cases[i].want);
    }
end:
    TEST_END;
}

static const struct test_case tests[] = {
    {"strerror", test_strerror},
    {"from_sqlite", test_from_sqlite},
    {"from_curl", test_from_curl},
    {NULL, NULL},
};

TEST_MAIN(tests)
