package dev.trendwatch.peers.flink;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.trendwatch.peers.flink.ViralVelocityRule.Baseline;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.util.Collector;

/**
 * Tests each closed window against the video's baseline (keyed state), emits an alert (JSON)
 * when it fires, then folds the window into the baseline.
 */
public class ViralVelocityTest extends KeyedProcessFunction<String, WindowCount, String> {
  private transient ValueState<Baseline> baseline;
  private transient ObjectMapper mapper;
  /** This subtask's first window end: the start of its warm-up. */
  private transient long taskStart;

  @Override
  public void open(OpenContext context) {
    baseline = getRuntimeContext().getState(new ValueStateDescriptor<>("baseline", Baseline.class));
    mapper = new ObjectMapper();
    taskStart = Long.MIN_VALUE;
  }

  @Override
  public void processElement(WindowCount w, Context ctx, Collector<String> out) throws Exception {
    if (taskStart == Long.MIN_VALUE) {
      taskStart = w.end;
    }
    Baseline state = baseline.value();
    if (state == null) {
      state = new Baseline();
    }
    boolean fires = ViralVelocityRule.fires(state, w.end, w.count, taskStart);
    if (fires) {
      double b = state.perWindow();
      ObjectNode alert = mapper.createObjectNode();
      alert.put("video_id", w.videoId);
      alert.put("type", "VIRAL_VELOCITY");
      alert.put("window_start", w.start);
      alert.put("window_end", w.end);
      alert.put("count", w.count);
      alert.put("baseline", b);
      alert.put("z_score", ViralVelocityRule.z(w.count, b));
      alert.put("detected_at", w.decidedAt);
      alert.put("emitted_at", System.currentTimeMillis());
      out.collect(alert.toString());
    }
    state.observe(w.end, w.count, fires);
    baseline.update(state);
  }
}
