package dev.trendwatch.peers.streams;

import dev.trendwatch.peers.streams.ViralVelocityRule.Baseline;
import java.nio.ByteBuffer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;

/** A {@link Baseline} as 32 fixed bytes (what the RocksDB store and its changelog hold). */
public final class BaselineSerde {
  private BaselineSerde() {}

  public static Serde<Baseline> serde() {
    return Serdes.serdeFrom(
        (topic, b) ->
            b == null
                ? null
                : ByteBuffer.allocate(32)
                    .putDouble(b.ewma())
                    .putLong(b.firstEnd())
                    .putLong(b.lastEnd())
                    .putLong(b.lastAlertEnd())
                    .array(),
        (topic, bytes) -> {
          if (bytes == null) {
            return null;
          }
          ByteBuffer buf = ByteBuffer.wrap(bytes);
          return new Baseline(buf.getDouble(), buf.getLong(), buf.getLong(), buf.getLong());
        });
  }
}
