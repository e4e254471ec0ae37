/* tokenizer.c — loading tokenizer definitions (tokenizer.json, GPT-2 files,
 * GGUF metadata) and encoding/decoding with them (see tokenizer.h). */
#define _POSIX_C_SOURCE 200809L
#include "tokenizer.h"
#include "error.h"
#include "gguf.h"
#include "json.h"
#include "pretokenize.h"
#include "unicode.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

/* ------------------------------------------------------------ byte alphabet
 * GPT-2's bytes_to_unicode: printable bytes stand for themselves, the other
 * 68 bytes map to U+0100.. in byte order. */
static uint16_t byte_to_char[256];
static int16_t char_to_byte[512];   /* code points < 512; -1 = not in the alphabet */

static pthread_once_t alphabet_once = PTHREAD_ONCE_INIT;

static void build_alphabet_once(void)
{
    for (int i = 0; i < 512; i++)
        char_to_byte[i] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        uint16_t c = printable ? (uint16_t)b : (uint16_t)(256 + extra++);
        byte_to_char[b] = c;
        char_to_byte[c] = (int16_t)b;
    }
}

static void build_alphabet(void) { pthread_once(&alphabet_once, build_alphabet_once); }

/* Byte-level text -> raw bytes appended to out. Returns 1 when every
 * character is in the alphabet, 0 otherwise (out then holds a prefix). */
static int bytelevel_to_bytes(const char *s, size_t n, rv_buf *out)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t len = rv_utf8_decode(u + i, n - i, &cp);
        if (cp >= 512 || char_to_byte[cp] < 0)
            return 0;
        if (rv_buf_putc(out, char_to_byte[cp]) < 0)
            return -1;
        i += len;
    }
    return 1;
}

/* ------------------------------------------------------------ added-token trie */

typedef struct {
    uint32_t first_child, next_sibling;  /* UINT32_MAX = none */
    uint32_t token;                      /* index into added[], UINT32_MAX = none */
    unsigned char byte;
} trie_node;

typedef struct {
    trie_node *nodes;
    size_t n, cap;
    uint32_t root[256];                  /* child of the root per first byte */
    int empty;
} trie;

static void trie_init(trie *tr)
{
    memset(tr, 0, sizeof *tr);
    for (int i = 0; i < 256; i++)
        tr->root[i] = UINT32_MAX;
    tr->empty = 1;
}

static uint32_t trie_new_node(trie *tr, unsigned char byte)
{
    if (tr->n == tr->cap) {
        size_t cap = tr->cap ? tr->cap * 2 : 256;
        trie_node *nn = realloc(tr->nodes, cap * sizeof *nn);
        if (!nn) {
            rv_error_set("out of memory building the added-token trie");
            return UINT32_MAX;
        }
        tr->nodes = nn;
        tr->cap = cap;
    }
    tr->nodes[tr->n] = (trie_node){UINT32_MAX, UINT32_MAX, UINT32_MAX, byte};
    return (uint32_t)tr->n++;
}

static int trie_insert(trie *tr, const unsigned char *s, size_t n, uint32_t token)
{
    uint32_t cur = UINT32_MAX;
    for (size_t i = 0; i < n; i++) {
        uint32_t *link = cur == UINT32_MAX ? &tr->root[s[i]] : &tr->nodes[cur].first_child;
        uint32_t c = *link;
        if (cur != UINT32_MAX)
            while (c != UINT32_MAX && tr->nodes[c].byte != s[i])
                c = tr->nodes[c].next_sibling;
        if (c == UINT32_MAX) {
            c = trie_new_node(tr, s[i]);
            if (c == UINT32_MAX)
                return -1;
            /* re-derive the link: nodes may have moved */
            if (cur == UINT32_MAX) {
                tr->root[s[i]] = c;
            } else {
                tr->nodes[c].next_sibling = tr->nodes[cur].first_child;
                tr->nodes[cur].first_child = c;
            }
        }
        cur = c;
    }
    if (tr->nodes[cur].token == UINT32_MAX)
        tr->nodes[cur].token = token; /* the first definition wins */
    tr->empty = 0;
    return 0;
}

/* Longest token starting at s[i]; returns its length (0 if none). */
static size_t trie_longest(const trie *tr, const unsigned char *s, size_t n, size_t i, uint32_t *token)
{
    uint32_t c = tr->root[s[i]];
    size_t best = 0, k = i;
    while (c != UINT32_MAX) {
        k++;
        if (tr->nodes[c].token != UINT32_MAX) {
            best = k - i;
            *token = tr->nodes[c].token;
        }
        if (k >= n)
            break;
        uint32_t ch = tr->nodes[c].first_child;
        while (ch != UINT32_MAX && tr->nodes[ch].byte != s[k])
            ch = tr->nodes[ch].next_sibling;
        c = ch;
    }
    return best;
}

/* ------------------------------------------------------------ the tokenizer */

typedef struct {
    uint32_t id;
    int special, normalized;
    size_t off, len;           /* content in t->strings */
} added_token;

struct rv_tokenizer {
    char *name;
    const char *source_kind;
    uint64_t file_hash;
    uint32_t n_ids;
    rv_bpe *bpe;
    const uint8_t *uc;                 /* unicode class table */
    /* decode bytes per id */
    size_t *dec_off;                   /* SIZE_MAX: no token */
    uint32_t *dec_len;
    rv_buf dec_pool;
    unsigned char *special;            /* per id */
    /* vocabulary strings outside the byte alphabet: not encodable, found by
     * rv_tokenizer_token_id only */
    uint32_t *odd_ids;
    size_t n_odd;
    rv_buf strings;                    /* added-token contents, odd tokens */
    size_t *odd_off, *odd_len;
    added_token *added;
    size_t n_added;
    trie raw_trie, norm_trie;          /* normalized=false / normalized=true tokens */
    int nfc;
    rv_pre_stage stages[RV_PRE_MAX_STAGES];
    int n_stages;
    int has_decoder;
    uint32_t prefix[8], suffix[8];
    size_t n_prefix, n_suffix;
    uint32_t bos, eos;
};

uint32_t rv_tokenizer_n_ids(const rv_tokenizer *t) { return t->n_ids; }
const rv_bpe *rv_tokenizer_bpe(const rv_tokenizer *t) { return t->bpe; }
uint64_t rv_tokenizer_file_hash(const rv_tokenizer *t) { return t->file_hash; }
const char *rv_tokenizer_source_kind(const rv_tokenizer *t) { return t->source_kind; }
int rv_tokenizer_is_special(const rv_tokenizer *t, uint32_t id) { return id < t->n_ids && t->special[id]; }
uint32_t rv_tokenizer_bos_id(const rv_tokenizer *t) { return t->bos; }
uint32_t rv_tokenizer_eos_id(const rv_tokenizer *t) { return t->eos; }

void rv_tokenizer_template(const rv_tokenizer *t, const uint32_t **prefix, size_t *n_prefix,
                           const uint32_t **suffix, size_t *n_suffix)
{
    *prefix = t->prefix;
    *n_prefix = t->n_prefix;
    *suffix = t->suffix;
    *n_suffix = t->n_suffix;
}

void rv_tokenizer_free(rv_tokenizer *t)
{
    if (!t)
        return;
    free(t->name);
    rv_bpe_free(t->bpe);
    free(t->dec_off);
    free(t->dec_len);
    rv_buf_free(&t->dec_pool);
    free(t->special);
    free(t->odd_ids);
    free(t->odd_off);
    free(t->odd_len);
    rv_buf_free(&t->strings);
    free(t->added);
    free(t->raw_trie.nodes);
    free(t->norm_trie.nodes);
    free(t);
}

static rv_tokenizer *tok_new(const char *name, const char *kind)
{
    build_alphabet();
    rv_tokenizer *t = rv_calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->name = strdup(name ? name : "tokenizer");
    t->source_kind = kind;
    t->bos = t->eos = RV_TOKEN_NONE;
    t->uc = rv_unicode_table();
    trie_init(&t->raw_trie);
    trie_init(&t->norm_trie);
    if (!t->name || !t->uc) {
        if (!t->name)
            rv_error_set("out of memory");
        rv_tokenizer_free(t);
        return NULL;
    }
    return t;
}

/* Allocates the per-id tables once the id space is known. */
static int tok_size(rv_tokenizer *t, uint64_t n_ids)
{
    if (n_ids == 0 || n_ids > (1u << 24))
        return rv_error_set("%s: vocabulary size %llu is out of range (1..16777216)", t->name,
                            (unsigned long long)n_ids);
    t->n_ids = (uint32_t)n_ids;
    t->bpe = rv_bpe_new(t->n_ids);
    t->dec_off = rv_malloc(n_ids * sizeof *t->dec_off);
    t->dec_len = rv_calloc(n_ids, sizeof *t->dec_len);
    t->special = rv_calloc(n_ids, 1);
    if (!t->bpe || !t->dec_off || !t->dec_len || !t->special)
        return -1;
    memset(t->dec_off, 0xFF, n_ids * sizeof *t->dec_off);
    return 0;
}

static int set_decode_bytes(rv_tokenizer *t, uint32_t id, const char *s, size_t n)
{
    size_t off = t->dec_pool.len;
    int r = bytelevel_to_bytes(s, n, &t->dec_pool);
    if (r < 0)
        return -1;
    if (r == 0) { /* not byte-level text: the decoder passes it through */
        t->dec_pool.len = off;
        if (rv_buf_append(&t->dec_pool, s, n) < 0)
            return -1;
    }
    t->dec_off[id] = off;
    t->dec_len[id] = (uint32_t)(t->dec_pool.len - off);
    return 0;
}

/* A vocabulary entry in byte-level form. */
static int tok_add_vocab(rv_tokenizer *t, const char *s, size_t n, uint64_t id, const char *where)
{
    if (id >= t->n_ids)
        return rv_error_set("%s: %s: id %llu is out of range", t->name, where, (unsigned long long)id);
    if (n == 0)
        return rv_error_set("%s: %s: empty token string", t->name, where);
    if (set_decode_bytes(t, (uint32_t)id, s, n) < 0)
        return -1;
    rv_buf raw = {0};
    int r = bytelevel_to_bytes(s, n, &raw);
    if (r > 0 && rv_bpe_add_token(t->bpe, raw.data, raw.len, (uint32_t)id) < 0) {
        rv_buf_free(&raw);
        return rv_error_prefix("%s: %s", t->name, where);
    }
    rv_buf_free(&raw);
    if (r < 0)
        return -1;
    if (r == 0) { /* keep the string for rv_tokenizer_token_id */
        size_t n_odd = t->n_odd + 1;
        uint32_t *ids = realloc(t->odd_ids, n_odd * sizeof *ids);
        if (ids)
            t->odd_ids = ids;
        size_t *offs = ids ? realloc(t->odd_off, n_odd * sizeof *offs) : NULL;
        if (offs)
            t->odd_off = offs;
        size_t *lens = offs ? realloc(t->odd_len, n_odd * sizeof *lens) : NULL;
        if (!lens)
            return rv_error_set("out of memory");
        t->odd_len = lens;
        t->odd_ids[t->n_odd] = (uint32_t)id;
        t->odd_off[t->n_odd] = t->strings.len;
        t->odd_len[t->n_odd] = n;
        t->n_odd = n_odd;
        if (rv_buf_append(&t->strings, s, n) < 0)
            return -1;
    }
    return 0;
}

/* Merge number `rank`: two byte-level strings. */
static int tok_add_merge(rv_tokenizer *t, const char *a, size_t an, const char *b, size_t bn, uint32_t rank,
                         const char *where, rv_buf *tmp)
{
    tmp->len = 0;
    int ra = bytelevel_to_bytes(a, an, tmp);
    size_t split = tmp->len;
    int rb = ra > 0 ? bytelevel_to_bytes(b, bn, tmp) : 0;
    if (ra < 0 || rb < 0)
        return -1;
    if (!ra || !rb || an == 0 || bn == 0)
        return rv_error_set("%s: %s[%u]: \"%.*s\" \"%.*s\" is not a pair of byte-level tokens", t->name, where,
                            rank, (int)an, a, (int)bn, b);
    uint32_t ia = rv_bpe_find(t->bpe, tmp->data, split);
    uint32_t ib = rv_bpe_find(t->bpe, tmp->data + split, tmp->len - split);
    uint32_t im = rv_bpe_find(t->bpe, tmp->data, tmp->len);
    if (ia == RV_TOKEN_NONE || ib == RV_TOKEN_NONE || im == RV_TOKEN_NONE)
        return rv_error_set("%s: %s[%u]: \"%.*s\" + \"%.*s\": %s is not in the vocabulary", t->name, where, rank,
                            (int)an, a, (int)bn, b,
                            ia == RV_TOKEN_NONE ? "the left token" : ib == RV_TOKEN_NONE ? "the right token"
                                                                                          : "the merged token");
    return rv_bpe_add_merge(t->bpe, ia, ib, im, rank);
}

static int tok_add_added(rv_tokenizer *t, const char *content, size_t n, uint64_t id, int special, int normalized,
                         const char *where)
{
    if (id >= t->n_ids)
        return rv_error_set("%s: %s: id %llu is out of range", t->name, where, (unsigned long long)id);
    if (n == 0)
        return rv_error_set("%s: %s: empty content", t->name, where);
    added_token *a = realloc(t->added, (t->n_added + 1) * sizeof *a);
    if (!a)
        return rv_error_set("out of memory");
    t->added = a;
    a[t->n_added] = (added_token){(uint32_t)id, special, normalized, t->strings.len, n};
    if (rv_buf_append(&t->strings, content, n) < 0)
        return -1;
    if (set_decode_bytes(t, (uint32_t)id, content, n) < 0)
        return -1;
    t->special[id] = (unsigned char)special;
    t->n_added++;
    return 0;
}

/* Builds the tries (after all added tokens are known: t->strings may move). */
static int tok_finish(rv_tokenizer *t)
{
    for (size_t i = 0; i < t->n_added; i++) {
        const added_token *a = &t->added[i];
        trie *tr = a->normalized ? &t->norm_trie : &t->raw_trie;
        if (trie_insert(tr, t->strings.data + a->off, a->len, (uint32_t)i) < 0)
            return -1;
    }
    for (int i = 0; i < t->n_stages; i++)
        if (t->stages[i].add_prefix_space && i + 1 < t->n_stages) {
            /* only the last stage may prepend (scratch buffer reuse) */
            for (int j = i + 1; j < t->n_stages; j++)
                if (t->stages[j].add_prefix_space)
                    return rv_error_set("%s: pre_tokenizer: more than one stage adds a prefix space", t->name);
        }
    return 0;
}

uint32_t rv_tokenizer_token_id(const rv_tokenizer *t, const char *s, size_t len)
{
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == len && memcmp(t->strings.data + t->added[i].off, s, len) == 0)
            return t->added[i].id;
    for (size_t i = 0; i < t->n_odd; i++)
        if (t->odd_len[i] == len && memcmp(t->strings.data + t->odd_off[i], s, len) == 0)
            return t->odd_ids[i];
    rv_buf raw = {0};
    uint32_t id = RV_TOKEN_NONE;
    if (bytelevel_to_bytes(s, len, &raw) > 0 && raw.len)
        id = rv_bpe_find(t->bpe, raw.data, raw.len);
    rv_buf_free(&raw);
    return id;
}

/* ------------------------------------------------------------ tokenizer.json */

static const char *jstr(const rv_json *v) { return v && v->type == RV_JSON_STRING ? v->u.string : NULL; }

static int jbool(const rv_tokenizer *t, const rv_json *obj, const char *key, int dflt, const char *path, int *out)
{
    const rv_json *v = rv_json_get(obj, key);
    if (!v) {
        if (dflt < 0)
            return rv_error_set("%s: %s.%s: expected a boolean, found nothing", t->name, path, key);
        *out = dflt;
        return 0;
    }
    if (v->type != RV_JSON_TRUE && v->type != RV_JSON_FALSE)
        return rv_error_set("%s: %s.%s: expected a boolean, found %s", t->name, path, key, rv_json_type_name(v->type));
    *out = v->type == RV_JSON_TRUE;
    return 0;
}

static int type_is(const rv_json *v, const char *type)
{
    const char *s = jstr(rv_json_get(v, "type"));
    return s && strcmp(s, type) == 0;
}

static const char *type_of(const rv_json *v)
{
    const char *s = jstr(rv_json_get(v, "type"));
    return s ? s : v && v->type == RV_JSON_OBJECT ? "(no type)" : v ? rv_json_type_name(v->type) : "nothing";
}

static int load_normalizer(rv_tokenizer *t, const rv_json *n, const char *path)
{
    if (!n || n->type == RV_JSON_NULL)
        return 0;
    if (type_is(n, "NFC")) {
        t->nfc = 1;
        return 0;
    }
    if (type_is(n, "Sequence")) {
        const rv_json *list = rv_json_get(n, "normalizers");
        if (!list || list->type != RV_JSON_ARRAY)
            return rv_error_set("%s: %s.normalizers: expected an array", t->name, path);
        for (size_t i = 0; i < list->len; i++) {
            char sub[96];
            snprintf(sub, sizeof sub, "%s.normalizers[%zu]", path, i);
            if (load_normalizer(t, &list->u.items[i], sub) < 0)
                return -1;
        }
        return 0;
    }
    return rv_error_set("%s: %s: unsupported normalizer type \"%s\" (supported: NFC, Sequence)", t->name, path,
                        type_of(n));
}

static int add_stage(rv_tokenizer *t, rv_pre_kind kind, int prefix, const char *path)
{
    if (t->n_stages == RV_PRE_MAX_STAGES)
        return rv_error_set("%s: %s: more than %d pre-tokenizer stages", t->name, path, RV_PRE_MAX_STAGES);
    t->stages[t->n_stages++] = (rv_pre_stage){kind, prefix};
    return 0;
}

static int load_pre(rv_tokenizer *t, const rv_json *p, const char *path, int *seen_bytelevel)
{
    if (*seen_bytelevel)
        return rv_error_set("%s: %s: a pre-tokenizer after ByteLevel is not supported", t->name, path);
    if (type_is(p, "Sequence")) {
        const rv_json *list = rv_json_get(p, "pretokenizers");
        if (!list || list->type != RV_JSON_ARRAY)
            return rv_error_set("%s: %s.pretokenizers: expected an array", t->name, path);
        for (size_t i = 0; i < list->len; i++) {
            char sub[96];
            snprintf(sub, sizeof sub, "%s.pretokenizers[%zu]", path, i);
            if (load_pre(t, &list->u.items[i], sub, seen_bytelevel) < 0)
                return -1;
        }
        return 0;
    }
    if (type_is(p, "ByteLevel")) {
        int prefix, regex;
        if (jbool(t, p, "add_prefix_space", 1, path, &prefix) < 0 || jbool(t, p, "use_regex", 1, path, &regex) < 0)
            return -1;
        *seen_bytelevel = 1;
        return add_stage(t, regex ? RV_PRE_GPT2 : RV_PRE_NONE, prefix, path);
    }
    if (type_is(p, "Digits")) {
        int single;
        if (jbool(t, p, "individual_digits", 0, path, &single) < 0)
            return -1;
        return add_stage(t, single ? RV_PRE_DIGITS_SINGLE : RV_PRE_DIGITS_RUN, 0, path);
    }
    if (type_is(p, "Split")) {
        const rv_json *pat = rv_json_get(p, "pattern");
        const rv_json *re = rv_json_get(pat, "Regex");
        const char *behavior = jstr(rv_json_get(p, "behavior"));
        int invert;
        if (jbool(t, p, "invert", 0, path, &invert) < 0)
            return -1;
        if (!re || re->type != RV_JSON_STRING)
            return rv_error_set("%s: %s.pattern: only {\"Regex\": …} patterns are supported", t->name, path);
        if (!behavior || strcmp(behavior, "Isolated") != 0 || invert)
            return rv_error_set("%s: %s: only behavior \"Isolated\" without invert is supported, found \"%s\"%s",
                                t->name, path, behavior ? behavior : "(none)", invert ? " with invert" : "");
        rv_pre_kind kind;
        if (rv_pre_kind_from_regex(re->u.string, re->len, &kind) < 0)
            return rv_error_set("%s: %s.pattern.Regex: unrecognised pattern \"%.200s\" (known: the Llama-3, "
                                "Qwen2 and GPT-2 split patterns)",
                                t->name, path, re->u.string);
        return add_stage(t, kind, 0, path);
    }
    return rv_error_set("%s: %s: unsupported pre_tokenizer type \"%s\" (supported: Sequence, Split, ByteLevel, "
                        "Digits)",
                        t->name, path, type_of(p));
}

static int load_post(rv_tokenizer *t, const rv_json *p, const char *path)
{
    if (!p || p->type == RV_JSON_NULL || type_is(p, "ByteLevel"))
        return 0; /* ByteLevel only trims offsets */
    if (type_is(p, "Sequence")) {
        const rv_json *list = rv_json_get(p, "processors");
        if (!list || list->type != RV_JSON_ARRAY)
            return rv_error_set("%s: %s.processors: expected an array", t->name, path);
        for (size_t i = 0; i < list->len; i++) {
            char sub[96];
            snprintf(sub, sizeof sub, "%s.processors[%zu]", path, i);
            if (load_post(t, &list->u.items[i], sub) < 0)
                return -1;
        }
        return 0;
    }
    if (!type_is(p, "TemplateProcessing"))
        return rv_error_set("%s: %s: unsupported post_processor type \"%s\" (supported: TemplateProcessing, "
                            "ByteLevel, Sequence)",
                            t->name, path, type_of(p));
    if (t->n_prefix || t->n_suffix)
        return rv_error_set("%s: %s: more than one TemplateProcessing", t->name, path);
    const rv_json *single = rv_json_get(p, "single"), *specials = rv_json_get(p, "special_tokens");
    if (!single || single->type != RV_JSON_ARRAY)
        return rv_error_set("%s: %s.single: expected an array", t->name, path);
    int seen_a = 0;
    for (size_t i = 0; i < single->len; i++) {
        const rv_json *item = &single->u.items[i];
        const rv_json *seq = rv_json_get(item, "Sequence"), *sp = rv_json_get(item, "SpecialToken");
        if (seq) {
            const char *which = jstr(rv_json_get(seq, "id"));
            if (!which || strcmp(which, "A") != 0 || seen_a)
                return rv_error_set("%s: %s.single[%zu]: expected one Sequence \"A\"", t->name, path, i);
            seen_a = 1;
            continue;
        }
        const char *name = jstr(rv_json_get(sp, "id"));
        const rv_json *def = NULL;
        for (size_t k = 0; name && specials && specials->type == RV_JSON_OBJECT && k < specials->len; k++)
            if (strcmp(specials->u.members[k].key, name) == 0)
                def = specials->u.members[k].value;
        const rv_json *ids = rv_json_get(def, "ids");
        if (!name || !ids || ids->type != RV_JSON_ARRAY)
            return rv_error_set("%s: %s.single[%zu]: expected a SpecialToken defined in special_tokens", t->name,
                                path, i);
        for (size_t k = 0; k < ids->len; k++) {
            int64_t id;
            if (rv_json_as_int64(&ids->u.items[k], &id) < 0 || id < 0 || id >= t->n_ids)
                return rv_error_set("%s: %s.special_tokens.%s.ids[%zu]: expected a token id", t->name, path, name, k);
            uint32_t *list = seen_a ? t->suffix : t->prefix;
            size_t *n = seen_a ? &t->n_suffix : &t->n_prefix;
            if (*n == sizeof t->prefix / sizeof t->prefix[0])
                return rv_error_set("%s: %s.single: too many special tokens", t->name, path);
            list[(*n)++] = (uint32_t)id;
        }
    }
    if (!seen_a)
        return rv_error_set("%s: %s.single: no Sequence \"A\"", t->name, path);
    return 0;
}

static int load_model(rv_tokenizer *t, const rv_json *m)
{
    const char *type = jstr(rv_json_get(m, "type"));
    if (type && strcmp(type, "BPE") != 0)
        return rv_error_set("%s: model.type: only \"BPE\" is supported, found \"%s\"", t->name, type);
    const rv_json *vocab = rv_json_get(m, "vocab"), *merges = rv_json_get(m, "merges");
    if (!vocab || vocab->type != RV_JSON_OBJECT)
        return rv_error_set("%s: model.vocab: expected an object", t->name);
    if (!merges || merges->type != RV_JSON_ARRAY)
        return rv_error_set("%s: model.merges: expected an array", t->name);
    const rv_json *dropout = rv_json_get(m, "dropout");
    if (dropout && dropout->type != RV_JSON_NULL && !(dropout->type == RV_JSON_NUMBER && dropout->u.number == 0))
        return rv_error_set("%s: model.dropout: BPE dropout is not supported (expected null)", t->name);
    int byte_fallback, ignore_merges;
    if (jbool(t, m, "byte_fallback", 0, "model", &byte_fallback) < 0 ||
        jbool(t, m, "ignore_merges", 0, "model", &ignore_merges) < 0)
        return -1;
    if (byte_fallback)
        return rv_error_set("%s: model.byte_fallback: true is not supported (byte-level BPE only)", t->name);
    static const char *const empty_only[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const rv_json *v = rv_json_get(m, empty_only[i]);
        if (v && v->type != RV_JSON_NULL && !(v->type == RV_JSON_STRING && v->len == 0))
            return rv_error_set("%s: model.%s: expected null or \"\" (byte-level BPE)", t->name, empty_only[i]);
    }
    rv_bpe_set_ignore_merges(t->bpe, ignore_merges);
    char where[64];
    for (size_t i = 0; i < vocab->len; i++) {
        const rv_json_member *mb = &vocab->u.members[i];
        int64_t id;
        if (rv_json_as_int64(mb->value, &id) < 0 || id < 0)
            return rv_error_set("%s: model.vocab[\"%.60s\"]: expected a non-negative integer id", t->name, mb->key);
        snprintf(where, sizeof where, "model.vocab[%zu]", i);
        if (tok_add_vocab(t, mb->key, mb->key_len, (uint64_t)id, where) < 0)
            return -1;
    }
    rv_buf tmp = {0};
    int rc = 0;
    for (size_t i = 0; i < merges->len && rc == 0; i++) {
        const rv_json *e = &merges->u.items[i];
        if (e->type == RV_JSON_STRING) {
            const char *sp = memchr(e->u.string, ' ', e->len);
            if (!sp || memchr(sp + 1, ' ', e->len - (size_t)(sp + 1 - e->u.string)))
                rc = rv_error_set("%s: model.merges[%zu]: expected \"LEFT RIGHT\", found \"%.60s\"", t->name, i,
                                  e->u.string);
            else
                rc = tok_add_merge(t, e->u.string, (size_t)(sp - e->u.string), sp + 1,
                                   e->len - (size_t)(sp + 1 - e->u.string), (uint32_t)i, "model.merges", &tmp);
        } else if (e->type == RV_JSON_ARRAY && e->len == 2 && e->u.items[0].type == RV_JSON_STRING &&
                   e->u.items[1].type == RV_JSON_STRING) {
            rc = tok_add_merge(t, e->u.items[0].u.string, e->u.items[0].len, e->u.items[1].u.string,
                               e->u.items[1].len, (uint32_t)i, "model.merges", &tmp);
        } else {
            rc = rv_error_set("%s: model.merges[%zu]: expected a string or a pair of strings", t->name, i);
        }
    }
    rv_buf_free(&tmp);
    return rc;
}

static int load_added(rv_tokenizer *t, const rv_json *list)
{
    if (!list || list->type == RV_JSON_NULL)
        return 0;
    if (list->type != RV_JSON_ARRAY)
        return rv_error_set("%s: added_tokens: expected an array", t->name);
    for (size_t i = 0; i < list->len; i++) {
        const rv_json *a = &list->u.items[i];
        char path[64];
        snprintf(path, sizeof path, "added_tokens[%zu]", i);
        const rv_json *content = rv_json_get(a, "content");
        int64_t id;
        if (rv_json_as_int64(rv_json_get(a, "id"), &id) < 0 || id < 0)
            return rv_error_set("%s: %s.id: expected a token id", t->name, path);
        if (!content || content->type != RV_JSON_STRING)
            return rv_error_set("%s: %s.content: expected a string", t->name, path);
        int special, normalized, flag;
        if (jbool(t, a, "special", 0, path, &special) < 0 || jbool(t, a, "normalized", !special, path, &normalized) < 0)
            return -1;
        static const char *const unsupported[] = {"lstrip", "rstrip", "single_word"};
        for (int k = 0; k < 3; k++) {
            if (jbool(t, a, unsupported[k], 0, path, &flag) < 0)
                return -1;
            if (flag)
                return rv_error_set("%s: %s.%s: true is not supported", t->name, path, unsupported[k]);
        }
        if (tok_add_added(t, content->u.string, content->len, (uint64_t)id, special, normalized, path) < 0)
            return -1;
    }
    return 0;
}

static int max_id_of(const rv_tokenizer *t, const rv_json *root, uint64_t *n_ids)
{
    const rv_json *vocab = rv_json_get(rv_json_get(root, "model"), "vocab");
    const rv_json *added = rv_json_get(root, "added_tokens");
    int64_t max = -1, id;
    for (size_t i = 0; vocab && vocab->type == RV_JSON_OBJECT && i < vocab->len; i++)
        if (rv_json_as_int64(vocab->u.members[i].value, &id) == 0 && id > max)
            max = id;
    for (size_t i = 0; added && added->type == RV_JSON_ARRAY && i < added->len; i++)
        if (rv_json_as_int64(rv_json_get(&added->u.items[i], "id"), &id) == 0 && id > max)
            max = id;
    if (max < 0)
        return rv_error_set("%s: model.vocab: no tokens", t->name);
    *n_ids = (uint64_t)max + 1;
    return 0;
}

static rv_tokenizer *from_json_tree(const rv_json *root, const char *name)
{
    rv_tokenizer *t = tok_new(name, "tokenizer.json");
    if (!t)
        return NULL;
    uint64_t n_ids = 0;
    int seen_bytelevel = 0;
    const rv_json *pre = rv_json_get(root, "pre_tokenizer");
    const rv_json *dec = rv_json_get(root, "decoder");
    static const char *const must_be_null[] = {"truncation", "padding"};
    if (root->type != RV_JSON_OBJECT) {
        rv_error_set("%s: expected a JSON object", t->name);
        goto fail;
    }
    for (int i = 0; i < 2; i++) {
        const rv_json *v = rv_json_get(root, must_be_null[i]);
        if (v && v->type != RV_JSON_NULL) {
            rv_error_set("%s: %s: expected null (set it in the tool, not the tokenizer)", t->name, must_be_null[i]);
            goto fail;
        }
    }
    const char *model_type = jstr(rv_json_get(rv_json_get(root, "model"), "type"));
    if (model_type && strcmp(model_type, "BPE") != 0) {
        rv_error_set("%s: model.type: only \"BPE\" is supported, found \"%s\"", t->name, model_type);
        goto fail;
    }
    if (max_id_of(t, root, &n_ids) < 0 || tok_size(t, n_ids) < 0)
        goto fail;
    if (load_model(t, rv_json_get(root, "model")) < 0 || load_added(t, rv_json_get(root, "added_tokens")) < 0 ||
        load_normalizer(t, rv_json_get(root, "normalizer"), "normalizer") < 0)
        goto fail;
    if (!pre || pre->type == RV_JSON_NULL) {
        rv_error_set("%s: pre_tokenizer: expected a ByteLevel pre-tokenizer (byte-level BPE only), found null", t->name);
        goto fail;
    }
    if (load_pre(t, pre, "pre_tokenizer", &seen_bytelevel) < 0)
        goto fail;
    if (!seen_bytelevel) {
        rv_error_set("%s: pre_tokenizer: no ByteLevel step (only byte-level BPE is supported)", t->name);
        goto fail;
    }
    if (load_post(t, rv_json_get(root, "post_processor"), "post_processor") < 0)
        goto fail;
    if (dec && dec->type != RV_JSON_NULL && !type_is(dec, "ByteLevel")) {
        rv_error_set("%s: decoder: unsupported type \"%s\" (supported: ByteLevel)", t->name, type_of(dec));
        goto fail;
    }
    t->has_decoder = dec && dec->type != RV_JSON_NULL;
    if (tok_finish(t) < 0)
        goto fail;
    return t;
fail:
    rv_tokenizer_free(t);
    return NULL;
}

rv_tokenizer *rv_tokenizer_from_json(const char *text, size_t len, const char *name)
{
    rv_json_parser *jp = rv_json_parser_new();
    if (!jp)
        return NULL;
    const rv_json *root = rv_json_parse(jp, text, len);
    rv_tokenizer *t = NULL;
    if (!root)
        rv_error_prefix("%s", name ? name : "tokenizer.json");
    else
        t = from_json_tree(root, name);
    rv_json_parser_free(jp);
    return t;
}

/* ------------------------------------------------------------ files */

static int read_file(const char *path, char **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return rv_error_set("%s: cannot open: %s", path, strerror(errno));
    rv_buf b = {0};
    char chunk[1 << 16];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (rv_buf_append(&b, chunk, k) < 0) {
            fclose(f);
            rv_buf_free(&b);
            return -1;
        }
    int err = ferror(f);
    fclose(f);
    if (err) {
        rv_buf_free(&b);
        return rv_error_set("%s: read error", path);
    }
    if (rv_buf_putc(&b, 0) < 0) {
        rv_buf_free(&b);
        return -1;
    }
    *data = (char *)b.data;
    *len = b.len - 1;
    return 0;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* GPT-2's original pair: vocabulary JSON object + merges text file. */
static rv_tokenizer *load_gpt2_files(const char *vocab_path, const char *merges_path)
{
    char *vtext = NULL, *mtext = NULL;
    size_t vlen, mlen;
    rv_tokenizer *t = NULL;
    rv_json_parser *jp = NULL;
    if (read_file(vocab_path, &vtext, &vlen) < 0 || read_file(merges_path, &mtext, &mlen) < 0)
        goto done;
    jp = rv_json_parser_new();
    const rv_json *vocab = jp ? rv_json_parse(jp, vtext, vlen) : NULL;
    if (!vocab) {
        rv_error_prefix("%s", vocab_path);
        goto done;
    }
    t = tok_new(vocab_path, "gpt2-files");
    if (!t)
        goto done;
    int64_t max = -1, id;
    if (vocab->type != RV_JSON_OBJECT) {
        rv_error_set("%s: expected a JSON object mapping tokens to ids", vocab_path);
        goto fail;
    }
    for (size_t i = 0; i < vocab->len; i++) {
        if (rv_json_as_int64(vocab->u.members[i].value, &id) < 0 || id < 0) {
            rv_error_set("%s: [\"%.60s\"]: expected a non-negative integer id", vocab_path, vocab->u.members[i].key);
            goto fail;
        }
        if (id > max)
            max = id;
    }
    if (max < 0) {
        rv_error_set("%s: no tokens", vocab_path);
        goto fail;
    }
    if (tok_size(t, (uint64_t)max + 1) < 0)
        goto fail;
    for (size_t i = 0; i < vocab->len; i++) {
        char where[48];
        snprintf(where, sizeof where, "entry %zu", i);
        rv_json_as_int64(vocab->u.members[i].value, &id);
        if (tok_add_vocab(t, vocab->u.members[i].key, vocab->u.members[i].key_len, (uint64_t)id, where) < 0)
            goto fail;
    }
    /* merges: "#version" header, then "LEFT RIGHT" per line */
    rv_buf tmp = {0};
    uint32_t rank = 0;
    size_t lineno = 0;
    for (char *p = mtext, *end = mtext + mlen; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        lineno++;
        size_t n = (size_t)(le - p);
        if (n && p[n - 1] == '\r')
            n--;
        if (n && !(lineno == 1 && n >= 8 && memcmp(p, "#version", 8) == 0)) {
            char *sp = memchr(p, ' ', n);
            char where[300];
            snprintf(where, sizeof where, "%.250s:%zu", merges_path, lineno);
            if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - p))) {
                rv_error_set("%s: expected \"LEFT RIGHT\"", where);
                rv_buf_free(&tmp);
                goto fail;
            }
            if (tok_add_merge(t, p, (size_t)(sp - p), sp + 1, n - (size_t)(sp + 1 - p), rank++, where, &tmp) < 0) {
                rv_buf_free(&tmp);
                goto fail;
            }
        }
        p = le + 1;
    }
    rv_buf_free(&tmp);
    uint32_t eot = rv_tokenizer_token_id(t, "<|endoftext|>", 13);
    if (eot != RV_TOKEN_NONE && tok_add_added(t, "<|endoftext|>", 13, eot, 1, 0, "<|endoftext|>") < 0)
        goto fail;
    t->eos = t->bos = eot;
    if (add_stage(t, RV_PRE_GPT2, 0, "pre_tokenizer") < 0)
        goto fail;
    t->has_decoder = 1;
    if (tok_finish(t) < 0)
        goto fail;
    XXH3_state_t *st = XXH3_createState();
    if (st) {
        XXH3_64bits_reset(st);
        XXH3_64bits_update(st, vtext, vlen);
        XXH3_64bits_update(st, mtext, mlen);
        t->file_hash = XXH3_64bits_digest(st);
        XXH3_freeState(st);
    }
    goto done;
fail:
    rv_tokenizer_free(t);
    t = NULL;
done:
    rv_json_parser_free(jp);
    free(vtext);
    free(mtext);
    return t;
}

/* ------------------------------------------------------------ GGUF */

static int gguf_bool(const rv_gguf *g, const char *key, int *out)
{
    const rv_gguf_kv *kv = rv_gguf_find(g, key);
    *out = 0;
    if (!kv)
        return 0;
    if (kv->type != RV_GGUF_BOOL)
        return rv_error_set("%s: %s: expected a bool", g->path, key);
    *out = kv->value[0] != 0;
    return 0;
}

static rv_tokenizer *load_gguf(const char *path)
{
    rv_gguf *g = rv_gguf_open(path);
    if (!g)
        return NULL;
    rv_tokenizer *t = tok_new(path, "gguf");
    const char **toks = NULL, **merges = NULL;
    size_t *tok_lens = NULL, *merge_lens = NULL;
    uint64_t n_toks = 0, n_merges = 0, n_types = 0;
    const char *model, *pre;
    size_t model_len, pre_len;
    if (!t)
        goto fail;
    if (rv_gguf_get_string(g, "tokenizer.ggml.model", &model, &model_len) < 0)
        goto fail;
    if (model_len != 4 || memcmp(model, "gpt2", 4) != 0) {
        rv_error_set("%s: tokenizer.ggml.model: only \"gpt2\" (byte-level BPE) is supported, found \"%.*s\"", path,
                     (int)model_len, model);
        goto fail;
    }
    if (rv_gguf_get_string(g, "tokenizer.ggml.pre", &pre, &pre_len) < 0)
        goto fail;
#define PRE_IS(s) (pre_len == sizeof(s) - 1 && memcmp(pre, s, pre_len) == 0)
    int ignore_merges = 0;
    if (PRE_IS("smollm")) {
        /* llama.cpp: \p{N} isolated, then the GPT-2 pattern; HF: Digits(individual) + ByteLevel */
        if (add_stage(t, RV_PRE_DIGITS_SINGLE, 0, "tokenizer.ggml.pre") < 0 ||
            add_stage(t, RV_PRE_GPT2, 0, "tokenizer.ggml.pre") < 0)
            goto fail;
    } else if (PRE_IS("llama-bpe")) {
        ignore_merges = 1;
        if (add_stage(t, RV_PRE_LLAMA3, 0, "tokenizer.ggml.pre") < 0)
            goto fail;
    } else if (PRE_IS("qwen2")) {
        t->nfc = 1;
        if (add_stage(t, RV_PRE_QWEN2, 0, "tokenizer.ggml.pre") < 0)
            goto fail;
    } else if (PRE_IS("gpt-2")) {
        if (add_stage(t, RV_PRE_GPT2, 0, "tokenizer.ggml.pre") < 0)
            goto fail;
    } else {
        rv_error_set("%s: tokenizer.ggml.pre: unsupported pre-tokenizer \"%.*s\" (supported: smollm, llama-bpe, "
                     "qwen2, gpt-2)",
                     path, (int)pre_len, pre);
        goto fail;
    }
#undef PRE_IS
    if (rv_gguf_get_string_array(g, "tokenizer.ggml.tokens", &n_toks, &toks, &tok_lens) < 0 ||
        rv_gguf_get_string_array(g, "tokenizer.ggml.merges", &n_merges, &merges, &merge_lens) < 0)
        goto fail;
    uint32_t type_elem;
    const unsigned char *types = NULL;
    if (rv_gguf_find(g, "tokenizer.ggml.token_type")) {
        if (rv_gguf_get_array(g, "tokenizer.ggml.token_type", &type_elem, &n_types, &types) < 0)
            goto fail;
        if (type_elem != RV_GGUF_INT32 || n_types != n_toks) {
            rv_error_set("%s: tokenizer.ggml.token_type: expected %llu int32 values", path,
                         (unsigned long long)n_toks);
            goto fail;
        }
    }
    if (tok_size(t, n_toks) < 0)
        goto fail;
    rv_bpe_set_ignore_merges(t->bpe, ignore_merges);
    for (uint64_t i = 0; i < n_toks; i++) {
        char where[64];
        snprintf(where, sizeof where, "tokenizer.ggml.tokens[%llu]", (unsigned long long)i);
        if (tok_add_vocab(t, toks[i], tok_lens[i], i, where) < 0)
            goto fail;
    }
    rv_buf tmp = {0};
    for (uint64_t i = 0; i < n_merges; i++) {
        const char *m = merges[i];
        const char *sp = memchr(m, ' ', merge_lens[i]);
        if (!sp || memchr(sp + 1, ' ', merge_lens[i] - (size_t)(sp + 1 - m))) {
            rv_error_set("%s: tokenizer.ggml.merges[%llu]: expected \"LEFT RIGHT\"", path, (unsigned long long)i);
            rv_buf_free(&tmp);
            goto fail;
        }
        if (tok_add_merge(t, m, (size_t)(sp - m), sp + 1, merge_lens[i] - (size_t)(sp + 1 - m), (uint32_t)i,
                          "tokenizer.ggml.merges", &tmp) < 0) {
            rv_buf_free(&tmp);
            goto fail;
        }
    }
    rv_buf_free(&tmp);
    for (uint64_t i = 0; types && i < n_types; i++) {
        int32_t ty = (int32_t)rv_load_u32(types + 4 * i);
        char where[64];
        snprintf(where, sizeof where, "tokenizer.ggml.token_type[%llu]", (unsigned long long)i);
        if (ty == 3 || ty == 4) { /* CONTROL: special added token; USER_DEFINED: plain added token */
            if (tok_add_added(t, toks[i], tok_lens[i], i, ty == 3, 0, where) < 0)
                goto fail;
        } else if (ty != 1 && ty != 5) {
            rv_error_set("%s: %s: unsupported token type %d (expected 1 normal, 3 control, 4 user-defined, 5 "
                         "unused)",
                         path, where, (int)ty);
            goto fail;
        }
    }
    uint64_t v;
    if (rv_gguf_find(g, "tokenizer.ggml.bos_token_id") && rv_gguf_get_u64(g, "tokenizer.ggml.bos_token_id", &v) == 0 &&
        v < n_toks)
        t->bos = (uint32_t)v;
    if (rv_gguf_find(g, "tokenizer.ggml.eos_token_id") && rv_gguf_get_u64(g, "tokenizer.ggml.eos_token_id", &v) == 0 &&
        v < n_toks)
        t->eos = (uint32_t)v;
    int add_bos, add_eos;
    if (gguf_bool(g, "tokenizer.ggml.add_bos_token", &add_bos) < 0 ||
        gguf_bool(g, "tokenizer.ggml.add_eos_token", &add_eos) < 0)
        goto fail;
    if ((add_bos && t->bos == RV_TOKEN_NONE) || (add_eos && t->eos == RV_TOKEN_NONE)) {
        rv_error_set("%s: tokenizer.ggml.add_%s_token is set but the token id is missing", path,
                     add_bos ? "bos" : "eos");
        goto fail;
    }
    if (add_bos)
        t->prefix[t->n_prefix++] = t->bos;
    if (add_eos)
        t->suffix[t->n_suffix++] = t->eos;
    t->has_decoder = 1;
    if (tok_finish(t) < 0)
        goto fail;
    t->file_hash = XXH3_64bits(g->base, g->size);
    free(toks);
    free(tok_lens);
    free(merges);
    free(merge_lens);
    rv_gguf_close(g);
    return t;
fail:
    free(toks);
    free(tok_lens);
    free(merges);
    free(merge_lens);
    rv_tokenizer_free(t);
    rv_gguf_close(g);
    return NULL;
}

static rv_tokenizer *load_json_file(const char *path)
{
    char *text;
    size_t len;
    if (read_file(path, &text, &len) < 0)
        return NULL;
    rv_tokenizer *t = rv_tokenizer_from_json(text, len, path);
    if (t)
        t->file_hash = XXH3_64bits(text, len);
    free(text);
    return t;
}

rv_tokenizer *rv_tokenizer_load(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        rv_error_set("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        static const char *const pairs[][2] = {{"encoder.json", "vocab.bpe"}, {"vocab.json", "merges.txt"}};
        char a[4096], b[4096];
        snprintf(a, sizeof a, "%s/tokenizer.json", path);
        if (file_exists(a))
            return load_json_file(a);
        for (int i = 0; i < 2; i++) {
            snprintf(a, sizeof a, "%s/%s", path, pairs[i][0]);
            snprintf(b, sizeof b, "%s/%s", path, pairs[i][1]);
            if (file_exists(a) && file_exists(b))
                return load_gpt2_files(a, b);
        }
        rv_error_set("%s: no tokenizer.json, encoder.json + vocab.bpe or vocab.json + merges.txt in this directory",
                     path);
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        rv_error_set("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char magic[4] = {0};
    size_t k = fread(magic, 1, 4, f);
    fclose(f);
    if (k == 4 && memcmp(magic, "GGUF", 4) == 0)
        return load_gguf(path);
    return load_json_file(path);
}

/* ------------------------------------------------------------ encoding */

struct rv_tok_state {
    const rv_tokenizer *t;
    rv_bpe_cache *cache;
    rv_buf norm, prefix_scratch;
    rv_ids *out;            /* set during an encode call */
    int skip_special;       /* RV_TOK_SPECIAL_AS_TEXT of that call */
};

rv_tok_state *rv_tok_state_new(const rv_tokenizer *t)
{
    rv_tok_state *s = rv_calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->t = t;
    s->cache = rv_bpe_cache_new();
    if (!s->cache) {
        free(s);
        return NULL;
    }
    return s;
}

void rv_tok_state_free(rv_tok_state *s)
{
    if (!s)
        return;
    rv_bpe_cache_free(s->cache);
    rv_buf_free(&s->norm);
    rv_buf_free(&s->prefix_scratch);
    free(s);
}

static int emit_word(void *ctx, const unsigned char *w, size_t n)
{
    rv_tok_state *s = ctx;
    return rv_bpe_encode_word(s->t->bpe, s->cache, w, n, s->out);
}

static int pretokenize_and_merge(const rv_tokenizer *t, rv_tok_state *s, const unsigned char *p, size_t n)
{
    if (t->n_stages == 1 && t->stages[0].kind != RV_PRE_NONE && !t->stages[0].add_prefix_space) {
        /* the common case, without the callback layer */
        size_t i = 0;
        while (i < n) {
            size_t j = rv_pre_next(t->stages[0].kind, t->uc, p, n, i);
            if (rv_bpe_encode_word(t->bpe, s->cache, p + i, j - i, s->out) < 0)
                return -1;
            i = j;
        }
        return 0;
    }
    return rv_pre_run(t->stages, t->n_stages, t->uc, p, n, &s->prefix_scratch, emit_word, s);
}

/* Splits p[0..n) on the tokens of `tr`; text between matches goes to
 * `text_fn`, matched tokens to the output. Special tokens are left in the
 * text when skip_special is set (matching resumes after them, as HF's
 * non-overlapping search does). */
typedef int (*segment_fn)(const rv_tokenizer *t, rv_tok_state *s, const unsigned char *p, size_t n);

static int split_added(const rv_tokenizer *t, rv_tok_state *s, const trie *tr, const unsigned char *p, size_t n,
                       int skip_special, segment_fn text_fn)
{
    if (tr->empty)
        return n ? text_fn(t, s, p, n) : 0;
    size_t start = 0, i = 0;
    while (i < n) {
        if (tr->root[p[i]] == UINT32_MAX) {
            i++;
            continue;
        }
        uint32_t tok;
        size_t len = trie_longest(tr, p, n, i, &tok);
        if (!len) {
            i++;
            continue;
        }
        const added_token *a = &t->added[tok];
        if (skip_special && a->special) {
            i += len;
            continue;
        }
        if (i > start && text_fn(t, s, p + start, i - start) < 0)
            return -1;
        if (rv_ids_push(s->out, a->id) < 0)
            return -1;
        i += len;
        start = i;
    }
    return n > start ? text_fn(t, s, p + start, n - start) : 0;
}

static int normalized_segment(const rv_tokenizer *t, rv_tok_state *s, const unsigned char *p, size_t n)
{
    return pretokenize_and_merge(t, s, p, n);
}

static int raw_segment(const rv_tokenizer *t, rv_tok_state *s, const unsigned char *p, size_t n)
{
    if (t->nfc && !rv_nfc_quick_check(t->uc, p, n)) {
        s->norm.len = 0;
        if (rv_nfc_append(p, n, &s->norm) < 0)
            return -1;
        p = s->norm.data;
        n = s->norm.len;
        /* s->norm is not touched again until this segment is done: the
         * second split and the pre-tokenizer only read it */
    }
    if (t->norm_trie.empty)
        return pretokenize_and_merge(t, s, p, n);
    return split_added(t, s, &t->norm_trie, p, n, s->skip_special, normalized_segment);
}

int rv_tok_encode(const rv_tokenizer *t, rv_tok_state *s, const char *text, size_t len, int flags, rv_ids *out)
{
    s->out = out;
    s->skip_special = (flags & RV_TOK_SPECIAL_AS_TEXT) != 0;
    if ((flags & RV_TOK_ADD_SPECIAL) && t->n_prefix) {
        if (rv_ids_reserve(out, t->n_prefix) < 0)
            return -1;
        memcpy(out->v + out->n, t->prefix, t->n_prefix * sizeof *t->prefix);
        out->n += t->n_prefix;
    }
    if (split_added(t, s, &t->raw_trie, (const unsigned char *)text, len, s->skip_special, raw_segment) < 0)
        return -1;
    if ((flags & RV_TOK_ADD_SPECIAL) && t->n_suffix) {
        if (rv_ids_reserve(out, t->n_suffix) < 0)
            return -1;
        memcpy(out->v + out->n, t->suffix, t->n_suffix * sizeof *t->suffix);
        out->n += t->n_suffix;
    }
    s->out = NULL;
    return 0;
}

/* ------------------------------------------------------------ decoding */

const unsigned char *rv_tok_token_bytes(const rv_tokenizer *t, uint32_t id, size_t *len)
{
    if (id >= t->n_ids || t->dec_off[id] == SIZE_MAX)
        return NULL;
    *len = t->dec_len[id];
    return t->dec_pool.data + t->dec_off[id];
}

int rv_tok_decode(const rv_tokenizer *t, const uint32_t *ids, size_t n, int flags, rv_buf *out)
{
    if (!t->has_decoder)
        return rv_error_set("%s: the tokenizer has no decoder", t->name);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const unsigned char *p = rv_tok_token_bytes(t, ids[i], &len);
        if (!p)
            return rv_error_set("id %u at position %zu: no such token (vocabulary has %u ids)", ids[i], i, t->n_ids);
        if ((flags & RV_TOK_SKIP_SPECIAL) && t->special[ids[i]])
            continue;
        if (rv_buf_append(out, p, len) < 0)
            return -1;
    }
    return 0;
}
