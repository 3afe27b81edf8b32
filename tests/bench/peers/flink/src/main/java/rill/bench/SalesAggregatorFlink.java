/*
 * The Flink peer of rill's sales-aggregator (tests/bench): the original
 * design's Flink SQL job, written with Flink's Java Table API in streaming
 * mode and run on a local mini-cluster inside this one JVM.
 *
 *   sales (Kafka, JSON {"seller_id","amount_usd","sale_ts"})
 *     --> event time ts = sale_ts * 1000, WATERMARK ts - GRACE
 *     --> TUMBLE(ts, WINDOW) GROUP BY seller_id, window: SUM(amount_usd), COUNT(*)
 *     --> Kafka OUTPUT, JSON {"seller_id","window_start","window_end",
 *         "window_start_ms","total_amount_usd","sales_count"} keyed by
 *         seller_id, exactly-once (Kafka transactions committed when a
 *         checkpoint completes)
 *     --> Postgres PG_TABLE, JDBC upsert on (seller_id, window_start): the
 *         columns of rill's aggregated_sales
 *
 * Both sinks read the one window aggregation (one statement set, the planner
 * shares the common plan). Checkpointing: EXACTLY_ONCE every CHECKPOINT_MS
 * (the others' commit interval), to the filesystem under STATE_DIR; the Kafka
 * source commits its offsets to the group APP_ID when a checkpoint completes,
 * which is what the benchmark driver watches.
 *
 * Semantics against rill and Kafka Streams (docs/benchmarks.md says more):
 *   - the watermark is Flink's: per Kafka partition (split) the largest event
 *     time seen minus GRACE, the minimum of those over the partitions of a
 *     source subtask, and the minimum over subtasks at the window operator.
 *     A window closes when that watermark passes its end; a record behind the
 *     watermark is dropped (no dead-letter topic). A partition that receives
 *     nothing holds every window back (no idleness timeout is set:
 *     table.exec.source.idle-timeout would trade that for late records);
 *   - the Postgres sink is at-least-once with idempotent upserts (rows are
 *     flushed every CHECKPOINT_MS and at each checkpoint), not a transaction
 *     fenced with the Kafka offsets as in rill;
 *   - a record that is not a valid event (not JSON, a field missing or of the
 *     wrong type, a negative amount or time) is skipped, as in both others.
 *
 * It prints logfmt lines on stdout for the benchmark driver:
 *   event=config flink=VERSION parallelism=N checkpoint_ms=N
 *   event=state state=RUNNING t_ms=...     (the job is running)
 *   event=state state=FAILED|FINISHED|CANCELED t_ms=... (the job ended)
 *
 * Usage: java -jar sales-aggregator-flink.jar BOOTSTRAP APP_ID INPUT OUTPUT
 *            WINDOW_MS GRACE_MS PARALLELISM STATE_DIR JDBC_URL PG_TABLE CHECKPOINT_MS
 * The Postgres user and password come from PGUSER and PGPASSWORD.
 */
package rill.bench;

import java.io.File;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.Statement;
import java.time.Instant;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.util.TimeZone;
import java.util.concurrent.TimeUnit;
import org.apache.flink.api.common.JobStatus;
import org.apache.flink.configuration.CheckpointingOptions;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.RestOptions;
import org.apache.flink.configuration.RestartStrategyOptions;
import org.apache.flink.core.execution.CheckpointingMode;
import org.apache.flink.core.execution.JobClient;
import org.apache.flink.runtime.util.EnvironmentInformation;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.api.EnvironmentSettings;
import org.apache.flink.table.api.StatementSet;
import org.apache.flink.table.api.TableResult;
import org.apache.flink.table.api.bridge.java.StreamTableEnvironment;
import org.apache.flink.table.functions.ScalarFunction;

public final class SalesAggregatorFlink {

    // ---- functions for the Kafka output's JSON ------------------------------------

    /** Epoch milliseconds of a window bound (a TIMESTAMP(3) in the UTC session zone). */
    public static final class EpochMillis extends ScalarFunction {
        public Long eval(@DataTypeHint("TIMESTAMP(3)") LocalDateTime t) {
            return t == null ? null : t.toInstant(ZoneOffset.UTC).toEpochMilli();
        }
    }

    /** A window bound as the others write it: Instant.toString(), e.g. 2026-12-01T10:00:00Z. */
    public static final class IsoInstant extends ScalarFunction {
        public String eval(@DataTypeHint("TIMESTAMP(3)") LocalDateTime t) {
            return t == null ? null : Instant.ofEpochMilli(t.toInstant(ZoneOffset.UTC).toEpochMilli()).toString();
        }
    }

    // ---- SQL text ------------------------------------------------------------------

    /** A SQL string literal. */
    static String lit(String s) {
        return "'" + s.replace("'", "''") + "'";
    }

    /** A day-to-second interval literal of exactly ms milliseconds. */
    static String interval(long ms) {
        long d = ms / 86_400_000L, rest = ms % 86_400_000L;
        return String.format("INTERVAL '%d %02d:%02d:%02d.%03d' DAY TO SECOND(3)", d, rest / 3_600_000L,
                rest / 60_000L % 60, rest / 1000 % 60, rest % 1000);
    }

    /** rill's aggregated_sales table (connectors/pgsink.c), created when missing. */
    static void createTable(String jdbcUrl, String user, String password, String table) throws Exception {
        String t = "\"" + table.replace("\"", "\"\"") + "\"";
        try (Connection c = DriverManager.getConnection(jdbcUrl, user, password);
             Statement st = c.createStatement()) {
            st.setQueryTimeout(30);
            st.execute("CREATE TABLE IF NOT EXISTS " + t + " (seller_id text NOT NULL,"
                    + " window_start timestamptz NOT NULL, window_end timestamptz NOT NULL,"
                    + " total_amount_usd bigint NOT NULL, sales_count bigint NOT NULL,"
                    + " PRIMARY KEY (seller_id, window_start))");
        }
    }

    static void say(String fmt, Object... args) {
        System.out.printf(fmt + "%n", args);
        System.out.flush();
    }

    // ---- main ------------------------------------------------------------------------

    public static void main(String[] args) throws Exception {
        if (args.length != 11) {
            System.err.println("usage: sales-aggregator-flink BOOTSTRAP APP_ID INPUT OUTPUT WINDOW_MS GRACE_MS "
                    + "PARALLELISM STATE_DIR JDBC_URL PG_TABLE CHECKPOINT_MS (PGUSER, PGPASSWORD from the "
                    + "environment)");
            System.exit(2);
        }
        String bootstrap = args[0], appId = args[1], input = args[2], output = args[3];
        long windowMs = Long.parseLong(args[4]), graceMs = Long.parseLong(args[5]);
        int parallelism = Integer.parseInt(args[6]);
        String stateDir = new File(args[7]).getAbsolutePath();
        String jdbcUrl = args[8], table = args[9];
        long checkpointMs = Long.parseLong(args[10]);
        String pgUser = System.getenv().getOrDefault("PGUSER", "");
        String pgPassword = System.getenv().getOrDefault("PGPASSWORD", "");

        // Window bounds are TIMESTAMP(3) in the session zone, and JDBC binds them
        // in the JVM's zone: UTC for both, so Postgres gets the right instants.
        TimeZone.setDefault(TimeZone.getTimeZone("UTC"));
        say("event=config flink=%s parallelism=%d checkpoint_ms=%d window_ms=%d grace_ms=%d",
                EnvironmentInformation.getVersion(), parallelism, checkpointMs, windowMs, graceMs);
        try {
            createTable(jdbcUrl, pgUser, pgPassword, table);
        } catch (Exception e) {
            System.err.printf("sales-aggregator-flink: cannot create table %s at %s: %s "
                    + "(hint: is Postgres up? PGUSER/PGPASSWORD set?)%n", table, jdbcUrl, e.getMessage());
            System.exit(1);
        }

        Configuration conf = new Configuration();
        conf.set(CheckpointingOptions.CHECKPOINTING_INTERVAL, java.time.Duration.ofMillis(checkpointMs));
        conf.set(CheckpointingOptions.CHECKPOINTING_CONSISTENCY_MODE, CheckpointingMode.EXACTLY_ONCE);
        conf.set(CheckpointingOptions.CHECKPOINT_STORAGE, "filesystem");
        conf.set(CheckpointingOptions.CHECKPOINTS_DIRECTORY, new File(stateDir, "checkpoints").toURI().toString());
        conf.set(RestartStrategyOptions.RESTART_STRATEGY, "fixed-delay");
        conf.set(RestartStrategyOptions.RESTART_STRATEGY_FIXED_DELAY_ATTEMPTS, 3);
        conf.set(RestartStrategyOptions.RESTART_STRATEGY_FIXED_DELAY_DELAY, java.time.Duration.ofSeconds(1));
        conf.setString("io.tmp.dirs", stateDir);
        // the mini-cluster's REST endpoint: loopback only, any free port
        conf.set(RestOptions.BIND_ADDRESS, "127.0.0.1");
        conf.set(RestOptions.ADDRESS, "127.0.0.1");
        conf.set(RestOptions.BIND_PORT, "0");
        conf.setString("pipeline.name", appId);
        conf.setString("table.local-time-zone", "UTC");

        StreamExecutionEnvironment env = StreamExecutionEnvironment.createLocalEnvironment(parallelism, conf);
        StreamTableEnvironment t = StreamTableEnvironment.create(env,
                EnvironmentSettings.newInstance().inStreamingMode().withConfiguration(conf).build());
        t.createTemporarySystemFunction("EPOCH_MILLIS", EpochMillis.class);
        t.createTemporarySystemFunction("ISO_INSTANT", IsoInstant.class);

        t.executeSql("CREATE TABLE sales ("
                + " seller_id STRING, amount_usd BIGINT, sale_ts BIGINT,"
                + " ts AS TO_TIMESTAMP_LTZ(COALESCE(sale_ts, 0) * 1000, 3),"
                + " WATERMARK FOR ts AS ts - " + interval(graceMs)
                + ") WITH ("
                + " 'connector' = 'kafka', 'topic' = " + lit(input) + ","
                + " 'properties.bootstrap.servers' = " + lit(bootstrap) + ","
                + " 'properties.group.id' = " + lit(appId) + ","
                + " 'scan.startup.mode' = 'group-offsets',"
                + " 'properties.auto.offset.reset' = 'earliest',"
                + " 'properties.isolation.level' = 'read_committed',"
                + " 'format' = 'json', 'json.fail-on-missing-field' = 'false',"
                + " 'json.ignore-parse-errors' = 'true')");
        t.executeSql("CREATE TEMPORARY VIEW results AS"
                + " SELECT seller_id, window_start, window_end,"
                + " SUM(amount_usd) AS total_amount_usd, COUNT(*) AS sales_count"
                + " FROM TABLE(TUMBLE(TABLE sales, DESCRIPTOR(ts), " + interval(windowMs) + "))"
                + " WHERE seller_id IS NOT NULL AND CHAR_LENGTH(seller_id) BETWEEN 1 AND 256"
                + " AND amount_usd IS NOT NULL AND amount_usd >= 0 AND sale_ts IS NOT NULL AND sale_ts >= 0"
                + " GROUP BY seller_id, window_start, window_end");
        t.executeSql("CREATE TABLE out_kafka ("
                + " seller_id STRING, window_start STRING, window_end STRING, window_start_ms BIGINT,"
                + " total_amount_usd BIGINT, sales_count BIGINT"
                + ") WITH ("
                + " 'connector' = 'kafka', 'topic' = " + lit(output) + ","
                + " 'properties.bootstrap.servers' = " + lit(bootstrap) + ","
                + " 'key.format' = 'raw', 'key.fields' = 'seller_id', 'value.fields-include' = 'ALL',"
                + " 'value.format' = 'json',"
                + " 'sink.delivery-guarantee' = 'exactly-once',"
                + " 'sink.transactional-id-prefix' = " + lit(appId) + ","
                + " 'properties.transaction.timeout.ms' = '60000')");
        t.executeSql("CREATE TABLE out_pg ("
                + " seller_id STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3),"
                + " total_amount_usd BIGINT, sales_count BIGINT,"
                + " PRIMARY KEY (seller_id, window_start) NOT ENFORCED"
                + ") WITH ("
                + " 'connector' = 'jdbc', 'url' = " + lit(jdbcUrl) + ", 'table-name' = " + lit(table) + ","
                + " 'username' = " + lit(pgUser) + ", 'password' = " + lit(pgPassword) + ","
                + " 'sink.buffer-flush.interval' = " + lit(checkpointMs + "ms") + ","
                + " 'sink.buffer-flush.max-rows' = '5000', 'sink.max-retries' = '3')");

        StatementSet set = t.createStatementSet();
        set.addInsertSql("INSERT INTO out_kafka SELECT seller_id, ISO_INSTANT(window_start), ISO_INSTANT(window_end),"
                + " EPOCH_MILLIS(window_start), total_amount_usd, sales_count FROM results");
        set.addInsertSql("INSERT INTO out_pg SELECT seller_id, window_start, window_end, total_amount_usd,"
                + " sales_count FROM results");
        TableResult result = set.execute();
        JobClient job = result.getJobClient().orElseThrow();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                job.cancel().get(20, TimeUnit.SECONDS);
            } catch (Exception e) {
                // the mini-cluster is going down with the JVM anyway
            }
        }));

        // Report RUNNING once, then the end; each wait is bounded by the loop's sleep.
        boolean running = false;
        JobStatus st;
        while (true) {
            st = job.getJobStatus().get(30, TimeUnit.SECONDS);
            if (!running && st == JobStatus.RUNNING) {
                running = true;
                say("event=state state=RUNNING t_ms=%d", System.currentTimeMillis());
            }
            if (st.isGloballyTerminalState())
                break;
            Thread.sleep(running ? 1000 : 100);
        }
        say("event=state state=%s t_ms=%d", st, System.currentTimeMillis());
        try {
            job.getJobExecutionResult().get(10, TimeUnit.SECONDS);
        } catch (Exception e) {
            System.err.printf("sales-aggregator-flink: job %s ended %s: %s%n", appId, st, e);
        }
        System.exit(st == JobStatus.FINISHED ? 0 : 1);
    }
}
