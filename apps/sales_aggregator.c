/*
 * sales-aggregator -- total sales per seller over tumbling event-time
 * windows, exactly once, to Kafka (aggregated-sales) and PostgreSQL
 * (aggregated_sales). The engine does the work; this program supplies the
 * sales event format, the figures a window holds (sum, count, first and
 * last event time) and the result record; apps/sales/program.c turns
 * configuration and signals into a run (exit codes: program.h).
 */
#include "event.h"
#include "program.h"

int main(int argc, char **argv) {
        static const sales_program_t p = {
            .name = "sales-aggregator",
            .fields = sales_fields,
            .nfields = SALES_FIGURES,
            .format = sales_format,
            .store_name = "sales-windows",
            .pg_columns = sales_pg_columns,
            .pg_ncolumns = 2,
        };
        return sales_program_main(&p, argc, argv);
}
