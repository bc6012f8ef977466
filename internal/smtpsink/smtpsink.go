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
// message and keeps each one it took, so duplicates are counted rather than overwritten. A mailbox it is told to refuse gets a
// permanent refusal (550) until it is told to take its mail again.
type Sink struct {
	Addr string // host:port it listens on
	ln   net.Listener
	wg   sync.WaitGroup

	mu       sync.Mutex
	received []Mail
	refused  map[string]bool // recipients, lower case
}

// Refuse makes the mailbox of addr refuse mail; Take makes it take mail again.
func (s *Sink) Refuse(addr string) { s.setRefused(addr, true) }
func (s *Sink) Take(addr string)   { s.setRefused(addr, false) }

func (s *Sink) setRefused(addr string, refused bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refused == nil {
		s.refused = map[string]bool{}
	}
	s.refused[strings.ToLower(addr)] = refused
}

// refuses reports whether an RCPT command's recipient is refused.
func (s *Sink) refuses(rcpt string) bool {
	_, arg, _ := strings.Cut(rcpt, ":")
	addr := strings.ToLower(strings.Trim(strings.TrimSpace(arg), "<>"))
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused[addr]
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
		case "RCPT":
			if s.refuses(line) {
				_ = c.PrintfLine("550 5.2.2 mailbox full")
				continue
			}
			_ = c.PrintfLine("250 ok")
		case "MAIL", "RSET", "NOOP":
			_ = c.PrintfLine("250 ok")
		case "DATA":
			_ = c.PrintfLine("354 go ahead")
			data, err := io.ReadAll(c.DotReader())
			if err != nil {
				return
			}
			s.keep(data)
			_ = c.PrintfLine("250 ok: queued")
		case "QUIT":
			_ = c.PrintfLine("221 bye")
			return
		default:
			_ = c.PrintfLine("502 command not implemented")
		}
	}
}

func (s *Sink) keep(data []byte) {
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
