package dev.trendwatch.peers.streams;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.streams.processor.TimestampExtractor;

/**
 * Event time from the record's {@code event_time} field; a record without one keeps the
 * partition's time so far (it cannot move windows backwards or forwards).
 */
public final class EventTimeExtractor implements TimestampExtractor {
  @Override
  public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
    if (record.value() instanceof Event e && e.eventTime() > 0) {
      return e.eventTime();
    }
    return partitionTime;
  }
}
