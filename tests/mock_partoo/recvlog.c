/*
 * The log of accepted deliveries, in arrival order, for GET /_mock/received.
 *
 * Benchmarks push millions of entries through it, so an entry is a fixed 24-byte record
 * whose strings are offsets into the dedup and conversation pools (which hold each distinct
 * string once anyway). Raw bodies are kept only for the last `nbodies` entries, in a ring whose
 * slots reuse their allocation.
 */
#include "mock.h"

#include <stdlib.h>
#include <string.h>

int
mock_recvlog_init(struct mock_recvlog *l, size_t max, size_t keep_bodies)
{
    memset(l, 0, sizeof(*l));
    l->max = max;
    l->nbodies = keep_bodies;
    if (keep_bodies == 0) {
        return 0;
    }
    l->bodies = calloc(keep_bodies, sizeof(*l->bodies));
    return l->bodies != NULL ? 0 : -1;
}

void
mock_recvlog_release(struct mock_recvlog *l)
{
    size_t i;

    for (i = 0; i < l->nbodies && l->bodies != NULL; i++) {
        free(l->bodies[i].data);
    }
    free(l->bodies);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

void
mock_recvlog_clear(struct mock_recvlog *l)
{
    size_t i;

    for (i = 0; i < l->nbodies; i++) {
        l->bodies[i].seq = 0;
        l->bodies[i].len = 0;
    }
    l->n = 0;
    l->overflow = 0;
}

static int
keep_body(struct mock_recvlog *l, uint64_t seq, const char *body, size_t len)
{
    struct mock_body *b = &l->bodies[seq % l->nbodies];
    char *data;

    if (len + 1 > b->cap) {
        data = realloc(b->data, len + 1);
        if (data == NULL) {
            b->seq = 0;
            return -1;
        }
        b->data = data;
        b->cap = len + 1;
    }
    memcpy(b->data, body, len);
    b->data[len] = '\0';
    b->len = len;
    b->seq = seq;
    return 0;
}

uint64_t
mock_recvlog_add(struct mock_recvlog *l, const struct mock_recv *r, const char *body, size_t len)
{
    struct mock_recv *v;
    size_t cap;

    if (l->n >= l->max) {
        l->overflow++;
        return 0;
    }
    if (l->n == l->cap) {
        cap = l->cap > 0 ? l->cap * 2 : 1024;
        v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL) {
            l->overflow++;
            return 0;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n] = *r;
    l->n++;
    if (l->nbodies > 0) {
        /* Losing a body only turns it into null in ?format=json: not worth failing for. */
        (void)keep_body(l, l->n, body, len);
    }
    return l->n;
}

const char *
mock_recvlog_body(const struct mock_recvlog *l, uint64_t seq, size_t *len)
{
    const struct mock_body *b;

    if (l->nbodies == 0 || seq == 0) {
        return NULL;
    }
    b = &l->bodies[seq % l->nbodies];
    if (b->seq != seq) {
        return NULL;
    }
    *len = b->len;
    return b->data;
}
