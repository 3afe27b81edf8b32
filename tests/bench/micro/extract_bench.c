/*
 * extract_bench.c -- nanoseconds per record of the sales extractor (JSON parse
 * and validation) on records shaped like the producer's: the engine's path
 * (fast scan, jansson for the rest) and jansson alone, side by side.
 *
 * Usage: extract-bench [records]   (default 2,000,000)
 * Prints one JSON line: {"records":N,"fast_ns":X,"jansson_ns":Y,"ratio":Y/X}.
 * Run by hand or from tests/bench/run; it asserts nothing.
 */
#include "event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
        long n = argc > 1 ? atol(argv[1]) : 2000000;
        enum { DISTINCT = 1024 };
        static char recs[DISTINCT][128];
        static size_t lens[DISTINCT];
        for (int i = 0; i < DISTINCT; i++)
                lens[i] = (size_t)snprintf(recs[i], sizeof(recs[i]),
                                           "{\"seller_id\":\"seller-%04d\",\"amount_usd\":%d,"
                                           "\"sale_ts\":%d}",
                                           i * 7 % 10000, 1 + i * 37 % 5000, 1700000000 + i);
        sales_parse_conf_t pc = {0, 3600000, 0, 256};
        rill_extract_fn *fns[2] = {sales_extract, sales_extract_full};
        double ns[2];
        long long sums[2] = {0, 0};
        for (int f = 0; f < 2; f++) {
                rill_event_t ev;
                rill_reject_t rej;
                double t0 = now_s();
                for (long i = 0; i < n; i++) {
                        rill_raw_t raw = {NULL, 0, recs[i % DISTINCT], lens[i % DISTINCT],
                                          "sales-usd", 0, i, 1700000000000LL};
                        if (fns[f](&pc, &raw, &ev, &rej)) {
                                fprintf(stderr, "extract-bench: record %ld rejected: %s (%s)\n", i,
                                        rej.reason, rej.detail);
                                return 1;
                        }
                        sums[f] += ev.value + (long long)ev.key_len;
                }
                ns[f] = (now_s() - t0) * 1e9 / (double)n;
        }
        if (sums[0] != sums[1]) {
                fprintf(stderr, "extract-bench: the two paths extracted different values\n");
                return 1;
        }
        printf("{\"records\":%ld,\"fast_ns\":%.1f,\"jansson_ns\":%.1f,\"ratio\":%.1f}\n", n, ns[0],
               ns[1], ns[1] / ns[0]);
        return 0;
}
