package metrics

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// readTimeout bounds the JetStream reads of one scrape: a server that does not answer costs
// the scrape this long, and the series it would have given are left out.
const readTimeout = 2 * time.Second

// Consumers reports the backlog of durable consumers as JetStream has it, read when
// scraped (one consumer info request each): what is waiting to be delivered, and what was
// delivered and not acknowledged yet. Each process reports the consumers it consumes from.
type Consumers struct {
	mu    sync.Mutex
	watch []watched

	pending, ackPending, redelivered, waiting *prometheus.Desc
	errors                                    *prometheus.CounterVec
}

type watched struct {
	js              jetstream.JetStream
	stream, durable string
}

// NewConsumers reports no consumer until Watch names some.
func NewConsumers() *Consumers {
	labels := []string{"stream", "consumer"}
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "consumer", name), help, labels, nil)
	}
	return &Consumers{
		pending:     desc("pending_messages", "Messages of the consumer's subjects not delivered yet (its backlog), as JetStream reports it when scraped."),
		ackPending:  desc("ack_pending_messages", "Messages delivered and not acknowledged yet (being handled, waiting in a lane, or waiting for a redelivery)."),
		redelivered: desc("redelivered_messages", "Messages delivered more than once and not acknowledged yet."),
		waiting:     desc("waiting_pulls", "Pull requests waiting at the server: 0 while nothing is pulling."),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "consumer", Name: "info_errors_total",
			Help: "Scrapes that could not read the consumer's info from JetStream (its series were left out)."}, labels),
	}
}

// Watch adds durable consumers of stream, read through js (one watched already is read
// through js from now on).
func (c *Consumers) Watch(js jetstream.JetStream, stream string, durables ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range durables {
		w := watched{js: js, stream: stream, durable: d}
		if i := slices.IndexFunc(c.watch, func(o watched) bool { return o.stream == stream && o.durable == d }); i >= 0 {
			c.watch[i] = w
			continue
		}
		c.watch = append(c.watch, w)
	}
}

func (c *Consumers) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.pending, c.ackPending, c.redelivered, c.waiting} {
		ch <- d
	}
	c.errors.Describe(ch)
}

func (c *Consumers) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	watch := append([]watched(nil), c.watch...)
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	for _, w := range watch {
		cons, err := w.js.Consumer(ctx, w.stream, w.durable)
		if err != nil {
			c.errors.WithLabelValues(w.stream, w.durable).Inc()
			continue
		}
		info := cons.CachedInfo() // read by the lookup just made
		gauge := func(d *prometheus.Desc, v int) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), w.stream, w.durable)
		}
		gauge(c.pending, int(info.NumPending))
		gauge(c.ackPending, info.NumAckPending)
		gauge(c.redelivered, info.NumRedelivered)
		gauge(c.waiting, info.NumWaiting)
	}
	c.errors.Collect(ch)
}

// Streams reports the messages the streams hold, and the dead letters per service, read
// from JetStream when scraped. One process of a deployment serves it (`run`, or the setup
// role's in compose): the figures are the server's, the same from every process.
type Streams struct {
	mu    sync.Mutex
	js    jetstream.JetStream
	names []string

	messages, bytes, deadLetters *prometheus.Desc
	errors                       *prometheus.CounterVec
}

// NewStreams reports no stream until Watch names them.
func NewStreams() *Streams {
	return &Streams{
		messages: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "stream", "messages"), "Messages the stream holds.", []string{"stream"}, nil),
		bytes:    prometheus.NewDesc(prometheus.BuildFQName(Namespace, "stream", "bytes"), "Bytes the stream holds.", []string{"stream"}, nil),
		deadLetters: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", "dead_letters_stored"),
			"Messages a service gave up on that the "+events.StreamDeadLetter+" stream holds (deadletter.<service>).", []string{"service"}, nil),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "stream", Name: "info_errors_total",
			Help: "Scrapes that could not read the stream's info from JetStream (its series were left out)."}, []string{"stream"}),
	}
}

// Watch reports the streams named, read through js, instead of those before.
func (s *Streams) Watch(js jetstream.JetStream, names []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.js, s.names = js, names
}

func (s *Streams) Describe(ch chan<- *prometheus.Desc) {
	ch <- s.messages
	ch <- s.bytes
	ch <- s.deadLetters
	s.errors.Describe(ch)
}

func (s *Streams) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	js, names := s.js, s.names
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	for _, name := range names {
		stream, err := js.Stream(ctx, name) // reads its info
		var info *jetstream.StreamInfo
		switch {
		case err == nil && name == events.StreamDeadLetter: // again, with its count per subject
			info, err = stream.Info(ctx, jetstream.WithSubjectFilter(events.DeadLetterSubjects))
		case err == nil:
			info = stream.CachedInfo()
		}
		if err != nil {
			s.errors.WithLabelValues(name).Inc()
			continue
		}
		ch <- prometheus.MustNewConstMetric(s.messages, prometheus.GaugeValue, float64(info.State.Msgs), name)
		ch <- prometheus.MustNewConstMetric(s.bytes, prometheus.GaugeValue, float64(info.State.Bytes), name)
		if name == events.StreamDeadLetter {
			s.collectDeadLetters(ch, info.State.Subjects)
		}
	}
	s.errors.Collect(ch)
}

// collectDeadLetters gives each service's count, 0 for one with none (an alert compares it).
func (s *Streams) collectDeadLetters(ch chan<- prometheus.Metric, subjects map[string]uint64) {
	for _, service := range events.Services {
		n := subjects[events.DeadLetterSubject(service)]
		ch <- prometheus.MustNewConstMetric(s.deadLetters, prometheus.GaugeValue, float64(n), service)
	}
	var other uint64 // a subject of no service of this release: counted, not named
	for subject, n := range subjects {
		if service, ok := strings.CutPrefix(subject, events.DeadLetterSubject("")); !ok || !slices.Contains(events.Services, service) {
			other += n
		}
	}
	if other > 0 {
		ch <- prometheus.MustNewConstMetric(s.deadLetters, prometheus.GaugeValue, float64(other), "other")
	}
}
