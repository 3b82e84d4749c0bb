/*
 * API keys: which are accepted, which are forced to 401/403, and the per-key rate limit.
 *
 * The limit is Partoo's: at most N requests in any sliding 60 s window, per key. Each key keeps
 * a ring of the monotonic times of its last N admitted requests; a request is admitted when
 * the oldest of those is at least 60 s old, so the check is O(1). The ring is sized lazily
 * from the current limit and rebuilt (emptied) when the limit changes.
 *
 * Only admitted requests occupy the window: a request answered 429 does not push the next
 * free slot further away.
 */
#include "mock.h"

#include <stdlib.h>
#include <string.h>

static struct mock_key *
key_add(struct mock_keys *k, const char *name, size_t len)
{
    struct mock_key *key = NULL;
    struct mock_key **v;
    uint32_t idx = (uint32_t)k->n;
    uint32_t off;

    if (k->n >= MOCK_MAX_KEYS) {
        return NULL;
    }
    if (k->n == k->cap) {
        v = realloc(k->v, (k->cap > 0 ? k->cap * 2 : 8) * sizeof(*v));
        if (v == NULL) {
            return NULL;
        }
        k->v = v;
        k->cap = k->cap > 0 ? k->cap * 2 : 8;
    }
    key = calloc(1, sizeof(*key));
    if (key == NULL) {
        return NULL;
    }
    key->name = strndup(name, len);
    if (key->name == NULL || mock_table_put(&k->index, name, len, &idx, &off) != 1) {
        free(key->name);
        free(key);
        return NULL;
    }
    key->idx = idx;
    key->listed = k->any_key;
    k->v[k->n] = key;
    k->n++;
    return key;
}

struct mock_key *
mock_keys_find(struct mock_keys *k, const char *name, int create)
{
    uint32_t idx;
    size_t len = strlen(name);

    if (mock_table_get(&k->index, name, len, &idx)) {
        return k->v[idx];
    }
    if (!create) {
        return NULL;
    }
    return key_add(k, name, len);
}

int
mock_keys_init(struct mock_keys *k, const char *csv)
{
    const char *p = csv;
    const char *comma;
    char *name = NULL;
    struct mock_key *key;
    int rc = -1;

    memset(k, 0, sizeof(*k));
    mock_table_init(&k->index);
    k->any_key = csv == NULL;
    while (p != NULL && *p != '\0') {
        comma = strchr(p, ',');
        name = strndup(p, comma != NULL ? (size_t)(comma - p) : strlen(p));
        if (name == NULL) {
            goto out;
        }
        if (*name != '\0') {
            key = mock_keys_find(k, name, 1);
            if (key == NULL) {
                goto out;
            }
            key->listed = 1;
        }
        free(name);
        name = NULL;
        p = comma != NULL ? comma + 1 : NULL;
    }
    rc = 0;
out:
    free(name);
    return rc;
}

void
mock_keys_release(struct mock_keys *k)
{
    size_t i;

    for (i = 0; i < k->n; i++) {
        free(k->v[i]->window);
        free(k->v[i]->name);
        free(k->v[i]);
    }
    free(k->v);
    mock_table_release(&k->index);
    memset(k, 0, sizeof(*k));
}

static int
window_resize(struct mock_key *key, size_t cap)
{
    int64_t *w = malloc(cap * sizeof(*w));

    if (w == NULL) {
        return -1;
    }
    free(key->window);
    key->window = w;
    key->window_cap = cap;
    key->window_head = 0;
    key->window_len = 0;
    return 0;
}

int64_t
mock_keys_admit(struct mock_key *key, int64_t limit_per_min, int64_t now_mono_ms)
{
    int64_t oldest;

    if (limit_per_min <= 0) {
        return 0;
    }
    if (key->window_cap != (size_t)limit_per_min &&
        window_resize(key, (size_t)limit_per_min) != 0) {
        return 0; /* out of memory: do not limit rather than fail the request */
    }
    if (key->window_len < key->window_cap) {
        key->window[(key->window_head + key->window_len) % key->window_cap] = now_mono_ms;
        key->window_len++;
        return 0;
    }
    oldest = key->window[key->window_head];
    if (oldest + MOCK_WINDOW_MS > now_mono_ms) {
        return oldest + MOCK_WINDOW_MS - now_mono_ms;
    }
    key->window[key->window_head] = now_mono_ms;
    key->window_head = (key->window_head + 1) % key->window_cap;
    return 0;
}

void
mock_keys_reset(struct mock_keys *k)
{
    size_t i;
    struct mock_key *key;

    for (i = 0; i < k->n; i++) {
        key = k->v[i];
        key->forced_status = 0;
        key->requests = 0;
        key->accepted = 0;
        key->rate_limited = 0;
        key->window_head = 0;
        key->window_len = 0;
    }
}
