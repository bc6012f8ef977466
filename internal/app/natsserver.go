package app

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"

	"github.com/jetcheckout/jetcheckout/internal/natsserver"
)

// natsServerFlags reads the arguments of `nats-server`: --config FILE (or -c FILE), nothing
// else; everything else is in the file.
func natsServerFlags(args []string, stderr io.Writer) (string, error) {
	fs := flag.NewFlagSet("jetcheckout nats-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var file string
	fs.StringVar(&file, "config", "", "nats-server's configuration `file`")
	fs.StringVar(&file, "c", "", "the same as --config")
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if file == "" || fs.NArg() > 0 {
		fs.Usage()
		return "", errors.New("usage: jetcheckout nats-server --config FILE")
	}
	return file, nil
}

// serveNATS is `nats-server`: nats-server in this process from its configuration file, as
// the compose stack runs it, logging through log, and restarting JetStream in-process once a
// full disk has room again (natsserver.Recover), which the upstream binary does not: it
// answers no publish to a stream whose write failed until it is restarted. A signal shuts it
// down (a second one stops at once); an error (Recover gave up, a fatal error) makes the
// process exit non-zero for its supervisor to restart it.
func serveNATS(ctx context.Context, unhook func(), file string, log *slog.Logger) error {
	opts, err := natsserver.LoadConfig(file)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		unhook()
	}()
	if err := natsserver.Serve(ctx, opts, log.With("component", "nats-server"), recoverInterval); err != nil {
		return err
	}
	log.Info("stopped cleanly")
	return nil
}
