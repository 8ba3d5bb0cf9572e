package dev.trendwatch.peers.flink;

import java.time.Duration;

/**
 * The baseline test of a closed window, the same as the Kafka Streams peer's (see its
 * ViralVelocityRule and README): EWMA baseline (half-life 30 min) of net likes per 1-min
 * window advanced per 10 s hop, bias-corrected for short histories; fire when, with
 * {@code λ = max(baseline, 1)} and {@code z = (count - λ) / sqrt(λ)}, {@code count >= 10},
 * {@code count >= 5 λ} and {@code z >= 3}, after a 15-min warm-up and not within 10 min of
 * the video's previous alert.
 */
public final class ViralVelocityRule {
  public static final Duration WINDOW = Duration.ofMinutes(1);
  public static final Duration ADVANCE = Duration.ofSeconds(10);
  public static final Duration LATENESS = Duration.ofSeconds(30);

  static final double HALF_LIFE_MS = Duration.ofMinutes(30).toMillis();
  static final double DECAY_PER_HOP = Math.pow(0.5, ADVANCE.toMillis() / HALF_LIFE_MS);
  static final double PRIOR_PER_WINDOW = 1.0;
  static final long MIN_COUNT = 10;
  static final double MIN_RATIO = 5.0;
  static final double MIN_Z = 3.0;
  static final long WARMUP_MS = Duration.ofMinutes(15).toMillis();
  static final long COOLDOWN_MS = Duration.ofMinutes(10).toMillis();

  private ViralVelocityRule() {}

  /** A video's baseline state (a Flink POJO kept in keyed ValueState). */
  public static class Baseline {
    public double ewma;
    public long firstEnd;
    public long lastEnd;
    public long lastAlertEnd = Long.MIN_VALUE / 2;

    public double perWindow() {
      if (firstEnd == 0) {
        return 0;
      }
      long hops = (lastEnd - firstEnd) / ADVANCE.toMillis() + 1;
      return ewma / (1 - Math.pow(DECAY_PER_HOP, hops));
    }

    public void observe(long end, long count, boolean alerted) {
      if (alerted) {
        lastAlertEnd = end;
      }
      if (firstEnd == 0) {
        ewma = (1 - DECAY_PER_HOP) * count;
        firstEnd = end;
      } else {
        long hops = Math.max(1, (end - lastEnd) / ADVANCE.toMillis());
        ewma = ewma * Math.pow(DECAY_PER_HOP, hops) + (1 - DECAY_PER_HOP) * count;
      }
      lastEnd = end;
    }
  }

  public static double z(long count, double baseline) {
    double lambda = Math.max(baseline, PRIOR_PER_WINDOW);
    return (count - lambda) / Math.sqrt(lambda);
  }

  public static boolean fires(Baseline state, long end, long count, long taskStart) {
    if (end - taskStart < WARMUP_MS || end - state.lastAlertEnd < COOLDOWN_MS) {
      return false;
    }
    double lambda = Math.max(state.perWindow(), PRIOR_PER_WINDOW);
    return count >= MIN_COUNT && count >= MIN_RATIO * lambda && z(count, lambda) >= MIN_Z;
  }
}
