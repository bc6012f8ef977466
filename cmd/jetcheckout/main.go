// Command jetcheckout runs the checkout: everything in one process (`run`), or one
// service per process against a NATS server (`service NAME`), and the NATS server itself
// (`nats-server --config FILE`). See internal/app.
package main

import (
	"os"

	"github.com/jetcheckout/jetcheckout/internal/app"
)

func main() {
	os.Exit(app.Main(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}
