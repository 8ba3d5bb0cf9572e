package dev.trendwatch.examples;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.HexFormat;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * Reads trendwatch's alert topic (JSON form) until a VIRAL_VELOCITY alert arrives.
 *
 * <p>Prints the first VIRAL_VELOCITY alert (for --video, if given) to stdout as the JSON the
 * counter wrote, one line, and its explanation to stderr; other alerts are reported on stderr as
 * they pass. Exit status 0 when the alert arrived, 1 when --timeout seconds passed first.
 *
 * <p>The counter must run with counter.output_format = "json" (its default is protobuf).
 * Without --group, a fresh consumer group reads the topic from its beginning, so alerts emitted
 * before this started are seen too; a service would use a stable group and commit as it goes.
 */
public final class Alerts {
    private static final String USAGE = "usage: Alerts --bootstrap HOST:PORT --topic TOPIC"
            + " [--video V] [--group G] [--timeout SECONDS]";

    public static void main(String[] argv) {
        Args args = new Args(argv, Set.of("bootstrap", "topic", "video", "group", "timeout"), USAGE);
        String topic = args.required("topic");
        String video = args.get("video", null);
        int timeout = args.positiveInt("timeout", 60);
        byte[] runBytes = new byte[4];
        new SecureRandom().nextBytes(runBytes);

        Properties config = new Properties();
        config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, args.required("bootstrap"));
        config.put(ConsumerConfig.GROUP_ID_CONFIG,
                args.get("group", "trendwatch-example-alerts-" + HexFormat.of().formatHex(runBytes)));
        config.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        ObjectMapper json = new ObjectMapper();
        long deadline = System.nanoTime() + Duration.ofSeconds(timeout).toNanos();
        boolean warned = false;
        try (KafkaConsumer<String, byte[]> consumer =
                new KafkaConsumer<>(config, new StringDeserializer(), new ByteArrayDeserializer())) {
            consumer.subscribe(List.of(topic));
            while (System.nanoTime() < deadline) {
                for (ConsumerRecord<String, byte[]> record : consumer.poll(Duration.ofMillis(500))) {
                    JsonNode alert;
                    try {
                        alert = json.readTree(record.value());
                    } catch (IOException e) {
                        alert = null;
                    }
                    if (alert == null || !alert.isObject()) {
                        if (!warned) {
                            System.err.println("warning: an alert record is not JSON: does the counter"
                                    + " run with counter.output_format = \"json\"?");
                            warned = true;
                        }
                        continue;
                    }
                    String type = alert.path("type").asText();
                    String videoId = alert.path("video_id").asText();
                    if (type.equals("VIRAL_VELOCITY") && (video == null || video.equals(videoId))) {
                        System.out.println(new String(record.value(), StandardCharsets.UTF_8));
                        System.out.flush();
                        System.err.printf("%s %s tier %d: %s%n", type, videoId,
                                alert.path("tier").asInt(), alert.path("explanation").asText());
                        return;
                    }
                    System.err.printf("seen %s %s%n", type, videoId);
                }
            }
        }
        System.err.printf("error: no VIRAL_VELOCITY alert%s on %s within %d s%n",
                video == null ? "" : " for " + video, topic, timeout);
        System.exit(1);
    }
}
