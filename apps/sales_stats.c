/*
 * sales-stats -- the second application of the engine, on the same sales
 * events: per seller, over hopping windows of 5 minutes that start every
 * minute, the number of sales, their average and the largest amount,
 * exactly once, to Kafka (sales-stats) and PostgreSQL (sales_stats). What
 * differs from sales-aggregator is only what a window holds (the built-in
 * figures count, avg and max), the result record and the table's columns;
 * apps/sales/program.c runs it (exit codes: program.h).
 */
#include "event.h"
#include "program.h"

#include <math.h>
#include <stdio.h>

enum { STATS_COUNT, STATS_AVG, STATS_MAX, STATS_FIGURES };

static const rill_agg_field_t stats_fields[STATS_FIGURES] = {
    {"count", RILL_AGG_COUNT},
    {"avg", RILL_AGG_AVG},
    {"max", RILL_AGG_MAX},
};

static const rill_pg_column_t stats_columns[STATS_FIGURES] = {
    {"sales_count", "count"},        /* bigint */
    {"avg_amount_usd", "avg"},       /* double precision */
    {"max_amount_usd", "max"},       /* bigint */
};

/* {"seller_id":..,"window_start":"..Z","window_end":"..Z","window_start_ms":..,
 *  "sales_count":..,"avg_amount_usd":..,"max_amount_usd":..}; the average
 *  with 17 significant digits (it reads back as the same double). */
static size_t stats_format(void *opaque, const rill_result_t *res, char *buf, size_t size) {
        (void)opaque;
        size_t n = sales_result_head(res, buf, size);
        if (!n)
                return 0;
        double avg = rill_result_value(res, STATS_AVG).d;
        int m = snprintf(buf + n, size - n,
                         ",\"sales_count\":%lld,\"avg_amount_usd\":%.17g,\"max_amount_usd\":%lld}",
                         (long long)rill_result_value(res, STATS_COUNT).i,
                         isfinite(avg) ? avg : 0.0,
                         (long long)rill_result_value(res, STATS_MAX).i);
        if (m < 0 || (size_t)m >= size - n)
                return 0;
        return n + (size_t)m;
}

int main(int argc, char **argv) {
        static const char *const defaults[] = {"window.size.ms", "300000", "window.advance.ms",
                                               "60000", "output.topic", "sales-stats",
                                               "pg.table", "sales_stats", NULL};
        static const sales_program_t p = {
            .name = "sales-stats",
            .defaults = defaults,
            .fields = stats_fields,
            .nfields = STATS_FIGURES,
            .format = stats_format,
            .store_name = "stats-windows",
            .pg_columns = stats_columns,
            .pg_ncolumns = STATS_FIGURES,
        };
        return sales_program_main(&p, argc, argv);
}
