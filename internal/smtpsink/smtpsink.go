// Package smtpsink is the customers' mail server in tests and chaos runs: a real SMTP server
// on the loopback that takes every message and keeps what it took.
package smtpsink

import (
	"bytes"
	"io"
	"net"
	"net/mail"
	"net/textproto"
	"strings"
	"sync"
	"time"
)

// Sink speaks just enough SMTP (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) to take every
// message and keeps each one it took, so duplicates are counted rather than overwritten.
type Sink struct {
	Addr string // host:port it listens on
	ln   net.Listener
	wg   sync.WaitGroup

	mu       sync.Mutex
	received []Mail
}

// Mail is one delivery.
type Mail struct {
	MessageID string
	To        string
	Subject   string
}

// Start listens on a free loopback port.
func Start() (*Sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Sink{Addr: ln.Addr().String(), ln: ln}
	s.wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Go(func() { s.serve(conn) })
		}
	})
	return s, nil
}

// Close stops listening and waits for the connections to end.
func (s *Sink) Close() {
	s.ln.Close()
	s.wg.Wait()
}

// Mails is every message taken so far.
func (s *Sink) Mails() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.received...)
}

func (s *Sink) serve(conn net.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	c := textproto.NewConn(conn)
	_ = c.PrintfLine("220 127.0.0.1 sink ESMTP")
	for {
		line, err := c.ReadLine()
		if err != nil {
			return
		}
		verb, _, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO", "HELO":
			_ = c.PrintfLine("250 127.0.0.1 hello")
		case "MAIL", "RCPT", "RSET", "NOOP":
			_ = c.PrintfLine("250 ok")
		case "DATA":
			_ = c.PrintfLine("354 go ahead")
			data, err := io.ReadAll(c.DotReader())
			if err != nil {
				return
			}
			s.take(data)
			_ = c.PrintfLine("250 ok: queued")
		case "QUIT":
			_ = c.PrintfLine("221 bye")
			return
		default:
			_ = c.PrintfLine("502 command not implemented")
		}
	}
}

func (s *Sink) take(data []byte) {
	m := Mail{}
	if msg, err := mail.ReadMessage(bytes.NewReader(data)); err == nil {
		m.MessageID, m.Subject = msg.Header.Get("Message-ID"), msg.Header.Get("Subject")
		if to, err := mail.ParseAddress(msg.Header.Get("To")); err == nil {
			m.To = to.Address
		}
	}
	s.mu.Lock()
	s.received = append(s.received, m)
	s.mu.Unlock()
}
