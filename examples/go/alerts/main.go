// Command alerts reads trendwatch's alert topic (JSON form) until a VIRAL_VELOCITY alert
// arrives.
//
//	alerts -bootstrap 127.0.0.1:19092 -topic trendwatch-alerts [-video V] [-group G] [-timeout SECONDS]
//
// It prints the first VIRAL_VELOCITY alert (for -video, if given) to stdout as the JSON the
// counter wrote, one line, and its explanation to stderr; other alerts are reported on
// stderr as they pass. Exit status 0 when the alert arrived, 1 when -timeout passed first.
//
// The counter must run with counter.output_format = "json" (its default is protobuf).
// Without -group, a fresh consumer group reads the topic from its beginning, so alerts
// emitted before this started are seen too; a service would use a stable group and commit
// as it goes.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Alert holds the fields of trendwatch's JSON alert this program looks at; the schema is
// proto/trendwatch/v1/alert.schema.json.
type Alert struct {
	AlertID     string `json:"alert_id"`
	VideoID     string `json:"video_id"`
	Type        string `json:"type"`
	Tier        uint32 `json:"tier"`
	Explanation string `json:"explanation"`
}

func main() {
	bootstrap := flag.String("bootstrap", "", "host:port of a Kafka broker (required)")
	topic := flag.String("topic", "", "the counter's alert topic (required)")
	video := flag.String("video", "", "wait for this video's alert (default: any video)")
	group := flag.String("group", "", "consumer group (default: a fresh one)")
	timeout := flag.Float64("timeout", 60, "seconds to wait")
	flag.Parse()
	if *bootstrap == "" || *topic == "" || *timeout <= 0 || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	os.Exit(run(*bootstrap, *topic, *video, *group, time.Duration(*timeout*float64(time.Second))))
}

func run(bootstrap, topic, video, group string, timeout time.Duration) int {
	if group == "" {
		id := make([]byte, 4)
		if _, err := rand.Read(id); err != nil {
			fmt.Fprintf(os.Stderr, "error: %v\n", err)
			return 1
		}
		group = "trendwatch-example-alerts-" + hex.EncodeToString(id)
	}
	client, err := kgo.NewClient(
		kgo.SeedBrokers(bootstrap),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		return 1
	}
	defer client.Close()

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	warned := false
	for {
		fetches := client.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		if fetches.IsClientClosed() {
			fmt.Fprintln(os.Stderr, "error: the client closed")
			return 1
		}
		// Fetch errors are transient here (the topic not created yet, a broker restarting):
		// report them and poll again.
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				fmt.Fprintf(os.Stderr, "warning: %s[%d]: %v\n", t, p, err)
			}
		})
		iter := fetches.RecordIter()
		for !iter.Done() {
			record := iter.Next()
			var alert Alert
			if err := json.Unmarshal(record.Value, &alert); err != nil {
				if !warned {
					fmt.Fprintln(os.Stderr, `warning: an alert record is not JSON: does the counter run with counter.output_format = "json"?`)
					warned = true
				}
				continue
			}
			if alert.Type == "VIRAL_VELOCITY" && (video == "" || alert.VideoID == video) {
				fmt.Println(string(record.Value))
				fmt.Fprintf(os.Stderr, "%s %s tier %d: %s\n", alert.Type, alert.VideoID, alert.Tier, alert.Explanation)
				return 0
			}
			fmt.Fprintf(os.Stderr, "seen %s %s\n", alert.Type, alert.VideoID)
		}
	}
	which := ""
	if video != "" {
		which = " for " + video
	}
	fmt.Fprintf(os.Stderr, "error: no VIRAL_VELOCITY alert%s on %s within %g s\n", which, topic, timeout.Seconds())
	return 1
}
