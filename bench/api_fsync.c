/*
 * bench/api_fsync.c: the cost of one durable SQLite transaction on this disk, the floor that
 * a producer API committing one message per transaction could not go below.
 *
 * Runs N transactions of one INSERT + COMMIT each (or fewer, when MAX_SECONDS is given and
 * has passed) on a two-column table in WAL mode with synchronous=FULL (serve's default), and
 * prints one line:
 *
 *   commits=N seconds=S per_s=R
 *
 * Built and run by bench/api_bench.sh:
 *   gcc -O2 -o api_fsync bench/api_fsync.c -lsqlite3 && ./api_fsync /tmp/x.db 2000 [3]
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
exec_or_die(sqlite3 *db, const char *sql)
{
    char *err = NULL;

    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "api_fsync: %s: %s\n", sql, err ? err : "?");
        sqlite3_free(err);
        return -1;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *ins = NULL;
    int n, done = 0, rc = 1;
    double t0, t1, max_s = 0;

    if ((argc != 3 && argc != 4) || (n = atoi(argv[2])) <= 0) {
        fprintf(stderr, "usage: api_fsync DB_PATH N [MAX_SECONDS]\n");
        return 2;
    }
    if (argc == 4)
        max_s = atof(argv[3]);
    if (sqlite3_open(argv[1], &db) != SQLITE_OK) {
        fprintf(stderr, "api_fsync: cannot open %s\n", argv[1]);
        goto out;
    }
    if (exec_or_die(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                        "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)") != 0)
        goto out;
    if (sqlite3_prepare_v2(db, "INSERT INTO t (v) VALUES (?1)", -1, &ins, NULL) != SQLITE_OK)
        goto out;
    t0 = now_s();
    for (int i = 0; i < n && !(max_s > 0 && now_s() - t0 >= max_s); i++) {
        if (exec_or_die(db, "BEGIN") != 0)
            goto out;
        sqlite3_bind_text(ins, 1, "a message of about a hundred bytes, as a producer would send",
                          -1, SQLITE_STATIC);
        if (sqlite3_step(ins) != SQLITE_DONE) {
            fprintf(stderr, "api_fsync: insert: %s\n", sqlite3_errmsg(db));
            goto out;
        }
        sqlite3_reset(ins);
        if (exec_or_die(db, "COMMIT") != 0)
            goto out;
        done++;
    }
    t1 = now_s();
    printf("commits=%d seconds=%.3f per_s=%.1f\n", done, t1 - t0, (double)done / (t1 - t0));
    rc = 0;
out:
    sqlite3_finalize(ins);
    sqlite3_close(db);
    return rc;
}
