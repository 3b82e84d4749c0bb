/*
 * secretbox: AES-256-GCM sealing of tenant API keys, and the secrets_key_file reader.
 *
 * Layout of a sealed value (OBX_SECRETBOX_OVERHEAD = 32 bytes more than the plaintext):
 *
 *   offset 0   4 bytes   "obx1"        version tag: a later format gets another tag
 *   offset 4   12 bytes  nonce         RAND_bytes, fresh for every seal
 *   offset 16  n bytes   ciphertext    AES-256-GCM of the plaintext
 *   offset 16+n 16 bytes tag           GCM tag over the AAD and the ciphertext
 *
 * The AAD is "obx1" followed by the caller's aad string, so the version tag is authenticated
 * along with the tenant name (GCM authenticates the nonce by construction). Opening checks
 * the tag before anything is returned: any change in any byte, a different key or a
 * different aad gives OBX_EINVAL and the plaintext buffer is wiped.
 *
 * As in signature.c, OpenSSL errors raised here are popped off the thread's error queue
 * (ERR_set_mark/ERR_pop_to_mark), so a forged value does not leave stale errors for a later
 * TLS call on the same thread. EVP_CIPHER_CTX_free cleanses the key schedule it held.
 */
#include "secretbox.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "mem.h"
#include "signature.h"

#define VERSION_LEN 4
#define NONCE_LEN 12
#define TAG_LEN 16
#define HEADER_LEN (VERSION_LEN + NONCE_LEN) /* bytes before the ciphertext */
#define HEX_KEY_LEN (2 * OBX_SECRETBOX_KEY_BYTES)
#define KEY_FILE_READ (HEX_KEY_LEN + 2) /* bytes read: one more than 64 hex digits and '\n' */

static const uint8_t version_tag[VERSION_LEN] = {'o', 'b', 'x', '1'}; /* not a C string */

/*
 * Sets ctx up for AES-256-GCM under key and nonce, encrypting (enc = 1) or decrypting (0),
 * and feeds the AAD: the version tag, then aad. Returns 1 on success, 0 when OpenSSL failed.
 */
static int
gcm_init(EVP_CIPHER_CTX *ctx, int enc, const uint8_t *key, const uint8_t *nonce, const char *aad)
{
    size_t aad_len = aad ? strlen(aad) : 0;
    int len = 0;

    if (aad_len > INT_MAX)
        return 0;
    return EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) == 1 &&
           EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
           EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, enc) == 1 &&
           EVP_CipherUpdate(ctx, NULL, &len, version_tag, VERSION_LEN) == 1 &&
           (aad_len == 0 ||
            EVP_CipherUpdate(ctx, NULL, &len, (const unsigned char *)aad, (int)aad_len) == 1);
}

/* Encrypts plain[0..n) into box, whose version tag and nonce are already written. */
static enum obx_err
seal_into(const uint8_t *key, const char *aad, const char *plain, size_t n, uint8_t *box)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    uint8_t *ct = box + HEADER_LEN;
    int len = 0, ok;

    ok = ctx && gcm_init(ctx, 1, key, box + VERSION_LEN, aad) &&
         (n == 0 || (EVP_EncryptUpdate(ctx, ct, &len, (const unsigned char *)plain, (int)n) == 1 &&
                     len == (int)n)) &&
         EVP_EncryptFinal_ex(ctx, ct + n, &len) == 1 && len == 0 &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, ct + n) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok ? OBX_OK : OBX_ENOMEM;
}

enum obx_err
obx_secretbox_seal(const uint8_t key[OBX_SECRETBOX_KEY_BYTES], const char *aad, const char *plain,
                   size_t n, uint8_t **out /* OUT */, size_t *out_len /* OUT */)
{
    uint8_t *box = NULL;
    enum obx_err err;

    assert(key && out && out_len);
    *out = NULL;
    *out_len = 0;
    if ((!plain && n > 0) || (n > 0 && memchr(plain, '\0', n)))
        return OBX_EINVAL;
    if (n > (size_t)INT_MAX - OBX_SECRETBOX_OVERHEAD)
        return OBX_ETOOBIG;
    box = obx_malloc(n + OBX_SECRETBOX_OVERHEAD);
    if (!box)
        return OBX_ENOMEM;
    memcpy(box, version_tag, VERSION_LEN);
    ERR_set_mark();
    if (RAND_bytes(box + VERSION_LEN, NONCE_LEN) != 1)
        err = OBX_EIO; /* no entropy: never seal under a predictable nonce */
    else
        err = seal_into(key, aad, plain, n, box);
    ERR_pop_to_mark();
    if (err == OBX_OK) {
        *out = box;
        *out_len = n + OBX_SECRETBOX_OVERHEAD;
        box = NULL; /* now owned by the caller */
    }
    obx_free(box); /* ciphertext at most: nothing secret to wipe */
    return err;
}

/*
 * Decrypts the ciphertext of sealed[0..n) into text (n - OBX_SECRETBOX_OVERHEAD bytes) and
 * checks the tag. OBX_EINVAL when the tag does not match: text then holds garbage the caller
 * must wipe.
 */
static enum obx_err
open_into(const uint8_t *key, const char *aad, const uint8_t *sealed, size_t n, uint8_t *text)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    size_t ct_len = n - OBX_SECRETBOX_OVERHEAD;
    uint8_t tag[TAG_LEN]; /* a copy: the ctrl takes a non-const pointer */
    int len = 0;
    enum obx_err err = OBX_ENOMEM;

    memcpy(tag, sealed + n - TAG_LEN, TAG_LEN);
    if (!ctx || !gcm_init(ctx, 0, key, sealed + VERSION_LEN, aad))
        goto out;
    if (ct_len > 0 && (EVP_DecryptUpdate(ctx, text, &len, sealed + HEADER_LEN, (int)ct_len) != 1 ||
                       len != (int)ct_len))
        goto out;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) != 1)
        goto out;
    /* The only step that fails for a forged value: wrong key, aad, nonce, text or tag. */
    err = EVP_DecryptFinal_ex(ctx, text + ct_len, &len) == 1 ? OBX_OK : OBX_EINVAL;
out:
    EVP_CIPHER_CTX_free(ctx);
    return err;
}

enum obx_err
obx_secretbox_open(const uint8_t key[OBX_SECRETBOX_KEY_BYTES], const char *aad,
                   const uint8_t *sealed, size_t n, char **plain /* OUT */, size_t *len /* OUT */)
{
    uint8_t *text = NULL;
    size_t ct_len;
    enum obx_err err;

    assert(key && plain && len);
    *plain = NULL;
    *len = 0;
    if (!sealed || n < OBX_SECRETBOX_OVERHEAD || memcmp(sealed, version_tag, VERSION_LEN) != 0)
        return OBX_EINVAL;
    ct_len = n - OBX_SECRETBOX_OVERHEAD;
    if (ct_len > (size_t)INT_MAX - OBX_SECRETBOX_OVERHEAD)
        return OBX_EINVAL; /* seal never makes one this large */
    text = obx_malloc(ct_len + 1);
    if (!text)
        return OBX_ENOMEM;
    ERR_set_mark();
    err = open_into(key, aad, sealed, n, text);
    ERR_pop_to_mark();
    /* Authentic but with a NUL: not made by seal, and free_plain could not wipe it all. */
    if (err == OBX_OK && memchr(text, '\0', ct_len))
        err = OBX_EINVAL;
    if (err == OBX_OK) {
        text[ct_len] = '\0';
        *plain = (char *)text;
        *len = ct_len;
        text = NULL; /* now owned by the caller */
    }
    if (text) {
        explicit_bzero(text, ct_len + 1);
        obx_free(text);
    }
    return err;
}

void
obx_secretbox_free_plain(char *plain)
{
    if (!plain)
        return;
    explicit_bzero(plain, strlen(plain));
    obx_free(plain);
}

void
obx_secretbox_fingerprint(const char *key, size_t n, char out[OBX_SECRETBOX_FINGERPRINT_LEN + 1])
{
    char hex[65];

    out[0] = '\0';
    if (obx_signature_sha256_hex(key, n, hex) == OBX_OK) {
        memcpy(out, hex, OBX_SECRETBOX_FINGERPRINT_LEN);
        out[OBX_SECRETBOX_FINGERPRINT_LEN] = '\0';
    }
    explicit_bzero(hex, sizeof hex); /* the whole digest is more than may be shown */
}

/* ---- secrets_key_file ---- */

static void __attribute__((format(printf, 2, 3))) report(struct obx_buf *err, const char *fmt, ...)
{
    va_list ap;
    enum obx_err rc;

    if (!err)
        return;
    va_start(ap, fmt);
    rc = obx_buf_vprintf(err, fmt, ap);
    va_end(ap);
    (void)rc; /* a message cut short by the buffer's cap still comes with OBX_ECONFIG */
}

static int
hex_val(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Opens path and reads at most cap bytes of it into buf, after checking that it is a regular
 * file no one but its owner may access. O_NONBLOCK so that a FIFO named by mistake is refused
 * rather than waited on.
 */
static enum obx_err
read_key_file(const char *path, uint8_t *buf, size_t cap, size_t *n, struct obx_buf *err)
{
    struct stat sb;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    enum obx_err rc = OBX_ECONFIG;

    *n = 0;
    if (fd < 0) {
        report(err, "cannot read secrets_key_file '%s': %s", path, strerror(errno));
        return OBX_ECONFIG;
    }
    if (fstat(fd, &sb) != 0) {
        report(err, "cannot read secrets_key_file '%s': %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        report(err, "secrets_key_file '%s' is not a regular file", path);
        goto out;
    }
    if (sb.st_mode & 077) {
        report(err,
               "secrets_key_file '%s': permissions %04o are too open (group or others have "
               "access); chmod 600 it",
               path, (unsigned)(sb.st_mode & 07777));
        goto out;
    }
    while (*n < cap) {
        ssize_t r = read(fd, buf + *n, cap - *n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            report(err, "cannot read secrets_key_file '%s': %s", path, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        *n += (size_t)r;
    }
    rc = OBX_OK;
out:
    close(fd);
    return rc;
}

/* 64 hex digits -> key. 0 on success; -1 when a character is not a hex digit. */
static int
key_from_hex(const uint8_t *s, uint8_t *key)
{
    int bad = 0;

    for (size_t i = 0; i < OBX_SECRETBOX_KEY_BYTES; i++) {
        int hi = hex_val(s[2 * i]), lo = hex_val(s[2 * i + 1]);
        bad |= hi < 0 || lo < 0;
        key[i] = (uint8_t)(((hi & 0x0f) << 4) | (lo & 0x0f));
    }
    return bad ? -1 : 0;
}

enum obx_err
obx_secretbox_load_key(const char *path, uint8_t key[OBX_SECRETBOX_KEY_BYTES] /* OUT */,
                       struct obx_buf *err)
{
    uint8_t buf[KEY_FILE_READ], k[OBX_SECRETBOX_KEY_BYTES];
    size_t n = 0;
    enum obx_err rc;

    assert(path && key);
    memset(key, 0, OBX_SECRETBOX_KEY_BYTES);
    rc = read_key_file(path, buf, sizeof buf, &n, err);
    if (rc != OBX_OK)
        goto out;
    rc = OBX_ECONFIG;
    if (n == OBX_SECRETBOX_KEY_BYTES) {
        memcpy(k, buf, OBX_SECRETBOX_KEY_BYTES);
        rc = OBX_OK;
    } else if (n == HEX_KEY_LEN || (n == HEX_KEY_LEN + 1 && buf[HEX_KEY_LEN] == '\n')) {
        if (key_from_hex(buf, k) == 0)
            rc = OBX_OK;
        else
            report(err, "secrets_key_file '%s': 64 characters, but not all hex digits", path);
    } else {
        report(err,
               "secrets_key_file '%s' holds %s%zu bytes: expected exactly 32 raw bytes, or 64 "
               "hex digits and an optional newline (openssl rand -hex 32)",
               path, n == sizeof buf ? "more than " : "", n == sizeof buf ? n - 1 : n);
    }
    if (rc == OBX_OK)
        memcpy(key, k, OBX_SECRETBOX_KEY_BYTES);
out:
    /* The key must not outlive this call on the stack. */
    explicit_bzero(buf, sizeof buf);
    explicit_bzero(k, sizeof k);
    return rc;
}
