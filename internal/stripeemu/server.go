package stripeemu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Server serves an Emulator over HTTP.
type Server struct {
	// URL is the base URL to give stripe-go, e.g. "http://127.0.0.1:41234".
	URL string
	// Emulator is the emulator served, for its Go-level read API.
	Emulator *Emulator

	srv  *http.Server
	done chan error
}

// Start serves e on addr ("127.0.0.1:0" picks a free port) until Close.
func Start(addr string, e *Emulator) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("stripe emulator: listen on %s: %w", addr, err)
	}
	s := &Server{
		URL:      "http://" + ln.Addr().String(),
		Emulator: e,
		srv:      &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second},
		done:     make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// Close stops accepting requests, releases hanging faults, waits up to five seconds for
// the requests in flight, then closes.
func (s *Server) Close() error {
	s.Emulator.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = s.srv.Close()
	}
	if serveErr := <-s.done; !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return err
}

// ListenAndServe runs an emulator on addr until ctx is cancelled: the entry point of the
// emulator as its own process. log gets the start, the stop and a debug line per request.
func ListenAndServe(ctx context.Context, addr string, log *slog.Logger, opts ...Option) error {
	s, err := Start(addr, New(append([]Option{WithLogger(log)}, opts...)...))
	if err != nil {
		return err
	}
	log.Info("stripe emulator listening", "url", s.URL, "api_version", APIVersion)
	select {
	case <-ctx.Done():
	case err := <-s.done:
		s.done <- err // for Close
	}
	log.Info("stripe emulator stopping")
	return s.Close()
}
