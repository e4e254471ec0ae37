/* json.h — a strict JSON (RFC 8259) parser into an arena-allocated tree, and
 * a string escaper for writing JSON.
 *
 * Used for JSONL inputs, stream metadata, tokenizer.json, config.json and
 * safetensors headers. Strings are unescaped to UTF-8; invalid UTF-8, lone
 * surrogates, control characters in strings, trailing garbage and nesting
 * deeper than 512 levels are errors that name the byte offset. A parser object
 * owns the memory of the last tree it produced and reuses it on the next parse,
 * so parsing a JSONL file line by line allocates little. */
#ifndef RV_JSON_H
#define RV_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef enum {
    RV_JSON_NULL,
    RV_JSON_FALSE,
    RV_JSON_TRUE,
    RV_JSON_NUMBER,
    RV_JSON_STRING,
    RV_JSON_ARRAY,
    RV_JSON_OBJECT
} rv_json_type;

typedef struct rv_json rv_json;

typedef struct {
    const char *key;   /* NUL-terminated UTF-8 (may contain NUL via \u0000: use key_len) */
    size_t key_len;
    rv_json *value;
} rv_json_member;

struct rv_json {
    rv_json_type type;
    size_t len;                 /* string: bytes; array: items; object: members */
    union {
        double number;
        const char *string;     /* NUL-terminated, len bytes */
        rv_json *items;
        rv_json_member *members;
    } u;
    const char *raw;            /* numbers: the literal text (NUL-terminated) */
};

typedef struct rv_json_parser rv_json_parser;

rv_json_parser *rv_json_parser_new(void);
void rv_json_parser_free(rv_json_parser *p);

/* Parses exactly one JSON value (surrounding whitespace allowed) from
 * text[0..len). The tree lives until the next parse or free. NULL on error,
 * with a message "offset N: expected X, found Y". */
rv_json *rv_json_parse(rv_json_parser *p, const char *text, size_t len);

/* Member lookup (first match) in an object; NULL if absent or not an object. */
const rv_json *rv_json_get(const rv_json *obj, const char *key);

/* Strict conversions: an integer literal in range (no fraction/exponent). */
int rv_json_as_int64(const rv_json *v, int64_t *out);

const char *rv_json_type_name(rv_json_type t);

/* Appends s[0..n) as a JSON string literal (quotes included): escapes '"',
 * '\\' and control characters, keeps all other UTF-8 bytes as they are. */
int rv_json_put_string(rv_buf *b, const char *s, size_t n);

/* Returns 1 when s[0..n) is valid UTF-8 (no surrogates, no overlongs). */
int rv_utf8_valid(const char *s, size_t n);

#endif
