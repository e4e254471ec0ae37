/* chunker.c — sentence packing and token windows (see chunker.h). */
#include "chunker.h"
#include "error.h"
#include "unicode.h"

#include <stdlib.h>
#include <string.h>

/* A unit to pack: a sentence or a piece of an over-long one, in the title
 * (is_title) or the text. */
typedef struct {
    int is_title;
    size_t start, end;
    uint32_t words;
} unit;

typedef struct {
    const char *title, *text;
    uint32_t max_words;
    rv_chunk_list *out;
    rv_chunk_span cur;
    int have_cur;
} packer;

static int emit(packer *p)
{
    if (!p->have_cur)
        return 0;
    rv_chunk_list *l = p->out;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        rv_chunk_span *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return rv_error_set("out of memory packing chunks");
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = p->cur;
    p->have_cur = 0;
    return 0;
}

static int add_unit(packer *p, const unit *u)
{
    if (p->have_cur && p->cur.words + u->words > p->max_words && emit(p) < 0)
        return -1;
    if (!p->have_cur) {
        p->cur = (rv_chunk_span){0, 0, 0, 0, 0};
        p->have_cur = 1;
    }
    if (u->is_title) {
        if (p->cur.title_end == p->cur.title_start)
            p->cur.title_start = u->start;
        p->cur.title_end = u->end;
    } else {
        if (p->cur.text_end == p->cur.text_start)
            p->cur.text_start = u->start;
        p->cur.text_end = u->end;
    }
    p->cur.words += u->words;
    return 0;
}

static int is_space_at(const uint8_t *t, const unsigned char *s, size_t n, size_t i, size_t *len)
{
    int c = rv_uc_class_at(t, s + i, n - i, len);
    return c == RV_UC_SPACE || c == RV_UC_NEWLINE;
}

/* Adds one sentence, cut into pieces of max_words words when longer. */
static int add_sentence(packer *p, const char *base, int is_title, size_t a, size_t b)
{
    const uint8_t *t = rv_unicode_table();
    if (!t)
        return -1;
    const unsigned char *s = (const unsigned char *)base;
    uint32_t words = rv_count_words(base + a, b - a);
    if (words == 0)
        return 0;
    if (words <= p->max_words) {
        unit u = {is_title, a, b, words};
        return add_unit(p, &u);
    }
    size_t i = a, piece_start = 0, piece_end = 0;
    uint32_t in_piece = 0;
    while (i < b) {
        size_t len;
        if (is_space_at(t, s, b, i, &len)) {
            i += len;
            continue;
        }
        size_t w0 = i;
        while (i < b && !is_space_at(t, s, b, i, &len))
            i += len;
        if (in_piece == 0)
            piece_start = w0;
        piece_end = i;
        if (++in_piece == p->max_words) {
            unit u = {is_title, piece_start, piece_end, in_piece};
            if (add_unit(p, &u) < 0)
                return -1;
            in_piece = 0;
        }
    }
    if (in_piece) {
        unit u = {is_title, piece_start, piece_end, in_piece};
        return add_unit(p, &u);
    }
    return 0;
}

int rv_chunk_by_words(const char *title, size_t title_len, const char *text, size_t text_len, uint32_t max_words,
                      int include_title, rv_chunk_list *out)
{
    out->n = 0;
    if (max_words == 0)
        return rv_error_set("chunk size in words must be at least 1");
    packer p = {title, text, max_words, out, {0, 0, 0, 0, 0}, 0};
    if (include_title && title_len) {
        if (rv_sentences(title, title_len, &out->sentences) < 0)
            return -1;
        /* the whole title is one unit (trimmed), however many periods it has */
        if (out->sentences.n &&
            add_sentence(&p, title, 1, out->sentences.v[0].start, out->sentences.v[out->sentences.n - 1].end) < 0)
            return -1;
    }
    if (rv_sentences(text, text_len, &out->sentences) < 0)
        return -1;
    for (size_t i = 0; i < out->sentences.n; i++)
        if (add_sentence(&p, text, 0, out->sentences.v[i].start, out->sentences.v[i].end) < 0)
            return -1;
    return emit(&p);
}

int rv_chunk_span_text(const char *title, const char *text, const rv_chunk_span *c, rv_buf *out)
{
    out->len = 0;
    int has_title = c->title_end > c->title_start, has_text = c->text_end > c->text_start;
    if (has_title && rv_buf_append(out, title + c->title_start, c->title_end - c->title_start) < 0)
        return -1;
    if (has_title && has_text && rv_buf_putc(out, ' ') < 0)
        return -1;
    if (has_text && rv_buf_append(out, text + c->text_start, c->text_end - c->text_start) < 0)
        return -1;
    return 0;
}

void rv_chunk_list_free(rv_chunk_list *l)
{
    free(l->v);
    rv_spans_free(&l->sentences);
    memset(l, 0, sizeof *l);
}

int rv_chunk_window(size_t n_ids, uint32_t size, uint32_t stride, size_t k, size_t *start, size_t *end)
{
    if (size == 0 || stride == 0)
        return 0;
    /* windows start at 0, stride, 2·stride, …; window k exists if it starts
     * inside the ids and the previous window did not already reach the end */
    size_t s = k * (size_t)stride;
    if (k && (s / k != stride))
        return 0; /* overflow */
    if (s >= n_ids)
        return 0;
    if (k > 0) {
        size_t prev_end = (k - 1) * (size_t)stride + size;
        if (prev_end >= n_ids)
            return 0;
    }
    *start = s;
    *end = s + size < n_ids ? s + size : n_ids;
    return 1;
}

int rv_chunk_window_text(const rv_tokenizer *t, const uint32_t *ids, size_t n, rv_buf *out, rv_buf *scratch)
{
    scratch->len = 0;
    if (rv_tok_decode(t, ids, n, 0, scratch) < 0)
        return -1;
    const unsigned char *s = scratch->data;
    size_t a = 0, b = scratch->len;
    /* leading continuation bytes belong to a character begun in the
     * previous window */
    while (a < b && a < 3 && (s[a] & 0xC0) == 0x80)
        a++;
    /* a trailing incomplete sequence continues in the next window */
    size_t k = b;
    while (k > a && b - k < 4 && (s[k - 1] & 0xC0) == 0x80)
        k--;
    if (k > a) {
        unsigned lead = s[k - 1];
        size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
        if (lead >= 0xC0 && b - (k - 1) < need)
            b = k - 1;
    }
    return rv_utf8_lossy_append(s + a, b - a, out);
}
