package notifications

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"time"
)

// Message is a rendered email, ready to send.
type Message struct {
	Name string // unique per checkout and safe as a file name
	ID   string // the Message-ID header, angle brackets included
	From string // envelope sender, a bare address
	To   string // envelope recipient, a bare address
	Data []byte // the RFC 5322 message, CRLF line endings
}

// Sender hands a message to a mail system. Sending the same message twice must be
// harmless for the outbox and is at worst a duplicate a mail client can drop by Message-ID.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// Outbox writes each message to <dir>/<name>.eml, for a developer or a mail relay to pick
// up. A reader never sees half a message: it is written to a temporary file and renamed.
type Outbox struct {
	dir string
}

// NewOutbox creates dir if needed.
func NewOutbox(dir string) (*Outbox, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	return &Outbox{dir: dir}, nil
}

// Path is where the message named name is written.
func (o *Outbox) Path(name string) string { return filepath.Join(o.dir, name+".eml") }

// Send writes the message, replacing an earlier copy of it.
func (o *Outbox) Send(_ context.Context, m Message) (err error) {
	// The temporary name does not end in .eml, so a reader globbing *.eml skips it.
	tmp, err := os.CreateTemp(o.dir, ".sending-*")
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(m.Data); err != nil {
		return fmt.Errorf("outbox: write %s: %w", m.Name, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("outbox: sync %s: %w", m.Name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("outbox: close %s: %w", m.Name, err)
	}
	if err := os.Rename(tmp.Name(), o.Path(m.Name)); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return syncDir(o.dir) // the rename itself survives a crash only once the directory is synced
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("outbox: sync %s: %w", dir, err)
	}
	return nil
}

// SMTP sends through a mail server, one connection per message.
type SMTP struct {
	cfg SMTPConfig
}

// Send delivers the message. A refusal (a 5xx reply) is an *textproto.Error the caller can
// tell from a temporary failure.
func (s *SMTP) Send(ctx context.Context, m Message) error {
	host, _, err := net.SplitHostPort(s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	dialer := net.Dialer{Timeout: s.cfg.Timeout}
	conn, err := dialer.DialContext(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	deadline := time.Now().Add(s.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := conn.SetDeadline(deadline); err != nil {
		conn.Close()
		return fmt.Errorf("smtp: %w", err)
	}
	// Cancelling ctx unblocks a conversation in progress.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("smtp %s: greeting: %w", s.cfg.Addr, err)
	}
	defer c.Close()
	if err := s.deliver(c, host, m); err != nil {
		return fmt.Errorf("smtp %s: %w", s.cfg.Addr, err)
	}
	// The server has taken the message: a failed QUIT must not cause a second send.
	_ = c.Quit()
	return nil
}

func (s *SMTP) deliver(c *smtp.Client, host string, m Message) error {
	if err := c.Hello(s.cfg.HelloName); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		if err := c.StartTLS(&tls.Config{ServerName: host, RootCAs: s.cfg.RootCAs, MinVersion: tls.VersionTLS12}); err != nil {
			return fmt.Errorf("starttls: %w", err)
		}
	}
	if s.cfg.Username != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return errors.New("the server offers no AUTH, but a username is configured")
		}
		// PlainAuth refuses to send the password unencrypted to a host other than loopback.
		if err := c.Auth(smtp.PlainAuth("", s.cfg.Username, string(s.cfg.Password), host)); err != nil {
			return fmt.Errorf("auth as %s: %w", s.cfg.Username, err)
		}
	}
	if err := c.Mail(m.From); err != nil {
		return fmt.Errorf("mail from: %w", err)
	}
	if err := c.Rcpt(m.To); err != nil {
		return fmt.Errorf("rcpt to: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if _, err := w.Write(m.Data); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	return nil
}

// Refused reports an SMTP permanent failure (5xx): retrying at once will not help.
func Refused(err error) bool {
	var reply *textproto.Error
	return errors.As(err, &reply) && reply.Code >= 500
}
