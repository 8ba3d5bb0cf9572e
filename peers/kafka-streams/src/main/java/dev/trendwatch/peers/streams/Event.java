package dev.trendwatch.peers.streams;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonProperty;

/**
 * The fields of trendwatch's JSON {@code EngagementEvent} this job reads (BRIEF "Contract":
 * proto field names in snake_case, {@code kind} by name, {@code event_time} in ms). The other
 * fields ({@code event_id}, {@code creator_id}, {@code user_id}) are ignored.
 */
@JsonIgnoreProperties(ignoreUnknown = true)
public record Event(
    @JsonProperty("video_id") String videoId,
    @JsonProperty("kind") String kind,
    @JsonProperty("event_time") long eventTime) {

  /** +1 for a like, -1 for an unlike, 0 for every other kind. */
  public int netLikes() {
    if ("LIKE".equals(kind) || "EVENT_KIND_LIKE".equals(kind)) {
      return 1;
    }
    if ("UNLIKE".equals(kind) || "EVENT_KIND_UNLIKE".equals(kind)) {
      return -1;
    }
    return 0;
  }
}
