package dev.trendwatch.peers.tools;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * Prints every committed record of a topic, from its beginning to its end as it is now, one
 * value per line (the benchmark reads the peers' and trendwatch's JSON alerts with it).
 *
 * <p>{@code java -cp JAR dev.trendwatch.peers.tools.DumpTopic BOOTSTRAP TOPIC}
 */
public final class DumpTopic {
  private DumpTopic() {}

  public static void main(String[] args) {
    Properties props = new Properties();
    props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
    props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    try (KafkaConsumer<String, String> consumer =
        new KafkaConsumer<>(props, new StringDeserializer(), new StringDeserializer())) {
      List<PartitionInfo> infos = consumer.partitionsFor(args[1], Duration.ofSeconds(30));
      List<TopicPartition> parts = new ArrayList<>();
      if (infos != null) {
        for (PartitionInfo p : infos) {
          parts.add(new TopicPartition(p.topic(), p.partition()));
        }
      }
      if (parts.isEmpty()) {
        return;
      }
      consumer.assign(parts);
      consumer.seekToBeginning(parts);
      // read_committed: the end is the last stable offset.
      Map<TopicPartition, Long> end = consumer.endOffsets(parts);
      long deadline = System.currentTimeMillis() + 120_000;
      while (System.currentTimeMillis() < deadline) {
        boolean all = true;
        for (TopicPartition tp : parts) {
          if (consumer.position(tp) < end.get(tp)) {
            all = false;
          }
        }
        if (all) {
          break;
        }
        for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
          if (r.value() != null) {
            System.out.println(r.value());
          }
        }
      }
      System.out.flush();
    }
  }
}
