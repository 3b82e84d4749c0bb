/*
 * pg_store_bench: the store's side of enqueue and drain, PostgreSQL against SQLite in the
 * same run (issue 15; docs/benchmarks.md, "PostgreSQL store"). No HTTP: what the store
 * thread of serve would spend.
 *
 *   pg_store_bench URI SQLITE_FILE [N] [BATCH]
 *   pg_store_bench - SQLITE_FILE [N] [BATCH]       (SQLite only)
 *
 * For each backend: enqueue N messages (1,000 conversations round-robin, ~100-byte
 * contents) in transactions of 1,000; then drain them: claim BATCH, finish all of them as
 * accepted (an attempt row each, the transitions, the next head), until nothing is left.
 * Prints messages/s for both phases and the process's CPU time (user + system) per message:
 * the figure to compare builds with on a busy machine, where rates vary more. PostgreSQL in schema
 * `bench` (dropped first); SQLite in a fresh file, synchronous = full, as serve opens it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "migrate_pg.h"
#include "msg.h"
#include "store.h"
#include "store_pg.h"

#define ENQ_BATCH 1000

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds (user + system) this process has used. */
static double
cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

struct backend {
    const char *name;
    enum obx_err (*enqueue)(void *h, struct obx_enq_item *it, size_t n);
    enum obx_err (*claim)(void *h, int max, struct obx_claimed *out, int *n);
    enum obx_err (*finish)(void *h, const struct obx_attempt *a, size_t n);
    void *h;
};

static enum obx_err
pg_enqueue(void *h, struct obx_enq_item *it, size_t n)
{
    return obx_store_pg_enqueue_batch(h, it, n, NULL);
}
static enum obx_err
pg_claim(void *h, int max, struct obx_claimed *out, int *n)
{
    return obx_store_pg_claim(h, NULL, NULL, max, 60000, out, n);
}
static enum obx_err
pg_finish(void *h, const struct obx_attempt *a, size_t n)
{
    return obx_store_pg_finish(h, NULL, a, n, NULL);
}
static enum obx_err
lite_enqueue(void *h, struct obx_enq_item *it, size_t n)
{
    struct obx_msg_limits lim = obx_msg_limits_default();

    return obx_store_enqueue_batch(h, it, n, &lim);
}
static enum obx_err
lite_claim(void *h, int max, struct obx_claimed *out, int *n)
{
    return obx_store_claim(h, max, 60000, out, n);
}
static enum obx_err
lite_finish(void *h, const struct obx_attempt *a, size_t n)
{
    return obx_store_finish(h, a, n, NULL);
}

static int
run(const struct backend *b, int total, int batch)
{
    static char ids[ENQ_BATCH][32], convs[ENQ_BATCH][32];
    struct obx_enq_item *items = calloc(ENQ_BATCH, sizeof *items);
    struct obx_claimed *c = calloc((size_t)batch, sizeof *c);
    struct obx_attempt *a = calloc((size_t)batch, sizeof *a);
    const char *content = "Hello, your order 4711 has shipped and will arrive on Thursday "
                          "between 9 and 12. Reply STOP to opt out.";
    double t0, t1, c0;
    int drained = 0, rc = 1;

    if (!items || !c || !a)
        goto out;
    t0 = now_s();
    c0 = cpu_s();
    for (int done = 0; done < total; done += ENQ_BATCH) {
        int n = total - done < ENQ_BATCH ? total - done : ENQ_BATCH;
        for (int i = 0; i < n; i++) {
            snprintf(ids[i], sizeof ids[i], "msg-%09d", done + i);
            snprintf(convs[i], sizeof convs[i], "conv-%d", (done + i) % 1000);
            items[i].msg = (struct obx_msg){"bench-channel", ids[i], "biz", convs[i], content,
                                            "Consumer",      "Ada",  NULL,  0};
        }
        if (b->enqueue(b->h, items, (size_t)n) != OBX_OK) {
            fprintf(stderr, "%s: enqueue failed\n", b->name);
            goto out;
        }
    }
    t1 = now_s();
    printf("| %s | enqueue, transactions of %d | %.0f msg/s | %.1f µs |\n", b->name, ENQ_BATCH,
           total / (t1 - t0), (cpu_s() - c0) * 1e6 / total);
    t0 = now_s();
    c0 = cpu_s();
    for (;;) {
        int n = 0;
        if (b->claim(b->h, batch, c, &n) != OBX_OK) {
            fprintf(stderr, "%s: claim failed\n", b->name);
            goto out;
        }
        if (n == 0)
            break;
        for (int i = 0; i < n; i++) {
            a[i] = (struct obx_attempt){.message_id = c[i].id,
                                        .lease_token = c[i].lease_token,
                                        .started_at_ms = 1,
                                        .duration_ms = 3,
                                        .http_status = 200,
                                        .outcome = "accepted",
                                        .excerpt = "{\"id\":\"partoo-1\"}",
                                        .next = OBX_NEXT_ACCEPTED,
                                        .counted = 1,
                                        .reason = "http 200"};
        }
        if (b->finish(b->h, a, (size_t)n) != OBX_OK) {
            fprintf(stderr, "%s: finish failed\n", b->name);
            goto out;
        }
        for (int i = 0; i < n; i++)
            obx_store_claimed_release(&c[i]);
        drained += n;
    }
    t1 = now_s();
    printf("| %s | drain (claim %d + finish %d, one transaction each) | %.0f msg/s | %.1f µs |\n",
           b->name, batch, batch, drained / (t1 - t0),
           drained ? (cpu_s() - c0) * 1e6 / drained : 0.0);
    rc = drained == total ? 0 : 1;
    if (rc)
        fprintf(stderr, "%s: drained %d of %d\n", b->name, drained, total);
out:
    free(items);
    free(c);
    free(a);
    return rc;
}

int
main(int argc, char **argv)
{
    struct obx_store_opts o = {0};
    struct obx_store *st = NULL;
    struct obx_pg *pg = NULL;
    char msg[256];
    int total = argc > 3 ? atoi(argv[3]) : 100000, batch = argc > 4 ? atoi(argv[4]) : 256;
    int rc = 0;

    if (argc < 3 || total <= 0 || batch <= 0) {
        fprintf(stderr, "usage: pg_store_bench URI|- SQLITE_FILE [N] [BATCH]\n");
        return 2;
    }
    if (strcmp(argv[1], "-") == 0) {
        /* SQLite only */
    } else if (obx_pg_open(argv[1], "bench", &pg, msg, sizeof msg) != OBX_OK) {
        fprintf(stderr, "cannot open PostgreSQL: %s\n", msg);
        return 1;
    } else if (obx_pg_exec(pg, "DROP SCHEMA bench CASCADE; CREATE SCHEMA bench") != OBX_OK ||
               obx_migrate_pg_apply(pg, NULL, NULL) != OBX_OK) {
        fprintf(stderr, "cannot migrate: %s\n", obx_pg_errmsg(pg));
        obx_pg_free(pg);
        return 1;
    }
    unlink(argv[2]);
    o.wal_pages = 10000; /* as serve */
    if (obx_store_open(argv[2], &o, &st) != OBX_OK) {
        fprintf(stderr, "cannot open %s\n", argv[2]);
        obx_pg_free(pg);
        return 1;
    }
    printf("| backend | phase | rate | CPU per message |\n|---|---|---|---|\n");
    {
        struct backend lite = {"SQLite", lite_enqueue, lite_claim, lite_finish, st};
        struct backend post = {"PostgreSQL", pg_enqueue, pg_claim, pg_finish, pg};
        rc |= run(&lite, total, batch);
        if (pg)
            rc |= run(&post, total, batch);
    }
    obx_store_free(st);
    obx_pg_free(pg);
    return rc;
}
