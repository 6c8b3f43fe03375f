package ec2sim

import (
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
)

func TestKMS_VolumesAndSnapshotsCarryTheirKeys(t *testing.T) {
	e := newEnv(t, Options{ImageDelay: -1})
	ctx := t.Context()
	cmk := e.sim.CreateKMSKey("us-east-1", "alias/images")
	managed, err := e.sim.RunInstance("us-east-1", InstanceSpec{Encrypted: true})
	if err != nil {
		t.Fatal(err)
	}
	custom, err := e.sim.RunInstance("us-east-1", InstanceSpec{Encrypted: true, KMSKeyID: "alias/images"})
	if err != nil {
		t.Fatal(err)
	}
	kc := kms.NewFromConfig(e.cfg)
	keyOf := func(instance string) string {
		t.Helper()
		out, err := e.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []ec2types.Filter{{Name: aws.String("attachment.instance-id"), Values: []string{instance}}}})
		if err != nil || len(out.Volumes) != 1 || !aws.ToBool(out.Volumes[0].Encrypted) {
			t.Fatalf("volumes of %s: %+v %v", instance, out, err)
		}
		return aws.ToString(out.Volumes[0].KmsKeyId)
	}
	manager := func(ref string) kmstypes.KeyManagerType {
		t.Helper()
		out, err := kc.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(ref)})
		if err != nil {
			t.Fatal(err)
		}
		return out.KeyMetadata.KeyManager
	}
	if k := keyOf(managed); !strings.Contains(k, ":key/") || manager(k) != kmstypes.KeyManagerTypeAws || manager("alias/aws/ebs") != kmstypes.KeyManagerTypeAws {
		t.Errorf("default encryption used key %s", k)
	}
	if k := keyOf(custom); k != cmk || manager(k) != kmstypes.KeyManagerTypeCustomer {
		t.Errorf("the customer managed key's volume has key %s, want %s", k, cmk)
	}
	img := e.createImage(t, "us-east-1", custom, "encrypted-img")
	sn := e.image(t, "us-east-1", img).BlockDeviceMappings[0].Ebs
	if !aws.ToBool(sn.Encrypted) || aws.ToString(sn.KmsKeyId) != cmk {
		t.Errorf("the image's snapshot: %+v", sn)
	}
	// A volume launched from the encrypted image, resized in the request,
	// stays encrypted with the snapshot's key.
	run, err := e.ec2.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String(img), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		BlockDeviceMappings: []ec2types.BlockDeviceMapping{{DeviceName: e.image(t, "us-east-1", img).BlockDeviceMappings[0].DeviceName,
			Ebs: &ec2types.EbsBlockDevice{VolumeSize: aws.Int32(30)}}}})
	if err != nil {
		t.Fatal(err)
	}
	if k := keyOf(aws.ToString(run.Instances[0].InstanceId)); k != cmk {
		t.Errorf("a resized volume of the encrypted image has key %q, want %s", k, cmk)
	}
	_, err = kc.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/nope")})
	var nf *kmstypes.NotFoundException
	if err == nil || !errors.As(err, &nf) {
		t.Errorf("an unknown key: %v", err)
	}
}
