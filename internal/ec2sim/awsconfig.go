package ec2sim

import (
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// AWSConfig returns an aws.Config that sends EC2, SSM and Auto Scaling
// calls to the simulator at url (e.g. an httptest.Server's URL) with static
// credentials, in region. The SDK's standard retryer is left in place; per
// call, o.Region selects another simulated region.
func AWSConfig(url, region string) aws.Config {
	return aws.Config{
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDSIMULATOR", "simulator-secret", ""),
		BaseEndpoint: aws.String(url),
	}
}

// EnvVars are the environment variables that point the AWS CLI, boto3 and
// config.LoadDefaultConfig at the simulator at url.
func EnvVars(url, region string) []string {
	return []string{
		"AWS_ENDPOINT_URL_EC2=" + url,
		"AWS_ENDPOINT_URL_SSM=" + url,
		"AWS_ENDPOINT_URL_AUTO_SCALING=" + url,
		"AWS_ACCESS_KEY_ID=AKIDSIMULATOR",
		"AWS_SECRET_ACCESS_KEY=simulator-secret",
		"AWS_REGION=" + region,
		"AWS_DEFAULT_REGION=" + region,
	}
}
