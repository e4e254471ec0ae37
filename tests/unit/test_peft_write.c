/* test_peft_write.c — PEFT adapter output of rv-train: every key and shape
 * of adapter_model.safetensors follows PEFT's naming rule for the wrapped
 * model (retriever: base_model.model.layers.N…, LM:
 * base_model.model.model.layers.N…), adapter_config.json has the LoraConfig
 * fields, and the existing loader (lib/lora.c) merges what we write into
 * exactly W + (alpha/r) B A. */
#include "test.h"
#include "test_fixture.h"   /* fixture() */

#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "json.h"
#include "lora.h"
#include "model.h"
#include "peft_write.h"
#include "safetensors.h"
#include "train_model.h"

static char tmp_root[256];
static const char *tmp(const char *rel)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp_root, rel);
    return buf[k];
}

static void fill_random(rv_train_net *n)
{
    for (size_t i = 0; i < n->n_params; i++)
        n->params[i] = (float)(((double)(test_rand() >> 11) / 9007199254740992.0 - 0.5) * 0.2);
}

/* Checks names and shapes of every tensor against the PEFT rule. */
static void check_keys(const char *dir, const rv_train_net *n, int lm_form)
{
    char path[600];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    rv_safetensors *st = rv_safetensors_open(path);
    REQUIRE(st, "%s", rv_error_get());
    int n_proj = 0;
    for (int p = 0; p < RV_N_PROJ; p++)
        n_proj += (n->targets >> p) & 1;
    CHECK(st->n_tensors == (size_t)n->base->n_layers * n_proj * 2, "%zu tensors", st->n_tensors);
    const char *fmt = rv_safetensors_meta(st, "format");
    CHECK(fmt && strcmp(fmt, "pt") == 0, "format metadata");
    const char *prefix = lm_form ? "base_model.model.model.layers." : "base_model.model.layers.";
    const int D = n->base->hidden, QW = n->base->n_heads * n->base->head_dim;
    const int KW = n->base->n_kv_heads * n->base->head_dim, F = n->base->ffn;
    for (size_t i = 0; i < st->n_tensors; i++) {
        const rv_st_tensor *t = &st->tensors[i];
        CHECK(strncmp(t->name, prefix, strlen(prefix)) == 0, "%s: prefix", t->name);
        int layer = -1, used = 0;
        char group[16] = "", proj[16] = "", factor = 0;
        int got = sscanf(t->name + strlen(prefix), "%d.%15[a-z_].%15[a-z_].lora_%c.weight%n", &layer, group, proj,
                         &factor, &used);
        CHECK(got == 4 && (size_t)used == strlen(t->name + strlen(prefix)), "%s: form", t->name);
        int p = -1;
        for (int k = 0; k < RV_N_PROJ; k++)
            if (strcmp(proj, rv_proj_names[k]) == 0)
                p = k;
        CHECK(p >= 0 && ((n->targets >> p) & 1), "%s: projection", t->name);
        if (p < 0)
            continue;
        CHECK(strcmp(group, p <= RV_PROJ_O ? "self_attn" : "mlp") == 0, "%s: module group", t->name);
        CHECK(layer >= 0 && layer < n->base->n_layers, "%s: layer", t->name);
        const int ins[RV_N_PROJ] = {D, D, D, QW, D, D, F}, outs[RV_N_PROJ] = {QW, KW, KW, D, F, F, D};
        uint64_t want0 = factor == 'A' ? (uint64_t)n->rank : (uint64_t)outs[p];
        uint64_t want1 = factor == 'A' ? (uint64_t)ins[p] : (uint64_t)n->rank;
        CHECK(t->dtype == RV_ST_F32 && t->n_dims == 2 && t->shape[0] == want0 && t->shape[1] == want1,
              "%s: shape %llux%llu, want %llux%llu", t->name, (unsigned long long)t->shape[0],
              (unsigned long long)t->shape[1], (unsigned long long)want0, (unsigned long long)want1);
        CHECK(factor == 'A' || factor == 'B', "%s: factor", t->name);
    }
    rv_safetensors_close(st);

    /* adapter_config.json */
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    FILE *f = fopen(path, "rb");
    REQUIRE(f, "%s", path);
    char text[4096];
    size_t len = fread(text, 1, sizeof text, f);
    fclose(f);
    rv_json_parser *jp = rv_json_parser_new();
    const rv_json *j = rv_json_parse(jp, text, len);
    CHECK(j, "config JSON: %s", rv_error_get());
    if (j) {
        const rv_json *v = rv_json_get(j, "peft_type");
        CHECK(v && v->type == RV_JSON_STRING && strcmp(v->u.string, "LORA") == 0, "peft_type");
        v = rv_json_get(j, "task_type");
        CHECK(v && strcmp(v->u.string, lm_form ? "CAUSAL_LM" : "FEATURE_EXTRACTION") == 0, "task_type");
        v = rv_json_get(j, "r");
        CHECK(v && v->type == RV_JSON_NUMBER && v->u.number == n->rank, "r");
        v = rv_json_get(j, "lora_alpha");
        CHECK(v && v->type == RV_JSON_NUMBER && v->u.number == n->alpha, "lora_alpha");
        v = rv_json_get(j, "bias");
        CHECK(v && strcmp(v->u.string, "none") == 0, "bias");
        v = rv_json_get(j, "target_modules");
        CHECK(v && v->type == RV_JSON_ARRAY && (int)v->len == n_proj, "target_modules");
        static const char *known[] = {"alpha_pattern", "base_model_name_or_path", "bias", "fan_in_fan_out",
                                      "inference_mode", "init_lora_weights", "layers_pattern",
                                      "layers_to_transform", "lora_alpha", "lora_dropout", "modules_to_save",
                                      "peft_type", "r", "rank_pattern", "revision", "target_modules", "task_type",
                                      "use_dora", "use_rslora"};
        for (size_t m = 0; m < j->len; m++) {
            int ok = 0;
            for (size_t k = 0; k < sizeof known / sizeof *known; k++)
                ok |= strcmp(j->u.members[m].key, known[k]) == 0;
            CHECK(ok, "unknown LoraConfig key %s", j->u.members[m].key);
        }
    }
    rv_json_parser_free(jp);
}

/* Writes, merges with lib/lora.c into a fresh model, compares with W + s B A. */
static void round_trip(const char *targets, int lm_form, int rank, double alpha)
{
    rv_model *m = rv_model_load(fixture("llama_tied"));
    REQUIRE(m, "%s", rv_error_get());
    rv_train_base base;
    REQUIRE(rv_train_base_init(&base, m) == 0, "%s", rv_error_get());
    rv_proj_mask mask;
    REQUIRE(rv_proj_mask_parse(targets, &mask) == 0, "%s", rv_error_get());
    rv_train_net n;
    REQUIRE(rv_train_net_init(&n, &base, rank, alpha, mask, 7, 1, lm_form) == 0, "%s", rv_error_get());
    fill_random(&n);
    const char *dir = tmp(lm_form ? "lm" : "retriever");
    rv_peft_opts po = {"tiny", 0.1, lm_form, "{\"x\":1}"};
    REQUIRE(rv_peft_write(dir, &n, &po) == 0, "%s", rv_error_get());
    check_keys(dir, &n, lm_form);

    rv_model *merged = rv_model_load(fixture("llama_tied"));
    REQUIRE(merged, "%s", rv_error_get());
    rv_lora_info info;
    int rc = rv_lora_merge(merged, dir, &info);
    CHECK(rc == 0, "merge: %s", rv_error_get());
    if (rc == 0) {
        CHECK(info.r == (unsigned)rank && info.alpha == alpha && info.lm_form == lm_form, "info r %u alpha %g form %d",
              info.r, info.alpha, info.lm_form);
        size_t want_merged = 0;
        for (int l = 0; l < base.n_layers; l++)
            for (int p = 0; p < RV_N_PROJ; p++) {
                size_t oa, ob;
                int in, out;
                if (!rv_train_net_tensor(&n, l, p, &oa, &ob, &in, &out))
                    continue;
                want_merged++;
                rv_weight *w = rv_model_projection(merged, (size_t)l, rv_proj_names[p]);
                float *got = malloc((size_t)in * out * sizeof *got);
                REQUIRE(got, "oom");
                rv_weight_rows_f32(w, 0, (size_t)out, got);
                const float *w0 = base.proj_w[(size_t)l * RV_N_PROJ + p];
                double max_err = 0, max_delta = 0;
                for (int o = 0; o < out; o++)
                    for (int i = 0; i < in; i++) {
                        double d = 0;
                        for (int r = 0; r < rank; r++)
                            d += (double)n.params[ob + (size_t)o * rank + r] * n.params[oa + (size_t)r * in + i];
                        d *= alpha / rank;
                        double e = fabs(got[(size_t)o * in + i] - (w0[(size_t)o * in + i] + d));
                        max_err = e > max_err ? e : max_err;
                        max_delta = fabs(d) > max_delta ? fabs(d) : max_delta;
                    }
                CHECK(max_err < 1e-6 && max_delta > 1e-4, "layer %d %s: max err %g (delta %g)", l,
                      rv_proj_names[p], max_err, max_delta);
                free(got);
            }
        CHECK(info.n_merged == want_merged, "merged %zu, want %zu", info.n_merged, want_merged);
    }
    rv_model_free(merged);
    rv_train_net_free(&n);
    rv_train_base_free(&base);
    rv_model_free(m);
}

static void test_retriever_all_targets(void) { round_trip("q,k,v,o,gate,up,down", 0, 4, 8.0); }
static void test_lm_all_targets(void) { round_trip("q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", 1, 3, 1.5); }
static void test_retriever_subset(void) { round_trip("v,q,down", 0, 2, 64.0); }

static void test_targets_parse(void)
{
    rv_proj_mask m;
    CHECK(rv_proj_mask_parse("q,k", &m) == 0 && m == 3u, "q,k");
    CHECK(rv_proj_mask_parse("down_proj", &m) == 0 && m == 1u << RV_PROJ_DOWN, "down_proj");
    CHECK(rv_proj_mask_parse("q,lm_head", &m) < 0 && strstr(rv_error_get(), "lm_head"), "unknown name");
    CHECK(rv_proj_mask_parse("qq", &m) < 0, "prefix of nothing");
    CHECK(rv_proj_mask_parse("", &m) < 0, "empty");
}

int main(void)
{
    snprintf(tmp_root, sizeof tmp_root, "/tmp/rv_test_peft_%d", (int)getpid());
    mkdir(tmp_root, 0777);
    RUN_TEST(test_targets_parse);
    RUN_TEST(test_retriever_all_targets);
    RUN_TEST(test_lm_all_targets);
    RUN_TEST(test_retriever_subset);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp_root);
    TEST_EXIT();
}
