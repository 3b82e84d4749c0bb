/*
 * check.h: a tiny table-driven test harness (in the spirit of tinytest).
 *
 * A test is `static int test_x(void)`, returning 0 on success. CHECK* macros
 * print the failing expression with file and line and jump to `end:`, where the
 * test frees what it holds. main() is TEST_MAIN(table), which runs every case
 * (or only those named on the command line) and prints "N passed, M failed".
 */
#ifndef OBX_CHECK_H
#define OBX_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            rc_ = 1;                                                                   \
            goto end;                                                                  \
        }                                                                              \
    } while (0)

#define CHECK_INT(a, b)                                                                           \
    do {                                                                                          \
        long long a_ = (long long)(a), b_ = (long long)(b);                                       \
        if (a_ != b_) {                                                                           \
            fprintf(stderr, "  %s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, #a, \
                    a_, #b, b_);                                                                  \
            rc_ = 1;                                                                              \
            goto end;                                                                             \
        }                                                                                         \
    } while (0)

#define CHECK_STR(a, b)                                                                         \
    do {                                                                                        \
        const char *a_ = (a), *b_ = (b);                                                        \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                                \
            fprintf(stderr, "  %s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a, \
                    a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                    \
            rc_ = 1;                                                                            \
            goto end;                                                                           \
        }                                                                                       \
    } while (0)

#define CHECK_OK(expr) CHECK_INT((expr), 0)

/* Every test body starts with TEST_BEGIN and ends with `end:` ... TEST_END. */
#define TEST_BEGIN int rc_ = 0
#define TEST_END return rc_

struct test_case {
    const char *name;
    int (*fn)(void);
};

static inline int
test_run_table(const struct test_case *t, int argc, char **argv)
{
    int passed = 0, failed = 0;

    for (; t->name; t++) {
        int selected = argc < 2;
        for (int i = 1; i < argc; i++)
            if (strcmp(argv[i], t->name) == 0)
                selected = 1;
        if (!selected)
            continue;
        if (t->fn() == 0) {
            printf("ok   %s\n", t->name);
            passed++;
        } else {
            printf("FAIL %s\n", t->name);
            failed++;
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#define TEST_MAIN(table)                            \
    int main(int argc, char **argv)                 \
    {                                               \
        return test_run_table((table), argc, argv); \
    }

#endif
