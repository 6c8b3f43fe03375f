package ec2sim

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

func TestOnTagChange_ReportsInstanceTagChangesOnly(t *testing.T) {
	e := newEnv(t, Options{})
	var mu sync.Mutex
	var got []TagChange
	e.sim.OnTagChange(func(c TagChange) { mu.Lock(); got = append(got, c); mu.Unlock() })
	id := e.runInstance(t, "us-east-1", map[string]string{"Name": "web-1"})
	img := e.createImage(t, "us-east-1", id, "img")
	ctx := context.Background()
	tag := func(res string, k, v string) {
		t.Helper()
		if _, err := e.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{res}, Tags: []ec2types.Tag{{Key: aws.String(k), Value: aws.String(v)}}}); err != nil {
			t.Fatal(err)
		}
	}
	tag(id, "amirotate:rebuild", "1")
	tag(id, "amirotate:rebuild", "1")  // same value: no change
	tag(img, "amirotate:rebuild", "1") // an image: not an instance's change
	if _, err := e.ec2.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{id}, Tags: []ec2types.Tag{{Key: aws.String("Name")}}}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("got %d changes %+v, want 2 (the rebuild tag added, Name deleted)", len(got), got)
	}
	if c := got[0]; c.InstanceID != id || c.Region != "us-east-1" || !slices.Equal(c.Changed, []string{"amirotate:rebuild"}) || c.Tags["Name"] != "web-1" || c.Time.IsZero() {
		t.Errorf("first change %+v", c)
	}
	if c := got[1]; !slices.Equal(c.Changed, []string{"Name"}) || c.Tags["Name"] != "" || c.Tags["amirotate:rebuild"] != "1" {
		t.Errorf("second change %+v", c)
	}
}

func TestShiftedClock_RunsAndAdvances(t *testing.T) {
	c := NewShiftedClock()
	before := c.Now()
	c.Advance(26 * time.Hour)
	c.Advance(-time.Hour)
	if d := c.Now().Sub(before); d < 26*time.Hour || d > 26*time.Hour+time.Minute {
		t.Fatalf("advanced by %s, want 26h", d)
	}
	target := c.Now().Add(time.Hour)
	c.Set(target)
	c.Set(target.Add(-48 * time.Hour)) // never backwards
	if n := c.Now(); n.Before(target) || n.After(target.Add(time.Minute)) {
		t.Fatalf("Now %s after Set(%s)", n, target)
	}
	time.Sleep(20 * time.Millisecond)
	if !c.Now().After(target) {
		t.Fatal("the shifted clock does not run")
	}
}
