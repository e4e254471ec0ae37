/* test_chunk.c — sentence splitting, word counting, sentence packing and
 * token windows (lib/sentence.c, lib/chunker.c), on cases whose answers
 * follow from the rules in sentence.h and chunker.h. */
#include "test.h"

#include "buf.h"
#include "chunker.h"
#include "error.h"
#include "sentence.h"
#include "tokenizer.h"

#include <sys/stat.h>

/* Splits text and compares the sentences with want (NULL-terminated). */
static void expect_sentences(const char *text, const char *const *want)
{
    rv_spans s = {0};
    REQUIRE(rv_sentences(text, strlen(text), &s) == 0, "split");
    size_t n_want = 0;
    while (want[n_want])
        n_want++;
    int ok = s.n == n_want;
    for (size_t i = 0; ok && i < n_want; i++)
        ok = s.v[i].end - s.v[i].start == strlen(want[i]) && memcmp(text + s.v[i].start, want[i], strlen(want[i])) == 0;
    if (!ok) {
        CHECK(0, "\"%s\": %zu sentences (want %zu)", text, s.n, n_want);
        for (size_t i = 0; i < s.n; i++)
            printf("    [%zu] \"%.*s\"\n", i, (int)(s.v[i].end - s.v[i].start), text + s.v[i].start);
    }
    rv_spans_free(&s);
}

#define S(...) ((const char *const[]){__VA_ARGS__, NULL})

static void sentence_boundaries(void)
{
    expect_sentences("One. Two! Three? Four", S("One.", "Two!", "Three?", "Four"));
    expect_sentences("  Leading and trailing.   ", S("Leading and trailing."));
    expect_sentences("He said \"Stop.\" Then he left.", S("He said \"Stop.\"", "Then he left."));
    expect_sentences("Wait... What?! (Really.) Yes.", S("Wait...", "What?!", "(Really.)", "Yes."));
    expect_sentences("Pi is 3.14 and e is 2.71. Done.", S("Pi is 3.14 and e is 2.71.", "Done."));
    expect_sentences("Visit example.com today. Now.", S("Visit example.com today.", "Now."));
    expect_sentences("ends lower. then continues", S("ends lower. then continues"));
    expect_sentences("First paragraph without a stop\n\nSecond one\n", S("First paragraph without a stop", "Second one"));
    expect_sentences("line one\nline two.", S("line one\nline two."));
    expect_sentences("Unicode end\xE2\x80\xA6 Next \xE2\x80\x9Cquoted.\xE2\x80\x9D Last",
                     S("Unicode end\xE2\x80\xA6", "Next \xE2\x80\x9Cquoted.\xE2\x80\x9D", "Last"));
    expect_sentences("", (const char *const[]){NULL});
    expect_sentences(" \n\t ", (const char *const[]){NULL});
}

static void abbreviations(void)
{
    expect_sentences("Mr. Smith met Dr. Jones. They talked.", S("Mr. Smith met Dr. Jones.", "They talked."));
    expect_sentences("J. R. R. Tolkien wrote it. Yes.", S("J. R. R. Tolkien wrote it.", "Yes."));
    expect_sentences("See Fig. 3 and No. 5 for details. Ok.", S("See Fig. 3 and No. 5 for details.", "Ok."));
    expect_sentences("Use e.g. apples, i.e. fruit. Fine.", S("Use e.g. apples, i.e. fruit.", "Fine."));
    expect_sentences("He lives in the U.S. and works. Good.", S("He lives in the U.S. and works.", "Good."));
    expect_sentences("It costs approx. 5 dollars. Cheap.", S("It costs approx. 5 dollars.", "Cheap."));
    expect_sentences("Apples, pears, etc. Then more.", S("Apples, pears, etc.", "Then more."));
}

static void word_counts(void)
{
    CHECK(rv_count_words("", 0) == 0, "empty");
    CHECK(rv_count_words("  a  b\tc\nd  ", 12) == 4, "ascii");
    CHECK(rv_count_words("a\xC2\xA0" "b\xE3\x80\x80" "c", 8) == 3, "NBSP and ideographic space separate words");
    CHECK(rv_count_words("\xE4\xB8\xAD\xE6\x96\x87", 6) == 1, "CJK without spaces is one word");
}

static void chunk_texts(const char *title, const char *text, uint32_t max_words, int include_title,
                        const char *const *want)
{
    rv_chunk_list l = {0};
    rv_buf b = {0};
    REQUIRE(rv_chunk_by_words(title, strlen(title), text, strlen(text), max_words, include_title, &l) == 0, "pack");
    size_t n_want = 0;
    while (want[n_want])
        n_want++;
    int ok = l.n == n_want;
    for (size_t i = 0; ok && i < n_want; i++) {
        rv_chunk_span_text(title, text, &l.v[i], &b);
        ok = b.len == strlen(want[i]) && memcmp(b.data, want[i], b.len) == 0 &&
             l.v[i].words == rv_count_words((const char *)b.data, b.len) && l.v[i].words <= max_words;
    }
    if (!ok) {
        CHECK(0, "title \"%s\", text \"%s\", %u words: %zu chunks (want %zu)", title, text, max_words, l.n, n_want);
        for (size_t i = 0; i < l.n; i++) {
            rv_chunk_span_text(title, text, &l.v[i], &b);
            printf("    [%zu] %u words \"%.*s\"\n", i, l.v[i].words, (int)b.len, b.data);
        }
    }
    rv_buf_free(&b);
    rv_chunk_list_free(&l);
}

static void packing(void)
{
    /* greedy: sentences of 2, 3, 1, 4 words into chunks of at most 5 */
    chunk_texts("", "A b. C d e. F. G h i j.", 5, 1, S("A b. C d e.", "F. G h i j."));
    /* the title is the first sentence; newlines inside a chunk are kept */
    chunk_texts("My Title", "One two.\nThree four.", 4, 1, S("My Title One two.", "Three four."));
    chunk_texts("My Title", "One two.\nThree four.", 4, 0, S("One two.\nThree four."));
    /* an over-long sentence is cut into pieces of max_words words */
    chunk_texts("", "a b c d e f g h. Short one.", 3, 1, S("a b c", "d e f", "g h.", "Short one."));
    chunk_texts("", "a b c d e f g h i. x.", 3, 1, S("a b c", "d e f", "g h i.", "x."));
    /* an over-long title too */
    chunk_texts("t1 t2 t3 t4", "Body.", 3, 1, S("t1 t2 t3", "t4 Body."));
    /* exactly at the limit */
    chunk_texts("", "a b c. d e f.", 3, 1, S("a b c.", "d e f."));
    chunk_texts("", "a b c. d e f.", 6, 1, S("a b c. d e f."));
}

static void empty_documents(void)
{
    chunk_texts("", "", 120, 1, (const char *const[]){NULL});
    chunk_texts("", "  \n\n \t", 120, 1, (const char *const[]){NULL});
    chunk_texts("Only title", "", 120, 1, S("Only title"));
    chunk_texts("Only title", "", 120, 0, (const char *const[]){NULL});
}

static void huge_document(void)
{
    /* 200,000 sentences of 7 words: chunks of 120 words hold 17 sentences */
    rv_buf text = {0};
    for (int i = 0; i < 200000; i++)
        rv_buf_printf(&text, "Sentence %d has exactly seven words here. ", i);
    rv_chunk_list l = {0};
    REQUIRE(rv_chunk_by_words("", 0, (const char *)text.data, text.len, 120, 1, &l) == 0, "pack");
    CHECK(l.n == (200000 + 16) / 17, "%zu chunks", l.n);
    size_t words = 0, bad = 0;
    for (size_t i = 0; i < l.n; i++) {
        words += l.v[i].words;
        if (l.v[i].words > 120 || (i + 1 < l.n && l.v[i].words != 119))
            bad++;
        if (i && l.v[i].text_start <= l.v[i - 1].text_end)
            bad++;
    }
    CHECK(words == 1400000 && bad == 0, "%zu words, %zu bad chunks", words, bad);
    /* one sentence of 1,000,000 words without punctuation */
    text.len = 0;
    for (int i = 0; i < 1000000; i++)
        rv_buf_append(&text, "w ", 2);
    REQUIRE(rv_chunk_by_words("", 0, (const char *)text.data, text.len, 120, 1, &l) == 0, "pack");
    CHECK(l.n == (1000000 + 119) / 120 && l.v[l.n - 1].words == 1000000 % 120, "%zu chunks", l.n);
    rv_chunk_list_free(&l);
    rv_buf_free(&text);
}

static void windows(void)
{
    size_t a, b;
    /* 10 ids, windows of 4 every 4: [0,4) [4,8) [8,10) */
    CHECK(rv_chunk_window(10, 4, 4, 0, &a, &b) && a == 0 && b == 4, "w0");
    CHECK(rv_chunk_window(10, 4, 4, 2, &a, &b) && a == 8 && b == 10, "w2");
    CHECK(!rv_chunk_window(10, 4, 4, 3, &a, &b), "w3");
    /* overlapping: windows of 4 every 2 over 8 ids: [0,4) [2,6) [4,8), then none */
    CHECK(rv_chunk_window(8, 4, 2, 2, &a, &b) && a == 4 && b == 8, "o2");
    CHECK(!rv_chunk_window(8, 4, 2, 3, &a, &b), "o3 repeats the end");
    CHECK(!rv_chunk_window(0, 4, 4, 0, &a, &b), "no ids, no window");
    /* stride larger than the window skips ids */
    CHECK(rv_chunk_window(10, 2, 5, 1, &a, &b) && a == 5 && b == 7, "gap");
}

static void window_texts(void)
{
    const char *dir = getenv("RV_TOKENIZERS");
    char path[512];
    snprintf(path, sizeof path, "%s/llama3/tokenizer.json", dir ? dir : "../shared/tokenizers");
    struct stat st;
    if (stat(path, &st) != 0) {
        printf("SKIP chunk/window_texts: %s not found\n", path);
        return;
    }
    rv_tokenizer *t = rv_tokenizer_load(path);
    REQUIRE(t, "%s", rv_error_get());
    rv_tok_state *s = rv_tok_state_new(t);
    /* a rare CJK character is two or more byte tokens: a window boundary
     * between them leaves the character out of both texts */
    const char *text = "x\xF0\xA0\x80\x80y";
    rv_ids ids = {0};
    REQUIRE(rv_tok_encode(t, s, text, strlen(text), 0, &ids) == 0 && ids.n >= 3, "encode: %zu ids", ids.n);
    rv_buf out = {0}, scratch = {0}, all = {0};
    for (size_t cut = 1; cut < ids.n; cut++) {
        out.len = all.len = 0;
        CHECK(rv_chunk_window_text(t, ids.v, cut, &out, &scratch) == 0, "left");
        rv_buf_append(&all, out.data, out.len);
        out.len = 0;
        CHECK(rv_chunk_window_text(t, ids.v + cut, ids.n - cut, &out, &scratch) == 0, "right");
        rv_buf_append(&all, out.data, out.len);
        /* either the character is whole on one side, or it is dropped */
        int whole = all.len == strlen(text) && memcmp(all.data, text, all.len) == 0;
        int dropped = all.len == 2 && memcmp(all.data, "xy", 2) == 0;
        CHECK(whole || dropped, "cut %zu: \"%.*s\"", cut, (int)all.len, all.data);
    }
    rv_buf_free(&out);
    rv_buf_free(&scratch);
    rv_buf_free(&all);
    rv_ids_free(&ids);
    rv_tok_state_free(s);
    rv_tokenizer_free(t);
}

int main(void)
{
    test_suite = "chunk";
    RUN_TEST(sentence_boundaries);
    RUN_TEST(abbreviations);
    RUN_TEST(word_counts);
    RUN_TEST(packing);
    RUN_TEST(empty_documents);
    RUN_TEST(huge_document);
    RUN_TEST(windows);
    RUN_TEST(window_texts);
    TEST_EXIT();
}
