/*
 * Unit tests of verify_pool: verdicts and hashes come back on the loop thread,
 * one done() per job, a key swap applies to later jobs, and freeing the pool
 * with work outstanding hands every job back (ASan checks nothing leaks).
 */
#include <openssl/evp.h>
#include <stdlib.h>

#include "check.h"
#include "mem.h"
#include "verify_pool.h"

/* RFC 8032 section 7.1, TEST 2: the one-byte message 0x72 ("r"). */
#define PUBLIC_HEX "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
#define OTHER_PUBLIC_HEX "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
#define SIG_HEX                                                                                \
    "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613" \
    "d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
#define SHA256_OF_R "454349e422f05297191ead13e21d3db520e5abef52055e4964b82fb213f593a1"

struct tally {
    struct event_base *base;
    int expected, done, valid, forged, cancelled, bad_sha, out_of_order;
    long last_seq;
};

static void
on_done(struct obx_verify_job *job, void *arg)
{
    struct tally *t = arg;
    long seq = (long)(intptr_t)job->ctx;

    t->done++;
    if (job->verdict == OBX_VERIFY_VALID) {
        t->valid++;
        if (strcmp(job->sha, SHA256_OF_R) != 0)
            t->bad_sha++;
    } else if (job->verdict == OBX_VERIFY_FORGED) {
        t->forged++;
    } else if (job->verdict == OBX_VERIFY_CANCELLED) {
        t->cancelled++;
    }
    /* One worker here: jobs must come back in submission order. */
    if (seq < t->last_seq)
        t->out_of_order++;
    t->last_seq = seq;
    obx_verify_pool_job_free(job);
    if (t->done == t->expected)
        event_base_loopbreak(t->base);
}

static void
sig_b64(char out[89])
{
    static const char hex[] = SIG_HEX;
    unsigned char sig[64];

    for (int i = 0; i < 64; i++) {
        unsigned int byte;
        sscanf(&hex[2 * i], "%2x", &byte);
        sig[i] = (unsigned char)byte;
    }
    EVP_EncodeBlock((unsigned char *)out, sig, 64);
}

/* A job for "r" (or "s", which the signature does not cover), with or without a signature. */
static struct obx_verify_job *
make_job(long seq, int genuine, int with_sig)
{
    struct obx_verify_job *job = obx_calloc(1, sizeof *job);
    char sig[89];

    if (!job)
        abort();
    sig_b64(sig);
    job->ctx = (void *)(intptr_t)seq;
    job->body = obx_strdup(genuine ? "r" : "s");
    job->len = 1;
    job->sig = with_sig ? obx_strdup(sig) : NULL;
    return job;
}

static int
test_verdicts_come_back_on_the_loop(void)
{
    struct tally t = {0};
    struct obx_verifier *v = NULL;
    struct obx_verify_pool *p = NULL;
    TEST_BEGIN;

    t.base = event_base_new();
    CHECK(t.base);
    CHECK_OK(obx_signature_verifier_new(PUBLIC_HEX, &v));
    CHECK_OK(obx_verify_pool_new(t.base, 1, v, on_done, &t, &p));
    t.expected = 300;
    t.last_seq = -1;
    for (long i = 0; i < 300; i++)
        obx_verify_pool_submit(p, make_job(i, i % 3 != 1, i % 3 != 2));
    CHECK_INT(event_base_dispatch(t.base), 0);
    CHECK_INT(t.done, 300);
    CHECK_INT(t.valid, 100);  /* i % 3 == 0: genuine and signed */
    CHECK_INT(t.forged, 200); /* altered body, or no signature */
    CHECK_INT(t.bad_sha, 0);
    CHECK_INT(t.out_of_order, 0);
end:
    obx_verify_pool_free(p);
    if (t.base)
        event_base_free(t.base);
    TEST_END;
}

static int
test_key_swap_applies_to_later_jobs(void)
{
    struct tally t = {0};
    struct obx_verifier *v = NULL, *other = NULL;
    struct obx_verify_pool *p = NULL;
    TEST_BEGIN;

    t.base = event_base_new();
    CHECK(t.base);
    CHECK_OK(obx_signature_verifier_new(PUBLIC_HEX, &v));
    CHECK_OK(obx_verify_pool_new(t.base, 2, v, on_done, &t, &p));
    t.expected = 10;
    for (long i = 0; i < 10; i++)
        obx_verify_pool_submit(p, make_job(i, 1, 1));
    CHECK_INT(event_base_dispatch(t.base), 0);
    CHECK_INT(t.valid, 10);

    /* The same pool under another key: the RFC signature no longer verifies. */
    CHECK_OK(obx_signature_verifier_new(OTHER_PUBLIC_HEX, &other));
    obx_verify_pool_set_verifier(p, other);
    t.expected = 20;
    for (long i = 10; i < 20; i++)
        obx_verify_pool_submit(p, make_job(i, 1, 1));
    CHECK_INT(event_base_dispatch(t.base), 0);
    CHECK_INT(t.done, 20);
    CHECK_INT(t.valid, 10);
    CHECK_INT(t.forged, 10);
end:
    obx_verify_pool_free(p);
    if (t.base)
        event_base_free(t.base);
    TEST_END;
}

static int
test_free_hands_back_every_job(void)
{
    struct tally t = {0};
    struct obx_verifier *v = NULL;
    struct obx_verify_pool *p = NULL;
    TEST_BEGIN;

    t.base = event_base_new();
    CHECK(t.base);
    CHECK_OK(obx_signature_verifier_new(PUBLIC_HEX, &v));
    CHECK_OK(obx_verify_pool_new(t.base, 2, v, on_done, &t, &p));
    t.expected = -1; /* never break: everything comes back from within free */
    t.last_seq = -1;
    for (long i = 0; i < 500; i++)
        obx_verify_pool_submit(p, make_job(i, 1, 1));
    obx_verify_pool_free(p);
    p = NULL;
    CHECK_INT(t.done, 500);
    CHECK_INT(t.valid + t.cancelled, 500);
end:
    obx_verify_pool_free(p);
    if (t.base)
        event_base_free(t.base);
    TEST_END;
}

static const struct test_case tests[] = {
    {"verdicts_come_back_on_the_loop", test_verdicts_come_back_on_the_loop},
    {"key_swap_applies_to_later_jobs", test_key_swap_applies_to_later_jobs},
    {"free_hands_back_every_job", test_free_hands_back_every_job},
    {NULL, NULL},
};

TEST_MAIN(tests)
