package ec2sim

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

var testStart = time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)

type env struct {
	sim   *Sim
	clock *ManualClock
	srv   *httptest.Server
	cfg   aws.Config
	ec2   *ec2.Client
	ssm   *ssm.Client
	asg   *autoscaling.Client
}

func init() { testingStacks = true }

// newEnv starts a simulator on a manual clock behind an httptest server.
func newEnv(t *testing.T, opts Options) *env {
	t.Helper()
	clk := NewManualClock(testStart)
	if opts.Clock == nil {
		opts.Clock = clk
	}
	if len(opts.Regions) == 0 {
		opts.Regions = []string{"us-east-1", "eu-west-1", "ap-southeast-2"}
	}
	if opts.Seed == 0 {
		opts.Seed = 42
	}
	s := New(opts)
	srv := httptest.NewServer(checkShapes(t, s))
	t.Cleanup(srv.Close)
	cfg := AWSConfig(srv.URL, opts.Regions[0])
	return &env{sim: s, clock: clk, srv: srv, cfg: cfg,
		ec2: ec2.NewFromConfig(cfg), ssm: ssm.NewFromConfig(cfg), asg: autoscaling.NewFromConfig(cfg)}
}

func inRegion(r string) func(*ec2.Options) { return func(o *ec2.Options) { o.Region = r } }

// apiCode returns the smithy error code and HTTP status of err.
func apiCode(t *testing.T, err error) (string, int) {
	t.Helper()
	if err == nil {
		t.Fatalf("expected an error, got nil")
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("not an API error: %v", err)
	}
	status := 0
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	return ae.ErrorCode(), status
}

func wantCode(t *testing.T, err error, code string, status int) {
	t.Helper()
	got, st := apiCode(t, err)
	if got != code || (status != 0 && st != status) {
		t.Fatalf("error = %s (HTTP %d), want %s (HTTP %d): %v", got, st, code, status, err)
	}
}

func (e *env) runInstance(t *testing.T, region string, tags map[string]string, extraGiB ...int32) string {
	t.Helper()
	in := &ec2.RunInstancesInput{ImageId: aws.String(BaseImageID(region)), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		InstanceType: ec2types.InstanceTypeT3Micro}
	if len(tags) > 0 {
		ts := ec2types.TagSpecification{ResourceType: ec2types.ResourceTypeInstance}
		for k, v := range tags {
			ts.Tags = append(ts.Tags, ec2types.Tag{Key: aws.String(k), Value: aws.String(v)})
		}
		in.TagSpecifications = []ec2types.TagSpecification{ts}
	}
	for i, g := range extraGiB {
		in.BlockDeviceMappings = append(in.BlockDeviceMappings, ec2types.BlockDeviceMapping{
			DeviceName: aws.String("/dev/sd" + string(rune('b'+i))), Ebs: &ec2types.EbsBlockDevice{VolumeSize: aws.Int32(g)}})
	}
	out, err := e.ec2.RunInstances(context.Background(), in, inRegion(region))
	if err != nil {
		t.Fatalf("RunInstances: %v", err)
	}
	return *out.Instances[0].InstanceId
}

func (e *env) createImage(t *testing.T, region, instanceID, name string) string {
	t.Helper()
	out, err := e.ec2.CreateImage(context.Background(), &ec2.CreateImageInput{InstanceId: aws.String(instanceID), Name: aws.String(name), NoReboot: aws.Bool(true)}, inRegion(region))
	if err != nil {
		t.Fatalf("CreateImage: %v", err)
	}
	return *out.ImageId
}

func (e *env) image(t *testing.T, region, id string) ec2types.Image {
	t.Helper()
	out, err := e.ec2.DescribeImages(context.Background(), &ec2.DescribeImagesInput{ImageIds: []string{id}}, inRegion(region))
	if err != nil {
		t.Fatalf("DescribeImages %s: %v", id, err)
	}
	if len(out.Images) != 1 {
		t.Fatalf("DescribeImages %s: %d images", id, len(out.Images))
	}
	return out.Images[0]
}
