/*
 * progress: a one-line progress indicator on stderr for long CLI operations, drawn
 * only when stderr is a terminal (pipes and logs stay quiet), at most 10 times a
 * second.
 */
#ifndef OBX_PROGRESS_H
#define OBX_PROGRESS_H

#include <stdint.h>

struct progress {
    int enabled;
    const char *label; /* borrowed */
    const char *unit;  /* "lines", "bytes", "rows" */
    int64_t total;     /* 0 = unknown */
    int64_t done;
    int64_t last_draw_ms;
};

void progress_start(struct progress *p, const char *label, const char *unit, int64_t total);
void progress_set(struct progress *p, int64_t done);
/* Draws the final state and ends the line. */
void progress_end(struct progress *p);

#endif
