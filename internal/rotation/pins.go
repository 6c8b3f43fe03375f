package rotation

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Whoever may start the state machine (or invoke a function) writes the
// whole execution input, policy included: selector, keep, shareWith,
// allowPublic. So a deployment pins the policies it was deployed with by
// digest, and every step refuses a policy that is not one of them.

// PolicyDigest identifies a policy by content: the SHA-256 of its JSON with
// its defaults filled in, so two spellings of the same policy agree. dryRun
// is left out: a dry run of a deployed policy changes nothing and may be
// started by hand.
func PolicyDigest(p Policy) string {
	p = p.WithDefaults()
	p.DryRun = false
	raw, err := json.Marshal(p)
	if err != nil {
		// A Policy is plain data; Marshal cannot fail on it.
		return ""
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

// Pins are the digests of the policies a deployment runs. A nil Pins
// accepts every policy (a library caller, or a local run from a file,
// which pins that file's policy itself).
type Pins map[string]bool

// PinsEnv is the environment variable the deployment sets on every function:
// the comma-separated digests of its policies.
const PinsEnv = "AMIROTATE_POLICY_DIGESTS"

// PinPolicies returns the pins of policies.
func PinPolicies(policies ...Policy) Pins {
	pins := Pins{}
	for _, p := range policies {
		pins[PolicyDigest(p)] = true
	}
	return pins
}

// ParsePins reads PinsEnv's value. An empty value is an error: a function
// that accepted any policy because its configuration was lost would fail
// open.
func ParsePins(s string) (Pins, error) {
	pins := Pins{}
	for d := range strings.SplitSeq(s, ",") {
		d = strings.TrimSpace(d)
		if d == "" {
			continue
		}
		if b, err := hex.DecodeString(d); err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("%s: %q is not a SHA-256 digest", PinsEnv, d)
		}
		pins[d] = true
	}
	if len(pins) == 0 {
		return nil, fmt.Errorf("%s is empty: the deployment pins the policies its functions run", PinsEnv)
	}
	return pins, nil
}

// String is PinsEnv's value for pins.
func (ps Pins) String() string {
	return strings.Join(slices.Sorted(maps.Keys(ps)), ",")
}

// Check refuses a policy that is not pinned.
func (ps Pins) Check(p Policy) error {
	if ps == nil || ps[PolicyDigest(p)] {
		return nil
	}
	return Invalid("policy", "policy %q is not one this deployment runs (its digest %s is not pinned); "+
		"start executions with the policy exactly as deployed, or deploy the changed policy", p.Name, PolicyDigest(p)[:12])
}

// Rotation times a step accepts, relative to its clock.
const (
	// MaxRotationSkew allows for clocks that disagree a little.
	MaxRotationSkew = 5 * time.Minute
	// MaxRotationAge bounds a redrive or a backdated manual run.
	MaxRotationAge = 7 * 24 * time.Hour
)

// CheckRotationTime refuses a rotation time in the future (beyond the skew)
// or absurdly old: retention ages images from it, so a time years ahead
// would age every image past maxAgeDays.
func CheckRotationTime(t, now time.Time) error {
	switch {
	case t.After(now.Add(MaxRotationSkew)):
		return Invalid("rotation.time", "%s is in the future (now %s); a rotation is never later than a few minutes from now",
			t.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case t.Before(now.Add(-MaxRotationAge)):
		return Invalid("rotation.time", "%s is more than %d days ago; start a new rotation instead",
			t.UTC().Format(time.RFC3339), int(MaxRotationAge/(24*time.Hour)))
	}
	return nil
}
