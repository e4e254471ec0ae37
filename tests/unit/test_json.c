/* test_json.c — the strict JSON parser and the string escaper. */
#include "test.h"
#include "buf.h"
#include "error.h"
#include "json.h"

static rv_json_parser *jp;

static rv_json *parse(const char *s) { return rv_json_parse(jp, s, strlen(s)); }

static void values(void)
{
    rv_json *v = parse(" {\"a\": [1, -2.5e3, true, false, null, \"x\"], \"b\": {}} ");
    REQUIRE(v && v->type == RV_JSON_OBJECT && v->len == 2, "%s", rv_error_get());
    const rv_json *a = rv_json_get(v, "a");
    REQUIRE(a && a->type == RV_JSON_ARRAY && a->len == 6, "array");
    CHECK(a->u.items[0].u.number == 1 && strcmp(a->u.items[0].raw, "1") == 0, "1");
    CHECK(a->u.items[1].u.number == -2500.0, "-2.5e3 -> %g", a->u.items[1].u.number);
    CHECK(a->u.items[2].type == RV_JSON_TRUE && a->u.items[3].type == RV_JSON_FALSE, "bools");
    CHECK(a->u.items[4].type == RV_JSON_NULL, "null");
    CHECK(a->u.items[5].type == RV_JSON_STRING && strcmp(a->u.items[5].u.string, "x") == 0, "string");
    CHECK(rv_json_get(v, "b")->type == RV_JSON_OBJECT, "empty object");
    CHECK(rv_json_get(v, "c") == NULL, "missing key");
    int64_t i;
    CHECK(rv_json_as_int64(&a->u.items[0], &i) == 0 && i == 1, "int");
    CHECK(rv_json_as_int64(&a->u.items[1], &i) < 0, "float taken as int");
}

static void escapes(void)
{
    rv_json *v = parse("\"q\\\"b\\\\s\\/n\\n\\t\\r\\b\\f\\u00e9\\u20ac\\ud83d\\ude00\\u0000end\"");
    REQUIRE(v && v->type == RV_JSON_STRING, "%s", rv_error_get());
    const char want[] = "q\"b\\s/n\n\t\r\b\f\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\0end";
    CHECK(v->len == sizeof want - 1 && memcmp(v->u.string, want, v->len) == 0, "unescape (len %zu)", v->len);
}

static void rejects(void)
{
    const char *bad[] = {"", "{", "[1,]", "{\"a\" 1}", "01", "1.", "-", "tru", "\"abc", "\"\\x\"",
                         "\"\\ud800\"", "\"\\udc00\"", "\"a\tb\"", "\"\xff\"", "\"\xc0\xaf\"",
                         "\"\xed\xa0\x80\"", "1 2", "{\"a\":1}x", "[1]]", "nan", "{1:2}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(parse(bad[i]) == NULL, "accepted invalid JSON #%zu: %s", i, bad[i]);
    parse("[1, 2, x]");
    CHECK(strstr(rv_error_get(), "offset 7") != NULL, "offset in message: %s", rv_error_get());
}

static void deep_nesting(void)
{
    char buf[2100];
    memset(buf, '[', 1000);
    memset(buf + 1000, ']', 1000);
    buf[2000] = 0;
    CHECK(parse(buf) == NULL, "1000 levels accepted");
    memset(buf, '[', 500);
    memset(buf + 500, ']', 500);
    buf[1000] = 0;
    CHECK(parse(buf) != NULL, "500 levels rejected: %s", rv_error_get());
}

/* Escaping then parsing gives back every byte string of valid UTF-8. */
static void escape_round_trip(void)
{
    rv_buf b = {0};
    for (int trial = 0; trial < 2000; trial++) {
        char s[64];
        size_t n = test_rand() % 40, k = 0;
        while (k < n) {
            unsigned r = (unsigned)(test_rand() % 6);
            if (r == 0) s[k++] = (char)(test_rand() % 32);           /* control */
            else if (r == 1) s[k++] = "\"\\/"[test_rand() % 3];
            else if (r == 2 && k + 2 <= n) { s[k++] = (char)0xc3; s[k++] = (char)0xa9; }
            else if (r == 3 && k + 3 <= n) { s[k++] = (char)0xe2; s[k++] = (char)0x80; s[k++] = (char)0xa8; }
            else s[k++] = (char)(' ' + test_rand() % 95);
        }
        n = k;
        b.len = 0;
        rv_json_put_string(&b, s, n);
        rv_json *v = rv_json_parse(jp, (const char *)b.data, b.len);
        CHECK(v && v->type == RV_JSON_STRING && v->len == n && memcmp(v->u.string, s, n) == 0,
              "round trip failed at trial %d", trial);
    }
    rv_buf_free(&b);
}

int main(void)
{
    test_suite = "json";
    jp = rv_json_parser_new();
    RUN_TEST(values);
    RUN_TEST(escapes);
    RUN_TEST(rejects);
    RUN_TEST(deep_nesting);
    RUN_TEST(escape_round_trip);
    rv_json_parser_free(jp);
    TEST_EXIT();
}
