/*
 * mem: every allocation of the library goes through here, so tests can make the
 * Nth allocation fail (curl's torture idea) and prove that no path leaks or crashes.
 */
#ifndef OBX_MEM_H
#define OBX_MEM_H

#include <stddef.h>

void *obx_malloc(size_t n);
void *obx_calloc(size_t count, size_t size);
void *obx_realloc(void *p, size_t n);
char *obx_strdup(const char *s); /* NULL in, NULL out */
char *obx_strndup(const char *s, size_t n);
void obx_free(void *p); /* NULL is a no-op */

/*
 * Gives the free memory inside the heaps back to the system (glibc's malloc_trim; a no-op
 * elsewhere). glibc returns only the top of a heap by itself: the free chunks a busy
 * serve leaves between live ones stay in its RSS (15 MB of 64 in the tenants benchmark,
 * docs/benchmarks.md). Thread-safe: it locks each heap in turn.
 */
void obx_mem_trim(void);

/*
 * Test hook: after n more successful allocations, every allocation fails until
 * obx_mem_fail_after(-1) is called. Not thread-safe; tests only.
 */
void obx_mem_fail_after(long n);

#endif
