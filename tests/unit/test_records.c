/* test_records.c — record codecs (doc, chunk, group, emb, run), their JSON
 * views round-tripping, bounds checks on truncated records, f16/bf16. */
#include "test.h"
#include "buf.h"
#include "error.h"
#include "half.h"
#include "json.h"
#include "records.h"

#include <math.h>

static void doc_codec(void)
{
    rv_buf b = {0};
    rv_doc d = {{"id1", 3}, {"", 0}, {"text with \0 nul", 15}}, e;
    REQUIRE(rv_doc_encode(&b, &d) == 0, "encode");
    REQUIRE(rv_doc_decode(b.data, b.len, &e) == 0, "%s", rv_error_get());
    CHECK(e.id.len == 3 && memcmp(e.id.p, "id1", 3) == 0, "id");
    CHECK(e.title.len == 0, "title");
    CHECK(e.text.len == 15 && memcmp(e.text.p, d.text.p, 15) == 0, "text");
    for (size_t cut = 0; cut < b.len; cut++)
        CHECK(rv_doc_decode(b.data, cut, &e) < 0, "truncated record (%zu bytes) accepted", cut);
    rv_buf_append(&b, "x", 1);
    CHECK(rv_doc_decode(b.data, b.len, &e) < 0, "trailing byte accepted");
    rv_buf_free(&b);
}

static void chunk_and_group_codec(void)
{
    rv_buf b = {0};
    uint32_t ids[] = {0, 1, 4294967295u, 128000};
    REQUIRE(rv_chunk_encode(&b, "d", 1, 7, "hello", 5, ids, 4) == 0, "encode");
    rv_chunk c;
    REQUIRE(rv_chunk_decode(b.data, b.len, &c) == 0, "%s", rv_error_get());
    CHECK(c.index == 7 && c.n_ids == 4 && rv_load_u32(c.ids + 8) == 4294967295u, "chunk fields");
    for (size_t cut = 0; cut < b.len; cut++)
        CHECK(rv_chunk_decode(b.data, cut, &c) < 0, "truncated chunk accepted at %zu", cut);

    REQUIRE(rv_group_begin(&b, "so", 2, 2) == 0, "group");
    rv_group_add(&b, "d1", 2, 0, "a", 1, ids, 2, 1.5f);
    rv_group_add(&b, "d2", 2, 3, "bb", 2, ids, 0, -0.25f);
    rv_rec_cursor cur;
    rv_str src;
    uint32_t n;
    REQUIRE(rv_group_open(&cur, b.data, b.len, &src, &n) == 0 && n == 2, "open");
    rv_group_member m;
    CHECK(rv_group_next(&cur, &m) == 0 && m.score == 1.5f && m.n_ids == 2, "m0");
    CHECK(rv_group_next(&cur, &m) == 0 && m.index == 3 && m.score == -0.25f && m.n_ids == 0, "m1");
    CHECK(rv_rec_end(&cur) == 0, "end");
    rv_buf_free(&b);
}

static void half_conversions(void)
{
    /* every f16 value converts to float and back exactly (NaN stays NaN) */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = rv_f16_to_f32((uint16_t)h);
        uint16_t back = rv_f32_to_f16(f);
        if (isnan(f))
            CHECK((back & 0x7c00) == 0x7c00 && (back & 0x3ff), "NaN %04x", h);
        else
            CHECK(back == h, "f16 %04x -> %g -> %04x", h, (double)f, back);
    }
    CHECK(rv_f32_to_f16(65520.0f) == 0x7c00, "overflow to inf");
    CHECK(rv_f32_to_f16(65519.0f) == 0x7bff, "max finite");
    CHECK(rv_f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00, "tie to even (down)");
    CHECK(rv_f32_to_f16(1.0f + 3.0f / 2048) == 0x3c02, "tie to even (up)");
    CHECK(rv_f32_to_f16(5.9604645e-08f) == 0x0001, "smallest subnormal");
    CHECK(rv_f32_to_f16(2.9802322e-08f) == 0x0000, "half of smallest subnormal rounds to even (0)");
    for (uint32_t h = 0; h < 65536; h++) {
        float f = rv_bf16_to_f32((uint16_t)h);
        if (!isnan(f))
            CHECK(rv_f32_to_bf16(f) == h, "bf16 %04x", h);
    }
    CHECK(rv_f32_to_bf16(1.00390625f) == 0x3f80, "bf16 tie to even");
    CHECK(rv_f32_to_bf16(1.01171875f) == 0x3f82, "bf16 tie to even up");
}

/* JSON -> record -> JSON reproduces the input line for each kind. */
static void json_views(void)
{
    const char *lines[][2] = {
        {"doc", "{\"_id\":\"1\",\"title\":\"T\\\"\",\"text\":\"caf\xc3\xa9\\n\\u0001\"}"},
        {"chunk", "{\"doc_id\":\"d\",\"chunk\":2,\"text\":\"x y\",\"ids\":[1,2,3]}"},
        {"group", "{\"src\":\"s\",\"members\":[{\"doc_id\":\"a\",\"chunk\":0,\"text\":\"t\",\"ids\":[],\"score\":1.5},"
                  "{\"doc_id\":\"b\",\"chunk\":1,\"text\":\"u\",\"ids\":[9],\"score\":0}]}"},
        {"emb", "{\"id\":\"e\",\"vector\":[0.100000001,-2,3.40282347e+38]}"},
        {"run", "{\"qid\":\"q\",\"hits\":[{\"docid\":\"d1\",\"score\":0.10000000000000001},"
                "{\"docid\":\"d2\",\"score\":-1}]}"},
    };
    rv_json_parser *jp = rv_json_parser_new();
    rv_buf rec = {0}, out = {0};
    for (size_t i = 0; i < sizeof lines / sizeof *lines; i++) {
        const rv_kind *k = rv_kind_find(lines[i][0]);
        REQUIRE(k, "kind %s", lines[i][0]);
        rv_json *v = rv_json_parse(jp, lines[i][1], strlen(lines[i][1]));
        REQUIRE(v, "%s", rv_error_get());
        rv_emb_json_state st = {0, RV_DTYPE_F32, 0};
        rec.len = out.len = 0;
        REQUIRE(k->from_json(v, &st, &rec) == 0, "%s: %s", k->name, rv_error_get());
        const char *meta = "{\"dim\":3,\"dtype\":\"f32\"}";
        REQUIRE(k->to_json(rec.data, rec.len, meta, strlen(meta), &out) == 0, "%s", rv_error_get());
        CHECK(out.len == strlen(lines[i][1]) && memcmp(out.data, lines[i][1], out.len) == 0,
              "%s: got %.*s", k->name, (int)out.len, (char *)out.data);
    }
    CHECK(rv_kind_find("nope") == NULL, "unknown kind");
    rv_buf_free(&rec);
    rv_buf_free(&out);
    rv_json_parser_free(jp);
}

static void emb_dtypes(void)
{
    float v[4] = {1.0f, -0.5f, 3.14159f, 1e-3f};
    rv_buf b = {0};
    rv_dtype types[] = {RV_DTYPE_F32, RV_DTYPE_F16, RV_DTYPE_BF16};
    for (int t = 0; t < 3; t++) {
        REQUIRE(rv_emb_encode(&b, "x", 1, v, 4, types[t]) == 0, "encode");
        CHECK(b.len == 4 + 1 + 4 * rv_dtype_size(types[t]), "size");
        rv_emb e;
        REQUIRE(rv_emb_decode(b.data, b.len, 4, types[t], &e) == 0, "%s", rv_error_get());
        for (uint32_t i = 0; i < 4; i++) {
            float got = rv_emb_get(&e, types[t], i);
            float tol = types[t] == RV_DTYPE_F32 ? 0 : types[t] == RV_DTYPE_F16 ? 1e-3f : 8e-3f;
            CHECK(fabsf(got - v[i]) <= tol * fabsf(v[i]), "%s[%u]: %g vs %g", rv_dtype_name(types[t]), i,
                  (double)got, (double)v[i]);
        }
        CHECK(rv_emb_decode(b.data, b.len, 5, types[t], &e) < 0, "wrong dim accepted");
    }
    uint32_t dim;
    rv_dtype t;
    CHECK(rv_emb_meta("{\"dim\":768,\"dtype\":\"bf16\"}", 26, &dim, &t) == 0 && dim == 768 && t == RV_DTYPE_BF16,
          "meta");
    CHECK(rv_emb_meta("{\"dim\":768}", 11, &dim, &t) < 0, "meta without dtype");
    rv_buf_free(&b);
}

int main(void)
{
    test_suite = "records";
    RUN_TEST(doc_codec);
    RUN_TEST(chunk_and_group_codec);
    RUN_TEST(half_conversions);
    RUN_TEST(json_views);
    RUN_TEST(emb_dtypes);
    TEST_EXIT();
}
