package httpapi

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"golang.org/x/time/rate"
)

// Rate is N requests per Per, in bursts of up to N (a token bucket); N 0 is no limit.
type Rate struct {
	N   int
	Per time.Duration
}

// ParseRate reads "N/duration" ("30/1m"); "0" (or "") is no limit.
func ParseRate(s string) (Rate, error) {
	if s == "" || s == "0" {
		return Rate{}, nil
	}
	n, per, ok := strings.Cut(s, "/")
	count, err := strconv.Atoi(n)
	d, derr := time.ParseDuration(per)
	if !ok || err != nil || count < 0 || derr != nil || d <= 0 {
		return Rate{}, fmt.Errorf("%q: want N/duration like 30/1m, or 0 for no limit", s)
	}
	return Rate{N: count, Per: d}, nil
}

func (r Rate) String() string { return fmt.Sprintf("%d per %s", r.N, r.Per) }

// limiter is a token bucket per key (a client's address, a customer's email).
type limiter struct {
	rate  Rate
	what  string // "client", "email": said in the answer
	of    string // "checkouts", "wrong tokens": what it counts, said in the answer
	mu    sync.Mutex
	keys  map[string]*bucket
	swept time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter(r Rate, of, what string) *limiter {
	return &limiter{rate: r, of: of, what: what, keys: map[string]*bucket{}}
}

// wait is zero when key may go on now (and takes its token), or how long until it may.
func (l *limiter) wait(key string, now time.Time) time.Duration {
	if l == nil || l.rate.N == 0 {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return take(l.bucket(key, now), now)
}

// try runs check for key unless key has no token left, and takes a token only when check
// fails: it counts failures. It answers check's result, or how long until key may try
// again (check not run). The check runs under the lock, so requests racing from one key
// cannot all be checked on the last token.
func (l *limiter) try(key string, now time.Time, check func() bool) (bool, time.Duration) {
	if l == nil || l.rate.N == 0 {
		return check(), 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(key, now)
	if b.TokensAt(now) < 1 {
		return false, take(b, now)
	}
	if check() {
		return true, 0
	}
	take(b, now)
	return false, 0
}

// bucket is key's bucket, full when new; l.mu is held.
func (l *limiter) bucket(key string, now time.Time) *rate.Limiter {
	if now.Sub(l.swept) > l.rate.Per {
		// A bucket idle for Per is full again: forgetting it changes nothing.
		for k, b := range l.keys {
			if now.Sub(b.seen) > l.rate.Per {
				delete(l.keys, k)
			}
		}
		l.swept = now
	}
	b := l.keys[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(rate.Every(l.rate.Per/time.Duration(l.rate.N)), l.rate.N)}
		l.keys[key] = b
	}
	b.seen = now
	return b.lim
}

// take takes a token from b: zero, or how long until it has one (then it takes none).
func take(b *rate.Limiter, now time.Time) time.Duration {
	res := b.ReserveN(now, 1)
	d := res.DelayFrom(now)
	if d > 0 {
		res.CancelAt(now) // refused: it takes no token
	}
	return d
}

// refuse answers a request over a limit: 429 with Retry-After and the reason.
func (l *limiter) refuse(w http.ResponseWriter, d time.Duration) error {
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(d.Seconds()))))
	return problem(http.StatusTooManyRequests, "too many %s for this %s (at most %s); retry after %s", l.of, l.what, l.rate, d.Round(time.Second))
}

// clientKey is who a request counts as for a per-client limit: its address, or for IPv6
// its /64 (one host usually has a whole /64 to pick addresses from).
func (s *Server) clientKey(r *http.Request) string {
	key := clientAddr(r, s.cfg.TrustedProxies)
	if a, err := netip.ParseAddr(key); err == nil && a.Is6() && !a.Is4In6() {
		p, _ := a.Prefix(64)
		key = p.String()
	}
	return key
}

// limitClient refuses a checkout from a client over its rate.
func (s *Server) limitClient(w http.ResponseWriter, r *http.Request) error {
	if d := s.perClient.wait(s.clientKey(r), time.Now()); d > 0 {
		return s.perClient.refuse(w, d)
	}
	return nil
}

// limitEmail refuses a checkout for a customer email over its rate: each checkout may
// email its customer, so this bounds the mail one mailbox gets from the shop (its +tags
// are the same mailbox).
func (s *Server) limitEmail(w http.ResponseWriter, email string) error {
	if d := s.perEmail.wait(events.Mailbox(email), time.Now()); d > 0 {
		return s.perEmail.refuse(w, d)
	}
	return nil
}

// clientAddr is the address a request came from: the connection's peer, or, when that peer
// is a trusted proxy, the nearest address in X-Forwarded-For that is not one (the entries
// before it are whatever the client wrote).
func clientAddr(r *http.Request, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil || !isTrusted(addr, trusted) {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // garbage: the last proxy is all we know
		}
		addr = hop.Unmap()
		if !isTrusted(addr, trusted) {
			break
		}
	}
	return addr.String()
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

// ParsePrefixes reads a comma-separated list of addresses and CIDR prefixes.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return nil, fmt.Errorf("%q: want an address or a CIDR prefix", f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
