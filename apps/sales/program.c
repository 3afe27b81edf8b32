/*
 * program.c -- the main() of the sales programs (program.h).
 */
#include "program.h"
#include "event.h"

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

/* Flags, environment and config file into conf; the sales event options
 * into pc. @returns 0, or the exit code (help printed: 0 is returned as -1). */
static int configure(const sales_program_t *p, rill_conf_t *conf, sales_parse_conf_t *pc,
                     int argc, char **argv) {
        char errstr[1024] = "";
        rill_conf_set(conf, "application.id", p->name, errstr, sizeof(errstr));
        for (const char *const *d = p->defaults; d && d[0]; d += 2)
                rill_conf_set(conf, d[0], d[1], errstr, sizeof(errstr));
        int rc = rill_conf_load_args(conf, argc, argv, errstr, sizeof(errstr));
        if (rc) {
                if (rc < 0)
                        fprintf(stderr, "%s: %s\n", p->name, errstr);
                return rc < 0 ? 2 : -1;
        }
        const char *dsn = rill_conf_get(conf, "pg.dsn");
        const char *unit = rill_conf_get(conf, "timestamp.unit");
        if (!dsn || !*dsn) {
                fprintf(stderr, "%s: pg.dsn is required (hint: --pg-dsn "
                                "'host=... dbname=... user=...' or RILL_PG_DSN; password in "
                                "PGPASSWORD or PGPASSFILE; --pg-dsn none writes to Kafka only)\n",
                        p->name);
                return 2;
        }
        /* "none": results go to the output topic only, no Postgres sink */
        if (!strcmp(dsn, "none") && rill_conf_set(conf, "pg.dsn", "", errstr, sizeof(errstr))) {
                fprintf(stderr, "%s: %s\n", p->name, errstr);
                return 2;
        }
        if (strcmp(unit, "s") && strcmp(unit, "ms")) {
                fprintf(stderr, "%s: invalid timestamp.unit \"%s\": use s or ms\n", p->name, unit);
                return 2;
        }
        *pc = (sales_parse_conf_t){
            .ts_millis = !strcmp(unit, "ms"),
            .max_future_ms = rill_conf_get_int(conf, "max.future.ms"),
            .max_past_ms = rill_conf_get_int(conf, "max.past.ms"),
            .key_max = (size_t)rill_conf_get_int(conf, "seller.id.max.bytes"),
        };
        return 0;
}

int sales_program_main(const sales_program_t *p, int argc, char **argv) {
        char errstr[1024] = "";
        rill_conf_t *conf = rill_conf_new(sales_confdefs);
        sales_parse_conf_t pc;
        int rc = configure(p, conf, &pc, argc, argv);
        if (rc) {
                rill_conf_destroy(conf);
                return rc < 0 ? 0 : rc;
        }
        rill_aggregator_t *agg = rill_aggregator_fields_new(p->fields, p->nfields, errstr,
                                                            sizeof(errstr));
        rill_app_t *app = NULL;
        if (agg) {
                rill_topology_t topo = {
                    .extract = sales_extract,
                    .format = p->format,
                    .opaque = &pc,
                    .store_name = p->store_name,
                    .aggregator = agg,
                    .pg_key_column = "seller_id",
                    .pg_columns = p->pg_columns,
                    .pg_ncolumns = p->pg_ncolumns,
                };
                app = rill_app_new(conf, &topo, errstr, sizeof(errstr));
        }
        if (!app) {
                fprintf(stderr, "%s: %s\n", p->name, errstr);
                rill_aggregator_destroy(agg);
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
                fprintf(stderr, "%s: %s\n", p->name, errstr);
                fflush(NULL);
                _exit(EXIT_ABANDONED);
        }
        the_app = NULL;
        rill_app_destroy(app);
        rill_aggregator_destroy(agg);
        rill_conf_destroy(conf);
        if (rc) {
                fprintf(stderr, "%s: %s\n", p->name, errstr);
                return 1;
        }
        return 0;
}
