/* lr_schedule.h — the learning-rate schedule of the reference training
 * (method §5): DeepSpeed's WarmupDecayLR. With it = the scheduler's
 * last_batch_iteration and W = max(2, warmup_steps):
 *   it < 0:        lr = min_lr
 *   it < W, log:   lr = min_lr + (max_lr - min_lr) * ln(it + 1) / ln(W)
 *   it < W, linear: lr = min_lr + (max_lr - min_lr) * it / W
 *   otherwise:     lr = min_lr + (max_lr - min_lr) * max(0, (T - it) / max(1, T - W))
 * DeepSpeed sets the lr for it = -1 at construction and steps the scheduler
 * after every optimizer step, so optimizer step k (1-based) runs with
 * it = k - 2: the first two updates use min_lr under log warm-up. */
#ifndef RV_LR_SCHEDULE_H
#define RV_LR_SCHEDULE_H

typedef enum { RV_WARMUP_LOG = 0, RV_WARMUP_LINEAR = 1 } rv_warmup_type;

typedef struct {
    double min_lr, max_lr;     /* warmup_min_lr (0), warmup_max_lr (1e-4) */
    long warmup_steps;         /* warmup_num_steps (100) */
    long total_steps;          /* total_num_steps (10,000) */
    rv_warmup_type warmup;     /* DeepSpeed's default is log */
} rv_lr_schedule;

/* The learning rate at scheduler iteration it (see above). */
double rv_lr_at_iteration(const rv_lr_schedule *s, long it);

/* The learning rate optimizer step k (1-based) uses under DeepSpeed's
 * stepping order: rv_lr_at_iteration(s, k - 2). */
double rv_lr_for_update(const rv_lr_schedule *s, long k);

#endif
