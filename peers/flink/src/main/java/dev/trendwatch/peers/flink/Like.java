package dev.trendwatch.peers.flink;

/** A like (+1) or an unlike (-1) of a video at an event time: a Flink POJO. */
public class Like {
  public String videoId;
  public int delta;
  public long eventTime;

  public Like() {}

  public Like(String videoId, int delta, long eventTime) {
    this.videoId = videoId;
    this.delta = delta;
    this.eventTime = eventTime;
  }
}
