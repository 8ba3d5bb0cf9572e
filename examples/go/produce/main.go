// Command produce publishes the example workload to trendwatch's events topic, in its JSON
// form.
//
// Twenty minutes of event time ending now: every 10 s one VIEW on the target video and on
// each of four background videos, then, in the last minute, a burst of LIKEs on the target
// with four VIEWs each. The counter's default velocity warm-up is 15 minutes of event time
// from a partition's first event, so the history comes first and the burst after it; the
// whole history is published at once. Total: 600 + 5 * likes events (900 by default).
//
//	produce -bootstrap 127.0.0.1:19092 -topic engagement-events [-video V] [-likes N]
//
// Each event is one JSON object (the proto field names of trendwatch.v1.EngagementEvent,
// kind without its prefix, event_time in integer milliseconds), keyed by video_id; the
// counter must run with counter.input_format = "json". Exit status 0 when every event was
// acknowledged by the broker, 1 otherwise.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	historyMs        = 20 * 60_000
	stepMs           = 10_000
	burstMs          = 60_000
	backgroundVideos = 4
	viewsPerLike     = 4
)

// EngagementEvent is one event in trendwatch's JSON form.
type EngagementEvent struct {
	EventID   string `json:"event_id"`
	VideoID   string `json:"video_id"`
	CreatorID string `json:"creator_id"`
	UserID    string `json:"user_id"`
	Kind      string `json:"kind"`
	EventTime int64  `json:"event_time"`
}

// workload returns the events in event-time order.
func workload(video string, likes int, endMs int64, run string) []EngagementEvent {
	type timed struct {
		t                        int64
		videoID, creatorID, kind string
	}
	var all []timed
	start := endMs - historyMs
	for step := int64(0); step < historyMs/stepMs; step++ {
		t := start + step*stepMs
		for b := 1; b <= backgroundVideos; b++ {
			all = append(all, timed{t + 100*int64(b-1), fmt.Sprintf("%s-background-%d", video, b), "creator-background", "VIEW"})
		}
		all = append(all, timed{t + 500, video, "creator-example", "VIEW"})
	}
	burst := endMs - burstMs
	for i := 0; i < likes; i++ {
		t := burst + int64(i)*burstMs/int64(likes)
		all = append(all, timed{t, video, "creator-example", "LIKE"})
		for j := 1; j <= viewsPerLike; j++ {
			all = append(all, timed{t + int64(j), video, "creator-example", "VIEW"})
		}
	}
	// Stable: events of the same time keep the order they were made in.
	sort.SliceStable(all, func(i, j int) bool { return all[i].t < all[j].t })
	events := make([]EngagementEvent, len(all))
	for seq, e := range all {
		events[seq] = EngagementEvent{
			EventID:   fmt.Sprintf("%s-%d", run, seq),
			VideoID:   e.videoID,
			CreatorID: e.creatorID,
			UserID:    fmt.Sprintf("user-%d", seq%1000),
			Kind:      e.kind,
			EventTime: e.t,
		}
	}
	return events
}

func main() {
	bootstrap := flag.String("bootstrap", "", "host:port of a Kafka broker (required)")
	topic := flag.String("topic", "", "the counter's events topic (required)")
	video := flag.String("video", "v-example", "the video that goes viral")
	likes := flag.Int("likes", 60, "likes in the burst")
	flag.Parse()
	if *bootstrap == "" || *topic == "" || *likes < 1 || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	os.Exit(run(*bootstrap, *topic, *video, *likes))
}

func run(bootstrap, topic, video string, likes int) int {
	runID := make([]byte, 4)
	if _, err := rand.Read(runID); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		return 1
	}
	events := workload(video, likes, time.Now().UnixMilli(), hex.EncodeToString(runID))

	// franz-go's defaults: an idempotent producer, acks from all in-sync replicas, and a
	// partitioner that hashes keys with murmur2 as Java's does, so a video stays on one
	// partition whichever of the examples' clients publishes it.
	client, err := kgo.NewClient(
		kgo.SeedBrokers(bootstrap),
		kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(20*time.Millisecond),
	)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		return 1
	}
	defer client.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var acked, failed atomic.Int64
	var firstErr error
	var once sync.Once
	for _, e := range events {
		value, err := json.Marshal(e)
		if err != nil {
			fmt.Fprintf(os.Stderr, "error: %v\n", err)
			return 1
		}
		client.Produce(ctx, &kgo.Record{Key: []byte(e.VideoID), Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Add(1)
				once.Do(func() { firstErr = err })
				return
			}
			acked.Add(1)
		})
	}
	if err := client.Flush(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "error: flushing: %v\n", err)
	}
	fmt.Fprintf(os.Stderr, "produced %d of %d events to %s (%d likes on %s in the last minute)\n",
		acked.Load(), len(events), topic, likes, video)
	if acked.Load() != int64(len(events)) {
		fmt.Fprintf(os.Stderr, "error: %d failed; first: %v\n", failed.Load(), firstErr)
		return 1
	}
	return 0
}
