package app

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
)

// TestServiceDocsNameWhatTheyConsume: each step service's doc.go lists, under "Consumes:",
// exactly the subjects its durable consumer is made with (the event catalog's consumers),
// so a reader of the package learns what reaches it from its own doc.
func TestServiceDocsNameWhatTheyConsume(t *testing.T) {
	for _, service := range events.Services {
		if service == events.ServiceCoordinator {
			continue // every step's outcome: its doc says so in words
		}
		raw, err := os.ReadFile(filepath.Join("..", "..", "services", service, "doc.go"))
		if err != nil {
			t.Fatal(err)
		}
		got := consumesSection(string(raw))
		want := events.Checkout.ConsumedBy(service)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("services/%s/doc.go says it consumes %v; its consumer takes %v", service, got, want)
		}
	}
}

// nextSection is a doc line that starts a section after Consumes ("Emits:", "State", ...).
var nextSection = regexp.MustCompile(`^ [A-Z]`)

// subjectAtStart is the subject an entry of a Consumes list starts with.
var subjectAtStart = regexp.MustCompile(`^\s*(?:-\s*)?([a-z]+(?:\.[a-z_]+)+)`)

// consumesSection reads the subjects of a doc comment's "Consumes:" section: a bulleted list
// ("  - subject: what it does"), or one paragraph of "subject (payload)" entries separated by
// commas or semicolons, up to the next section ("Emits:", "Serves", "State", ...).
func consumesSection(doc string) []string {
	var lines []string
	in := false
	for _, line := range strings.Split(doc, "\n") {
		text, ok := strings.CutPrefix(line, "//")
		if !ok {
			break
		}
		switch {
		case strings.HasPrefix(strings.TrimSpace(text), "Consumes:"):
			in, text = true, strings.TrimPrefix(strings.TrimSpace(text), "Consumes:")
		case in && (strings.TrimSpace(text) == "" || nextSection.MatchString(text)):
			in = false
		}
		if in {
			lines = append(lines, text)
		}
	}
	var subjects []string
	body := strings.Join(lines, "\n")
	if strings.Contains(body, "\n  - ") || strings.HasPrefix(strings.TrimSpace(body), "- ") {
		for _, l := range lines {
			if strings.HasPrefix(strings.TrimSpace(l), "- ") {
				if m := subjectAtStart.FindStringSubmatch(l); m != nil {
					subjects = append(subjects, m[1])
				}
			}
		}
		return subjects
	}
	for _, entry := range regexp.MustCompile(`[;,] `).Split(strings.Join(strings.Fields(body), " "), -1) {
		if m := subjectAtStart.FindStringSubmatch(entry); m != nil {
			subjects = append(subjects, m[1])
		}
	}
	return subjects
}
