/* lr_schedule.c — DeepSpeed WarmupDecayLR (see lr_schedule.h). */
#include "lr_schedule.h"

#include <math.h>

double rv_lr_at_iteration(const rv_lr_schedule *s, long it)
{
    if (it < 0)
        return s->min_lr;
    long w = s->warmup_steps > 2 ? s->warmup_steps : 2;
    double gamma;
    if (it < w)
        gamma = s->warmup == RV_WARMUP_LINEAR ? (double)it / (double)w : log((double)it + 1.0) / log((double)w);
    else {
        double span = (double)(s->total_steps - w);
        gamma = (double)(s->total_steps - it) / (span > 1.0 ? span : 1.0);
        if (gamma < 0)
            gamma = 0;
    }
    return s->min_lr + (s->max_lr - s->min_lr) * gamma;
}

double rv_lr_for_update(const rv_lr_schedule *s, long k)
{
    return rv_lr_at_iteration(s, k - 2);
}
