/* err: maps SQLite and libcurl result codes onto enum obx_err. */
#ifndef OBX_ERR_H
#define OBX_ERR_H

#include "outbox.h"

/* Maps a SQLite primary or extended result code to an obx_err. SQLITE_OK maps to OBX_OK. */
enum obx_err obx_err_from_sqlite(int rc);

/* Maps a CURLcode (as int, to keep curl.h out of here) to an obx_err. */
enum obx_err obx_err_from_curl(int code);

#endif
