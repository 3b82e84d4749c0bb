/*
 * fuzz_config: the configuration parser (lib/config.c).
 *
 * The input is a config file. Three passes per input, each on a fresh struct from
 * obx_config_init() released at the end (so LeakSanitizer sees any string the table
 * forgets to free):
 *
 *   1. file:  the bytes are written to a memfd created once per process, and
 *             obx_config_load_file() reads it through /proc/self/fd/N; then
 *             obx_config_validate() and obx_config_print().
 *   2. flags: each line holding '=' is split there into key and value (trimmed of
 *             spaces and tabs) and given to obx_config_set(OBX_SRC_FLAG), going on after
 *             a refused line, so one bad line does not hide the rest as it does in a file.
 *   3. env:   the lines become an environment (NULL-terminated array of "NAME=value")
 *             for obx_config_load_env() and obx_config_load_secrets(); the key file is
 *             unset first so no fuzzed path is ever opened.
 *
 * Properties checked besides ASan/UBSan/LSan (abort() on violation), from lib/config.h:
 *   - a refused value returns OBX_ECONFIG, appends a message of one line, and "leaves c
 *     unchanged" (the printed configuration is the same before and after);
 *   - what obx_config_print() writes is configuration again: every line "key = value"
 *     given back to obx_config_set() is accepted and prints the same, except the
 *     placeholders "(unset)" and "********" and the partoo_api_key line.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "log.h"

#define MAX_LINES 256
#define ERR_MAX (64 * 1024)
#define PRINT_MAX (256 * 1024) /* every option at its longest (4096 bytes) fits */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int memfd = -1;
static char memfd_path[64];
static char *print_a, *print_b;   /* two print buffers of PRINT_MAX bytes, per process */
static FILE *print_fa, *print_fb; /* fmemopen streams on them, opened once (stdio buffers
                                     allocated per print cost more than the parsing) */

static void
oracle_fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_config: property violated: %s%s%s\n", what, detail ? ": " : "",
            detail ? detail : "");
    abort();
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    obx_log_setup(OBX_LOG_OFF, OBX_LOG_TEXT, NULL);
    memfd = memfd_create("fuzz_config", MFD_CLOEXEC);
    print_a = malloc(PRINT_MAX);
    print_b = malloc(PRINT_MAX);
    print_fa = print_a ? fmemopen(print_a, PRINT_MAX, "w") : NULL;
    print_fb = print_b ? fmemopen(print_b, PRINT_MAX, "w") : NULL;
    if (memfd < 0 || !print_fa || !print_fb)
        oracle_fail("cannot set up the memfd or print buffers", NULL);
    snprintf(memfd_path, sizeof memfd_path, "/proc/self/fd/%d", memfd);
    return 0;
}

/* obx_config_print() into print_a or print_b, NUL-terminated. */
static void
print_to(const struct obx_config *c, char *out)
{
    FILE *f = out == print_a ? print_fa : print_fb;
    long n;

    rewind(f);
    obx_config_print(c, f);
    fflush(f);
    n = ftell(f);
    if (ferror(f) || n < 0 || n >= PRINT_MAX - 1)
        oracle_fail("printed configuration does not fit the buffer", NULL);
    out[n] = '\0';
}

/* OBX_ECONFIG names the problem in one line; OBX_ENOMEM cannot happen here. */
static void
check_refusal(enum obx_err rc, const struct obx_buf *err)
{
    if (rc != OBX_ECONFIG)
        oracle_fail("refusal is not OBX_ECONFIG", obx_strerror(rc));
    if (err->len == 0)
        oracle_fail("refusal without a message", NULL);
    if (strchr(obx_buf_str(err), '\n'))
        oracle_fail("refusal message spans several lines", obx_buf_str(err));
}

/* Sets one key; a refusal must leave c as it was, to the byte (same string pointers). */
static void
set_checked(struct obx_config *c, const char *key, const char *value, enum obx_config_source src)
{
    struct obx_config before = *c;
    struct obx_buf err;
    enum obx_err rc;

    obx_buf_init(&err, ERR_MAX);
    rc = obx_config_set(c, key, value, src, &err);
    if (rc != OBX_OK) {
        check_refusal(rc, &err);
        if (memcmp(&before, c, sizeof before) != 0)
            oracle_fail("refused value changed the configuration", key);
    }
    obx_buf_release(&err);
}

/* Every printed line is a value obx_config_set() takes back unchanged. */
static void
check_print_round_trip(struct obx_config *c)
{
    char *line, *save = NULL, *text;

    print_to(c, print_a);
    text = strdup(print_a);
    if (!text)
        return;
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *sep = strstr(line, " = ");
        struct obx_buf err;
        enum obx_err rc;
        if (!sep)
            oracle_fail("printed line is not 'key = value'", line);
        *sep = '\0';
        if (strcmp(line, "partoo_api_key") == 0 || strcmp(sep + 3, "(unset)") == 0 ||
            strcmp(sep + 3, "********") == 0)
            continue;
        obx_buf_init(&err, ERR_MAX);
        rc = obx_config_set(c, line, sep + 3, OBX_SRC_FILE, &err);
        if (rc != OBX_OK)
            oracle_fail("printed value is refused when set back", obx_buf_str(&err));
        obx_buf_release(&err);
    }
    free(text);
    print_to(c, print_b);
    if (strcmp(print_a, print_b) != 0)
        oracle_fail("printed values set back print differently", print_b);
}

static void
pass_file(const uint8_t *data, size_t size)
{
    struct obx_config c;
    struct obx_buf err;
    enum obx_err rc;

    if (ftruncate(memfd, 0) != 0 || pwrite(memfd, data, size, 0) != (ssize_t)size)
        oracle_fail("cannot write the memfd", NULL);
    if (obx_config_init(&c) != OBX_OK)
        oracle_fail("obx_config_init failed", NULL);
    obx_buf_init(&err, ERR_MAX);
    rc = obx_config_load_file(&c, memfd_path, &err);
    if (rc != OBX_OK)
        check_refusal(rc, &err);
    obx_buf_reset(&err);
    (void)obx_config_validate(&c, &err);
    check_print_round_trip(&c);
    obx_buf_release(&err);
    obx_config_release(&c);
}

/* Splits text (writable, NUL-terminated) into at most MAX_LINES lines, in place. */
static size_t
split_lines(char *text, char **lines)
{
    size_t n = 0;
    char *p = text;

    while (*p && n < MAX_LINES) {
        char *nl = strchr(p, '\n');
        lines[n++] = p;
        if (!nl)
            break;
        *nl = '\0';
        p = nl + 1;
    }
    return n;
}

static char *
trim(char *s)
{
    char *end;

    while (*s == ' ' || *s == '\t')
        s++;
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        *--end = '\0';
    return s;
}

static void
pass_flags(char **lines, size_t n)
{
    struct obx_config c;

    if (obx_config_init(&c) != OBX_OK)
        oracle_fail("obx_config_init failed", NULL);
    for (size_t i = 0; i < n; i++) {
        char *copy = strdup(lines[i]);
        char *eq = copy ? strchr(copy, '=') : NULL;
        if (eq) {
            *eq = '\0';
            set_checked(&c, trim(copy), trim(eq + 1), OBX_SRC_FLAG);
        }
        free(copy);
    }
    if (n > 0)
        (void)obx_config_channel_readonly(&c, lines[n - 1]);
    check_print_round_trip(&c);
    obx_config_release(&c);
}

static void
pass_env(char **lines, size_t n)
{
    char *envp[MAX_LINES + 1];
    struct obx_config c;
    struct obx_buf err;
    enum obx_err rc;

    for (size_t i = 0; i < n; i++)
        envp[i] = lines[i];
    envp[n] = NULL;
    if (obx_config_init(&c) != OBX_OK)
        oracle_fail("obx_config_init failed", NULL);
    obx_buf_init(&err, ERR_MAX);
    rc = obx_config_load_env(&c, envp, &err);
    if (rc != OBX_OK)
        check_refusal(rc, &err);
    obx_buf_reset(&err);
    /* The key file would make the fuzzer open paths it made up: unset it. */
    if (obx_config_set(&c, "partoo_api_key_file", "", OBX_SRC_FLAG, NULL) != OBX_OK)
        oracle_fail("cannot unset partoo_api_key_file", NULL);
    rc = obx_config_load_secrets(&c, envp, &err);
    if (rc != OBX_OK)
        check_refusal(rc, &err);
    obx_buf_release(&err);
    obx_config_release(&c);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *lines[MAX_LINES];
    char *text;
    size_t n;

    pass_file(data, size);
    text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0'; /* a NUL inside ends the text early: fine for flags and env */
    n = split_lines(text, lines);
    pass_flags(lines, n);
    pass_env(lines, n);
    free(text);
    return 0;
}
