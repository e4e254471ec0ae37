/* test_tok_parity.c — our tokenizer against Hugging Face `tokenizers`: the
 * golden ids in tests/fixtures/tok (made by scripts/make-tok-fixtures.py)
 * for llama3, qwen2.5, gpt2 (../shared/tokenizers) and SmolLM2 (GGUF from
 * scripts/get-model.sh, or $RV_SMOLLM2_GGUF). Checks every corpus document
 * and random string id for id, the add-special and specials-as-text
 * variants, decode(encode(x)) == x (NFC(x) for NFC tokenizers), and HF's
 * decode of random id lists (lossy UTF-8 included). */
#include "test.h"

#include "bpe.h"
#include "buf.h"
#include "error.h"
#include "json.h"
#include "tokenizer.h"
#include "unicode.h"

#include <stdint.h>
#include <sys/stat.h>
#include <zstd.h>

#define FIX "tests/fixtures/tok/"

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

/* JSONL lines of a decompressed file -> array of (ptr,len) into the buffer. */
typedef struct { char *p; size_t n; } line;
static line *split_lines(rv_buf *b, size_t *n)
{
    size_t cap = 1024, k = 0;
    line *ls = malloc(cap * sizeof *ls);
    char *p = (char *)b->data, *end = p + b->len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            nl = end;
        if (k == cap)
            ls = realloc(ls, (cap *= 2) * sizeof *ls);
        ls[k++] = (line){p, (size_t)(nl - p)};
        p = nl + 1;
    }
    *n = k;
    return ls;
}

typedef struct {
    char **texts;
    size_t *lens;
    size_t n;
} texts;

static int load_texts(const char *path, texts *t)
{
    rv_buf b = {0};
    if (read_zst(path, &b) < 0)
        return -1;
    size_t n;
    line *ls = split_lines(&b, &n);
    rv_json_parser *jp = rv_json_parser_new();
    t->texts = calloc(n, sizeof *t->texts);
    t->lens = calloc(n, sizeof *t->lens);
    t->n = n;
    for (size_t i = 0; i < n; i++) {
        const rv_json *v = rv_json_parse(jp, ls[i].p, ls[i].n);
        const rv_json *s = rv_json_get(v, "text");
        if (!s)
            return -1;
        t->texts[i] = malloc(s->len + 1);
        memcpy(t->texts[i], s->u.string, s->len + 1);
        t->lens[i] = s->len;
    }
    rv_json_parser_free(jp);
    free(ls);
    rv_buf_free(&b);
    return 0;
}

static void free_texts(texts *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->texts[i]);
    free(t->texts);
    free(t->lens);
}

typedef struct {
    rv_buf raw;
    size_t n;
    size_t *off; /* per entry: offset of its count */
} idfile;

static int load_ids(const char *path, idfile *f)
{
    memset(f, 0, sizeof *f);
    if (read_zst(path, &f->raw) < 0 || f->raw.len < 12 || memcmp(f->raw.data, "RVTOKFX1", 8) != 0)
        return -1;
    f->n = rv_load_u32(f->raw.data + 8);
    f->off = calloc(f->n ? f->n : 1, sizeof *f->off);
    size_t p = 12;
    for (size_t i = 0; i < f->n; i++) {
        if (p + 4 > f->raw.len)
            return -1;
        f->off[i] = p;
        p += 4 + 4 * (size_t)rv_load_u32(f->raw.data + p);
    }
    return p == f->raw.len ? 0 : -1;
}

static const unsigned char *ids_at(const idfile *f, size_t i, uint32_t *n)
{
    *n = rv_load_u32(f->raw.data + f->off[i]);
    return f->raw.data + f->off[i] + 4;
}

static texts corpus, randoms;
static int have_texts;

/* Compares our encoding of text with golden entry i; prints the first
 * difference of the first few failures. */
static int same_ids(const rv_tokenizer *t, rv_tok_state *st, const char *text, size_t len, int flags,
                    const idfile *f, size_t i, int *shown, const char *what)
{
    rv_ids ids = {0};
    uint32_t n;
    const unsigned char *want = ids_at(f, i, &n);
    int ok = rv_tok_encode(t, st, text, len, flags, &ids) == 0 && ids.n == n;
    size_t k = 0;
    for (; ok && k < n; k++)
        if (ids.v[k] != rv_load_u32(want + 4 * k))
            ok = 0;
    if (!ok && (*shown)++ < 3) {
        size_t d = 0;
        while (d < ids.n && d < n && ids.v[d] == rv_load_u32(want + 4 * d))
            d++;
        printf("  %s entry %zu (%zu bytes): got %zu ids, want %u; first difference at %zu: got %u want %u\n"
               "    text: \"%.*s\"\n",
               what, i, len, ids.n, n, d, d < ids.n ? ids.v[d] : 0, d < n ? rv_load_u32(want + 4 * d) : 0,
               (int)(len < 120 ? len : 120), text);
    }
    rv_ids_free(&ids);
    return ok;
}

static void check_tokenizer(const char *name, const char *path)
{
    char fname[256];
    snprintf(fname, sizeof fname, FIX "%s.ids.zst", name);
    idfile f;
    REQUIRE(load_ids(fname, &f) == 0, "%s: cannot read", fname);
    rv_tokenizer *t = rv_tokenizer_load(path);
    REQUIRE(t, "%s: %s", path, rv_error_get());
    rv_tok_state *st = rv_tok_state_new(t);
    size_t n_hand = (f.n - corpus.n - randoms.n) / 2;
    REQUIRE(f.n == corpus.n + randoms.n + 2 * n_hand, "%s: %zu entries do not fit the corpus", fname, f.n);
    int shown = 0;
    size_t ok_corpus = 0, ok_random = 0, ok_variants = 0, n_ids = 0, bytes = 0, roundtrip_ok = 0;
    rv_buf dec = {0}, want = {0};
    for (size_t i = 0; i < corpus.n; i++) {
        ok_corpus += same_ids(t, st, corpus.texts[i], corpus.lens[i], 0, &f, i, &shown, "corpus");
        uint32_t n;
        ids_at(&f, i, &n);
        n_ids += n;
        bytes += corpus.lens[i];
        /* round trip through our own ids */
        rv_ids ids = {0};
        dec.len = want.len = 0;
        rv_tok_encode(t, st, corpus.texts[i], corpus.lens[i], 0, &ids);
        rv_tok_decode(t, ids.v, ids.n, 0, &dec);
        rv_nfc_append((const unsigned char *)corpus.texts[i], corpus.lens[i], &want);
        int nfc = strcmp(name, "qwen2.5") == 0; /* the only one with an NFC normalizer */
        const unsigned char *x = nfc ? want.data : (const unsigned char *)corpus.texts[i];
        size_t xl = nfc ? want.len : corpus.lens[i];
        if (dec.len == xl && (xl == 0 || memcmp(dec.data, x, xl) == 0))
            roundtrip_ok++;
        else if (shown++ < 3)
            printf("  corpus entry %zu: decode(encode(x)) != x\n", i);
        rv_ids_free(&ids);
    }
    for (size_t i = 0; i < randoms.n; i++)
        ok_random += same_ids(t, st, randoms.texts[i], randoms.lens[i], 0, &f, corpus.n + i, &shown, "random");
    size_t first_hand = corpus.n - n_hand;
    for (size_t h = 0; h < n_hand; h++) {
        size_t c = first_hand + h, e = corpus.n + randoms.n + 2 * h;
        ok_variants += same_ids(t, st, corpus.texts[c], corpus.lens[c], RV_TOK_ADD_SPECIAL, &f, e, &shown,
                                "add-special");
        ok_variants += same_ids(t, st, corpus.texts[c], corpus.lens[c], RV_TOK_SPECIAL_AS_TEXT, &f, e + 1, &shown,
                                "special-as-text");
    }
    printf("  %s: corpus %zu/%zu documents identical (%zu ids, %zu bytes), random %zu/%zu, variants %zu/%zu, "
           "round trip %zu/%zu\n",
           name, ok_corpus, corpus.n, n_ids, bytes, ok_random, randoms.n, ok_variants, 2 * n_hand, roundtrip_ok,
           corpus.n);
    CHECK(ok_corpus == corpus.n, "%s: %zu corpus documents differ", name, corpus.n - ok_corpus);
    CHECK(ok_random == randoms.n, "%s: %zu random strings differ", name, randoms.n - ok_random);
    CHECK(ok_variants == 2 * n_hand, "%s: %zu variants differ", name, 2 * n_hand - ok_variants);
    CHECK(roundtrip_ok == corpus.n, "%s: %zu round trips differ", name, corpus.n - roundtrip_ok);

    /* decode of random id lists, as HF shows it (lossy UTF-8) */
    snprintf(fname, sizeof fname, FIX "%s.decode.jsonl.zst", name);
    rv_buf raw = {0};
    REQUIRE(read_zst(fname, &raw) == 0, "%s: cannot read", fname);
    size_t nl;
    line *ls = split_lines(&raw, &nl);
    rv_json_parser *jp = rv_json_parser_new();
    size_t dec_ok = 0;
    for (size_t i = 0; i < nl; i++) {
        const rv_json *v = rv_json_parse(jp, ls[i].p, ls[i].n);
        const rv_json *arr = rv_json_get(v, "ids");
        uint32_t *ids = malloc((arr->len + 1) * sizeof *ids);
        for (size_t k = 0; k < arr->len; k++)
            ids[k] = (uint32_t)arr->u.items[k].u.number;
        int ok = 1;
        for (int skip = 0; skip < 2; skip++) {
            const rv_json *w = rv_json_get(v, skip ? "text_skip" : "text");
            rv_buf bytes_out = {0}, shown_text = {0};
            if (rv_tok_decode(t, ids, arr->len, skip ? RV_TOK_SKIP_SPECIAL : 0, &bytes_out) < 0 ||
                rv_utf8_lossy_append(bytes_out.data, bytes_out.len, &shown_text) < 0 || shown_text.len != w->len ||
                (w->len && memcmp(shown_text.data, w->u.string, w->len) != 0))
                ok = 0;
            rv_buf_free(&bytes_out);
            rv_buf_free(&shown_text);
        }
        if (!ok && shown++ < 6)
            printf("  decode line %zu differs\n", i + 1);
        dec_ok += ok;
        free(ids);
    }
    printf("  %s: decode %zu/%zu id lists identical\n", name, dec_ok, nl);
    CHECK(dec_ok == nl, "%s: %zu decodes differ", name, nl - dec_ok);
    rv_json_parser_free(jp);
    free(ls);
    rv_buf_free(&raw);
    rv_buf_free(&dec);
    rv_buf_free(&want);
    rv_tok_state_free(st);
    rv_tokenizer_free(t);
    free(f.off);
    rv_buf_free(&f.raw);
}

static const char *shared_dir(void)
{
    const char *d = getenv("RV_TOKENIZERS");
    return d ? d : "../shared/tokenizers";
}

static int dir_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static void parity_llama3(void)
{
    char p[512];
    snprintf(p, sizeof p, "%s/llama3/tokenizer.json", shared_dir());
    check_tokenizer("llama3", p);
}

static void parity_qwen25(void)
{
    char p[512];
    snprintf(p, sizeof p, "%s/qwen2.5", shared_dir());
    check_tokenizer("qwen2.5", p);
}

static void parity_gpt2(void)
{
    char p[512];
    snprintf(p, sizeof p, "%s/gpt2", shared_dir());
    check_tokenizer("gpt2", p);
}

/* The SmolLM2 GGUF: $RV_SMOLLM2_GGUF, else the last line printed by
 * scripts/get-model.sh (which downloads and caches it). */
static int smollm2_path(char *out, size_t cap)
{
    const char *e = getenv("RV_SMOLLM2_GGUF");
    if (e && *e) {
        snprintf(out, cap, "%s", e);
        return dir_exists(out);
    }
    if (!dir_exists("scripts/get-model.sh"))
        return 0;
    FILE *p = popen("sh scripts/get-model.sh 2>/dev/null", "r");
    if (!p)
        return 0;
    char buf[4096];
    out[0] = 0;
    while (fgets(buf, sizeof buf, p))
        snprintf(out, cap, "%s", buf);
    int rc = pclose(p);
    size_t n = strlen(out);
    while (n && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = 0;
    return rc == 0 && n && dir_exists(out);
}

int main(void)
{
    test_suite = "tok_parity";
    if (!dir_exists(shared_dir())) {
        printf("SKIP tok_parity: %s not found (set RV_TOKENIZERS)\n", shared_dir());
        return 0;
    }
    have_texts = load_texts(FIX "corpus.jsonl.zst", &corpus) == 0 && load_texts(FIX "random.jsonl.zst", &randoms) == 0;
    if (!have_texts) {
        printf("FAIL tok_parity/fixtures: cannot read " FIX "corpus.jsonl.zst or random.jsonl.zst\n");
        return 1;
    }
    RUN_TEST(parity_llama3);
    RUN_TEST(parity_qwen25);
    RUN_TEST(parity_gpt2);
    char gguf[4096];
    if (smollm2_path(gguf, sizeof gguf)) {
        setenv("RV_SMOLLM2_GGUF_FOUND", gguf, 1);
        test_failed_now = 0;
        check_tokenizer("smollm2", gguf);
        test_count++;
        if (test_failed_now)
            test_failures++;
        printf("%s tok_parity/parity_smollm2\n", test_failed_now ? "FAIL" : "PASS");
    } else {
        printf("SKIP tok_parity/parity_smollm2: SmolLM2 GGUF not available (scripts/get-model.sh failed or "
               "missing; set RV_SMOLLM2_GGUF)\n");
    }
    free_texts(&corpus);
    free_texts(&randoms);
    TEST_EXIT();
}
