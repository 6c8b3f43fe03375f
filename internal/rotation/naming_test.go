package rotation

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestRotationID(t *testing.T) {
	tests := []struct {
		in   time.Time
		want string
	}{
		{time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC), "20261125T0300Z"},
		{time.Date(2026, 11, 25, 3, 0, 59, 999, time.UTC), "20261125T0300Z"},
		{time.Date(2026, 11, 25, 4, 30, 0, 0, time.FixedZone("CET", 3600)), "20261125T0330Z"},
		{time.Date(2026, 1, 1, 0, 5, 0, 0, time.FixedZone("X", -8*3600)), "20260101T0805Z"},
	}
	for _, tt := range tests {
		if got := RotationID(tt.in); got != tt.want {
			t.Errorf("RotationID(%v) = %q, want %q", tt.in, got, tt.want)
		}
		back, err := ParseRotationID(tt.want)
		if err != nil || !back.Equal(tt.in.Truncate(time.Minute)) {
			t.Errorf("ParseRotationID(%q) = %v, %v; want %v", tt.want, back, err, tt.in.Truncate(time.Minute))
		}
	}
}

func TestParseRotationID_Rejects(t *testing.T) {
	for _, id := range []string{"", "20261125", "20261125T03:00Z", "20261125T0300", "20261325T0300Z", "20261125t0300z", "20261125T0300Z ", "2026-11-25T03:00:00Z",
		"20260230T0300Z", "20261125T2400Z", "20261125T0360Z", "20261100T0300Z", "2026112xT0300Z", "-0261125T0300Z", "20261125T-100Z"} {
		if _, err := ParseRotationID(id); err == nil {
			t.Errorf("ParseRotationID(%q) accepted", id)
		}
	}
}

// TestParseRotationID_AgreesWithTimeParse: the hand parser accepts exactly
// what the layout describes.
func TestParseRotationID_AgreesWithTimeParse(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		b := []byte(RotationID(time.Unix(rng.Int64N(1<<35), 0)))
		if rng.IntN(2) == 0 {
			b[rng.IntN(len(b))] = "0123456789TZx-"[rng.IntN(14)]
		}
		id := string(b)
		ref, err := time.Parse(rotationIDLayout, id)
		refOK := err == nil && ref.Format(rotationIDLayout) == id
		got, ok := parseRotationID(id)
		if ok != refOK || (ok && !got.Equal(ref)) {
			t.Fatalf("%q: got %v %v, time.Parse says %v %v", id, got, ok, ref, refOK)
		}
	}
}

func TestNewRotation(t *testing.T) {
	start := time.Date(2026, 11, 25, 3, 0, 12, 0, time.UTC)
	r := NewRotation(start.Add(-12*time.Second+45*time.Second), TriggerManual, start)
	if r.ID != "20261125T0300Z" || !r.Time.Equal(time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)) || r.Trigger != TriggerManual || !r.StartedAt.Equal(start) {
		t.Errorf("NewRotation = %+v", r)
	}
}

var ec2NameRE = regexp.MustCompile(`^[A-Za-z0-9().\-/_]{3,128}$`)

func TestImageName(t *testing.T) {
	tests := []struct {
		name                    string
		policy, instance, rotID string
		want                    string
	}{
		{"typical", "nightly", "i-0123456789abcdef0", "20261125T0300Z", "amirotate-nightly-i-0123456789abcdef0-20261125T0300Z"},
		{"old short id", "web", "i-12345678", "20261125T0300Z", "amirotate-web-i-12345678-20261125T0300Z"},
		{"longest valid policy", strings.Repeat("a", 32), "i-0123456789abcdef0", "20261125T0300Z",
			"amirotate-" + strings.Repeat("a", 32) + "-i-0123456789abcdef0-20261125T0300Z"},
		{"bad characters replaced", "a b:c", "i-1", "r*1", "amirotate-a-b-c-i-1-r-1"},
		{"unicode replaced byte-wise", "é", "i-1", "r", "amirotate----i-1-r"},
		{"empty parts", "", "", "", "amirotate---"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ImageName(tt.policy, tt.instance, tt.rotID)
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if !ec2NameRE.MatchString(got) || !ValidImageName(got) {
				t.Errorf("%q breaks EC2's name rules", got)
			}
		})
	}
}

func TestImageName_TooLongStaysValidAndDistinct(t *testing.T) {
	long := strings.Repeat("x", 200)
	a := ImageName(long, "i-1", "20261125T0300Z")
	b := ImageName(long, "i-1", "20261126T0300Z")
	if len(a) != MaxImageNameLength || !ValidImageName(a) {
		t.Errorf("%q (%d) is not a valid name", a, len(a))
	}
	if a == b {
		t.Error("two rotations of an over-long name collide; a rerun would adopt the wrong image")
	}
}

// TestImageName_AlwaysValid is a property test: whatever the input, the name
// is valid for EC2 and deterministic.
func TestImageName_AlwaysValid(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune("abcXYZ019-_./()[] @'*:é\x00\n日")
	randStr := func() string {
		r := make([]rune, rng.IntN(80))
		for i := range r {
			r[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(r)
	}
	for range 5000 {
		p, i, r := randStr(), randStr(), randStr()
		got := ImageName(p, i, r)
		if !ValidImageName(got) || !ec2NameRE.MatchString(got) {
			t.Fatalf("ImageName(%q, %q, %q) = %q is not a valid AMI name", p, i, r, got)
		}
		if again := ImageName(p, i, r); again != got {
			t.Fatalf("not deterministic: %q then %q", got, again)
		}
	}
}

func FuzzImageName(f *testing.F) {
	f.Add("nightly", "i-0123456789abcdef0", "20261125T0300Z")
	f.Add("", "", "")
	f.Add(strings.Repeat("é", 100), "i-\x00", "日本")
	f.Fuzz(func(t *testing.T, policy, instance, rotID string) {
		if got := ImageName(policy, instance, rotID); !ValidImageName(got) {
			t.Fatalf("ImageName(%q, %q, %q) = %q is not a valid AMI name", policy, instance, rotID, got)
		}
		if d := Description(policy, instance, rotID); len(d) > MaxDescriptionLength {
			t.Fatalf("description has %d bytes", len(d))
		}
	})
}

func TestDescription(t *testing.T) {
	if got, want := Description("nightly", "i-1", "20261125T0300Z"), "amirotate policy nightly: image of i-1, rotation 20261125T0300Z"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	got := CopyDescription("nightly", "i-1", "20261125T0300Z", "ami-1", "us-east-1")
	if !strings.Contains(got, "copy of ami-1 from us-east-1") {
		t.Errorf("copy description %q does not name its source", got)
	}
	if long := Description(strings.Repeat("p", 300), "i-1\n", "r"); len(long) != MaxDescriptionLength || strings.Contains(long, "\n") {
		t.Errorf("description not cut to %d printable bytes: %q", MaxDescriptionLength, long)
	}
}

func TestCopyClientToken(t *testing.T) {
	a := CopyClientToken("20261125T0300Z", "ami-0123456789abcdef0", "eu-west-1")
	if a != CopyClientToken("20261125T0300Z", "ami-0123456789abcdef0", "eu-west-1") {
		t.Error("token is not deterministic; a retried copy would make a second image")
	}
	if len(a) > 64 || !regexp.MustCompile(`^[\x21-\x7e]+$`).MatchString(a) {
		t.Errorf("token %q is not at most 64 printable ASCII characters", a)
	}
	distinct := map[string]bool{a: true}
	for _, other := range []string{
		CopyClientToken("20261126T0300Z", "ami-0123456789abcdef0", "eu-west-1"),
		CopyClientToken("20261125T0300Z", "ami-0123456789abcdef1", "eu-west-1"),
		CopyClientToken("20261125T0300Z", "ami-0123456789abcdef0", "eu-west-2"),
		// The separator keeps shifted boundaries apart.
		CopyClientToken("20261125T0300Zami-0", "123456789abcdef0", "eu-west-1"),
	} {
		if distinct[other] {
			t.Errorf("token %q collides", other)
		}
		distinct[other] = true
	}
	if long := CopyClientToken(strings.Repeat("r", 500), strings.Repeat("a", 500), "x"); len(long) > 64 {
		t.Errorf("token of long input has %d characters", len(long))
	}
}
