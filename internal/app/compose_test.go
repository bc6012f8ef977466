package app

import (
	"os"
	"slices"
	"strings"
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

// Prometheus in the compose stack scrapes every jetcheckout container but nats-server's:
// deploy/prometheus/targets/stack.yml names the single-node stack's, replicas.yml the
// cluster's second replicas (profile cluster), and nothing else.
func TestPrometheusTargetsFollowCompose(t *testing.T) {
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Image    string   `yaml:"image"`
			Command  []string `yaml:"command"`
			Profiles []string `yaml:"profiles"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{} // file: targets
	for name, svc := range compose.Services {
		if !strings.Contains(svc.Image, "JETCHECKOUT_IMAGE") || (len(svc.Command) > 0 && svc.Command[0] == "nats-server") {
			continue
		}
		file := "stack.yml"
		if slices.Contains(svc.Profiles, "cluster") {
			file = "replicas.yml"
		}
		want[file] = append(want[file], name+":8081")
	}
	for _, file := range []string{"stack.yml", "replicas.yml"} {
		raw, err := os.ReadFile("../../deploy/prometheus/targets/" + file)
		if err != nil {
			t.Fatal(err)
		}
		var groups []struct {
			Targets []string `yaml:"targets"`
		}
		if err := yaml.Unmarshal(raw, &groups); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		var got []string
		for _, g := range groups {
			got = append(got, g.Targets...)
		}
		slices.Sort(got)
		slices.Sort(want[file])
		if len(want[file]) == 0 || !slices.Equal(got, want[file]) {
			t.Errorf("deploy/prometheus/targets/%s: %v; docker-compose.yml's containers: %v", file, got, want[file])
		}
	}
}

// TestEveryComposeServiceIsOnTheStacksNetwork: a service left off the checkout network
// (a merge that dropped its block's tail did so to Prometheus once) cannot reach the others
// by name.
func TestEveryComposeServiceIsOnTheStacksNetwork(t *testing.T) {
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Networks []string `yaml:"networks"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatal(err)
	}
	for name, svc := range compose.Services {
		if !slices.Contains(svc.Networks, "checkout") {
			t.Errorf("compose service %s is not on the checkout network: %v", name, svc.Networks)
		}
	}
}
