/*
 * The Kafka Streams peer of rill's sales-aggregator (tests/bench).
 *
 * The same topology as rill, written the way a Kafka Streams user would:
 *
 *   sales (JSON, any key) --parse, skip bad--> selectKey(seller_id)
 *     --> <app>-by-seller-repartition --> groupByKey
 *     --> windowedBy(TimeWindows.ofSizeAndGrace(size, grace))
 *     --> aggregate (sum, count) in the default RocksDB window store
 *     --> suppress(untilWindowCloses) --> toStream
 *     --> JSON {"seller_id","window_start","window_end","window_start_ms",
 *               "total_amount_usd","sales_count"} keyed by seller_id --> output
 *
 * Event time is sale_ts (epoch seconds) * 1000, taken by a TimestampExtractor
 * from the already parsed value, so each record is parsed once. The
 * repartition topic carries the amount as a long and the event time as the
 * record timestamp. processing.guarantee=exactly_once_v2,
 * commit.interval.ms=100; everything else is Kafka Streams' default, except
 * that TXN_STORES=true turns on transactional state stores (KIP-892, Kafka
 * Streams 4.4: enable.transactional.statestores): writes are buffered until
 * the changelog transaction commits, so a crash under exactly-once no longer
 * forces a wipe and full restore of the task's state.
 *
 * It prints logfmt lines on stdout for the benchmark driver:
 *   event=config transactional_state_stores=true|false kafka_streams=VERSION
 *   event=state state=RUNNING t_ms=...
 *   event=restore_start / restore_end store=... partition=... records=... elapsed_ms=...
 *   event=bad_records count=N        (every 5 s when it changed, and at exit)
 *
 * Usage: java -jar sales-aggregator-kstreams.jar BOOTSTRAP APP_ID INPUT OUTPUT
 *                  WINDOW_MS GRACE_MS THREADS STATE_DIR [TXN_STORES]
 * TXN_STORES: true or false (the default).
 */
package rill.bench;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.processor.StateRestoreListener;
import org.apache.kafka.streams.processor.TimestampExtractor;
import org.apache.kafka.streams.state.WindowStore;

public final class SalesAggregator {

    // ---- the sales event ---------------------------------------------------------

    /** A parsed sales event; bad == true when the value is not a valid event. */
    static final class Sale {
        static final Sale BAD = new Sale(null, 0, 0);
        final String seller;
        final long amount;
        final long tsSeconds;

        Sale(String seller, long amount, long tsSeconds) {
            this.seller = seller;
            this.amount = amount;
            this.tsSeconds = tsSeconds;
        }

        boolean bad() {
            return this == BAD;
        }
    }

    private static final JsonFactory JSON = new JsonFactory();
    static final AtomicLong BAD_RECORDS = new AtomicLong();

    /** Parses {"seller_id": str, "amount_usd": int >= 0, "sale_ts": int >= 0}. */
    static final class SaleDeserializer implements Deserializer<Sale> {
        @Override
        public Sale deserialize(String topic, byte[] data) {
            if (data == null || data.length == 0)
                return Sale.BAD;
            String seller = null;
            long amount = -1, ts = -1;
            try (JsonParser p = JSON.createParser(data)) {
                if (p.nextToken() != JsonToken.START_OBJECT)
                    return Sale.BAD;
                JsonToken t;
                while ((t = p.nextToken()) == JsonToken.FIELD_NAME) {
                    String name = p.currentName();
                    JsonToken v = p.nextToken();
                    switch (name) {
                        case "seller_id":
                            if (v != JsonToken.VALUE_STRING)
                                return Sale.BAD;
                            seller = p.getText();
                            break;
                        case "amount_usd":
                            if (v != JsonToken.VALUE_NUMBER_INT)
                                return Sale.BAD;
                            amount = p.getLongValue();
                            break;
                        case "sale_ts":
                            if (v != JsonToken.VALUE_NUMBER_INT)
                                return Sale.BAD;
                            ts = p.getLongValue();
                            break;
                        default:
                            p.skipChildren();
                    }
                }
                if (t != JsonToken.END_OBJECT || p.nextToken() != null)
                    return Sale.BAD;
            } catch (Exception e) {
                return Sale.BAD;
            }
            if (seller == null || seller.isEmpty() || seller.getBytes(StandardCharsets.UTF_8).length > 256
                    || amount < 0 || ts < 0)
                return Sale.BAD;
            return new Sale(seller, amount, ts);
        }
    }

    /** Event time: sale_ts * 1000. A bad record keeps the partition's time (it is skipped next). */
    public static final class SaleTimestampExtractor implements TimestampExtractor {
        @Override
        public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
            Object v = record.value();
            if (v instanceof Sale && !((Sale) v).bad())
                return ((Sale) v).tsSeconds * 1000L;
            return Math.max(partitionTime, 0L);
        }
    }

    // ---- the aggregate ------------------------------------------------------------

    /** Sum and count of one window: 16 bytes in the store and its changelog. */
    static final class Agg {
        final long sum;
        final long count;

        Agg(long sum, long count) {
            this.sum = sum;
            this.count = count;
        }
    }

    static final Serde<Agg> AGG_SERDE = Serdes.serdeFrom(
            (Serializer<Agg>) (topic, a) -> a == null ? null
                    : ByteBuffer.allocate(16).putLong(a.sum).putLong(a.count).array(),
            (Deserializer<Agg>) (topic, b) -> {
                if (b == null)
                    return null;
                ByteBuffer bb = ByteBuffer.wrap(b);
                return new Agg(bb.getLong(), bb.getLong());
            });

    static String resultJson(String seller, long startMs, long endMs, Agg a) {
        StringBuilder sb = new StringBuilder(160);
        sb.append("{\"seller_id\":");
        jsonString(sb, seller);
        sb.append(",\"window_start\":\"").append(Instant.ofEpochMilli(startMs))
          .append("\",\"window_end\":\"").append(Instant.ofEpochMilli(endMs))
          .append("\",\"window_start_ms\":").append(startMs)
          .append(",\"total_amount_usd\":").append(a.sum)
          .append(",\"sales_count\":").append(a.count).append('}');
        return sb.toString();
    }

    static void jsonString(StringBuilder sb, String s) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '"' || c == '\\')
                sb.append('\\').append(c);
            else if (c < 0x20)
                sb.append(String.format("\\u%04x", (int) c));
            else
                sb.append(c);
        }
        sb.append('"');
    }

    // ---- restore and state reporting ---------------------------------------------------

    static final class RestoreLogger implements StateRestoreListener {
        private final Map<String, Long> started = new ConcurrentHashMap<>();

        private static String id(TopicPartition tp, String store) {
            return store + "|" + tp.partition();
        }

        @Override
        public void onRestoreStart(TopicPartition tp, String store, long startOffset, long endOffset) {
            started.put(id(tp, store), System.currentTimeMillis());
            System.out.printf("event=restore_start store=%s partition=%d from_offset=%d to_offset=%d t_ms=%d%n",
                    store, tp.partition(), startOffset, endOffset, System.currentTimeMillis());
        }

        @Override
        public void onBatchRestored(TopicPartition tp, String store, long batchEndOffset, long numRestored) {
        }

        @Override
        public void onRestoreEnd(TopicPartition tp, String store, long totalRestored) {
            long now = System.currentTimeMillis();
            Long t0 = started.remove(id(tp, store));
            System.out.printf("event=restore_end store=%s partition=%d records=%d elapsed_ms=%d t_ms=%d%n",
                    store, tp.partition(), totalRestored, t0 == null ? -1 : now - t0, now);
        }
    }

    /** The kafka-clients version on the classpath (its kafka-version.properties). */
    static String kafkaVersion() {
        try (java.io.InputStream in = SalesAggregator.class.getResourceAsStream("/kafka/kafka-version.properties")) {
            Properties p = new Properties();
            if (in != null)
                p.load(in);
            return p.getProperty("version", "unknown");
        } catch (java.io.IOException e) {
            return "unknown";
        }
    }

    // ---- main ------------------------------------------------------------------------------

    public static void main(String[] args) throws Exception {
        if (args.length != 8 && args.length != 9
                || args.length == 9 && !args[8].equals("true") && !args[8].equals("false")) {
            System.err.println("usage: sales-aggregator-kstreams BOOTSTRAP APP_ID INPUT OUTPUT "
                    + "WINDOW_MS GRACE_MS THREADS STATE_DIR [TXN_STORES: true|false]");
            System.exit(2);
        }
        String bootstrap = args[0], appId = args[1], input = args[2], output = args[3];
        long windowMs = Long.parseLong(args[4]), graceMs = Long.parseLong(args[5]);
        int threads = Integer.parseInt(args[6]);
        String stateDir = args[7];
        boolean txnStores = args.length == 9 && Boolean.parseBoolean(args[8]);

        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, threads);
        props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        props.put(StreamsConfig.TRANSACTIONAL_STATE_STORES_CONFIG, txnStores);
        System.out.printf("event=config transactional_state_stores=%b kafka_streams=%s%n",
                txnStores, kafkaVersion());

        Serde<Sale> saleSerde = Serdes.serdeFrom((topic, s) -> {
            throw new UnsupportedOperationException("Sale is never written");
        }, new SaleDeserializer());

        StreamsBuilder b = new StreamsBuilder();
        b.stream(input, Consumed.with(Serdes.ByteArray(), saleSerde)
                        .withTimestampExtractor(new SaleTimestampExtractor()))
         .filter((k, sale) -> {
             if (sale.bad()) {
                 BAD_RECORDS.incrementAndGet();
                 return false;
             }
             return true;
         })
         .selectKey((k, sale) -> sale.seller)
         .mapValues(sale -> sale.amount)
         .groupByKey(Grouped.with("by-seller", Serdes.String(), Serdes.Long()))
         .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofMillis(windowMs), Duration.ofMillis(graceMs)))
         .aggregate(() -> new Agg(0, 0),
                    (seller, amount, agg) -> new Agg(agg.sum + amount, agg.count + 1),
                    Materialized.<String, Agg, WindowStore<Bytes, byte[]>>as("sales-windows")
                            .withKeySerde(Serdes.String()).withValueSerde(AGG_SERDE))
         .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()).withName("on-close"))
         .toStream()
         .map((wk, agg) -> KeyValue.pair(wk.key(),
                 resultJson(wk.key(), wk.window().start(), wk.window().end(), agg)))
         .to(output, Produced.with(Serdes.String(), Serdes.String()));

        KafkaStreams streams = new KafkaStreams(b.build(props), props);
        CountDownLatch done = new CountDownLatch(1);
        streams.setGlobalStateRestoreListener(new RestoreLogger());
        streams.setStateListener((now, before) -> {
            System.out.printf("event=state state=%s t_ms=%d%n", now, System.currentTimeMillis());
            if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING)
                done.countDown();
        });
        Thread reporter = new Thread(() -> {
            long last = 0;
            while (true) {
                try {
                    Thread.sleep(5000);
                } catch (InterruptedException e) {
                    return;
                }
                long n = BAD_RECORDS.get();
                if (n != last)
                    System.out.printf("event=bad_records count=%d%n", last = n);
            }
        }, "bad-records-reporter");
        reporter.setDaemon(true);
        reporter.start();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(30));
            System.out.printf("event=bad_records count=%d%n", BAD_RECORDS.get());
            System.out.flush();
        }));
        streams.start();
        done.await();
        System.exit(streams.state() == KafkaStreams.State.ERROR ? 1 : 0);
    }
}
