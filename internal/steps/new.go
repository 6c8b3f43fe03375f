package steps

import (
	"time"

	"github.com/amirotate/amirotate/internal/ec2x"
)

// The constructors build each step over one client factory, handing it
// only the views its IAM role grants (ec2x.Permissions): the conversion of
// each SDK client to the step's interface is where the compiler checks it.
// now is the step's clock (nil = time.Now).

func NewDiscover(c *ec2x.Clients, now func() time.Time) *Discover {
	return &Discover{EC2: ec2x.NewRegional(c.Home(), func(r string) ec2x.DiscoverEC2 { return c.EC2(r) }), Now: now}
}

func NewSnapshot(c *ec2x.Clients, now func() time.Time) *Snapshot {
	return &Snapshot{EC2: ec2x.NewRegional(c.Home(), func(r string) ec2x.SnapshotEC2 { return c.EC2(r) }), Now: now}
}

func NewPoll(c *ec2x.Clients, now func() time.Time) *Poll {
	return &Poll{EC2: ec2x.NewRegional(c.Home(), func(r string) ec2x.PollEC2 { return c.EC2(r) }), Now: now}
}

func NewCopy(c *ec2x.Clients, now func() time.Time) *Copy {
	return &Copy{EC2: ec2x.NewRegional(c.Home(), func(r string) ec2x.CopyEC2 { return c.EC2(r) }), Now: now}
}

func NewTag(c *ec2x.Clients, now func() time.Time) *Tag {
	return &Tag{EC2: ec2x.NewRegional(c.Home(), func(r string) ec2x.TagEC2 { return c.EC2(r) }), Now: now}
}

func NewPublish(c *ec2x.Clients) *Publish {
	return &Publish{
		EC2: ec2x.NewRegional(c.Home(), func(r string) ec2x.PublishEC2 { return c.EC2(r) }),
		SSM: ec2x.NewRegional(c.Home(), func(r string) ec2x.PublishSSM { return c.SSM(r) }),
	}
}

func NewRetention(c *ec2x.Clients, now func() time.Time) *Retention {
	return &Retention{
		EC2:         ec2x.NewRegional(c.Home(), func(r string) ec2x.RetentionEC2 { return c.EC2(r) }),
		AutoScaling: ec2x.NewRegional(c.Home(), func(r string) ec2x.RetentionAutoScaling { return c.AutoScaling(r) }),
		Now:         now,
	}
}
