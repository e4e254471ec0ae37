/* test_model_smollm2.c — the real SmolLM2-135M-Instruct GGUF (Q4_1/Q8_0,
 * fetched by scripts/get-model.sh into the cache) against the NumPy
 * reference of scripts/make-model-fixtures.py --smollm2, which dequantises
 * with gguf-py and runs the equations in float64: the same next-token top-1
 * at every position of real sentences, close logits, and EOS-pooled
 * embeddings with cosine ≥ 0.999. Prints SKIP when the model cannot be
 * fetched (no network and no cache). */
#include "buf.h"
#include "error.h"
#include "forward.h"
#include "model.h"
#include "ops.h"
#include "safetensors.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>

static char gguf_path[4096];

static int fetch_model(void)
{
    const char *root = getenv("RV_ROOT");
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "'%s/scripts/get-model.sh' 2>/dev/null", root ? root : ".");
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char line[4096];
    gguf_path[0] = 0;
    while (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = 0;
        snprintf(gguf_path, sizeof gguf_path, "%s", line);
    }
    return pclose(p) == 0 && gguf_path[0] ? 0 : -1;
}

static rv_model *model;
static rv_safetensors *ref;

static void read_ids(const char *ids_name, const char *off_name, uint32_t **ids, size_t **off, size_t *n_seqs)
{
    const rv_st_tensor *it = rv_safetensors_find(ref, ids_name), *ot = rv_safetensors_find(ref, off_name);
    size_t T = (size_t)it->n_elements;
    *n_seqs = (size_t)ot->n_elements - 1;
    *ids = malloc(T * 4);
    *off = malloc((*n_seqs + 1) * sizeof **off);
    for (size_t i = 0; i < T; i++) (*ids)[i] = rv_load_u32(it->data + 4 * i);
    for (size_t i = 0; i <= *n_seqs; i++) (*off)[i] = (size_t)rv_load_u64(ot->data + 8 * i);
}

static void smollm2_next_token_logits(void)
{
    uint32_t *ids;
    size_t *off, S;
    read_ids("ids", "offsets", &ids, &off, &S);
    size_t T = off[S], V = model->cfg.vocab_size;
    const rv_st_tensor *ti = rv_safetensors_find(ref, "top_ids"), *tv = rv_safetensors_find(ref, "top_logits");
    REQUIRE(ti && tv && ti->n_elements == T * 32, "reference tensors");
    float *top = malloc(T * 32 * 4), *logits = malloc(T * V * 4);
    rv_st_tensor_to_f32(tv, top);
    rv_forward *f = rv_forward_new(model);
    REQUIRE(rv_forward_run(f, ids, off, S, NULL, 0, NULL, logits) == 0, "%s", rv_error_get());
    double worst = 0, scale = 0;
    size_t same_top1 = 0;
    for (size_t t = 0; t < T; t++) {
        const float *row = logits + t * V;
        uint32_t best = 0;
        for (uint32_t v = 1; v < V; v++)
            if (row[v] > row[best]) best = v;
        uint32_t want = rv_load_u32(ti->data + 4 * t * 32);
        float margin = top[t * 32] - top[t * 32 + 1];
        same_top1 += best == want;
        CHECK(best == want || margin < 1e-3f, "position %zu: top-1 %u, reference %u (margin %g)", t, best, want,
              margin);
        for (int k = 0; k < 32; k++) {
            uint32_t id = rv_load_u32(ti->data + 4 * (t * 32 + (size_t)k));
            double d = fabs((double)row[id] - top[t * 32 + (size_t)k]);
            if (!(d <= worst)) worst = d;
            if (fabs(top[t * 32 + (size_t)k]) > scale) scale = fabs(top[t * 32 + (size_t)k]);
        }
    }
    printf("  SmolLM2 GGUF: top-1 agrees at %zu/%zu positions; top-32 logits max abs error %.3g (max |logit| %.3g)\n",
           same_top1, T, worst, scale);
    CHECK(worst <= 1e-3 * scale, "logit error %g", worst);
    rv_forward_free(f);
    free(top); free(logits); free(ids); free(off);
}

static void smollm2_eos_embeddings(void)
{
    uint32_t *ids;
    size_t *off, S;
    read_ids("emb_ids", "emb_offsets", &ids, &off, &S);
    size_t D = model->cfg.hidden_size;
    const rv_st_tensor *et = rv_safetensors_find(ref, "embeddings");
    REQUIRE(et && et->n_elements == S * D, "reference embeddings");
    float *want = malloc(S * D * 4), *got = malloc(S * D * 4);
    size_t *rows = malloc(S * sizeof *rows);
    rv_st_tensor_to_f32(et, want);
    for (size_t s = 0; s < S; s++) rows[s] = off[s + 1] - 1;
    rv_forward *f = rv_forward_new(model);
    REQUIRE(rv_forward_run(f, ids, off, S, rows, S, got, NULL) == 0, "%s", rv_error_get());
    rv_op_l2_normalize(got, S, D);
    double worst = 1;
    for (size_t s = 0; s < S; s++) {
        double c = 0;
        for (size_t i = 0; i < D; i++) c += (double)got[s * D + i] * want[s * D + i];
        if (c < worst) worst = c;
    }
    printf("  SmolLM2 GGUF: %zu EOS-pooled embeddings, min cosine vs reference %.7f\n", S, worst);
    CHECK(worst >= 0.999, "cosine %g", worst);
    rv_forward_free(f);
    free(want); free(got); free(rows); free(ids); free(off);
}

int main(void)
{
    test_suite = "model_smollm2";
    if (fetch_model() < 0) {
        printf("SKIP model_smollm2 (scripts/get-model.sh could not fetch the GGUF)\n");
        return 0;
    }
    model = rv_model_load(gguf_path);
    const char *root = getenv("RV_ROOT");
    char rp[1024];
    snprintf(rp, sizeof rp, "%s/tests/fixtures/model/smollm2_ref.safetensors", root ? root : ".");
    ref = rv_safetensors_open(rp);
    if (!model || !ref) {
        printf("FAIL model_smollm2/load: %s\n", rv_error_get());
        return 1;
    }
    RUN_TEST(smollm2_next_token_logits);
    RUN_TEST(smollm2_eos_embeddings);
    rv_safetensors_close(ref);
    rv_model_free(model);
    TEST_EXIT();
}
