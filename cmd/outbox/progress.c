/* progress: TTY-only progress line. */
#include "progress.h"

#include <stdio.h>
#include <unistd.h>

#include "clock.h"

static void
draw(struct progress *p)
{
    if (p->total > 0) {
        int pct = (int)(p->done * 100 / p->total);
        int filled = pct / 5;
        fprintf(stderr, "\r%s [%.*s%.*s] %3d%% %lld/%lld %s", p->label, filled,
                "####################", 20 - filled, "....................", pct,
                (long long)p->done, (long long)p->total, p->unit);
    } else {
        fprintf(stderr, "\r%s %lld %s", p->label, (long long)p->done, p->unit);
    }
    fflush(stderr);
}

void
progress_start(struct progress *p, const char *label, const char *unit, int64_t total)
{
    p->enabled = isatty(STDERR_FILENO);
    p->label = label;
    p->unit = unit;
    p->total = total;
    p->done = 0;
    p->last_draw_ms = 0;
}

void
progress_set(struct progress *p, int64_t done)
{
    int64_t now = obx_mono_ms(obx_clock_real());

    p->done = done > p->total && p->total ? p->total : done;
    if (!p->enabled || now - p->last_draw_ms < 100)
        return;
    p->last_draw_ms = now;
    draw(p);
}

void
progress_end(struct progress *p)
{
    if (!p->enabled)
        return;
    draw(p);
    fputc('\n', stderr);
}
