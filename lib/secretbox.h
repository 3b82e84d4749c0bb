/*
 * secretbox: tenant API keys encrypted at rest (SPEC §11), with AES-256-GCM from libcrypto.
 *
 * A sealed value is "obx1" | 96-bit random nonce | ciphertext | 128-bit GCM tag. The tag
 * covers the ciphertext, the nonce, the version tag and the caller's `aad` (the tenant
 * name), so a sealed key copied onto another tenant's row, or altered in any bit, does not
 * open. Random 96-bit nonces are safe up to 2^32 seals under one key (NIST SP 800-38D
 * 8.3); a tenant registry seals one value per API key it stores.
 *
 * Nothing here logs and nothing keeps state: every function is safe from any thread.
 * Secrets (the key, plaintexts) are wiped from every temporary before it is freed.
 */
#ifndef OBX_SECRETBOX_H
#define OBX_SECRETBOX_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "outbox.h"

#define OBX_SECRETBOX_KEY_BYTES 32
#define OBX_SECRETBOX_OVERHEAD (4 + 12 + 16) /* "obx1" version tag + 96-bit nonce + GCM tag */
#define OBX_SECRETBOX_FINGERPRINT_LEN 12     /* hex digits */

/*
 * Seals plain (n bytes) with key; *out (obx_malloc'd, n + OBX_SECRETBOX_OVERHEAD bytes,
 * caller frees with obx_free) is "obx1" | random nonce (RAND_bytes) | ciphertext | tag.
 * `aad` (NUL-terminated, may be NULL, which is the same as "") is bound as additional
 * authenticated data: the registry passes the tenant name, so a sealed key copied onto
 * another tenant's row does not open.
 * plain may hold no NUL byte (OBX_EINVAL): it opens as a C string, which
 * obx_secretbox_free_plain wipes up to its NUL. OBX_ETOOBIG past INT_MAX bytes, OBX_EIO
 * when the random generator fails, OBX_ENOMEM when allocation (ours or OpenSSL's) fails.
 */
OBX_MUST_CHECK enum obx_err obx_secretbox_seal(const uint8_t key[OBX_SECRETBOX_KEY_BYTES],
                                               const char *aad, const char *plain, size_t n,
                                               uint8_t **out /* OUT */, size_t *out_len /* OUT */);

/*
 * Opens what obx_secretbox_seal made. *plain is obx_malloc'd, NUL-terminated, length *len;
 * the caller owns it and releases it with obx_secretbox_free_plain (which wipes it). A wrong
 * key, wrong aad, unknown version, truncated or altered input is OBX_EINVAL, and no byte of
 * the would-be plaintext is left anywhere. OBX_ENOMEM when allocation fails.
 */
OBX_MUST_CHECK enum obx_err obx_secretbox_open(const uint8_t key[OBX_SECRETBOX_KEY_BYTES],
                                               const char *aad, const uint8_t *sealed, size_t n,
                                               char **plain /* OUT */, size_t *len /* OUT */);

/* Wipes (explicit_bzero up to the NUL) and frees what obx_secretbox_open returned. NULL is a
 * no-op. */
void obx_secretbox_free_plain(char *plain);

/*
 * First OBX_SECRETBOX_FINGERPRINT_LEN hex digits of SHA-256(key[0..n)), NUL-terminated: what
 * may be shown of an API key. out is "" only when OpenSSL could not allocate.
 */
void obx_secretbox_fingerprint(const char *key, size_t n,
                               char out[OBX_SECRETBOX_FINGERPRINT_LEN + 1]);

/*
 * Reads secrets_key_file at path: exactly 32 raw bytes, or 64 hex digits (either case)
 * optionally followed by one newline. A file group or others may read (mode & 077) is
 * refused, as ssh refuses a private key, and so is anything but a regular file. Every
 * refusal is OBX_ECONFIG with a message appended to err (may be NULL) that names the file
 * and what is wrong, never its content. key is zeroed on entry and written only on success.
 */
OBX_MUST_CHECK enum obx_err obx_secretbox_load_key(const char *path,
                                                   uint8_t key[OBX_SECRETBOX_KEY_BYTES] /* OUT */,
                                                   struct obx_buf *err);

#endif
