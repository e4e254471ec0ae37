/* ir_text.c — whole-input reading, line and field splitting, strict number
 * parsing and identifier hashing for the evaluation inputs (see ir_text.h). */
#include "ir_text.h"
#include "error.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <xxhash.h>   /* XXH3_64bits */

int rv_read_whole(FILE *f, const char *name, rv_buf *out)
{
    struct stat st;
    /* A regular file's size lets one allocation hold it all. */
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
        (unsigned long long)st.st_size < SIZE_MAX - 1 &&
        rv_buf_reserve(out, (size_t)st.st_size + 2) < 0)
        return rv_error_prefix("%s", name);
    for (;;) {
        if (out->cap - out->len < 2 && rv_buf_reserve(out, 1 << 16) < 0)
            return rv_error_prefix("%s", name);
        size_t room = out->cap - out->len - 1;
        size_t n = fread(out->data + out->len, 1, room, f);
        out->len += n;
        if (n < room) {
            if (ferror(f))
                return rv_error_set("%s: read error: %s", name, strerror(errno ? errno : EIO));
            break;
        }
    }
    out->data[out->len] = '\0';
    return 0;
}

int rv_input_load(rv_input *in, FILE *f, const char *name)
{
    memset(in, 0, sizeof *in);
    struct stat st;
    off_t at = ftello(f);
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && at >= 0 && st.st_size > at &&
        (unsigned long long)st.st_size <= SIZE_MAX) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fileno(f), 0);
        if (m != MAP_FAILED) {
            madvise(m, (size_t)st.st_size, MADV_SEQUENTIAL);
            in->map = m;
            in->map_len = (size_t)st.st_size;
            in->data = (const char *)m + at;
            in->len = (size_t)(st.st_size - at);
            return 0;
        }
        /* not mappable (some file systems): read it */
    }
    if (rv_read_whole(f, name, &in->buf) < 0)
        return -1;
    in->data = (const char *)in->buf.data;
    in->len = in->buf.len;
    return 0;
}

int rv_input_copy(rv_input *in, const void *p, size_t len)
{
    memset(in, 0, sizeof *in);
    if (rv_buf_reserve(&in->buf, len + 1) < 0)
        return -1;
    if (len)
        memcpy(in->buf.data, p, len);
    in->buf.len = len;
    in->buf.data[len] = '\0';
    in->data = (const char *)in->buf.data;
    in->len = len;
    return 0;
}

void rv_input_free(rv_input *in)
{
    if (in->map)
        munmap(in->map, in->map_len);
    rv_buf_free(&in->buf);
    memset(in, 0, sizeof *in);
}

void rv_text_lines_init(rv_text_lines *it, const char *p, size_t len)
{
    it->p = p;
    it->end = p + len;
    it->lineno = 0;
}

int rv_text_lines_next(rv_text_lines *it, rv_str *line)
{
    if (it->p >= it->end)
        return 0;
    const char *start = it->p;
    const char *nl = memchr(start, '\n', (size_t)(it->end - start));
    const char *stop = nl ? nl : it->end;
    it->p = nl ? nl + 1 : it->end;
    if (stop > start && stop[-1] == '\r')
        stop--;
    it->lineno++;
    line->p = start;
    line->len = (size_t)(stop - start);
    return 1;
}

/* Bit i set when byte i of w is a space or a tab. Exact per byte: a byte b
 * is zero iff ((b & 0x7f) + 0x7f | b) has no top bit; the multiply gathers
 * the eight top bits (all distinct powers of two, so no carries) into the
 * top byte in byte order. */
static inline unsigned blank_mask8(uint64_t w)
{
    const uint64_t lo7 = 0x7f7f7f7f7f7f7f7full;
    uint64_t a = w ^ 0x2020202020202020ull, b = w ^ 0x0909090909090909ull;
    uint64_t za = ~(((a & lo7) + lo7) | a | lo7);
    uint64_t zb = ~(((b & lo7) + lo7) | b | lo7);
    return (unsigned)((((za | zb) >> 7) * 0x0102040810204080ull) >> 56);
}

static size_t split_blank_bytes(rv_str line, rv_str *fields, size_t max)
{
    const char *p = line.p, *e = line.p + line.len;
    size_t n = 0;
    for (;;) {
        while (p < e && (*p == ' ' || *p == '\t'))
            p++;
        if (p == e)
            return n;
        const char *s = p;
        while (p < e && *p != ' ' && *p != '\t')
            p++;
        if (n < max) {
            fields[n].p = s;
            fields[n].len = (size_t)(p - s);
        }
        n++;
    }
}

size_t rv_split_blank(rv_str line, rv_str *fields, size_t max)
{
    /* Lines of up to 64 bytes (nearly every TREC line): one 64-bit mask of
     * the blanks, eight bytes at a time, then the fields are the runs of
     * zero bits. Longer lines take the byte loop. */
    if (line.len > 64)
        return split_blank_bytes(line, fields, max);
    uint64_t blank = 0;
    size_t i = 0;
    for (; i + 8 <= line.len; i += 8) {
        uint64_t w = rv_load_u64((const unsigned char *)line.p + i);   /* byte k -> bits 8k.. */
        blank |= (uint64_t)blank_mask8(w) << i;
    }
    size_t rem = line.len - i;
    if (rem && line.len >= 8) {
        /* the last 8 bytes of the line, shifted so its last rem bytes come first */
        uint64_t w = rv_load_u64((const unsigned char *)line.p + line.len - 8) >> (8 * (8 - rem));
        blank |= (uint64_t)(blank_mask8(w) & ((1u << rem) - 1)) << i;
    } else
        for (; i < line.len; i++)
            if (line.p[i] == ' ' || line.p[i] == '\t')
                blank |= 1ull << i;
    uint64_t word = ~blank & (line.len == 64 ? ~0ull : (1ull << line.len) - 1);
    size_t n = 0;
    while (word) {
        unsigned start = (unsigned)__builtin_ctzll(word);
        uint64_t rest = ~word & ~((1ull << start) - 1);   /* blanks (or the end) from start on */
        unsigned end = rest ? (unsigned)__builtin_ctzll(rest) : 64;
        if (n < max) {
            fields[n].p = line.p + start;
            fields[n].len = end - start;
        }
        n++;
        word &= end == 64 ? 0 : ~0ull << end;
    }
    return n;
}

size_t rv_split_tab(rv_str line, rv_str *fields, size_t max)
{
    const char *p = line.p, *e = line.p + line.len;
    size_t n = 0;
    for (;;) {
        const char *tab = memchr(p, '\t', (size_t)(e - p));
        const char *stop = tab ? tab : e;
        if (n < max) {
            fields[n].p = p;
            fields[n].len = (size_t)(stop - p);
        }
        n++;
        if (!tab)
            return n;
        p = tab + 1;
    }
}

int rv_parse_i32(rv_str s, int32_t *out)
{
    const char *p = s.p, *e = s.p + s.len;
    int neg = 0;
    if (p < e && (*p == '+' || *p == '-'))
        neg = *p++ == '-';
    if (p == e)
        return -1;
    long long v = 0;
    for (; p < e; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
        if (v > 2147483648LL)
            return -1;
    }
    if (neg)
        v = -v;
    if (v > INT32_MAX || v < INT32_MIN)
        return -1;
    *out = (int32_t)v;
    return 0;
}

/* strtod on a NUL-terminated copy; the whole field must be consumed. */
static int parse_f64_slow(rv_str s, double *out)
{
    char small[128];
    char *buf = s.len < sizeof small ? small : malloc(s.len + 1);
    if (!buf)
        return -1;
    memcpy(buf, s.p, s.len);
    buf[s.len] = '\0';
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    /* strtod skips leading white space; a field has none */
    int ok = s.len > 0 && !isspace((unsigned char)buf[0]) && end == buf + s.len && !isnan(v);
    if (buf != small)
        free(buf);
    if (!ok)
        return -1;
    *out = v;
    return 0;
}

int rv_parse_f64(rv_str s, double *out)
{
    /* Fast path (Clinger): a mantissa of at most 2^53 and a power of ten of
     * at most 10^22 are both exact doubles, so one multiplication or division
     * rounds once, correctly. Everything else goes to strtod. */
    static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    const char *p = s.p, *e = s.p + s.len;
    int neg = 0, digits = 0, any = 0;
    uint64_t m = 0;
    long e10 = 0;
    if (p < e && (*p == '+' || *p == '-'))
        neg = *p++ == '-';
    for (; p < e && *p >= '0' && *p <= '9'; p++) {
        any = 1;
        if (m == 0 && *p == '0')
            continue;
        if (digits == 19)
            return parse_f64_slow(s, out);
        m = m * 10 + (uint64_t)(*p - '0');
        digits++;
    }
    if (p < e && *p == '.') {
        for (p++; p < e && *p >= '0' && *p <= '9'; p++) {
            any = 1;
            e10--;
            if (m == 0 && *p == '0')
                continue;
            if (digits == 19)
                return parse_f64_slow(s, out);
            m = m * 10 + (uint64_t)(*p - '0');
            digits++;
        }
    }
    if (!any)
        return parse_f64_slow(s, out);   /* inf, infinity, or malformed */
    if (p < e && (*p == 'e' || *p == 'E')) {
        int eneg = 0;
        long x = 0;
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            eneg = *p++ == '-';
        if (p == e || *p < '0' || *p > '9')
            return -1;
        for (; p < e && *p >= '0' && *p <= '9'; p++)
            if (x < 100000)
                x = x * 10 + (*p - '0');
        e10 += eneg ? -x : x;
    }
    if (p != e)
        return parse_f64_slow(s, out);   /* e.g. hexadecimal, as strtod reads it */
    if (m == 0) {
        *out = neg ? -0.0 : 0.0;
        return 0;
    }
    if (m > (1ull << 53) || e10 < -22 || e10 > 22)
        return parse_f64_slow(s, out);
    double v = (double)m;
    v = e10 < 0 ? v / pow10[-e10] : v * pow10[e10];
    *out = neg ? -v : v;
    return 0;
}

uint64_t rv_id_hash(const char *s, size_t n)
{
    return XXH3_64bits(s, n);
}

uint32_t rv_key_hash32(uint64_t id_hash, uint64_t scope)
{
    /* splitmix64's finalizer spreads the scope over all bits */
    uint64_t z = id_hash ^ ((scope + 1) * 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}

static size_t capacity_for(size_t n)
{
    size_t cap = 16;
    while (cap / 2 < n)
        cap *= 2;
    return cap;
}

int rv_id_index_reserve(rv_id_index *ix, size_t more)
{
    size_t need;
    if (rv_size_add(ix->count, more, &need, "id index") < 0)
        return -1;
    if (need >= UINT32_MAX)
        return rv_error_set("id index: %zu items is more than this build handles (2^32 - 1)", need);
    size_t cap = ix->slots ? ix->mask + 1 : 0;
    if (need <= cap / 2)
        return 0;
    size_t ncap = capacity_for(need);
    rv_id_slot *ns = rv_calloc(ncap, sizeof *ns);
    if (!ns)
        return -1;
    size_t nmask = ncap - 1;
    for (size_t i = 0; i < cap; i++) {
        if (!ix->slots[i].item)
            continue;
        size_t j = ix->slots[i].hash & nmask;
        while (ns[j].item)
            j = (j + 1) & nmask;
        ns[j] = ix->slots[i];
    }
    free(ix->slots);
    ix->slots = ns;
    ix->mask = nmask;
    ix->alloc = ncap;
    return 0;
}

int rv_id_index_reset(rv_id_index *ix, size_t n)
{
    if (n >= UINT32_MAX)
        return rv_error_set("id index: %zu items is more than this build handles (2^32 - 1)", n);
    size_t cap = capacity_for(n);
    if (cap > ix->alloc) {
        rv_id_slot *ns = realloc(ix->slots, cap * sizeof *ns);
        if (!ns)
            return rv_error_set("out of memory for an index of %zu ids", n);
        ix->slots = ns;
        ix->alloc = cap;
    }
    memset(ix->slots, 0, cap * sizeof *ix->slots);
    ix->mask = cap - 1;
    ix->count = 0;
    return 0;
}

void rv_id_index_free(rv_id_index *ix)
{
    free(ix->slots);
    ix->slots = NULL;
    ix->mask = ix->count = ix->alloc = 0;
}

int rv_str_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}
