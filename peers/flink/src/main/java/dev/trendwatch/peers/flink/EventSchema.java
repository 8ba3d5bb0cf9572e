package dev.trendwatch.peers.flink;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.util.concurrent.atomic.LongAdder;
import org.apache.flink.api.common.serialization.AbstractDeserializationSchema;

/**
 * trendwatch's JSON {@code EngagementEvent} (BRIEF "Contract") to a {@link Like}; events of
 * other kinds, and undecodable ones, become null, which the Kafka source skips.
 */
public class EventSchema extends AbstractDeserializationSchema<Like> {
  /** Records decoded in this JVM (local mode: all subtasks), for the progress line. */
  public static final LongAdder DECODED = new LongAdder();

  private transient ObjectMapper mapper;

  @JsonIgnoreProperties(ignoreUnknown = true)
  record JsonEvent(
      @JsonProperty("video_id") String videoId,
      @JsonProperty("kind") String kind,
      @JsonProperty("event_time") long eventTime) {}

  @Override
  public Like deserialize(byte[] message) throws IOException {
    DECODED.increment();
    if (mapper == null) {
      mapper = new ObjectMapper();
    }
    JsonEvent e;
    try {
      e = mapper.readValue(message, JsonEvent.class);
    } catch (IOException bad) {
      return null;
    }
    int delta;
    if ("LIKE".equals(e.kind()) || "EVENT_KIND_LIKE".equals(e.kind())) {
      delta = 1;
    } else if ("UNLIKE".equals(e.kind()) || "EVENT_KIND_UNLIKE".equals(e.kind())) {
      delta = -1;
    } else {
      return null;
    }
    return e.videoId() == null ? null : new Like(e.videoId(), delta, e.eventTime());
  }
}
