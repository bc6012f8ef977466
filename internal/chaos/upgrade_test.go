package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/nats-io/nats.go"
)

// The pacer cuts 10 checkouts into 5 shares over 4 upgrade steps: a share starts only once
// the step before it is done, a step only once its share has started, and a failed upgrade
// stops the load.
func TestPacerSpreadsTheLoadOverTheSteps(t *testing.T) {
	ctx := context.Background()
	p := newPacer(10, 4)
	for i := range 2 { // share 0
		if err := p.pace(ctx, i); err != nil {
			t.Fatalf("checkout %d of share 0: %v", i, err)
		}
	}
	if err := p.shareStarted(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if blocked(func(ctx context.Context) error { return p.shareStarted(ctx, 1) }) == nil {
		t.Fatal("step 1 went ahead before its share started")
	}
	third := make(chan error, 1)
	go func() { third <- p.pace(ctx, 2) }()
	select {
	case err := <-third:
		t.Fatalf("checkout 2 (share 1) started before step 0 was done: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	p.stepDone()
	if err := <-third; err != nil {
		t.Fatal(err)
	}
	if err := p.pace(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if err := p.shareStarted(ctx, 1); err != nil {
		t.Fatal(err)
	}
	failed := errors.New("nats-2 not ready")
	p.fail(failed)
	if err := p.pace(ctx, 4); !errors.Is(err, failed) {
		t.Fatalf("after the upgrade failed, the load was let on: %v", err)
	}
}

// The last share waits for the last step; once every step is done, every checkout goes.
func TestPacerLetsTheLastShareRunAfterTheUpgrade(t *testing.T) {
	p := newPacer(7, 3) // shares of 2, 2, 2 and 1
	p.stepDone()
	p.stepDone()
	if blocked(func(ctx context.Context) error { return p.pace(ctx, 6) }) == nil {
		t.Fatal("the last share started before the last step was done")
	}
	p.stepDone()
	for i := range 7 {
		if err := blocked(func(ctx context.Context) error { return p.pace(ctx, i) }); err != nil {
			t.Fatalf("checkout %d held after every step was done: %v", i, err)
		}
	}
}

// blocked runs f with a short deadline: nil when it returned in time, else its error.
func blocked(f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	return f(ctx)
}

func TestHoldVersion(t *testing.T) {
	for in, want := range map[string]int{"": 0, "1": 1} {
		if got, err := holdVersion(in); err != nil || got != want {
			t.Errorf("holdVersion(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"0", "99", "one", "-1"} {
		if _, err := holdVersion(bad); err == nil {
			t.Errorf("holdVersion(%q): no error", bad)
		}
	}
}

// The events stored before the hold was lifted must be at most the hold's version; one newer
// is a violation, the same version after the lift is not, and a storefront's request (no
// schema_version) is no event of the contract.
func TestVersionsFindAnEventWrittenPastTheHold(t *testing.T) {
	env := natstest.Start(t)
	event := func(id string, v int) []byte {
		return fmt.Appendf(nil, `{"id":%q,"type":"checkout.cart.validated","checkout_id":%q,"schema_version":%d,"payload":{}}`, id, id, v)
	}
	env.PublishRaw(t, string(events.Requested), []byte(`{"checkout_id":"c1"}`), "")
	env.PublishRaw(t, string(events.CartValidated), event("c1", 1), "")
	env.PublishRaw(t, string(events.CartValidated), event("c2", events.SchemaVersion), "")
	time.Sleep(20 * time.Millisecond)
	r := &rolling{hold: 1, lifted: time.Now()}
	time.Sleep(20 * time.Millisecond)
	env.PublishRaw(t, string(events.CartValidated), event("c3", 1), "")
	env.PublishRaw(t, string(events.CartValidated), event("c4", events.SchemaVersion), "")

	counts, broken, err := r.versions(context.Background(), env.JS)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("while held at 1: v1=1 v%[1]d=1; after the hold was lifted: v1=1 v%[1]d=1", events.SchemaVersion); !strings.Contains(counts, want) {
		t.Errorf("counts %q, want %q", counts, want)
	}
	if len(broken) != 1 || !strings.Contains(broken[0], "1 events written at a version newer than the hold (1)") ||
		!strings.Contains(broken[0], string(events.CartValidated)+" #3") {
		t.Errorf("violations %q, want the one event at version %d while held, stream sequence 3", broken, events.SchemaVersion)
	}
}

// A hold lifted under which nothing was written at the current version: round 2 did not take.
func TestVersionsFindAHoldNeverLifted(t *testing.T) {
	if events.SchemaVersion == events.OldestSchemaVersion {
		t.Skip("one schema version: nothing to hold")
	}
	env := natstest.Start(t)
	r := &rolling{hold: events.OldestSchemaVersion, lifted: time.Now()}
	time.Sleep(20 * time.Millisecond)
	env.PublishRaw(t, string(events.CartValidated), fmt.Appendf(nil,
		`{"id":"c1","type":"checkout.cart.validated","checkout_id":"c1","schema_version":%d,"payload":{}}`, events.OldestSchemaVersion), "")
	_, broken, err := r.versions(context.Background(), env.JS)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("no event was written at version %d after it", events.SchemaVersion); len(broken) != 1 || !strings.Contains(broken[0], want) {
		t.Errorf("violations %q, want %q", broken, want)
	}
}

// Dead letters are listed by the service that gave them up and the reason, with how many.
func TestDeadLettersGroupedByServiceAndReason(t *testing.T) {
	env := natstest.Start(t)
	for i, dl := range []struct{ service, reason string }{
		{"inventory", "checkout.cart.validated: malformed event: schema_version 2, want 1"},
		{"fraud", "checkout.cart.validated: malformed event: schema_version 2, want 1"},
		{"inventory", "checkout.cart.validated: malformed event: schema_version 2, want 1"},
	} {
		m := nats.NewMsg(events.DeadLetterSubject(dl.service))
		m.Data = []byte(`{}`)
		m.Header.Set(events.HeaderDeadReason, dl.reason)
		m.Header.Set(events.HeaderDeadSequence, strconv.Itoa(10+i))
		if _, err := env.JS.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	got, err := deadLetters(context.Background(), env.JS)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"1× fraud gave up checkout.cart.validated: malformed event: schema_version 2, want 1 (stream #11)",
		"2× inventory gave up checkout.cart.validated: malformed event: schema_version 2, want 1 (stream #10 #12)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("dead letters\n%q\nwant\n%q", got, want)
	}
}

// A release's NATS configuration is copied out of git as the commit has it.
func TestReleaseFilesCopiesADirectoryOfACommit(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if exec.Command("git", "-C", root, "rev-parse", "HEAD").Run() != nil {
		t.Skip("not a git checkout")
	}
	dir := t.TempDir()
	if err := releaseFiles(context.Background(), root, "HEAD", natsConfigDir, dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"auth.conf", "nats.conf", "cluster.conf"} {
		want, err := exec.Command("git", "-C", root, "show", "HEAD:"+natsConfigDir+"/"+name).Output()
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes (%v), want the commit's %d", name, len(got), err, len(want))
		}
	}
	if err := releaseFiles(context.Background(), root, "HEAD", "no/such/dir", t.TempDir()); err == nil {
		t.Error("a directory the commit lacks: no error")
	}
}
