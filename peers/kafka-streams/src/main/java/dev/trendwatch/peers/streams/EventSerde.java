package dev.trendwatch.peers.streams;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;

/** JSON (de)serialisation of {@link Event} with Jackson, the way Kafka Streams' examples do it. */
public final class EventSerde {
  private static final ObjectMapper MAPPER = new ObjectMapper();

  private EventSerde() {}

  public static Serde<Event> serde() {
    Serializer<Event> serializer =
        (topic, event) -> {
          try {
            return event == null ? null : MAPPER.writeValueAsBytes(event);
          } catch (IOException e) {
            throw new SerializationException(e);
          }
        };
    Deserializer<Event> deserializer =
        (topic, bytes) -> {
          if (bytes == null) {
            return null;
          }
          try {
            return MAPPER.readValue(bytes, Event.class);
          } catch (IOException e) {
            // Handled by the configured deserialization exception handler (log and continue).
            throw new SerializationException("undecodable event", e);
          }
        };
    return Serdes.serdeFrom(serializer, deserializer);
  }
}
