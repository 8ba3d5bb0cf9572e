package dev.trendwatch.peers.streams;

import java.time.Duration;

/**
 * The baseline test of a closed window, the same in the Flink peer.
 *
 * <p>The baseline {@code b} is an EWMA (half-life 30 min) of the video's net likes per 1-min
 * window, advanced by one 10 s hop per window; hops without a window (no like in it) count as
 * zero. It is bias-corrected for the video's short history ({@code b / (1 - d^n)} after n
 * hops), so a video seen for a few minutes is judged on those minutes, not on zeros before
 * them. A window fires when, with {@code λ = max(baseline, 1 like/min)} and
 * {@code z = (count - λ) / sqrt(λ)} (the Poisson z), all of: {@code count >= 10},
 * {@code count >= 5 λ}, {@code z >= 3}; not in the first 15 min of event time of a task
 * (baselines are still empty) and not within 10 min of the video's previous alert.
 */
public final class ViralVelocityRule {
  public static final Duration WINDOW = Duration.ofMinutes(1);
  public static final Duration ADVANCE = Duration.ofSeconds(10);
  /** trendwatch's default allowed lateness. */
  public static final Duration GRACE = Duration.ofSeconds(30);

  static final double HALF_LIFE_MS = Duration.ofMinutes(30).toMillis();
  static final double DECAY_PER_HOP = Math.pow(0.5, ADVANCE.toMillis() / HALF_LIFE_MS);
  static final double PRIOR_PER_WINDOW = 1.0;
  static final long MIN_COUNT = 10;
  static final double MIN_RATIO = 5.0;
  static final double MIN_Z = 3.0;
  static final long WARMUP_MS = Duration.ofMinutes(15).toMillis();
  static final long COOLDOWN_MS = Duration.ofMinutes(10).toMillis();

  private ViralVelocityRule() {}

  /** A video's baseline state; {@code firstEnd == 0} means none yet. */
  public record Baseline(double ewma, long firstEnd, long lastEnd, long lastAlertEnd) {
    public static final Baseline EMPTY = new Baseline(0, 0, 0, Long.MIN_VALUE / 2);

    /** The bias-corrected baseline in likes per window (0 without history). */
    public double perWindow() {
      if (firstEnd == 0) {
        return 0;
      }
      long hops = (lastEnd - firstEnd) / ADVANCE.toMillis() + 1;
      return ewma / (1 - Math.pow(DECAY_PER_HOP, hops));
    }

    /** This state after the window ending at {@code end} held {@code count} net likes. */
    public Baseline observe(long end, long count, boolean alerted) {
      long alertEnd = alerted ? end : lastAlertEnd;
      if (firstEnd == 0) {
        return new Baseline((1 - DECAY_PER_HOP) * count, end, end, alertEnd);
      }
      long hops = Math.max(1, (end - lastEnd) / ADVANCE.toMillis());
      double decayed = ewma * Math.pow(DECAY_PER_HOP, hops);
      return new Baseline(decayed + (1 - DECAY_PER_HOP) * count, firstEnd, end, alertEnd);
    }
  }

  /** The Poisson z of {@code count} against {@code baseline} (floored at the prior). */
  public static double z(long count, double baseline) {
    double lambda = Math.max(baseline, PRIOR_PER_WINDOW);
    return (count - lambda) / Math.sqrt(lambda);
  }

  /** Whether the window ending at {@code end} with {@code count} net likes fires. */
  public static boolean fires(Baseline state, long end, long count, long taskStart) {
    if (end - taskStart < WARMUP_MS || end - state.lastAlertEnd() < COOLDOWN_MS) {
      return false;
    }
    double lambda = Math.max(state.perWindow(), PRIOR_PER_WINDOW);
    return count >= MIN_COUNT && count >= MIN_RATIO * lambda && z(count, lambda) >= MIN_Z;
  }
}
