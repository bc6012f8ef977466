package stripeemu

import (
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// params reads a request's form in Stripe's bracket syntax: metadata[k]=v for hashes,
// list[]=a or list[0]=a for lists, hash[field]=v for sub-objects.
type params url.Values

// splitKey splits "a[b][0]" into "a" and ["b", "0"].
func splitKey(key string) (base string, parts []string) {
	base, rest, _ := strings.Cut(key, "[")
	if rest == "" {
		return base, nil
	}
	for _, p := range strings.Split(strings.TrimSuffix(rest, "]"), "][") {
		parts = append(parts, p)
	}
	return base, parts
}

// matches reports whether key fits pattern, where "[]" stands for a list index (empty or a
// number) and "[*]" for any hash key.
func matches(pattern, key string) bool {
	pb, pp := splitKey(pattern)
	kb, kp := splitKey(key)
	if pb != kb || len(pp) != len(kp) {
		return false
	}
	for i, p := range pp {
		k := kp[i]
		switch p {
		case "*":
			if k == "" {
				return false
			}
		case "":
			if _, err := strconv.Atoi(k); k != "" && err != nil {
				return false
			}
		default:
			if p != k {
				return false
			}
		}
	}
	return true
}

// checkKnown refuses the first parameter (in key order, so the answer is stable) that
// matches none of the allowed patterns, like "amount", "metadata[*]", "expand[]".
func (p params) checkKnown(allowed ...string) error {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !slices.ContainsFunc(allowed, func(a string) bool { return matches(a, k) }) {
			return unknownParam(k)
		}
	}
	return nil
}

// str is a scalar parameter; empty counts as absent, as in Stripe.
func (p params) str(key string) string { return url.Values(p).Get(key) }

// list collects base[]=x values in order, then base[N]=x values by index.
func (p params) list(base string) []string {
	out := append([]string(nil), p[base+"[]"]...)
	type indexed struct {
		i int
		v string
	}
	var byIndex []indexed
	for k, vs := range p {
		b, parts := splitKey(k)
		if b != base || len(parts) != 1 || parts[0] == "" {
			continue
		}
		if i, err := strconv.Atoi(parts[0]); err == nil && len(vs) > 0 {
			byIndex = append(byIndex, indexed{i, vs[0]})
		}
	}
	sort.Slice(byIndex, func(a, b int) bool { return byIndex[a].i < byIndex[b].i })
	for _, x := range byIndex {
		out = append(out, x.v)
	}
	return out
}

// hash collects base[k]=v into a map (nil when there is none).
func (p params) hash(base string) map[string]string {
	var out map[string]string
	for k, vs := range p {
		b, parts := splitKey(k)
		if b != base || len(parts) != 1 || parts[0] == "" || len(vs) == 0 {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[parts[0]] = vs[0]
	}
	return out
}

// has reports whether any key of the parameter (scalar or hash) was given.
func (p params) has(base string) bool {
	for k := range p {
		if b, _ := splitKey(k); b == base {
			return true
		}
	}
	return false
}

// integer parses an integer parameter; ok is false when it is absent.
func (p params) integer(key string) (n int64, ok bool, err error) {
	s := p.str(key)
	if s == "" {
		return 0, false, nil
	}
	n, perr := strconv.ParseInt(s, 10, 64)
	if perr != nil {
		return 0, true, invalid("parameter_invalid_integer", key, "Invalid integer: %s", s)
	}
	return n, true, nil
}

// boolean parses a boolean parameter; absent is false.
func (p params) boolean(key string) (bool, error) {
	switch s := p.str(key); s {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	default:
		return false, invalid("parameter_invalid_boolean", key, "Invalid boolean: %s", s)
	}
}

// oneOf checks an enum parameter.
func (p params) oneOf(key string, allowed ...string) (string, error) {
	s := p.str(key)
	if s == "" || slices.Contains(allowed, s) {
		return s, nil
	}
	return "", invalid("parameter_invalid_string", key, "Invalid %s: must be one of %s", key, strings.Join(allowed, ", "))
}

// metadata validates Stripe's metadata limits: 50 keys, keys up to 40 characters,
// values up to 500.
func (p params) metadata() (map[string]string, error) {
	md := p.hash("metadata")
	if len(md) > 50 {
		return nil, invalid("parameter_invalid_string", "metadata", "Invalid metadata: metadata can have up to 50 keys, but you passed %d keys.", len(md))
	}
	for k, v := range md {
		if len(k) > 40 {
			return nil, invalid("parameter_invalid_string", "metadata", "Invalid metadata: metadata keys can be up to 40 characters long, but you passed in a key that was %d characters long.", len(k))
		}
		if len(v) > 500 {
			return nil, invalid("parameter_invalid_string", "metadata", "Invalid metadata: metadata values can be up to 500 characters long, but you passed in a value that was %d characters long.", len(v))
		}
		if v == "" {
			delete(md, k) // an empty value unsets the key
		}
	}
	if md == nil {
		md = map[string]string{}
	}
	return md, nil
}

// expand validates the expand[] list against what the object can expand.
func (p params) expand(allowed ...string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, x := range p.list("expand") {
		if !slices.Contains(allowed, x) {
			return nil, invalid("", "expand", "This property cannot be expanded (%s).", x)
		}
		out[x] = true
	}
	return out, nil
}
