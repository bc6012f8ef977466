package app

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// TestConnectionThatGoesSilentIsReplaced cuts a service's connection off without closing it
// (a proxy that stops forwarding, as a container taken off its network sees it): the
// connection notices by its unanswered pings and reconnects, and requests work again.
func TestConnectionThatGoesSilentIsReplaced(t *testing.T) {
	srv := runServer(t, &server.Options{Host: "127.0.0.1", Port: -1})
	proxy := newBlackhole(t, srv.Addr().String())
	nc, err := connect(context.Background(), "nats://"+proxy.addr(), Config{}, testLogger(), []string{"catalog"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.Subscribe("ping.me", func(m *nats.Msg) { _ = m.Respond([]byte("pong")) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if _, err := nc.Request("ping.me", nil, 2*time.Second); err != nil {
		t.Fatalf("before the cut: %v", err)
	}

	proxy.silence() // established connections go quiet; new ones pass
	// The defaults (pings every 2 min) would keep it on the dead one for minutes.
	natstest.Eventually(t, 4*(pingInterval*(maxPingsOut+1)), func() bool {
		_, err := nc.Request("ping.me", nil, time.Second)
		return err == nil
	}, "still no answer over the silenced connection (reconnects: %d)", nc.Reconnects)
	if nc.Reconnects == 0 {
		t.Error("answered without a reconnect: the cut did not cut")
	}
}

// blackhole forwards TCP to a server until silence(); from then on the connections it
// forwarded stay open and carry nothing, and new ones are forwarded.
type blackhole struct {
	ln       net.Listener
	mu       sync.Mutex
	silenced map[net.Conn]bool
	conns    []net.Conn
}

func newBlackhole(t *testing.T, target string) *blackhole {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{ln: ln, silenced: map[net.Conn]bool{}}
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, c := range b.conns {
			c.Close()
		}
	})
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			upstream, err := net.Dial("tcp", target)
			if err != nil {
				client.Close()
				continue
			}
			b.mu.Lock()
			b.conns = append(b.conns, client, upstream)
			b.mu.Unlock()
			go b.pipe(client, upstream)
			go b.pipe(upstream, client)
		}
	}()
	return b
}

func (b *blackhole) addr() string { return b.ln.Addr().String() }

// silence stops every connection forwarded so far, without closing it.
func (b *blackhole) silence() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.conns {
		b.silenced[c] = true
	}
}

// pipe copies from to to, dropping what arrives once either side is silenced.
func (b *blackhole) pipe(from, to net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if err != nil {
			return
		}
		b.mu.Lock()
		quiet := b.silenced[from] || b.silenced[to]
		b.mu.Unlock()
		if quiet {
			continue
		}
		if _, err := to.Write(buf[:n]); err != nil {
			_ = from.Close()
			return
		}
	}
}
