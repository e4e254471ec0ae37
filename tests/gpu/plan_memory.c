/* plan_memory.c — how much device memory rv-train --device cuda needs for a
 * Revela step, per model pair, group size B, length L, LoRA rank and
 * --recompute, without a GPU (make plan-memory). The activations and the
 * backward scratch come from the step's own allocation code run dry
 * (rv_step_gpu_activation_bytes: the same allocations the step makes,
 * counted; test_step_gpu checks that the count equals what a real step
 * allocates); the rest is counted from the shapes here:
 *   frozen weights   embedding (+ an untied LM head) and the 7 projections of
 *                    every layer in the storage type, norms in f32, each base
 *                    once when the retriever and the LM are one checkpoint
 *   adapters         f32 master weights, gradients and both AdamW moments
 *                    (the optimiser runs on the device) and, with bf16
 *                    storage, their bf16 copies: 18 bytes a parameter
 *   context scratch  the larger of the LM-head cross-entropy chunk (logits
 *                    and their gradient, <= 256 MiB) and the in-batch
 *                    backward's 3 B*B*H*L f32 statistics; cuBLASLt's 32 MiB
 * It does not count the CUDA context itself (~0.5 GiB), the allocator's
 * slack or RoPE tables (a few MiB).
 * Usage: plan_memory [--dtype bf16|f32] [--rank R] [--len L] [--b "16 32 64"] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "ops.h"
#include "revela_step_gpu.h"

typedef struct {
    const char *name;
    int vocab, hidden, layers, heads, kv_heads, head_dim, ffn, tied;
} model_shape;

/* config.json figures of the published checkpoints */
static const model_shape SHAPES[] = {
    {"Llama-3.2-1B", 128256, 2048, 16, 32, 8, 64, 8192, 1},
    {"Llama-3.2-3B", 128256, 3072, 28, 24, 8, 128, 8192, 1},
    {"Llama-3.1-8B", 128256, 4096, 32, 32, 8, 128, 14336, 0},
    {"Qwen2.5-0.5B", 151936, 896, 24, 14, 2, 64, 4864, 1},
    {"SmolLM2-135M", 49152, 576, 30, 9, 3, 64, 1536, 1},
};

/* A decoder with shapes and ranks only (no weights: the planner reads none). */
static rv_step_decoder make_decoder(const model_shape *m, int rank, rv_step_layer **layers_out)
{
    rv_step_layer *layers = calloc((size_t)m->layers, sizeof *layers);
    if (!layers) {
        fprintf(stderr, "plan_memory: out of memory\n");
        exit(1);
    }
    const int q = m->heads * m->head_dim, kv = m->kv_heads * m->head_dim, D = m->hidden, F = m->ffn;
    const int in[RV_N_PROJ] = {D, D, D, q, D, D, F}, out[RV_N_PROJ] = {q, kv, kv, D, F, F, D};
    for (int l = 0; l < m->layers; l++)
        for (int p = 0; p < RV_N_PROJ; p++) {
            layers[l].proj[p].in = in[p];
            layers[l].proj[p].out = out[p];
            layers[l].proj[p].rank = rank;
            layers[l].proj[p].scale = 1.0f;
        }
    *layers_out = layers;
    rv_step_decoder d;
    memset(&d, 0, sizeof d);
    d.vocab = m->vocab;
    d.hidden = m->hidden;
    d.n_layers = m->layers;
    d.n_heads = m->heads;
    d.n_kv_heads = m->kv_heads;
    d.head_dim = m->head_dim;
    d.ffn = m->ffn;
    d.norm_eps = 1e-5f;
    d.layers = layers;
    return d;
}

static double frozen_bytes(const model_shape *m, int with_head, size_t es)
{
    const double q = (double)m->heads * m->head_dim, kv = (double)m->kv_heads * m->head_dim, D = m->hidden;
    double mats = (double)m->vocab * D * (with_head && !m->tied ? 2 : 1) +
                  m->layers * (D * q + 2 * D * kv + q * D + 3 * D * m->ffn);
    return mats * (double)es + 4.0 * (2.0 * m->layers + 1) * D;
}

static double adapter_params(const model_shape *m, int rank)
{
    const double q = (double)m->heads * m->head_dim, kv = (double)m->kv_heads * m->head_dim, D = m->hidden;
    return (double)rank * m->layers * ((D + q) + 2 * (D + kv) + (q + D) + 2 * (D + m->ffn) + (m->ffn + D));
}

static const double GiB = 1024.0 * 1024.0 * 1024.0;

static void plan(const model_shape *r, const model_shape *lm, rv_wtype wt, int rank, int L, int B)
{
    rv_step_layer *rl, *ll;
    rv_step_decoder rd = make_decoder(r, rank, &rl), ld = make_decoder(lm, rank, &ll);
    const size_t es = rv_wtype_size(wt);
    const int same = r == lm;
    double weights = frozen_bytes(lm, 1, es) + (same ? 0.0 : frozen_bytes(r, 0, es));
    double adapters = (adapter_params(r, rank) + adapter_params(lm, rank)) * (16.0 + (wt == RV_WT_F32 ? 0 : 2));
    double ce = (256.0 * 1024 * 1024), ib = 3.0 * B * B * lm->heads * (double)L * 4;
    double scratch = (ce > ib ? ce : ib) + 32.0 * 1024 * 1024;
    for (int rc = 0; rc < 2; rc++) {
        size_t act = 0;
        if (rv_step_gpu_activation_bytes(&rd, &ld, wt, B, (size_t)B * L, rc, &act) != 0) {
            fprintf(stderr, "plan_memory: %s\n", rv_error_get());
            exit(1);
        }
        double total = weights + adapters + scratch + (double)act;
        printf("%-13s %-13s %4s r%-4d B%-3d L%-4d %-9s %7.2f %7.2f %7.2f %8.2f %8.2f  %s\n", r->name, lm->name,
               rv_wtype_name(wt), rank, B, L, rc ? "recompute" : "-", weights / GiB, adapters / GiB, scratch / GiB,
               act / GiB, total / GiB, total <= 80.0 * 1e9 - 0.5 * GiB ? "fits 80 GB" : "over 80 GB");
    }
    free(rl);
    free(ll);
}

int main(int argc, char **argv)
{
    rv_wtype wt = RV_WT_BF16;
    int rank = 256, L = 160;
    const char *bs = "16 32 64";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dtype") == 0 && i + 1 < argc) {
            i++;
            wt = strcmp(argv[i], "f32") == 0 ? RV_WT_F32 : RV_WT_BF16;
        } else if (strcmp(argv[i], "--rank") == 0 && i + 1 < argc) {
            rank = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--len") == 0 && i + 1 < argc) {
            L = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--b") == 0 && i + 1 < argc) {
            bs = argv[++i];
        } else {
            fprintf(stderr, "usage: plan_memory [--dtype bf16|f32] [--rank R] [--len L] [--b \"16 32 64\"]\n");
            return 2;
        }
    }
    if (rank < 1 || L < 1) {
        fprintf(stderr, "plan_memory: --rank and --len must be positive\n");
        return 2;
    }
    printf("# device memory of one Revela step (GiB; weights, adapters and scratch counted from the shapes,\n"
           "# activations from the step's own allocations run dry); 80 GB = 74.5 GiB, less 0.5 GiB of context\n");
    printf("%-13s %-13s %4s %-5s %-4s %-5s %-9s %7s %7s %7s %8s %8s\n", "retriever", "lm", "type", "rank", "B", "L",
           "", "weights", "adapt.", "scratch", "activ.", "total");
    const model_shape *l1 = &SHAPES[0], *l3 = &SHAPES[1], *l8 = &SHAPES[2];
    char *copy = strdup(bs);
    for (char *t = strtok(copy, " ,"); t; t = strtok(NULL, " ,")) {
        int B = atoi(t);
        if (B < 2) {
            fprintf(stderr, "plan_memory: --b: expected group sizes >= 2, found \"%s\"\n", t);
            return 2;
        }
        plan(l1, l1, wt, rank, L, B);   /* the paper's setting: one checkpoint as retriever and LM */
        plan(l3, l1, wt, rank, L, B);   /* the issue's: a 3B retriever with the 1B LM */
        plan(l8, l1, wt, rank, L, B);
    }
    free(copy);
    return 0;
}
