/*
 * program.h -- what a sales program is made of, and the main() they share.
 *
 * Both programs read the same sales events (event.h) and run the same
 * engine; they differ only in what a window holds, how a result is written
 * and where it goes: sales-aggregator (total per seller over tumbling
 * windows) and sales-stats (count, average and largest sale over hopping
 * windows). sales_program_main turns flags and signals into a run.
 *
 * Exit codes: 0 clean stop, 2 a bad flag, variable or config file value,
 * 3 stopped at the shutdown deadline (shutdown.timeout.ms after SIGTERM)
 * with stream threads abandoned (safe: the next owner aborts their open
 * transactions), 1 anything else (unreachable servers, missing topics, a
 * refused DSN, a bad window or aggregator definition, a fatal error while
 * running).
 */
#ifndef SALES_PROGRAM_H
#define SALES_PROGRAM_H

#include "rill.h"

typedef struct sales_program {
        const char *name;            /* e.g. "sales-aggregator": messages, application.id */
        const char *const *defaults; /* key, value, ...; NULL-terminated: set before flags */
        const rill_agg_field_t *fields;
        int nfields;
        rill_format_fn *format; /* opaque: the program's sales_parse_conf_t */
        const char *store_name;
        const rill_pg_column_t *pg_columns;
        int pg_ncolumns;
} sales_program_t;

/** Configure, run until SIGTERM/SIGINT or a fatal error, and return the
 *  exit code. @locality the main thread. */
int sales_program_main(const sales_program_t *p, int argc, char **argv);

#endif
