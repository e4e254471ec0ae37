/* adamw.h — the optimizer side of a training step on the CPU: AdamW with
 * decoupled weight decay, exactly as torch.optim.AdamW updates a tensor
 * (the optimizer DeepSpeed runs with torch_adam: true, method §5), and
 * global gradient-norm clipping as torch.nn.utils.clip_grad_norm_ and
 * DeepSpeed apply it (one norm over every trainable tensor of both
 * networks). */
#ifndef RV_ADAMW_H
#define RV_ADAMW_H

#include <stddef.h>

typedef struct {
    double lr;             /* this step's learning rate (from the schedule) */
    double beta1, beta2;   /* 0.9, 0.999 */
    double eps;            /* 1e-8 */
    double weight_decay;   /* 0 in the reference */
} rv_adamw_hparams;

/* One update of n parameters at step t (1-based count of updates so far,
 * including this one):
 *   param *= 1 - lr*wd
 *   m = b1 m + (1-b1) g;   v = b2 v + (1-b2) g^2
 *   param -= (lr / (1-b1^t)) * m / (sqrt(v) / sqrt(1-b2^t) + eps)
 * m and v start at zero. Returns -1 (error set) when t < 1. */
int rv_adamw_update(size_t n, float *param, const float *grad, float *m, float *v, long t,
                    const rv_adamw_hparams *h);

/* Sum of squares of x[0..n) in double; add these over all gradient tensors
 * and take the square root for the global norm. */
double rv_sum_squares(size_t n, const float *x);

/* The factor clipping multiplies every gradient by: max_norm / (norm + 1e-6)
 * when that is below 1, else 1 (no clipping when max_norm <= 0). */
double rv_clip_factor(double total_norm, double max_norm);

/* x[i] *= factor. */
void rv_scale(size_t n, float *x, float factor);

#endif
