/*
 * enqueue_bench: how fast can producers put messages into the outbox?
 *
 * Measures, each on its own temporary database (synchronous=FULL, WAL, as shipped):
 *   1. bulk: N messages through obx_store_enqueue_batch() in batches of B (default 10,000;
 *      one transaction, one fsync per batch), with the store options of a bulk loader
 *      (64 MiB cache, checkpoint every 20,000 WAL pages: lib/outbox.h); then the same
 *      counting the final PRAGMA wal_checkpoint(TRUNCATE), and the file size per message;
 *   2. single: S messages through obx_enqueue(), each its own transaction and fsync;
 *   3. raw: R single-row INSERT + COMMIT on a plain two-column table: what one fsync'ed
 *      SQLite transaction costs on this disk, the floor under (2).
 * Message strings are generated outside the timed region; only library calls are timed.
 * Output: a Markdown table on stdout, progress on stderr.
 *
 *   enqueue_bench [-n N] [-b BATCH] [-s SINGLE] [-r RAW] [-c CONVERSATIONS] [-u] [-d DIR]
 *                 [-k KEEP_PATH] [-x SQL]
 *
 * -u uses random, UUID-like external message ids instead of increasing ones (msg-000000042):
 *    the key indexes then take inserts all over the tree rather than at their end.
 * -k keeps the bulk database at KEEP_PATH (for EXPLAIN QUERY PLAN, see docs/schema.md).
 * -x runs SQL on the bulk connection before the run, for experiments (for example
 *    -x 'PRAGMA cache_size=-262144'); the result table then says so.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "msg.h"
#include "outbox.h"
#include "store.h"

#define BUSINESSES 10

struct options {
    long n;             /* bulk messages */
    long batch;         /* per transaction */
    long single;        /* single-message enqueues */
    long raw;           /* raw SQLite commits */
    long conversations; /* messages are spread round-robin over this many */
    int random_ids;     /* -u: UUID-like external ids */
    const char *dir;    /* where the temporary databases go */
    const char *keep;   /* keep the bulk database there */
    const char *sql;    /* extra SQL for the bulk connection (experiments) */
};


/* The strings of one generated message (the struct obx_msg points into it). */
struct msg_text {
    char ext_id[40];
    char conv[32];
    char business[16];
    char content[160];
    char name[32];
    char image[64];
};

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* About 100 bytes of realistic text around a reference number. */
static const char *const text_before[] = {
    "Bonjour, votre commande n°",
    "Hello! Your appointment #",
    "Merci pour votre message (ticket ",
    "Hi, we received your return request ",
};
static const char *const text_after[] = {
    " est prête. Vous pouvez la retirer en magasin dès demain 9h.",
    " is confirmed for Tuesday at 10:30. Reply here to reschedule.",
    "). Un conseiller vous répond dans les 24 heures.",
    "; the refund will be issued within 5 business days.",
};

/* splitmix64: a deterministic stand-in for UUIDs. */
static uint64_t
mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static void
content_for(long i, char *out, size_t n)
{
    snprintf(out, n, "%s%07ld%s", text_before[i % 4], i, text_after[i % 4]);
}

/*
 * Message i of a run: conversations (default 1000) spread over 10 businesses, ~100-byte content,
 * 70% from consumers (with a name, a third of them with an avatar), 30% from users.
 */
static void
make_msg(long i, const struct options *o, const char *prefix, struct msg_text *t, struct obx_msg *m)
{
    long conv = i % o->conversations;

    if (o->random_ids) {
        uint64_t a = mix((uint64_t)i), b = mix(a);
        snprintf(t->ext_id, sizeof t->ext_id, "%08x-%04x-%04x-%04x-%012llx", (unsigned)(a >> 32),
                 (unsigned)(a >> 16) & 0xffff, (unsigned)a & 0xffff, (unsigned)(b >> 48),
                 (unsigned long long)(b & 0xffffffffffffULL));
        t->ext_id[0] = prefix[0]; /* keeps bulk and single ids apart */
    } else {
        snprintf(t->ext_id, sizeof t->ext_id, "%s-%09ld", prefix, i);
    }
    snprintf(t->conv, sizeof t->conv, "conv-%04ld", conv);
    snprintf(t->business, sizeof t->business, "biz-%02ld", conv % BUSINESSES);
    content_for(i, t->content, sizeof t->content);
    memset(m, 0, sizeof *m);
    m->channel_id = "ch-bench";
    m->external_message_id = t->ext_id;
    m->business_id = t->business;
    m->external_conversation_id = t->conv;
    m->content = t->content;
    if (i % 10 < 7) {
        m->sender_type = "Consumer";
        snprintf(t->name, sizeof t->name, "Client %ld", conv);
        m->consumer_name = t->name;
        if (conv % 3 == 0) {
            snprintf(t->image, sizeof t->image, "https://cdn.example.com/avatars/%ld.png", conv);
            m->consumer_image = t->image;
        }
    } else {
        m->sender_type = "User";
    }
}

static void
remove_db(const char *path)
{
    char p[4200];

    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
}

/*
 * bulk: the options a bulk loader should give (lib/outbox.h), the same as `outbox enqueue`
 * (cli_open_bulk_store): a 64 MiB page cache and a checkpoint every 20,000 WAL pages.
 * Otherwise the defaults. synchronous=FULL either way.
 */
static int
open_store(const char *path, int bulk, struct obx_store **st)
{
    struct obx_store_opts o = {0};
    enum obx_err err;

    if (bulk) {
        o.cache_kib = 64 * 1024;
        o.wal_pages = 20000;
    }
    remove_db(path);
    err = obx_store_open(path, &o, st);
    if (err != OBX_OK) {
        fprintf(stderr, "enqueue_bench: cannot open %s: %s\n", path, obx_strerror(err));
        return -1;
    }
    return 0;
}

struct result {
    const char *what;
    long count;
    double seconds;
    const char *unit;
    const char *note;
    double value; /* when unit is not messages/s */
};

/*
 * 1. Bulk enqueue through the library. Fills r[0] (rate), r[1] (rate counting the final
 * checkpoint) and r[2] (bytes per message).
 */
static int
bench_bulk(const struct options *o, const char *path, struct result *r)
{
    struct obx_msg_limits lim = obx_msg_limits_default();
    struct obx_enq_item *items = calloc((size_t)o->batch, sizeof *items);
    struct msg_text *text = calloc((size_t)o->batch, sizeof *text);
    struct obx_store *st = NULL;
    double timed = 0, t0, last_report = 0;
    long done = 0, step = o->n / 10 > 0 ? o->n / 10 : o->n, next_report = step;
    struct stat sb;
    int rc = -1;

    if (!items || !text || open_store(path, 1, &st) != 0)
        goto out;
    if (o->sql && sqlite3_exec(st->db->h, o->sql, NULL, NULL, NULL) != SQLITE_OK) {
        fprintf(stderr, "enqueue_bench: -x: %s\n", sqlite3_errmsg(st->db->h));
        goto out;
    }
    while (done < o->n) {
        long k = o->n - done < o->batch ? o->n - done : o->batch;
        enum obx_err err;
        for (long i = 0; i < k; i++)
            make_msg(done + i, o, "msg", &text[i], &items[i].msg);
        t0 = now_s();
        err = obx_store_enqueue_batch(st, items, (size_t)k, &lim);
        timed += now_s() - t0;
        if (err != OBX_OK) {
            fprintf(stderr, "enqueue_bench: batch at %ld: %s\n", done, obx_strerror(err));
            goto out;
        }
        for (long i = 0; i < k; i++) {
            if (items[i].err != OBX_OK || items[i].result != OBX_ENQ_ACCEPTED) {
                fprintf(stderr, "enqueue_bench: message %ld not accepted (%s)\n", done + i,
                        obx_strerror(items[i].err));
                goto out;
            }
        }
        done += k;
        if (done >= next_report) {
            fprintf(stderr, "  bulk: %8ld messages, %7.0f/s over the last %ld\n", done,
                    (double)step / (timed - last_report), step);
            last_report = timed;
            next_report += step;
        }
    }
    /* The last checkpoint is the bulk load's too: it is timed, reported on its own row. */
    t0 = now_s();
    if (sqlite3_exec(st->db->h, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL) != SQLITE_OK ||
        stat(path, &sb) != 0) {
        fprintf(stderr, "enqueue_bench: checkpoint/stat failed\n");
        goto out;
    }
    static char note[512];
    snprintf(note, sizeof note,
             "batches of %ld, one transaction + fsync per batch; %ld conversations; %s ids%s%s",
             o->batch, o->conversations, o->random_ids ? "random (UUID-like)" : "increasing",
             o->sql ? "; with " : "", o->sql ? o->sql : "");
    r[0] = (struct result){
        "bulk enqueue (obx_store_enqueue_batch)", o->n, timed, "messages/s", note, 0};
    r[1] = (struct result){"bulk enqueue including the final checkpoint",
                           o->n,
                           timed + (now_s() - t0),
                           "messages/s",
                           "the WAL copied into the database file and truncated",
                           0};
    r[2] = (struct result){"database size per message",
                           o->n,
                           0,
                           "bytes",
                           "after PRAGMA wal_checkpoint(TRUNCATE): the table and all its indexes",
                           (double)sb.st_size / (double)o->n};
    rc = 0;
out:
    obx_store_free(st);
    if (!o->keep || rc != 0)
        remove_db(path);
    free(items);
    free(text);
    return rc;
}

/* 2. One message per transaction through the public API. */
static int
bench_single(const struct options *o, const char *path, struct result *r)
{
    struct obx_store *st = NULL;
    struct msg_text t;
    struct obx_msg m;
    double timed = 0, t0;
    int rc = -1;

    if (open_store(path, 0, &st) != 0)
        goto out;
    for (long i = 0; i < o->single; i++) {
        enum obx_enqueue_result res;
        enum obx_err err;
        make_msg(i, o, "one", &t, &m);
        t0 = now_s();
        err = obx_enqueue(st, &m, &res, NULL);
        timed += now_s() - t0;
        if (err != OBX_OK || res != OBX_ENQ_ACCEPTED) {
            fprintf(stderr, "enqueue_bench: single %ld: %s\n", i, obx_strerror(err));
            goto out;
        }
    }
    *r = (struct result){"single enqueue (obx_enqueue)",        o->single, timed, "messages/s",
                         "one transaction + fsync per message", 0};
    rc = 0;
out:
    obx_store_free(st);
    remove_db(path);
    return rc;
}

/* 3. The fsync floor: plain SQLite, one row per committed transaction. */
static int
bench_raw(const struct options *o, const char *path, struct result *r)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *s = NULL;
    char body[160];
    double timed = 0, t0;
    int rc = -1;

    remove_db(path);
    if (sqlite3_open(path, &h) != SQLITE_OK ||
        sqlite3_exec(h,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                     " CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
                     NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(h, "INSERT INTO t (body) VALUES (?1)", -1, &s, NULL) != SQLITE_OK) {
        fprintf(stderr, "enqueue_bench: raw setup: %s\n", h ? sqlite3_errmsg(h) : "?");
        goto out;
    }
    for (long i = 0; i < o->raw; i++) {
        int step;
        content_for(i, body, sizeof body);
        t0 = now_s();
        sqlite3_bind_text(s, 1, body, -1, SQLITE_STATIC);
        step = sqlite3_step(s); /* autocommit: one transaction + fsync */
        sqlite3_reset(s);
        timed += now_s() - t0;
        if (step != SQLITE_DONE) {
            fprintf(stderr, "enqueue_bench: raw insert: %s\n", sqlite3_errmsg(h));
            goto out;
        }
    }
    *r = (struct result){"raw SQLite INSERT + COMMIT (plain table)",  o->raw, timed, "commits/s",
                         "WAL, synchronous=FULL: the fsync baseline", 0};
    rc = 0;
out:
    sqlite3_finalize(s);
    sqlite3_close(h);
    remove_db(path);
    return rc;
}

static void
print_table(const struct result *r, int n)
{
    printf("| benchmark | count | seconds | result | notes |\n");
    printf("|---|---:|---:|---:|---|\n");
    for (int i = 0; i < n; i++) {
        if (r[i].seconds > 0)
            printf("| %s | %ld | %.2f | **%.0f %s** | %s |\n", r[i].what, r[i].count, r[i].seconds,
                   (double)r[i].count / r[i].seconds, r[i].unit, r[i].note);
        else
            printf("| %s | %ld | - | **%.0f %s** | %s |\n", r[i].what, r[i].count, r[i].value,
                   r[i].unit, r[i].note);
    }
}

static long
positive(const char *s, const char *what)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);

    if (!*s || *end || v <= 0) {
        fprintf(stderr, "enqueue_bench: %s must be a positive integer\n", what);
        exit(2);
    }
    return v;
}

int
main(int argc, char **argv)
{
    struct options o = {1000000, 10000, 2000, 2000, 1000, 0, NULL, NULL, NULL};
    struct result r[5];
    char path[4096];
    int c;

    o.dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    while ((c = getopt(argc, argv, "n:b:s:r:c:ud:k:x:h")) != -1) {
        switch (c) {
        case 'n': o.n = positive(optarg, "-n"); break;
        case 'b': o.batch = positive(optarg, "-b"); break;
        case 's': o.single = positive(optarg, "-s"); break;
        case 'r': o.raw = positive(optarg, "-r"); break;
        case 'c': o.conversations = positive(optarg, "-c"); break;
        case 'u': o.random_ids = 1; break;
        case 'd': o.dir = optarg; break;
        case 'x': o.sql = optarg; break;
        case 'k': o.keep = optarg; break;
        default:
            fprintf(stderr,
                    "usage: %s [-n N] [-b BATCH] [-s SINGLE] [-r RAW] [-c CONVERSATIONS]"
                    " [-u] [-d DIR] [-k KEEP] [-x SQL]\n",
                    argv[0]);
            return c == 'h' ? 0 : 2;
        }
    }
    fprintf(stderr, "enqueue_bench: SQLite %s, databases in %s\n", sqlite3_libversion(), o.dir);
    if (o.keep)
        snprintf(path, sizeof path, "%s", o.keep);
    else
        snprintf(path, sizeof path, "%s/obx_bench_bulk_%d.db", o.dir, (int)getpid());
    if (bench_bulk(&o, path, r) != 0)
        return 1;
    snprintf(path, sizeof path, "%s/obx_bench_single_%d.db", o.dir, (int)getpid());
    if (bench_single(&o, path, &r[3]) != 0)
        return 1;
    snprintf(path, sizeof path, "%s/obx_bench_raw_%d.db", o.dir, (int)getpid());
    if (bench_raw(&o, path, &r[4]) != 0)
        return 1;
    print_table(r, 5);
    return 0;
}
