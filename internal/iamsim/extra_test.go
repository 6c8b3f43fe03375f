package iamsim_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/iamsim"
)

// The step name the test identity calls as.
const tester = "tester"

// world is a simulator enforcing one role, "tester", whose policy allows
// the given actions on every resource.
type world struct {
	t      *testing.T
	ctx    context.Context
	sim    *ec2sim.Sim
	enf    *iamsim.Enforcer
	cfg    aws.Config // signs as the tester
	seed   aws.Config // an identity without a role: allowed everything
	region string
}

func newWorld(t *testing.T, actions ...string) *world {
	t.Helper()
	ev, err := iamsim.SharedEvaluator()
	if err != nil {
		t.Fatal(err)
	}
	doc := map[string]any{"Version": "2012-10-17", "Statement": []any{
		map[string]any{"Sid": "Granted", "Effect": "Allow", "Action": actions, "Resource": "*"},
	}}
	roles := iamsim.Roles{tester: {LogicalID: "TesterRole", Step: tester, Policies: []iamsim.Policy{{Name: "p", Document: doc}}}}
	enf, err := iamsim.NewEnforcer(ev, roles)
	if err != nil {
		t.Fatal(err)
	}
	sim := ec2sim.New(ec2sim.Options{Regions: []string{"us-east-1", "eu-west-1"}, ImageDelay: -1, Seed: 3})
	sim.SetAuthorizer(enf)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	cfg := func(key string) aws.Config {
		return aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL),
			Credentials: credentials.NewStaticCredentialsProvider(key, "local", "")}
	}
	return &world{t: t, ctx: context.Background(), sim: sim, enf: enf, cfg: cfg(ec2x.LocalAccessKey(tester)), seed: cfg("AKIDSEED"), region: "us-east-1"}
}

func (w *world) ec2() *ec2.Client { return ec2.NewFromConfig(w.cfg) }

// image makes an available image of a new instance with the seeding
// identity, and returns it with its snapshots.
func (w *world) image() (string, []string) {
	w.t.Helper()
	inst, err := w.sim.RunInstance(w.region, ec2sim.InstanceSpec{Volumes: []int{8, 20}})
	if err != nil {
		w.t.Fatal(err)
	}
	seed := ec2.NewFromConfig(w.seed)
	out, err := seed.CreateImage(w.ctx, &ec2.CreateImageInput{InstanceId: aws.String(inst), Name: aws.String("extra-" + inst), NoReboot: aws.Bool(true)})
	if err != nil {
		w.t.Fatal(err)
	}
	imgs, err := seed.DescribeImages(w.ctx, &ec2.DescribeImagesInput{ImageIds: []string{*out.ImageId}})
	if err != nil || len(imgs.Images) != 1 {
		w.t.Fatalf("describe: %v", err)
	}
	return *out.ImageId, ec2x.SnapshotIDs(imgs.Images[0])
}

func tagSpecs(types_ ...types.ResourceType) []types.TagSpecification {
	var out []types.TagSpecification
	for _, rt := range types_ {
		out = append(out, types.TagSpecification{ResourceType: rt, Tags: []types.Tag{{Key: aws.String("amirotate:created-by"), Value: aws.String("amirotate")}}})
	}
	return out
}

// extraCase exercises one row of ec2sim.Extra: call is made with the call's
// own action granted, with and without the extra actions.
type extraCase struct {
	own, extra []string
	// call makes the call; granted tells which direction is being run.
	call func(w *world, granted bool) error
}

var extraCases = map[string]extraCase{
	"PutParameter with DataType aws:ec2:image": {
		own: []string{"ssm:PutParameter", "ssm:GetParameter"}, extra: []string{"ec2:DescribeImages"},
		call: func(w *world, granted bool) error {
			img, _ := w.image()
			cl := ssm.NewFromConfig(w.cfg)
			if _, err := cl.PutParameter(w.ctx, &ssm.PutParameterInput{Name: aws.String("/amirotate/x/latest"), Value: aws.String(img),
				Type: ssmtypes.ParameterTypeString, DataType: aws.String("aws:ec2:image")}); err != nil {
				return err // the call itself succeeds either way
			}
			_, err := cl.GetParameter(w.ctx, &ssm.GetParameterInput{Name: aws.String("/amirotate/x/latest")})
			var nf *ssmtypes.ParameterNotFound
			if !granted && !errors.As(err, &nf) {
				w.t.Errorf("without ec2:DescribeImages the parameter was written (%v)", err)
			}
			if granted && len(w.enf.Denials()) > 0 {
				w.t.Errorf("denied: %+v", w.enf.Denials())
			}
			return err
		},
	},
	"CreateImage with TagSpecifications": {
		own: []string{"ec2:CreateImage"}, extra: []string{"ec2:CreateTags"},
		call: func(w *world, _ bool) error {
			inst, err := w.sim.RunInstance(w.region, ec2sim.InstanceSpec{})
			if err != nil {
				w.t.Fatal(err)
			}
			_, err = w.ec2().CreateImage(w.ctx, &ec2.CreateImageInput{InstanceId: aws.String(inst), Name: aws.String("tagged-" + inst),
				NoReboot: aws.Bool(true), TagSpecifications: tagSpecs(types.ResourceTypeImage, types.ResourceTypeSnapshot)})
			return err
		},
	},
	"CopyImage with TagSpecifications": {
		own: []string{"ec2:CopyImage"}, extra: []string{"ec2:CreateTags"},
		call: func(w *world, _ bool) error {
			img, _ := w.image()
			_, err := w.ec2().CopyImage(w.ctx, &ec2.CopyImageInput{SourceImageId: aws.String(img), SourceRegion: aws.String(w.region),
				Name: aws.String("copy-" + img), TagSpecifications: tagSpecs(types.ResourceTypeImage, types.ResourceTypeSnapshot)},
				func(o *ec2.Options) { o.Region = "eu-west-1" })
			return err
		},
	},
	"DeregisterImage with DeleteAssociatedSnapshots": {
		own: []string{"ec2:DeregisterImage"}, extra: []string{"ec2:DeleteSnapshot"},
		call: func(w *world, _ bool) error {
			img, snaps := w.image()
			if len(snaps) != 2 {
				w.t.Fatalf("snapshots %v", snaps)
			}
			_, err := w.ec2().DeregisterImage(w.ctx, &ec2.DeregisterImageInput{ImageId: aws.String(img), DeleteAssociatedSnapshots: aws.Bool(true)})
			return err
		},
	},
	"DescribeImageReferences reads each resource type": {
		own: []string{"ec2:DescribeImageReferences"},
		extra: []string{"ec2:DescribeInstances", "ec2:DescribeLaunchTemplates", "ssm:DescribeParameters", "ssm:GetParameters",
			"imagebuilder:ListImageRecipes", "imagebuilder:ListContainerRecipes", "imagebuilder:GetContainerRecipe"},
		call: func(w *world, _ bool) error {
			img, _ := w.image()
			_, err := w.ec2().DescribeImageReferences(w.ctx, &ec2.DescribeImageReferencesInput{ImageIds: []string{img}, IncludeAllResourceTypes: aws.Bool(true)})
			return err
		},
	},
	"RunInstances with TagSpecifications": {
		own: []string{"ec2:RunInstances"}, extra: []string{"ec2:CreateTags"},
		call: func(w *world, _ bool) error {
			_, err := w.ec2().RunInstances(w.ctx, &ec2.RunInstancesInput{ImageId: aws.String(ec2sim.BaseImageID(w.region)), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
				TagSpecifications: tagSpecs(types.ResourceTypeInstance, types.ResourceTypeVolume)})
			return err
		},
	},
	"RunInstances with IamInstanceProfile": {
		own: []string{"ec2:RunInstances"}, extra: []string{"iam:PassRole"},
		call: func(w *world, _ bool) error {
			_, err := w.ec2().RunInstances(w.ctx, &ec2.RunInstancesInput{ImageId: aws.String(ec2sim.BaseImageID(w.region)), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
				IamInstanceProfile: &types.IamInstanceProfileSpecification{Name: aws.String("verify")}})
			return err
		},
	},
	"CopyImage with Encrypted and KmsKeyId": {
		own: []string{"ec2:CopyImage"},
		extra: []string{"kms:DescribeKey", "kms:CreateGrant", "kms:GenerateDataKeyWithoutPlaintext", "kms:Decrypt",
			"kms:ReEncryptFrom", "kms:ReEncryptTo"},
		call: func(w *world, _ bool) error {
			img, _ := w.image()
			_, err := w.ec2().CopyImage(w.ctx, &ec2.CopyImageInput{SourceImageId: aws.String(img), SourceRegion: aws.String(w.region),
				Name: aws.String("encrypted-" + img), Encrypted: aws.Bool(true),
				KmsKeyId: aws.String("arn:aws:kms:eu-west-1:" + ec2sim.AccountID + ":key/1234abcd-12ab-34cd-56ef-1234567890ab")},
				func(o *ec2.Options) { o.Region = "eu-west-1" })
			return err
		},
	},
}

// TestExtraAuthorizations_GrantedAllowsRemovedDenies: for every documented
// extra authorization, the call works with it granted, and without it is
// denied as the service denies (or, for aws:ec2:image parameters, succeeds
// and leaves the parameter unchanged).
func TestExtraAuthorizations_GrantedAllowsRemovedDenies(t *testing.T) {
	for _, row := range ec2sim.Extra {
		c, ok := extraCases[row.When]
		if !ok {
			t.Errorf("no test for the extra authorization %q", row.When)
			continue
		}
		t.Run(row.When+"/granted", func(t *testing.T) {
			w := newWorld(t, append(c.own, c.extra...)...)
			if err := c.call(w, true); err != nil {
				t.Fatalf("with %v granted: %v", c.extra, err)
			}
			if err := w.enf.DenialsError(); err != nil {
				t.Fatal(err)
			}
		})
		t.Run(row.When+"/removed", func(t *testing.T) {
			w := newWorld(t, c.own...)
			err := c.call(w, false)
			ds := w.enf.Denials()
			if len(ds) == 0 || ds[0].Request.Because != row.When {
				t.Fatalf("without %v: denials %+v (call: %v)", c.extra, ds, err)
			}
			if ds[0].Request.Deferred {
				return // the parameter case checked its own outcome
			}
			checkDenied(t, err, ds[0].Request.Action)
		})
	}
}

// checkDenied: the error is the service's denial, as AWS sends it.
func checkDenied(t *testing.T, err error, action string) {
	t.Helper()
	var ae smithy.APIError
	var re *smithyhttp.ResponseError
	if !errors.As(err, &ae) || !errors.As(err, &re) {
		t.Fatalf("want an API error, got %v", err)
	}
	want := []struct {
		code   string
		status int
	}{{"UnauthorizedOperation", 403}, {"AccessDeniedException", 400}, {"AccessDenied", 403}}
	var got struct {
		code   string
		status int
	}
	got.code, got.status = ae.ErrorCode(), re.HTTPStatusCode()
	ok := false
	for _, w := range want {
		ok = ok || (w.code == got.code && w.status == got.status)
	}
	if !ok {
		t.Fatalf("denial answered %s %d: %v", got.code, got.status, err)
	}
	if !strings.Contains(ae.ErrorMessage(), "is not authorized to perform: "+action) {
		t.Errorf("message %q does not name %s", ae.ErrorMessage(), action)
	}
	if got.code == "UnauthorizedOperation" {
		_, enc, found := strings.Cut(ae.ErrorMessage(), "Encoded authorization failure message: ")
		raw, derr := base64.StdEncoding.DecodeString(enc)
		var decoded struct {
			Allowed bool `json:"allowed"`
			Context struct {
				Action string `json:"action"`
			} `json:"context"`
		}
		if !found || derr != nil || json.Unmarshal(raw, &decoded) != nil || decoded.Allowed || decoded.Context.Action != action {
			t.Errorf("encoded message %q does not decode to the denied %s", enc, action)
		}
	}
}

// TestDenials_AnswerAsEachServiceDoes: EC2 403 UnauthorizedOperation with an
// encoded message, SSM 400 AccessDeniedException, Auto Scaling 403
// AccessDenied.
func TestDenials_AnswerAsEachServiceDoes(t *testing.T) {
	w := newWorld(t, "ec2:DescribeImages")
	_, err := w.ec2().DescribeInstances(w.ctx, &ec2.DescribeInstancesInput{})
	checkDenied(t, err, "ec2:DescribeInstances")
	_, err = ssm.NewFromConfig(w.cfg).GetParameters(w.ctx, &ssm.GetParametersInput{Names: []string{"/a"}})
	checkDenied(t, err, "ssm:GetParameters")
	_, err = autoscaling.NewFromConfig(w.cfg).DescribeAutoScalingGroups(w.ctx, &autoscaling.DescribeAutoScalingGroupsInput{})
	checkDenied(t, err, "autoscaling:DescribeAutoScalingGroups")
	if _, err := w.ec2().DescribeImages(w.ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}}); err != nil {
		t.Errorf("granted DescribeImages: %v", err)
	}
}

// TestStrict_DeniesCallersWithoutARole: plain clients are allowed unless
// the enforcement is strict.
func TestStrict_DeniesCallersWithoutARole(t *testing.T) {
	w := newWorld(t, "ec2:DescribeImages")
	seed := ec2.NewFromConfig(w.seed)
	if _, err := seed.DescribeInstances(w.ctx, &ec2.DescribeInstancesInput{}); err != nil {
		t.Fatalf("not strict: %v", err)
	}
	w.enf.Strict = true
	_, err := seed.DescribeInstances(w.ctx, &ec2.DescribeInstancesInput{})
	checkDenied(t, err, "ec2:DescribeInstances")
}

// TestTemplate_ResolvesIntrinsicFunctions reads a policy written with the
// functions CDK emits.
func TestTemplate_ResolvesIntrinsicFunctions(t *testing.T) {
	tmpl := `{"Resources":{
	 "R":{"Type":"AWS::IAM::Role","Properties":{"Tags":[{"Key":"amirotate:step","Value":"x"}],
	  "Policies":[{"PolicyName":"inline","PolicyDocument":{"Statement":[{"Effect":"Allow","Action":"ssm:GetParameters",
	   "Resource":{"Fn::Sub":"arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/${Name}/*"}}]}}]}},
	 "P":{"Type":"AWS::IAM::Policy","Properties":{"Roles":[{"Ref":"R"}],"PolicyDocument":{"Statement":[{"Effect":"Allow","Action":"ec2:DeleteSnapshot",
	  "Resource":{"Fn::Join":["",["arn:",{"Ref":"AWS::Partition"},":ec2:",{"Fn::Select":[1,{"Fn::Split":[",","a,eu-west-1"]}]},"::snapshot/*"]]}}]}}},
	 "Other":{"Type":"AWS::IAM::Role","Properties":{}}}}`
	roles, err := iamsim.ParseTemplate([]byte(tmpl), "123456789012", "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(roles) != 1 || len(roles["x"].Policies) != 2 {
		t.Fatalf("roles %+v", roles)
	}
	b, _ := json.Marshal(roles["x"].Policies)
	for _, want := range []string{"arn:aws:ssm:us-east-1:123456789012:parameter/stack-resource:Name/*", "arn:aws:ec2:eu-west-1::snapshot/*"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
}

// extraTable renders ec2sim.Extra as the README shows it.
func extraTable() string {
	var b strings.Builder
	for _, e := range ec2sim.Extra {
		b.WriteString("| `" + e.Call + "` | " + e.When + " | " + e.Requires + " | " + e.Source + " |\n")
	}
	return b.String()
}

// TestREADME_ShowsTheExtraAuthorizations keeps the README's table equal to
// ec2sim.Extra.
func TestREADME_ShowsTheExtraAuthorizations(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), extraTable()) {
		t.Errorf("README.md lacks the current table of extra authorizations:\n%s", extraTable())
	}
}
