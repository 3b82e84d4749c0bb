/* Unit tests for lib/config.c: parsers, sources and precedence, secrets, print, validate. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "log.h"
#include "httpd.h"
#include "mem.h"
#include "net.h"

#ifndef OBX_SOURCE_DIR
#define OBX_SOURCE_DIR "." /* CMake passes the real one; "." when run from the checkout */
#endif

#define PROD_KEY_HEX "d06f5c8872fa5d9417b96aba5b87452efc0d10f5a071db50804565048c195814"
#define PROD_KEY_PEM "MCowBQYDK2VwAyEA0G9ciHL6XZQXuWq6W4dFLvwNEPWgcdtQgEVlBIwZWBQ="

/* Writes text to a new temporary file; path (>= 32 bytes) receives its name. */
static int
write_temp(const char *text, size_t len, char *path)
{
    int fd;
    ssize_t n;

    strcpy(path, "/tmp/obx_test_config_XXXXXX");
    fd = mkstemp(path);
    if (fd < 0)
        return -1;
    n = write(fd, text, len);
    close(fd);
    return n == (ssize_t)len ? 0 : -1;
}

static int
contains(const struct obx_buf *b, const char *needle)
{
    return strstr(obx_buf_str(b), needle) != NULL;
}

/* Captures obx_config_print() into a string the caller frees with free(). */
static char *
print_to_string(const struct obx_config *c)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    if (!f)
        return NULL;
    obx_config_print(c, f);
    fclose(f);
    return text;
}

static int
test_defaults(void)
{
    TEST_BEGIN;
    struct obx_config c;
    struct obx_buf err;

    obx_buf_init(&err, 4096);
    CHECK_OK(obx_config_init(&c));
    CHECK_STR(c.db, "outbox.db");
    CHECK_INT(c.synchronous_full, 1);
    CHECK_INT(c.max_db_size, 0);
    CHECK_INT(c.retention_ms, 30LL * 86400 * 1000);
    CHECK_STR(c.partoo_base_url, "https://api.partoo.co/v2");
    CHECK(c.partoo_api_key_file == NULL && c.partoo_api_key == NULL && c.ca_file == NULL);
    CHECK(c.readonly_channels == NULL && c.api_token == NULL && c.inbox_url == NULL);
    CHECK(c.webhook_public_key == NULL && c.webhook_public_key_file == NULL);
    CHECK(c.webhook_path_secret == NULL && c.webhook_required_header == NULL);
    CHECK_INT(c.max_inflight, 16);
    CHECK(c.rate_limit_per_s > 290.0 / 60 - 1e-9 && c.rate_limit_per_s < 290.0 / 60 + 1e-9);
    CHECK_INT(c.rate_burst, 1);
    CHECK_INT(c.retry_base_ms, 1000);
    CHECK_INT(c.retry_cap_ms, 300000);
    CHECK_INT(c.max_attempts, 25);
    CHECK_INT(c.max_age_ms, 0);
    CHECK_INT(c.confirm_timeout_ms, 600000);
    CHECK_INT(c.max_resends, 2);
    CHECK_INT(c.auth_probe_interval_ms, 60000);
    CHECK_INT(c.connect_timeout_ms, 10000);
    CHECK_INT(c.request_timeout_ms, 30000);
    CHECK_INT(c.shutdown_timeout_ms, 10000);
    CHECK_STR(c.api_listen, "127.0.0.1:8787");
    CHECK_STR(c.webhook_listen, "127.0.0.1:8788");
    CHECK_INT(c.max_body_bytes, 1024 * 1024);
    CHECK_INT(c.max_content_bytes, 64 * 1024);
    CHECK_INT(c.max_json_depth, 32);
    CHECK_INT(c.log_level, OBX_LOG_INFO);
    CHECK_INT(c.log_format, OBX_LOG_TEXT);
    CHECK_OK(obx_config_validate(&c, &err));
end:
    obx_config_release(&c);
    obx_config_release(&c); /* a second release is harmless */
    obx_config_release(NULL);
    obx_buf_release(&err);
    TEST_END;
}

struct i64_case {
    const char *in;
    int ok;
    int64_t want;
};

static int
test_parse_duration(void)
{
    TEST_BEGIN;
    static const struct i64_case cases[] = {
        {"0", 1, 0},
        {"5", 1, 5000},
        {"250ms", 1, 250},
        {"1s", 1, 1000},
        {"2m", 1, 120000},
        {"3h", 1, 10800000},
        {"30d", 1, 2592000000LL},
        {"007s", 1, 7000},
        {"9223372036854775807ms", 1, INT64_MAX},
        {"", 0, 0},
        {"s", 0, 0},
        {"-1s", 0, 0},
        {"+1s", 0, 0},
        {"1 s", 0, 0},
        {" 1s", 0, 0},
        {"1s ", 0, 0},
        {"1sec", 0, 0},
        {"1S", 0, 0},
        {"1.5s", 0, 0},
        {"1w", 0, 0},
        {"10s5", 0, 0},
        {"9223372036854775807s", 0, 0},
        {"99999999999999999999", 0, 0},
        {"106751991167301d", 0, 0},
    };
    int64_t v = -1;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum obx_err rc = obx_config_parse_duration_ms(cases[i].in, &v);
        if (rc != (cases[i].ok ? OBX_OK : OBX_EINVAL) || v != cases[i].want)
            fprintf(stderr, "  duration case \"%s\"\n", cases[i].in);
        CHECK_INT(rc, cases[i].ok ? OBX_OK : OBX_EINVAL);
        CHECK_INT(v, cases[i].want); /* 0 on failure */
    }
end:
    TEST_END;
}

static int
test_parse_size(void)
{
    TEST_BEGIN;
    static const struct i64_case cases[] = {
        {"0", 1, 0},
        {"1500", 1, 1500},
        {"1K", 1, 1024},
        {"64K", 1, 65536},
        {"1M", 1, 1048576},
        {"2G", 1, 2147483648LL},
        {"", 0, 0},
        {"K", 0, 0},
        {"-1", 0, 0},
        {"1k", 0, 0},
        {"1KB", 0, 0},
        {"1 M", 0, 0},
        {"1T", 0, 0},
        {"1.5M", 0, 0},
        {"0x10", 0, 0},
        {"8589934592G", 0, 0},
        {"18446744073709551616", 0, 0},
    };
    int64_t v = -1;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum obx_err rc = obx_config_parse_size(cases[i].in, &v);
        if (rc != (cases[i].ok ? OBX_OK : OBX_EINVAL) || v != cases[i].want)
            fprintf(stderr, "  size case \"%s\"\n", cases[i].in);
        CHECK_INT(rc, cases[i].ok ? OBX_OK : OBX_EINVAL);
        CHECK_INT(v, cases[i].want);
    }
end:
    TEST_END;
}

static int
test_parse_rate(void)
{
    TEST_BEGIN;
    static const struct {
        const char *in;
        int ok;
        double want;
    } cases[] = {
        {"0", 1, 0},
        {"0/min", 1, 0},
        {"5/s", 1, 5},
        {"290/min", 1, 290.0 / 60},
        {"300/min", 1, 5},
        {"3600/h", 1, 1},
        {"1/h", 1, 1.0 / 3600},
        {"", 0, 0},
        {"5", 0, 0},
        {"/s", 0, 0},
        {"-5/s", 0, 0},
        {"5/sec", 0, 0},
        {"5/m", 0, 0},
        {"5 /s", 0, 0},
        {"5/s ", 0, 0},
        {"1.5/s", 0, 0},
        {"5/min/s", 0, 0},
        {"99999999999999999999/s", 0, 0},
    };
    double v = -1;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum obx_err rc = obx_config_parse_rate_per_s(cases[i].in, &v);
        if (rc != (cases[i].ok ? OBX_OK : OBX_EINVAL))
            fprintf(stderr, "  rate case \"%s\"\n", cases[i].in);
        CHECK_INT(rc, cases[i].ok ? OBX_OK : OBX_EINVAL);
        CHECK(v > cases[i].want - 1e-12 && v < cases[i].want + 1e-12);
    }
end:
    TEST_END;
}

/* One obx_config_set() call, its expected result and a substring of its message. */
struct set_case {
    const char *key;
    const char *value;
    enum obx_err want;
    const char *msg; /* NULL: no check */
};

static int
run_set_cases(const struct set_case *cases, size_t n, enum obx_config_source src)
{
    TEST_BEGIN;
    struct obx_config c;
    struct obx_buf err;

    obx_buf_init(&err, 4096);
    CHECK_OK(obx_config_init(&c));
    for (size_t i = 0; i < n; i++) {
        enum obx_err rc;
        obx_buf_reset(&err);
        rc = obx_config_set(&c, cases[i].key, cases[i].value, src, &err);
        if (rc != cases[i].want || (cases[i].msg && !contains(&err, cases[i].msg)))
            fprintf(stderr, "  case %s = \"%s\": rc %d, message \"%s\"\n", cases[i].key,
                    cases[i].value, (int)rc, obx_buf_str(&err));
        CHECK_INT(rc, cases[i].want);
        CHECK(!cases[i].msg || contains(&err, cases[i].msg));
    }
end:
    obx_config_release(&c);
    obx_buf_release(&err);
    TEST_END;
}

static int
test_set_numbers(void)
{
    static const struct set_case cases[] = {
        {"max_inflight", "1024", OBX_OK, NULL},
        {"max_inflight", "0", OBX_ECONFIG,
         "bad value for 'max_inflight': must be between 1 and 1024"},
        {"max_inflight", "1025", OBX_ECONFIG, "between 1 and 1024"},
        {"max_inflight", "99999999999999999999999", OBX_ECONFIG, "between 1 and 1024"},
        {"max_inflight", "-1", OBX_ECONFIG, "expected a whole number"},
        {"max_inflight", "4x", OBX_ECONFIG, "expected a whole number"},
        {"max_inflight", "", OBX_ECONFIG, "empty value"},
        {"retry_base", "500ms", OBX_OK, NULL},
        {"retry_base", "0", OBX_ECONFIG, "between 1ms and 1d"},
        {"retry_base", "1x", OBX_ECONFIG, "unit ms, s, m, h or d"},
        {"confirm_timeout", "500ms", OBX_ECONFIG, "between 1s and 30d"},
        {"max_age", "0", OBX_OK, NULL},
        {"retention", "3651d", OBX_ECONFIG, "between 0 and 3650d"},
        {"max_body_bytes", "512", OBX_ECONFIG, "between 1K and 1G"},
        {"max_body_bytes", "2G", OBX_ECONFIG, "between 1K and 1G"},
        {"max_body_bytes", "1m", OBX_ECONFIG, "K, M or G"},
        {"max_db_size", "10G", OBX_OK, NULL},
        {"rate_limit", "0", OBX_OK, NULL},
        {"rate_limit", "2000000/s", OBX_ECONFIG, "between 0 and 1000000/s"},
        {"rate_limit", "120", OBX_ECONFIG, "N/s, N/min or N/h"},
        {"rate_burst", "0", OBX_ECONFIG, "between 1 and 1000"},
        {"max_attempts", "1001", OBX_ECONFIG, "between 1 and 1000"},
        {"max_json_depth", "1000", OBX_OK, NULL},
        {"max_resends", "0", OBX_OK, NULL},
    };

    return run_set_cases(cases, sizeof(cases) / sizeof(cases[0]), OBX_SRC_FILE);
}

static int
test_set_enums(void)
{
    TEST_BEGIN;
    static const struct set_case cases[] = {
        {"log_level", "off", OBX_ECONFIG, "expected one of debug|info|warn|error"},
        {"log_level", "INFO", OBX_ECONFIG, "expected one of"},
        {"log_level", "", OBX_ECONFIG, "expected one of"},
        {"log_format", "xml", OBX_ECONFIG, "expected one of text|json"},
        {"synchronous", "off", OBX_ECONFIG, "expected one of full|normal"},
    };
    struct obx_config c;

    CHECK_OK(obx_config_init(&c));
    CHECK_OK(obx_config_set(&c, "log_level", "debug", OBX_SRC_FILE, NULL));
    CHECK_INT(c.log_level, OBX_LOG_DEBUG);
    CHECK_OK(obx_config_set(&c, "log_level", "error", OBX_SRC_FILE, NULL));
    CHECK_INT(c.log_level, OBX_LOG_ERROR);
    CHECK_OK(obx_config_set(&c, "log_format", "json", OBX_SRC_FILE, NULL));
    CHECK_INT(c.log_format, OBX_LOG_JSON);
    CHECK_OK(obx_config_set(&c, "synchronous", "normal", OBX_SRC_FILE, NULL));
    CHECK_INT(c.synchronous_full, 0);
    CHECK_OK(obx_config_set(&c, "synchronous", "full", OBX_SRC_FILE, NULL));
    CHECK_INT(c.synchronous_full, 1);
    CHECK_OK(run_set_cases(cases, sizeof(cases) / sizeof(cases[0]), OBX_SRC_FILE));
end:
    obx_config_release(&c);
    TEST_END;
}

static int
test_set_strings(void)
{
    TEST_BEGIN;
    struct obx_config c;
    struct obx_buf err;
    char *big = NULL;

    obx_buf_init(&err, 4096);
    CHECK_OK(obx_config_init(&c));
    CHECK_OK(obx_config_set(&c, "ca_file", "/etc/ca.pem", OBX_SRC_FILE, &err));
    CHECK_STR(c.ca_file, "/etc/ca.pem");
    /* replacing frees the old string (ASan would report the leak) */
    CHECK_OK(obx_config_set(&c, "ca_file", "/etc/other.pem", OBX_SRC_FILE, &err));
    CHECK_STR(c.ca_file, "/etc/other.pem");
    CHECK_OK(obx_config_set(&c, "ca_file", "", OBX_SRC_FILE, &err));
    CHECK(c.ca_file == NULL);
    CHECK_OK(obx_config_set(&c, "db", "/var/lib/outbox/ob\xc3\xa9.db", OBX_SRC_FILE, &err));
    CHECK_INT(obx_config_set(&c, "db", "", OBX_SRC_FILE, &err), OBX_ECONFIG);
    CHECK(contains(&err, "bad value for 'db': must not be empty"));
    obx_buf_reset(&err);
    CHECK_INT(obx_config_set(&c, "ca_file", "a\tb", OBX_SRC_FILE, &err), OBX_ECONFIG);
    CHECK(contains(&err, "control character"));
    CHECK_INT(obx_config_set(&c, "ca_file", "a\x7f", OBX_SRC_FILE, NULL), OBX_ECONFIG);
    big = malloc(5000);
    CHECK(big != NULL);
    memset(big, 'a', 4999);
    big[4999] = '\0';
    obx_buf_reset(&err);
    CHECK_INT(obx_config_set(&c, "ca_file", big, OBX_SRC_FILE, &err), OBX_ECONFIG);
    CHECK(contains(&err, "longer than 4096 bytes"));
    big[4096] = '\0';
    CHECK_OK(obx_config_set(&c, "ca_file", big, OBX_SRC_FILE, &err));
end:
    free(big);
    obx_config_release(&c);
    obx_buf_release(&err);
    TEST_END;
}

/* Format checks applied when a string option is set. */
static int
test_set_string_formats(void)
{
    static const struct set_case cases[] = {
        {"partoo_base_url", "http://127.0.0.1:9000/v2", OBX_OK, NULL},
        {"partoo_base_url", "ftp://api.partoo.co", OBX_ECONFIG, "http:// or https://"},
        {"partoo_base_url", "https://", OBX_ECONFIG, "bad value for 'partoo_base_url'"},
        {"inbox_url", "https://example.com/inbox", OBX_OK, NULL},
        {"inbox_url", "example.com", OBX_ECONFIG, "bad value for 'inbox_url'"},
        /* http:// only to loopback hosts, by address, however spelled (issue 19 #12). */
        {"inbox_url", "http://127.0.0.1:9/in", OBX_OK, NULL},
        {"inbox_url", "http://127.1/in", OBX_OK, NULL},
        {"inbox_url", "http://localhost:9/in", OBX_OK, NULL},
        {"inbox_url", "http://LOCALHOST/in", OBX_OK, NULL},
        {"inbox_url", "http://[::1]:9/in", OBX_OK, NULL},
        {"inbox_url", "http://[::ffff:127.0.0.1]/in", OBX_OK, NULL},
        {"inbox_url", "http://0x7f.1/in", OBX_OK, NULL},
        {"inbox_url", "http://0.0.0.0:9/in", OBX_ECONFIG, "bad value for 'inbox_url': http://"},
        {"inbox_url", "http://10.0.0.1/in", OBX_ECONFIG, "only to a loopback host"},
        {"inbox_url", "http://[::ffff:10.0.0.1]/in", OBX_ECONFIG, "loopback"},
        {"inbox_url", "http://[::]/in", OBX_ECONFIG, "loopback"},
        {"inbox_url", "http://128.0.0.1/in", OBX_ECONFIG, "loopback"},
        {"inbox_url", "https://10.0.0.1/in", OBX_OK, NULL},
        {"partoo_base_url", "http://192.168.1.1/v2", OBX_ECONFIG,
         "bad value for 'partoo_base_url': http:// is allowed only to a loopback host"},
        {"api_listen", "[::1]:8787", OBX_OK, NULL},
        {"api_listen", "0.0.0.0:0", OBX_OK, NULL},
        {"api_listen", "localhost:65535", OBX_OK, NULL},
        {"api_listen", "localhost:65536", OBX_ECONFIG,
         "bad value for 'api_listen': expected host:port"},
        {"api_listen", "localhost", OBX_ECONFIG, "host:port"},
        {"api_listen", ":8787", OBX_ECONFIG, "host:port"},
        {"api_listen", "host:", OBX_ECONFIG, "host:port"},
        {"api_listen", "host:80x", OBX_ECONFIG, "host:port"},
        {"webhook_listen", "::1:8788", OBX_ECONFIG, "bad value for 'webhook_listen'"},
        {"webhook_listen", "[]:8788", OBX_ECONFIG, "host:port"},
        {"webhook_listen", "[::1]8788", OBX_ECONFIG, "host:port"},
        {"webhook_required_header", "X-Outbox-Secret: s3cr3t", OBX_OK, NULL},
        {"webhook_required_header", "X Outbox: v", OBX_ECONFIG, "X-Name: value"},
        {"webhook_required_header", "X-Outbox:", OBX_ECONFIG, "X-Name: value"},
        {"webhook_required_header", ": v", OBX_ECONFIG, "X-Name: value"},
        {"webhook_public_key", PROD_KEY_HEX, OBX_OK, NULL},
        {"webhook_public_key", PROD_KEY_PEM, OBX_OK, NULL},
        {"webhook_public_key", "d06f5c88", OBX_ECONFIG, "bad value for 'webhook_public_key'"},
        {"webhook_public_key", PROD_KEY_HEX "0", OBX_ECONFIG, "64 hex"},
        /* no padding; wrong algorithm prefix; a character outside base64 */
        {"webhook_public_key", "MCowBQYDK2VwAyEA0G9ciHL6XZQXuWq6W4dFLvwNEPWgcdtQgEVlBIwZWB",
         OBX_ECONFIG, "64 hex"},
        {"webhook_public_key",
         "MCowBQYDK2VwAyEB0G9ciHL6XZQXuWq6W4dFLvwNEPWgcdtQgEVlBIwZWBQ=", OBX_ECONFIG, "64 hex"},
        {"webhook_public_key",
         "MCowBQYDK2VwAyEA0G9ciHL6XZQXuWq6W4dFLvwNEPWgcdtQgEVlBIw!WBQ=", OBX_ECONFIG, "64 hex"},
        {"webhook_path_secret", "a1-b2_c3.d~", OBX_OK, NULL},
        {"webhook_path_secret", "a/b", OBX_ECONFIG, "bad value for 'webhook_path_secret'"},
        {"api_token", "tok en", OBX_ECONFIG, "bad value for 'api_token': may not contain spaces"},
        {"readonly_channels", "ch1, ch2 ,ch3", OBX_OK, NULL},
        {"readonly_channels", "ch1,,ch2", OBX_ECONFIG, "bad value for 'readonly_channels'"},
        {"readonly_channels", "ch1,", OBX_ECONFIG, "readonly_channels"},
        {"readonly_channels", "ch 1", OBX_ECONFIG, "readonly_channels"},
    };

    return run_set_cases(cases, sizeof(cases) / sizeof(cases[0]), OBX_SRC_FILE);
}

/* A failed set changes nothing: the struct is byte-identical afterwards. */
static int
test_set_failure_leaves_config(void)
{
    TEST_BEGIN;
    static const struct set_case bad[] = {
        {"db", "", OBX_ECONFIG, NULL},
        {"max_inflight", "0", OBX_ECONFIG, NULL},
        {"retry_base", "1y", OBX_ECONFIG, NULL},
        {"rate_limit", "5", OBX_ECONFIG, NULL},
        {"max_body_bytes", "1X", OBX_ECONFIG, NULL},
        {"log_level", "loud", OBX_ECONFIG, NULL},
        {"api_listen", "nope", OBX_ECONFIG, NULL},
        {"ca_file", "x\ny", OBX_ECONFIG, NULL},
        {"no_such_key", "1", OBX_ECONFIG, NULL},
    };
    struct obx_config c, before;

    CHECK_OK(obx_config_init(&c));
    CHECK_OK(obx_config_set(&c, "ca_file", "/etc/ca.pem", OBX_SRC_FILE, NULL));
    memcpy(&before, &c, sizeof(c));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_INT(obx_config_set(&c, bad[i].key, bad[i].value, OBX_SRC_FILE, NULL), OBX_ECONFIG);
        CHECK(memcmp(&before, &c, sizeof(c)) == 0);
    }
    /* the same with an allocation failure while copying a string */
    obx_mem_fail_after(0);
    CHECK_INT(obx_config_set(&c, "ca_file", "/new.pem", OBX_SRC_FILE, NULL), OBX_ENOMEM);
    obx_mem_fail_after(-1);
    CHECK(memcmp(&before, &c, sizeof(c)) == 0);
    CHECK_STR(c.ca_file, "/etc/ca.pem");
end:
    obx_mem_fail_after(-1);
    obx_config_release(&c);
    TEST_END;
}

static int
test_unknown_key(void)
{
    TEST_BEGIN;
    struct obx_config c;
    struct obx_buf err;

    obx_buf_init(&err, 4096);
    CHECK_OK(obx_config_init(&c));
    CHECK_INT(obx_config_set(&c, "rate_limt", "5/s", OBX_SRC_FILE, &err), OBX_ECONFIG);
    CHECK_STR(obx_buf_str(&err), "config file: unknown key 'rate_limt'");
    obx_buf_reset(&err);
    CHECK_INT(obx_config_set(&c, "partoo_api_key", "k-123", OBX_SRC_FILE, &err), OBX_ECONFIG);
    CHECK(contains(&err, "unknown key 'partoo_api_key' (set OUTBOX_PARTOO_API_KEY"));
    CHECK(!contains(&err, "k-123"));
    /* the renamed fields are not keys under their C names */
    CHECK_INT(obx_config_set(&c, "retry_base_ms", "5", OBX_SRC_FILE, NULL), OBX_ECONFIG);
    CHECK_INT(obx_config_set(&c, "rate_limit_per_s", "5", OBX_SRC_FILE, NULL), OBX_ECONFIG);
    CHECK(obx_config_has_key("rate_limit"));
    CHECK(obx_config_has_key("synchronous"));
    CHECK(obx_config_has_key("webhook_required_header"));
    CHECK(!obx_config_has_key("partoo_api_key"));
    CHECK(!obx_config_has_key("synchronous_full"));
    CHECK(!obx_config_has_key("rate-limit"));
    CHECK(!obx_config_has_key("RATE_LIMIT"));
    CHECK(!obx_config_has_key(""));
end:
    obx_config_release(&c);
    obx_buf_release(&err);
    TEST_END;
}

static int
test_flag_and_env_messages(void)
{
    TEST_BEGIN;
    struct obx_config c;
    struct obx_buf err;

    obx_buf_init(&err, 4096);
    CHECK_OK(obx_config_init(&c));
    CHECK_OK(obx_config_set(&c, "rate-limit", "60/min", OBX_SRC_FLAG, &err));
    CHECK(c.rate_limit_per_s == 1.0);
    CHECK_OK(obx_config_set(&c, "--retry-base", "2s", OBX_SRC_FLAG, &err));
    CHECK_INT(c.retry_base_ms, 2000);
    CHECK_OK(obx_config_set(&c, "max_inflight", "3", OBX_SRC_FLAG, &err));
    CHECK_INT(c.max_inflight, 3);
    CHECK_INT(obx_config_set(&c, "rate-limit", "fast", OBX_SRC_FLAG, &err), OBX_ECONFIG);
    CHECK_STR(obx_buf_str(&err), "flag --rate-limit: bad value for 'rate_limit': expected N/s, "
                                 "N/min or N/h (e.g. 290/min), or 0 for unlimited");
    obx_buf_reset(&err);
    CHECK_INT(obx_config_set(&c, "no-such", "1", OBX_SRC_FLAG, &err), OBX_ECONFIG);
    CHECK_STR(obx_buf_str(&err), "flag --no-such: unknown key 'no-such'");
    obx_buf_reset(&err);
    CHECK_INT(obx_config_set(&c, "retry_base", "soon", OBX_SRC_ENV, &err), OBX_ECONFIG);
    CHECK(contains(&err, "environment OUTBOX_RETRY_BASE: bad value for 'retry_base': expected"));
    obx_buf_reset(&err);
    CHECK_INT(obx_config_set(&c, "api_token", "bad token", OBX_SRC_DEFAULT, &err), OBX_ECONFIG);
    CHECK_STR(obx_buf_str(&err), "default: bad value for 'api_token': may not contain spaces");
end:
    obx_config_release(&c);
    obx_buf_release(&err);
    TEST_END;
}

static int
test_file_parse(void)
{
    TEST_BEGIN;
    static const char text[] =
        "# outbox configuration\n"
        "\n"
        "   \t\n"
        "db = /var/lib/outbox/outbox.db\n"
        "  rate_limit=120/min   # Partoo allows 300/min\n"
        "retry_base\t=\t2s\n"
        "partoo_api_key_file = \"/etc/outbox/key #1\"   # quoted: '#' is literal inside\n"
        "inbox_url = https://example.com/inbox#frag\n"
        "log_level = \"debug\"\n"
        "ca_file = \"\"\n"
        "readonly_channels = ch1, ch2\r\n"
        "   # indented comment\n"
        "synchronous = normal\n"
        "max_resends = 5"; /* no final newline */
    char path[64] = "";
    struct obx_config c;
    struct obx_buf err;

    obx_buf_init(&err, 4096);
    CHECK_OK(obx_config_init(&c));
    CHECK_OK(obx_config_set(&c, "ca_file", "/to/be/unset", OBX_SRC_FILE, NULL));
    CHECK_OK(write_temp(text, strlen(text), path));
    CHECK_OK(obx_config_load_file(&c, path, &err));
    CHECK_STR(obx_buf_str(&err), "");
    CHECK_STR(c.db, "/var/lib/outbox/outbox.db");
    CHECK(c.rate_limit_per_s == 2.0);
    CHECK_INT(c.retry_base_ms, 2000);
    CHECK_STR(c.partoo_api_key_file, "/etc/outbox/key #1");
    CHECK_STR(c.inbox_url, "https://example.com/inbox#frag");
    CHECK_INT(c.log_level, OBX_LOG_DEBUG);
    CHECK(c.ca_file == NULL);
    CHECK_STR(c.readonly_channels, "ch1, ch2");
    CHECK_INT(c.synchronous_full, 0);
    CHECK_INT(c.max_resends, 5);
end:
    if (path[0])
        unlink(path);
    obx_config_release(&c);
    obx_buf_release(&err);
    TEST_END;
}

/* A file, the return code expected and the message expected after "<path>". */
struct file_case {
    const char *text;
    enum obx_err want;
    const char *msg;
    size_t len; /* 0: strlen(text) */
};

static int
test_file_errors(void)
{
    TEST_BEGIN;
    static const struct file_case cases[] = {
        {"db = a.db\n# c\nfoo = 1\n", OBX_ECONFIG, ":3: unknown key 'foo'"},
        {"\n  Rate_Limit = 1/s\n", OBX_ECONFIG, ":2: unknown key 'Rate_Limit'"},
        {"rate_limit = 5\n", OBX_ECONFIG,
         ":1: bad value for 'rate_limit': expected N/s, N/min or N/h (e.g. 290/min), or 0 for "
         "unlimited"},
        {"retry_base =\n", OBX_ECONFIG, ":1: bad value for 'retry_base': empty value; expected"},
        {"db\n", OBX_ECONFIG, ":1: expected 'key = value'"},
        {" = 5\n", OBX_ECONFIG, ":1: missing key before '='"},
        {"api_token = \"abc\n", OBX_ECONFIG, ":1: bad value for 'api_token': unterminated quote"},
        {"api_token = \"abc\"def\n", OBX_ECONFIG, "text after the closing quote"},
        {"api_token = \"abc\"#x\n", OBX_ECONFIG, "text after the closing quote"},
        {"ca_file = a\x01"
         "b\n",
         OBX_ECONFIG, ":1: bad value for 'ca_file': contains a control"},
        {"ca_file = a\0b\n", OBX_ECONFIG, ":1: NUL byte in line", 14},
        {"max_inflight = 1 2\n", OBX_ECONFIG, "bad value for 'max_inflight'"},
    };
    struct obx_config c;
    struct obx_buf err;
    char path[64] = "";

    obx_buf_init(&err, 4096);
    CHECK_OK(obx_config_init(&c));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].text);
        char want[256];
        obx_buf_reset(&err);
        CHECK_OK(write_temp(cases[i].text, len, path));
        snprintf(want, sizeof(want), "%s%s", path, cases[i].msg);
        if (cases[i].msg[0] != ':')
            snprintf(want, sizeof(want), "%s", cases[i].msg);
        CHECK_INT(obx_config_load_file(&c, path, &err), cases[i].want);
        if (!contains(&err, want))
            fprintf(stderr, "  case %zu: \"%s\" lacks \"%s\"\n", i, obx_buf_str(&err), want);
        CHECK(contains(&err, want));
        unlink(path);
        path[0] = '\0';
    }
end:
    if (path[0])
        unlink(path);
    obx_config_release(&c);
    obx_buf_release(&err);
    TEST_END;
}

static int
test_file_limits(void)
{
    TEST_BEGIN;
    struct obx_config c;
    struct obx_buf err;
    char path[64] = "";
    char *text = NULL;
    size_t big = 1024 * 1024 + 1;

    obx_buf_init(&err, 4096);
    CHECK_OK(obx_config_init(&c));
    CHECK_INT(obx_config_load_file(&c, "/nonexistent/outbox.conf", &err), OBX_ECONFIG);
    CHECK(contains(&err, "'/nonexistent/outbox.conf'"));
    CHECK(contains(&err, "No such file"));

    /* a 4096-byte line is fine, 4097 is not */
    text = malloc(big + 1);
    CHECK(text != NULL);
    memcpy(text, "ca_file = ", 10);
    memset(text + 10, 'a', 4086);
    memcpy(text + 4096, "\n", 2);
    CHECK_OK(write_temp(text, strlen(text), path));
    CHECK_OK(obx_config_load_file(&c, path, &err));
    CHECK_INT(strlen(c.ca_file), 4086);
    unlink(path);
    memcpy(text + 4096, "a\n", 3);
    CHECK_OK(write_temp(text, strlen(text), path));
    obx_buf_reset(&err);
    CHECK_INT(obx_config_load_file(&c, path, &err), OBX_ECONFIG);
    CHECK(contains(&err, ":1: line longer than 4096 bytes"));
    unlink(path);

    /* a file over 1 MiB is refused, even if every line is a comment */
    memset(text, '\n', big);
    text[0] = '#';
    text[big] = '\0';
    CHECK_OK(write_temp(text, big, path));
    obx_buf_reset(&err);
    CHECK_INT(obx_config_load_file(&c, path, &err), OBX_ECONFIG);
    CHECK(contains(&err, "larger than 1 MiB"));
    CHECK_OK(write_temp(text, big - 1, path + 32)); /* exactly 1 MiB loads */
    CHECK_OK(obx_config_load_file(&c, path + 32, &err));
    unlink(path + 32);
end:
    if (path[0])
        unlink(path);
    free(text);
    obx_config_release(&c);
    obx_buf_release(&err);
    TEST_END;
}

static int
test_precedence(void)
{
    TEST_BEGIN;
    static const char text[] = "retry_base = 2s\nrate_limit = 100/min\nmax_inflight = 4\n"
                               "log_level = warn\n";
    char *envp[] = {
        "PATH=/usr/bin",
        "OUTBOX_RATE_LIMIT=120/min",
        "OUTBOX_MAX_INFLIGHT=8",
        "OUTBOX_CA_FILE=",
        "outbox_db=ignored.db", /* not the OUTBOX_ prefix */
        NULL,
    };
    char path[64] = "";
    struct obx_config c;
    struct obx_buf err;

    obx_buf_init(&err, 4096);
    CHECK_OK(obx_config_init(&c));
    CHECK_OK(write_temp(text, strlen(text), path));
    CHECK_OK(obx_config_load_file(&c, path, &err));
    CHECK_OK(obx_config_load_env(&c, envp, &err));
    CHECK_OK(obx_config_set(&c, "max-inflight", "9", OBX_SRC_FLAG, &err));
    CHECK_INT(c.retry_base_ms, 2000); /* file only */
    CHECK(c.rate_limit_per_s == 2.0); /* env over file */
    CHECK_INT(c.max_inflight, 9);     /* flag over env over file */
    CHECK_INT(c.log_level, OBX_LOG_WARN);
    CHECK(c.ca_file == NULL); /* an empty variable unsets */
    CHECK_STR(c.db, "outbox.db");
    CHECK_OK(obx_config_load_env(&c, NULL, &err));
end:
    if (path[0])
        unlink(path);
    obx_config_release(&c);
    obx_buf_release(&err);
    TEST_END;
}

static int
test_env_errors(void)
{
    TEST_BEGIN;
    char *allowed[] = {
        "OUTBOX_PARTOO_API_KEY=k-env-secret",
        "OUTBOX_CONFIG=/etc/outbox.conf",
        "OUTBOX_BIN=/usr/bin/outbox",
        "OUTBOX_TEST_PORT=1234",
        "OUTBOX_TEST_=x",
        "OUTBOX_NO_EQUALS_SIGN",
        NULL,
    };
    char *unknown[] = {"OUTBOX_LOG_LEVEL=debug", "OUTBOX_FOO=1", NULL};
    char *bad[] = {"OUTBOX_MAX_ATTEMPTS=lots", NULL};
    char *near[] = {"OUTBOX_CONFIGS=x", NULL};
    struct obx_config c;
    struct obx_buf err;

    obx_buf_init(&err, 4096);
    CHECK_OK(obx_config_init(&c));
    CHECK_OK(obx_config_load_env(&c, allowed, &err));
    CHECK(c.partoo_api_key == NULL); /* the secret is not loaded by load_env */
    CHECK_INT(obx_config_load_env(&c, unknown, &err), OBX_ECONFIG);
    CHECK_STR(obx_buf_str(&err), "environment OUTBOX_FOO: unknown key 'foo'");
    CHECK_INT(c.log_level, OBX_LOG_DEBUG); /* variables before the bad one were applied */
    obx_buf_reset(&err);
    CHECK_INT(obx_config_load_env(&c, bad, &err), OBX_ECONFIG);
    CHECK(contains(&err, "environment OUTBOX_MAX_ATTEMPTS: bad value for 'max_attempts'"));
    obx_buf_reset(&err);
    CHECK_INT(obx_config_load_env(&c, near, &err), OBX_ECONFIG);
    CHECK(contains(&err, "unknown key 'configs'"));
end:
    obx_config_release(&c);
    obx_buf_release(&err);
    TEST_END;
}

static int
test_secrets(void)
{
    TEST_BEGIN;
    static const char keyfile[] = "  k-file-secret \r\nsecond line\n";
    char *env_key[] = {"OUTBOX_PARTOO_API_KEY=k-env-secret", NULL};
    char *env_empty[] = {"OUTBOX_PARTOO_API_KEY=", NULL};
    char path[64] = "";
    struct obx_config c;
    struct obx_buf err;

    obx_buf_init(&err, 4096);
    CHECK_OK(obx_config_init(&c));
    CHECK_OK(obx_config_load_secrets(&c, NULL, &err)); /* nothing anywhere: not an error */
    CHECK(c.partoo_api_key == NULL);
    CHECK_OK(write_temp(keyfile, strlen(keyfile), path));
    CHECK_OK(obx_config_set(&c, "partoo_api_key_file", path, OBX_SRC_FILE, &err));
    CHECK_OK(obx_config_load_secrets(&c, env_key, &err));
    CHECK_STR(c.partoo_api_key, "k-env-secret"); /* env wins */
    CHECK_OK(obx_config_load_secrets(&c, env_empty, &err));
    CHECK_STR(c.partoo_api_key, "k-file-secret"); /* first line, trimmed */
    CHECK_STR(obx_buf_str(&err), "");
end:
    if (path[0])
        unlink(path);
    obx_config_release(&c);
    obx_buf_release(&err);
    TEST_END;
}

static int
test_secret_errors(void)
{
    TEST_BEGIN;
    static const char ctl[] = "k-bad\x01secret\n";
    char *env_blank[] = {"OUTBOX_PARTOO_API_KEY=  \t", NULL};
    char *env_ctl[] = {"OUTBOX_PARTOO_API_KEY=k-bad\x1bsecret", NULL};
    char path[64] = "";
    struct obx_config c;
    struct obx_buf err;

    obx_buf_init(&err, 4096);
    CHECK_OK(obx_config_init(&c));
    CHECK_OK(obx_config_set(&c, "partoo_api_key_file", "/nonexistent/key", OBX_SRC_FILE, &err));
    CHECK_INT(obx_config_load_secrets(&c, NULL, &err), OBX_ECONFIG);
    CHECK(contains(&err, "partoo_api_key_file '/nonexistent/key'"));
    CHECK(c.partoo_api_key == NULL);

    CHECK_OK(write_temp("\n\nk-later-line\n", 15, path));
    CHECK_OK(obx_config_set(&c, "partoo_api_key_file", path, OBX_SRC_FILE, &err));
    obx_buf_reset(&err);
    CHECK_INT(obx_config_load_secrets(&c, NULL, &err), OBX_ECONFIG);
    CHECK(contains(&err, "is empty") && contains(&err, path));
    CHECK(!contains(&err, "k-later-line"));
    unlink(path);

    CHECK_OK(write_temp(ctl, strlen(ctl), path));
    CHECK_OK(obx_config_set(&c, "partoo_api_key_file", path, OBX_SRC_FILE, &err));
    obx_buf_reset(&err);
    CHECK_INT(obx_config_load_secrets(&c, NULL, &err), OBX_ECONFIG);
    CHECK(contains(&err, "control character"));
    CHECK(!contains(&err, "k-bad") && !contains(&err, "secret\n"));

    obx_buf_reset(&err);
    CHECK_INT(obx_config_load_secrets(&c, env_ctl, &err), OBX_ECONFIG);
    CHECK(contains(&err, "OUTBOX_PARTOO_API_KEY") && !contains(&err, "k-bad"));
    obx_buf_reset(&err);
    CHECK_INT(obx_config_load_secrets(&c, env_blank, &err), OBX_ECONFIG);
    CHECK(contains(&err, "OUTBOX_PARTOO_API_KEY: the API key is empty"));
    CHECK(c.partoo_api_key == NULL);
end:
    if (path[0])
        unlink(path);
    obx_config_release(&c);
    obx_buf_release(&err);
    TEST_END;
}

static int
test_print_masks_secrets(void)
{
    TEST_BEGIN;
    char *envp[] = {"OUTBOX_PARTOO_API_KEY=k-SECRET-api-key", NULL};
    struct obx_config c;
    char *text = NULL;

    CHECK_OK(obx_config_init(&c));
    text = print_to_string(&c);
    CHECK(text != NULL);
    CHECK(strstr(text, "\npartoo_api_key = (unset)\n") != NULL);
    CHECK(strstr(text, "\napi_token = (unset)\n") != NULL);
    free(text);
    text = NULL;

    CHECK_OK(obx_config_load_secrets(&c, envp, NULL));
    CHECK_OK(obx_config_set(&c, "api_token", "t-SECRET-token-0123", OBX_SRC_FILE, NULL));
    CHECK_OK(obx_config_set(&c, "webhook_path_secret", "p-SECRET", OBX_SRC_FILE, NULL));
    CHECK_OK(obx_config_set(&c, "webhook_required_header", "X-H: h-SECRET", OBX_SRC_FILE, NULL));
    text = print_to_string(&c);
    CHECK(text != NULL);
    CHECK(strstr(text, "SECRET") == NULL);
    CHECK(strstr(text, "\npartoo_api_key = ********\n") != NULL);
    CHECK(strstr(text, "\napi_token = ********\n") != NULL);
    CHECK(strstr(text, "\nwebhook_path_secret = ********\n") != NULL);
    CHECK(strstr(text, "\nwebhook_required_header = ********\n") != NULL);
end:
    free(text);
    obx_config_release(&c);
    TEST_END;
}

static int
test_print_formats(void)
{
    TEST_BEGIN;
    static const char *const want[] = {
        "db = outbox.db\n",
        "synchronous = full\n",
        "max_db_size = 0\n",
        "retention = 30d\n",
        "rate_limit = 290/min\n",
        "retry_base = 1s\n",
        "retry_cap = 5m\n",
        "max_age = 0\n",
        "auth_probe_interval = 1m\n",
        "max_body_bytes = 1M\n",
        "max_content_bytes = 64K\n",
        "log_level = info\n",
        "log_format = text\n",
        "ca_file = (unset)\n",
        "api_listen = 127.0.0.1:8787\n",
        "partoo_base_url = https://api.partoo.co/v2\n",
    };
    struct obx_config c;
    char *text = NULL;

    CHECK_OK(obx_config_init(&c));
    text = print_to_string(&c);
    CHECK(text != NULL);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (!strstr(text, want[i]))
            fprintf(stderr, "  missing \"%s\" in:\n%s", want[i], text);
        CHECK(strstr(text, want[i]) != NULL);
    }
    CHECK(strncmp(text, "db = ", 5) == 0);
    free(text);
    text = NULL;
    CHECK_OK(obx_config_set(&c, "rate_limit", "5/s", OBX_SRC_FILE, NULL));
    CHECK_OK(obx_config_set(&c, "retry_base", "1500ms", OBX_SRC_FILE, NULL));
    CHECK_OK(obx_config_set(&c, "max_db_size", "1500", OBX_SRC_FILE, NULL));
    CHECK_OK(obx_config_set(&c, "log_level", "debug", OBX_SRC_FILE, NULL));
    CHECK_OK(obx_config_set(&c, "synchronous", "normal", OBX_SRC_FILE, NULL));
    text = print_to_string(&c);
    CHECK(text != NULL);
    CHECK(strstr(text, "rate_limit = 5/s\n") && strstr(text, "retry_base = 1500ms\n"));
    CHECK(strstr(text, "max_db_size = 1500\n") && strstr(text, "log_level = debug\n"));
    CHECK(strstr(text, "synchronous = normal\n"));
end:
    free(text);
    obx_config_release(&c);
    TEST_END;
}

/* What print writes (set values only) loads back to the same configuration. */
static int
test_print_round_trip(void)
{
    TEST_BEGIN;
    static const char text[] =
        "rate_limit = 7/h\nretry_base = 90s\nretry_cap = 36h\nretention = 0\nmax_db_size = 3G\n"
        "max_content_bytes = 100000\nlog_format = json\nsynchronous = normal\n"
        "readonly_channels = a,b\ninbox_url = http://127.0.0.1:1/in\nmax_inflight = 100\n";
    struct obx_config a, b;
    struct obx_buf err, kept;
    char *out1 = NULL, *out2 = NULL;
    char path[64] = "";

    obx_buf_init(&err, 4096);
    obx_buf_init(&kept, 1 << 20);
    CHECK_OK(obx_config_init(&a));
    CHECK_OK(obx_config_init(&b));
    CHECK_OK(write_temp(text, strlen(text), path));
    CHECK_OK(obx_config_load_file(&a, path, &err));
    unlink(path);
    out1 = print_to_string(&a);
    CHECK(out1 != NULL);
    for (char *line = strtok(out1, "\n"); line; line = strtok(NULL, "\n")) {
        if (strstr(line, "(unset)") || strncmp(line, "partoo_api_key ", 15) == 0)
            continue;
        CHECK_OK(obx_buf_printf(&kept, "%s\n", line));
    }
    CHECK_OK(write_temp(obx_buf_str(&kept), kept.len, path));
    CHECK_OK(obx_config_load_file(&b, path, &err));
    free(out1);
    out1 = print_to_string(&a);
    out2 = print_to_string(&b);
    CHECK(out1 && out2);
    CHECK_STR(out2, out1);
    CHECK(strstr(out2, "rate_limit = 7/h\n") && strstr(out2, "retry_cap = 36h\n"));
end:
    if (path[0])
        unlink(path);
    free(out1);
    free(out2);
    obx_config_release(&a);
    obx_config_release(&b);
    obx_buf_release(&err);
    obx_buf_release(&kept);
    TEST_END;
}

/* Cross-field rules, set through the API. */
static int
test_validate_cross_field(void)
{
    TEST_BEGIN;
    static const struct {
        const char *k1, *v1, *k2, *v2, *msg;
    } cases[] = {
        {"retry_base", "10m", "retry_cap", "5m",
         "'retry_base' (10m) must not exceed 'retry_cap' (5m)"},
        {"connect_timeout", "1m", "request_timeout", "30s",
         "'connect_timeout' (1m) must not exceed 'request_timeout' (30s)"},
        {"max_content_bytes", "512K", "max_body_bytes", "256K", "'max_content_bytes' (512K)"},
        {"webhook_public_key", PROD_KEY_HEX, "webhook_public_key_file", "/etc/k.pem",
         "'webhook_public_key' and 'webhook_public_key_file' are both set"},
    };
    struct obx_config c;
    struct obx_buf err;

    obx_buf_init(&err, 4096);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK_OK(obx_config_init(&c));
        obx_buf_reset(&err);
        CHECK_OK(obx_config_set(&c, cases[i].k1, cases[i].v1, OBX_SRC_FILE, &err));
        CHECK_OK(obx_config_set(&c, cases[i].k2, cases[i].v2, OBX_SRC_FILE, &err));
        CHECK_INT(obx_config_validate(&c, &err), OBX_ECONFIG);
        if (!contains(&err, cases[i].msg))
            fprintf(stderr, "  got \"%s\"\n", obx_buf_str(&err));
        CHECK(contains(&err, cases[i].msg));
        obx_config_release(&c);
    }
    CHECK_OK(obx_config_init(&c));
    CHECK_OK(obx_config_set(&c, "retry_base", "5m", OBX_SRC_FILE, &err));
    CHECK_OK(obx_config_validate(&c, &err)); /* equal is fine */
end:
    obx_config_release(&c);
    obx_buf_release(&err);
    TEST_END;
}

/* A struct edited by hand (plain data) is re-checked field by field. */
static int
test_validate_fields(void)
{
    TEST_BEGIN;
    struct obx_config c;
    struct obx_buf err;

    obx_buf_init(&err, 4096);
    CHECK_OK(obx_config_init(&c));
    obx_free(c.partoo_base_url);
    c.partoo_base_url = obx_strdup("ftp://api.partoo.co");
    CHECK_INT(obx_config_validate(&c, &err), OBX_ECONFIG);
    CHECK(contains(&err, "bad value for 'partoo_base_url'"));
    obx_config_release(&c);

    CHECK_OK(obx_config_init(&c));
    obx_free(c.db);
    c.db = NULL;
    obx_buf_reset(&err);
    CHECK_INT(obx_config_validate(&c, &err), OBX_ECONFIG);
    CHECK_STR(obx_buf_str(&err), "'db' must be set");
    obx_config_release(&c);

    CHECK_OK(obx_config_init(&c));
    c.webhook_required_header = obx_strdup("X-Secret");
    obx_buf_reset(&err);
    CHECK_INT(obx_config_validate(&c, &err), OBX_ECONFIG);
    CHECK(contains(&err, "'webhook_required_header': expected 'X-Name: value'"));
    obx_config_release(&c);

    CHECK_OK(obx_config_init(&c));
    c.max_inflight = 0;
    obx_buf_reset(&err);
    CHECK_INT(obx_config_validate(&c, &err), OBX_ECONFIG);
    CHECK(contains(&err, "'max_inflight': must be between 1 and 1024"));
    c.max_inflight = 16;
    c.log_level = OBX_LOG_OFF;
    obx_buf_reset(&err);
    CHECK_INT(obx_config_validate(&c, &err), OBX_ECONFIG);
    CHECK(contains(&err, "'log_level': expected one of"));
    c.log_level = OBX_LOG_INFO;
    c.rate_limit_per_s = -1;
    obx_buf_reset(&err);
    CHECK_INT(obx_config_validate(&c, &err), OBX_ECONFIG);
    CHECK(contains(&err, "'rate_limit'"));
end:
    obx_config_release(&c);
    obx_buf_release(&err);
    TEST_END;
}

static int
test_readonly_channels(void)
{
    TEST_BEGIN;
    struct obx_config c;

    CHECK_OK(obx_config_init(&c));
    CHECK_INT(obx_config_channel_readonly(&c, "ch1"), 0);
    CHECK_OK(obx_config_set(&c, "readonly_channels", " ch1, ch2 ,ch3", OBX_SRC_FILE, NULL));
    CHECK_INT(obx_config_channel_readonly(&c, "ch1"), 1);
    CHECK_INT(obx_config_channel_readonly(&c, "ch2"), 1);
    CHECK_INT(obx_config_channel_readonly(&c, "ch3"), 1);
    CHECK_INT(obx_config_channel_readonly(&c, "ch"), 0);
    CHECK_INT(obx_config_channel_readonly(&c, "ch12"), 0);
    CHECK_INT(obx_config_channel_readonly(&c, "CH1"), 0);
    CHECK_INT(obx_config_channel_readonly(&c, "ch1 "), 0);
    CHECK_INT(obx_config_channel_readonly(&c, ""), 0);
    CHECK_INT(obx_config_channel_readonly(&c, NULL), 0);
    CHECK_OK(obx_config_set(&c, "readonly_channels", "solo", OBX_SRC_FILE, NULL));
    CHECK_INT(obx_config_channel_readonly(&c, "solo"), 1);
    CHECK_INT(obx_config_channel_readonly(&c, "ch1"), 0);
end:
    obx_config_release(&c);
    TEST_END;
}

/* 1 when c's parsed readonly list is exactly ids (sorted). */
static int
readonly_list_is(const struct obx_config *c, const char *const *ids, size_t n)
{
    if (c->nreadonly_channel_ids != n) {
        fprintf(stderr, "  %zu readonly ids, expected %zu\n", c->nreadonly_channel_ids, n);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(c->readonly_channel_ids[i], ids[i]) != 0) {
            fprintf(stderr, "  readonly id %zu is '%s', expected '%s'\n", i,
                    c->readonly_channel_ids[i], ids[i]);
            return 0;
        }
    }
    return 1;
}

/*
 * Lists and keys are parsed once, when set: readonly_channels into a sorted array without
 * duplicates (the decision is a binary search), webhook_required_header into name and value.
 * A value that fails, for a bad format or out of memory, leaves the parsed forms as they were;
 * unsetting empties them.
 */
static int
test_parsed_at_load(void)
{
    TEST_BEGIN;
    static const char *const sorted[] = {"a", "b-2", "ch~3", "z"};
    static const char *const solo[] = {"solo"};
    struct obx_config c;
    int completed = 0;

    CHECK_OK(obx_config_init(&c));
    CHECK(readonly_list_is(&c, NULL, 0));
    CHECK(c.webhook_header_name == NULL && c.webhook_header_value == NULL);
    CHECK_OK(obx_config_set(&c, "readonly_channels", "z, b-2,a ,ch~3,a,z", OBX_SRC_FILE, NULL));
    CHECK(readonly_list_is(&c, sorted, 4));
    for (size_t i = 0; i < 4; i++)
        CHECK_INT(obx_config_channel_readonly(&c, sorted[i]), 1);
    CHECK_INT(obx_config_channel_readonly(&c, "b"), 0);
    CHECK_INT(obx_config_channel_readonly(&c, "0"), 0);
    CHECK_INT(obx_config_channel_readonly(&c, "zz"), 0);
    /* A bad value changes neither the string nor its parsed form. */
    CHECK_INT(obx_config_set(&c, "readonly_channels", "x,,y", OBX_SRC_FLAG, NULL), OBX_ECONFIG);
    CHECK(readonly_list_is(&c, sorted, 4));
    /* Nor does running out of memory at any allocation of the new one. */
    for (long n = 0; n < 20 && !completed; n++) {
        enum obx_err rc;
        obx_mem_fail_after(n);
        rc = obx_config_set(&c, "readonly_channels", "solo, solo", OBX_SRC_ENV, NULL);
        obx_mem_fail_after(-1);
        CHECK(rc == OBX_OK || rc == OBX_ENOMEM);
        if (rc == OBX_ENOMEM) {
            CHECK(readonly_list_is(&c, sorted, 4));
            CHECK_STR(c.readonly_channels, "z, b-2,a ,ch~3,a,z");
        }
        completed = rc == OBX_OK;
    }
    CHECK(completed);
    CHECK(readonly_list_is(&c, solo, 1));
    CHECK_OK(obx_config_set(&c, "readonly_channels", "", OBX_SRC_FLAG, NULL));
    CHECK(readonly_list_is(&c, NULL, 0));
    CHECK_INT(obx_config_channel_readonly(&c, "solo"), 0);

    CHECK_OK(obx_config_set(&c, "webhook_required_header", "X-Outbox-Secret:   s3 cr3t",
                            OBX_SRC_FILE, NULL));
    CHECK_STR(c.webhook_header_name, "X-Outbox-Secret");
    CHECK_STR(c.webhook_header_value, "s3 cr3t");
    CHECK_INT(obx_config_set(&c, "webhook_required_header", "X Bad: v", OBX_SRC_FILE, NULL),
              OBX_ECONFIG);
    CHECK_STR(c.webhook_header_name, "X-Outbox-Secret");
    CHECK_OK(obx_config_set(&c, "webhook_required_header", "", OBX_SRC_FILE, NULL));
    CHECK(c.webhook_header_name == NULL && c.webhook_header_value == NULL);
end:
    obx_mem_fail_after(-1);
    obx_config_release(&c);
    TEST_END;
}

/* Fails every allocation in turn through a full load; nothing may leak or crash. */
static int
test_alloc_failures(void)
{
    TEST_BEGIN;
    static const char text[] =
        "db = x.db\napi_token = t-0123456789abcdef\ninbox_url = http://127.0.0.1/i\n"
        "readonly_channels = b, a\nwebhook_required_header = X-A: v\n";
    static const char keyfile[] = "k-key\n";
    char path[64] = "", keypath[64] = "";
    char *envp[] = {"OUTBOX_CA_FILE=/ca.pem", NULL};
    int completed = 0;

    CHECK_OK(write_temp(text, strlen(text), path));
    CHECK_OK(write_temp(keyfile, strlen(keyfile), keypath));
    for (long n = 0; n < 200 && !completed; n++) {
        struct obx_config c;
        struct obx_buf err;
        enum obx_err rc;
        obx_buf_init(&err, 4096);
        obx_mem_fail_after(n);
        rc = obx_config_init(&c);
        if (rc == OBX_OK) {
            rc = obx_config_load_file(&c, path, &err);
            if (rc == OBX_OK)
                rc = obx_config_load_env(&c, envp, &err);
            if (rc == OBX_OK)
                rc = obx_config_set(&c, "partoo_api_key_file", keypath, OBX_SRC_FLAG, &err);
            if (rc == OBX_OK)
                rc = obx_config_load_secrets(&c, NULL, &err);
            obx_config_release(&c);
        }
        obx_mem_fail_after(-1);
        obx_buf_release(&err);
        if (rc != OBX_OK && rc != OBX_ENOMEM)
            fprintf(stderr, "  allocation %ld: rc %d\n", n, (int)rc);
        CHECK(rc == OBX_OK || rc == OBX_ENOMEM);
        completed = rc == OBX_OK;
    }
    CHECK(completed);
end:
    obx_mem_fail_after(-1);
    if (path[0])
        unlink(path);
    if (keypath[0])
        unlink(keypath);
    TEST_END;
}

/* Reads a whole small file into a string the caller frees with free(); NULL if unreadable. */
static char *
slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    char *text = calloc(1, 1 << 20);
    size_t n = 0;

    if (f && text)
        n = fread(text, 1, (1 << 20) - 1, f);
    if (f)
        fclose(f);
    if (n == 0) {
        free(text);
        return NULL;
    }
    return text;
}

/*
 * outbox.conf.example loads to exactly the defaults, and it and docs/configuration.md
 * mention every key obx_config_print() lists.
 */
static int
test_example_and_docs(void)
{
    TEST_BEGIN;
    struct obx_config def, ex;
    struct obx_buf err;
    char *want = NULL, *got = NULL, *example = NULL, *docs = NULL;

    obx_buf_init(&err, 4096);
    CHECK_OK(obx_config_init(&def));
    CHECK_OK(obx_config_init(&ex));
    CHECK_OK(obx_config_load_file(&ex, OBX_SOURCE_DIR "/outbox.conf.example", &err));
    CHECK_OK(obx_config_validate(&ex, &err));
    want = print_to_string(&def);
    got = print_to_string(&ex);
    CHECK(want && got);
    CHECK_STR(got, want);
    example = slurp(OBX_SOURCE_DIR "/outbox.conf.example");
    docs = slurp(OBX_SOURCE_DIR "/docs/configuration.md");
    CHECK(example && docs);
    for (char *line = strtok(want, "\n"); line; line = strtok(NULL, "\n")) {
        char key[64], pat[80];
        if (sscanf(line, "%63s", key) != 1 || strcmp(key, "partoo_api_key") == 0)
            continue;
        snprintf(pat, sizeof(pat), "\n%s = ", key);
        if (!strstr(example, pat)) {
            snprintf(pat, sizeof(pat), "\n# %s = ", key);
            if (!strstr(example, pat))
                fprintf(stderr, "  outbox.conf.example lacks %s\n", key);
            CHECK(strstr(example, pat) != NULL);
        }
        snprintf(pat, sizeof(pat), "| `%s` |", key);
        if (!strstr(docs, pat))
            fprintf(stderr, "  docs/configuration.md lacks a row for %s\n", key);
        CHECK(strstr(docs, pat) != NULL);
    }
end:
    free(want);
    free(got);
    free(example);
    free(docs);
    obx_config_release(&def);
    obx_config_release(&ex);
    obx_buf_release(&err);
    TEST_END;
}

/*
 * The one loopback check (lib/net.c), shared by the listener rule (no api_token off
 * loopback) and the http:// rule: by address, however spelled. Only numeric hosts and
 * localhost here: another name would send a DNS query off this machine.
 */
static int
test_loopback(void)
{
    TEST_BEGIN;
    static const char *const yes[] = {"127.0.0.1",        "127.1",     "127.255.255.254",
                                      "0x7f.1",           "::1",       "[::1]",
                                      "::ffff:127.0.0.1", "localhost", "LocalHost"};
    static const char *const no[] = {
        "0.0.0.0", "::", "[::]", "10.0.0.1", "128.0.0.1",  "126.255.255.255", "::ffff:10.0.0.1",
        "::2",     "",   "[",    "[]",       "127.0.0.1 ", "1.2.3.4/8"};

    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (!obx_net_host_is_loopback(yes[i]))
            fprintf(stderr, "  '%s' should be loopback\n", yes[i]);
        CHECK(obx_net_host_is_loopback(yes[i]));
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        if (obx_net_host_is_loopback(no[i]))
            fprintf(stderr, "  '%s' should not be loopback\n", no[i]);
        CHECK(!obx_net_host_is_loopback(no[i]));
    }
    CHECK(!obx_net_host_is_loopback(NULL));
    /* The listener check goes through the same function. */
    CHECK(obx_httpd_is_loopback("127.1:8787"));
    CHECK(obx_httpd_is_loopback("localhost:0"));
    CHECK(obx_httpd_is_loopback("[::ffff:127.0.0.1]:8787"));
    CHECK(obx_httpd_is_loopback("[::1]:8787"));
    CHECK(!obx_httpd_is_loopback("0.0.0.0:8787"));
    CHECK(!obx_httpd_is_loopback("[::]:8787"));
    CHECK(!obx_httpd_is_loopback("127.0.0.1"));
end:
    TEST_END;
}

static const struct test_case tests[] = {
    {"loopback", test_loopback},
    {"defaults", test_defaults},
    {"parse_duration", test_parse_duration},
    {"parse_size", test_parse_size},
    {"parse_rate", test_parse_rate},
    {"set_numbers", test_set_numbers},
    {"set_enums", test_set_enums},
    {"set_strings", test_set_strings},
    {"set_string_formats", test_set_string_formats},
    {"set_failure_leaves_config", test_set_failure_leaves_config},
    {"unknown_key", test_unknown_key},
    {"flag_and_env_messages", test_flag_and_env_messages},
    {"file_parse", test_file_parse},
    {"file_errors", test_file_errors},
    {"file_limits", test_file_limits},
    {"precedence", test_precedence},
    {"env_errors", test_env_errors},
    {"secrets", test_secrets},
    {"secret_errors", test_secret_errors},
    {"print_masks_secrets", test_print_masks_secrets},
    {"print_formats", test_print_formats},
    {"print_round_trip", test_print_round_trip},
    {"validate_cross_field", test_validate_cross_field},
    {"validate_fields", test_validate_fields},
    {"readonly_channels", test_readonly_channels},
    {"parsed_at_load", test_parsed_at_load},
    {"alloc_failures", test_alloc_failures},
    {"example_and_docs", test_example_and_docs},
    {NULL, NULL},
};

TEST_MAIN(tests)
