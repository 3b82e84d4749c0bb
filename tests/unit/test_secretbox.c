/*
 * Unit tests of secretbox: round trips, every refusal of a forged, truncated or misdirected
 * sealed value, fresh nonces, the fingerprint, the key file's forms and permissions, and
 * allocation failure.
 */
#define _GNU_SOURCE /* memmem */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "mem.h"
#include "secretbox.h"

#define API_KEY "pk-live-3f9a0c1d2e4b5a6978f0e1d2c3b4a596"
#define KEY_HEX "000102030405060708090a0b0c0d0e0f101112131415161718191A1B1C1D1E1F"

static uint8_t test_key[OBX_SECRETBOX_KEY_BYTES];

static void
fill_key(uint8_t *k)
{
    for (size_t i = 0; i < OBX_SECRETBOX_KEY_BYTES; i++)
        k[i] = (uint8_t)i;
}

/* Seals API_KEY for tenant "acme" under test_key. */
static enum obx_err
seal_api_key(uint8_t **box, size_t *n)
{
    fill_key(test_key);
    return obx_secretbox_seal(test_key, "acme", API_KEY, strlen(API_KEY), box, n);
}

/* 1 when sealed[0..n) does not open as tenant "acme" under test_key, and nothing came out. */
static int
refused(const uint8_t *key, const char *aad, const uint8_t *sealed, size_t n)
{
    char *plain = (char *)"untouched";
    size_t len = 99;
    enum obx_err err = obx_secretbox_open(key, aad, sealed, n, &plain, &len);

    if (err == OBX_OK)
        obx_secretbox_free_plain(plain);
    return err == OBX_EINVAL && plain == NULL && len == 0;
}

static int
test_round_trip(void)
{
    TEST_BEGIN;
    uint8_t *box = NULL, *empty = NULL;
    size_t n = 0, en = 0, len = 0;
    char *plain = NULL;

    CHECK_OK(seal_api_key(&box, &n));
    CHECK_INT(n, strlen(API_KEY) + OBX_SECRETBOX_OVERHEAD);
    CHECK(memcmp(box, "obx1", 4) == 0);
    /* The key is not in the sealed bytes, not even a part of it. */
    CHECK(memmem(box, n, API_KEY + 8, 8) == NULL);
    CHECK_OK(obx_secretbox_open(test_key, "acme", box, n, &plain, &len));
    CHECK_INT(len, strlen(API_KEY));
    CHECK_STR(plain, API_KEY);
    obx_secretbox_free_plain(plain);
    plain = NULL;

    /* An empty secret and no aad (the same as "") work too. */
    CHECK_OK(obx_secretbox_seal(test_key, NULL, "", 0, &empty, &en));
    CHECK_INT(en, OBX_SECRETBOX_OVERHEAD);
    CHECK_OK(obx_secretbox_open(test_key, "", empty, en, &plain, &len));
    CHECK_INT(len, 0);
    CHECK_STR(plain, "");
end:
    obx_secretbox_free_plain(plain);
    obx_free(box);
    obx_free(empty);
    TEST_END;
}

static int
test_wrong_key_or_aad(void)
{
    TEST_BEGIN;
    uint8_t *box = NULL, other[OBX_SECRETBOX_KEY_BYTES];
    size_t n = 0;

    CHECK_OK(seal_api_key(&box, &n));
    memcpy(other, test_key, sizeof other);
    other[31] ^= 0x01;
    CHECK(refused(other, "acme", box, n));
    CHECK(refused(test_key, "acme2", box, n));
    CHECK(refused(test_key, "acm", box, n));
    CHECK(refused(test_key, NULL, box, n));
    CHECK(!refused(test_key, "acme", box, n));
end:
    obx_free(box);
    TEST_END;
}

/* Each bit flipped anywhere (version tag, nonce, ciphertext, tag) makes the value refused. */
static int
test_flipped_bits(void)
{
    TEST_BEGIN;
    uint8_t *box = NULL;
    size_t n = 0;

    CHECK_OK(seal_api_key(&box, &n));
    for (size_t i = 0; i < n; i++) {
        for (int bit = 0; bit < 8; bit++) {
            box[i] ^= (uint8_t)(1u << bit);
            if (!refused(test_key, "acme", box, n))
                fprintf(stderr, "  byte %zu bit %d flipped still opens\n", i, bit);
            CHECK(refused(test_key, "acme", box, n));
            box[i] ^= (uint8_t)(1u << bit);
        }
    }
    CHECK(!refused(test_key, "acme", box, n));
end:
    obx_free(box);
    TEST_END;
}

static int
test_truncated_or_extended(void)
{
    TEST_BEGIN;
    uint8_t *box = NULL, *longer = NULL;
    size_t n = 0;

    CHECK_OK(seal_api_key(&box, &n));
    for (size_t k = 0; k < n; k++)
        CHECK(refused(test_key, "acme", box, k));
    CHECK(refused(test_key, "acme", NULL, n));
    /* A shortened tag must not be accepted either: the tag stays 16 bytes, at the end. */
    longer = malloc(n + 1);
    CHECK(longer);
    memcpy(longer, box, n);
    longer[n] = 0;
    CHECK(refused(test_key, "acme", longer, n + 1));
end:
    free(longer);
    obx_free(box);
    TEST_END;
}

/* Two seals of one key differ (a fresh nonce each), and both open. */
static int
test_fresh_nonce(void)
{
    TEST_BEGIN;
    uint8_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;

    CHECK_OK(seal_api_key(&a, &na));
    CHECK_OK(seal_api_key(&b, &nb));
    CHECK_INT(na, nb);
    CHECK(memcmp(a + 4, b + 4, 12) != 0);
    CHECK(memcmp(a + 16, b + 16, na - 16) != 0);
    CHECK(!refused(test_key, "acme", a, na));
    CHECK(!refused(test_key, "acme", b, nb));
end:
    obx_free(a);
    obx_free(b);
    TEST_END;
}

/* A secret with a NUL byte could not be wiped by free_plain: refused at sealing. */
static int
test_seal_refuses(void)
{
    TEST_BEGIN;
    uint8_t *box = (uint8_t *)"x";
    size_t n = 7;

    fill_key(test_key);
    CHECK_INT(obx_secretbox_seal(test_key, "acme", "ab\0cd", 5, &box, &n), OBX_EINVAL);
    CHECK(box == NULL && n == 0);
    CHECK_INT(obx_secretbox_seal(test_key, "acme", NULL, 3, &box, &n), OBX_EINVAL);
    CHECK(box == NULL && n == 0);
end:
    TEST_END;
}

static int
test_fingerprint(void)
{
    TEST_BEGIN;
    char fp[OBX_SECRETBOX_FINGERPRINT_LEN + 1];

    /* SHA-256("abc") = ba7816bf8f01cfea... (FIPS 180-2 B.1); SHA-256("") = e3b0c44298fc... */
    obx_secretbox_fingerprint("abc", 3, fp);
    CHECK_STR(fp, "ba7816bf8f01");
    obx_secretbox_fingerprint("", 0, fp);
    CHECK_STR(fp, "e3b0c44298fc");
    obx_secretbox_fingerprint(API_KEY, strlen(API_KEY), fp);
    CHECK_INT(strlen(fp), OBX_SECRETBOX_FINGERPRINT_LEN);
end:
    TEST_END;
}

/* ---- secrets_key_file ---- */

static char key_path[64];

/* Writes data[0..n) to key_path with exactly mode. */
static int
write_key_file(const void *data, size_t n, mode_t mode)
{
    int fd;
    ssize_t w;

    snprintf(key_path, sizeof key_path, "/tmp/obx_test_secretbox_%d.key", (int)getpid());
    unlink(key_path);
    fd = open(key_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -1;
    w = write(fd, data, n);
    if (fchmod(fd, mode) != 0 || w != (ssize_t)n) {
        close(fd);
        return -1;
    }
    return close(fd);
}

/* Loads key_path, expecting a refusal whose message names the file and contains want. */
static int
load_refused(const char *want)
{
    uint8_t key[OBX_SECRETBOX_KEY_BYTES], zero[OBX_SECRETBOX_KEY_BYTES] = {0};
    struct obx_buf err;
    enum obx_err rc;
    int ok;

    memset(key, 0xAA, sizeof key);
    obx_buf_init(&err, 1024);
    rc = obx_secretbox_load_key(key_path, key, &err);
    ok = rc == OBX_ECONFIG && memcmp(key, zero, sizeof key) == 0 &&
         strstr(obx_buf_str(&err), key_path) && strstr(obx_buf_str(&err), want) &&
         !strstr(obx_buf_str(&err), "0405060708"); /* never the content */
    if (!ok)
        fprintf(stderr, "  rc %d, message '%s', expected '%s'\n", (int)rc, obx_buf_str(&err), want);
    obx_buf_release(&err);
    return ok;
}

static int
test_load_key_raw(void)
{
    TEST_BEGIN;
    uint8_t raw[OBX_SECRETBOX_KEY_BYTES], key[OBX_SECRETBOX_KEY_BYTES];
    struct obx_buf err;

    obx_buf_init(&err, 1024);
    /* Any byte may appear in a raw key, newlines and NULs included. */
    for (size_t i = 0; i < sizeof raw; i++)
        raw[i] = (uint8_t)(i * 37 + 10);
    raw[0] = '\n';
    raw[5] = '\0';
    raw[31] = '\n';
    CHECK_OK(write_key_file(raw, sizeof raw, 0600));
    CHECK_OK(obx_secretbox_load_key(key_path, key, &err));
    CHECK(memcmp(key, raw, sizeof key) == 0);
    CHECK_INT(err.len, 0);
    CHECK_OK(write_key_file(raw, sizeof raw, 0400));
    CHECK_OK(obx_secretbox_load_key(key_path, key, NULL));
    CHECK(memcmp(key, raw, sizeof key) == 0);
end:
    unlink(key_path);
    obx_buf_release(&err);
    TEST_END;
}

static int
test_load_key_hex(void)
{
    TEST_BEGIN;
    uint8_t key[OBX_SECRETBOX_KEY_BYTES], want[OBX_SECRETBOX_KEY_BYTES];
    uint8_t *box = NULL;
    size_t n = 0, len = 0;
    char *plain = NULL;

    fill_key(want);
    CHECK_OK(write_key_file(KEY_HEX "\n", 65, 0600));
    CHECK_OK(obx_secretbox_load_key(key_path, key, NULL));
    CHECK(memcmp(key, want, sizeof key) == 0);
    CHECK_OK(write_key_file(KEY_HEX, 64, 0600));
    memset(key, 0, sizeof key);
    CHECK_OK(obx_secretbox_load_key(key_path, key, NULL));
    CHECK(memcmp(key, want, sizeof key) == 0);
    /* The loaded key is the one seal used: a value sealed with it opens with the other. */
    CHECK_OK(seal_api_key(&box, &n));
    CHECK_OK(obx_secretbox_open(key, "acme", box, n, &plain, &len));
    CHECK_STR(plain, API_KEY);
end:
    obx_secretbox_free_plain(plain);
    obx_free(box);
    unlink(key_path);
    TEST_END;
}

static int
test_load_key_wrong_length(void)
{
    TEST_BEGIN;
    char big[200];

    memset(big, 'a', sizeof big);
    CHECK_OK(write_key_file(KEY_HEX, 31, 0600));
    CHECK(load_refused("holds 31 bytes: expected exactly 32 raw bytes, or 64 hex digits"));
    CHECK_OK(write_key_file(KEY_HEX, 33, 0600));
    CHECK(load_refused("holds 33 bytes"));
    CHECK_OK(write_key_file(KEY_HEX, 63, 0600));
    CHECK(load_refused("holds 63 bytes"));
    CHECK_OK(write_key_file(KEY_HEX "x", 65, 0600)); /* 64 hex and not a newline */
    CHECK(load_refused("holds 65 bytes"));
    CHECK_OK(write_key_file(KEY_HEX "\r\n", 66, 0600));
    CHECK(load_refused("holds more than 65 bytes"));
    CHECK_OK(write_key_file(KEY_HEX "\n\n", 66, 0600));
    CHECK(load_refused("holds more than 65 bytes"));
    CHECK_OK(write_key_file(big, sizeof big, 0600));
    CHECK(load_refused("holds more than 65 bytes"));
    CHECK_OK(write_key_file("", 0, 0600));
    CHECK(load_refused("holds 0 bytes"));
end:
    unlink(key_path);
    TEST_END;
}

static int
test_load_key_bad_hex(void)
{
    TEST_BEGIN;
    char text[66];

    snprintf(text, sizeof text, "%s\n", KEY_HEX);
    text[40] = 'g';
    CHECK_OK(write_key_file(text, 65, 0600));
    CHECK(load_refused("not all hex digits"));
    snprintf(text, sizeof text, "%s", KEY_HEX);
    text[0] = ' ';
    CHECK_OK(write_key_file(text, 64, 0600));
    CHECK(load_refused("not all hex digits"));
end:
    unlink(key_path);
    TEST_END;
}

/* As ssh does for a private key: a key others may read is refused, however well formed. */
static int
test_load_key_mode(void)
{
    TEST_BEGIN;

    CHECK_OK(write_key_file(KEY_HEX "\n", 65, 0644));
    CHECK(load_refused("permissions 0644 are too open"));
    CHECK(load_refused("chmod 600"));
    CHECK_OK(write_key_file(KEY_HEX "\n", 65, 0640));
    CHECK(load_refused("permissions 0640 are too open"));
    CHECK_OK(write_key_file(KEY_HEX "\n", 65, 0602));
    CHECK(load_refused("permissions 0602 are too open"));
end:
    unlink(key_path);
    TEST_END;
}

static int
test_load_key_missing(void)
{
    TEST_BEGIN;

    snprintf(key_path, sizeof key_path, "/tmp/obx_test_secretbox_%d.none", (int)getpid());
    unlink(key_path);
    CHECK(load_refused("cannot read secrets_key_file"));
    CHECK(load_refused("No such file"));
    snprintf(key_path, sizeof key_path, "/tmp");
    CHECK(load_refused("is not a regular file"));
end:
    TEST_END;
}

/* Every allocation failure is OBX_ENOMEM with nothing returned and nothing leaked (ASan). */
static int
test_alloc_failure(void)
{
    TEST_BEGIN;
    uint8_t *box = NULL, *again = NULL;
    size_t n = 0, len = 0;
    char *plain = NULL;

    CHECK_OK(seal_api_key(&box, &n));
    obx_mem_fail_after(0);
    CHECK_INT(seal_api_key(&again, &len), OBX_ENOMEM);
    CHECK(again == NULL && len == 0);
    CHECK_INT(obx_secretbox_open(test_key, "acme", box, n, &plain, &len), OBX_ENOMEM);
    CHECK(plain == NULL && len == 0);
    obx_mem_fail_after(-1);
    CHECK_OK(obx_secretbox_open(test_key, "acme", box, n, &plain, &len));
    CHECK_STR(plain, API_KEY);
end:
    obx_mem_fail_after(-1);
    obx_secretbox_free_plain(plain);
    obx_free(box);
    obx_free(again);
    TEST_END;
}

static const struct test_case cases[] = {
    {"round_trip", test_round_trip},
    {"wrong_key_or_aad", test_wrong_key_or_aad},
    {"flipped_bits", test_flipped_bits},
    {"truncated_or_extended", test_truncated_or_extended},
    {"fresh_nonce", test_fresh_nonce},
    {"seal_refuses", test_seal_refuses},
    {"fingerprint", test_fingerprint},
    {"load_key_raw", test_load_key_raw},
    {"load_key_hex", test_load_key_hex},
    {"load_key_wrong_length", test_load_key_wrong_length},
    {"load_key_bad_hex", test_load_key_bad_hex},
    {"load_key_mode", test_load_key_mode},
    {"load_key_missing", test_load_key_missing},
    {"alloc_failure", test_alloc_failure},
    {NULL, NULL},
};

TEST_MAIN(cases)
