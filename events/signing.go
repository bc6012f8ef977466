package events

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/nats-io/nkeys"
)

// An event is believed only from the service the flow declares as its producer: whoever may
// publish, schedule or replay a message on a subject, the consumer checks that the event was
// signed by that service's key (an nkey, ed25519). NATS permissions keep a user to its own
// subjects, but a server-side message schedule publishes to whatever target its holder names,
// and an operator's or a leaked credential reaches every subject: the signature is what
// survives all of them.
const (
	// SignerHeader names the service that signed the event.
	SignerHeader = "Jetcheckout-Signer"
	// SignatureHeader is the ed25519 signature (base64url) of the subject, a newline, and the data.
	SignatureHeader = "Jetcheckout-Signature"
	// SchedulerHeader is set by nats-server on a message it published from a schedule: the
	// subject the schedule waited on.
	SchedulerHeader = "Nats-Scheduler"
)

// ErrForged marks an event whose origin is not its producer: unsigned, signed by another
// service or with a key nobody holds, or fired from another service's schedule. Like
// ErrMalformed, retrying it cannot help. Errors read "<subject>: malformed event: not from
// its producer: <why>", the shape of every event error.
var ErrForged = fmt.Errorf("%w: not from its producer", ErrMalformed)

// anyService signs the events every service may publish (checkout.stuck, checkout.rejected).
const anyService = "*"

// origin is who may sign an event of the checkout flow, and whether it is ever scheduled.
type origin struct {
	signer    string // a service, anyService, or "" for the public checkout.requested
	scheduled bool
}

// origins are the Checkout flow's, by subject, read once from its catalog.
var origins = sync.OnceValue(func() map[Subject]origin {
	m := map[Subject]origin{}
	for _, d := range Checkout.Catalog() {
		m[d.Subject] = origin{signer: d.signer, scheduled: strings.HasSuffix(d.Producer, " (scheduled)")}
	}
	return m
})

// SignerOf is the service whose key signs an event of the checkout flow: its producer, "*"
// for an event any service may publish, "" for the public checkout.requested, which is
// judged by what it holds. found is false for a subject the flow does not declare.
func SignerOf(subject Subject) (signer string, found bool) {
	o, found := origins()[subject]
	return o.signer, found
}

// signerOf derives the signer of a catalog entry from its producer.
func signerOf(d EventDoc) string {
	switch p := strings.TrimSuffix(d.Producer, " (scheduled)"); {
	case d.Subject == Requested:
		return ""
	case p == "any service":
		return anyService
	case slices.Contains(Services, p):
		return p
	}
	return d.signer // set where the entry is declared (an operator's request answered by a service)
}

// Keys are the services' public signing keys, and the private keys of the services this
// process runs.
type Keys struct {
	public map[string][]ed25519.PublicKey // by service: more than one while a key is rotated
	// own are decoded once: nkeys derives the key from the seed again on every Sign, which
	// doubles a signature's cost.
	own map[string]ed25519.PrivateKey
}

// NewKeys reads public keys ("service=UABC...", several of a service while its key is
// rotated) and the seeds of the services this process signs for (by service). A seed whose
// public key is not listed for its service is an error: the others would refuse its events.
func NewKeys(public []string, seeds map[string]string) (*Keys, error) {
	k := &Keys{public: map[string][]ed25519.PublicKey{}, own: map[string]ed25519.PrivateKey{}}
	for _, entry := range public {
		service, key, ok := strings.Cut(strings.TrimSpace(entry), "=")
		if !ok || !slices.Contains(Services, service) {
			return nil, fmt.Errorf("signing key %q: want <service>=<public nkey>, one of the services %v", entry, Services)
		}
		raw, err := nkeys.Decode(nkeys.PrefixByteUser, []byte(strings.TrimSpace(key)))
		if err != nil {
			return nil, fmt.Errorf("signing key of %s: %w", service, err)
		}
		k.public[service] = append(k.public[service], ed25519.PublicKey(raw))
	}
	for _, service := range slices.Sorted(maps.Keys(seeds)) {
		prefix, raw, err := nkeys.DecodeSeed([]byte(seeds[service]))
		if err != nil || prefix != nkeys.PrefixByteUser {
			return nil, fmt.Errorf("signing seed of %s: not a user nkey seed (SU...): %v", service, err) // never the seed itself
		}
		priv := ed25519.NewKeyFromSeed(raw)
		pub := priv.Public().(ed25519.PublicKey)
		if !slices.ContainsFunc(k.public[service], func(p ed25519.PublicKey) bool { return p.Equal(pub) }) {
			return nil, fmt.Errorf("the signing seed of %s is not one of its public keys (%s is not listed)", service, encodePublic(pub))
		}
		k.own[service] = priv
	}
	return k, nil
}

// encodePublic is a public key as an nkey (U...).
func encodePublic(pub ed25519.PublicKey) string {
	s, err := nkeys.Encode(nkeys.PrefixByteUser, pub)
	if err != nil {
		return fmt.Sprintf("%x", []byte(pub))
	}
	return string(s)
}

// GenerateSeed makes a new signing key and returns its seed and public key.
func GenerateSeed() (seed, public string, err error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", "", err
	}
	s, err := kp.Seed()
	if err != nil {
		return "", "", err
	}
	public, err = kp.PublicKey()
	return string(s), public, err
}

// PublicKeyOf is the public key of a seed.
func PublicKeyOf(seed string) (string, error) {
	kp, err := nkeys.FromSeed([]byte(seed))
	if err != nil {
		return "", err
	}
	return kp.PublicKey()
}

// Signs reports whether this process holds service's private key.
func (k *Keys) Signs(service string) bool { return k != nil && k.own[service] != nil }

// Sign signs an event of subject published by service: the values of SignerHeader and
// SignatureHeader.
func (k *Keys) Sign(service string, subject Subject, data []byte) (signer, signature string, err error) {
	priv := k.own[service]
	if priv == nil {
		return "", "", fmt.Errorf("no signing key for service %s in this process", service)
	}
	return service, base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, signed(subject, data))), nil
}

// SignFor signs data that is no event (a snapshot's digest, say) as service, for purpose: a
// purpose is never an event's subject, so a signature made for one never passes for the other.
func (k *Keys) SignFor(service, purpose string, data []byte) (string, error) {
	if strings.HasPrefix(purpose, "checkout.") {
		return "", fmt.Errorf("%s is an event's subject, not a purpose", purpose)
	}
	_, sig, err := k.Sign(service, Subject(purpose), data)
	return sig, err
}

// VerifyFrom checks that signature, over data for purpose, is service's (SignFor). Errors
// wrap ErrForged.
func (k *Keys) VerifyFrom(service, purpose, signature string, data []byte) error {
	if strings.HasPrefix(purpose, "checkout.") {
		return fmt.Errorf("%s: %w: an event's subject, not a purpose", purpose, ErrForged)
	}
	sig, err := base64.RawURLEncoding.DecodeString(signature)
	if err != nil || signature == "" {
		return fmt.Errorf("%s: %w: no base64url signature", purpose, ErrForged)
	}
	for _, pub := range k.public[service] {
		if ed25519.Verify(pub, signed(Subject(purpose), data), sig) {
			return nil
		}
	}
	return fmt.Errorf("%s: %w: the signature is not %s's", purpose, ErrForged, service)
}

// Header is a new message header carrying the signature of service's event of subject:
// empty when k is nil (a test of one service alone, whose events nobody verifies).
func (k *Keys) Header(service string, subject Subject, data []byte) (map[string][]string, error) {
	h := map[string][]string{}
	if k == nil {
		return h, nil
	}
	signer, sig, err := k.Sign(service, subject, data)
	if err != nil {
		return nil, err
	}
	h[SignerHeader], h[SignatureHeader] = []string{signer}, []string{sig}
	return h, nil
}

// MsgID is the Nats-Msg-Id service publishes event e with. The CHECKOUT stream drops a
// message whose Msg-Id it has seen within its duplicate window, whoever published it; an
// event's ID is derived from its checkout and type, so anyone who may publish into the stream
// could publish junk under a coming event's ID and have the real one dropped (a refund, a
// deadline). So the Msg-Id also carries the start of the producer's signature of the ID: no
// one else can make it, and it is the same however often the event is published, whatever
// its bytes (a decision made again after a crash carries a new time), so every copy is still
// dropped. The WAREHOUSE queue, where only shipping publishes, keeps the bare ID (the pick's
// idempotency key for the warehouse), as does a process without keys.
func (k *Keys) MsgID(service string, e Envelope) (string, error) {
	if k == nil || e.Type == WarehousePick {
		return e.ID, nil
	}
	priv := k.own[service]
	if priv == nil {
		return "", fmt.Errorf("no signing key for service %s in this process", service)
	}
	sig := base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, []byte("Nats-Msg-Id\n"+e.ID)))
	return e.ID + "#" + sig[:msgIDSignature], nil
}

// msgIDSignature is how much of the signature a Msg-Id carries: 132 bits.
const msgIDSignature = 22

// IsMsgIDOf reports whether msgID is one MsgID gives event id.
func IsMsgIDOf(msgID, id string) bool {
	return msgID == id || strings.HasPrefix(msgID, id+"#") && len(msgID) == len(id)+1+msgIDSignature
}

// Verify checks that the event of subject came from the service the flow declares as its
// producer. A subject nobody declared is refused too. Errors wrap ErrForged.
func (k *Keys) Verify(subject Subject, signer, signature string, data []byte) error {
	want, declared := SignerOf(subject)
	switch {
	case !declared:
		return fmt.Errorf("%s: %w: no event of the flow", subject, ErrForged)
	case want == "":
		return nil // checkout.requested: anyone's, validated by what it holds
	case signer == "" || signature == "":
		return fmt.Errorf("%s: %w: not signed (want %s's signature)", subject, ErrForged, producerName(want))
	case want != anyService && signer != want:
		return fmt.Errorf("%s: %w: signed by %q, but only %s publishes it", subject, ErrForged, signer, want)
	}
	sig, err := base64.RawURLEncoding.DecodeString(signature)
	if err != nil {
		return fmt.Errorf("%s: %w: the signature is not base64url", subject, ErrForged)
	}
	for _, pub := range k.public[signer] {
		if ed25519.Verify(pub, signed(subject, data), sig) {
			return nil
		}
	}
	if len(k.public[signer]) == 0 {
		return fmt.Errorf("%s: %w: signed by %q, which has no public key here", subject, ErrForged, signer)
	}
	return fmt.Errorf("%s: %w: the signature is not %s's", subject, ErrForged, signer)
}

// CheckScheduler refuses an event the server fired from a schedule other than its own: a
// scheduled event is fired from its producer's slot (Envelope.ScheduleSubject), and its key
// starts with the event's name. Anything else is a schedule whose holder named a target it may
// not publish (the server checks only that the target is in the stream). scheduler is the
// SchedulerHeader, "" for a message published directly.
func CheckScheduler(in Envelope, scheduler string) error {
	if scheduler == "" {
		return nil
	}
	name := strings.TrimPrefix(string(in.Type), "checkout.")
	if in.Schedule == nil || scheduler != in.ScheduleSubject() ||
		(in.Schedule.Key != name && !strings.HasPrefix(in.Schedule.Key, name+".")) {
		return fmt.Errorf("%s: %w: fired by the schedule %s, which is not its own", in.Type, ErrForged, scheduler)
	}
	if !origins()[in.Type].scheduled {
		return fmt.Errorf("%s: %w: never scheduled, but came from the schedule %s", in.Type, ErrForged, scheduler)
	}
	return nil
}

// PublicKeys lists the public keys in the form NewKeys reads, sorted.
func (k *Keys) PublicKeys() []string {
	var out []string
	for service, pubs := range k.public {
		for _, pub := range pubs {
			out = append(out, service+"="+encodePublic(pub))
		}
	}
	sort.Strings(out)
	return out
}

func producerName(signer string) string {
	if signer == anyService {
		return "a service"
	}
	return signer
}

// signed is what a signature covers: the subject binds it to the event type (a scheduled
// event is signed for its target), the data to the checkout and payload.
func signed(subject Subject, data []byte) []byte {
	b := make([]byte, 0, len(subject)+1+len(data))
	b = append(b, subject...)
	b = append(b, '\n')
	return append(b, data...)
}
