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
 * weights, in fp32 throughout; the device runs every projection product,
 * frozen and adapter, and both attentions with bf16 operands): loss 2e-3,
 * S, W and gradients 5e-2, gradients norm-wise (||gpu - cpu|| / ||cpu|| per
 * tensor; measured on the emulator with everything bf16, the attentions on
 * the tensor-core kernels, gate/up kept in bf16: loss 8.2e-4, step 2
 * 4.2e-4, S 1.2e-2, gradients 3.7e-2 retriever, 2.0e-2 LM; with fp32
 * attention operands and adapter products it was 5.1e-4, 5.2e-5, 6.8e-3
 * and 3.1e-2 element-wise; the mutations this test was checked with give
 * 0.2-1). That
 * the adapter products read bf16 copies, refreshed after every update, is
 * checked exactly by bf16_adapters. curve20 runs 20 optimiser steps in
 * f32 (every loss within 1e-4 of the CPU's; measured 8.5e-8) and in bf16
 * (within 1e-2; measured 2.7e-3: the bf16 rounding of the updates makes
 * the curves drift).
 *
 * Built against the CPU emulator (RV_CUDA_EMULATE, make check) the suite is
 * "step-gpu-emu"; built with nvcc it runs on a real device, or prints SKIP
 * when there is none. Run from the repository root (or with RV_ROOT).
 *
 * Data parallelism (rv_step_gpu_set_comm, issue #8), on one tiny fixture
 * (llama_tied, 2 layers, as both nets; B = 3, L = 2; ~10 gradient buckets):
 * world 1 through rv_comm_identity is bit-identical to no communicator; 2
 * and 3 ranks as threads over the fake group of lib/comm_local.c (each
 * with its own handle; rank r takes micro-batches r, r + N, ...; in world
 * 3 one rank has none) end with bit-identical gradients on every rank,
 * equal to 1e-6 relative to the same terms summed in another order (world
 * 3: one handle running every micro-batch; world 2: the host sum of the
 * per-micro-batch gradients; measured <= 1e-7) and bit-identical to
 * the rank-order sum of each rank's share computed on a handle without a
 * communicator (per-micro-batch gradients G_k where a share is one
 * micro-batch: the device accumulates from zero exactly as G_k's run does;
 * the fake sums in rank order); every bucket is issued during the final
 * micro-batch, the first before the retriever's backward has written
 * anything; allreduce_host sums. The threaded cases need host pointers and
 * run on the emulator only (SKIP with a real device).
 *
 * Recompute (opts->recompute, issue #8's memory): the same micro-batches
 * through two handles on the same adapters, one keeping every activation,
 * one recomputing; losses, S, W, dL/dW, the embeddings and every adapter
 * gradient must be bit-identical on the emulator (the recomputed forward is
 * the same ops on the same data) and within 1e-6 relative on a real GPU
 * (the kernels use no atomics and should be bitwise too; the tolerance only
 * allows for a GEMM library choosing another algorithm for another buffer;
 * whether it was bitwise is printed), and the recomputing handle must hold
 * fewer activation bytes. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adamw.h"
#include "comm.h"
#include "cuda_ops.h"
#include "error.h"
#include "half.h"
#include "model.h"
#include "revela_step_gpu.h"
#include "revela_step_ref.h"
#include "test.h"
#include "test_fixture.h"   /* fixture() */
#include "train_model.h"

#define LOSS_TOL 1e-5
#define GRAD_TOL 1e-4
#define CURVE_TOL 1e-4
#define GRAD_FLOOR 1e-6
/* bf16 storage: the CPU reference runs on the same bf16-rounded weights;
 * what remains is the device narrowing each projection's input and output
 * gradient, the adapters, x A^T and (scale dy B), and the attention
 * operands (q, k, v, the output and its gradient; P and dS inside the
 * tensor-core kernels) to bf16 (~2^-9 relative per element). Gradients are
 * compared norm-wise (rel_l2) there: measured 3.7e-2 (retriever) and
 * 2.0e-2 (LM) on qwen_llama_bf16, where the similarities S already differ
 * by 1e-2 after the bf16 forward and tau amplifies that in dS. */
#define BF16_LOSS_TOL 2e-3
#define BF16_GRAD_TOL 5e-2
/* later steps with bf16 operands: the two sides' updates differ by that
 * rounding, and AdamW's first steps (~lr * sign) turn it into parameter
 * differences that the losses show; measured up to 2.7e-3 over curve20's
 * 20 steps at lr 1e-2 (the f32 curve: 8.5e-8) */
#define BF16_CURVE_TOL 1e-2

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

/* ||a - b|| / max(||b||, floor): the norm-wise error of the kernel tests
 * (tests/gpu/test_gpu_ops.c), for bf16 runs, where a single element can
 * carry the rounding of every narrowed operand on its path while the
 * tensor as a whole agrees. */
static double rel_l2(const float *a, const float *b, size_t n, double floor)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    if (!(num == num))
        return num;   /* NaN fails every check */
    den = sqrt(den);
    return sqrt(num) / (den > floor ? den : floor);
}

/* Worst errors over all cases, printed at the end. */
static double worst_loss, worst_grad, worst_curve;

/* The gradient of every adapter tensor of net n: gpu vs cpu (flat arrays). */
static double compare_grads(const rv_train_net *cpu, const rv_train_net *gpu, const char *who, const char *cname,
                            double tol, int bf16)
{
    double (*rel)(const float *, const float *, size_t, double) = bf16 ? rel_l2 : rel_err;
    double worst = 0;
    const rv_train_base *b = cpu->base;
    for (int l = 0; l < b->n_layers; l++)
        for (int p = 0; p < RV_N_PROJ; p++) {
            size_t oa, ob;
            int in, out;
            if (!rv_train_net_tensor(cpu, l, p, &oa, &ob, &in, &out))
                continue;
            size_t na = (size_t)cpu->rank * in, nb = (size_t)out * cpu->rank;
            double ea = rel(gpu->grads + oa, cpu->grads + oa, na, GRAD_FLOOR);
            double eb = rel(gpu->grads + ob, cpu->grads + ob, nb, GRAD_FLOOR);
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

/* A fresh random group for the three views: ids[3][B][L] (3..252), lengths
 * len[3][B] in 2..L with chunk 0 full. */
static void random_group(int32_t *ids, int *len, int B, int L)
{
    const size_t n = (size_t)B * L;
    for (int v = 0; v < 3; v++)
        for (int b = 0; b < B; b++) {
            len[v * B + b] = b == 0 ? L : 2 + (int)(test_rand() % (unsigned)(L - 1));
            for (int t = 0; t < L; t++)
                ids[(size_t)v * n + (size_t)b * L + t] = 3 + (int32_t)(test_rand() % 250);
        }
}

/* Two fixture models as retriever and LM (one model when the names agree)
 * and two (retriever, LM) pairs of nets on them with the same random
 * adapters (B != 0): pair 0 for one side of a comparison, pair 1 for the
 * other. bf16: the frozen weights rounded to bf16 first (what the device
 * stores), so both sides compute with the same weights. */
typedef struct {
    rv_model *rm, *lmm;
    rv_train_base rbase, lbase_own;
    const rv_train_base *lbase;
    int same;
    rv_train_net r[2], l[2];
} net_pairs;

static int net_pairs_open(net_pairs *f, const char *retriever, const char *lm, int bf16)
{
    memset(f, 0, sizeof *f);
    f->lbase = &f->rbase;
    f->same = strcmp(retriever, lm) == 0;
    if (!(f->rm = rv_model_load(fixture(retriever))) || (!f->same && !(f->lmm = rv_model_load(fixture(lm)))) ||
        rv_train_base_init(&f->rbase, f->rm) != 0)
        return -1;
    if (!f->same) {
        if (rv_train_base_init(&f->lbase_own, f->lmm) != 0)
            return -1;
        f->lbase = &f->lbase_own;
    }
    /* before the nets point at the weights */
    if (bf16 && (round_base_bf16(&f->rbase) != 0 || (!f->same && round_base_bf16(&f->lbase_own) != 0)))
        return -1;
    for (int k = 0; k < 2; k++)
        if (rv_train_net_init(&f->r[k], &f->rbase, 4, 8, 0x7f, 11, 1, 0) != 0 ||
            rv_train_net_init(&f->l[k], f->lbase, 4, 8, 0x7f, 11, 2, 1) != 0)
            return -1;
    for (size_t i = 0; i < f->r[0].n_params; i++)
        f->r[0].params[i] = f->r[1].params[i] = (float)(0.2 * (urand() - 0.5));
    for (size_t i = 0; i < f->l[0].n_params; i++)
        f->l[0].params[i] = f->l[1].params[i] = (float)(0.2 * (urand() - 0.5));
    return 0;
}

static void net_pairs_close(net_pairs *f)
{
    for (int k = 0; k < 2; k++) {
        rv_train_net_free(&f->r[k]);
        rv_train_net_free(&f->l[k]);
    }
    rv_train_base_free(&f->rbase);
    if (!f->same)
        rv_train_base_free(&f->lbase_own);
    rv_model_free(f->rm);
    rv_model_free(f->lmm);
}

static void run_case(const step_case *sc)
{
    net_pairs f;
    rv_step_gpu *g = NULL;
    /* pair 0 on the CPU, pair 1 on the device */
    rv_train_net *rc = &f.r[0], *lc = &f.l[0], *rg = &f.r[1], *lg = &f.l[1];
    int ok = net_pairs_open(&f, sc->retriever, sc->lm, sc->bf16) == 0;
    CHECK(ok, "%s: %s", sc->name, rv_error_get());
    if (!ok)
        goto done;
    g = rv_step_gpu_open(&rg->dec, &lg->dec, 0, sc->bf16 ? RV_WT_BF16 : RV_WT_F32);
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
        random_group(ids, len, B, L);
        rv_step_batch bt = {B, L, ids, ids + n, ids + 2 * n, len, len + B, len + 2 * B};
        memset(rc->grads, 0, rc->n_params * sizeof(float));
        memset(lc->grads, 0, lc->n_params * sizeof(float));
        memset(rg->grads, 0, rg->n_params * sizeof(float));
        memset(lg->grads, 0, lg->n_params * sizeof(float));
        rv_step_result res_c = {0}, res_g = {0};
        res_c.s = s[0], res_c.w = w[0], res_c.dw = dw[0];
        res_g.s = s[1], res_g.w = w[1], res_g.dw = dw[1];
        rv_step_dropout drop = {sc->dropout, 1234, (uint64_t)step};
        rv_cuda_gemm_stats gs0, gs1;
        rv_cuda_gemm_get_stats(rv_step_gpu_context(g), &gs0);
        int rc_c = rv_revela_step_ref_dropout(&rc->dec, &lc->dec, &bt, &sc->opts, &drop, rc->layer_grads,
                                              lc->layer_grads, &res_c);
        CHECK(rc_c == 0, "%s: cpu step: %s", sc->name, rv_error_get());
        int rc_g = rv_step_gpu_step(g, &bt, &sc->opts, &drop, &res_g) == 0 &&
                           rv_step_gpu_take_grads(g, rg->layer_grads, lg->layer_grads) == 0
                       ? 0
                       : -1;
        CHECK(rc_g == 0, "%s: gpu step: %s", sc->name, rv_error_get());
        if (rc_c != 0 || rc_g != 0)
            break;
        /* the activation bytes the step took, as planned without a device */
        if (step == 0) {
            size_t planned = 0;
            int prc = rv_step_gpu_activation_bytes(&rg->dec, &lg->dec, sc->bf16 ? RV_WT_BF16 : RV_WT_F32, B,
                                                   (size_t)B * L, sc->opts.recompute, &planned);
            CHECK(prc == 0 && planned == res_g.activation_bytes && planned > 0,
                  "%s: planned activation bytes %zu (rc %d), the step took %zu", sc->name, planned, prc,
                  res_g.activation_bytes);
        }
        /* a later step reuses every matrix-product plan (building one is a
         * cuBLASLt heuristic query, ~100x a small product) */
        rv_cuda_gemm_get_stats(rv_step_gpu_context(g), &gs1);
        if (step > 0)
            CHECK(gs1.plans_built == gs0.plans_built && gs1.evictions == gs0.evictions,
                  "%s: step %d built %llu matrix-product plans (evicted %llu)", sc->name, step + 1,
                  gs1.plans_built - gs0.plans_built, gs1.evictions - gs0.evictions);
        if (step == 0)
            printf("  %s: %llu matrix products a step, %llu plans, %llu on the fallback kernel\n", sc->name,
                   gs1.calls - gs0.calls, gs1.plans_built - gs0.plans_built, gs1.fallback_calls - gs0.fallback_calls);
        double el = fabs(res_g.loss - res_c.loss) / fabs(res_c.loss);
        double ep = fabs(res_g.loss_plain - res_c.loss_plain) / fabs(res_c.loss_plain);
        CHECK(res_g.n_targets == res_c.n_targets, "%s: n_targets %zu vs %zu", sc->name, res_g.n_targets,
              res_c.n_targets);
        if (step == 0) {
            double es = rel_err(s[1], s[0], (size_t)B * B, 1e-30), ew = rel_err(w[1], w[0], (size_t)B * B, 1e-30);
            double edw = rel_err(dw[1], dw[0], (size_t)B * B, GRAD_FLOOR);
            const double ltol = sc->bf16 ? BF16_LOSS_TOL : LOSS_TOL, gtol = sc->bf16 ? BF16_GRAD_TOL : GRAD_TOL;
            double er = compare_grads(rc, rg, "retriever", sc->name, gtol, sc->bf16);
            double elm = compare_grads(lc, lg, "lm", sc->name, gtol, sc->bf16);
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
            CHECK(el <= (sc->bf16 ? BF16_CURVE_TOL : CURVE_TOL), "%s: step %d loss %.9g vs %.9g (rel %.3g)", sc->name,
                  step + 1, res_g.loss, res_c.loss, el);
            printf("  %s: step %d loss %.8f (cpu %.8f) rel %.2e\n", sc->name, step + 1, res_g.loss, res_c.loss, el);
            if (!sc->bf16)
                worst_curve = el > worst_curve ? el : worst_curve;
        }
        /* the optimiser on the host, both sides, then the new adapters up */
        long t = step + 1;
        if (rv_adamw_update(rc->n_params, rc->params, rc->grads, rc->adam_m, rc->adam_v, t, &ah) != 0 ||
            rv_adamw_update(lc->n_params, lc->params, lc->grads, lc->adam_m, lc->adam_v, t, &ah) != 0 ||
            rv_adamw_update(rg->n_params, rg->params, rg->grads, rg->adam_m, rg->adam_v, t, &ah) != 0 ||
            rv_adamw_update(lg->n_params, lg->params, lg->grads, lg->adam_m, lg->adam_v, t, &ah) != 0 ||
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
    net_pairs_close(&f);
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

/* LLaMA with attention_bias (q/k/v and o biases) and an untied LM head,
 * dropout on: the o projection's bias takes the residual projection's
 * scratch path (proj_forward acc). f32, then bf16 storage. */
static void untied_llama_bias(void)
{
    for (int bf16 = 0; bf16 <= 1; bf16++) {
        step_case sc = {.name = bf16 ? "untied_llama_bias_bf16" : "untied_llama_bias", .retriever = "llama_untied",
                        .lm = "llama_untied", .B = 3, .L = 7, .steps = 2, .dropout = 0.1f, .bf16 = bf16};
        sc.opts.tau = 0.5;
        sc.opts.v_norm = 1;
        sc.opts.v_norm_eps = 1e-6f;
        sc.opts.similarity = RV_SIM_FP32;
        run_case(&sc);
    }
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
 * bf16-rounded weights), Qwen2 retriever with biases, dropout on; a second
 * step after the host AdamW (load_lora refreshes the bf16 adapter copies). */
static void qwen_llama_bf16(void)
{
    step_case sc = {.name = "qwen_llama_bf16", .retriever = "qwen2", .lm = "llama_tied", .B = 3, .L = 7, .steps = 2,
                    .dropout = 0.1f, .bf16 = 1};
    sc.opts.tau = 0.5;
    sc.opts.v_norm = 1;
    sc.opts.v_norm_eps = 1e-6f;
    sc.opts.similarity = RV_SIM_FP32;
    run_case(&sc);
}

/* The curve check: 20 optimiser steps (host AdamW on both sides,
 * the device's adapters refreshed after each), every step's loss within
 * CURVE_TOL of the CPU's in f32 (measured 8.5e-8); with bf16 operands
 * within BF16_CURVE_TOL. */
static void curve20(void)
{
    step_case sc = {.name = "curve20", .retriever = "llama_tied", .lm = "llama_tied", .B = 3, .L = 6, .steps = 20};
    sc.opts.tau = 0.5;
    sc.opts.v_norm = 1;
    sc.opts.v_norm_eps = 1e-6f;
    sc.opts.similarity = RV_SIM_FP32;
    run_case(&sc);
    sc.name = "curve20_bf16";
    sc.bf16 = 1;
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

/* ================================================================ recompute */
#define RC_TOL 1e-6   /* real GPU only; the emulator must be bitwise */

typedef struct {
    const char *name, *retriever, *lm;
    int B, L, micro;      /* micro-batches, each one's gradients taken and compared */
    float dropout;
    int dual_loss, bf16;
    int switch_back;      /* the recomputing handle runs its last micro-batch without recompute */
} rc_case;

/* a vs b: *bitwise is cleared unless they are bit-identical; returns the
 * largest |a - b| relative to b's largest value */
static double rc_cmp(const float *a, const float *b, size_t n, int *bitwise)
{
    if (memcmp(a, b, n * sizeof *a) != 0)
        *bitwise = 0;
    return rel_err(a, b, n, 1e-30);
}

static void recompute_case(const rc_case *k)
{
    net_pairs f;
    /* pair 0 on the plain handle, pair 1 on the recomputing one */
    rv_train_net *rp = &f.r[0], *lp = &f.l[0], *rr = &f.r[1], *lr = &f.l[1];
    rv_step_gpu *gp = NULL, *gr = NULL;
    int32_t *ids = NULL;
    int *len = NULL;
    float *buf[2] = {NULL, NULL};
    int ok = net_pairs_open(&f, k->retriever, k->lm, 0) == 0;
    CHECK(ok, "%s: %s", k->name, rv_error_get());
    if (!ok)
        goto done;
    const rv_wtype wt = k->bf16 ? RV_WT_BF16 : RV_WT_F32;
    if (!(gp = rv_step_gpu_open(&rp->dec, &lp->dec, 0, wt)) || !(gr = rv_step_gpu_open(&rr->dec, &lr->dec, 0, wt))) {
        CHECK(0, "%s: open: %s", k->name, rv_error_get());
        goto done;
    }
    const int B = k->B, L = k->L;
    const size_t n = (size_t)B * L, BB = (size_t)B * B, DR = (size_t)f.rbase.hidden;
    const size_t per = 4 * BB + 2 * (size_t)B * DR;   /* S, W, dW, dS, q_emb, p_emb */
    ids = malloc(3 * n * sizeof *ids);
    len = malloc(3 * (size_t)B * sizeof *len);
    buf[0] = calloc(per, sizeof(float));
    buf[1] = calloc(per, sizeof(float));
    if (!ids || !len || !buf[0] || !buf[1]) {
        CHECK(0, "%s: out of memory", k->name);
        goto done;
    }
    rv_step_opts o = {0};
    o.tau = 0.5;
    o.v_norm = 1;
    o.v_norm_eps = 1e-6f;
    o.similarity = RV_SIM_FP32;
    o.skip_zero_weights = 1;
    o.dual_loss = k->dual_loss;
#ifdef RV_CUDA_EMULATE
    const int emulated = 1;
#else
    const int emulated = 0;
#endif
    int bitwise = 1;
    double worst = 0, gmax = 0;
    size_t bytes[2] = {0, 0};
    for (int mb = 0; mb < k->micro; mb++) {
        random_group(ids, len, B, L);
        rv_step_batch bt = {B, L, ids, ids + n, ids + 2 * n, len, len + B, len + 2 * B};
        rv_step_dropout drop = {k->dropout, 77, (uint64_t)mb};
        rv_step_result res[2];
        for (int h = 0; h < 2; h++) {
            float *q = buf[h];
            memset(&res[h], 0, sizeof res[h]);
            res[h].s = q, res[h].w = q + BB, res[h].dw = q + 2 * BB, res[h].ds = q + 3 * BB;
            res[h].q_emb = q + 4 * BB, res[h].p_emb = q + 4 * BB + (size_t)B * DR;
        }
        rv_step_opts orc = o;
        orc.recompute = !(k->switch_back && mb == k->micro - 1);
        memset(rp->grads, 0, rp->n_params * sizeof(float));
        memset(lp->grads, 0, lp->n_params * sizeof(float));
        memset(rr->grads, 0, rr->n_params * sizeof(float));
        memset(lr->grads, 0, lr->n_params * sizeof(float));
        if (rv_step_gpu_step(gp, &bt, &o, &drop, &res[0]) != 0 ||
            rv_step_gpu_take_grads(gp, rp->layer_grads, lp->layer_grads) != 0 ||
            rv_step_gpu_step(gr, &bt, &orc, &drop, &res[1]) != 0 ||
            rv_step_gpu_take_grads(gr, rr->layer_grads, lr->layer_grads) != 0) {
            CHECK(0, "%s: micro-batch %d: %s", k->name, mb, rv_error_get());
            goto done;
        }
        if (orc.recompute) {
            bytes[0] = res[0].activation_bytes;
            bytes[1] = res[1].activation_bytes;
        } else {   /* back to keeping everything: the full layout again */
            CHECK(res[1].activation_bytes == res[0].activation_bytes,
                  "%s: micro-batch %d without recompute holds %zu activation bytes, the plain handle %zu", k->name, mb,
                  res[1].activation_bytes, res[0].activation_bytes);
        }
        if (memcmp(&res[1].loss, &res[0].loss, sizeof(double)) != 0 ||
            memcmp(&res[1].loss_plain, &res[0].loss_plain, sizeof(double)) != 0)
            bitwise = 0;
        double el = fabs(res[1].loss - res[0].loss) / fabs(res[0].loss);
        double ep = fabs(res[1].loss_plain - res[0].loss_plain) / fabs(res[0].loss_plain);
        double ev = rc_cmp(buf[1], buf[0], per, &bitwise);
        double egr = rc_cmp(rr->grads, rp->grads, rp->n_params, &bitwise);
        double egl = rc_cmp(lr->grads, lp->grads, lp->n_params, &bitwise);
        CHECK(el <= RC_TOL && ep <= RC_TOL, "%s: micro-batch %d: loss %.9g vs %.9g, pass A %.9g vs %.9g", k->name, mb,
              res[1].loss, res[0].loss, res[1].loss_plain, res[0].loss_plain);
        CHECK(ev <= RC_TOL && egr <= RC_TOL && egl <= RC_TOL,
              "%s: micro-batch %d: S/W/dW/dS/embeddings rel %.3g, gradients retriever %.3g lm %.3g", k->name, mb, ev,
              egr, egl);
        double e[5] = {el, ep, ev, egr, egl};
        for (int i = 0; i < 5; i++)
            worst = e[i] > worst || e[i] != e[i] ? e[i] : worst;
        for (size_t i = 0; i < rp->n_params; i++)
            gmax = fabs(rp->grads[i]) > gmax ? fabs(rp->grads[i]) : gmax;
        for (size_t i = 0; i < lp->n_params; i++)
            gmax = fabs(lp->grads[i]) > gmax ? fabs(lp->grads[i]) : gmax;
    }
    /* the comparison proves something only if the gradients are not zero */
    CHECK(gmax > 1e-6, "%s: the gradients are (nearly) zero (max %g)", k->name, gmax);
    if (emulated)
        CHECK(bitwise, "%s: recompute is not bit-identical on the emulator (worst rel %.3g)", k->name, worst);
    CHECK(bytes[1] < bytes[0], "%s: activation bytes with recompute %zu, without %zu", k->name, bytes[1], bytes[0]);
    for (int r = 0; r < 2; r++) {   /* both layouts as planned without a device */
        size_t planned = 0;
        int prc = rv_step_gpu_activation_bytes(&rp->dec, &lp->dec, wt, B, n, r, &planned);
        CHECK(prc == 0 && planned == bytes[r], "%s: planned activation bytes %s recompute %zu (rc %d), the step took %zu",
              k->name, r ? "with" : "without", planned, prc, bytes[r]);
    }
    printf("  %s: %d micro-batch(es)%s, recompute vs not: %s (worst rel %.2e); activation bytes %zu with, %zu "
           "without (%.0f%%)\n",
           k->name, k->micro, k->switch_back ? " (the last without recompute)" : "",
           bitwise ? "bit-identical" : "not bitwise", worst, bytes[1], bytes[0],
           100.0 * (double)bytes[1] / (double)(bytes[0] ? bytes[0] : 1));
done:
    free(ids);
    free(len);
    free(buf[0]);
    free(buf[1]);
    rv_step_gpu_close(gp);
    rv_step_gpu_close(gr);
    net_pairs_close(&f);
}

/* Qwen2 retriever (one KV head, biases) + LLaMA LM (two KV heads): the
 * shared activation set takes the larger of each size; dropout and the dual
 * loss on. The recomputing handle's second micro-batch runs without
 * recompute: its activations are laid out again, in full. */
static void recompute_dual_dropout(void)
{
    rc_case k = {.name = "recompute_dual_dropout", .retriever = "qwen2", .lm = "llama_tied", .B = 3, .L = 3,
                 .micro = 2, .dropout = 0.1f, .dual_loss = 1, .switch_back = 1};
    recompute_case(&k);
}

/* One LLaMA checkpoint as both nets (one upload), bf16 storage (the
 * narrowing scratch is shared with the recomputed forward), dropout on. */
static void recompute_bf16(void)
{
    rc_case k = {.name = "recompute_bf16", .retriever = "llama_tied", .lm = "llama_tied", .B = 3, .L = 3,
                 .micro = 1, .dropout = 0.1f, .bf16 = 1};
    recompute_case(&k);
}

/* ================================================================ data parallelism */
/* One fixture and one set of references (all from handles without a
 * communicator) serve every case; the emulator is slow (a micro-batch of
 * this size takes ~1-2 s), so each micro-batch is run as few times as the
 * checks allow and the references are computed by two threads at once. */
#define DP_K 3            /* micro-batches of the optimiser step (world 3: the first 2) */
#define DP_B 3            /* >= 3: with 2 chunks W's softmax is over one entry and the retriever gets no gradient */
#define DP_L 2
#define DP_BUCKET_BYTES (8 << 10)   /* the fixture has ~70 KiB of gradients: about 10 buckets */
#define DP_SUM_TOL 1e-6   /* all-reduced vs one handle: the same terms summed in another order */

typedef struct {
    rv_model *m;
    rv_train_base base;
    rv_train_net r, l;                 /* the decoders every handle reads; their grads unused */
    int32_t ids[DP_K][3 * DP_B * DP_L];
    int len[DP_K][3 * DP_B];
    rv_step_opts opts;
    size_t total_floats;               /* device accumulator floats (each tensor padded to 4), both nets */
    size_t retr_floats;                /* the retriever's part: the lowest addresses */
} dp_fixture;

/* Host gradients of both nets in the nets' flat layouts, owned here. */
typedef struct {
    float *r, *l;
    rv_step_layer_grads *rv, *lv;
} dp_grads;

/* The references: G_k = micro-batch k alone; share02 = micro-batches 0
 * and 2 on one handle (rank 0's share in world 2, accumulated as its
 * device does; also world 3's single-handle sum, whose two micro-batches
 * are 0 and 2). World 2's sum of all three is compared with the host sum
 * ((G_0 + G_1) + G_2) rather than a third single-handle run: both differ
 * from the all-reduced sum only in summation order, and every emulated
 * micro-batch costs seconds. */
typedef struct {
    dp_grads g[DP_K], share02;
    double loss[DP_K];                 /* each micro-batch's loss (its G_k run) */
    double loss02[2];                  /* share02's run */
} dp_refs;

static dp_fixture dpf;
static dp_refs dpr;
static int dp_state;                   /* 0: not set up, 1: ready, -1: failed */

static size_t pad4_(size_t n) { return (n + 3) & ~(size_t)3; }

static int dp_grads_init(dp_grads *gr, const dp_fixture *f)
{
    const int nl = f->base.n_layers;
    gr->r = calloc(f->r.n_params, sizeof(float));
    gr->l = calloc(f->l.n_params, sizeof(float));
    gr->rv = calloc((size_t)nl, sizeof *gr->rv);
    gr->lv = calloc((size_t)nl, sizeof *gr->lv);
    if (!gr->r || !gr->l || !gr->rv || !gr->lv)
        return rv_error_set("out of memory");
    for (int i = 0; i < 2; i++) {   /* the same offsets as the net's own views */
        const rv_train_net *n = i ? &f->l : &f->r;
        float *base = i ? gr->l : gr->r;
        rv_step_layer_grads *v = i ? gr->lv : gr->rv;
        for (int l = 0; l < nl; l++)
            for (int p = 0; p < RV_N_PROJ; p++) {
                if (n->layer_grads[l].lora_a[p])
                    v[l].lora_a[p] = base + (n->layer_grads[l].lora_a[p] - n->grads);
                if (n->layer_grads[l].lora_b[p])
                    v[l].lora_b[p] = base + (n->layer_grads[l].lora_b[p] - n->grads);
            }
    }
    return 0;
}

static void dp_grads_zero(dp_grads *gr, const dp_fixture *f)
{
    memset(gr->r, 0, f->r.n_params * sizeof(float));
    memset(gr->l, 0, f->l.n_params * sizeof(float));
}

static void dp_grads_free(dp_grads *gr)
{
    free(gr->r);
    free(gr->l);
    free(gr->rv);
    free(gr->lv);
    memset(gr, 0, sizeof *gr);
}

/* Micro-batch k through g. */
static int dp_step(rv_step_gpu *g, const dp_fixture *f, int k, double *loss)
{
    const size_t n = (size_t)DP_B * DP_L;
    const int32_t *ids = f->ids[k];
    const int *len = f->len[k];
    rv_step_batch bt = {DP_B, DP_L, ids, ids + n, ids + 2 * n, len, len + DP_B, len + 2 * DP_B};
    rv_step_result res = {0};
    if (rv_step_gpu_step(g, &bt, &f->opts, NULL, &res) != 0)
        return -1;
    if (loss)
        *loss = res.loss;
    return 0;
}

/* Micro-batches ks[0..nk) through g, then their gradients into gr (zeroed
 * first); mark_final before the last when final. */
static int dp_run(rv_step_gpu *g, const dp_fixture *f, const int *ks, int nk, int final, dp_grads *gr,
                  double *losses)
{
    dp_grads_zero(gr, f);
    for (int i = 0; i < nk; i++)
        if ((final && i == nk - 1 && rv_step_gpu_mark_final(g) != 0) ||
            dp_step(g, f, ks[i], losses ? &losses[i] : NULL) != 0)
            return -1;
    return rv_step_gpu_take_grads(g, gr->rv, gr->lv);
}

/* Floats that differ (== : -0 and +0 are the same sum). */
static size_t dp_count_diff(const float *a, const float *b, size_t n)
{
    size_t d = 0;
    for (size_t i = 0; i < n; i++)
        d += !(a[i] == b[i]);
    return d;
}

static size_t dp_diff(const dp_grads *a, const dp_grads *b)
{
    return dp_count_diff(a->r, b->r, dpf.r.n_params) + dp_count_diff(a->l, b->l, dpf.l.n_params);
}

/* A list of reference runs on one plain handle (one thread). */
typedef struct {
    int n;
    struct {
        int ks[DP_K], nk, final;
        dp_grads *out;
        double *losses;
    } run[3];
    int rc;
    char err[512];
} dp_ref_job;

static void *dp_ref_main(void *arg)
{
    dp_ref_job *j = arg;
    rv_step_gpu *g = rv_step_gpu_open(&dpf.r.dec, &dpf.l.dec, 0, RV_WT_F32);
    j->rc = g ? 0 : -1;
    for (int i = 0; i < j->n && j->rc == 0; i++)
        j->rc = dp_run(g, &dpf, j->run[i].ks, j->run[i].nk, j->run[i].final, j->run[i].out, j->run[i].losses);
    if (j->rc != 0)
        snprintf(j->err, sizeof j->err, "%s", rv_error_get());
    rv_step_gpu_close(g);
    return NULL;
}

/* The fixture (llama_tied, 2 layers, as both nets; random adapters and
 * micro-batches) and the references, once. */
static int dp_setup(void)
{
    if (dp_state)
        return dp_state > 0 ? 0 : -1;
    dp_state = -1;
    dp_fixture *f = &dpf;
    if (!(f->m = rv_model_load(fixture("llama_tied"))) || rv_train_base_init(&f->base, f->m) != 0 ||
        rv_train_net_init(&f->r, &f->base, 4, 8, 0x7f, 11, 1, 0) != 0 ||
        rv_train_net_init(&f->l, &f->base, 4, 8, 0x7f, 11, 2, 1) != 0)
        return -1;
    for (size_t i = 0; i < f->r.n_params; i++)
        f->r.params[i] = (float)(0.2 * (urand() - 0.5));
    for (size_t i = 0; i < f->l.n_params; i++)
        f->l.params[i] = (float)(0.2 * (urand() - 0.5));
    for (int k = 0; k < DP_K; k++)
        random_group(f->ids[k], f->len[k], DP_B, DP_L);
    f->opts.tau = 0.5;
    f->opts.v_norm = 1;
    f->opts.v_norm_eps = 1e-6f;
    f->opts.similarity = RV_SIM_FP32;
    /* what the step's accumulators hold (revela_step_gpu.cu: A then B per
     * projection, each padded to 4 floats with the f32 storage these
     * handles use; 8 with bf16), to find the retriever's range */
    for (int i = 0; i < 2; i++) {
        const rv_train_net *n = i ? &f->l : &f->r;
        size_t sum = 0;
        for (int l = 0; l < f->base.n_layers; l++)
            for (int p = 0; p < RV_N_PROJ; p++) {
                size_t oa, ob;
                int in, out;
                if (rv_train_net_tensor(n, l, p, &oa, &ob, &in, &out))
                    sum += pad4_((size_t)n->rank * in) + pad4_((size_t)out * n->rank);
            }
        f->total_floats += sum;
        if (i == 0)
            f->retr_floats = sum;
    }
    dp_grads *all[4] = {&dpr.g[0], &dpr.g[1], &dpr.g[2], &dpr.share02};
    for (int i = 0; i < 4; i++)
        if (dp_grads_init(all[i], f) != 0)
            return -1;
    /* 2 + 3 micro-batches in two threads; share02 with mark_final, a no-op
     * without a communicator (world 1 compares against it bitwise) */
    dp_ref_job job[2];
    memset(job, 0, sizeof job);
    job[0].n = 1;
    job[0].run[0].nk = 2, job[0].run[0].ks[0] = 0, job[0].run[0].ks[1] = 2, job[0].run[0].final = 1;
    job[0].run[0].out = &dpr.share02, job[0].run[0].losses = dpr.loss02;
    job[1].n = 3;
    for (int k = 0; k < DP_K; k++) {
        job[1].run[k].nk = 1, job[1].run[k].ks[0] = k;
        job[1].run[k].out = &dpr.g[k], job[1].run[k].losses = &dpr.loss[k];
    }
    pthread_t th[2];
    int started = 0;
    for (; started < 2; started++)
        if (pthread_create(&th[started], NULL, dp_ref_main, &job[started]) != 0)
            break;
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    if (started < 2)
        return rv_error_set("pthread_create failed");
    for (int i = 0; i < 2; i++)
        if (job[i].rc != 0)
            return rv_error_set("reference runs: %s", job[i].err);
    /* both nets' gradients must be non-trivial, or the checks below prove little */
    double mr = 0, ml = 0;
    for (size_t i = 0; i < f->r.n_params; i++)
        mr = fabs(dpr.share02.r[i]) > mr ? fabs(dpr.share02.r[i]) : mr;
    for (size_t i = 0; i < f->l.n_params; i++)
        ml = fabs(dpr.share02.l[i]) > ml ? fabs(dpr.share02.l[i]) : ml;
    if (!(mr > 1e-6 && ml > 1e-6))
        return rv_error_set("reference gradients are (nearly) zero: max |retriever| %g, max |lm| %g", mr, ml);
    dp_state = 1;
    return 0;
}

static void dp_teardown(void)
{
    dp_grads *all[4] = {&dpr.g[0], &dpr.g[1], &dpr.g[2], &dpr.share02};
    for (int i = 0; i < 4; i++)
        dp_grads_free(all[i]);
    rv_train_net_free(&dpf.r);
    rv_train_net_free(&dpf.l);
    rv_train_base_free(&dpf.base);
    rv_model_free(dpf.m);
}

/* World 1: through the identity communicator (several buckets, the last
 * micro-batch marked final) the gradients and losses are bit-identical to
 * a handle without one. Also: a step or allreduce_host between the final
 * micro-batch and take_grads is refused; the identity leaves host sums
 * alone; set_comm NULL detaches. (A rank that never calls mark_final: the
 * idle rank of world 3.) */
/* ================================================================ the optimiser on the device */
/* rv_step_gpu_optim_step against the host path on the same gradients:
 * micro-batches 0 and 2 (whose sum dpr.share02 holds, from a handle that
 * accumulated them the same way), then on the host what rv-train's
 * host_update does: * 1/2, norm, clip (clip_norm set to half the norm, so
 * clipping happens), AdamW from zero moments; a second update with no new
 * gradient and the LM frozen (norm_lm = update_lm = 0: its adapters must
 * not move). The adapters and both moments come back through
 * optim_download and are compared with the host's (the same float
 * expressions; on a GPU fused multiply-adds may round differently: 1e-6
 * of the tensor's largest value). */
static double max_rel(const float *got, const float *want, size_t n)
{
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]);
        d = e > d || e != e ? e : d;
        m = fabs(want[i]) > m ? fabs(want[i]) : m;
    }
    return d / (m > 0 ? m : 1);
}

static void optim_on_device(void)
{
    REQUIRE(dp_setup() == 0, "set-up: %s", rv_error_get());
    const dp_fixture *f = &dpf;
    rv_train_net r = {0}, l = {0};
    rv_step_gpu *g = NULL;
    const size_t nr = f->r.n_params, nl = f->l.n_params;
    float *hr = malloc(nr * sizeof(float)), *hl = malloc(nl * sizeof(float));   /* host copies of the adapters */
    float *mr = calloc(nr, sizeof(float)), *vr = calloc(nr, sizeof(float));
    float *ml = calloc(nl, sizeof(float)), *vl = calloc(nl, sizeof(float));
    float *gr = malloc(nr * sizeof(float)), *gl = malloc(nl * sizeof(float));
    float *dmr = calloc(nr, sizeof(float)), *dvr = calloc(nr, sizeof(float));
    float *dml = calloc(nl, sizeof(float)), *dvl = calloc(nl, sizeof(float));
    int ok = hr && hl && mr && vr && ml && vl && gr && gl && dmr && dvr && dml && dvl &&
             rv_train_net_init(&r, &f->base, 4, 8, 0x7f, 11, 1, 0) == 0 &&
             rv_train_net_init(&l, &f->base, 4, 8, 0x7f, 11, 2, 1) == 0;
    CHECK(ok, "set-up: %s", rv_error_get());
    if (!ok)
        goto done;
    /* the fixture's adapters, in nets of this test's own (optim_download writes them) */
    memcpy(r.params, f->r.params, nr * sizeof(float));
    memcpy(l.params, f->l.params, nl * sizeof(float));
    memcpy(hr, f->r.params, nr * sizeof(float));
    memcpy(hl, f->l.params, nl * sizeof(float));
    ok = (g = rv_step_gpu_open(&r.dec, &l.dec, 0, RV_WT_F32)) != NULL &&
         rv_step_gpu_optim_upload(g, r.params, NULL, NULL, l.params, NULL, NULL) == 0 &&
         dp_step(g, f, 0, NULL) == 0 && dp_step(g, f, 2, NULL) == 0;
    CHECK(ok, "device: %s", rv_error_get());
    if (!ok)
        goto done;
    /* the host path on share02's gradients */
    memcpy(gr, dpr.share02.r, nr * sizeof(float));
    memcpy(gl, dpr.share02.l, nl * sizeof(float));
    rv_scale(nr, gr, 0.5f);
    rv_scale(nl, gl, 0.5f);
    const double norm_host = sqrt(rv_sum_squares(nr, gr) + rv_sum_squares(nl, gl));
    const double clip_norm = 0.5 * norm_host, clip = rv_clip_factor(norm_host, clip_norm);
    rv_scale(nr, gr, (float)clip);
    rv_scale(nl, gl, (float)clip);
    rv_adamw_hparams ah = {1e-2, 0.9, 0.999, 1e-8, 0.01};
    rv_adamw_update(nr, hr, gr, mr, vr, 1, &ah);
    rv_adamw_update(nl, hl, gl, ml, vl, 1, &ah);
    rv_step_gpu_optim op = {0.5f, clip_norm, 1, 1, 1, ah, 1};
    double norm_dev = -1;
    ok = rv_step_gpu_optim_step(g, &op, &norm_dev) == 0;
    CHECK(ok, "optim_step: %s", rv_error_get());
    if (!ok)
        goto done;
    CHECK(fabs(norm_dev - norm_host) <= 1e-12 * norm_host, "norm %.17g vs host %.17g", norm_dev, norm_host);
    CHECK(clip < 0.6, "clipping did not happen (factor %g)", clip);
    /* update 2: no new gradient (the accumulators were zeroed), the LM frozen */
    memset(gr, 0, nr * sizeof(float));
    rv_adamw_update(nr, hr, gr, mr, vr, 2, &ah);
    rv_step_gpu_optim op2 = {0.5f, clip_norm, 0, 1, 0, ah, 2};
    ok = rv_step_gpu_optim_step(g, &op2, &norm_dev) == 0 &&
         rv_step_gpu_optim_download(g, r.params, dmr, dvr, l.params, dml, dvl) == 0;
    CHECK(ok, "optim_step 2 / download: %s", rv_error_get());
    if (!ok)
        goto done;
    CHECK(norm_dev == 0, "norm of zero gradients %g", norm_dev);
    const double e[6] = {max_rel(r.params, hr, nr), max_rel(dmr, mr, nr), max_rel(dvr, vr, nr),
                         max_rel(l.params, hl, nl), max_rel(dml, ml, nl), max_rel(dvl, vl, nl)};
    static const char *what[6] = {"retriever adapters", "retriever m", "retriever v", "LM adapters", "LM m", "LM v"};
    for (int i = 0; i < 6; i++)
        CHECK(e[i] <= 1e-6, "%s: rel %.3g", what[i], e[i]);
    CHECK(max_rel(r.params, f->r.params, nr) > 1e-4, "the retriever's adapters did not move");
    printf("  optim_on_device: norm %.9g (clip %.3f); rel retriever %.2e/%.2e/%.2e, LM %.2e/%.2e/%.2e\n", norm_host,
           clip, e[0], e[1], e[2], e[3], e[4], e[5]);
done:
    rv_step_gpu_close(g);
    rv_train_net_free(&r);
    rv_train_net_free(&l);
    free(hr), free(hl), free(mr), free(vr), free(ml), free(vl), free(gr), free(gl);
    free(dmr), free(dvr), free(dml), free(dvl);
}

/* ================================================================ bf16 adapter products */
/* With bf16 storage the adapter products read bf16 copies of the fp32
 * master adapters (revela_step_gpu.cu's top comment). Three bf16 handles on
 * the data-parallel fixture: X and Z on its adapters, Y on the same
 * adapters rounded to bf16 on the host.
 *  1. Micro-batch 0: Y's loss and gradients equal Z's (and X's loss): the
 *     products see only the bf16 values of the adapters (bitwise on the
 *     emulator; on a GPU the handles' buffers may sit at other alignments
 *     and get another GEMM algorithm: BF16_SAME_TOL). With fp32 adapter
 *     products they differ by the rounding, ~1e-3 relative.
 *  2. X takes one AdamW step on the device (optim_step), Z the same on the
 *     host (take_grads, rv_adamw_update, load_lora); micro-batch 1 then
 *     gives X and Z the same loss (bitwise on the emulator; on a GPU the
 *     device AdamW may round fused multiply-adds otherwise, 1e-6 of an
 *     adapter, and a bf16 copy may land one unit apart: BF16_OPT_TOL), and
 *     not Y's: Y still holds the bf16 copies of the old adapters, which is
 *     what X would run on if optim_step left its copies stale. */
#define BF16_SAME_TOL 1e-6
#define BF16_OPT_TOL 1e-5

static void bf16_adapters(void)
{
    REQUIRE(dp_setup() == 0, "set-up: %s", rv_error_get());
    const dp_fixture *f = &dpf;
#ifdef RV_CUDA_EMULATE
    const int emulated = 1;
#else
    const int emulated = 0;
#endif
    rv_train_net net[3][2];   /* X, Y, Z: retriever, LM */
    rv_step_gpu *g[3] = {NULL, NULL, NULL};
    memset(net, 0, sizeof net);
    int ok = 1;
    for (int h = 0; h < 3 && ok; h++)
        ok = rv_train_net_init(&net[h][0], &f->base, 4, 8, 0x7f, 11, 1, 0) == 0 &&
             rv_train_net_init(&net[h][1], &f->base, 4, 8, 0x7f, 11, 2, 1) == 0;
    CHECK(ok, "set-up: %s", rv_error_get());
    if (!ok)
        goto done;
    size_t rounded = 0;   /* adapter elements the rounding changed: the test is void if none */
    for (int h = 0; h < 3; h++)
        for (int i = 0; i < 2; i++) {
            const rv_train_net *src = i ? &f->l : &f->r;
            rv_train_net *n = &net[h][i];
            for (size_t k = 0; k < n->n_params; k++) {
                n->params[k] = src->params[k];
                if (h == 1) {
                    n->params[k] = rv_bf16_to_f32(rv_f32_to_bf16(src->params[k]));
                    rounded += n->params[k] != src->params[k];
                }
            }
            memset(n->grads, 0, n->n_params * sizeof(float));
            memset(n->adam_m, 0, n->n_params * sizeof(float));
            memset(n->adam_v, 0, n->n_params * sizeof(float));
        }
    CHECK(rounded > 0, "rounding to bf16 changed no adapter");
    for (int h = 0; h < 3 && ok; h++)
        ok = (g[h] = rv_step_gpu_open(&net[h][0].dec, &net[h][1].dec, 0, RV_WT_BF16)) != NULL;
    ok = ok && rv_step_gpu_optim_upload(g[0], net[0][0].params, NULL, NULL, net[0][1].params, NULL, NULL) == 0;
    CHECK(ok, "open: %s", rv_error_get());
    if (!ok)
        goto done;
    double l0[3], l1[3];
    for (int h = 0; h < 3 && ok; h++)
        ok = dp_step(g[h], f, 0, &l0[h]) == 0 &&
             (h == 0 || rv_step_gpu_take_grads(g[h], net[h][0].layer_grads, net[h][1].layer_grads) == 0);
    CHECK(ok, "micro-batch 0: %s", rv_error_get());
    if (!ok)
        goto done;
    /* 1. Y (rounded adapters) against Z and X (not rounded) */
    double e_loss = fabs(l0[1] - l0[2]) / fabs(l0[2]), e_x = fabs(l0[0] - l0[2]) / fabs(l0[2]);
    double e_r = rel_err(net[1][0].grads, net[2][0].grads, net[1][0].n_params, 1e-30);
    double e_l = rel_err(net[1][1].grads, net[2][1].grads, net[1][1].n_params, 1e-30);
    int bitwise = l0[1] == l0[2] && l0[0] == l0[2] &&
                  memcmp(net[1][0].grads, net[2][0].grads, net[1][0].n_params * sizeof(float)) == 0 &&
                  memcmp(net[1][1].grads, net[2][1].grads, net[1][1].n_params * sizeof(float)) == 0;
    if (emulated)
        CHECK(bitwise, "micro-batch 0 on rounded vs unrounded adapters not bitwise: loss rel %.3g (X %.3g), "
                       "gradients retriever %.3g lm %.3g",
              e_loss, e_x, e_r, e_l);
    CHECK(e_loss <= BF16_SAME_TOL && e_x <= BF16_SAME_TOL && e_r <= BF16_SAME_TOL && e_l <= BF16_SAME_TOL,
          "micro-batch 0 on rounded vs unrounded adapters: loss rel %.3g (X %.3g), gradients retriever %.3g lm %.3g",
          e_loss, e_x, e_r, e_l);
    /* 2. one AdamW step: X on the device, Z on the host */
    rv_adamw_hparams ah = {1e-2, 0.9, 0.999, 1e-8, 0.01};
    rv_step_gpu_optim op = {1.0f, 0.0, 1, 1, 1, ah, 1};   /* clip_norm 0: no clipping */
    double norm = 0;
    for (int i = 0; i < 2; i++) {
        rv_train_net *n = &net[2][i];
        rv_adamw_update(n->n_params, n->params, n->grads, n->adam_m, n->adam_v, 1, &ah);
    }
    ok = rv_step_gpu_optim_step(g[0], &op, &norm) == 0 && rv_step_gpu_load_lora(g[2]) == 0;
    for (int h = 0; h < 3 && ok; h++)
        ok = dp_step(g[h], f, 1, &l1[h]) == 0;
    CHECK(ok, "update / micro-batch 1: %s", rv_error_get());
    if (!ok)
        goto done;
    double e_opt = fabs(l1[0] - l1[2]) / fabs(l1[2]), e_stale = fabs(l1[1] - l1[2]) / fabs(l1[2]);
    if (emulated)
        CHECK(l1[0] == l1[2], "micro-batch 1 after the device vs host AdamW: loss %.17g vs %.17g", l1[0], l1[2]);
    CHECK(e_opt <= BF16_OPT_TOL, "micro-batch 1 after the device vs host AdamW: loss rel %.3g", e_opt);
    CHECK(e_stale > 100 * BF16_OPT_TOL, "the update moved micro-batch 1's loss by only %.3g relative", e_stale);
    printf("  bf16_adapters: %zu adapter elements changed by rounding; micro-batch 0 rounded vs not: %s (loss rel "
           "%.2e, gradients %.2e/%.2e); after AdamW device vs host: loss rel %.2e, vs the old adapters %.2e\n",
           rounded, bitwise ? "bitwise" : "not bitwise", e_loss, e_r, e_l, e_opt, e_stale);
done:
    for (int h = 0; h < 3; h++) {
        rv_step_gpu_close(g[h]);
        rv_train_net_free(&net[h][0]);
        rv_train_net_free(&net[h][1]);
    }
}

static void dp_world1_identity(void)
{
    REQUIRE(dp_setup() == 0, "set-up: %s", rv_error_get());
    const dp_fixture *f = &dpf;
    dp_grads got = {0};
    rv_step_gpu *g = NULL;
    if (dp_grads_init(&got, f) != 0 || !(g = rv_step_gpu_open(&f->r.dec, &f->l.dec, 0, RV_WT_F32))) {
        CHECK(0, "open: %s", rv_error_get());
        goto done;
    }
    CHECK(rv_step_gpu_context(g) != NULL, "no context");
    if (rv_step_gpu_set_comm_buckets(g, rv_comm_identity(), DP_BUCKET_BYTES) != 0) {
        CHECK(0, "set_comm: %s", rv_error_get());
        goto done;
    }
    /* micro-batches 0 and 2, the second marked final; then the refusals */
    double loss[2];
    dp_grads_zero(&got, f);
    int ok = dp_step(g, f, 0, &loss[0]) == 0 && rv_step_gpu_mark_final(g) == 0 && dp_step(g, f, 2, &loss[1]) == 0;
    CHECK(ok, "identity: %s", rv_error_get());
    if (!ok)
        goto done;
    float stat[2] = {1.5f, -2.0f};
    CHECK(dp_step(g, f, 1, NULL) == -1 && strstr(rv_error_get(), "after the final"),
          "a step after the final one was not refused: %s", rv_error_get());
    CHECK(rv_step_gpu_allreduce_host(g, stat, 2) == -1 && strstr(rv_error_get(), "take_grads"),
          "allreduce_host in the final window was not refused: %s", rv_error_get());
    CHECK(rv_step_gpu_take_grads(g, got.rv, got.lv) == 0, "take_grads: %s", rv_error_get());
    CHECK(rv_step_gpu_allreduce_host(g, stat, 2) == 0 && stat[0] == 1.5f && stat[1] == -2.0f,
          "identity allreduce_host changed the values: %g %g (%s)", stat[0], stat[1], rv_error_get());
    size_t d = dp_diff(&got, &dpr.share02);
    CHECK(d == 0, "world 1 gradients differ from no communicator in %zu floats", d);
    CHECK(memcmp(loss, dpr.loss02, sizeof loss) == 0, "world 1 losses %.17g %.17g vs %.17g %.17g", loss[0], loss[1],
          dpr.loss02[0], dpr.loss02[1]);
    CHECK(rv_step_gpu_mark_final(g) == 0 && rv_step_gpu_set_comm(g, NULL) == 0 && rv_step_gpu_mark_final(g) == 0 &&
              rv_step_gpu_allreduce_host(g, stat, 2) == 0 && stat[0] == 1.5f,
          "detaching: %s", rv_error_get());
    printf("  world 1 through the identity: gradients and losses of 2 micro-batches bit-identical to no "
           "communicator\n");
done:
    rv_step_gpu_close(g);
    dp_grads_free(&got);
}

#ifdef RV_CUDA_EMULATE   /* the threaded cases: the fake sums host memory */
/* A communicator that forwards to a fake rank and notes, at the first
 * all-reduce it starts, whether the retriever's accumulators were still
 * all zero (their backward runs after the LM's). */
typedef struct {
    rv_comm comm;
    rv_comm *inner;
    size_t n_starts;
    int first_saw_zero_retriever;   /* -1: no all-reduce started */
} dp_spy;

static int spy_rank(const rv_comm *c) { return rv_comm_rank(((const dp_spy *)c->impl)->inner); }
static int spy_world(const rv_comm *c) { return rv_comm_world_size(((const dp_spy *)c->impl)->inner); }
static long spy_start(rv_comm *c, float *buf, size_t n)
{
    dp_spy *s = c->impl;
    if (s->n_starts++ == 0) {
        /* the first bucket is the top of the accumulators (the LM's last
         * layer), which are total_floats long with the retriever's at the
         * bottom; emulated device pointers are host pointers */
        const float *bottom = buf + n - dpf.total_floats;
        int zero = 1;
        for (size_t i = 0; i < dpf.retr_floats; i++)
            zero &= bottom[i] == 0.0f;
        s->first_saw_zero_retriever = zero;
    }
    return s->inner->allreduce_start(s->inner, buf, n);
}
static int spy_wait(rv_comm *c, long t)
{
    dp_spy *s = c->impl;
    return s->inner->wait(s->inner, t);
}
static int spy_broadcast(rv_comm *c, void *buf, size_t bytes, int root)
{
    dp_spy *s = c->impl;
    return s->inner->broadcast(s->inner, buf, bytes, root);
}
static int spy_barrier(rv_comm *c)
{
    dp_spy *s = c->impl;
    return s->inner->barrier(s->inner);
}
static int spy_divide(rv_comm *c, float *buf, size_t n, float d)
{
    dp_spy *s = c->impl;
    return s->inner->divide(s->inner, buf, n, d);
}
static void spy_close(rv_comm *c) {}

typedef struct {
    rv_comm_fake *fake;
    int rank, world, n_micro;
    const int *micro;               /* the step's micro-batches (fixture indices) */
    dp_spy spy;
    dp_grads gr;
    float stats[2];                 /* loss sum, micro-batches: summed by allreduce_host */
    size_t allreduce_before_take;
    int rc;
    char err[512];
} dp_rank;

static void *dp_rank_main(void *arg)
{
    dp_rank *r = arg;
    rv_step_gpu *g = rv_step_gpu_open(&dpf.r.dec, &dpf.l.dec, 0, RV_WT_F32);
    r->rc = -1;
    if (!g || rv_step_gpu_set_comm_buckets(g, &r->spy.comm, DP_BUCKET_BYTES) != 0)
        goto out;
    dp_grads_zero(&r->gr, &dpf);
    float lsum = 0;
    int nk = 0;
    for (int j = r->rank; j < r->n_micro; j += r->world, nk++) {   /* rank r: j = r, r + N, ... */
        double loss;
        if ((j + r->world >= r->n_micro && rv_step_gpu_mark_final(g) != 0) ||
            dp_step(g, &dpf, r->micro[j], &loss) != 0)
            goto out;
        lsum += (float)loss;
    }
    r->allreduce_before_take = 0;
    for (size_t i = 0; i < rv_comm_fake_n_ops(r->fake, r->rank); i++)
        r->allreduce_before_take += rv_comm_fake_op_at(r->fake, r->rank, i)->kind == RV_COMM_OP_ALLREDUCE;
    if (rv_step_gpu_take_grads(g, r->gr.rv, r->gr.lv) != 0)
        goto out;
    r->stats[0] = lsum;
    r->stats[1] = (float)nk;
    if (rv_step_gpu_allreduce_host(g, r->stats, 2) != 0)
        goto out;
    r->rc = 0;
out:
    if (r->rc != 0)
        snprintf(r->err, sizeof r->err, "%s", rv_error_get());
    rv_step_gpu_close(g);
    return NULL;
}

/* world ranks as threads, each with its own handle, share the step's
 * micro-batches: world 2 the fixture's 0, 1, 2 (rank 0: 0 and 2, rank 1:
 * 1); world 3 the fixture's 0 and 2 (rank 2: none). */
static void dp_threads(int world)
{
    static const int micro2[] = {0, 1, 2}, micro3[] = {0, 2};
    const int *micro = world == 2 ? micro2 : micro3, n_micro = world == 2 ? 3 : 2;
    REQUIRE(world == 2 || world == 3, "references exist for worlds 2 and 3");
    REQUIRE(dp_setup() == 0, "set-up: %s", rv_error_get());
    const dp_fixture *f = &dpf;
    dp_rank ranks[3];
    pthread_t th[3];
    dp_grads expect = {0}, hostsum = {0};
    rv_comm_fake *fake = NULL;
    memset(ranks, 0, sizeof ranks);
    /* each rank's local sum, from the references: one micro-batch k is
     * G_k (the device accumulates from zero exactly as G_k's run did), rank
     * 0 of world 2 has 0 and 2 (share02, run on one handle), none is
     * zeros; the fake sums in rank order, ((rank 0 + rank 1) + rank 2) */
    const dp_grads *local[3] = {NULL, NULL, NULL};
    for (int r = 0; r < world; r++) {
        int nk = 0;
        for (int j = r; j < n_micro; j += world)
            nk++;
        local[r] = nk == 0 ? NULL : nk == 2 ? &dpr.share02 : &dpr.g[micro[r]];
        REQUIRE(nk <= 1 || (world == 2 && r == 0), "no reference for rank %d of %d", r, world);
    }
    /* all of the step's micro-batches summed another way: world 3, on
     * one handle (share02); world 2, on the host ((G_0 + G_1) + G_2) */
    if (dp_grads_init(&hostsum, f) != 0) {
        CHECK(0, "%s", rv_error_get());
        goto done;
    }
    for (int k = 0; k < DP_K; k++) {
        for (size_t i = 0; i < f->r.n_params; i++)
            hostsum.r[i] += dpr.g[k].r[i];
        for (size_t i = 0; i < f->l.n_params; i++)
            hostsum.l[i] += dpr.g[k].l[i];
    }
    const dp_grads *single = world == 2 ? &hostsum : &dpr.share02;
    if (dp_grads_init(&expect, f) != 0) {
        CHECK(0, "%s", rv_error_get());
        goto done;
    }
    for (int r = 0; r < world; r++) {
        const dp_grads *s = local[r];
        for (size_t i = 0; i < f->r.n_params; i++)
            expect.r[i] = r == 0 ? (s ? s->r[i] : 0.0f) : expect.r[i] + (s ? s->r[i] : 0.0f);
        for (size_t i = 0; i < f->l.n_params; i++)
            expect.l[i] = r == 0 ? (s ? s->l[i] : 0.0f) : expect.l[i] + (s ? s->l[i] : 0.0f);
    }
    float lsum_expect = 0;   /* allreduce_host: the per-rank float sums, in rank order */
    for (int r = 0; r < world; r++) {
        float ls = 0;
        for (int j = r; j < n_micro; j += world)
            ls += (float)dpr.loss[micro[j]];
        lsum_expect = r == 0 ? ls : lsum_expect + ls;
    }

    if (!(fake = rv_comm_fake_new(world))) {
        CHECK(0, "%s", rv_error_get());
        goto done;
    }
    rv_comm_fake_set_delay(fake, 200, 77);   /* shake the interleaving of the ranks */
    /* a rank legitimately waits for another's extra micro-batch (a few
     * seconds, more under load or ASan); a broken collective order fails
     * after this per wait instead of hanging */
    rv_comm_fake_set_timeout(fake, 20);
    for (int r = 0; r < world; r++) {
        dp_rank *rk = &ranks[r];
        rk->fake = fake;
        rk->rank = r;
        rk->world = world;
        rk->n_micro = n_micro;
        rk->micro = micro;
        rk->spy.inner = rv_comm_fake_rank(fake, r);
        rk->spy.first_saw_zero_retriever = -1;
        rk->spy.comm = (rv_comm){"fake", 0, spy_rank, spy_world, spy_start, spy_wait, spy_broadcast, spy_barrier,
                                 spy_divide, spy_close, &rk->spy};
        if (dp_grads_init(&rk->gr, f) != 0) {
            CHECK(0, "%s", rv_error_get());
            goto done;
        }
    }
    int started = 0;
    for (; started < world; started++)
        if (pthread_create(&th[started], NULL, dp_rank_main, &ranks[started]) != 0)
            break;
    for (int r = 0; r < started; r++)
        pthread_join(th[r], NULL);
    REQUIRE(started == world, "pthread_create failed");   /* (leaks on this path only) */

    for (int r = 0; r < world; r++)
        CHECK(ranks[r].rc == 0, "world %d rank %d: %s", world, r, ranks[r].err);
    if (ranks[0].rc != 0)
        goto done;
    const dp_grads *got = &ranks[0].gr;
    double er = rel_err(got->r, single->r, f->r.n_params, 1e-30), el = rel_err(got->l, single->l, f->l.n_params, 1e-30);
    size_t d = dp_diff(got, &expect);
    CHECK(er <= DP_SUM_TOL && el <= DP_SUM_TOL, "world %d: vs %s: retriever rel %.3g, lm rel %.3g", world,
          world == 2 ? "the host sum of G_k" : "one handle", er, el);
    CHECK(d == 0, "world %d: %zu floats differ from the rank-order sum of the per-rank sums", world, d);
    for (int r = 1; r < world; r++)
        CHECK(ranks[r].rc != 0 || (memcmp(ranks[r].gr.r, got->r, f->r.n_params * sizeof(float)) == 0 &&
                                   memcmp(ranks[r].gr.l, got->l, f->l.n_params * sizeof(float)) == 0),
              "world %d: rank %d's gradients are not bit-identical to rank 0's", world, r);
    /* overlap: every rank with a micro-batch issued all its buckets during
     * its final micro-batch (before take_grads), the first before the
     * retriever's backward had written anything when that micro-batch was
     * its only one (accumulators start at zero); an idle rank issues them
     * all in take_grads. Every rank: the same number of all-reduces. */
    size_t buckets = 0;
    for (int r = 0; r < world; r++) {
        const dp_rank *rk = &ranks[r];
        int nk = 0;
        for (int j = r; j < n_micro; j += world)
            nk++;
        size_t ar = 0, n_ops = rv_comm_fake_n_ops(fake, r);
        for (size_t i = 0; i < n_ops; i++)
            ar += rv_comm_fake_op_at(fake, r, i)->kind == RV_COMM_OP_ALLREDUCE;
        if (r == 0)
            buckets = ar - 1;   /* one is allreduce_host's */
        CHECK(ar == buckets + 1, "world %d rank %d: %zu all-reduces, rank 0 %zu", world, r, ar, buckets + 1);
        if (nk > 0)
            CHECK(rk->allreduce_before_take == buckets, "world %d rank %d: %zu of %zu buckets issued before take_grads",
                  world, r, rk->allreduce_before_take, buckets);
        else
            CHECK(rk->allreduce_before_take == 0,
                  "world %d rank %d (no micro-batch): %zu all-reduces before take_grads", world, r,
                  rk->allreduce_before_take);
        if (nk == 1)
            CHECK(rk->spy.first_saw_zero_retriever == 1,
                  "world %d rank %d: the first bucket was issued after the retriever's backward had begun (%d)", world,
                  r, rk->spy.first_saw_zero_retriever);
        CHECK(rk->stats[1] == (float)n_micro && rk->stats[0] == lsum_expect,
              "world %d rank %d: allreduce_host gave %.9g over %g micro-batches, expected %.9g over %d", world, r,
              rk->stats[0], rk->stats[1], lsum_expect, n_micro);
    }
    CHECK(buckets >= 2, "world %d: %zu buckets (the test wants several)", world, buckets);
    printf("  world %d, %d micro-batches: %zu buckets, issued during each rank's final micro-batch; ranks "
           "bit-identical; vs %s rel %.2e (retriever) %.2e (lm); rank-order sum of per-rank sums: bitwise\n",
           world, n_micro, buckets, world == 2 ? "host sum of G_k" : "one handle", er, el);
done:
    dp_grads_free(&hostsum);
    rv_comm_fake_free(fake);
    dp_grads_free(&expect);
    for (int r = 0; r < 3; r++)
        dp_grads_free(&ranks[r].gr);
}

/* RV_EMU_DEVICES=N: the emulator reports N devices, all the same CPU, so
 * `rv-train --gpus N` can run one rank per device on it. */
static void emu_devices(void)
{
    const char *why = "", *old = getenv("RV_EMU_DEVICES");
    char *saved = old ? strdup(old) : NULL;
    setenv("RV_EMU_DEVICES", "3", 1);
    CHECK(rv_cuda_device_count(&why) == 3, "RV_EMU_DEVICES=3: %d devices (%s)", rv_cuda_device_count(NULL), why);
    CHECK(rv_cuda_check_device(2) == 0, "device 2 of 3: %s", rv_error_get());
    CHECK(rv_cuda_check_device(3) == -1 && strstr(rv_error_get(), "does not exist"), "device 3 of 3: %s",
          rv_error_get());
    rv_cuda *c = rv_cuda_open(2);
    CHECK(c != NULL, "opening device 2 of 3: %s", rv_error_get());
    rv_cuda_close(c);
    unsetenv("RV_EMU_DEVICES");   /* the default: one */
    CHECK(rv_cuda_device_count(NULL) == 1, "default: %d devices", rv_cuda_device_count(NULL));
    c = rv_cuda_open(1);
    CHECK(c == NULL, "device 1 opened with one device");
    rv_cuda_close(c);
    if (saved)
        setenv("RV_EMU_DEVICES", saved, 1);
    free(saved);
}

/* 2 ranks, 3 micro-batches: rank 0 takes two, rank 1 one. */
static void dp_world2_fake(void) { dp_threads(2); }

/* 3 ranks, 2 micro-batches: rank 2 has none (and never calls mark_final)
 * and still joins every collective, in the same order. */
static void dp_world3_fake_idle_rank(void) { dp_threads(3); }
#endif

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
    RUN_TEST(dp_world1_identity);
    RUN_TEST(optim_on_device);
    RUN_TEST(bf16_adapters);
    /* after the data-parallel fixture is drawn (their random draws leave its
     * data as it was), before emu_devices (whose failed open of device 1
     * leaves the emulator's sticky error set) */
    RUN_TEST(recompute_dual_dropout);
    RUN_TEST(recompute_bf16);
    RUN_TEST(curve20);
    RUN_TEST(untied_llama_bias);
#ifdef RV_CUDA_EMULATE
    RUN_TEST(emu_devices);
    RUN_TEST(dp_world2_fake);
    RUN_TEST(dp_world3_fake_idle_rank);
#else   /* the fake communicator sums host memory; the device accumulators are not */
    printf("SKIP step-gpu/emu_devices (RV_EMU_DEVICES: emulator only)\n");
    printf("SKIP step-gpu/dp_world2_fake (host-memory fake communicator: emulator only)\n");
    printf("SKIP step-gpu/dp_world3_fake_idle_rank (host-memory fake communicator: emulator only)\n");
#endif
    dp_teardown();
    printf("  worst: loss rel %.2e (tol %.0e), gradient rel %.2e (tol %.0e), later-step loss rel %.2e (tol %.0e)\n",
           worst_loss, LOSS_TOL, worst_grad, GRAD_TOL, worst_curve, CURVE_TOL);
    TEST_EXIT();
}
