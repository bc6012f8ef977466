// Command jetcheckout runs the checkout: everything in one process (`run`), or one
// service per process against a NATS server (`service NAME`). See internal/app.
//
// Installed as wget (the local nats image of deploy/Dockerfile), it is `jetcheckout
// healthcheck`, which takes the `wget -q --spider URL` the official image's healthcheck runs.
package main

import (
	"os"
	"path/filepath"

	"github.com/jetcheckout/jetcheckout/internal/app"
)

func main() {
	if filepath.Base(os.Args[0]) == "wget" {
		os.Exit(app.Healthcheck(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
	}
	os.Exit(app.Main(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}
