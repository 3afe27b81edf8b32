/*
 * fastscan.h -- a conservative fast path in front of jansson for the common
 * sales event: one flat JSON object of printable-ASCII strings without
 * escapes, small non-negative integers, true/false/null.
 *
 * It either ACCEPTS (the record is valid JSON, every key distinct, and the
 * three fields are present with the right types and in range, so jansson
 * would extract exactly the same values) or DEFERS (anything else: escapes,
 * non-ASCII, nesting, fractions, exponents, signs, duplicates, a missing or
 * mistyped field, an empty or too-long seller_id...). A deferred record goes
 * through jansson, which produces the precise error. The fast path never
 * rejects, so every error message stays jansson's.
 *
 * Why: jansson builds a document with a hash table per record: ~900 ns per
 * record against ~60 ns here (tests/bench/micro/extract_bench.c), about a
 * quarter of the engine's CPU per event. tests/unit/test_fastscan.c checks
 * the two agree on generated and mutated records.
 */
#ifndef SALES_FASTSCAN_H
#define SALES_FASTSCAN_H

#include <stddef.h>
#include <stdint.h>

typedef struct sales_fields {
        const char *key; /* points into the record */
        size_t key_len;
        int64_t amount;
        int64_t ts;
} sales_fields_t;

/** @returns 1 accepted (*out filled), 0 deferred to the full parser.
 *  @locality any thread; no allocation, no state. */
int sales_fastscan(const char *p, size_t len, size_t key_max, sales_fields_t *out);

#endif
