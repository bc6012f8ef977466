package notifications

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"math/big"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"
)

// smtpServer speaks just enough SMTP on 127.0.0.1 to take messages: EHLO/HELO, STARTTLS,
// AUTH PLAIN, MAIL, RCPT, DATA, QUIT.
type smtpServer struct {
	Addr string

	failFirst      int         // connections turned away with 421 before one is served
	noSuchUser     string      // a recipient refused with 550, as a mailbox that does not exist
	user, password string      // when set, AUTH PLAIN with them is required
	tls            *tls.Config // when set, STARTTLS is offered
	// holdFirst keeps the first connection waiting until a second one comes, as a slow
	// server would; after 5 s alone it is turned away with 421.
	holdFirst bool

	mu       sync.Mutex
	conns    int
	second   chan struct{} // closed when the second connection comes
	received []received
}

type received struct {
	from    string
	to      []string
	data    []byte
	overTLS bool
}

// startSMTP serves s until the test ends.
func startSMTP(t *testing.T, s *smtpServer) *smtpServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = ln.Addr().String()
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { s.serve(conn) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return s
}

func (s *smtpServer) serve(conn net.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	c := textproto.NewConn(conn)
	s.mu.Lock()
	s.conns++
	n, turnAway := s.conns, s.conns <= s.failFirst
	if s.second == nil {
		s.second = make(chan struct{})
	}
	if n == 2 {
		close(s.second)
	}
	second := s.second
	s.mu.Unlock()
	if s.holdFirst && n == 1 {
		select {
		case <-second:
		case <-time.After(5 * time.Second):
			turnAway = true
		}
	}
	if turnAway {
		_ = c.PrintfLine("421 4.3.2 busy, try again later")
		return
	}
	_ = c.PrintfLine("220 127.0.0.1 test ESMTP")
	authed, secure := s.user == "", false
	var msg received
	for {
		line, err := c.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			reply := []string{"127.0.0.1 hello"} // then the extensions, one per line
			if s.tls != nil && !secure {
				reply = append(reply, "STARTTLS")
			}
			if s.user != "" {
				reply = append(reply, "AUTH PLAIN")
			}
			for _, l := range reply[:len(reply)-1] {
				_ = c.PrintfLine("250-%s", l)
			}
			_ = c.PrintfLine("250 %s", reply[len(reply)-1])
		case "STARTTLS":
			_ = c.PrintfLine("220 go ahead")
			tlsConn := tls.Server(conn, s.tls)
			if tlsConn.Handshake() != nil {
				return
			}
			c, secure, authed = textproto.NewConn(tlsConn), true, s.user == ""
		case "HELO":
			_ = c.PrintfLine("250 127.0.0.1 hello")
		case "AUTH":
			want := "PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+s.user+"\x00"+s.password))
			if arg != want {
				_ = c.PrintfLine("535 5.7.8 bad credentials")
				continue
			}
			authed = true
			_ = c.PrintfLine("235 2.7.0 ok")
		case "MAIL":
			if !authed {
				_ = c.PrintfLine("530 5.7.0 authentication required")
				continue
			}
			msg = received{from: address(arg, "FROM:"), overTLS: secure}
			_ = c.PrintfLine("250 ok")
		case "RCPT":
			to := address(arg, "TO:")
			if s.noSuchUser != "" && to == s.noSuchUser {
				_ = c.PrintfLine("550 5.1.1 no such user")
				continue
			}
			msg.to = append(msg.to, to)
			_ = c.PrintfLine("250 ok")
		case "DATA":
			_ = c.PrintfLine("354 go ahead")
			data, err := c.ReadDotBytes()
			if err != nil {
				return
			}
			msg.data = data
			s.mu.Lock()
			s.received = append(s.received, msg)
			s.mu.Unlock()
			_ = c.PrintfLine("250 queued")
		case "QUIT":
			_ = c.PrintfLine("221 bye")
			return
		default:
			_ = c.PrintfLine("502 5.5.2 not implemented")
		}
	}
}

// address takes the address out of "FROM:<a@b> BODY=8BITMIME".
func address(arg, prefix string) string {
	arg, _ = strings.CutPrefix(arg, prefix)
	addr, _, _ := strings.Cut(arg, " ")
	return strings.Trim(addr, "<>")
}

func (s *smtpServer) messages() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.received...)
}

func (s *smtpServer) connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// selfSigned is a server certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "test smtp"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, roots
}
