/* test_tok_unicode.c — the tokenizer's building blocks: code point classes
 * and NFC against HF's own (fixtures from scripts/make-tok-fixtures.py --unicode),
 * UTF-8 decoding and lossy repair, the pre-tokenizer scanners on cases whose
 * splits HF printed, and the two BPE merge paths against each other. */
#include "test.h"

#include "bpe.h"
#include "buf.h"
#include "error.h"
#include "json.h"
#include "pretokenize.h"
#include "tokenizer.h"
#include "unicode.h"

#include <sys/stat.h>
#include <zstd.h>

static int read_zst(const char *path, rv_buf *out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    ZSTD_DStream *z = ZSTD_createDStream();
    unsigned char in[1 << 16], tmp[1 << 16];
    size_t k;
    int rc = 0;
    ZSTD_initDStream(z);
    while (rc == 0 && (k = fread(in, 1, sizeof in, f)) > 0) {
        ZSTD_inBuffer ib = {in, k, 0};
        while (ib.pos < ib.size) {
            ZSTD_outBuffer ob = {tmp, sizeof tmp, 0};
            size_t r = ZSTD_decompressStream(z, &ob, &ib);
            if (ZSTD_isError(r) || rv_buf_append(out, tmp, ob.pos) < 0) {
                rc = -1;
                break;
            }
        }
    }
    ZSTD_freeDStream(z);
    fclose(f);
    return rc;
}

static void classes_match_hf(void)
{
    rv_buf b = {0};
    REQUIRE(read_zst("tests/fixtures/tok/uclass.bin.zst", &b) == 0 && b.len == 0x110000, "uclass fixture");
    const uint8_t *t = rv_unicode_table();
    REQUIRE(t, "table");
    size_t bad = 0;
    for (uint32_t cp = 0; cp < 0x110000; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF)
            continue;
        int ours = t[cp] & RV_UC_CLASS_MASK;
        if (ours == RV_UC_NEWLINE)
            ours = RV_UC_SPACE;
        if (ours != b.data[cp] && bad++ < 5)
            CHECK(0, "U+%04X: class %d, HF %d", cp, ours, b.data[cp]);
    }
    CHECK(bad == 0, "%zu code points differ", bad);
    rv_buf_free(&b);
}

static void nfc_matches_hf(void)
{
    rv_buf b = {0}, out = {0};
    REQUIRE(read_zst("tests/fixtures/tok/nfc.jsonl.zst", &b) == 0, "nfc fixture");
    rv_json_parser *jp = rv_json_parser_new();
    const uint8_t *t = rv_unicode_table();
    size_t n = 0, bad = 0;
    char *p = (char *)b.data, *end = p + b.len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        const rv_json *v = rv_json_parse(jp, p, (size_t)(nl - p));
        const rv_json *in = rv_json_get(v, "in"), *want = rv_json_get(v, "out");
        REQUIRE(in && want, "line %zu", n + 1);
        out.len = 0;
        if (rv_nfc_quick_check(t, (const unsigned char *)in->u.string, in->len)) {
            rv_buf_append(&out, in->u.string, in->len);
        } else {
            CHECK(rv_nfc_append((const unsigned char *)in->u.string, in->len, &out) == 0, "nfc");
        }
        if ((out.len != want->len || memcmp(out.data, want->u.string, want->len) != 0) && bad++ < 5)
            CHECK(0, "probe %zu: NFC differs from HF", n + 1);
        n++;
        p = nl + 1;
    }
    CHECK(bad == 0, "%zu of %zu NFC probes differ", bad, n);
    CHECK(n > 1000, "only %zu probes", n);
    rv_json_parser_free(jp);
    rv_buf_free(&b);
    rv_buf_free(&out);
}

static void utf8_decode_and_lossy(void)
{
    uint32_t cp;
    CHECK(rv_utf8_decode((const unsigned char *)"\xC3\xA9", 2, &cp) == 2 && cp == 0xE9, "é");
    CHECK(rv_utf8_decode((const unsigned char *)"\xC0\x80", 2, &cp) == 1 && cp == RV_UTF8_INVALID, "overlong");
    CHECK(rv_utf8_decode((const unsigned char *)"\xED\xA0\x80", 3, &cp) == 1 && cp == RV_UTF8_INVALID, "surrogate");
    CHECK(rv_utf8_decode((const unsigned char *)"\xF0\x9F\x98", 3, &cp) == 1 && cp == RV_UTF8_INVALID, "truncated");
    CHECK(rv_utf8_decode((const unsigned char *)"\xF4\x90\x80\x80", 4, &cp) == 1, "above U+10FFFF");
    /* maximal subparts (Unicode 15 §3.9, Table 3-8's example) */
    static const char in[] = "\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64";
    static const char want[] = "a\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" "b\xEF\xBF\xBD" "c\xEF\xBF\xBD\xEF\xBF\xBD" "d";
    rv_buf out = {0};
    CHECK(rv_utf8_lossy_append((const unsigned char *)in, sizeof in - 1, &out) == 0, "lossy");
    CHECK(out.len == sizeof want - 1 && memcmp(out.data, want, out.len) == 0, "lossy result: %.*s", (int)out.len,
          out.data);
    rv_buf_free(&out);
}

typedef struct { char pieces[16][32]; int n; } piece_list;

static int collect(void *ctx, const unsigned char *p, size_t n)
{
    piece_list *l = ctx;
    if (l->n < 16 && n < 32) {
        memcpy(l->pieces[l->n], p, n);
        l->pieces[l->n][n] = 0;
    }
    l->n++;
    return 0;
}

static void check_split(rv_pre_kind kind, const char *text, const char *const *want, int n_want)
{
    rv_pre_stage st = {kind, 0};
    piece_list l = {.n = 0};
    rv_buf scratch = {0};
    rv_pre_run(&st, 1, rv_unicode_table(), (const unsigned char *)text, strlen(text), &scratch, collect, &l);
    int ok = l.n == n_want;
    for (int i = 0; ok && i < n_want; i++)
        ok = strcmp(l.pieces[i], want[i]) == 0;
    CHECK(ok, "%s split of \"%s\": %d pieces (want %d)", rv_pre_kind_name(kind), text, l.n, n_want);
    rv_buf_free(&scratch);
}

/* Expected pieces as HF tokenizers 0.23 printed them (pre_tokenize_str of
 * the llama3 tokenizer, byte-level form mapped back to text). */
static void llama3_splits(void)
{
    check_split(RV_PRE_LLAMA3, "1234567", (const char *const[]){"123", "456", "7"}, 3);
    check_split(RV_PRE_LLAMA3, "  \n\n  x", (const char *const[]){"  \n\n", " ", " x"}, 3);
    check_split(RV_PRE_LLAMA3, "\t\tb", (const char *const[]){"\t", "\tb"}, 2);
    check_split(RV_PRE_LLAMA3, "x'\xC5\xBF" "a", (const char *const[]){"x", "'\xC5\xBF", "a"}, 3);
    check_split(RV_PRE_LLAMA3, "a \xC2\xA0" "b", (const char *const[]){"a", " ", "\xC2\xA0" "b"}, 3);
    check_split(RV_PRE_LLAMA3, "x'S", (const char *const[]){"x", "'S"}, 2);
    check_split(RV_PRE_QWEN2, "123", (const char *const[]){"1", "2", "3"}, 3);
    check_split(RV_PRE_DIGITS_SINGLE, "ab12c", (const char *const[]){"ab", "1", "2", "c"}, 4);
    check_split(RV_PRE_GPT2, "it's  ok!!", (const char *const[]){"it", "'s", " ", " ok", "!!"}, 5);
    /* an invalid byte is one "other" character: it joins punctuation */
    check_split(RV_PRE_LLAMA3, "a\xFF!b", (const char *const[]){"a", "\xFF!", "b"}, 3);
}

static void bpe_paths_agree(void)
{
    const char *dir = getenv("RV_TOKENIZERS");
    char path[512];
    snprintf(path, sizeof path, "%s/llama3/tokenizer.json", dir ? dir : "../shared/tokenizers");
    struct stat st;
    if (stat(path, &st) != 0) {
        printf("SKIP tok_unicode/bpe_paths_agree: %s not found\n", path);
        return;
    }
    rv_tokenizer *t = rv_tokenizer_load(path);
    REQUIRE(t, "load");
    const rv_bpe *b = rv_tokenizer_bpe(t);
    static const char alphabet[] = "etaoinshrdlu ETAOIN0123.,'\xC3\xA9\xE4\xB8\xAD";
    unsigned char word[200];
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = 1 + test_rand() % (iter < 2000 ? 40 : 199);
        for (size_t i = 0; i < n; i++)
            word[i] = (unsigned char)alphabet[test_rand() % (sizeof alphabet - 1)];
        rv_ids a = {0}, h = {0};
        CHECK(rv_bpe_merge_word(b, word, n, 0, &a) == 0 && rv_bpe_merge_word(b, word, n, 1, &h) == 0, "merge");
        int same = a.n == h.n && memcmp(a.v, h.v, a.n * sizeof *a.v) == 0;
        CHECK(same, "word %d (%zu bytes): small path %zu ids, heap path %zu ids", iter, n, a.n, h.n);
        rv_ids_free(&a);
        rv_ids_free(&h);
        if (!same)
            break;
    }
    rv_tokenizer_free(t);
}

static void bad_tokenizers_are_refused(void)
{
    static const struct { const char *json, *needle; } cases[] = {
        {"{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", "model.type"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Metaspace\"}}",
         "pre_tokenizer"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Split\","
         "\"pattern\":{\"Regex\":\"\\\\w+\"},\"behavior\":\"Isolated\",\"invert\":false}}",
         "pre_tokenizer.pattern.Regex"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"normalizer\":{\"type\":\"NFKC\"},"
         "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false}}",
         "normalizer"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]},"
         "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false}}",
         "model.merges[0]"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"added_tokens\":[{\"id\":1,\"content\":\"x\","
         "\"lstrip\":true}],\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false}}",
         "added_tokens[0].lstrip"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rv_tokenizer *t = rv_tokenizer_from_json(cases[i].json, strlen(cases[i].json), "t.json");
        CHECK(!t, "case %zu accepted", i);
        CHECK(strstr(rv_error_get(), cases[i].needle), "case %zu: message \"%s\" lacks %s", i, rv_error_get(),
              cases[i].needle);
        rv_tokenizer_free(t);
    }
}

/* A tiny byte-level tokenizer: merges apply lowest rank first, leftmost on
 * ties; ignore_merges returns whole-vocabulary words; invalid UTF-8 is
 * encoded byte by byte and decodes back to the same bytes. */
static void tiny_tokenizer(void)
{
    static const char json[] =
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"c\":2,\"ab\":3,\"bc\":4,\"abc\":5,\"\xC3\xBF\":6,"
        "\"!\":7,\"\xC4\xA0\":8,\"\xC4\xA0" "a\":9},"
        "\"merges\":[\"b c\",\"a b\",\"\xC4\xA0 a\"]},"
        "\"added_tokens\":[{\"id\":10,\"content\":\"<s>\",\"special\":true,\"normalized\":false}],"
        "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true},"
        "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\"}},"
        "{\"Sequence\":{\"id\":\"A\"}}],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[10]}}},"
        "\"decoder\":{\"type\":\"ByteLevel\"}}";
    rv_tokenizer *t = rv_tokenizer_from_json(json, strlen(json), "tiny");
    REQUIRE(t, "%s", rv_error_get());
    rv_tok_state *s = rv_tok_state_new(t);
    rv_ids ids = {0};
    /* "abc": (b,c) has rank 0, so a + bc; "abc" is in the vocab, but without
     * ignore_merges the merges decide */
    CHECK(rv_tok_encode(t, s, "abc", 3, 0, &ids) == 0 && ids.n == 2 && ids.v[0] == 0 && ids.v[1] == 4, "abc");
    ids.n = 0;
    CHECK(rv_tok_encode(t, s, "ab<s> a\xFF", 8, RV_TOK_ADD_SPECIAL, &ids) == 0, "encode");
    CHECK(ids.n == 5 && ids.v[0] == 10 && ids.v[1] == 3 && ids.v[2] == 10 && ids.v[3] == 9 && ids.v[4] == 6,
          "ids: %zu", ids.n);
    rv_buf out = {0};
    CHECK(rv_tok_decode(t, ids.v + 1, ids.n - 1, 0, &out) == 0 && out.len == 8 &&
              memcmp(out.data, "ab<s> a\xFF", 8) == 0,
          "decode");
    out.len = 0;
    CHECK(rv_tok_decode(t, ids.v, ids.n, RV_TOK_SKIP_SPECIAL, &out) == 0 && out.len == 5, "skip special");
    uint32_t bad = 99;
    CHECK(rv_tok_decode(t, &bad, 1, 0, &out) < 0, "unknown id accepted");
    rv_buf_free(&out);
    rv_ids_free(&ids);
    rv_tok_state_free(s);
    rv_tokenizer_free(t);
}

int main(void)
{
    test_suite = "tok_unicode";
    RUN_TEST(classes_match_hf);
    RUN_TEST(nfc_matches_hf);
    RUN_TEST(utf8_decode_and_lossy);
    RUN_TEST(llama3_splits);
    RUN_TEST(bpe_paths_agree);
    RUN_TEST(bad_tokenizers_are_refused);
    RUN_TEST(tiny_tokenizer);
    TEST_EXIT();
}
