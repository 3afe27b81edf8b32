/*
 * sales-aggregator -- total sales per seller over tumbling event-time
 * windows, exactly once, to Kafka (aggregated-sales) and PostgreSQL
 * (aggregated_sales). The engine does the work; this program supplies the
 * sales event format and turns configuration and signals into a run.
 *
 * Exit codes: 0 clean stop, 2 a bad flag, variable or config file value,
 * 3 stopped at the shutdown deadline (shutdown.timeout.ms after SIGTERM)
 * with stream threads abandoned (safe: the next owner aborts their open
 * transactions), 1 anything else (unreachable servers, missing topics, a
 * refused DSN, a fatal error while running).
 */
#include "event.h"
#include "rill.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define EXIT_ABANDONED 3

static rill_app_t *the_app;

static void on_signal(int sig) {
        (void)sig;
        if (the_app)
                rill_app_stop(the_app);
}

int main(int argc, char **argv) {
        char errstr[1024] = "";
        rill_conf_t *conf = rill_conf_new(sales_confdefs);
        rill_conf_set(conf, "application.id", "sales-aggregator", errstr, sizeof(errstr));
        int rc = rill_conf_load_args(conf, argc, argv, errstr, sizeof(errstr));
        if (rc) {
                if (rc < 0)
                        fprintf(stderr, "sales-aggregator: %s\n", errstr);
                rill_conf_destroy(conf);
                return rc < 0 ? 2 : 0;
        }
        const char *dsn = rill_conf_get(conf, "pg.dsn");
        const char *unit = rill_conf_get(conf, "timestamp.unit");
        if (!dsn || !*dsn) {
                fprintf(stderr, "sales-aggregator: pg.dsn is required (hint: --pg-dsn "
                                "'host=... dbname=... user=...' or RILL_PG_DSN; password in "
                                "PGPASSWORD or PGPASSFILE; --pg-dsn none writes to Kafka only)\n");
                rill_conf_destroy(conf);
                return 2;
        }
        /* "none": results go to the output topic only, no Postgres sink */
        if (!strcmp(dsn, "none") &&
            rill_conf_set(conf, "pg.dsn", "", errstr, sizeof(errstr))) {
                fprintf(stderr, "sales-aggregator: %s\n", errstr);
                rill_conf_destroy(conf);
                return 2;
        }
        if (strcmp(unit, "s") && strcmp(unit, "ms")) {
                fprintf(stderr, "sales-aggregator: invalid timestamp.unit \"%s\": use s or ms\n",
                        unit);
                rill_conf_destroy(conf);
                return 2;
        }
        sales_parse_conf_t pc = {
            .ts_millis = !strcmp(unit, "ms"),
            .max_future_ms = rill_conf_get_int(conf, "max.future.ms"),
            .max_past_ms = rill_conf_get_int(conf, "max.past.ms"),
            .key_max = (size_t)rill_conf_get_int(conf, "seller.id.max.bytes"),
        };
        rill_topology_t topo = {
            .extract = sales_extract,
            .format = sales_format,
            .opaque = &pc,
            .store_name = "sales-windows",
            .pg_key_column = "seller_id",
            .pg_sum_column = "total_amount_usd",
            .pg_count_column = "sales_count",
        };
        rill_app_t *app = rill_app_new(conf, &topo, errstr, sizeof(errstr));
        if (!app) {
                fprintf(stderr, "sales-aggregator: %s\n", errstr);
                rill_conf_destroy(conf);
                return 1;
        }
        the_app = app;
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        rc = rill_app_run(app, errstr, sizeof(errstr));
        if (rc == RILL_APP_ABANDONED) {
                /* threads still run inside the app: no destroy, no exit()
                 * handlers (RocksDB's static destructors) under their feet */
                fprintf(stderr, "sales-aggregator: %s\n", errstr);
                fflush(NULL);
                _exit(EXIT_ABANDONED);
        }
        the_app = NULL;
        rill_app_destroy(app);
        rill_conf_destroy(conf);
        if (rc) {
                fprintf(stderr, "sales-aggregator: %s\n", errstr);
                return 1;
        }
        return 0;
}
