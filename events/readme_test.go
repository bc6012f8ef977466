package events

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEEventCatalog keeps the README's event table the one the code declares.
func TestREADMEEventCatalog(t *testing.T) {
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- events:begin -->\n", "<!-- events:end -->"
	_, rest, ok := strings.Cut(string(raw), begin)
	table, _, ok2 := strings.Cut(rest, end)
	if !ok || !ok2 {
		t.Fatalf("README.md lacks the %q and %q markers", begin, end)
	}
	if want := Checkout.Markdown(); table != want {
		t.Errorf("README.md's event table differs from events/: paste the output of `make events-doc` between the markers.\nwant:\n%s", want)
	}
}
