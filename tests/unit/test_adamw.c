/* test_adamw.c — AdamW (three steps against the torch.optim.AdamW update
 * written out in double), gradient-norm clipping, and the DeepSpeed
 * WarmupDecayLR schedule against values computed by hand from its formula
 * (method §5). */
#include <math.h>

#include "adamw.h"
#include "lr_schedule.h"
#include "test.h"
#include "test_train_util.h"

static void test_adamw_steps(void)
{
    enum { N = 8 };
    rv_adamw_hparams h = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01};
    float p[N], m[N] = {0}, v[N] = {0}, g[N];
    double pe[N], me[N] = {0}, ve[N] = {0};
    for (int i = 0; i < N; i++)
        pe[i] = p[i] = rnd_sym();
    double worst = 0;
    for (long t = 1; t <= 3; t++) {
        for (int i = 0; i < N; i++)
            g[i] = (i == 3 ? 1e-6f : 1.0f) * rnd_sym();   /* one tiny gradient: eps matters there */
        REQUIRE(rv_adamw_update(N, p, g, m, v, t, &h) == 0, "%s", rv_error_get());
        for (int i = 0; i < N; i++) {
            pe[i] *= 1 - h.lr * h.weight_decay;
            me[i] = h.beta1 * me[i] + (1 - h.beta1) * g[i];
            ve[i] = h.beta2 * ve[i] + (1 - h.beta2) * (double)g[i] * g[i];
            double mhat = me[i] / (1 - pow(h.beta1, t)), vhat = ve[i] / (1 - pow(h.beta2, t));
            pe[i] -= h.lr * mhat / (sqrt(vhat) + h.eps);
            double e = fabs(p[i] - pe[i]);
            worst = fmax(worst, e);
            CHECK(e < 3e-7, "step %ld param %d: %.9g, formula %.9g", t, i, p[i], pe[i]);
            CHECK(fabs(m[i] - me[i]) <= 1e-6 * fabs(me[i]) + 1e-12, "step %ld m[%d]", t, i);
            CHECK(fabs(v[i] - ve[i]) <= 1e-6 * fabs(ve[i]) + 1e-18, "step %ld v[%d]", t, i);
        }
    }
    REPORT_ERR("adamw 3 steps vs formula (abs, params ~1)", worst);
    /* the first step moves every parameter with a non-negligible gradient by
     * about lr (Adam's normalised update), minus the decay */
    CHECK(rv_adamw_update(N, p, g, m, v, 0, &h) == -1, "step 0 refused");
}

static void test_clip(void)
{
    float g1[3] = {3, 0, 4}, g2[2] = {0, 12};   /* global norm 13 */
    double total = sqrt(rv_sum_squares(3, g1) + rv_sum_squares(2, g2));
    CHECK(fabs(total - 13) < 1e-12, "norm %g", total);
    double f = rv_clip_factor(total, 1.0);
    CHECK(fabs(f - 1.0 / (13 + 1e-6)) < 1e-15, "factor %.17g", f);
    rv_scale(3, g1, (float)f);
    CHECK(fabs(g1[2] - 4.0 / 13) < 1e-6, "scaled %g", g1[2]);
    CHECK(rv_clip_factor(0.5, 1.0) == 1.0, "below max: no clipping");
    CHECK(rv_clip_factor(50, 0.0) == 1.0, "max_norm 0: no clipping");
}

static void test_lr_schedule(void)
{
    rv_lr_schedule s = {.min_lr = 0, .max_lr = 1e-4, .warmup_steps = 100, .total_steps = 10000,
                        .warmup = RV_WARMUP_LOG};
    /* hand values: ln(10)/ln(100) = 1/2; (10000 - 5050)/(10000 - 100) = 1/2 */
    struct { long it; double lr; } log_cases[] = {
        {-1, 0}, {0, 0}, {9, 0.5e-4}, {99, 1e-4}, {100, 1e-4}, {5050, 0.5e-4}, {9901, 1e-4 * 99 / 9900},
        {10000, 0}, {12000, 0}};
    for (size_t i = 0; i < sizeof log_cases / sizeof *log_cases; i++) {
        double lr = rv_lr_at_iteration(&s, log_cases[i].it);
        CHECK(fabs(lr - log_cases[i].lr) < 1e-18, "log it %ld: %.17g, expected %.17g", log_cases[i].it, lr,
              log_cases[i].lr);
    }
    CHECK(fabs(rv_lr_at_iteration(&s, 1) - 1e-4 * log(2) / log(100)) < 1e-18, "log it 1");
    CHECK(rv_lr_for_update(&s, 1) == 0 && rv_lr_for_update(&s, 2) == 0, "first two updates at min_lr");
    CHECK(fabs(rv_lr_for_update(&s, 11) - 0.5e-4) < 1e-18, "update 11 uses iteration 9");
    s.warmup = RV_WARMUP_LINEAR;
    s.min_lr = 1e-5;
    CHECK(fabs(rv_lr_at_iteration(&s, 50) - (1e-5 + 0.5 * 9e-5)) < 1e-18, "linear it 50");
    CHECK(fabs(rv_lr_at_iteration(&s, 0) - 1e-5) < 1e-18, "linear it 0");
    CHECK(rv_lr_at_iteration(&s, -1) == 1e-5, "before start: min_lr");
    CHECK(fabs(rv_lr_at_iteration(&s, 10000) - 1e-5) < 1e-18, "end: min_lr");
    s.warmup = RV_WARMUP_LOG;
    s.min_lr = 0;
    s.warmup_steps = 1;   /* DeepSpeed raises it to 2 */
    CHECK(rv_lr_at_iteration(&s, 0) == 0 && fabs(rv_lr_at_iteration(&s, 1) - 1e-4) < 1e-18, "warmup 1 -> 2");
    CHECK(fabs(rv_lr_at_iteration(&s, 2) - 1e-4 * 9998.0 / 9998.0) < 1e-18, "decay after warmup 2");
}

int main(void)
{
    test_suite = "adamw";
    RUN_TEST(test_adamw_steps);
    RUN_TEST(test_clip);
    RUN_TEST(test_lr_schedule);
    TEST_EXIT();
}
