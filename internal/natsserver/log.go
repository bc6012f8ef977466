package natsserver

import (
	"context"
	"fmt"
	"log/slog"
)

// slogLogger is nats-server's server.Logger writing to an *slog.Logger: its notices at
// Info, warnings at Warn, errors and fatal errors at Error, debug at Debug. Trace is sent
// to Debug too but the server is never asked to trace (it would log message payloads).
type slogLogger struct {
	log   *slog.Logger
	fatal chan<- string // if set, is told of the first fatal error (Serve stops the server)
}

func (l slogLogger) write(level slog.Level, format string, v []any) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	l.log.Log(context.Background(), level, fmt.Sprintf(format, v...))
}

func (l slogLogger) Noticef(format string, v ...any) { l.write(slog.LevelInfo, format, v) }
func (l slogLogger) Warnf(format string, v ...any)   { l.write(slog.LevelWarn, format, v) }
func (l slogLogger) Errorf(format string, v ...any)  { l.write(slog.LevelError, format, v) }
func (l slogLogger) Debugf(format string, v ...any)  { l.write(slog.LevelDebug, format, v) }
func (l slogLogger) Tracef(format string, v ...any)  { l.write(slog.LevelDebug, format, v) }

// Fatalf logs at Error: nats-server's own logger exits the process here, which a library
// must not do; the server may go on half started (no listener, no JetStream), so Serve is
// told and stops it.
func (l slogLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg, "fatal", true)
	if l.fatal != nil {
		select {
		case l.fatal <- msg:
		default: // one is enough
		}
	}
}
