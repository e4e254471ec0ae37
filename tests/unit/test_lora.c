/* test_lora.c — PEFT LoRA adapters written by Python PEFT (retriever form on
 * AutoModel, LM form with rsLoRA on AutoModelForCausalLM) merged into the
 * base and compared with PEFT's merge_and_unload(); malformed adapters. */
#include "buf.h"
#include "error.h"
#include "forward.h"
#include "lora.h"
#include "model.h"
#include "safetensors.h"
#include "test.h"
#include "test_fixture.h"   /* fixture() */

#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static double rel_err(const float *a, const float *b, size_t n)
{
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= md)) md = isnan(d) ? INFINITY : d;
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return mb > 0 ? md / mb : md;
}

/* Runs base+adapter on the golden ids and compares `what` ("hidden" or "logits"). */
static void check_adapter(const char *base, const char *adapter, const char *what, int want_lm_form)
{
    rv_model *m = rv_model_load(fixture(base));
    REQUIRE(m, "%s", rv_error_get());
    char gpath[1100];
    snprintf(gpath, sizeof gpath, "%s/golden_merged.safetensors", fixture(adapter));
    rv_safetensors *g = rv_safetensors_open(gpath);
    REQUIRE(g, "%s", rv_error_get());
    const rv_st_tensor *ids_t = rv_safetensors_find(g, "ids"), *off_t = rv_safetensors_find(g, "offsets"),
                       *ref_t = rv_safetensors_find(g, what);
    REQUIRE(ids_t && off_t && ref_t, "golden tensors");
    size_t T = (size_t)ids_t->n_elements, S = (size_t)off_t->n_elements - 1;
    uint32_t *ids = malloc(T * 4);
    size_t *off = malloc((S + 1) * sizeof *off);
    for (size_t i = 0; i < T; i++) ids[i] = rv_load_u32(ids_t->data + 4 * i);
    for (size_t i = 0; i <= S; i++) off[i] = (size_t)rv_load_u64(off_t->data + 8 * i);
    float *ref = malloc(ref_t->n_elements * 4), *out = malloc(ref_t->n_elements * 4);
    rv_st_tensor_to_f32(ref_t, ref);
    int logits = strcmp(what, "logits") == 0;

    /* the base alone differs from the merged golden: the adapter matters */
    rv_forward *f = rv_forward_new(m);
    CHECK(rv_forward_run(f, ids, off, S, NULL, 0, logits ? NULL : out, logits ? out : NULL) == 0, "base fwd");
    double before = rel_err(out, ref, (size_t)ref_t->n_elements);
    rv_forward_free(f);

    rv_lora_info info;
    int rc = rv_lora_merge(m, fixture(adapter), &info);
    CHECK(rc == 0, "merge: %s", rv_error_get());
    CHECK(info.lm_form == want_lm_form, "key form %d", info.lm_form);
    f = rv_forward_new(m);
    CHECK(rv_forward_run(f, ids, off, S, NULL, 0, logits ? NULL : out, logits ? out : NULL) == 0, "fwd");
    double after = rel_err(out, ref, (size_t)ref_t->n_elements);
    printf("  %s: r=%u alpha=%g scale=%g rslora=%d merged=%zu targets=%s; %s rel error vs PEFT merged %.3g "
           "(base alone %.3g)\n", adapter, info.r, info.alpha, info.scale, info.rslora, info.n_merged, info.targets,
           what, after, before);
    CHECK(after <= 1e-4, "%s: merged rel error %g", adapter, after);
    CHECK(before > 1e-2, "%s: adapter changed little (%g)", adapter, before);
    rv_forward_free(f);
    free(ids); free(off); free(ref); free(out);
    rv_safetensors_close(g);
    rv_model_free(m);
}

static void lora_retriever_form_all_projections(void)
{
    check_adapter("llama_tied", "adapter_retriever", "hidden", 0);
}

static void lora_lm_form_rslora_subset(void)
{
    check_adapter("llama_untied", "adapter_lm", "logits", 1);
}

/* Writes a modified copy of the retriever adapter into a temp dir. */
static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
}

static void expect_merge_error(const char *dir, const char *needle)
{
    rv_model *m = rv_model_load(fixture("llama_tied"));
    REQUIRE(m, "%s", rv_error_get());
    rv_lora_info info;
    CHECK(rv_lora_merge(m, dir, &info) < 0, "accepted a bad adapter (%s)", needle);
    CHECK(strstr(rv_error_get(), needle) != NULL, "message \"%s\" lacks \"%s\"", rv_error_get(), needle);
    rv_model_free(m);
}

static void lora_rejects_bad_adapters(void)
{
    char dir[] = "/tmp/rv-lora-XXXXXX";
    REQUIRE(mkdtemp(dir), "mkdtemp");
    char cfg[256], w[256];
    snprintf(cfg, sizeof cfg, "%s/adapter_config.json", dir);
    snprintf(w, sizeof w, "%s/adapter_model.safetensors", dir);

    /* A tensor with a wrong shape for layer 0 q_proj (r=4, in=64) */
    float zeros[4 * 64] = {0};
    uint64_t sa[2] = {4, 32}, sb[2] = {64, 4};
    rv_st_write_tensor t[2] = {
        {"base_model.model.layers.0.self_attn.q_proj.lora_A.weight", RV_ST_F32, 2, sa, zeros},
        {"base_model.model.layers.0.self_attn.q_proj.lora_B.weight", RV_ST_F32, 2, sb, zeros},
    };
    REQUIRE(rv_safetensors_write(w, t, 2, NULL, 0) == 0, "%s", rv_error_get());
    write_file(cfg, "{\"peft_type\":\"LORA\",\"r\":4,\"lora_alpha\":8,\"target_modules\":[\"q_proj\"]}");
    expect_merge_error(dir, "expected shape [4, 64]");

    /* a target the config does not list */
    write_file(cfg, "{\"peft_type\":\"LORA\",\"r\":4,\"lora_alpha\":8,\"target_modules\":[\"v_proj\"]}");
    expect_merge_error(dir, "not in adapter_config.json's target_modules");

    write_file(cfg, "{\"peft_type\":\"LORA\",\"r\":4,\"use_dora\":true,\"target_modules\":[\"q_proj\"]}");
    expect_merge_error(dir, "use_dora");
    write_file(cfg, "{\"peft_type\":\"PREFIX_TUNING\"}");
    expect_merge_error(dir, "peft_type");
    write_file(cfg, "{\"peft_type\":\"LORA\",\"r\":4,\"target_modules\":\".*proj\"}");
    expect_merge_error(dir, "regular-expression");

    /* lora_A without lora_B, and an unrelated key */
    sa[1] = 64;
    REQUIRE(rv_safetensors_write(w, t, 1, NULL, 0) == 0, "%s", rv_error_get());
    write_file(cfg, "{\"peft_type\":\"LORA\",\"r\":4,\"target_modules\":[\"q_proj\"]}");
    expect_merge_error(dir, "without lora_B");
    rv_st_write_tensor bad = {"base_model.model.lm_head.lora_A.weight", RV_ST_F32, 2, sa, zeros};
    REQUIRE(rv_safetensors_write(w, &bad, 1, NULL, 0) == 0, "%s", rv_error_get());
    expect_merge_error(dir, "lm_head");
    /* layer beyond the model */
    t[0].name = "base_model.model.layers.9.self_attn.q_proj.lora_A.weight";
    REQUIRE(rv_safetensors_write(w, t, 1, NULL, 0) == 0, "%s", rv_error_get());
    expect_merge_error(dir, "layer 9");
    unlink(cfg);
    unlink(w);
    rmdir(dir);
}

int main(void)
{
    test_suite = "lora";
    RUN_TEST(lora_retriever_form_all_projections);
    RUN_TEST(lora_lm_form_rslora_subset);
    RUN_TEST(lora_rejects_bad_adapters);
    TEST_EXIT();
}
