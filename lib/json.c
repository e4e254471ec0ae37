/* json.c — strict JSON parser and string escaper (see json.h). */
#include "json.h"
#include "error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_DEPTH = 512, ARENA_CHUNK = 1 << 16 };

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t cap, used;
    unsigned char data[];
} arena_chunk;

struct rv_json_parser {
    arena_chunk *chunks;   /* first chunk is the current one */
    arena_chunk *spare;    /* chunks kept from earlier parses */
    rv_buf stack;          /* scratch for array items / object members */
    const char *text, *end, *pos;
};

static void *arena_alloc(rv_json_parser *p, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    arena_chunk *c = p->chunks;
    if (!c || c->cap - c->used < n) {
        arena_chunk **prev = &p->spare;
        for (c = p->spare; c; prev = &c->next, c = c->next)
            if (c->cap >= n)
                break;
        if (c) {
            *prev = c->next;
        } else {
            size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
            c = malloc(sizeof *c + cap);
            if (!c) {
                rv_error_set("out of memory parsing JSON");
                return NULL;
            }
            c->cap = cap;
        }
        c->used = 0;
        c->next = p->chunks;
        p->chunks = c;
    }
    void *r = c->data + c->used;
    c->used += n;
    return r;
}

static void arena_reset(rv_json_parser *p)
{
    while (p->chunks) {
        arena_chunk *c = p->chunks;
        p->chunks = c->next;
        c->next = p->spare;
        p->spare = c;
    }
}

rv_json_parser *rv_json_parser_new(void)
{
    rv_json_parser *p = calloc(1, sizeof *p);
    if (!p)
        rv_error_set("out of memory");
    return p;
}

void rv_json_parser_free(rv_json_parser *p)
{
    if (!p)
        return;
    arena_reset(p);
    while (p->spare) {
        arena_chunk *c = p->spare;
        p->spare = c->next;
        free(c);
    }
    rv_buf_free(&p->stack);
    free(p);
}

static const char *describe(const rv_json_parser *p)
{
    static _Thread_local char what[32];
    if (p->pos >= p->end)
        return "end of input";
    unsigned char c = (unsigned char)*p->pos;
    if (c >= 0x20 && c < 0x7f)
        snprintf(what, sizeof what, "'%c'", c);
    else
        snprintf(what, sizeof what, "byte 0x%02x", c);
    return what;
}

static int fail(const rv_json_parser *p, const char *expected)
{
    return rv_error_set("offset %zu: expected %s, found %s",
                        (size_t)(p->pos - p->text), expected, describe(p));
}

static void skip_ws(rv_json_parser *p)
{
    while (p->pos < p->end && (*p->pos == ' ' || *p->pos == '\t' || *p->pos == '\n' || *p->pos == '\r'))
        p->pos++;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *s, const unsigned char *end)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned min;
    if (c >= 0xc2 && c <= 0xdf) { n = 2; min = 0x80; }
    else if (c >= 0xe0 && c <= 0xef) { n = 3; min = 0x800; }
    else if (c >= 0xf0 && c <= 0xf4) { n = 4; min = 0x10000; }
    else return 0;
    if ((size_t)(end - s) < n)
        return 0;
    unsigned cp = c & (0x7f >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

int rv_utf8_valid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s, *end = u + n;
    while (u < end) {
        if (*u < 0x80) { u++; continue; }
        size_t k = utf8_seq_len(u, end);
        if (!k)
            return 0;
        u += k;
    }
    return 1;
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xc0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12); o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f)); return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18); o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Parses a string at p->pos (which is at '"'); result in arena. */
static int parse_string(rv_json_parser *p, const char **out, size_t *out_len)
{
    const char *s = ++p->pos;
    /* fast scan: find the closing quote; unescaped output is never longer */
    const char *q = s;
    int has_escape = 0;
    while (q < p->end && *q != '"') {
        if (*q == '\\') {
            has_escape = 1;
            q++;
        }
        q++;
    }
    if (q >= p->end) {
        p->pos = p->end;
        return fail(p, "closing '\"' of a string");
    }
    size_t raw_len = (size_t)(q - s);
    char *o = arena_alloc(p, raw_len + 1);
    if (!o)
        return -1;
    char *w = o;
    const char *r = s;
    if (!has_escape) {
        while (r < q) {
            unsigned char c = (unsigned char)*r;
            if (c < 0x20) { p->pos = r; return fail(p, "a string character (control characters must be escaped)"); }
            if (c < 0x80) { *w++ = (char)c; r++; continue; }
            size_t k = utf8_seq_len((const unsigned char *)r, (const unsigned char *)q);
            if (!k) { p->pos = r; return fail(p, "valid UTF-8 in a string"); }
            memcpy(w, r, k); w += k; r += k;
        }
    } else {
        while (r < q) {
            unsigned char c = (unsigned char)*r;
            if (c == '\\') {
                r++;
                switch (*r) {
                case '"': *w++ = '"'; r++; break;
                case '\\': *w++ = '\\'; r++; break;
                case '/': *w++ = '/'; r++; break;
                case 'b': *w++ = '\b'; r++; break;
                case 'f': *w++ = '\f'; r++; break;
                case 'n': *w++ = '\n'; r++; break;
                case 'r': *w++ = '\r'; r++; break;
                case 't': *w++ = '\t'; r++; break;
                case 'u': {
                    unsigned cp, lo;
                    if (q - r < 5 || hex4(r + 1, &cp) < 0) { p->pos = r; return fail(p, "4 hex digits after \\u"); }
                    r += 5;
                    if (cp >= 0xdc00 && cp <= 0xdfff) { p->pos = r - 6; return fail(p, "a high surrogate before a low surrogate"); }
                    if (cp >= 0xd800 && cp <= 0xdbff) {
                        if (q - r < 6 || r[0] != '\\' || r[1] != 'u' || hex4(r + 2, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff) {
                            p->pos = r - 6;
                            return fail(p, "a low surrogate \\uDC00-\\uDFFF after a high surrogate");
                        }
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                        r += 6;
                    }
                    w += put_utf8(w, cp);
                    break;
                }
                default: p->pos = r; return fail(p, "an escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u)");
                }
            } else if (c < 0x20) {
                p->pos = r; return fail(p, "a string character (control characters must be escaped)");
            } else if (c < 0x80) {
                *w++ = (char)c; r++;
            } else {
                size_t k = utf8_seq_len((const unsigned char *)r, (const unsigned char *)q);
                if (!k) { p->pos = r; return fail(p, "valid UTF-8 in a string"); }
                memcpy(w, r, k); w += k; r += k;
            }
        }
    }
    *w = '\0';
    *out = o;
    *out_len = (size_t)(w - o);
    p->pos = q + 1;
    return 0;
}

static int parse_number(rv_json_parser *p, rv_json *v)
{
    const char *s = p->pos, *e = s;
    if (e < p->end && *e == '-') e++;
    if (e < p->end && *e == '0') e++;
    else if (e < p->end && *e >= '1' && *e <= '9') { while (e < p->end && *e >= '0' && *e <= '9') e++; }
    else { p->pos = e; return fail(p, "a digit"); }
    if (e < p->end && *e == '.') {
        e++;
        if (e >= p->end || *e < '0' || *e > '9') { p->pos = e; return fail(p, "a digit after '.'"); }
        while (e < p->end && *e >= '0' && *e <= '9') e++;
    }
    if (e < p->end && (*e == 'e' || *e == 'E')) {
        e++;
        if (e < p->end && (*e == '+' || *e == '-')) e++;
        if (e >= p->end || *e < '0' || *e > '9') { p->pos = e; return fail(p, "a digit in the exponent"); }
        while (e < p->end && *e >= '0' && *e <= '9') e++;
    }
    size_t n = (size_t)(e - s);
    char *raw = arena_alloc(p, n + 1);
    if (!raw)
        return -1;
    memcpy(raw, s, n);
    raw[n] = '\0';
    v->type = RV_JSON_NUMBER;
    v->raw = raw;
    v->u.number = strtod(raw, NULL);
    v->len = 0;
    p->pos = e;
    return 0;
}

static int parse_value(rv_json_parser *p, rv_json *v, int depth);

static int parse_container(rv_json_parser *p, rv_json *v, int depth, int is_object)
{
    if (depth >= MAX_DEPTH)
        return fail(p, "nesting of at most 512 levels");
    p->pos++; /* [ or { */
    size_t elem = is_object ? sizeof(rv_json_member) : sizeof(rv_json);
    size_t base = p->stack.len, count = 0;
    skip_ws(p);
    char close = is_object ? '}' : ']';
    if (p->pos < p->end && *p->pos == close) {
        p->pos++;
    } else {
        for (;;) {
            if (rv_buf_reserve(&p->stack, elem) < 0)
                return -1;
            /* note: p->stack.data may move during nested parses, so children
             * are written to a local and copied in afterwards */
            if (is_object) {
                rv_json_member m;
                skip_ws(p);
                if (p->pos >= p->end || *p->pos != '"')
                    return fail(p, "'\"' starting an object key");
                if (parse_string(p, &m.key, &m.key_len) < 0)
                    return -1;
                skip_ws(p);
                if (p->pos >= p->end || *p->pos != ':')
                    return fail(p, "':' after an object key");
                p->pos++;
                m.value = arena_alloc(p, sizeof(rv_json));
                if (!m.value || parse_value(p, m.value, depth + 1) < 0)
                    return -1;
                if (rv_buf_append(&p->stack, &m, sizeof m) < 0)
                    return -1;
            } else {
                rv_json child;
                if (parse_value(p, &child, depth + 1) < 0)
                    return -1;
                if (rv_buf_append(&p->stack, &child, sizeof child) < 0)
                    return -1;
            }
            count++;
            skip_ws(p);
            if (p->pos < p->end && *p->pos == ',') { p->pos++; continue; }
            if (p->pos < p->end && *p->pos == close) { p->pos++; break; }
            return fail(p, is_object ? "',' or '}' in an object" : "',' or ']' in an array");
        }
    }
    void *items = arena_alloc(p, count * elem);
    if (!items)
        return -1;
    if (count)
        memcpy(items, p->stack.data + base, count * elem);
    p->stack.len = base;
    v->type = is_object ? RV_JSON_OBJECT : RV_JSON_ARRAY;
    v->len = count;
    v->raw = NULL;
    if (is_object) v->u.members = items;
    else v->u.items = items;
    return 0;
}

static int parse_literal(rv_json_parser *p, rv_json *v, const char *word, rv_json_type t)
{
    size_t n = strlen(word);
    if ((size_t)(p->end - p->pos) < n || memcmp(p->pos, word, n) != 0)
        return fail(p, "a JSON value");
    p->pos += n;
    v->type = t;
    v->len = 0;
    v->raw = NULL;
    return 0;
}

static int parse_value(rv_json_parser *p, rv_json *v, int depth)
{
    skip_ws(p);
    if (p->pos >= p->end)
        return fail(p, "a JSON value");
    switch (*p->pos) {
    case '{': return parse_container(p, v, depth, 1);
    case '[': return parse_container(p, v, depth, 0);
    case '"':
        v->type = RV_JSON_STRING;
        v->raw = NULL;
        return parse_string(p, &v->u.string, &v->len);
    case 't': return parse_literal(p, v, "true", RV_JSON_TRUE);
    case 'f': return parse_literal(p, v, "false", RV_JSON_FALSE);
    case 'n': return parse_literal(p, v, "null", RV_JSON_NULL);
    default:
        if (*p->pos == '-' || (*p->pos >= '0' && *p->pos <= '9'))
            return parse_number(p, v);
        return fail(p, "a JSON value");
    }
}

rv_json *rv_json_parse(rv_json_parser *p, const char *text, size_t len)
{
    arena_reset(p);
    p->stack.len = 0;
    p->text = p->pos = text;
    p->end = text + len;
    rv_json *root = arena_alloc(p, sizeof *root);
    if (!root || parse_value(p, root, 0) < 0)
        return NULL;
    skip_ws(p);
    if (p->pos != p->end) {
        fail(p, "end of input after the JSON value");
        return NULL;
    }
    return root;
}

const rv_json *rv_json_get(const rv_json *obj, const char *key)
{
    if (!obj || obj->type != RV_JSON_OBJECT)
        return NULL;
    size_t kl = strlen(key);
    for (size_t i = 0; i < obj->len; i++)
        if (obj->u.members[i].key_len == kl && memcmp(obj->u.members[i].key, key, kl) == 0)
            return obj->u.members[i].value;
    return NULL;
}

int rv_json_as_int64(const rv_json *v, int64_t *out)
{
    if (!v || v->type != RV_JSON_NUMBER)
        return rv_error_set("expected an integer, found %s", v ? rv_json_type_name(v->type) : "nothing");
    if (strpbrk(v->raw, ".eE"))
        return rv_error_set("expected an integer, found %s", v->raw);
    errno = 0;
    long long x = strtoll(v->raw, NULL, 10);
    if (errno == ERANGE)
        return rv_error_set("integer %s out of range", v->raw);
    *out = x;
    return 0;
}

const char *rv_json_type_name(rv_json_type t)
{
    static const char *names[] = {"null", "false", "true", "a number", "a string", "an array", "an object"};
    return (unsigned)t < sizeof names / sizeof *names ? names[t] : "?";
}

int rv_json_put_string(rv_buf *b, const char *s, size_t n)
{
    /* worst case every byte becomes \u00XX */
    size_t need;
    if (rv_size_mul(n, 6, &need, "JSON string") < 0 || rv_buf_reserve(b, need + 2) < 0)
        return -1;
    unsigned char *w = b->data + b->len;
    *w++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *w++ = c;
            continue;
        }
        *w++ = '\\';
        switch (c) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '\n': *w++ = 'n'; break;
        case '\r': *w++ = 'r'; break;
        case '\t': *w++ = 't'; break;
        case '\b': *w++ = 'b'; break;
        case '\f': *w++ = 'f'; break;
        default: {
            static const char hex[] = "0123456789abcdef";
            *w++ = 'u'; *w++ = '0'; *w++ = '0';
            *w++ = (unsigned char)hex[c >> 4]; *w++ = (unsigned char)hex[c & 15];
        }
        }
    }
    *w++ = '"';
    b->len = (size_t)(w - b->data);
    return 0;
}
