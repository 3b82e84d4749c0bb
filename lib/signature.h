/*
 * signature: Ed25519 verification of Partoo webhooks (X-Partoo-Signature-v1 =
 * base64 of the Ed25519 signature of the raw body), and SHA-256 helpers. Built on
 * OpenSSL's libcrypto (see docs/architecture.md for why).
 */
#ifndef OBX_SIGNATURE_H
#define OBX_SIGNATURE_H

#include <stddef.h>
#include <stdint.h>

#include "outbox.h"

/* Partoo's published keys (partoo-api.md), 64 hex characters each. */
#define OBX_PARTOO_PROD_KEY_HEX "d06f5c8872fa5d9417b96aba5b87452efc0d10f5a071db50804565048c195814"
#define OBX_PARTOO_SANDBOX_KEY_HEX \
    "2eccaf5f6c959c6dd92912057c4bd89369e4cda9e836002a052a9d78db9be2c3"

struct obx_verifier; /* an Ed25519 public key ready to verify */

/*
 * Parses a public key given as 64 hex characters (raw 32 bytes), as the base64
 * SubjectPublicKeyInfo line of a PEM ("MCowBQYDK2VwAyEA..."), or as a whole PEM
 * text ("-----BEGIN PUBLIC KEY-----..."). OBX_EINVAL when it is none of these or
 * not an Ed25519 key. The caller owns *out (obx_signature_verifier_free).
 */
OBX_MUST_CHECK enum obx_err obx_signature_verifier_new(const char *key_text,
                                                       struct obx_verifier **out /* OUT */);

/* Reads a PEM file and parses it like obx_signature_verifier_new. OBX_EIO when unreadable. */
OBX_MUST_CHECK enum obx_err obx_signature_verifier_from_file(const char *path,
                                                             struct obx_verifier **out /* OUT */);

void obx_signature_verifier_free(struct obx_verifier *v);

/*
 * 1 when sig_b64 (standard base64, padded; surrounding whitespace ignored) is a
 * valid Ed25519 signature of body[0..len) under v; 0 otherwise (including a
 * malformed header). Never reads past len; constant work for a given length.
 */
int obx_signature_verifier_check(const struct obx_verifier *v, const void *body, size_t len,
                                 const char *sig_b64);

/*
 * SHA-256 of data as 64 lower-case hex characters plus NUL into out[65].
 * OBX_ENOMEM when OpenSSL could not allocate (out is then "" and must not be used:
 * it is a deduplication key).
 */
OBX_MUST_CHECK enum obx_err obx_signature_sha256_hex(const void *data, size_t len, char out[65]);

#endif
