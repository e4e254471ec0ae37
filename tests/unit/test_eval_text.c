/* test_eval_text.c — the text plumbing under rv-eval (lib/ir_text.c): field
 * splitting against a plain byte loop, number parsing against strtod (bit
 * for bit), integers, lines, byte order of ids, and the id index. */
#include "test.h"

#include "buf.h"
#include "ir_text.h"

#include <math.h>
#include <stdint.h>

/* The obvious splitter the fast one must agree with. */
static size_t reference_split(const char *s, size_t len, size_t *starts, size_t *lens, size_t max)
{
    size_t n = 0, i = 0;
    while (i < len) {
        while (i < len && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (i == len)
            break;
        size_t b = i;
        while (i < len && s[i] != ' ' && s[i] != '\t')
            i++;
        if (n < max) {
            starts[n] = b;
            lens[n] = i - b;
        }
        n++;
    }
    return n;
}

static void test_split_blank_matches_byte_loop(void)
{
    static const char alphabet[] = {' ', '\t', 'a', 'Q', '0', '.', '\x09', '\x20', '\xc3', '\xa9', '\x7f', '\x21',
                                    '\x08', '\x0a', '\x19', '\x29', '\xa0', '\x89'};
    char line[200];
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = test_rand() % 140;
        int blank_pct = (int)(test_rand() % 60);
        for (size_t i = 0; i < len; i++)
            line[i] = (int)(test_rand() % 100) < blank_pct ? (test_rand() & 1 ? ' ' : '\t')
                                                           : alphabet[test_rand() % sizeof alphabet];
        size_t starts[80], lens[80];
        rv_str f[80];
        size_t max = test_rand() % 12;
        size_t want = reference_split(line, len, starts, lens, max);
        size_t got = rv_split_blank((rv_str){line, len}, f, max);
        REQUIRE(got == want, "line of %zu bytes: %zu fields, want %zu", len, got, want);
        for (size_t k = 0; k < got && k < max; k++)
            REQUIRE(f[k].p == line + starts[k] && f[k].len == lens[k], "field %zu of a %zu-byte line", k, len);
    }
}

static void test_split_tab_keeps_empty_fields(void)
{
    rv_str f[8];
    const char *s = "a\t\tb c\t";
    size_t n = rv_split_tab((rv_str){s, strlen(s)}, f, 8);
    CHECK(n == 4, "n = %zu", n);
    CHECK(f[0].len == 1 && f[1].len == 0 && f[2].len == 3 && memcmp(f[2].p, "b c", 3) == 0 && f[3].len == 0,
          "fields wrong");
    CHECK(rv_split_tab((rv_str){"", 0}, f, 8) == 1, "an empty line is one empty field");
}

/* A random decimal spelling: sign, digits, fraction, exponent. */
static size_t random_number(char *buf)
{
    size_t n = 0;
    unsigned r = (unsigned)test_rand();
    if (r % 5 == 0)
        buf[n++] = '-';
    else if (r % 11 == 0)
        buf[n++] = '+';
    size_t int_digits = test_rand() % 22, frac_digits = test_rand() % 22;
    if (test_rand() % 4 == 0)
        int_digits = 0;
    for (size_t i = 0; i < int_digits; i++)
        buf[n++] = (char)('0' + (i == 0 && test_rand() % 3 ? 1 + test_rand() % 9 : test_rand() % 10));
    if (frac_digits || !int_digits || test_rand() % 3 == 0) {
        buf[n++] = '.';
        if (!int_digits && !frac_digits)
            frac_digits = 1;
        for (size_t i = 0; i < frac_digits; i++)
            buf[n++] = (char)('0' + test_rand() % 10);
    }
    if (test_rand() % 3 == 0) {
        buf[n++] = test_rand() & 1 ? 'e' : 'E';
        if (test_rand() & 1)
            buf[n++] = test_rand() & 1 ? '-' : '+';
        n += (size_t)sprintf(buf + n, "%d", (int)(test_rand() % (test_rand() % 4 ? 30 : 400)));
    }
    buf[n] = '\0';
    return n;
}

static int same_double(double a, double b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

static void test_parse_f64_matches_strtod(void)
{
    char buf[128];
    for (int iter = 0; iter < 200000; iter++) {
        size_t n = random_number(buf);
        double want = strtod(buf, NULL), got = -12345;
        REQUIRE(rv_parse_f64((rv_str){buf, n}, &got) == 0, "\"%s\" refused", buf);
        REQUIRE(same_double(got, want), "\"%s\": %.17g, strtod %.17g", buf, got, want);
    }
    /* the shortest round-trip spellings of random doubles (what Python and
     * %.17g write) */
    for (int iter = 0; iter < 100000; iter++) {
        uint64_t bits = test_rand();
        double v;
        memcpy(&v, &bits, sizeof v);
        if (!isfinite(v))
            continue;
        int len = snprintf(buf, sizeof buf, iter & 1 ? "%.17g" : "%.9g", v);
        double want = strtod(buf, NULL), got;
        REQUIRE(rv_parse_f64((rv_str){buf, (size_t)len}, &got) == 0 && same_double(got, want), "\"%s\"", buf);
    }
}

static void test_parse_f64_special_spellings(void)
{
    static const char *const ok[] = {"inf", "-inf", "Infinity", "1e400", "-0", "0", ".5", "5.", "+3", "1E2",
                                     "0x1p3", "4.9e-324", "2.2250738585072011e-308", "1e-400",
                                     "0.1000000000000000055511151231257827"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        double got, want = strtod(ok[i], NULL);
        CHECK(rv_parse_f64((rv_str){ok[i], strlen(ok[i])}, &got) == 0 && same_double(got, want), "\"%s\"", ok[i]);
    }
    static const char *const bad[] = {"", "-", "+", ".", "e5", "1e", "1e+", "nan", "NaN", "-nan", "1.5x", "1,5",
                                      "\v1", "1 ", "--1", "0x", "inf5"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        double got;
        CHECK(rv_parse_f64((rv_str){bad[i], strlen(bad[i])}, &got) < 0, "\"%s\" accepted", bad[i]);
    }
    /* the field is bounded by its length, not by a NUL */
    double got;
    CHECK(rv_parse_f64((rv_str){"12.5 tag", 4}, &got) == 0 && got == 12.5, "bounded field");
}

static void test_parse_i32(void)
{
    struct { const char *s; int ok; int32_t v; } cases[] = {
        {"0", 1, 0},           {"-0", 1, 0},         {"+5", 1, 5},   {"2147483647", 1, INT32_MAX},
        {"-2147483648", 1, INT32_MIN}, {"2147483648", 0, 0}, {"-2147483649", 0, 0},
        {"", 0, 0},            {"-", 0, 0},          {"1.0", 0, 0},  {"12a", 0, 0},
        {"99999999999999999999", 0, 0}, {" 1", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int32_t v = 77;
        int rc = rv_parse_i32((rv_str){cases[i].s, strlen(cases[i].s)}, &v);
        CHECK((rc == 0) == cases[i].ok, "\"%s\": rc %d", cases[i].s, rc);
        if (cases[i].ok)
            CHECK(v == cases[i].v, "\"%s\" -> %d", cases[i].s, (int)v);
    }
}

static void test_lines(void)
{
    const char *text = "a\r\nb\n\nlast";
    rv_text_lines it;
    rv_text_lines_init(&it, text, strlen(text));
    rv_str l;
    const char *want[] = {"a", "b", "", "last"};
    for (size_t i = 0; i < 4; i++) {
        REQUIRE(rv_text_lines_next(&it, &l) == 1, "line %zu missing", i + 1);
        CHECK(it.lineno == i + 1 && l.len == strlen(want[i]) && memcmp(l.p, want[i], l.len) == 0,
              "line %zu: \"%.*s\"", i + 1, (int)l.len, l.p);
    }
    CHECK(rv_text_lines_next(&it, &l) == 0, "no line after the last");
}

static void test_str_cmp_is_strcmp_order(void)
{
    const char *ids[] = {"", "D", "d", "d1", "d10", "d2", "dz", "d\xc3\xa9", "\xff", "a b"};
    size_t n = sizeof ids / sizeof *ids;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            int want = strcmp(ids[i], ids[j]), got = rv_str_cmp(ids[i], strlen(ids[i]), ids[j], strlen(ids[j]));
            CHECK((want > 0) == (got > 0) && (want < 0) == (got < 0), "\"%s\" vs \"%s\": %d, strcmp %d", ids[i],
                  ids[j], got, want);
        }
}

static void test_same_bytes(void)
{
    char a[64], b[64];
    for (int iter = 0; iter < 100000; iter++) {
        size_t n = test_rand() % 40;
        for (size_t i = 0; i < n; i++)
            a[i] = b[i] = (char)(test_rand() % 3);
        if (n && test_rand() % 2)
            b[test_rand() % n] ^= (char)(1 + test_rand() % 255);   /* one byte differs, anywhere */
        int want = memcmp(a, b, n) == 0, got = rv_same_bytes(a, b, n);
        REQUIRE(got == want, "length %zu: %d, memcmp says %d", n, got, want);
    }
}

static void test_id_index(void)
{
    rv_id_index ix = {0};
    uint32_t keys[3000];
    for (size_t round = 0; round < 3; round++) {
        size_t n = round == 1 ? 3000 : 20;   /* big, then small again: reset must empty it */
        REQUIRE(rv_id_index_reset(&ix, n) == 0, "reset");
        for (size_t i = 0; i < n; i++) {
            keys[i] = (uint32_t)(test_rand() % 500);   /* repeats on purpose */
            size_t s = keys[i] & ix.mask;
            int found = 0;
            for (; ix.slots[s].item; s = (s + 1) & ix.mask)
                if (ix.slots[s].hash == keys[i] && keys[ix.slots[s].item - 1] == keys[i])
                    found = 1;
            if (!found)
                rv_id_index_put(&ix, s, keys[i], i);
        }
        /* every key is found, and only once */
        for (size_t i = 0; i < n; i++) {
            int hits = 0;
            for (size_t s = keys[i] & ix.mask; ix.slots[s].item; s = (s + 1) & ix.mask)
                hits += ix.slots[s].hash == keys[i];
            CHECK(hits == 1, "key %u found %d times", keys[i], hits);
        }
        CHECK(ix.count <= n && ix.mask + 1 >= 2 * ix.count, "load %zu in %zu slots", ix.count, ix.mask + 1);
    }
    rv_id_index_free(&ix);
    rv_id_index grow = {0};
    for (size_t i = 0; i < 5000; i++) {
        REQUIRE(rv_id_index_reserve(&grow, 1) == 0, "reserve");
        size_t s = (uint32_t)i * 2654435761u & grow.mask;
        while (grow.slots[s].item)
            s = (s + 1) & grow.mask;
        rv_id_index_put(&grow, s, (uint32_t)i * 2654435761u, i);
    }
    size_t seen = 0;
    for (size_t s = 0; s <= grow.mask; s++)
        seen += grow.slots[s].item != 0;
    CHECK(seen == 5000 && grow.count == 5000, "%zu items after growing", seen);
    rv_id_index_free(&grow);
}

int main(void)
{
    test_suite = "eval_text";
    RUN_TEST(test_split_blank_matches_byte_loop);
    RUN_TEST(test_split_tab_keeps_empty_fields);
    RUN_TEST(test_parse_f64_matches_strtod);
    RUN_TEST(test_parse_f64_special_spellings);
    RUN_TEST(test_parse_i32);
    RUN_TEST(test_lines);
    RUN_TEST(test_str_cmp_is_strcmp_order);
    RUN_TEST(test_same_bytes);
    RUN_TEST(test_id_index);
    TEST_EXIT();
}
