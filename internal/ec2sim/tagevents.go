package ec2sim

import (
	"maps"
	"slices"
	"strings"
	"time"
)

// TagChange is a change of an instance's tags by CreateTags or DeleteTags:
// what EventBridge's "Tag Change on Resource" event reports
// (https://docs.aws.amazon.com/tag-editor/latest/userguide/tagging-eventbridge.html).
type TagChange struct {
	Region     string
	InstanceID string
	// Changed are the keys added, changed or removed, sorted; a CreateTags
	// that writes a value the tag already has changes nothing.
	Changed []string
	// Tags are the instance's tags after the change.
	Tags map[string]string
	Time time.Time
}

// OnTagChange makes the simulator call f for every change of an instance's
// tags (nil: none). f runs under the simulator's lock, in the order of the
// changes: it must return quickly and must not call the simulator.
func (s *Sim) OnTagChange(f func(TagChange)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onTagChange = f
}

// noteTagChange reports an instance's tag change to the listener.
func (s *Sim) noteTagChange(c *call, id string, before, after map[string]string) {
	if s.onTagChange == nil || !strings.HasPrefix(id, "i-") {
		return
	}
	var changed []string
	for k, v := range after {
		if old, ok := before[k]; !ok || old != v {
			changed = append(changed, k)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			changed = append(changed, k)
		}
	}
	if len(changed) == 0 {
		return
	}
	slices.Sort(changed)
	s.onTagChange(TagChange{Region: c.r.name, InstanceID: id, Changed: changed, Tags: maps.Clone(after), Time: c.now})
}
