package chaos

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/internal/topology"
)

// The harness reads the catch-up of a takeover from the runner's own JSON log line.
func TestCatchUpOfAPinLine(t *testing.T) {
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info(topology.LogHoldingPin, "replayed", 12, "delivered", 345, "took", 1234*time.Millisecond)
	line := strings.TrimSpace(buf.String())
	if !strings.Contains(line, pinLine) {
		t.Fatalf("the line %q does not contain %q", line, pinLine)
	}
	if got, want := catchUpOf(line), "12 messages replayed in 1.234s"; got != want {
		t.Errorf("catchUpOf = %q, want %q", got, want)
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []time.Duration
		want time.Duration
	}{{[]time.Duration{3}, 3}, {[]time.Duration{1, 5, 9}, 5}, {[]time.Duration{2, 4, 6, 100}, 5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}
