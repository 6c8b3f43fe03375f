package ec2sim

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// FuzzRequest throws arbitrary bodies at every protocol the simulator
// speaks. Errors are fine; a panic (caught and answered as InternalError
// "internal error: ...") is not.
func FuzzRequest(f *testing.F) {
	// A fresh simulator per input keeps runs independent and fast; seed 1
	// gives every one the same instance id, which the seeds reference.
	fresh := func() *Sim {
		sim := New(Options{Regions: []string{"us-east-1", "eu-west-1"}, Clock: NewManualClock(testStart), Seed: 1, ImageDelay: -1})
		if _, err := sim.RunInstance("us-east-1", InstanceSpec{Volumes: []int{8, 30}}); err != nil {
			f.Fatal(err)
		}
		return sim
	}
	inst := fresh().regions["us-east-1"].instanceList[0].id
	img := BaseImageID("us-east-1")
	for _, a := range Actions() {
		f.Add(uint8(0), "Action="+a+"&Version=2016-11-15")
		f.Add(uint8(0), "Action="+a+"&ImageId="+img+"&InstanceId="+inst+"&Name=fuzz-img&ImageId.1="+img+"&Filter.1.Name=tag:x&Filter.1.Value.1=*?\\")
		f.Add(uint8(0), "Action="+a+"&MaxResults=-1&NextToken=%00&Filter.99999999999999999999.Name=x&TagSpecification.1.ResourceType=image&TagSpecification.1.Tag.1.Key=k")
		f.Add(uint8(0), "Action="+a+"&LaunchTemplateName=abc&LaunchTemplateData.BlockDeviceMapping.1.Ebs.VolumeSize=9&LaunchTemplateData.1=x&SetDefaultVersion=0&SourceVersion=$Latest")
	}
	f.Add(uint8(0), "Action=CopyImage&SourceRegion=us-east-1&SourceImageId="+img+"&Name=copy-fuzz&ClientToken=t&Encrypted=maybe")
	f.Add(uint8(0), "Action=DescribeImageReferences&ImageId.1="+img+"&ResourceType.1.ResourceType=ec2:Instance&ResourceType.1.ResourceTypeOption.1.OptionName=state-name&ResourceType.1.ResourceTypeOption.1.OptionValue.1=bogus")
	f.Add(uint8(0), "%zz&&==&Action")
	f.Add(uint8(0), "Action=CreateLaunchTemplate&LaunchTemplateName=abc&LaunchTemplateData.1=x&LaunchTemplateData.A..B=y")
	f.Add(uint8(0), "Action=CreateTags&ResourceId.1="+img+"&Tag.1.Key=%ff%fe&Tag.1.Value=%00%01")
	f.Add(uint8(1), `{"Name":"/a/b","Value":"ami-12345678","DataType":"aws:ec2:image"}`)
	f.Add(uint8(1), `{"Names":[]}`)
	f.Add(uint8(1), `[1,2`)
	f.Add(uint8(10), `{"Path":"/a","NextToken":"`+encodeToken("ssm", math.MaxUint64)+`"}`) // GetParametersByPath
	f.Add(uint8(2), "Action=CreateAutoScalingGroup&AutoScalingGroupName=g&MinSize=1&MaxSize=0&LaunchTemplate.LaunchTemplateName=x")
	f.Add(uint8(2), "Action=DescribeAutoScalingGroups&Filters.member.1.Name=tag:a&Filters.member.1.Values.member.1=b")
	ssmActions := []string{"PutParameter", "GetParameter", "GetParameters", "GetParametersByPath", "DeleteParameter", "DeleteParameters",
		"SendCommand", "GetCommandInvocation", "ListCommandInvocations", "ListCommands", "CancelCommand", "DescribeInstanceInformation"}
	f.Fuzz(func(t *testing.T, kind uint8, body string) {
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		switch kind % 3 {
		case 0:
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20261125/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0")
		case 1:
			req.Header.Set("Content-Type", "application/x-amz-json-1.1")
			req.Header.Set("X-Amz-Target", "AmazonSSM."+ssmActions[int(kind/3)%len(ssmActions)])
		case 2:
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20261125/us-east-1/autoscaling/aws4_request, SignedHeaders=host, Signature=0")
		}
		sim := fresh()
		watchdog := time.AfterFunc(30*time.Second, func() { panic(fmt.Sprintf("request took over 30s: kind %d body %q", kind, body)) })
		defer watchdog.Stop()
		for i := 0; i < 2; i++ { // twice: the second call sees what the first created
			rec := httptest.NewRecorder()
			sim.ServeHTTP(rec, req.Clone(req.Context()))
			if strings.Contains(rec.Body.String(), "internal error:") {
				t.Fatalf("panic on %q: %s", body, rec.Body.String())
			}
			if kind%3 != 1 {
				// Whatever the input, the answer must be well-formed XML.
				dec := xml.NewDecoder(strings.NewReader(rec.Body.String()))
				for {
					_, err := dec.Token()
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatalf("malformed XML for %q: %v\n%s", body, err, rec.Body.String())
					}
				}
			} else if !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("malformed JSON for %q: %s", body, rec.Body.String())
			}
			sim.Advance(time.Minute)
			req.Body = io.NopCloser(strings.NewReader(body))
		}
	})
}
