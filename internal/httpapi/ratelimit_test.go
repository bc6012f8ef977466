package httpapi

import (
	"net/http/httptest"
	"testing"
	"time"
)

// TestClientAddr: X-Forwarded-For counts only when a trusted proxy sent it, and then only
// the hops the trusted proxies appended.
func TestClientAddr(t *testing.T) {
	proxies, err := ParsePrefixes("10.0.0.0/8, 192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		peer, xff, want string
		trusted         bool
	}{
		{"203.0.113.9:5000", "198.51.100.1", "203.0.113.9", true},                   // an untrusted peer's header is ignored
		{"10.1.2.3:5000", "198.51.100.1", "10.1.2.3", false},                        // no proxies trusted: the peer
		{"10.1.2.3:5000", "198.51.100.1", "198.51.100.1", true},                     // one trusted proxy
		{"10.1.2.3:5000", "6.6.6.6, 198.51.100.1, 192.0.2.1", "198.51.100.1", true}, // the client's own entry is skipped
		{"10.1.2.3:5000", "garbage, 10.9.9.9", "10.9.9.9", true},                    // garbage: the last proxy
		{"[::ffff:10.1.2.3]:5000", "198.51.100.1", "198.51.100.1", true},            // a mapped IPv4 peer
	} {
		r := httptest.NewRequest("POST", "/checkout/process", nil)
		r.RemoteAddr = tc.peer
		r.Header.Set("X-Forwarded-For", tc.xff)
		trusted := proxies
		if !tc.trusted {
			trusted = nil
		}
		if got := clientAddr(r, trusted); got != tc.want {
			t.Errorf("peer %s, X-Forwarded-For %q: %s, want %s", tc.peer, tc.xff, got, tc.want)
		}
	}
	if _, err := ParsePrefixes("10.0.0.0/8,nope"); err == nil {
		t.Error("ParsePrefixes took nope")
	}
}

// TestLimiter: a bucket of N refills at N per Per; a refused request takes no token.
func TestLimiter(t *testing.T) {
	l := newLimiter(Rate{N: 2, Per: time.Minute}, "checkouts", "client")
	now := time.Unix(1_000_000, 0)
	if l.wait("a", now) != 0 || l.wait("a", now) != 0 {
		t.Fatal("the first two were refused")
	}
	if d := l.wait("a", now); d != 30*time.Second {
		t.Fatalf("third waits %s, want 30s", d)
	}
	if l.wait("b", now) != 0 {
		t.Fatal("another key shares the bucket")
	}
	if l.wait("a", now.Add(30*time.Second)) != 0 {
		t.Fatal("no token after 30s (the refused request took one)")
	}
	for _, s := range []string{"x", "3", "3/0s", "-1/1m"} {
		if _, err := ParseRate(s); err == nil {
			t.Errorf("ParseRate(%q) took it", s)
		}
	}
	if r, err := ParseRate("0"); err != nil || r.N != 0 {
		t.Errorf("ParseRate(0): %v %v", r, err)
	}
}

// TestLimiterCountsFailures: try takes a token only for a failed check, and once a key has
// none it runs no check at all, so a right guess then is not told apart from a wrong one.
func TestLimiterCountsFailures(t *testing.T) {
	l := newLimiter(Rate{N: 2, Per: time.Minute}, "wrong tokens", "client")
	now := time.Unix(1_000_000, 0)
	checks := 0
	check := func(ok bool) func() bool { return func() bool { checks++; return ok } }
	for range 5 {
		if ok, d := l.try("a", now, check(true)); !ok || d != 0 {
			t.Fatalf("a right answer: %v, wait %s", ok, d)
		}
	}
	for i := range 2 {
		if ok, d := l.try("a", now, check(false)); ok || d != 0 {
			t.Fatalf("wrong answer %d: %v, wait %s; want refused without a wait", i, ok, d)
		}
	}
	if ok, d := l.try("a", now, check(true)); ok || d != 30*time.Second || checks != 7 {
		t.Fatalf("a right answer after 2 failures: %v, wait %s, %d checks run; want refused, 30s, 7 (not run)", ok, d, checks)
	}
	if ok, _ := l.try("b", now, check(true)); !ok {
		t.Fatal("another key shares the bucket")
	}
	if ok, d := l.try("a", now.Add(30*time.Second), check(true)); !ok || d != 0 {
		t.Fatalf("after 30s: %v, wait %s", ok, d)
	}
}
