/* stopwords_en.h — the English stopword list bm25s applies by default
 * (stopwords="en": the 33 words of the Lucene/Elasticsearch English list).
 * Data only; lib/analyzer.c turns it into a lookup set. */
#ifndef RV_STOPWORDS_EN_H
#define RV_STOPWORDS_EN_H

#include <stddef.h>

extern const char *const rv_stopwords_en[];
extern const size_t rv_stopwords_en_count;

#endif
