package natsserver

import (
	"context"
	"fmt"
	"log/slog"
)

// slogLogger is nats-server's server.Logger writing to an *slog.Logger: its notices at
// Info, warnings at Warn, errors and fatal errors at Error, debug at Debug. Trace is sent
// to Debug too but the server is never asked to trace (it would log message payloads).
type slogLogger struct{ log *slog.Logger }

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
// must not do; the server stops or fails to start on its own and the caller sees that.
func (l slogLogger) Fatalf(format string, v ...any) {
	l.log.Error(fmt.Sprintf(format, v...), "fatal", true)
}
