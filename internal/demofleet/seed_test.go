package demofleet

import (
	"slices"
	"testing"

	"github.com/amirotate/amirotate/internal/rotation"
)

func regionsOf(p rotation.Policy) []string {
	var rs []string
	for _, c := range p.CopyTo {
		rs = append(rs, c.Region)
	}
	return rs
}

func TestPolicies_DropCopiesToTheHomeRegion(t *testing.T) {
	tests := []struct {
		home   string
		web    []string
		db     []string
		reboot bool
	}{
		{home: "us-east-1", web: []string{"eu-west-1", "ap-southeast-2"}, db: []string{"eu-west-1"}},
		{home: "eu-west-1", web: []string{"ap-southeast-2"}, db: nil},
	}
	for _, tt := range tests {
		t.Run(tt.home, func(t *testing.T) {
			ps, err := Policies(tt.home)
			if err != nil {
				t.Fatal(err)
			}
			if len(ps) != 2 || ps[0].Name != "web" || ps[1].Name != "db" {
				t.Fatalf("want policies web and db, got %+v", ps)
			}
			if got := regionsOf(ps[0]); !slices.Equal(got, tt.web) {
				t.Errorf("web copies to %v, want %v", got, tt.web)
			}
			if got := regionsOf(ps[1]); !slices.Equal(got, tt.db) {
				t.Errorf("db copies to %v, want %v", got, tt.db)
			}
		})
	}
}

func TestPolicies_AsDocumented(t *testing.T) {
	ps, err := Policies("us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	web, db := ps[0], ps[1]
	if web.Retention.Keep != 1 || web.NoReboot || !web.Publish.LaunchTemplates || web.Selector.Tags["amirotate:policy"] != "web" {
		t.Errorf("web: got %+v", web)
	}
	if db.Retention.Keep != 3 || !db.NoReboot || db.Selector.Tags["amirotate:policy"] != "db" {
		t.Errorf("db: got %+v", db)
	}
	for _, s := range fleetSpec {
		if s.policy != "web" && s.policy != "db" {
			t.Errorf("instance %s is in policy %q, which no demo policy selects", s.name, s.policy)
		}
	}
}

func TestPolicyJSON_UnknownName(t *testing.T) {
	if _, err := PolicyJSON("nope"); err == nil {
		t.Fatal("want an error for an unknown policy")
	}
}
