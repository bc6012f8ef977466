package app

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/jetcheckout/jetcheckout/events"
)

// Every service signs the events it publishes and every consumer checks that an event was
// signed by its producer (events.Keys). The keys come from the environment:
//
//	SIGNING_PUBLIC_KEYS    every service's public key: "catalog=UABC...,inventory=UDEF...,..."
//	                       (a service listed twice while its key is rotated)
//	SIGNING_SEED_<SERVICE> the private key (nkey seed) of a service this process runs
//
// `make secrets` writes them for compose (deploy/secrets/signing.env and each service's env
// file). With neither set, a process that runs every service keeps its own in
// DATA_DIR/signing.env, made at its first start: `jetcheckout run` needs no setting.
const SigningPublicVar = "SIGNING_PUBLIC_KEYS"

// SigningSeedVar is the variable holding service's private signing key.
func SigningSeedVar(service string) string { return "SIGNING_SEED_" + strings.ToUpper(service) }

// signingKeysFile is where a process running every service keeps their keys.
const signingKeysFile = "signing.env"

// signingKeys are the keys of a process running the named services (none: the HTTP API,
// which only verifies).
func (c Config) signingKeys(names []string) (*events.Keys, error) {
	if len(c.SigningPublic) == 0 {
		if c.NATSURL != "" && !runsEvery(names) {
			return nil, fmt.Errorf("%s is not set: services in several processes need every service's public signing key, and each its own %s (`make secrets` writes them to deploy/secrets)",
				SigningPublicVar, SigningSeedVar("<service>"))
		}
		seeds, err := keptSeeds(filepath.Join(c.DataDir, signingKeysFile), events.Services)
		if err != nil {
			return nil, fmt.Errorf("signing keys in DATA_DIR: %w", err)
		}
		public, err := publicKeys(seeds)
		if err != nil {
			return nil, err
		}
		return events.NewKeys(public, seeds)
	}
	seeds := map[string]string{}
	for _, name := range names {
		if c.SigningSeeds[name] == "" {
			return nil, fmt.Errorf("%s is set but %s is not: service %s cannot sign its events", SigningPublicVar, SigningSeedVar(name), name)
		}
		seeds[name] = c.SigningSeeds[name]
	}
	return events.NewKeys(c.SigningPublic, seeds)
}

func runsEvery(names []string) bool {
	for _, s := range events.Services {
		if !slices.Contains(names, s) {
			return false
		}
	}
	return true
}

// signingFromEnv reads SIGNING_PUBLIC_KEYS and every SIGNING_SEED_<SERVICE>.
func signingFromEnv(getenv func(string) string) (public []string, seeds map[string]string) {
	for _, entry := range strings.FieldsFunc(getenv(SigningPublicVar), func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }) {
		public = append(public, entry)
	}
	seeds = map[string]string{}
	for _, s := range events.Services {
		if v := getenv(SigningSeedVar(s)); v != "" {
			seeds[s] = v
		}
	}
	return public, seeds
}

// keptSeeds returns the seeds of services from an env file, adding a new one for each
// service it does not hold yet: a key, once made, is kept, so the events signed with it stay
// believed.
func keptSeeds(path string, services []string) (map[string]string, error) {
	seeds := map[string]string{}
	for _, s := range services {
		seed, err := keptEnv(path, SigningSeedVar(s), func() (string, error) {
			seed, _, err := events.GenerateSeed()
			return seed, err
		})
		if err != nil {
			return nil, err
		}
		seeds[s] = seed
	}
	return seeds, nil
}

// publicKeys lists the public keys of seeds in the form SIGNING_PUBLIC_KEYS takes.
func publicKeys(seeds map[string]string) ([]string, error) {
	var out []string
	for _, s := range events.Services {
		if seed, ok := seeds[s]; ok {
			pub, err := events.PublicKeyOf(seed)
			if err != nil {
				return nil, fmt.Errorf("signing seed of %s: %w", s, err)
			}
			out = append(out, s+"="+pub)
		}
	}
	return out, nil
}

// keptEnv returns key's value from the KEY=VALUE file at path, first appending a new one
// made by gen when the file (or the key) is missing. The file is private (0600).
func keptEnv(path, key string, gen func() (string, error)) (string, error) {
	v, err := readEnvFile(path, key)
	if err == nil {
		return v, nil
	}
	var missing *missingKeyError
	if !errors.Is(err, fs.ErrNotExist) && !errors.As(err, &missing) {
		return "", err
	}
	if v, err = gen(); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := fmt.Fprintf(f, "%s=%s\n", key, v); err != nil {
		f.Close()
		return "", err
	}
	return v, f.Close()
}

// SigningEnv is a new set of signing keys as environment variables, every service's seed
// included: for tests and chaos runs that start services as processes.
func SigningEnv() ([]string, error) {
	seeds := map[string]string{}
	for _, s := range events.Services {
		seed, _, err := events.GenerateSeed()
		if err != nil {
			return nil, err
		}
		seeds[s] = seed
	}
	public, err := publicKeys(seeds)
	if err != nil {
		return nil, err
	}
	env := []string{SigningPublicVar + "=" + strings.Join(public, ",")}
	for _, s := range events.Services {
		env = append(env, SigningSeedVar(s)+"="+seeds[s])
	}
	return env, nil
}
