package dev.trendwatch.examples;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HexFormat;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Publishes the example workload to trendwatch's events topic, in its JSON form.
 *
 * <p>Twenty minutes of event time ending now: every 10 s one VIEW on the target video and on
 * each of four background videos, then, in the last minute, a burst of LIKEs on the target
 * with four VIEWs each. The counter's default velocity warm-up is 15 minutes of event time from
 * a partition's first event, so the history comes first and the burst after it; the whole
 * history is published at once. Total: 600 + 5 * likes events (900 by default).
 *
 * <p>Each event is one JSON object (the proto field names of trendwatch.v1.EngagementEvent,
 * kind without its prefix, event_time in integer milliseconds), keyed by video_id; the counter
 * must run with counter.input_format = "json". Exit status 0 when every event was acknowledged.
 */
public final class Produce {
    static final long HISTORY_MS = 20 * 60_000L;
    static final long STEP_MS = 10_000L;
    static final long BURST_MS = 60_000L;
    static final int BACKGROUND_VIDEOS = 4;
    static final int VIEWS_PER_LIKE = 4;

    private static final String USAGE =
            "usage: Produce --bootstrap HOST:PORT --topic TOPIC [--video V] [--likes N]";

    /** One event in its JSON form; Jackson writes the fields as snake_case keys. */
    record EngagementEvent(
            String eventId, String videoId, String creatorId, String userId, String kind, long eventTime) {}

    private record Timed(long eventTime, int sequence, String videoId, String creatorId, String kind) {}

    /** The events, in event-time order. */
    static List<EngagementEvent> workload(String video, int likes, long endMs, String run) {
        List<Timed> timed = new ArrayList<>();
        long start = endMs - HISTORY_MS;
        for (int step = 0; step < HISTORY_MS / STEP_MS; step++) {
            long t = start + step * STEP_MS;
            for (int b = 1; b <= BACKGROUND_VIDEOS; b++) {
                timed.add(new Timed(t + 100L * (b - 1), timed.size(), video + "-background-" + b,
                        "creator-background", "VIEW"));
            }
            timed.add(new Timed(t + 500, timed.size(), video, "creator-example", "VIEW"));
        }
        long burst = endMs - BURST_MS;
        for (int i = 0; i < likes; i++) {
            long t = burst + i * BURST_MS / likes;
            timed.add(new Timed(t, timed.size(), video, "creator-example", "LIKE"));
            for (int j = 1; j <= VIEWS_PER_LIKE; j++) {
                timed.add(new Timed(t + j, timed.size(), video, "creator-example", "VIEW"));
            }
        }
        timed.sort(Comparator.comparingLong(Timed::eventTime).thenComparingInt(Timed::sequence));
        List<EngagementEvent> events = new ArrayList<>(timed.size());
        for (int seq = 0; seq < timed.size(); seq++) {
            Timed e = timed.get(seq);
            events.add(new EngagementEvent(run + "-" + seq, e.videoId(), e.creatorId(),
                    "user-" + (seq % 1000), e.kind(), e.eventTime()));
        }
        return events;
    }

    public static void main(String[] argv) throws Exception {
        Args args = new Args(argv, Set.of("bootstrap", "topic", "video", "likes"), USAGE);
        String bootstrap = args.required("bootstrap");
        String topic = args.required("topic");
        String video = args.get("video", "v-example");
        int likes = args.positiveInt("likes", 60);

        byte[] runBytes = new byte[4];
        new SecureRandom().nextBytes(runBytes);
        List<EngagementEvent> events =
                workload(video, likes, System.currentTimeMillis(), HexFormat.of().formatHex(runBytes));
        ObjectMapper json = new ObjectMapper()
                .setPropertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE);

        Properties config = new Properties();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        // The defaults since Kafka 3.0, said out loud: acknowledged by all in-sync replicas,
        // never duplicated by a retry.
        config.put(ProducerConfig.ACKS_CONFIG, "all");
        config.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        config.put(ProducerConfig.LINGER_MS_CONFIG, 20);
        AtomicLong acked = new AtomicLong();
        AtomicLong failed = new AtomicLong();
        AtomicReference<Exception> firstError = new AtomicReference<>();
        try (KafkaProducer<String, byte[]> producer =
                new KafkaProducer<>(config, new StringSerializer(), new ByteArraySerializer())) {
            for (EngagementEvent e : events) {
                // Keyed by video id: the default partitioner (murmur2) keeps a video on one partition.
                producer.send(new ProducerRecord<>(topic, e.videoId(), json.writeValueAsBytes(e)),
                        (metadata, error) -> {
                            if (error == null) {
                                acked.incrementAndGet();
                            } else {
                                failed.incrementAndGet();
                                firstError.compareAndSet(null, error);
                            }
                        });
            }
            producer.flush();
        }
        System.err.printf("produced %d of %d events to %s (%d likes on %s in the last minute)%n",
                acked.get(), events.size(), topic, likes, video);
        if (acked.get() != events.size()) {
            System.err.printf("error: %d failed; first: %s%n", failed.get(), firstError.get());
            System.exit(1);
        }
    }
}
