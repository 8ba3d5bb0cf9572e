package dev.trendwatch.peers.flink;

/** A closed window's net likes of one video, and the event time it closed at. */
public class WindowCount {
  public String videoId;
  public long start;
  public long end;
  public long count;
  public long decidedAt;

  public WindowCount() {}

  public WindowCount(String videoId, long start, long end, long count, long decidedAt) {
    this.videoId = videoId;
    this.start = start;
    this.end = end;
    this.count = count;
    this.decidedAt = decidedAt;
  }
}
