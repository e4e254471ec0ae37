/* stopwords_en.c — the English stopword list (see stopwords_en.h). The same
 * words, in the same order, as bm25s's STOPWORDS_EN. */
#include "stopwords_en.h"

const char *const rv_stopwords_en[] = {
    "a",    "an",    "and",   "are",   "as",   "at",    "be",   "but",  "by",
    "for",  "if",    "in",    "into",  "is",   "it",    "no",   "not",  "of",
    "on",   "or",    "such",  "that",  "the",  "their", "then", "there", "these",
    "they", "this",  "to",    "was",   "will", "with",
};
const size_t rv_stopwords_en_count = sizeof rv_stopwords_en / sizeof rv_stopwords_en[0];
