package dev.trendwatch.peers.streams;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.trendwatch.peers.streams.ViralVelocityRule.Baseline;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * Tests each closed window's net likes against the video's baseline (kept in a key-value
 * store), emits an alert record (JSON, keyed by video) when it fires, then folds the window
 * into the baseline.
 */
public final class ViralVelocityTest
    implements Processor<Windowed<String>, Long, String, String> {
  public static final String STORE = "baselines";
  /** The key of the task's first window end (video ids are never empty). */
  private static final String TASK_START = "";
  private static final ObjectMapper MAPPER = new ObjectMapper();

  private ProcessorContext<String, String> context;
  private KeyValueStore<String, Baseline> baselines;
  private long taskStart = Long.MIN_VALUE;

  @Override
  public void init(ProcessorContext<String, String> context) {
    this.context = context;
    this.baselines = context.getStateStore(STORE);
    Baseline start = baselines.get(TASK_START);
    if (start != null) {
      taskStart = start.firstEnd();
    }
  }

  @Override
  public void process(Record<Windowed<String>, Long> record) {
    String video = record.key().key();
    long start = record.key().window().start();
    long end = record.key().window().end();
    long count = record.value() == null ? 0 : record.value();
    if (taskStart == Long.MIN_VALUE) {
      taskStart = end;
      baselines.put(TASK_START, new Baseline(0, end, end, 0));
    }
    Baseline state = baselines.get(video);
    if (state == null) {
      state = Baseline.EMPTY;
    }
    boolean fires = ViralVelocityRule.fires(state, end, count, taskStart);
    if (fires) {
      double baseline = state.perWindow();
      ObjectNode alert = MAPPER.createObjectNode();
      alert.put("video_id", video);
      alert.put("type", "VIRAL_VELOCITY");
      alert.put("window_start", start);
      alert.put("window_end", end);
      alert.put("count", count);
      alert.put("baseline", baseline);
      alert.put("z_score", ViralVelocityRule.z(count, baseline));
      // The event time at which the decision was taken: the task's stream time, which has
      // passed the window's end plus grace for the window to be emitted.
      alert.put("detected_at", context.currentStreamTimeMs());
      alert.put("emitted_at", System.currentTimeMillis());
      context.forward(new Record<>(video, alert.toString(), record.timestamp()));
    }
    baselines.put(video, state.observe(end, count, fires));
  }
}
