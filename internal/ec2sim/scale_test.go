package ec2sim

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// direct runs an EC2 action in-process (no HTTP) to build large states fast.
func direct(tb testing.TB, s *Sim, region, action string, form url.Values) string {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	form.Set("Action", action)
	c := &call{r: s.regions[region], p: params(form), w: &xw{}, now: s.Now()}
	if err := ec2Actions[action](s, c); err != nil {
		tb.Fatalf("%s: %v", action, err)
	}
	return c.w.b.String()
}

// seedImages creates n images over n/10 instances, tagged by policy.
func seedImages(tb testing.TB, s *Sim, region string, n int) []string {
	tb.Helper()
	var insts, images []string
	for i := 0; i < n/10+1; i++ {
		id, err := s.RunInstance(region, InstanceSpec{Tags: map[string]string{"amirotate:policy": fmt.Sprintf("p%d", i%5)}})
		if err != nil {
			tb.Fatal(err)
		}
		insts = append(insts, id)
	}
	for i := 0; i < n; i++ {
		inst := insts[i%len(insts)]
		out := direct(tb, s, region, "CreateImage", url.Values{"InstanceId": {inst}, "Name": {fmt.Sprintf("amirotate-p%d-%s-%05d", i%5, inst, i)},
			"TagSpecification.1.ResourceType": {"image"},
			"TagSpecification.1.Tag.1.Key":    {"amirotate:policy"}, "TagSpecification.1.Tag.1.Value": {fmt.Sprintf("p%d", i%5)},
			"TagSpecification.1.Tag.2.Key": {"amirotate:instance-id"}, "TagSpecification.1.Tag.2.Value": {inst}})
		images = append(images, out[len("<imageId>"):len(out)-len("</imageId>")])
	}
	return images
}

func TestScale_DescribeImagesOverTenThousandImages(t *testing.T) {
	e := newEnv(t, Options{ImageDelay: time.Minute})
	ids := seedImages(t, e.sim, "us-east-1", 10000)
	e.clock.Advance(time.Hour)
	ctx := context.Background()
	start := time.Now()
	pg := ec2.NewDescribeImagesPaginator(e.ec2, &ec2.DescribeImagesInput{Owners: []string{"self"}, MaxResults: aws.Int32(1000),
		Filters: []ec2types.Filter{{Name: aws.String("tag:amirotate:policy"), Values: []string{"p3"}}, {Name: aws.String("state"), Values: []string{"available"}}}})
	n := 0
	for pg.HasMorePages() {
		out, err := pg.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n += len(out.Images)
	}
	if n != 2000 {
		t.Fatalf("got %d images, want 2000", n)
	}
	out, err := e.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: ids[5000:5200]})
	if err != nil || len(out.Images) != 200 {
		t.Fatalf("by id: %d %v", len(out.Images), err)
	}
	// Generous bound (race detector, loaded CI): the point is "not quadratic".
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("describing 10k images took %v", d)
	}
}

func BenchmarkDescribeImages_FilteredOver10k(b *testing.B) {
	s := New(Options{Regions: []string{"us-east-1"}, Clock: NewManualClock(testStart), ImageDelay: -1, Seed: 3})
	seedImages(b, s, "us-east-1", 10000)
	form := url.Values{"Owner.1": {"self"}, "Filter.1.Name": {"tag:amirotate:policy"}, "Filter.1.Value.1": {"p3"}, "MaxResults": {"1000"}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		direct(b, s, "us-east-1", "DescribeImages", form)
	}
}

func BenchmarkDescribeImages_ByIDsOver10k(b *testing.B) {
	s := New(Options{Regions: []string{"us-east-1"}, Clock: NewManualClock(testStart), ImageDelay: -1, Seed: 3})
	ids := seedImages(b, s, "us-east-1", 10000)
	form := url.Values{}
	for i, id := range ids[:100] {
		form.Set(fmt.Sprintf("ImageId.%d", i+1), id)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		direct(b, s, "us-east-1", "DescribeImages", form)
	}
}
