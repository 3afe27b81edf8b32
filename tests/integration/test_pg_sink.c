/* Integration: the Postgres sink against the real local server through
 * libpq: migration, an exact round trip of hostile seller ids (parameters
 * only), idempotent upserts, epoch fencing of a zombie, and a DSN with a
 * password refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <libpq-fe.h>
#include "itest.h"
#include "pgsink.h"

static char err[512], table[64], app[64];

static rill_pgsink_spec_t spec(void) {
        rill_pgsink_spec_t s = {itest_env("RILL_PG_DSN"), table, "seller_id", "total_amount_usd",
                                "sales_count", app};
        return s;
}

static PGresult *q(const char *sql, int n, const char *const *params) {
        PGconn *c = PQconnectdb(itest_env("RILL_PG_DSN"));
        assert_int_equal(PQstatus(c), CONNECTION_OK);
        PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
                fail_msg("%s: %s", sql, PQresultErrorMessage(r));
        PQfinish(c);
        return r;
}

static void roundtrip_and_fencing(void **s) {
        (void)s;
        snprintf(table, sizeof(table), "itest_sales_%d", (int)getpid());
        snprintf(app, sizeof(app), "itest-app-%d", (int)getpid());
        rill_pgsink_spec_t sp = spec();
        rill_pgsink_t *a = rill_pgsink_connect(&sp, err, sizeof(err));
        if (!a)
                fail_msg("%s", err);
        assert_int_equal(rill_pgsink_migrate(a, err, sizeof(err)), 0);
        assert_int_equal(rill_pgsink_migrate(a, err, sizeof(err)), 0); /* idempotent */
        int64_t ea = rill_pgsink_acquire_epoch(a, "t", 0, err, sizeof(err));
        assert_true(ea >= 1);
        const char *keys[] = {"plain", "quo\"te", "back\\slash", "it's'); DROP TABLE x;--",
                              "{brace,comma}", "ünïcødé €", "NULL"};
        int nkeys = sizeof(keys) / sizeof(*keys);
        for (int i = 0; i < nkeys; i++) {
                rill_result_t r = {keys[i], strlen(keys[i]), 60000, 120000, 100 + i, i + 1, 0, 0};
                rill_pgsink_add_result(a, &r);
        }
        rill_pgsink_add_progress(a, "t", 0, 42, ea);
        assert_int_equal(rill_pgsink_commit(a, err, sizeof(err)), 0);
        /* replay of the same window: idempotent, values replaced not added */
        rill_result_t again = {keys[0], strlen(keys[0]), 60000, 120000, 100, 1, 0, 0};
        rill_pgsink_add_result(a, &again);
        rill_pgsink_add_progress(a, "t", 0, 42, ea);
        assert_int_equal(rill_pgsink_commit(a, err, sizeof(err)), 0);

        char sql[256];
        snprintf(sql, sizeof(sql),
                 "SELECT total_amount_usd, sales_count, extract(epoch from window_start)::bigint,"
                 " extract(epoch from window_end)::bigint FROM %s WHERE seller_id = $1", table);
        for (int i = 0; i < nkeys; i++) {
                PGresult *r = q(sql, 1, &keys[i]);
                assert_int_equal(PQntuples(r), 1);
                assert_int_equal(atoll(PQgetvalue(r, 0, 0)), 100 + i);
                assert_int_equal(atoll(PQgetvalue(r, 0, 1)), i + 1);
                assert_int_equal(atoll(PQgetvalue(r, 0, 2)), 60);
                assert_int_equal(atoll(PQgetvalue(r, 0, 3)), 120);
                PQclear(r);
        }
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
        PGresult *r = q(sql, 0, NULL);
        assert_int_equal(atoi(PQgetvalue(r, 0, 0)), nkeys);
        PQclear(r);

        /* a new owner takes the partition: the old one (a zombie) is refused */
        rill_pgsink_t *b = rill_pgsink_connect(&sp, err, sizeof(err));
        assert_non_null(b);
        int64_t eb = rill_pgsink_acquire_epoch(b, "t", 0, err, sizeof(err));
        assert_true(eb > ea);
        rill_result_t z = {"zombie", 6, 60000, 120000, 1, 1, 0, 0};
        rill_pgsink_add_result(a, &z);
        rill_pgsink_add_progress(a, "t", 0, 99, ea);
        assert_int_equal(rill_pgsink_commit(a, err, sizeof(err)), 1);
        assert_non_null(strstr(err, "fenced"));
        const char *zk[] = {"zombie"};
        snprintf(sql, sizeof(sql), "SELECT 1 FROM %s WHERE seller_id = $1", table);
        r = q(sql, 1, zk);
        assert_int_equal(PQntuples(r), 0); /* nothing of the zombie's transaction */
        PQclear(r);
        const char *pp[] = {app};
        r = q("SELECT next_offset, epoch FROM rill_sink_progress WHERE app_id = $1", 1, pp);
        assert_int_equal(atoll(PQgetvalue(r, 0, 0)), 42);
        assert_int_equal(atoll(PQgetvalue(r, 0, 1)), eb);
        PQclear(r);
        /* the new owner writes fine */
        rill_pgsink_add_result(b, &z);
        rill_pgsink_add_progress(b, "t", 0, 99, eb);
        assert_int_equal(rill_pgsink_commit(b, err, sizeof(err)), 0);
        rill_pgsink_destroy(a);
        rill_pgsink_destroy(b);
}

static void password_in_dsn_refused(void **s) {
        (void)s;
        assert_int_equal(rill_pgsink_check_dsn("host=127.0.0.1 password=hunter2", err, sizeof(err)), -1);
        assert_non_null(strstr(err, "PGPASSWORD"));
        assert_null(strstr(err, "hunter2"));
        assert_int_equal(rill_pgsink_check_dsn("host=127.0.0.1 dbname=x", err, sizeof(err)), 0);
}

static void unreachable_server_is_one_clear_error(void **s) {
        (void)s;
        rill_pgsink_spec_t sp = spec();
        sp.dsn = "host=127.0.0.1 port=1 dbname=x user=y connect_timeout=2";
        assert_null(rill_pgsink_connect(&sp, err, sizeof(err)));
        assert_non_null(strstr(err, "127.0.0.1:1"));
        assert_null(strchr(err, '\n'));
}

int main(void) {
        const struct CMUnitTest tests[] = {cmocka_unit_test(roundtrip_and_fencing),
                                           cmocka_unit_test(password_in_dsn_refused),
                                           cmocka_unit_test(unreachable_server_is_one_clear_error)};
        return cmocka_run_group_tests(tests, NULL, NULL);
}
