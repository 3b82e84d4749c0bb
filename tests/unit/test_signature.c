/*
 * Unit tests of signature: RFC 8032 vectors, the three key forms, Partoo's keys,
 * malformed keys and headers, key files, SHA-256, allocation failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "check.h"
#include "mem.h"
#include "signature.h"

/* RFC 8032 section 7.1, TEST 1 to 3: secret key, public key, message, signature. */
struct vector {
    const char *secret_hex;
    const char *public_hex;
    const char *msg_hex;
    const char *sig_hex;
};

static const struct vector rfc8032[] = {
    {"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e3970"
     "1cf9b46bd25bf5f0595bbe24655141438e7a100b"},
    {"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613"
     "d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
    {"c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760"
     "984dc6594a7c15e9716ed28dc027beceea1ec40a"},
};

/* Partoo's keys as partoo-api.md gives them: hex, and the base64 line of the PEM. */
static const char *const partoo_keys[][2] = {
    {OBX_PARTOO_PROD_KEY_HEX, "MCowBQYDK2VwAyEA0G9ciHL6XZQXuWq6W4dFLvwNEPWgcdtQgEVlBIwZWBQ="},
    {OBX_PARTOO_SANDBOX_KEY_HEX, "MCowBQYDK2VwAyEALsyvX2yVnG3ZKRIFfEvYk2nkzanoNgAqBSqdeNub4sM="},
};

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Decodes hex into out; returns the number of bytes. */
static size_t
unhex(const char *hex, unsigned char *out)
{
    size_t n = strlen(hex) / 2;

    for (size_t i = 0; i < n; i++) {
        unsigned int b = 0;
        if (sscanf(hex + 2 * i, "%2x", &b) != 1)
            return 0;
        out[i] = (unsigned char)b;
    }
    return n;
}

static void
to_hex(const unsigned char *p, size_t n, char *out, int upper)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

/* Padded base64 of p[0..n) into out, which holds 4 * ceil(n / 3) + 1 bytes. */
static void
b64(const unsigned char *p, size_t n, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, p, (int)n);
}

/* Ed25519-signs msg with pkey into sig[64]; 0 on success. */
static int
sign(EVP_PKEY *pkey, const void *msg, size_t len, unsigned char sig[64])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t siglen = 64;
    int ok = ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, pkey) == 1 &&
             EVP_DigestSign(ctx, sig, &siglen, msg, len) == 1 && siglen == 64;

    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

/* Signs msg with pkey and writes the X-Partoo-Signature-v1 value into out[89]. */
static int
sign_b64(EVP_PKEY *pkey, const void *msg, size_t len, char out[89])
{
    unsigned char sig[64];

    if (sign(pkey, msg, len, sig) != 0)
        return -1;
    b64(sig, 64, out);
    return 0;
}

/* The DER SubjectPublicKeyInfo of pkey as one base64 line in out[n]. */
static int
spki_b64(EVP_PKEY *pkey, char *out, size_t n)
{
    unsigned char *der = NULL;
    int len = i2d_PUBKEY(pkey, &der);
    int rc = -1;

    if (len > 0 && (size_t)(len + 2) / 3 * 4 < n) {
        b64(der, (size_t)len, out);
        rc = 0;
    }
    OPENSSL_free(der);
    return rc;
}

/* The public key of pkey as a PEM text in out[n]. */
static int
pem_text(EVP_PKEY *pkey, char *out, size_t n)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *p = NULL;
    long len;
    int rc = -1;

    if (bio && PEM_write_bio_PUBKEY(bio, pkey) == 1) {
        len = BIO_get_mem_data(bio, &p);
        if (len > 0 && (size_t)len < n) {
            memcpy(out, p, (size_t)len);
            out[len] = '\0';
            rc = 0;
        }
    }
    BIO_free(bio);
    return rc;
}

/* The vector's values agree with what OpenSSL derives from its secret key. */
static int
vector_self_check(const struct vector *t)
{
    unsigned char sk[32], pk[32], msg[8], want[64], got[64], raw[32];
    size_t mlen, rawlen = sizeof raw;
    EVP_PKEY *priv = NULL;
    TEST_BEGIN;

    CHECK_INT(unhex(t->secret_hex, sk), 32);
    CHECK_INT(unhex(t->public_hex, pk), 32);
    CHECK_INT(unhex(t->sig_hex, want), 64);
    mlen = unhex(t->msg_hex, msg);
    priv = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, sk, sizeof sk);
    CHECK(priv);
    CHECK_INT(EVP_PKEY_get_raw_public_key(priv, raw, &rawlen), 1);
    CHECK_INT(rawlen, 32);
    CHECK(memcmp(raw, pk, 32) == 0);
    CHECK_OK(sign(priv, msg, mlen, got));
    CHECK(memcmp(got, want, 64) == 0);
end:
    EVP_PKEY_free(priv);
    TEST_END;
}

/* The vector verifies; any flipped bit of message or signature, or another key, fails. */
static int
vector_check(const struct vector *t, const struct vector *other)
{
    unsigned char msg[8] = {0}, sig[64];
    char sig_b64[89], bad_b64[89];
    size_t mlen = unhex(t->msg_hex, msg);
    struct obx_verifier *v = NULL, *w = NULL;
    TEST_BEGIN;

    CHECK_INT(unhex(t->sig_hex, sig), 64);
    b64(sig, 64, sig_b64);
    CHECK_OK(obx_signature_verifier_new(t->public_hex, &v));
    CHECK_INT(obx_signature_verifier_check(v, msg, mlen, sig_b64), 1);
    CHECK_INT(obx_signature_verifier_check(v, msg, mlen + 1, sig_b64), 0); /* one byte more */
    for (size_t bit = 0; bit < mlen * 8; bit++) {
        msg[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        CHECK_INT(obx_signature_verifier_check(v, msg, mlen, sig_b64), 0);
        msg[bit / 8] ^= (unsigned char)(1u << (bit % 8));
    }
    for (size_t bit = 0; bit < 512; bit += 7) {
        sig[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        b64(sig, 64, bad_b64);
        CHECK_INT(obx_signature_verifier_check(v, msg, mlen, bad_b64), 0);
        sig[bit / 8] ^= (unsigned char)(1u << (bit % 8));
    }
    CHECK_OK(obx_signature_verifier_new(other->public_hex, &w));
    CHECK_INT(obx_signature_verifier_check(w, msg, mlen, sig_b64), 0);
end:
    obx_signature_verifier_free(v);
    obx_signature_verifier_free(w);
    TEST_END;
}

static int
test_rfc8032_vectors(void)
{
    TEST_BEGIN;
    for (size_t i = 0; i < 3; i++) {
        CHECK_OK(vector_self_check(&rfc8032[i]));
        CHECK_OK(vector_check(&rfc8032[i], &rfc8032[(i + 1) % 3]));
    }
end:
    TEST_END;
}

/* Partoo's keys parse in hex, base64 SPKI and PEM, and the documented forms agree. */
static int
test_partoo_keys(void)
{
    static const char spki_prefix[] = "302a300506032b6570032100"; /* Ed25519 SPKI header */
    unsigned char der[48], raw[32], prefix[12], zero[64] = {0};
    char pem[256], zero_sig[89];
    struct obx_verifier *v = NULL;
    TEST_BEGIN;

    b64(zero, sizeof zero, zero_sig);
    CHECK_INT(unhex(spki_prefix, prefix), 12);
    for (size_t i = 0; i < 2; i++) {
        const char *forms[3] = {partoo_keys[i][0], partoo_keys[i][1], pem};
        snprintf(pem, sizeof pem, "-----BEGIN PUBLIC KEY-----\n%s\n-----END PUBLIC KEY-----\n",
                 partoo_keys[i][1]);
        for (size_t f = 0; f < 3; f++) {
            CHECK_OK(obx_signature_verifier_new(forms[f], &v));
            CHECK(v);
            CHECK_INT(obx_signature_verifier_check(v, "{}", 2, zero_sig), 0);
            obx_signature_verifier_free(v);
            v = NULL;
        }
        /* the base64 line is the SPKI wrapping of exactly the hex key */
        CHECK_INT(EVP_DecodeBlock(der, (const unsigned char *)partoo_keys[i][1], 60), 45);
        CHECK_INT(unhex(partoo_keys[i][0], raw), 32);
        CHECK(memcmp(der, prefix, 12) == 0);
        CHECK(memcmp(der + 12, raw, 32) == 0);
    }
end:
    obx_signature_verifier_free(v);
    TEST_END;
}

/* Writes a fresh Ed25519 key's public half as lower hex, upper hex, SPKI line and PEM. */
static int
key_forms(EVP_PKEY *pkey, char forms[4][512])
{
    unsigned char raw[32];
    size_t rawlen = sizeof raw;

    if (EVP_PKEY_get_raw_public_key(pkey, raw, &rawlen) != 1 || rawlen != 32)
        return -1;
    to_hex(raw, 32, forms[0], 0);
    to_hex(raw, 32, forms[1], 1);
    if (spki_b64(pkey, forms[2], 512) != 0)
        return -1;
    return pem_text(pkey, forms[3], 512);
}

/* Every form of one fresh key verifies the same signatures, whitespace around or not. */
static int
test_fresh_key_all_forms(void)
{
    static const char body[] = "{\"a\":\0\"b\"}\0"; /* NUL bytes inside */
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    struct obx_verifier *v = NULL;
    char forms[4][512], padded[600], sig[89], empty_sig[89];
    TEST_BEGIN;

    CHECK(pkey);
    CHECK_OK(key_forms(pkey, forms));
    CHECK_OK(sign_b64(pkey, body, sizeof body, sig));
    CHECK_OK(sign_b64(pkey, "", 0, empty_sig));
    for (size_t f = 0; f < 8; f++) {
        snprintf(padded, sizeof padded, f < 4 ? "%s" : " \t\r\n%s\n\n ", forms[f % 4]);
        CHECK_OK(obx_signature_verifier_new(padded, &v));
        CHECK_INT(obx_signature_verifier_check(v, body, sizeof body, sig), 1);
        CHECK_INT(obx_signature_verifier_check(v, body, sizeof body - 1, sig), 0);
        CHECK_INT(obx_signature_verifier_check(v, body, 6, sig), 0); /* stops at the first NUL */
        CHECK_INT(obx_signature_verifier_check(v, "", 0, empty_sig), 1);
        CHECK_INT(obx_signature_verifier_check(v, NULL, 0, empty_sig), 1);
        CHECK_INT(obx_signature_verifier_check(v, "", 0, sig), 0);
        obx_signature_verifier_free(v);
        v = NULL;
    }
end:
    obx_signature_verifier_free(v);
    EVP_PKEY_free(pkey);
    TEST_END;
}

/* obx_signature_verifier_new(text) is OBX_EINVAL and leaves *out NULL. */
static int
rejected(const char *text)
{
    struct obx_verifier *v = (struct obx_verifier *)&v; /* must be reset to NULL */
    enum obx_err err = obx_signature_verifier_new(text, &v);

    if (err != OBX_EINVAL || v != NULL) {
        fprintf(stderr, "  key text \"%s\" gave %d\n", text ? text : "(null)", (int)err);
        if (err == OBX_OK)
            obx_signature_verifier_free(v);
        return 0;
    }
    return 1;
}

static int
test_malformed_keys(void)
{
    static const char *const bad[] = {
        "",
        " \n\t ",
        "d06f5c8872fa5d9417b96aba5b87452efc0d10f5a071db50804565048c19581",
        "d06f5c8872fa5d9417b96aba5b87452efc0d10f5a071db50804565048c1958140",
        "g06f5c8872fa5d9417b96aba5b87452efc0d10f5a071db50804565048c195814",
        "d06f5c8872fa5d9417b96aba5b87452e fc0d10f5a071db50804565048c195814",
        "0xd06f5c8872fa5d9417b96aba5b87452efc0d10f5a071db50804565048c195814",
        "MCowBQYDK2VwAyEA0G9ciHL6XZQXuWq6W4dFLvwNEPWgcdtQgEVlBIwZWBQ",      /* unpadded */
        "MCowBQYDK2VwAyEA0G9ciHL6XZQXuWq6W4dFLvwNEPWgcdtQgEVlBIwZWBR=",     /* pad bits */
        "MCowBQYDK2VwAyEA0G9ciHL6XZQXuWq6W4dF LvwNEPWgcdtQgEVlBIwZWBQ=",    /* space */
        "MCowBQYDK2VwAyEA0G9ciHL6XZQXuWq6W4dFLvwNEPWgcdtQgEVlBIwZ",         /* truncated */
        "MCowBQYDK2VwAyEA0G9ciHL6XZQXuWq6W4dFLvwNEPWgcdtQgEVlBIwZWBQA",     /* extra byte */
        "MCowBQYDK2VwAyEA0G9ciHL6XZQXuWq6W4dFLvwNEPWgcdtQgEVlBIwZWBQ=AAAA", /* after pad */
        "MCow-QYDK2VwAyEA0G9ciHL6XZQXuWq6W4dFLvwNEPWgcdtQgEVlBIwZWBQ=",     /* url-safe */
        "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n",
        "-----BEGIN PUBLIC KEY-----\n",
        "-----BEGIN ",
        "====",
        "A===",
    };
    TEST_BEGIN;

    CHECK(rejected(NULL));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(rejected(bad[i]));
end:
    TEST_END;
}

/* Keys of other types are refused in every encoding. */
static int
test_non_ed25519_keys(void)
{
    EVP_PKEY *keys[3] = {NULL, NULL, NULL};
    char text[1024];
    TEST_BEGIN;

    keys[0] = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
    keys[1] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    keys[2] = EVP_PKEY_Q_keygen(NULL, NULL, "ED448");
    for (size_t i = 0; i < 3; i++) {
        CHECK(keys[i]);
        CHECK_OK(spki_b64(keys[i], text, sizeof text));
        CHECK(rejected(text));
        CHECK_OK(pem_text(keys[i], text, sizeof text));
        CHECK(rejected(text));
    }
end:
    for (size_t i = 0; i < 3; i++)
        EVP_PKEY_free(keys[i]);
    TEST_END;
}

/* s[i] changed to the alphabet character whose value differs in the lowest bit. */
static void
flip_low_bit(char *s, size_t i)
{
    s[i] = b64_alphabet[(strchr(b64_alphabet, s[i]) - b64_alphabet) ^ 1];
}

static int
test_malformed_signatures(void)
{
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    struct obx_verifier *v = NULL;
    char forms[4][512], sig[89], bad[128];
    unsigned char raw[69];
    TEST_BEGIN;

    CHECK(pkey);
    CHECK_OK(key_forms(pkey, forms));
    CHECK_OK(obx_signature_verifier_new(forms[0], &v));
    CHECK_OK(sign_b64(pkey, "hello", 5, sig));
    CHECK_INT(strlen(sig), 88);
    CHECK_INT(obx_signature_verifier_check(v, "hello", 5, sig), 1);
    snprintf(bad, sizeof bad, " \t%s\r\n", sig);
    CHECK_INT(obx_signature_verifier_check(v, "hello", 5, bad), 1);
    CHECK_INT(obx_signature_verifier_check(v, "hello", 5, NULL), 0);
    CHECK_INT(obx_signature_verifier_check(NULL, "hello", 5, sig), 0);
    CHECK_INT(obx_signature_verifier_check(v, NULL, 5, sig), 0);
    CHECK_INT(obx_signature_verifier_check(v, "hello", 5, ""), 0);
    CHECK_INT(obx_signature_verifier_check(v, "hello", 5, "   "), 0);
    snprintf(bad, sizeof bad, "%.84s", sig); /* too short */
    CHECK_INT(obx_signature_verifier_check(v, "hello", 5, bad), 0);
    snprintf(bad, sizeof bad, "%.86s", sig); /* unpadded */
    CHECK_INT(obx_signature_verifier_check(v, "hello", 5, bad), 0);
    snprintf(bad, sizeof bad, "%sAAAA", sig); /* too long */
    CHECK_INT(obx_signature_verifier_check(v, "hello", 5, bad), 0);
    memset(raw, 0xab, sizeof raw);
    b64(raw, sizeof raw, bad); /* well-formed base64 of 69 bytes: 92 characters */
    CHECK_INT(obx_signature_verifier_check(v, "hello", 5, bad), 0);
    snprintf(bad, sizeof bad, "%.40s %s", sig, sig + 41); /* space inside */
    CHECK_INT(obx_signature_verifier_check(v, "hello", 5, bad), 0);
    snprintf(bad, sizeof bad, "%.86sAA", sig); /* padding replaced */
    CHECK_INT(obx_signature_verifier_check(v, "hello", 5, bad), 0);
    for (const char *c = "*-_.=\x80"; *c; c++) {
        snprintf(bad, sizeof bad, "%s", sig);
        bad[17] = *c; /* a character outside the standard alphabet */
        CHECK_INT(obx_signature_verifier_check(v, "hello", 5, bad), 0);
    }
    snprintf(bad, sizeof bad, "%s", sig);
    flip_low_bit(bad, 85); /* same 64 bytes to a lax decoder, non-zero padding bits */
    CHECK_INT(obx_signature_verifier_check(v, "hello", 5, bad), 0);
end:
    obx_signature_verifier_free(v);
    EVP_PKEY_free(pkey);
    TEST_END;
}

/* Writes n bytes of text to path; 0 on success. */
static int
write_file(const char *path, const char *text, size_t n)
{
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(text, 1, n, f) == n;

    if (f && fclose(f) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

static int
test_from_file(void)
{
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    struct obx_verifier *v = NULL;
    char path[256], forms[4][512], sig[89];
    char *big = NULL;
    TEST_BEGIN;

    snprintf(path, sizeof path, "/tmp/obx_test_signature_%d.pem", (int)getpid());
    CHECK(pkey);
    CHECK_OK(key_forms(pkey, forms));
    CHECK_OK(sign_b64(pkey, "x", 1, sig));
    CHECK_OK(write_file(path, forms[3], strlen(forms[3])));
    CHECK_OK(obx_signature_verifier_from_file(path, &v));
    CHECK_INT(obx_signature_verifier_check(v, "x", 1, sig), 1);
    obx_signature_verifier_free(v);
    v = NULL;
    CHECK_OK(write_file(path, "not a key\n", 10));
    CHECK_INT(obx_signature_verifier_from_file(path, &v), OBX_EINVAL);
    CHECK_OK(write_file(path, forms[0], 65)); /* the hex key and its NUL */
    CHECK_INT(obx_signature_verifier_from_file(path, &v), OBX_EINVAL);
    big = calloc(1, 70000);
    CHECK(big);
    memset(big, ' ', 70000);
    memcpy(big, forms[3], strlen(forms[3]));
    CHECK_OK(write_file(path, big, 70000)); /* a valid PEM, but past 64 KiB */
    CHECK_INT(obx_signature_verifier_from_file(path, &v), OBX_EINVAL);
    CHECK(v == NULL);
    unlink(path);
    CHECK_INT(obx_signature_verifier_from_file(path, &v), OBX_EIO);
    CHECK(v == NULL);
    CHECK_INT(obx_signature_verifier_from_file("/tmp", &v), OBX_EIO);
    CHECK_INT(obx_signature_verifier_from_file(NULL, &v), OBX_EINVAL);
end:
    unlink(path);
    free(big);
    obx_signature_verifier_free(v);
    EVP_PKEY_free(pkey);
    TEST_END;
}

static int
test_sha256_hex(void)
{
    char out[65];
    TEST_BEGIN;

    CHECK_OK(obx_signature_sha256_hex("abc", 3, out));
    CHECK_STR(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK_OK(obx_signature_sha256_hex("", 0, out));
    CHECK_STR(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK_OK(obx_signature_sha256_hex(NULL, 0, out));
    CHECK_STR(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK_OK(obx_signature_sha256_hex("a\0b", 3, out)); /* bytes after a NUL count */
    CHECK(strcmp(out, "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb") != 0);
    CHECK_INT(strlen(out), 64);
end:
    TEST_END;
}

/* Parses text (a file path when is_file) with the Nth allocation failing, N = 0, 1, ... */
static int
sweep(const char *text, int is_file, const char *sig)
{
    struct obx_verifier *v = NULL;
    enum obx_err err = OBX_ENOMEM;
    TEST_BEGIN;

    for (long n = 0; err != OBX_OK; n++) {
        CHECK(n < 20);
        obx_mem_fail_after(n);
        err = is_file ? obx_signature_verifier_from_file(text, &v)
                      : obx_signature_verifier_new(text, &v);
        obx_mem_fail_after(-1);
        if (err != OBX_OK) {
            CHECK_INT(err, OBX_ENOMEM);
            CHECK(v == NULL);
        }
    }
    CHECK_INT(obx_signature_verifier_check(v, "y", 1, sig), 1);
end:
    obx_mem_fail_after(-1);
    obx_signature_verifier_free(v);
    TEST_END;
}

static int
test_alloc_failure_sweep(void)
{
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    char path[256], forms[4][512], sig[89];
    TEST_BEGIN;

    snprintf(path, sizeof path, "/tmp/obx_test_signature_oom_%d.pem", (int)getpid());
    CHECK(pkey);
    CHECK_OK(key_forms(pkey, forms));
    CHECK_OK(sign_b64(pkey, "y", 1, sig));
    for (size_t f = 0; f < 4; f++)
        CHECK_OK(sweep(forms[f], 0, sig));
    CHECK_OK(write_file(path, forms[3], strlen(forms[3])));
    CHECK_OK(sweep(path, 1, sig));
end:
    unlink(path);
    EVP_PKEY_free(pkey);
    TEST_END;
}

static const struct test_case tests[] = {
    {"rfc8032_vectors", test_rfc8032_vectors},
    {"partoo_keys", test_partoo_keys},
    {"fresh_key_all_forms", test_fresh_key_all_forms},
    {"malformed_keys", test_malformed_keys},
    {"non_ed25519_keys", test_non_ed25519_keys},
    {"malformed_signatures", test_malformed_signatures},
    {"from_file", test_from_file},
    {"sha256_hex", test_sha256_hex},
    {"alloc_failure_sweep", test_alloc_failure_sweep},
    {NULL, NULL},
};

TEST_MAIN(tests)
