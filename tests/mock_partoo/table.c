/*
 * A small open-addressing hash table from byte strings to uint32 values.
 *
 * No hash table library is available to the project, and POSIX hsearch() keeps one global
 * table, so this is written out here, kept minimal:
 *   - keys are copied into an append-only pool as [uint32 length][bytes][NUL]; a slot holds
 *     the 64-bit hash, the key's pool offset and the value (16 bytes a slot);
 *   - linear probing on a power-of-two array, grown x2 when 3/4 full, so lookups stay O(1);
 *   - no deletion (the mock only ever adds, and mock_table_clear() empties everything), which
 *     keeps probing free of tombstones.
 * Offsets are 32-bit: the pool is capped at 4 GiB, far beyond what a benchmark stores.
 */
#include "mock.h"

#include <stdlib.h>
#include <string.h>

#define POOL_MAX ((size_t)UINT32_MAX)
#define FIRST_CAP 64

/* FNV-1a, then a murmur3 finaliser so the low bits used for the index are well mixed. */
static uint64_t
hash_bytes(const char *key, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

void
mock_table_init(struct mock_table *t)
{
    memset(t, 0, sizeof(*t));
}

void
mock_table_release(struct mock_table *t)
{
    free(t->slots);
    free(t->pool.data);
    memset(t, 0, sizeof(*t));
}

void
mock_table_clear(struct mock_table *t)
{
    if (t->slots != NULL) {
        memset(t->slots, 0, t->cap * sizeof(*t->slots));
    }
    t->count = 0;
    t->pool.len = t->pool.data != NULL ? 1 : 0;
}

/* Appends a key to the pool; returns its offset, or 0 when out of memory or space. */
static uint32_t
pool_add(struct mock_pool *p, const char *key, size_t len)
{
    uint32_t len32 = (uint32_t)len;
    size_t need;
    size_t cap;
    size_t off;
    char *data;

    if (p->len == 0) {
        p->len = 1; /* offset 0 means "no key" */
    }
    if (len > POOL_MAX || p->len + sizeof(len32) + len + 1 > POOL_MAX) {
        return 0;
    }
    need = p->len + sizeof(len32) + len + 1;
    if (need > p->cap) {
        cap = p->cap > 0 ? p->cap : 4096;
        while (cap < need) {
            cap *= 2;
        }
        data = realloc(p->data, cap);
        if (data == NULL) {
            return 0;
        }
        p->data = data;
        p->cap = cap;
    }
    off = p->len;
    memcpy(p->data + off, &len32, sizeof(len32));
    memcpy(p->data + off + sizeof(len32), key, len);
    p->data[off + sizeof(len32) + len] = '\0';
    p->len = need;
    return (uint32_t)off;
}

const char *
mock_table_key(const struct mock_table *t, uint32_t key_off, size_t *len)
{
    uint32_t len32;

    memcpy(&len32, t->pool.data + key_off, sizeof(len32));
    *len = len32;
    return t->pool.data + key_off + sizeof(len32);
}

static int
slot_matches(const struct mock_table *t, const struct mock_slot *s, uint64_t hash, const char *key,
             size_t len)
{
    const char *stored;
    size_t stored_len;

    if (s->hash != hash) {
        return 0;
    }
    stored = mock_table_key(t, s->key_off, &stored_len);
    return stored_len == len && memcmp(stored, key, len) == 0;
}

/* Index of key's slot, or of the empty slot where it would go. Needs cap > 0. */
static size_t
find_slot(const struct mock_table *t, uint64_t hash, const char *key, size_t len)
{
    size_t mask = t->cap - 1;
    size_t i = (size_t)hash & mask;

    while (t->slots[i].key_off != 0 && !slot_matches(t, &t->slots[i], hash, key, len)) {
        i = (i + 1) & mask;
    }
    return i;
}

static int
grow(struct mock_table *t)
{
    size_t cap = t->cap > 0 ? t->cap * 2 : FIRST_CAP;
    struct mock_slot *slots = calloc(cap, sizeof(*slots));
    size_t i;
    size_t j;

    if (slots == NULL) {
        return -1;
    }
    for (i = 0; i < t->cap; i++) {
        if (t->slots[i].key_off == 0) {
            continue;
        }
        j = (size_t)t->slots[i].hash & (cap - 1);
        while (slots[j].key_off != 0) {
            j = (j + 1) & (cap - 1);
        }
        slots[j] = t->slots[i];
    }
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return 0;
}

int
mock_table_put(struct mock_table *t, const char *key, size_t len, uint32_t *value,
               uint32_t *key_off)
{
    uint64_t hash = hash_bytes(key, len);
    size_t i;
    uint32_t off;

    if ((t->count + 1) * 4 > t->cap * 3 && grow(t) != 0) {
        return -1;
    }
    i = find_slot(t, hash, key, len);
    if (t->slots[i].key_off != 0) {
        *value = t->slots[i].value;
        *key_off = t->slots[i].key_off;
        return 0;
    }
    off = pool_add(&t->pool, key, len);
    if (off == 0) {
        return -1;
    }
    t->slots[i].hash = hash;
    t->slots[i].key_off = off;
    t->slots[i].value = *value;
    t->count++;
    *key_off = off;
    return 1;
}

int
mock_table_get(const struct mock_table *t, const char *key, size_t len, uint32_t *value)
{
    size_t i;

    if (t->cap == 0) {
        return 0;
    }
    i = find_slot(t, hash_bytes(key, len), key, len);
    if (t->slots[i].key_off == 0) {
        return 0;
    }
    *value = t->slots[i].value;
    return 1;
}
