package runner_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The runner is the steps' plumbing: only the steps (services/), the coordinator, the wiring
// (internal/app) and the steps' test harness (internal/steptest) import it. What others need
// of it is contract: names in events/, consumers in internal/topology (ARCHITECTURE.md).
func TestOnlyStepsCoordinatorAndWiringImportTheRunner(t *testing.T) {
	const runnerPath = "github.com/jetcheckout/jetcheckout/runner"
	allowed := []string{"services/", "coordinator/", "internal/app/", "internal/steptest/", "runner/"}
	root := ".."
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p != runnerPath {
				continue
			}
			ok := false
			for _, prefix := range allowed {
				ok = ok || strings.HasPrefix(rel, prefix)
			}
			if !ok {
				t.Errorf("%s imports the runner: only services/, coordinator/ and internal/app/ may (and internal/steptest, the steps' harness)", rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
