/* test_dequant.c — every ggml block format against gguf-py's NumPy
 * dequantiser (tests/fixtures/model/dequant.safetensors, written by
 * scripts/make-model-fixtures.py), and the refusals. */
#include "buf.h"
#include "dequant.h"
#include "error.h"
#include "gguf.h"
#include "safetensors.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>

static const char *types[] = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K",
                              "Q4_K", "Q5_K", "Q6_K", "F16", "BF16"};

static void dequant_matches_gguf_py(void)
{
    const char *root = getenv("RV_ROOT");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/model/dequant.safetensors", root ? root : ".");
    rv_safetensors *st = rv_safetensors_open(path);
    REQUIRE(st, "%s", rv_error_get());
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        char name[64];
        snprintf(name, sizeof name, "%s.raw", types[k]);
        const rv_st_tensor *raw = rv_safetensors_find(st, name);
        snprintf(name, sizeof name, "%s.expected", types[k]);
        const rv_st_tensor *exp = rv_safetensors_find(st, name);
        snprintf(name, sizeof name, "%s.type", types[k]);
        const rv_st_tensor *ty = rv_safetensors_find(st, name);
        CHECK(raw && exp && ty, "fixture tensors for %s", types[k]);
        if (!raw || !exp || !ty)
            continue;
        uint32_t type = rv_load_u32(ty->data);
        size_t n = (size_t)exp->n_elements;
        CHECK(rv_ggml_type_bytes(type, n) == raw->n_bytes, "%s: %zu bytes for %zu elements", types[k],
              raw->n_bytes, n);
        float *want = malloc(n * 4), *got = malloc(n * 4);
        rv_st_tensor_to_f32(exp, want);
        CHECK(rv_dequant(type, raw->data, n, got) == 0, "%s: %s", types[k], rv_error_get());
        double worst = 0, scale = 0;
        for (size_t i = 0; i < n; i++) {
            double d = fabs((double)got[i] - want[i]);
            if (!(d <= worst)) worst = isnan(d) ? INFINITY : d;
            if (fabs(want[i]) > scale) scale = fabs(want[i]);
        }
        CHECK(worst <= 1e-6 * scale, "%s: max abs error %g (scale %g)", types[k], worst, scale);
        free(want);
        free(got);
    }
    rv_safetensors_close(st);
}

static void dequant_refuses(void)
{
    unsigned char b[64] = {0};
    float out[64];
    CHECK(rv_dequant(RV_GGML_Q8_K, b, 256, out) < 0, "Q8_K accepted");
    CHECK(rv_dequant(99, b, 32, out) < 0, "type 99 accepted");
    CHECK(rv_dequant(RV_GGML_Q4_0, b, 33, out) < 0, "ragged count accepted");
    CHECK(strstr(rv_error_get(), "block") != NULL, "message: %s", rv_error_get());
    CHECK(rv_dequant_supported(RV_GGML_Q6_K) && !rv_dequant_supported(RV_GGML_Q8_1), "supported set");
}

int main(void)
{
    test_suite = "dequant";
    RUN_TEST(dequant_matches_gguf_py);
    RUN_TEST(dequant_refuses);
    TEST_EXIT();
}
