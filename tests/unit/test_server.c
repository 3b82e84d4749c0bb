/*
 * Unit tests of server, the composed daemon: obx_server_run on a thread, with both
 * listeners on free loopback ports, driven from the test's thread with blocking libcurl
 * requests and signals. It serves (a POST is committed before its 202), reloads on SIGHUP
 * (the reload callback runs; a failed reload keeps the running configuration), refuses a
 * second instance on the same database (OBX_EBUSY) and an unusable database path, and
 * drains and returns OBX_OK on SIGTERM. Waits are bounded polls (at most 10 s), never
 * timed assertions.
 */
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "log.h"
#include "mem.h"
#include "server.h"
#include "testdb.h"

static char path[256];
static int api_port, webhook_port;

#define TOKEN "server-unit-test-token-0123456789"
#define TOKEN2 "server-unit-test-token-after-reload"

/* A port nothing listens on right now (bound, read, closed). */
static int
free_port(void)
{
    struct sockaddr_in sin = {0};
    socklen_t len = sizeof sin;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(0x7f000001);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0 &&
        getsockname(fd, (struct sockaddr *)&sin, &len) == 0)
        port = ntohs(sin.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* The daemon's configuration; db may differ (a path nobody can create). */
static enum obx_err
make_config(struct obx_config *c, const char *db, const char *log_level, const char *token)
{
    char v[64];
    enum obx_err err = obx_config_init(c);

    if (err == OBX_OK)
        err = obx_config_set(c, "db", db, OBX_SRC_FLAG, NULL);
    snprintf(v, sizeof v, "127.0.0.1:%d", api_port);
    if (err == OBX_OK)
        err = obx_config_set(c, "api_listen", v, OBX_SRC_FLAG, NULL);
    snprintf(v, sizeof v, "127.0.0.1:%d", webhook_port);
    if (err == OBX_OK)
        err = obx_config_set(c, "webhook_listen", v, OBX_SRC_FLAG, NULL);
    if (err == OBX_OK)
        err = obx_config_set(c, "api_token", token, OBX_SRC_FLAG, NULL);
    /* Partoo is a closed loopback port: deliveries fail and are retried, harmlessly. */
    snprintf(v, sizeof v, "http://127.0.0.1:%d/v2", free_port());
    if (err == OBX_OK)
        err = obx_config_set(c, "partoo_base_url", v, OBX_SRC_FLAG, NULL);
    if (err == OBX_OK)
        err = obx_config_set(c, "shutdown_timeout", "1s", OBX_SRC_FLAG, NULL);
    if (err == OBX_OK)
        err = obx_config_set(c, "log_level", log_level, OBX_SRC_FLAG, NULL);
    if (err == OBX_OK) {
        c->partoo_api_key = obx_strdup("server-test-key");
        if (!c->partoo_api_key)
            err = OBX_ENOMEM;
    }
    return err;
}

/* The reload callback: counts its calls; fails when told to. */
struct reload_ctx {
    int calls;
    int fail;
};

static enum obx_err
on_reload(void *ctx, struct obx_config *out, struct obx_buf *err)
{
    struct reload_ctx *r = ctx;

    __atomic_add_fetch(&r->calls, 1, __ATOMIC_SEQ_CST);
    if (r->fail)
        return obx_buf_puts(err, "test says no") == OBX_OK ? OBX_ECONFIG : OBX_ENOMEM;
    return make_config(out, path, "error", TOKEN2);
}

struct run {
    pthread_t thread;
    struct obx_config cfg;
    struct reload_ctx reload;
    enum obx_err err;
    int done;
};

static void *
serve(void *arg)
{
    struct run *r = arg;

    r->err = obx_server_run(&r->cfg, on_reload, &r->reload);
    __atomic_store_n(&r->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

/* The last answer's body (its first bytes). */
static char answer[16384];
static size_t answer_len;

static size_t
keep(char *p, size_t size, size_t n, void *ctx)
{
    size_t room = sizeof answer - 1 - answer_len, take = size * n < room ? size * n : room;

    (void)ctx;
    memcpy(answer + answer_len, p, take);
    answer_len += take;
    answer[answer_len] = '\0';
    return size * n;
}

/* One blocking request to the API; returns the HTTP status (0: no answer). */
static long
api_request(const char *route, const char *token, const char *body)
{
    CURL *e = curl_easy_init();
    struct curl_slist *h = NULL;
    char url[128], auth[128];
    long status = 0;

    if (!e)
        return 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", api_port, route);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    h = curl_slist_append(h, auth);
    h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, keep);
    answer_len = 0;
    answer[0] = '\0';
    if (body)
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    if (curl_easy_perform(e) == CURLE_OK)
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
    return status;
}

/* Polls every 10 ms, at most 10 s; returns 1 once healthz answers 200. */
static int
wait_healthy(const struct run *r)
{
    for (int i = 0; i < 1000 && !__atomic_load_n(&r->done, __ATOMIC_SEQ_CST); i++) {
        if (api_request("/healthz", "", NULL) == 200)
            return 1;
        usleep(10000);
    }
    return 0;
}

static int
wait_flag(const int *flag, int want)
{
    for (int i = 0; i < 1000; i++) {
        if (__atomic_load_n(flag, __ATOMIC_SEQ_CST) >= want)
            return 1;
        usleep(10000);
    }
    return 0;
}

static int
test_serve_reload_refuse_second_stop(void)
{
    struct run r = {0};
    struct obx_config second;
    int started = 0;
    TEST_BEGIN;

    testdb_remove(path);
    CHECK_OK(make_config(&r.cfg, path, "error", TOKEN));
    CHECK_INT(pthread_create(&r.thread, NULL, serve, &r), 0);
    started = 1;
    CHECK(wait_healthy(&r));
    CHECK_INT(api_request("/v1/messages", TOKEN,
                          "{\"channel_id\":\"ch\",\"external_message_id\":\"s1\","
                          "\"business_id\":\"b\",\"external_conversation_id\":\"c\","
                          "\"content\":\"hi\",\"sender_type\":\"Consumer\"}"),
              202);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM outbox WHERE external_message_id = 's1'"), 1);
    /* SIGHUP: a failing reload keeps the running configuration, a good one is taken. */
    r.reload.fail = 1;
    CHECK_INT(kill(getpid(), SIGHUP), 0);
    CHECK(wait_flag(&r.reload.calls, 1));
    CHECK_INT(api_request("/v1/stats", TOKEN, NULL), 200);
    r.reload.fail = 0;
    CHECK_INT(kill(getpid(), SIGHUP), 0);
    CHECK(wait_flag(&r.reload.calls, 2));
    /* The API uses the reloaded token as soon as the reload is done. */
    for (int i = 0; i < 1000 && api_request("/v1/stats", TOKEN2, NULL) != 200; i++)
        usleep(10000);
    CHECK_INT(api_request("/v1/stats", TOKEN2, NULL), 200);
    CHECK_INT(api_request("/v1/stats", TOKEN, NULL), 401);
    /* Metrics are served with the token; a paused channel shows as held. */
    CHECK_INT(api_request("/v1/pause", TOKEN2, "{\"channel_id\":\"held-ch\"}"), 200);
    CHECK_INT(api_request("/metrics", TOKEN2, NULL), 200);
    CHECK(strstr(answer, "outbox_channel_held{channel=\"held-ch\"} 1") != NULL);
    CHECK(strstr(answer, "outbox_sending_paused{reason=\"auth\"} 0") != NULL);
    /* A second instance on the same database is refused at once. */
    CHECK_OK(make_config(&second, path, "error", TOKEN));
    CHECK_INT(obx_server_run(&second, NULL, NULL), OBX_EBUSY);
    /* SIGTERM: drains and returns OBX_OK. */
    CHECK_INT(kill(getpid(), SIGTERM), 0);
    CHECK(wait_flag(&r.done, 1));
    CHECK_INT(pthread_join(r.thread, NULL), 0);
    started = 0;
    CHECK_OK(r.err);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM outbox WHERE external_message_id = 's1' AND "
                               "state IN ('queued', 'failed')"),
              1);
end:
    if (started) {
        kill(getpid(), SIGTERM);
        pthread_join(r.thread, NULL);
    }
    testdb_remove(path);
    TEST_END;
}

/* An unusable database path, or no memory for the first allocation: an error at once. */
static int
test_start_failures(void)
{
    struct obx_config c;
    TEST_BEGIN;

    CHECK_OK(make_config(&c, "/nonexistent-dir/obx/x.db", "error", TOKEN));
    CHECK_INT(obx_server_run(&c, NULL, NULL), OBX_EIO);
    CHECK_OK(make_config(&c, path, "error", TOKEN));
    obx_mem_fail_after(0);
    CHECK_INT(obx_server_run(&c, NULL, NULL), OBX_ENOMEM);
    obx_mem_fail_after(-1);
end:
    obx_mem_fail_after(-1);
    testdb_remove(path);
    TEST_END;
}

int
main(int argc, char **argv)
{
    static const struct test_case tests[] = {
        {"serve_reload_refuse_second_stop", test_serve_reload_refuse_second_stop},
        {"start_failures", test_start_failures},
        {NULL, NULL},
    };
    int rc;

    obx_log_setup(OBX_LOG_OFF, OBX_LOG_TEXT, stderr);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(path, sizeof path, "/tmp/obx_test_server_%d.db", (int)getpid());
    api_port = free_port();
    webhook_port = free_port();
    rc = test_run_table(tests, argc, argv);
    /* obx_server_run marks the process not dumpable; LeakSanitizer needs it dumpable. */
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    curl_global_cleanup();
    return rc;
}
