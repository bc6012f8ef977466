package runner

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// value is the value of the series of family name with exactly labels (name, value pairs) in
// reg: a counter's, or a histogram's count. Absent: -1.
func value(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(labels)/2 {
				continue
			}
			if !labelled(m, labels) {
				continue
			}
			if m.Histogram != nil {
				return float64(m.Histogram.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}

func labelled(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == labels[i] && l.GetValue() == labels[i+1] }) {
			return false
		}
	}
	return true
}

// An undo that fails five times for a while, then succeeds: five failed attempts and one
// done, each a retry until the last, one announcement of stuck work, six deliveries timed.
func TestMetricsCountAnUndoThatFailsForAWhile(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := &step{fail: func(call int) error {
		if call <= 5 {
			return errors.New("no charge found yet")
		}
		return nil
	}}
	h := newHarness(t, s, func(c *Config) {
		c.Name, c.RetryMax, c.StuckAfter, c.Metrics = events.ServicePayments, 20*time.Millisecond, 50*time.Millisecond, reg
		c.Routes = []Route{{Subject: events.PaymentRefund, Handle: s.handle}}
	})
	h.run(t)
	h.env.Publish(t, events.Must("co-1", events.PaymentRefund, events.Compensation{Reason: "test"}))
	h.watch.Wait(t, "co-1", wait, output)
	natstest.Eventually(t, wait, func() bool {
		return value(t, reg, "jetcheckout_handled_total", "service", events.ServicePayments, "subject", string(events.PaymentRefund), "outcome", "ok") == 1
	}, "the undo's success was not counted")
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"jetcheckout_compensations_total", []string{"step", string(events.StepProcessPayment), "outcome", "failed"}, 5},
		{"jetcheckout_compensations_total", []string{"step", string(events.StepProcessPayment), "outcome", "ok"}, 1},
		{"jetcheckout_handled_total", []string{"subject", string(events.PaymentRefund), "outcome", "retry"}, 5},
		{"jetcheckout_stuck_total", []string{"subject", string(events.PaymentRefund)}, 1},
		{"jetcheckout_handler_duration_seconds", []string{"subject", string(events.PaymentRefund)}, 6},
		{"jetcheckout_dead_letters_total", []string{"subject", string(events.PaymentRefund)}, 0}, // an undo is never given up
	} {
		labels := append([]string{"service", events.ServicePayments}, c.labels...)
		if got := value(t, reg, c.name, labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, labels, got, c.want)
		}
	}
}

// A trigger that comes after its step's deadline is given up without running: counted as a
// deadline expiry of the step, with no dead letter (nothing was tried).
func TestMetricsCountAnExpiredTrigger(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := &step{}
	h := newHarness(t, s, func(c *Config) {
		c.Name, c.Metrics = events.ServicePayments, reg
		c.Deadlines = map[events.StepName]time.Duration{events.StepProcessPayment: time.Minute}
	})
	h.run(t)
	old := events.Must("co-old", input, map[string]string{"note": "please handle"})
	old.Time = time.Now().Add(-2 * time.Minute)
	h.env.Publish(t, old)
	h.watch.Wait(t, "co-old", wait, events.PaymentFailed)
	natstest.Eventually(t, wait, func() bool {
		return value(t, reg, "jetcheckout_handled_total", "service", events.ServicePayments, "subject", string(input), "outcome", "ok") == 1
	}, "the trigger's answer was not counted")
	for code, n := range map[string]float64{events.CodeDeadlineExceeded: 1, events.CodeRetriesExhausted: 0, events.CodeStepFailed: 0} {
		if got := value(t, reg, "jetcheckout_steps_given_up_total", "service", events.ServicePayments, "step", string(events.StepProcessPayment), "code", code); got != n {
			t.Errorf("given up with %s: %v, want %v", code, got, n)
		}
	}
	if got := value(t, reg, "jetcheckout_dead_letters_total", "service", events.ServicePayments, "subject", string(input)); got != 0 {
		t.Errorf("%v dead letters, want none", got)
	}
	s.wantCalls(t, 0)
}

// subjectOnly is a delivery as the meters see it.
type subjectOnly struct {
	jetstream.Msg
	subject string
}

func (m subjectOnly) Subject() string { return m.subject }

// Counting a delivery allocates nothing: its series were resolved when the runner was made.
func TestCountingADeliveryAllocatesNothing(t *testing.T) {
	m := newMeters(prometheus.NewRegistry(), events.Checkout, events.ServicePayments, []Route{{Subject: events.PaymentRefund}, {Subject: input}})
	msg := &heldMsg{Msg: subjectOnly{subject: string(events.PaymentRefund)}, answer: answerAck}
	if n := testing.AllocsPerRun(100, func() { m.delivered(msg, time.Millisecond) }); n != 0 {
		t.Errorf("%v allocations per delivery counted", n)
	}
}
