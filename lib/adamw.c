/* adamw.c — AdamW update and gradient-norm clipping (see adamw.h). The
 * element update runs in float like torch's, with the bias corrections and
 * step size computed once per call in double. */
#include "adamw.h"

#include <math.h>

#include "error.h"

/* Elements below which a loop stays on one thread (fork/join overhead). */
#define ADAMW_PAR_MIN ((size_t)1 << 16)

int rv_adamw_update(size_t n, float *param, const float *grad, float *m, float *v, long t,
                    const rv_adamw_hparams *h)
{
    if (t < 1)
        return rv_error_set("adamw: expected a step count >= 1, found %ld", t);
    /* Scalars are formed in double and rounded once, as torch passes Python
     * floats to its float kernels (1 - beta2 must not be 1.0f - 0.999f). */
    const float one_minus_b1 = (float)(1.0 - h->beta1), b2 = (float)h->beta2;
    const float one_minus_b2 = (float)(1.0 - h->beta2), eps = (float)h->eps;
    const float decay = (float)(1.0 - h->lr * h->weight_decay);
    const float step_size = (float)(h->lr / (1.0 - pow(h->beta1, (double)t)));
    const float bc2_sqrt = (float)sqrt(1.0 - pow(h->beta2, (double)t));
    #pragma omp parallel for schedule(static) if (n >= ADAMW_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float g = grad[i];
        float mi = m[i] + one_minus_b1 * (g - m[i]);   /* torch: exp_avg.lerp_(grad, 1 - beta1) */
        float vi = b2 * v[i] + one_minus_b2 * g * g;
        m[i] = mi;
        v[i] = vi;
        param[i] = param[i] * decay - step_size * (mi / (sqrtf(vi) / bc2_sqrt + eps));
    }
    return 0;
}

double rv_sum_squares(size_t n, const float *x)
{
    double s = 0;
    #pragma omp parallel for reduction(+ : s) schedule(static) if (n >= ADAMW_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return s;
}

double rv_clip_factor(double total_norm, double max_norm)
{
    if (!(max_norm > 0))
        return 1.0;
    double f = max_norm / (total_norm + 1e-6);
    return f < 1.0 ? f : 1.0;
}

void rv_scale(size_t n, float *x, float factor)
{
    #pragma omp parallel for schedule(static) if (n >= ADAMW_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        x[i] *= factor;
}
