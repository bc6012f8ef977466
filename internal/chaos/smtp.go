package chaos

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

// smtpSink is the customers' mail server: it speaks just enough SMTP (EHLO/HELO, MAIL,
// RCPT, DATA, RSET, NOOP, QUIT) to take every message and keeps each one it took, so
// duplicates are counted rather than overwritten. A mailbox it is told to refuse gets a
// permanent refusal (550) until it is told to take its mail again.
type smtpSink struct {
	addr string
	ln   net.Listener
	wg   sync.WaitGroup

	mu       sync.Mutex
	received []receivedMail
	refused  map[string]bool // recipients, lower case
}

// refuse makes the mailbox of addr refuse mail; take makes it take mail again.
func (s *smtpSink) refuse(addr string) { s.setRefused(addr, true) }
func (s *smtpSink) take(addr string)   { s.setRefused(addr, false) }

func (s *smtpSink) setRefused(addr string, refused bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refused == nil {
		s.refused = map[string]bool{}
	}
	s.refused[strings.ToLower(addr)] = refused
}

// refuses reports whether an RCPT command's recipient is refused.
func (s *smtpSink) refuses(rcpt string) bool {
	_, arg, _ := strings.Cut(rcpt, ":")
	addr := strings.ToLower(strings.Trim(strings.TrimSpace(arg), "<>"))
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused[addr]
}

// receivedMail is one delivery.
type receivedMail struct {
	MessageID string
	To        string
	Subject   string
}

func startSMTPSink() (*smtpSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &smtpSink{addr: ln.Addr().String(), ln: ln}
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

func (s *smtpSink) close() {
	s.ln.Close()
	s.wg.Wait()
}

// mails is every message taken so far.
func (s *smtpSink) mails() []receivedMail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]receivedMail(nil), s.received...)
}

func (s *smtpSink) serve(conn net.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	c := textproto.NewConn(conn)
	_ = c.PrintfLine("220 127.0.0.1 chaos sink ESMTP")
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

func (s *smtpSink) keep(data []byte) {
	m := receivedMail{}
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
