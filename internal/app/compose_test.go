package app

import (
	"os"
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
	"gopkg.in/yaml.v3"
)

// composeFile is the part of a compose file the cluster's volumes are read from.
type composeFile struct {
	Services map[string]struct {
		Volumes []string `yaml:"volumes"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

func readCompose(t *testing.T, path string) composeFile {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

// In the compose cluster, the two replicas of a rebuildable service (events.Rebuildable) have
// a volume each (the second's in deploy/compose.cluster.yml, declared there): they take turns
// on the consumer, each on its own view. The other step services' replicas share one, and
// take turns on its file's lock.
func TestClusterVolumesFollowRebuildable(t *testing.T) {
	main, cluster := readCompose(t, "../../docker-compose.yml"), readCompose(t, "../../deploy/compose.cluster.yml")
	for _, name := range events.Services {
		if name == events.ServiceCoordinator {
			continue
		}
		first := main.Services[name].Volumes
		second := main.Services[name+"-2"].Volumes
		if override, ok := cluster.Services[name+"-2"]; ok {
			second = override.Volumes
		}
		if len(first) != 1 || len(second) != 1 {
			t.Errorf("%s: volumes %v and %v, want one each", name, first, second)
			continue
		}
		switch {
		case events.Rebuildable[name] && first[0] == second[0]:
			t.Errorf("%s is rebuildable: its replicas share %s; give %s-2 a volume of its own in deploy/compose.cluster.yml", name, first[0], name)
		case events.Rebuildable[name]:
			if _, declared := cluster.Volumes[volumeName(second[0])]; !declared {
				t.Errorf("%s-2's volume %s is not declared in deploy/compose.cluster.yml", name, second[0])
			}
		case first[0] != second[0]:
			t.Errorf("%s is not rebuildable: its replicas must share its volume (they take turns on its file), not %s and %s", name, first[0], second[0])
		}
	}
}

// volumeName is the named volume of a "name:/path" mount.
func volumeName(mount string) string {
	for i := range len(mount) {
		if mount[i] == ':' {
			return mount[:i]
		}
	}
	return mount
}
