/* test_model.c — model loading: a GGUF file laid out by llama.cpp's
 * converter (permuted Q/K, rope_freqs, BF16) gives transformers' outputs;
 * config parsing; and clear errors for corrupt or truncated safetensors and
 * GGUF files, wrong shapes, missing tensors and unknown architectures. */
#include "buf.h"
#include "error.h"
#include "forward.h"
#include "model.h"
#include "model_config.h"
#include "safetensors.h"
#include "test.h"
#include "test_fixture.h"   /* fixture() */

#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[32];

static const char *tmp(const char *name)
{
    static char buf[4][400];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc(*len + 1);
    if (fread(p, 1, *len, f) != *len) {
        free(p);
        p = NULL;
    }
    fclose(f);
    return p;
}

static void write_all(const char *path, const void *p, size_t len)
{
    FILE *f = fopen(path, "wb");
    fwrite(p, 1, len, f);
    fclose(f);
}

static void copy_file(const char *from, const char *to)
{
    size_t len;
    unsigned char *p = read_all(from, &len);
    write_all(to, p, len);
    free(p);
}

static void gguf_llama_matches_transformers(void)
{
    rv_model *m = rv_model_load(fixture("llama_tied.gguf"));
    REQUIRE(m, "%s", rv_error_get());
    CHECK(m->format == RV_MODEL_GGUF && m->cfg.tie_word_embeddings && m->cfg.n_kv_heads == 2, "config");
    CHECK(m->cfg.eos_id == 2 && m->cfg.bos_id == 1, "special ids");
    rv_safetensors *g = rv_safetensors_open(fixture("llama_tied/golden.safetensors"));
    REQUIRE(g, "%s", rv_error_get());
    const rv_st_tensor *ids_t = rv_safetensors_find(g, "ids"), *off_t = rv_safetensors_find(g, "offsets"),
                       *lg_t = rv_safetensors_find(g, "logits");
    size_t T = (size_t)ids_t->n_elements, S = (size_t)off_t->n_elements - 1, V = m->cfg.vocab_size;
    uint32_t *ids = malloc(T * 4);
    size_t *off = malloc((S + 1) * sizeof *off);
    for (size_t i = 0; i < T; i++) ids[i] = rv_load_u32(ids_t->data + 4 * i);
    for (size_t i = 0; i <= S; i++) off[i] = (size_t)rv_load_u64(off_t->data + 8 * i);
    float *ref = malloc(T * V * 4), *out = malloc(T * V * 4);
    rv_st_tensor_to_f32(lg_t, ref);
    rv_forward *f = rv_forward_new(m);
    CHECK(rv_forward_run(f, ids, off, S, NULL, 0, NULL, out) == 0, "%s", rv_error_get());
    double md = 0, mb = 0;
    for (size_t i = 0; i < T * V; i++) {
        if (fabs(out[i] - ref[i]) > md) md = fabs(out[i] - ref[i]);
        if (fabs(ref[i]) > mb) mb = fabs(ref[i]);
    }
    printf("  llama_tied.gguf: logits max rel error vs transformers %.3g\n", md / mb);
    CHECK(md / mb <= 1e-4, "rel error %g", md / mb);
    rv_forward_free(f);
    free(ids); free(off); free(ref); free(out);
    rv_safetensors_close(g);
    rv_model_free(m);
}

static void expect_load_error(const char *path, const char *needle)
{
    rv_model *m = rv_model_load(path);
    CHECK(!m, "%s loaded (expected an error with \"%s\")", path, needle);
    CHECK(strstr(rv_error_get(), needle) != NULL, "message \"%s\" lacks \"%s\"", rv_error_get(), needle);
    rv_model_free(m);
}

static void expect_st_error(const void *bytes, size_t len, const char *needle)
{
    write_all(tmp("x.safetensors"), bytes, len);
    rv_safetensors *st = rv_safetensors_open(tmp("x.safetensors"));
    CHECK(!st, "accepted (expected \"%s\")", needle);
    CHECK(strstr(rv_error_get(), needle) != NULL, "message \"%s\" lacks \"%s\"", rv_error_get(), needle);
    rv_safetensors_close(st);
}

static void st_with_header(const char *json, size_t data_len)
{
    size_t hl = strlen(json);
    unsigned char *b = calloc(8 + hl + data_len, 1);
    rv_store_u64(b, hl);
    memcpy(b + 8, json, hl);
    write_all(tmp("x.safetensors"), b, 8 + hl + data_len);
    free(b);
}

static void expect_header_error(const char *json, size_t data_len, const char *needle)
{
    st_with_header(json, data_len);
    rv_safetensors *st = rv_safetensors_open(tmp("x.safetensors"));
    CHECK(!st, "header %s accepted (expected \"%s\")", json, needle);
    CHECK(strstr(rv_error_get(), needle) != NULL, "message \"%s\" lacks \"%s\"", rv_error_get(), needle);
    rv_safetensors_close(st);
}

static void safetensors_corrupt_files(void)
{
    expect_st_error("abc", 3, "header length alone needs 8");
    unsigned char big[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'};
    expect_st_error(big, 10, "exceeds the file");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "outside the 4-byte");
    expect_header_error("{\"a\":{\"dtype\":\"F8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, "dtype");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "shape holds 12 bytes");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "overlap");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0, "shape[0]");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]", 4, "header JSON");
    expect_header_error("[1,2]", 0, "expected a JSON object");
    /* a valid small file round-trips through the writer */
    float v[3] = {1.5f, -2.0f, 0.25f};
    uint64_t shape[1] = {3};
    rv_st_write_tensor t = {"v", RV_ST_F32, 1, shape, v};
    const char *meta[2] = {"format", "pt"};
    REQUIRE(rv_safetensors_write(tmp("ok.safetensors"), &t, 1, meta, 1) == 0, "%s", rv_error_get());
    rv_safetensors *st = rv_safetensors_open(tmp("ok.safetensors"));
    REQUIRE(st, "%s", rv_error_get());
    const rv_st_tensor *x = rv_safetensors_find(st, "v");
    float back[3];
    CHECK(x && rv_st_tensor_to_f32(x, back) == 0 && memcmp(back, v, sizeof v) == 0, "round trip");
    CHECK(rv_safetensors_meta(st, "format") && strcmp(rv_safetensors_meta(st, "format"), "pt") == 0, "meta");
    rv_safetensors_close(st);
}

/* Builds a model directory in tmpdir from llama_tied with a modified config
 * and/or a truncated weights file. */
static void make_model_dir(const char *name, const char *config_from, const char *to, size_t truncate_to)
{
    char dir[256], p[300];
    snprintf(dir, sizeof dir, "%s", tmp(name));
    mkdir(dir, 0755);
    size_t len;
    unsigned char *cfg = read_all(fixture("llama_tied/config.json"), &len);
    cfg[len] = 0;
    char *text = (char *)cfg, *hit = config_from ? strstr(text, config_from) : NULL;
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "wb");
    if (hit) {
        fwrite(text, 1, (size_t)(hit - text), f);
        fputs(to, f);
        fputs(hit + strlen(config_from), f);
    } else
        fputs(text, f);
    fclose(f);
    free(cfg);
    unsigned char *w = read_all(fixture("llama_tied/model.safetensors"), &len);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    write_all(p, w, truncate_to && truncate_to < len ? truncate_to : len);
    free(w);
}

static void model_load_errors(void)
{
    make_model_dir("trunc", NULL, NULL, 5000);
    expect_load_error(tmp("trunc"), "truncated");
    expect_load_error(tmp("trunc"), "model.safetensors");
    make_model_dir("shape", "\"hidden_size\": 64", "\"hidden_size\": 32", 0);
    expect_load_error(tmp("shape"), "expected shape");
    make_model_dir("arch", "\"model_type\": \"llama\"", "\"model_type\": \"gpt2\"", 0);
    expect_load_error(tmp("arch"), "model_type: expected \"llama\" or \"qwen2\"");
    make_model_dir("heads", "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3", 0);
    expect_load_error(tmp("heads"), "not a multiple");
    make_model_dir("layers", "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3", 0);
    expect_load_error(tmp("layers"), "layers.2.input_layernorm.weight: not found");
    make_model_dir("rope", "\"rope_type\": \"llama3\"", "\"rope_type\": \"yarn\"", 0);
    expect_load_error(tmp("rope"), "rope_type");
    expect_load_error(tmp("no-such-dir"), "no-such-dir");
    mkdir(tmp("empty"), 0755);
    expect_load_error(tmp("empty"), "no config.json");

    /* sharded: a shard missing, a tensor missing from its shard */
    mkdir(tmp("sharded"), 0755);
    const char *names[] = {"config.json", "model.safetensors.index.json", "model-00001-of-00004.safetensors",
                           "model-00002-of-00004.safetensors", "model-00003-of-00004.safetensors"};
    for (int i = 0; i < 5; i++) {
        char from[300], to[300];
        snprintf(from, sizeof from, "llama_untied/%s", names[i]);
        snprintf(to, sizeof to, "sharded/%s", names[i]);
        copy_file(fixture(from), tmp(to));
    }
    expect_load_error(tmp("sharded"), "model-00004-of-00004.safetensors: cannot open");

    /* GGUF: unknown architecture, truncated file, not a GGUF at all */
    expect_load_error(fixture("unknown_arch.gguf"), "general.architecture: expected \"llama\" or \"qwen2\"");
    size_t len;
    unsigned char *g = read_all(fixture("llama_tied.gguf"), &len);
    write_all(tmp("t.gguf"), g, len - 1000);
    expect_load_error(tmp("t.gguf"), "truncated");
    write_all(tmp("t.gguf"), g, 600);
    expect_load_error(tmp("t.gguf"), "t.gguf");
    free(g);
    write_all(tmp("junk.gguf"), "this is not a model file at all", 31);
    expect_load_error(tmp("junk.gguf"), "not a GGUF file");
}

static void config_special_tokens(void)
{
    /* tokenizer_config.json's eos_token wins over config.json, resolved
     * through added_tokens_decoder; a list-valued eos_token_id takes the first */
    mkdir(tmp("tok"), 0755);
    FILE *f = fopen(tmp("tok/config.json"), "wb");
    fputs("{\"model_type\":\"qwen2\",\"hidden_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":4,"
          "\"num_key_value_heads\":2,\"intermediate_size\":32,\"vocab_size\":300,\"eos_token_id\":[7,8],"
          "\"bos_token_id\":null,\"rope_theta\":1e6,\"rms_norm_eps\":1e-6}", f);
    fclose(f);
    rv_model_config c;
    CHECK(rv_model_config_load_hf(tmp("tok"), &c) == 0, "%s", rv_error_get());
    CHECK(c.eos_id == 7 && c.bos_id == -1 && c.arch == RV_ARCH_QWEN2 && c.qkv_bias && !c.o_bias,
          "eos %lld bos %lld", (long long)c.eos_id, (long long)c.bos_id);
    CHECK(c.tie_word_embeddings == 1 && c.head_dim == 16, "defaults");
    f = fopen(tmp("tok/tokenizer_config.json"), "wb");
    fputs("{\"eos_token\":{\"content\":\"<|end|>\"},\"bos_token\":\"<s>\",\"added_tokens_decoder\":"
          "{\"280\":{\"content\":\"<|end|>\"},\"281\":{\"content\":\"<s>\"}}}", f);
    fclose(f);
    CHECK(rv_model_config_load_hf(tmp("tok"), &c) == 0, "%s", rv_error_get());
    CHECK(c.eos_id == 280 && c.bos_id == 281, "eos %lld bos %lld", (long long)c.eos_id, (long long)c.bos_id);
}

/* the llama3 frequencies as transformers computes them (values printed by
 * torch for theta 500000, head_dim 64, factor 32, low 1, high 4, orig 8192,
 * i.e. Llama-3.2-1B; independent of this code) at a few indices */
static void rope_llama3_frequencies(void)
{
    rv_model_config c = {0};
    c.head_dim = 64;
    c.rope_theta = 500000.0;
    c.rope_type = RV_ROPE_LLAMA3;
    c.rope_factor = 32;
    c.rope_low_freq_factor = 1;
    c.rope_high_freq_factor = 4;
    c.rope_original_max_position = 8192;
    float f[32];
    rv_rope_inv_freq(&c, f);
    static const struct { int i; double v; } want[] = {
        {0, 1.0}, {8, 0.0376060307}, {16, 0.000429556705}, {18, 1.94616387e-05}, {20, 8.57025589e-06},
        {24, 1.66196742e-06}, {31, 9.41830649e-08}};
    for (size_t k = 0; k < sizeof want / sizeof *want; k++)
        CHECK(fabs(f[want[k].i] - want[k].v) <= 2e-6 * want[k].v, "inv_freq[%d] = %.9g, want %.9g", want[k].i,
              f[want[k].i], want[k].v);
}

int main(void)
{
    test_suite = "model";
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rv-model-XXXXXX");
    if (!mkdtemp(tmpdir))
        return 1;
    RUN_TEST(gguf_llama_matches_transformers);
    RUN_TEST(safetensors_corrupt_files);
    RUN_TEST(model_load_errors);
    RUN_TEST(config_special_tokens);
    RUN_TEST(rope_llama3_frequencies);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        return 1;
    TEST_EXIT();
}
