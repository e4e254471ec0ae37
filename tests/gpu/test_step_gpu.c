/* test_step_gpu.c — the Revela training step on the CUDA backend
 * (kernels/revela_step_gpu.cu) against the CPU reference step
 * (lib/revela_step_ref.c) on the tiny fixture models: the same micro-batch
 * through both, then the loss, pass A's loss, S, W, dL/dW and the gradient
 * of every LoRA A and B of both networks compared; then a few optimiser
 * steps (AdamW on the host, the adapters re-uploaded after each) and the
 * loss curves compared. The LoRA parameters are drawn at random (B != 0),
 * so every gradient is non-trivial from the first step.
 *
 * Tolerances (f32 storage; the two sides differ only in summation order):
 * loss relative <= 1e-5, each gradient tensor max |gpu - cpu| / max |cpu|
 * <= 1e-4 (tensors whose reference is below 1e-6 everywhere are compared
 * to that floor), later-step losses relative <= 1e-4. One case stores the
 * frozen matrices as bf16 on the device (the CPU runs on the same rounded
 * weights): loss 2e-3, S, W and gradients 5e-2 (measured ~4e-4 and ~3e-2;
 * the mutations this test was checked with give 0.2-1).
 *
 * Built against the CPU emulator (RV_CUDA_EMULATE, make check) the suite is
 * "step-gpu-emu"; built with nvcc it runs on a real device, or prints SKIP
 * when there is none. Run from the repository root (or with RV_ROOT). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adamw.h"
#include "cuda_ops.h"
#include "error.h"
#include "half.h"
#include "model.h"
#include "revela_step_gpu.h"
#include "revela_step_ref.h"
#include "test.h"
#include "train_model.h"

#define LOSS_TOL 1e-5
#define GRAD_TOL 1e-4
#define CURVE_TOL 1e-4
#define GRAD_FLOOR 1e-6
/* bf16 storage: the CPU reference runs on the same bf16-rounded weights;
 * what remains is the device narrowing each projection's input and output
 * gradient to bf16 (~2^-9 relative per element) */
#define BF16_LOSS_TOL 2e-3
#define BF16_GRAD_TOL 5e-2

static const char *fixture(const char *rel)
{
    static char buf[4][1024];
    static int k;
    const char *root = getenv("RV_ROOT");
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/tests/fixtures/model/%s", root ? root : ".", rel);
    return buf[k];
}

static double urand(void) { return (double)(test_rand() >> 11) / 9007199254740992.0; }

/* max |a - b| / max(max |b|, floor) */
static double rel_err(const float *a, const float *b, size_t n, double floor)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= num))
            num = d;   /* NaN wins */
        den = fabs((double)b[i]) > den ? fabs((double)b[i]) : den;
    }
    return num / (den > floor ? den : floor);
}

typedef struct {
    const char *name, *retriever, *lm;
    int B, L, steps;
    rv_step_opts opts;
    float dropout;   /* LoRA dropout p (0: none); each step is its own micro-batch */
    int bf16;        /* frozen matrices stored as bf16 on the device */
} step_case;

/* Worst errors over all cases, printed at the end. */
static double worst_loss, worst_grad, worst_curve;

/* The gradient of every adapter tensor of net n: gpu vs cpu (flat arrays). */
static double compare_grads(const rv_train_net *cpu, const rv_train_net *gpu, const char *who, const char *cname,
                            double tol)
{
    double worst = 0;
    const rv_train_base *b = cpu->base;
    for (int l = 0; l < b->n_layers; l++)
        for (int p = 0; p < RV_N_PROJ; p++) {
            size_t oa, ob;
            int in, out;
            if (!rv_train_net_tensor(cpu, l, p, &oa, &ob, &in, &out))
                continue;
            size_t na = (size_t)cpu->rank * in, nb = (size_t)out * cpu->rank;
            double ea = rel_err(gpu->grads + oa, cpu->grads + oa, na, GRAD_FLOOR);
            double eb = rel_err(gpu->grads + ob, cpu->grads + ob, nb, GRAD_FLOOR);
            CHECK(ea <= tol, "%s %s layers.%d.%s lora_A rel %.3g", cname, who, l, rv_proj_names[p], ea);
            CHECK(eb <= tol, "%s %s layers.%d.%s lora_B rel %.3g", cname, who, l, rv_proj_names[p], eb);
            worst = ea > worst ? ea : worst;
            worst = eb > worst ? eb : worst;
        }
    return worst;
}

/* Rounds every frozen matrix of a base (embedding, head, projections) to
 * bf16 in place, so the CPU reference sees the weights the device stores.
 * The base's matrices are its own fp32 copies only when widened from
 * bf16/f16 storage; an f32 checkpoint's are mapped read-only, so those are
 * copied first. */
static int round_base_bf16(rv_train_base *b)
{
    size_t nm = 2 + (size_t)b->n_layers * RV_N_PROJ;
    for (size_t i = 0; i < nm; i++) {
        float **slot;
        size_t count;
        if (i == 0)
            slot = &b->embed, count = (size_t)b->vocab * b->hidden;
        else if (i == 1) {
            if (b->lm_head == b->embed || !b->lm_head)
                continue;
            slot = &b->lm_head, count = (size_t)b->vocab * b->hidden;
        } else {
            size_t k = i - 2, p = k % RV_N_PROJ;
            const int D = b->hidden, QW = b->n_heads * b->head_dim, KW = b->n_kv_heads * b->head_dim, F = b->ffn;
            const int in[RV_N_PROJ] = {D, D, D, QW, D, D, F}, out[RV_N_PROJ] = {QW, KW, KW, D, F, F, D};
            slot = &b->proj_w[k];
            count = (size_t)in[p] * out[p];
        }
        float *copy = malloc(count * sizeof *copy);
        if (!copy)
            return rv_error_set("out of memory");
        for (size_t j = 0; j < count; j++)
            copy[j] = rv_bf16_to_f32(rv_f32_to_bf16((*slot)[j]));
        int tied = i == 0 && b->lm_head == b->embed;
        if (b->n_owned == b->cap_owned) {   /* the base frees what it owns */
            size_t cap = b->cap_owned ? 2 * b->cap_owned : 16;
            void **p = realloc(b->owned, cap * sizeof *p);
            if (!p) {
                free(copy);
                return rv_error_set("out of memory");
            }
            b->owned = p;
            b->cap_owned = cap;
        }
        b->owned[b->n_owned++] = copy;
        *slot = copy;
        if (tied)
            b->lm_head = copy;
    }
    return 0;
}

static void run_case(const step_case *sc)
{
    rv_model *rm = rv_model_load(fixture(sc->retriever)), *lmm = NULL;
    int same = strcmp(sc->retriever, sc->lm) == 0;
    if (!same)
        lmm = rv_model_load(fixture(sc->lm));
    REQUIRE(rm && (same || lmm), "%s: %s", sc->name, rv_error_get());
    rv_train_base rbase = {0}, lbase_own = {0};
    const rv_train_base *lbase = &rbase;
    rv_train_net rc = {0}, lc = {0}, rg = {0}, lg = {0};   /* cpu side, gpu side */
    rv_step_gpu *g = NULL;
    int ok = rv_train_base_init(&rbase, rm) == 0;
    if (ok && !same) {
        ok = rv_train_base_init(&lbase_own, lmm) == 0;
        lbase = &lbase_own;
    }
    /* bf16 storage: the CPU side gets the same rounded weights (before the nets point at them) */
    ok = ok && (!sc->bf16 || (round_base_bf16(&rbase) == 0 && (same || round_base_bf16(&lbase_own) == 0)));
    const int rank = 4;
    const double alpha = 8;
    ok = ok && rv_train_net_init(&rc, &rbase, rank, alpha, 0x7f, 11, 1, 0) == 0 &&
         rv_train_net_init(&lc, lbase, rank, alpha, 0x7f, 11, 2, 1) == 0 &&
         rv_train_net_init(&rg, &rbase, rank, alpha, 0x7f, 11, 1, 0) == 0 &&
         rv_train_net_init(&lg, lbase, rank, alpha, 0x7f, 11, 2, 1) == 0;
    CHECK(ok, "%s: %s", sc->name, rv_error_get());
    if (!ok)
        goto done;
    /* random adapters (B != 0), the same on both sides */
    for (size_t i = 0; i < rc.n_params; i++)
        rc.params[i] = rg.params[i] = (float)(0.2 * (urand() - 0.5));
    for (size_t i = 0; i < lc.n_params; i++)
        lc.params[i] = lg.params[i] = (float)(0.2 * (urand() - 0.5));
    g = rv_step_gpu_open(&rg.dec, &lg.dec, 0, sc->bf16 ? RV_WT_BF16 : RV_WT_F32);
    if (!g) {
        const char *why = rv_error_get();
        if (strstr(why, "no CUDA device")) {
            printf("SKIP step-gpu/%s (%s)\n", sc->name, why);
            goto done;
        }
        CHECK(0, "%s: open: %s", sc->name, why);
        goto done;
    }

    const int B = sc->B, L = sc->L;
    const size_t n = (size_t)B * L;
    int32_t *ids = malloc(3 * n * sizeof *ids);
    int *len = malloc(3 * (size_t)B * sizeof *len);
    float *s[2], *w[2], *dw[2];
    for (int k = 0; k < 2; k++) {
        s[k] = calloc((size_t)B * B, sizeof(float));
        w[k] = calloc((size_t)B * B, sizeof(float));
        dw[k] = calloc((size_t)B * B, sizeof(float));
    }
    rv_adamw_hparams ah = {1e-2, 0.9, 0.999, 1e-8, 0.01};
    for (int step = 0; step < sc->steps; step++) {
        /* a fresh group: random ids, random lengths 2..L with one chunk full */
        for (int v = 0; v < 3; v++)
            for (int b = 0; b < B; b++) {
                len[v * B + b] = b == 0 ? L : 2 + (int)(test_rand() % (unsigned)(L - 1));
                for (int t = 0; t < L; t++)
                    ids[(size_t)v * n + (size_t)b * L + t] = 3 + (int32_t)(test_rand() % 250);
            }
        rv_step_batch bt = {B, L, ids, ids + n, ids + 2 * n, len, len + B, len + 2 * B};
        memset(rc.grads, 0, rc.n_params * sizeof(float));
        memset(lc.grads, 0, lc.n_params * sizeof(float));
        memset(rg.grads, 0, rg.n_params * sizeof(float));
        memset(lg.grads, 0, lg.n_params * sizeof(float));
        rv_step_result res_c = {0}, res_g = {0};
        res_c.s = s[0], res_c.w = w[0], res_c.dw = dw[0];
        res_g.s = s[1], res_g.w = w[1], res_g.dw = dw[1];
        rv_step_dropout drop = {sc->dropout, 1234, (uint64_t)step};
        int rc_c = rv_revela_step_ref_dropout(&rc.dec, &lc.dec, &bt, &sc->opts, &drop, rc.layer_grads,
                                              lc.layer_grads, &res_c);
        CHECK(rc_c == 0, "%s: cpu step: %s", sc->name, rv_error_get());
        int rc_g = rv_step_gpu_step(g, &bt, &sc->opts, &drop, &res_g) == 0 &&
                           rv_step_gpu_take_grads(g, rg.layer_grads, lg.layer_grads) == 0
                       ? 0
                       : -1;
        CHECK(rc_g == 0, "%s: gpu step: %s", sc->name, rv_error_get());
        if (rc_c != 0 || rc_g != 0)
            break;
        double el = fabs(res_g.loss - res_c.loss) / fabs(res_c.loss);
        double ep = fabs(res_g.loss_plain - res_c.loss_plain) / fabs(res_c.loss_plain);
        CHECK(res_g.n_targets == res_c.n_targets, "%s: n_targets %zu vs %zu", sc->name, res_g.n_targets,
              res_c.n_targets);
        if (step == 0) {
            double es = rel_err(s[1], s[0], (size_t)B * B, 1e-30), ew = rel_err(w[1], w[0], (size_t)B * B, 1e-30);
            double edw = rel_err(dw[1], dw[0], (size_t)B * B, GRAD_FLOOR);
            const double ltol = sc->bf16 ? BF16_LOSS_TOL : LOSS_TOL, gtol = sc->bf16 ? BF16_GRAD_TOL : GRAD_TOL;
            double er = compare_grads(&rc, &rg, "retriever", sc->name, gtol);
            double elm = compare_grads(&lc, &lg, "lm", sc->name, gtol);
            CHECK(el <= ltol && ep <= ltol, "%s: loss %.9g vs %.9g (rel %.3g), pass A rel %.3g", sc->name,
                  res_g.loss, res_c.loss, el, ep);
            CHECK(es <= (sc->bf16 ? gtol : ltol) && ew <= gtol && edw <= gtol,
                  "%s: S rel %.3g, W rel %.3g, dW rel %.3g", sc->name, es, ew, edw);
            printf("  %s: loss %.8f (cpu %.8f) rel %.2e, pass A rel %.2e, S %.2e W %.2e dW %.2e, grads "
                   "retriever %.2e lm %.2e\n",
                   sc->name, res_g.loss, res_c.loss, el, ep, es, ew, edw, er, elm);
            if (!sc->bf16) {
                worst_loss = el > worst_loss ? el : worst_loss;
                worst_loss = ep > worst_loss ? ep : worst_loss;
                worst_grad = er > worst_grad ? er : worst_grad;
                worst_grad = elm > worst_grad ? elm : worst_grad;
            }
        } else {
            CHECK(el <= (sc->bf16 ? BF16_LOSS_TOL : CURVE_TOL), "%s: step %d loss %.9g vs %.9g (rel %.3g)", sc->name,
                  step + 1, res_g.loss, res_c.loss, el);
            printf("  %s: step %d loss %.8f (cpu %.8f) rel %.2e\n", sc->name, step + 1, res_g.loss, res_c.loss, el);
            if (!sc->bf16)
                worst_curve = el > worst_curve ? el : worst_curve;
        }
        /* the optimiser on the host, both sides, then the new adapters up */
        long t = step + 1;
        if (rv_adamw_update(rc.n_params, rc.params, rc.grads, rc.adam_m, rc.adam_v, t, &ah) != 0 ||
            rv_adamw_update(lc.n_params, lc.params, lc.grads, lc.adam_m, lc.adam_v, t, &ah) != 0 ||
            rv_adamw_update(rg.n_params, rg.params, rg.grads, rg.adam_m, rg.adam_v, t, &ah) != 0 ||
            rv_adamw_update(lg.n_params, lg.params, lg.grads, lg.adam_m, lg.adam_v, t, &ah) != 0 ||
            rv_step_gpu_load_lora(g) != 0) {
            CHECK(0, "%s: optimiser: %s", sc->name, rv_error_get());
            break;
        }
    }
    free(ids);
    free(len);
    for (int k = 0; k < 2; k++) {
        free(s[k]);
        free(w[k]);
        free(dw[k]);
    }
done:
    rv_step_gpu_close(g);
    rv_train_net_free(&rc);
    rv_train_net_free(&lc);
    rv_train_net_free(&rg);
    rv_train_net_free(&lg);
    rv_train_base_free(&rbase);
    if (!same)
        rv_train_base_free(&lbase_own);
    rv_model_free(rm);
    rv_model_free(lmm);
}

/* One LLaMA checkpoint as both networks (one upload), V-norm on, fp32. */
static void shared_llama_vnorm(void)
{
    step_case sc = {.name = "shared_llama_vnorm", .retriever = "llama_tied", .lm = "llama_tied", .B = 4, .L = 8,
                    .steps = 2};
    sc.opts.tau = 0.5;
    sc.opts.v_norm = 1;
    sc.opts.v_norm_eps = 1e-6f;
    sc.opts.similarity = RV_SIM_FP32;
    run_case(&sc);
}

/* Qwen2 retriever (q/k/v biases, one KV head) + LLaMA LM, V-norm off, the
 * dual loss, exact skipping of zero weights, tau 0.1. */
static void qwen_llama_dual(void)
{
    step_case sc = {.name = "qwen_llama_dual", .retriever = "qwen2", .lm = "llama_tied", .B = 3, .L = 8, .steps = 2};
    sc.opts.tau = 0.1;
    sc.opts.v_norm = 0;
    sc.opts.v_norm_eps = 1e-6f;
    sc.opts.similarity = RV_SIM_FP32;
    sc.opts.dual_loss = 1;
    sc.opts.skip_zero_weights = 1;
    run_case(&sc);
}

/* The bf16 emulation of the similarity (S, S/tau, W rounded to bf16). */
static void llama_qwen_simbf16(void)
{
    step_case sc = {.name = "llama_qwen_simbf16", .retriever = "llama_tied", .lm = "qwen2", .B = 3, .L = 6,
                    .steps = 1};
    sc.opts.tau = 0.2;
    sc.opts.v_norm = 1;
    sc.opts.v_norm_eps = 1e-6f;
    sc.opts.similarity = RV_SIM_BF16;
    run_case(&sc);
}

/* LoRA dropout 0.1 (rv-train's default): the device draws the CPU step's
 * masks from the same hash, so the results still agree to rounding. */
static void shared_llama_dropout(void)
{
    step_case sc = {.name = "shared_llama_dropout", .retriever = "llama_tied", .lm = "llama_tied", .B = 3, .L = 8,
                    .steps = 2, .dropout = 0.1f};
    sc.opts.tau = 0.5;
    sc.opts.v_norm = 1;
    sc.opts.v_norm_eps = 1e-6f;
    sc.opts.similarity = RV_SIM_FP32;
    sc.opts.skip_zero_weights = 1;
    run_case(&sc);
}

/* bf16 storage of the frozen matrices (against the CPU step on the same
 * bf16-rounded weights), Qwen2 retriever with biases, dropout on. */
static void qwen_llama_bf16(void)
{
    step_case sc = {.name = "qwen_llama_bf16", .retriever = "qwen2", .lm = "llama_tied", .B = 3, .L = 7, .steps = 1,
                    .dropout = 0.1f, .bf16 = 1};
    sc.opts.tau = 0.5;
    sc.opts.v_norm = 1;
    sc.opts.v_norm_eps = 1e-6f;
    sc.opts.similarity = RV_SIM_FP32;
    run_case(&sc);
}

/* What the device step does not support is refused with a message, not
 * computed differently. */
static void refuses_unsupported(void)
{
    rv_model *m = rv_model_load(fixture("llama_tied"));
    REQUIRE(m, "%s", rv_error_get());
    rv_train_base base = {0};
    rv_train_net r = {0}, l = {0};
    rv_step_gpu *g = NULL;
    if (rv_train_base_init(&base, m) != 0 || rv_train_net_init(&r, &base, 2, 4, 0x7f, 3, 1, 0) != 0 ||
        rv_train_net_init(&l, &base, 2, 4, 0x7f, 3, 2, 1) != 0) {
        CHECK(0, "%s", rv_error_get());
        goto done;
    }
    if (!(g = rv_step_gpu_open(&r.dec, &l.dec, 0, RV_WT_F32))) {
        if (strstr(rv_error_get(), "no CUDA device"))
            printf("SKIP step-gpu/refuses_unsupported (%s)\n", rv_error_get());
        else
            CHECK(0, "open: %s", rv_error_get());
        goto done;
    }
    int32_t ids[8] = {5, 6, 7, 8, 9, 10, 11, 12};
    int len[2] = {4, 4};
    rv_step_batch bt = {2, 4, ids, ids, ids, len, len, len};
    rv_step_opts o = {0};
    o.tau = 0.5;
    rv_step_dropout d = {1.0f, 1, 0};
    rv_step_result res = {0};
    CHECK(rv_step_gpu_step(g, &bt, &o, &d, &res) == -1 && strstr(rv_error_get(), "dropout"),
          "dropout 1 not refused: %s", rv_error_get());
    o.recompute = 1;
    CHECK(rv_step_gpu_step(g, &bt, &o, NULL, &res) == -1 && strstr(rv_error_get(), "recompute"),
          "recompute not refused: %s", rv_error_get());
    o.recompute = 0;
    ids[3] = 100000;
    CHECK(rv_step_gpu_step(g, &bt, &o, NULL, &res) == -1 && strstr(rv_error_get(), "vocabulary"),
          "bad id not refused: %s", rv_error_get());
done:
    rv_step_gpu_close(g);
    rv_train_net_free(&r);
    rv_train_net_free(&l);
    rv_train_base_free(&base);
    rv_model_free(m);
}

int main(void)
{
#ifdef RV_CUDA_EMULATE
    test_suite = "step-gpu-emu";
#else
    test_suite = "step-gpu";
#endif
    const char *why = "";
    if (rv_cuda_device_count(&why) == 0) {   /* a real build on a machine without a GPU: nothing passes */
        printf("SKIP %s (no CUDA device: %s)\n", test_suite, why);
        return 0;
    }
    RUN_TEST(shared_llama_vnorm);
    RUN_TEST(qwen_llama_dual);
    RUN_TEST(llama_qwen_simbf16);
    RUN_TEST(shared_llama_dropout);
    RUN_TEST(qwen_llama_bf16);
    RUN_TEST(refuses_unsupported);
    printf("  worst: loss rel %.2e (tol %.0e), gradient rel %.2e (tol %.0e), later-step loss rel %.2e (tol %.0e)\n",
           worst_loss, LOSS_TOL, worst_grad, GRAD_TOL, worst_curve, CURVE_TOL);
    TEST_EXIT();
}
