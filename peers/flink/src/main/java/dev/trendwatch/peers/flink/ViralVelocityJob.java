package dev.trendwatch.peers.flink;

import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.serialization.SimpleStringSchema;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.core.execution.JobClient;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.SlidingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.Collector;

/**
 * trendwatch's viral-velocity job on Flink's DataStream API: a KafkaSource of JSON events,
 * event time from {@code event_time} with bounded-out-of-orderness watermarks (30 s, our
 * allowed lateness) and idleness, net likes per video in sliding event-time windows (1 min,
 * sliding 10 s), a keyed baseline test, alerts to a KafkaSink; checkpoints every 10 s to the
 * local file system.
 *
 * <p>Environment: {@code BOOTSTRAP_SERVERS}, {@code INPUT_TOPIC} (engagement-events),
 * {@code OUTPUT_TOPIC} (peer-flink-alerts), {@code GROUP_ID}, {@code GUARANTEE}
 * (exactly_once or at_least_once: checkpointing mode and sink guarantee),
 * {@code CHECKPOINT_DIR} (file:///tmp/flink-checkpoints), {@code PARALLELISM} (the cores).
 * It prints {@code records N} (records decoded so far) every {@code PROGRESS_MS} ms.
 */
public final class ViralVelocityJob {
  private ViralVelocityJob() {}

  static String env(String name, String fallback) {
    String v = System.getenv(name);
    return v == null || v.isEmpty() ? fallback : v;
  }

  /** Sums the deltas of a window. */
  static class SumNetLikes implements AggregateFunction<Like, Long, Long> {
    @Override
    public Long createAccumulator() {
      return 0L;
    }

    @Override
    public Long add(Like like, Long sum) {
      return sum + like.delta;
    }

    @Override
    public Long getResult(Long sum) {
      return sum;
    }

    @Override
    public Long merge(Long a, Long b) {
      return a + b;
    }
  }

  /** The window's sum with its bounds and the event time the watermark closed it at. */
  static class WindowResult extends ProcessWindowFunction<Long, WindowCount, String, TimeWindow> {
    @Override
    public void process(String video, Context ctx, Iterable<Long> sums, Collector<WindowCount> out) {
      long sum = sums.iterator().next();
      // The watermark is the newest event time seen - the bound - 1 ms.
      long decidedAt = ctx.currentWatermark() + ViralVelocityRule.LATENESS.toMillis() + 1;
      out.collect(new WindowCount(video, ctx.window().getStart(), ctx.window().getEnd(), sum, decidedAt));
    }
  }

  public static void main(String[] args) throws Exception {
    boolean exactlyOnce = !"at_least_once".equals(env("GUARANTEE", "exactly_once"));
    Map<String, String> conf = new HashMap<>();
    conf.put("execution.checkpointing.interval", env("CHECKPOINT_INTERVAL", "10s"));
    conf.put("execution.checkpointing.mode", exactlyOnce ? "EXACTLY_ONCE" : "AT_LEAST_ONCE");
    conf.put("execution.checkpointing.storage", "filesystem");
    conf.put("execution.checkpointing.dir", env("CHECKPOINT_DIR", "file:///tmp/flink-checkpoints"));
    conf.put("state.backend.type", env("STATE_BACKEND", "hashmap"));
    StreamExecutionEnvironment env =
        StreamExecutionEnvironment.getExecutionEnvironment(Configuration.fromMap(conf));
    if (System.getenv("PARALLELISM") != null) {
      env.setParallelism(Integer.parseInt(System.getenv("PARALLELISM")));
    }
    String bootstrap = env("BOOTSTRAP_SERVERS", "127.0.0.1:9092");

    KafkaSource<Like> source =
        KafkaSource.<Like>builder()
            .setBootstrapServers(bootstrap)
            .setTopics(env("INPUT_TOPIC", "engagement-events"))
            .setGroupId(env("GROUP_ID", "trendwatch-peer-flink"))
            .setStartingOffsets(OffsetsInitializer.earliest())
            .setValueOnlyDeserializer(new EventSchema())
            .build();
    WatermarkStrategy<Like> watermarks =
        WatermarkStrategy.<Like>forBoundedOutOfOrderness(ViralVelocityRule.LATENESS)
            .withTimestampAssigner((like, ts) -> like.eventTime)
            .withIdleness(ViralVelocityRule.LATENESS);

    Properties producer = new Properties();
    // Below the broker's transaction.max.timeout.ms (15 min), as the connector's docs advise.
    producer.setProperty("transaction.timeout.ms", "600000");
    KafkaSink<String> sink =
        KafkaSink.<String>builder()
            .setBootstrapServers(bootstrap)
            .setKafkaProducerConfig(producer)
            .setRecordSerializer(
                KafkaRecordSerializationSchema.builder()
                    .setTopic(env("OUTPUT_TOPIC", "peer-flink-alerts"))
                    .setValueSerializationSchema(new SimpleStringSchema())
                    .build())
            .setDeliveryGuarantee(
                exactlyOnce ? DeliveryGuarantee.EXACTLY_ONCE : DeliveryGuarantee.AT_LEAST_ONCE)
            .setTransactionalIdPrefix(env("GROUP_ID", "trendwatch-peer-flink"))
            .build();

    env.fromSource(source, watermarks, "engagement-events")
        .keyBy(like -> like.videoId)
        .window(SlidingEventTimeWindows.of(ViralVelocityRule.WINDOW, ViralVelocityRule.ADVANCE))
        .aggregate(new SumNetLikes(), new WindowResult())
        .keyBy(w -> w.videoId)
        .process(new ViralVelocityTest())
        .sinkTo(sink);

    JobClient job = env.executeAsync("trendwatch-peer-flink");
    long every = Long.parseLong(env("PROGRESS_MS", "100"));
    Runtime.getRuntime().addShutdownHook(new Thread(() -> job.cancel()));
    while (!job.getJobStatus().get().isTerminalState()) {
      System.out.println("records " + EventSchema.DECODED.sum());
      Thread.sleep(every);
    }
    System.out.println("job " + job.getJobStatus().get());
  }
}
