/* search_bm25.h — the lexical baseline of rv-search:
 *
 *   rv-search --bm25 --corpus DOCS [OPTION]... [QUERIES] > run.trec
 *
 * DOCS is a doc stream, a chunk stream, or a BEIR corpus.jsonl; QUERIES a doc
 * stream or a BEIR queries.jsonl (standard input by default). Writes a TREC
 * run (qid Q0 docid rank score tag, scores %.9g) or, with --stream, a run
 * stream. The BM25 engine is lib/bm25.h. The caller must have called
 * rv_cli_init (messages are prefixed with the tool name); the function exits
 * on errors (status 1, or 2 for usage) and returns 0 on success. */
#ifndef RV_SEARCH_BM25_H
#define RV_SEARCH_BM25_H

int rv_search_bm25_main(int argc, char **argv);

#endif
