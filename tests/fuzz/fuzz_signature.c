/*
 * fuzz_signature: the webhook signature check (lib/signature.c obx_signature_verifier_check),
 * which runs on the raw request before anything is parsed.
 *
 * Input layout: the X-Partoo-Signature-v1 header value up to the first '\n', then the
 * body (every remaining byte, NULs included). No '\n': all of it is the header and the
 * body is empty. The header is copied into a NUL-terminated string (evhttp hands over
 * C strings), the body into an exact allocation so a read past len is caught. The key
 * is fixed: RFC 8032 §7.1 TEST 1, whose secret key the harness also holds, so that:
 *
 *   header "@..."  sign mode: the header is the rest after '@' with its first '*'
 *                  replaced by the valid signature of the body (no '*': the signature
 *                  alone). This reaches the Ed25519 verification with valid and almost
 *                  valid signatures, which random bytes never would.
 *   header "#"     key mode: the body is given to obx_signature_verifier_new as key text (hex,
 *                  base64 SPKI, PEM), for leaks and crashes in key parsing.
 *   anything else  the header as Partoo's client (or an attacker) sent it.
 *
 * Property checked besides ASan/UBSan/LSan (abort() on violation): the check returns 1
 * exactly when the header, trimmed of whitespace, is the one strict base64 spelling of
 * the body's signature (Ed25519 signatures are deterministic and the module accepts
 * one spelling only). A 1 for anything else is a forgery accepted; a 0 for the exact
 * signature is a valid webhook refused.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "log.h"
#include "signature.h"

#define SIG_LEN 64
#define SIG_B64_LEN 88

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* RFC 8032 §7.1 TEST 1. */
static const unsigned char test1_secret[32] = {
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
    0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60};
static const char test1_public_hex[] =
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

static struct obx_verifier *verifier; /* per process; freed at exit by the OS */
static EVP_PKEY *signer;

static void
oracle_fail(const char *what, const char *header)
{
    fprintf(stderr, "fuzz_signature: property violated: %s (header \"%s\")\n", what, header);
    abort();
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    obx_log_setup(OBX_LOG_OFF, OBX_LOG_TEXT, NULL);
    signer = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, test1_secret,
                                          sizeof test1_secret);
    if (!signer || obx_signature_verifier_new(test1_public_hex, &verifier) != OBX_OK)
        oracle_fail("cannot set up the RFC 8032 key", test1_public_hex);
    return 0;
}

/* The strict base64 spelling of the body's signature into out[SIG_B64_LEN + 1]. */
static void
sign_b64(const void *body, size_t len, char *out)
{
    unsigned char sig[SIG_LEN];
    size_t sig_len = sizeof sig;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    if (!ctx || EVP_DigestSignInit(ctx, NULL, NULL, NULL, signer) != 1 ||
        EVP_DigestSign(ctx, sig, &sig_len, body ? body : (const void *)"", len) != 1 ||
        sig_len != SIG_LEN)
        oracle_fail("cannot sign", "");
    EVP_MD_CTX_free(ctx);
    if (EVP_EncodeBlock((unsigned char *)out, sig, SIG_LEN) != SIG_B64_LEN)
        oracle_fail("cannot encode", "");
}

/* The same whitespace set as lib/signature.c trim(). */
static int
is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int
trimmed_equals(const char *s, const char *want)
{
    size_t n = strlen(s);

    while (n > 0 && is_space(*s)) {
        s++;
        n--;
    }
    while (n > 0 && is_space(s[n - 1]))
        n--;
    return n == strlen(want) && memcmp(s, want, n) == 0;
}

/* Header after '@' with its first '*' (or all of it, when none) replaced by sig. */
static char *
with_signature(const char *tmpl, const char *sig)
{
    const char *star = strchr(tmpl, '*');
    size_t pre = star ? (size_t)(star - tmpl) : 0;
    const char *post = star ? star + 1 : "";
    char *h = malloc(pre + SIG_B64_LEN + strlen(post) + 1);

    if (!h)
        return NULL;
    memcpy(h, tmpl, pre);
    memcpy(h + pre, sig, SIG_B64_LEN);
    strcpy(h + pre + SIG_B64_LEN, post);
    return h;
}

static void
key_mode(const uint8_t *body, size_t len)
{
    struct obx_verifier *v = NULL;
    char *text = malloc(len + 1);

    if (!text)
        return;
    memcpy(text, body, len);
    text[len] = '\0';
    if (obx_signature_verifier_new(text, &v) == OBX_OK && !v)
        oracle_fail("obx_signature_verifier_new succeeded without a verifier", "#");
    obx_signature_verifier_free(v);
    free(text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t hlen = nl ? (size_t)(nl - data) : size;
    size_t blen = nl ? size - hlen - 1 : 0;
    char *header = malloc(hlen + 1);
    uint8_t *body = malloc(blen ? blen : 1);
    char *signed_header = NULL;
    char sig[SIG_B64_LEN + 1];
    const char *h;
    int ok;

    if (!header || !body)
        goto out;
    memcpy(header, data, hlen);
    header[hlen] = '\0';
    if (blen)
        memcpy(body, nl + 1, blen);
    if (strcmp(header, "#") == 0) {
        key_mode(body, blen);
        goto out;
    }
    h = header;
    if (header[0] == '@') {
        sign_b64(body, blen, sig);
        signed_header = with_signature(header + 1, sig);
        if (!signed_header)
            goto out;
        h = signed_header;
    }
    ok = obx_signature_verifier_check(verifier, blen ? body : NULL, blen, h);
    if (ok != 0 && ok != 1)
        oracle_fail("obx_signature_verifier_check returned neither 0 nor 1", h);
    if (ok || h == signed_header) {
        if (h != signed_header)
            sign_b64(body, blen, sig);
        if (ok != trimmed_equals(h, sig))
            oracle_fail(ok ? "accepted a header that is not the signature"
                           : "refused the exact signature",
                        h);
    }
out:
    free(signed_header);
    free(body);
    free(header);
    return 0;
}
