package dev.trendwatch.peers.streams;

import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.LogAndContinueExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.EmitStrategy;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.state.Stores;
import org.apache.kafka.streams.state.WindowStore;

/**
 * trendwatch's viral-velocity job as a Kafka Streams application: events keyed by video,
 * event time from {@code event_time}, net likes per video in hopping windows (1 min, advancing
 * 10 s, grace 30 s) emitted once when each window closes, tested against a per-video EWMA
 * baseline in a RocksDB store, alerts to the output topic.
 *
 * <p>Configured from the environment: {@code BOOTSTRAP_SERVERS} (127.0.0.1:9092),
 * {@code INPUT_TOPIC} (engagement-events), {@code OUTPUT_TOPIC} (peer-streams-alerts),
 * {@code APPLICATION_ID} (trendwatch-peer-streams), {@code PROCESSING_GUARANTEE}
 * (at_least_once or exactly_once_v2), {@code STATE_DIR}, {@code NUM_STREAM_THREADS} (the
 * cores). It prints {@code records N} (records processed so far, from the stream threads'
 * {@code process-total} metric) every {@code PROGRESS_MS} (100) ms on stdout.
 */
public final class ViralVelocityApp {
  private ViralVelocityApp() {}

  static String env(String name, String fallback) {
    String v = System.getenv(name);
    return v == null || v.isEmpty() ? fallback : v;
  }

  public static Topology topology(String input, String output) {
    StreamsBuilder builder = new StreamsBuilder();
    builder.addStateStore(
        Stores.keyValueStoreBuilder(
            Stores.persistentKeyValueStore(ViralVelocityTest.STORE),
            Serdes.String(),
            BaselineSerde.serde()));
    builder.stream(
            input,
            Consumed.with(Serdes.String(), EventSerde.serde())
                .withTimestampExtractor(new EventTimeExtractor()))
        .mapValues(Event::netLikes)
        .filter((video, delta) -> delta != 0)
        // The events are keyed by video already: no repartition topic.
        .groupByKey(Grouped.with(Serdes.String(), Serdes.Integer()))
        .windowedBy(
            TimeWindows.ofSizeAndGrace(ViralVelocityRule.WINDOW, ViralVelocityRule.GRACE)
                .advanceBy(ViralVelocityRule.ADVANCE))
        .emitStrategy(EmitStrategy.onWindowClose())
        .aggregate(
            () -> 0L,
            (video, delta, sum) -> sum + delta,
            Materialized.<String, Long, WindowStore<Bytes, byte[]>>as("net-likes")
                .withKeySerde(Serdes.String())
                .withValueSerde(Serdes.Long()))
        .toStream()
        .process(ViralVelocityTest::new, ViralVelocityTest.STORE)
        .to(output, Produced.with(Serdes.String(), Serdes.String()));
    return builder.build();
  }

  public static void main(String[] args) throws InterruptedException {
    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, env("APPLICATION_ID", "trendwatch-peer-streams"));
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, env("BOOTSTRAP_SERVERS", "127.0.0.1:9092"));
    props.put(
        StreamsConfig.PROCESSING_GUARANTEE_CONFIG,
        env("PROCESSING_GUARANTEE", StreamsConfig.AT_LEAST_ONCE));
    props.put(
        StreamsConfig.NUM_STREAM_THREADS_CONFIG,
        env("NUM_STREAM_THREADS", String.valueOf(Runtime.getRuntime().availableProcessors())));
    props.put(StreamsConfig.STATE_DIR_CONFIG, env("STATE_DIR", "/tmp/kafka-streams"));
    props.put(
        StreamsConfig.DESERIALIZATION_EXCEPTION_HANDLER_CLASS_CONFIG,
        LogAndContinueExceptionHandler.class);
    props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
    // A single broker: internal topics (changelogs) with one replica.
    props.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, env("REPLICATION_FACTOR", "1"));

    Topology topology =
        topology(env("INPUT_TOPIC", "engagement-events"), env("OUTPUT_TOPIC", "peer-streams-alerts"));
    KafkaStreams streams = new KafkaStreams(topology, props);
    CountDownLatch done = new CountDownLatch(1);
    streams.setUncaughtExceptionHandler(
        e -> {
          e.printStackTrace();
          done.countDown();
          return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler
              .StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  streams.close();
                  done.countDown();
                }));
    streams.start();

    long every = Long.parseLong(env("PROGRESS_MS", "100"));
    Thread progress =
        new Thread(
            () -> {
              try {
                while (true) {
                  System.out.println("records " + processed(streams.metrics()));
                  Thread.sleep(every);
                }
              } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
              }
            },
            "progress");
    progress.setDaemon(true);
    progress.start();
    done.await();
  }

  /** Records processed by all stream threads so far. */
  static long processed(Map<MetricName, ? extends Metric> metrics) {
    double total = 0;
    for (Map.Entry<MetricName, ? extends Metric> m : metrics.entrySet()) {
      if (m.getKey().name().equals("process-total")
          && m.getKey().group().equals("stream-thread-metrics")) {
        total += ((Number) m.getValue().metricValue()).doubleValue();
      }
    }
    return (long) total;
  }
}
