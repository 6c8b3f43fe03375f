package steps

import (
	"log/slog"
	"time"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

// The constructors build each step over one client factory, handing it
// only the views its IAM role grants (ec2x.Permissions): the conversion of
// each SDK client to the step's interface is where the compiler checks it.

func NewDiscover(c *ec2x.Clients, env Env) *Discover {
	return &Discover{EC2: ec2x.NewRegional(c.Home(), func(r string) ec2x.DiscoverEC2 { return c.EC2(r) }), Env: env}
}

func NewScripts(c *ec2x.Clients, env Env) *Scripts {
	return &Scripts{SSM: ec2x.NewRegional(c.Home(), func(r string) ec2x.ScriptsSSM { return c.SSM(r) }), Env: env}
}

func NewSnapshot(c *ec2x.Clients, env Env) *Snapshot {
	return &Snapshot{
		EC2: ec2x.NewRegional(c.Home(), func(r string) ec2x.SnapshotEC2 { return c.EC2(r) }),
		KMS: ec2x.NewRegional(c.Home(), func(r string) ec2x.SnapshotKMS { return c.KMS(r) }),
		Env: env,
	}
}

func NewPoll(c *ec2x.Clients, env Env) *Poll {
	return &Poll{EC2: ec2x.NewRegional(c.Home(), func(r string) ec2x.PollEC2 { return c.EC2(r) }), Env: env}
}

func NewCopy(c *ec2x.Clients, env Env) *Copy {
	return &Copy{EC2: ec2x.NewRegional(c.Home(), func(r string) ec2x.CopyEC2 { return c.EC2(r) }), Env: env}
}

func NewVerify(c *ec2x.Clients, env Env) *Verify {
	return &Verify{
		EC2: ec2x.NewRegional(c.Home(), func(r string) ec2x.VerifyEC2 { return c.EC2(r) }),
		SSM: ec2x.NewRegional(c.Home(), func(r string) ec2x.VerifySSM { return c.SSM(r) }),
		Env: env,
	}
}

func NewTag(c *ec2x.Clients, env Env) *Tag {
	return &Tag{EC2: ec2x.NewRegional(c.Home(), func(r string) ec2x.TagEC2 { return c.EC2(r) }), Env: env}
}

func NewPublish(c *ec2x.Clients, env Env) *Publish {
	return &Publish{
		EC2: ec2x.NewRegional(c.Home(), func(r string) ec2x.PublishEC2 { return c.EC2(r) }),
		SSM: ec2x.NewRegional(c.Home(), func(r string) ec2x.PublishSSM { return c.SSM(r) }),
		Env: env,
	}
}

func NewRoll(c *ec2x.Clients, env Env) *Roll {
	return &Roll{AutoScaling: ec2x.NewRegional(c.Home(), func(r string) ec2x.RollAutoScaling { return c.AutoScaling(r) }), Env: env}
}

func NewRetention(c *ec2x.Clients, env Env) *Retention {
	return &Retention{
		EC2:         ec2x.NewRegional(c.Home(), func(r string) ec2x.RetentionEC2 { return c.EC2(r) }),
		AutoScaling: ec2x.NewRegional(c.Home(), func(r string) ec2x.RetentionAutoScaling { return c.AutoScaling(r) }),
		Env:         env,
	}
}

// Env is what every step is given besides its clients.
type Env struct {
	// Now is the step's clock (nil = time.Now).
	Now func() time.Time
	// Policies are the policies the deployment runs; a step refuses any
	// other (nil accepts every policy: see rotation.Pins).
	Policies rotation.Pins
	// Audit receives the audit log (see audit.go); nil: slog.Default().
	Audit *slog.Logger
}

// now is the step's time.
func (e Env) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}
