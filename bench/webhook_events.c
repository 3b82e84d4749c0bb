/*
 * webhook_events: writes signed Partoo-shaped webhook events for bench/webhook_bench.sh.
 *
 *   webhook_events SEED_HEX64 N_CONFIRM N_REPLY CHANNEL > events.tsv
 *
 * One line per event: the base64 X-Partoo-Signature-v1 value, a tab, the raw JSON body (no
 * tab or newline in it). The first N_CONFIRM lines are message_created echoes of our keys
 * "wb-1" .. "wb-N_CONFIRM" (conversation "conv-<i % 1000>"), the next N_REPLY lines are
 * replies typed by a Partoo user (no external id) in the same channel. Every body is
 * distinct. The public key matching SEED_HEX64 is printed on stderr as
 * "public key <hex>". Signing uses OpenSSL's Ed25519, exactly as Partoo signs: over the raw
 * body bytes, standard padded base64.
 *
 *   gcc -O2 -o webhook_events bench/webhook_events.c $(pkg-config --cflags --libs libcrypto)
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
parse_seed(const char *hex, unsigned char seed[32])
{
    if (strlen(hex) != 64)
        return -1;
    for (int i = 0; i < 32; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return -1;
        seed[i] = (unsigned char)v;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    unsigned char seed[32], sig[64], pub[32];
    unsigned char b64[89];
    char body[2048];
    size_t siglen, publen = sizeof pub;
    long n_confirm, n_reply;
    EVP_PKEY *key;
    EVP_MD_CTX *ctx;

    if (argc != 5 || parse_seed(argv[1], seed) != 0) {
        fprintf(stderr, "usage: webhook_events SEED_HEX64 N_CONFIRM N_REPLY CHANNEL\n");
        return 2;
    }
    n_confirm = strtol(argv[2], NULL, 10);
    n_reply = strtol(argv[3], NULL, 10);
    key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof seed);
    ctx = EVP_MD_CTX_new();
    if (!key || !ctx || EVP_PKEY_get_raw_public_key(key, pub, &publen) != 1) {
        fprintf(stderr, "webhook_events: OpenSSL cannot make an Ed25519 key\n");
        return 1;
    }
    fprintf(stderr, "public key ");
    for (size_t i = 0; i < publen; i++)
        fprintf(stderr, "%02x", pub[i]);
    fprintf(stderr, "\n");
    for (long i = 1; i <= n_confirm + n_reply; i++) {
        int reply = i > n_confirm;
        long k = reply ? i - n_confirm : i;
        char ext[64];
        int len;

        if (reply)
            snprintf(ext, sizeof ext, "null");
        else
            snprintf(ext, sizeof ext, "{\"external_message_id\":\"wb-%ld\"}", k);
        len = snprintf(body, sizeof body,
                       "{\"type\":\"message_created\",\"payload\":{\"message\":{\"id\":%ld,"
                       "\"conversation_id\":%ld,\"date\":\"2026-11-24 09:15:02.123456+00:00\","
                       "\"content_type\":\"Text\",\"sender_type\":\"%s\",\"sender_label\":"
                       "\"Bench User\",\"status\":\"Success\",\"is_deleted\":false,"
                       "\"is_automated\":false,\"content\":\"%s %ld\",\"user_id\":null,"
                       "\"custom_channel\":%s},\"conversation\":{\"id\":%ld,\"consumer_name\":"
                       "\"Bench Consumer\",\"status\":\"Open\",\"business\":{\"id\":\"biz-1\","
                       "\"name\":\"Bench\"},\"custom_channel\":{\"id\":\"%s\",\"name\":\"Bench\","
                       "\"is_readonly\":false,\"external_conversation_id\":\"conv-%ld\"}},"
                       "\"org_id\":1}}",
                       1000000 + i, 50000 + k % 1000, reply ? "User" : "Consumer",
                       reply ? "reply" : "hello", k, ext, 50000 + k % 1000, argv[4], k % 1000);
        if (len <= 0 || (size_t)len >= sizeof body) {
            fprintf(stderr, "webhook_events: body too long\n");
            return 1;
        }
        siglen = sizeof sig;
        if (EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) != 1 ||
            EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)body, (size_t)len) != 1) {
            fprintf(stderr, "webhook_events: signing failed\n");
            return 1;
        }
        EVP_EncodeBlock(b64, sig, (int)siglen);
        printf("%s\t%s\n", b64, body);
    }
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(key);
    return fflush(stdout) == 0 ? 0 : 1;
}
