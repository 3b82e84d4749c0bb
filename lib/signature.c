/*
 * signature: Ed25519 verification of Partoo webhooks, and SHA-256 as hex.
 *
 * Key text accepted by obx_signature_verifier_new, after trimming surrounding whitespace:
 *
 *   64 hex digits (any case)        -> raw 32-byte key   EVP_PKEY_new_raw_public_key
 *   "-----BEGIN ..." (a PEM text)   -> SPKI in PEM       PEM_read_bio_PUBKEY
 *   anything else                   -> strict base64 of a DER SPKI, all of it   d2i_PUBKEY
 *
 * Whatever the form, only an Ed25519 key is accepted. The signature header is
 * strict base64 too: standard alphabet, padded, exactly 88 characters for the
 * 64 signature bytes, zero bits in the padding, so one signature has one spelling.
 *
 * Nothing here logs: callers log with context. OpenSSL errors raised here are
 * popped off the thread's error queue (ERR_set_mark/ERR_pop_to_mark) so that a
 * rejected forgery does not leave stale errors for a later TLS call on the same
 * thread (libcurl reads that queue). Everything is safe to call from any thread.
 */
#include "signature.h"

#include <assert.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "mem.h"

#define KEY_TEXT_MAX (64 * 1024) /* bytes; a key file or text larger than this is refused */
#define RAW_KEY_LEN 32           /* bytes of an Ed25519 public key */
#define SIG_LEN 64               /* bytes of an Ed25519 signature */
#define SIG_B64_LEN 88           /* characters of SIG_LEN bytes in padded base64 */

struct obx_verifier {
    EVP_PKEY *pkey; /* an Ed25519 public key; owned */
};

static int
is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Narrows s[0..*n) to its part without leading and trailing whitespace. */
static const char *
trim(const char *s, size_t *n)
{
    while (*n > 0 && is_space(s[0])) {
        s++;
        (*n)--;
    }
    while (*n > 0 && is_space(s[*n - 1]))
        (*n)--;
    return s;
}

static int
hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Value of one character of the standard base64 alphabet, -1 for any other. */
static int
b64_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/*
 * Returns the decoded length of s[0..n) when it is strict base64 (standard
 * alphabet, padded to a multiple of 4, no whitespace, zero bits under the
 * padding), else -1. Every byte is examined whatever is found, so the work
 * depends on n only.
 */
static long
b64_decoded_len(const char *s, size_t n)
{
    size_t pad = 0;
    int bad = 0;

    if (n == 0 || n % 4 != 0)
        return -1;
    if (s[n - 1] == '=')
        pad = s[n - 2] == '=' ? 2 : 1;
    for (size_t i = 0; i < n - pad; i++)
        bad |= b64_val(s[i]) < 0;
    if (pad == 2)
        bad |= (b64_val(s[n - 3]) & 0x0f) != 0;
    else if (pad == 1)
        bad |= (b64_val(s[n - 2]) & 0x03) != 0;
    return bad ? -1 : (long)(n / 4 * 3 - pad);
}

/*
 * Decodes strict base64 s[0..n) into dst[0..cap). Returns the number of bytes, or
 * -1 when s is not strict base64 or cap is too small: EVP_DecodeBlock writes
 * n / 4 * 3 bytes, counting the zero bytes that stand for the padding in its
 * result, hence the length from b64_decoded_len.
 */
static long
b64_decode(const char *s, size_t n, unsigned char *dst, size_t cap)
{
    long len = b64_decoded_len(s, n);

    if (len < 0 || n > INT_MAX || n / 4 * 3 > cap)
        return -1;
    if (EVP_DecodeBlock(dst, (const unsigned char *)s, (int)n) != (int)(n / 4 * 3))
        return -1;
    return len;
}

/* 64 hex digits -> raw key. Returns 0 with *pkey set, or -1 when s is not that. */
static int
key_from_hex(const char *s, size_t n, EVP_PKEY **pkey)
{
    unsigned char raw[RAW_KEY_LEN];
    int bad = 0;

    if (n != 2 * RAW_KEY_LEN)
        return -1;
    for (size_t i = 0; i < RAW_KEY_LEN; i++) {
        int hi = hex_val(s[2 * i]), lo = hex_val(s[2 * i + 1]);
        bad |= hi < 0 || lo < 0;
        raw[i] = (unsigned char)(((hi & 0x0f) << 4) | (lo & 0x0f));
    }
    if (bad)
        return -1;
    *pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, RAW_KEY_LEN);
    return 0;
}

/* Strict base64 of a DER SubjectPublicKeyInfo, which must use every decoded byte. */
static enum obx_err
key_from_spki_b64(const char *s, size_t n, EVP_PKEY **pkey)
{
    unsigned char *der = NULL;
    const unsigned char *p;
    long len;
    enum obx_err err = OBX_EINVAL;

    if (b64_decoded_len(s, n) <= 0)
        goto out;
    der = obx_malloc(n / 4 * 3);
    if (!der) {
        err = OBX_ENOMEM;
        goto out;
    }
    len = b64_decode(s, n, der, n / 4 * 3);
    if (len <= 0)
        goto out;
    p = der;
    *pkey = d2i_PUBKEY(NULL, &p, len);
    if (*pkey && p == der + len)
        err = OBX_OK;
out:
    obx_free(der);
    return err;
}

/* Refuses to ask for a passphrase: OpenSSL's default callback would prompt on the tty. */
static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static enum obx_err
key_from_pem(const char *s, size_t n, EVP_PKEY **pkey)
{
    BIO *bio;

    if (n > INT_MAX)
        return OBX_EINVAL;
    bio = BIO_new_mem_buf(s, (int)n);
    if (!bio)
        return OBX_ENOMEM;
    *pkey = PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    return *pkey ? OBX_OK : OBX_EINVAL;
}

/* Parses the trimmed key text s[0..n) in whichever form it is. */
static enum obx_err
parse_key(const char *s, size_t n, EVP_PKEY **pkey)
{
    static const char pem_begin[] = "-----BEGIN ";

    if (key_from_hex(s, n, pkey) == 0)
        return *pkey ? OBX_OK : OBX_EINVAL;
    if (n >= sizeof pem_begin - 1 && memcmp(s, pem_begin, sizeof pem_begin - 1) == 0)
        return key_from_pem(s, n, pkey);
    return key_from_spki_b64(s, n, pkey);
}

enum obx_err
obx_signature_verifier_new(const char *key_text, struct obx_verifier **out /* OUT */)
{
    struct obx_verifier *v = NULL;
    EVP_PKEY *pkey = NULL;
    const char *s;
    size_t n;
    enum obx_err err = OBX_EINVAL;

    assert(out);
    *out = NULL;
    if (!key_text)
        return OBX_EINVAL;
    n = strnlen(key_text, KEY_TEXT_MAX + 1);
    if (n > KEY_TEXT_MAX)
        return OBX_EINVAL;
    s = trim(key_text, &n);
    ERR_set_mark();
    err = parse_key(s, n, &pkey);
    ERR_pop_to_mark();
    if (err != OBX_OK)
        goto out;
    err = OBX_EINVAL;
    if (EVP_PKEY_id(pkey) != EVP_PKEY_ED25519)
        goto out;
    err = OBX_ENOMEM;
    v = obx_malloc(sizeof *v);
    if (!v)
        goto out;
    v->pkey = pkey;
    pkey = NULL; /* now owned by the verifier */
    *out = v;
    err = OBX_OK;
out:
    EVP_PKEY_free(pkey);
    return err;
}

enum obx_err
obx_signature_verifier_from_file(const char *path, struct obx_verifier **out /* OUT */)
{
    FILE *f = NULL;
    char *text = NULL;
    size_t n;
    enum obx_err err = OBX_ENOMEM;

    assert(out);
    *out = NULL;
    if (!path)
        return OBX_EINVAL;
    text = obx_malloc(KEY_TEXT_MAX + 2);
    if (!text)
        goto out;
    err = OBX_EIO;
    f = fopen(path, "rb");
    if (!f)
        goto out;
    n = fread(text, 1, KEY_TEXT_MAX + 1, f); /* one more than allowed, to see "too big" */
    if (ferror(f))
        goto out;
    err = OBX_EINVAL;
    if (n > KEY_TEXT_MAX || memchr(text, '\0', n))
        goto out;
    text[n] = '\0';
    err = obx_signature_verifier_new(text, out);
out:
    if (f)
        fclose(f);
    obx_free(text);
    return err;
}

void
obx_signature_verifier_free(struct obx_verifier *v)
{
    if (!v)
        return;
    EVP_PKEY_free(v->pkey);
    obx_free(v);
}

int
obx_signature_verifier_check(const struct obx_verifier *v, const void *body, size_t len,
                             const char *sig_b64)
{
    unsigned char sig[SIG_B64_LEN / 4 * 3];
    EVP_MD_CTX *ctx = NULL;
    const char *s;
    size_t n;
    int ok = 0;

    if (!v || !sig_b64 || (!body && len > 0))
        return 0;
    n = strlen(sig_b64);
    s = trim(sig_b64, &n);
    if (n != SIG_B64_LEN || b64_decode(s, n, sig, sizeof sig) != SIG_LEN)
        return 0;
    ctx = EVP_MD_CTX_new();
    if (!ctx)
        goto out;
    ERR_set_mark();
    /* Ed25519 hashes the message itself: no digest, one-shot only. */
    ok = EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, v->pkey) == 1 &&
         EVP_DigestVerify(ctx, sig, SIG_LEN, body ? body : "", len) == 1;
    ERR_pop_to_mark();
out:
    EVP_MD_CTX_free(ctx);
    return ok;
}

enum obx_err
obx_signature_sha256_hex(const void *data, size_t len, char out[65])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int ok;

    out[0] = '\0';
    ERR_set_mark();
    /* Fails only when OpenSSL cannot allocate; the caller must not use out then. */
    ok = EVP_Digest(data ? data : "", len, md, &mdlen, EVP_sha256(), NULL) == 1 && mdlen == 32;
    ERR_pop_to_mark();
    if (!ok)
        return OBX_ENOMEM;
    for (unsigned int i = 0; i < mdlen; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 0x0f];
    }
    out[64] = '\0';
    return OBX_OK;
}
