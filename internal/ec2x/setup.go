package ec2x

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/ssocreds"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go"
)

// Codes of the problems a person has to fix on their side before any call
// can succeed. No retry helps with them, so they are FatalErrors whose
// message is one sentence that says what to fix.
const (
	CodeEndpointRefused = "EndpointRefused"
	CodeUnknownHost     = "UnknownHost"
	CodeNoCredentials   = "NoCredentials"
	CodeExpiredToken    = "ExpiredToken"
	CodeNoRegion        = "NoRegion"
)

// expiredCodes are the API codes of expired credentials: EC2 says
// RequestExpired, STS ExpiredToken, the JSON services ExpiredTokenException.
var expiredCodes = map[string]bool{
	"RequestExpired":        true,
	"ExpiredToken":          true,
	"ExpiredTokenException": true,
}

// credentialsError marks a failure to obtain credentials. The SDK reports
// one only as text ("get identity: get credentials: ..."), so the providers
// NewClients hands out wrap theirs in this type.
type credentialsError struct{ err error }

func (e credentialsError) Error() string { return e.err.Error() }
func (e credentialsError) Unwrap() error { return e.err }

// markedCredentials wraps a provider so that its failures are recognisable.
type markedCredentials struct{ aws.CredentialsProvider }

func (m markedCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c, err := m.CredentialsProvider.Retrieve(ctx)
	if err != nil {
		return c, credentialsError{err}
	}
	return c, nil
}

// IsCredentialsProvider lets the SDK see through the wrapper (it treats
// anonymous credentials apart, for one).
func (m markedCredentials) IsCredentialsProvider(target aws.CredentialsProvider) bool {
	return aws.IsCredentialsProvider(m.CredentialsProvider, target)
}

// markCredentials returns cfg with its credentials provider wrapped.
func markCredentials(cfg aws.Config) aws.Config {
	if cfg.Credentials != nil {
		if _, done := cfg.Credentials.(markedCredentials); !done {
			cfg.Credentials = markedCredentials{cfg.Credentials}
		}
	}
	return cfg
}

// Explain returns the code and a plain sentence for an error a person must
// fix in their configuration (an endpoint that refuses connections or whose
// host does not exist, no credentials, expired credentials, no region), and
// "", "" for any other error.
func Explain(err error) (code, sentence string) {
	if err == nil {
		return "", ""
	}
	service := "AWS"
	var ope *smithy.OperationError
	if errors.As(err, &ope) {
		service = ope.ServiceID
	}
	endpoint := "its endpoint"
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			endpoint = u.Scheme + "://" + u.Host
		}
	}
	variable := "AWS_ENDPOINT_URL_" + strings.ToUpper(strings.ReplaceAll(service, " ", "_"))
	var dns *net.DNSError
	var ce credentialsError
	var sso *ssocreds.InvalidTokenError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return CodeEndpointRefused, fmt.Sprintf("%s at %s refuses connections: check %s (or start `amirotate sim` there)", service, endpoint, variable)
	case errors.As(err, &dns) && dns.IsNotFound:
		return CodeUnknownHost, fmt.Sprintf("%s at %s: the host %s does not exist: check the region name and %s", service, endpoint, dns.Name, variable)
	case errors.As(err, &sso), expiredCodes[Code(err)]:
		return CodeExpiredToken, fmt.Sprintf("the AWS credentials have expired (%s answered %s): renew them (aws sso login, or new session credentials) and run again; if they are fresh, check this machine's clock", service, valueOr(Code(err), "an expired SSO token"))
	case errors.As(err, &ce):
		return CodeNoCredentials, "no AWS credentials found: set AWS_PROFILE (and run aws sso login if it uses SSO), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
	case strings.Contains(err.Error(), "Missing Region"):
		return CodeNoRegion, "no AWS region: set AWS_REGION (the region whose instances the policy rotates)"
	}
	return "", ""
}

func valueOr(s, instead string) string {
	if s == "" {
		return instead
	}
	return s
}

// CheckAccess makes one read-only EC2 call in the home region, unretried
// and bounded to a few seconds, so that a configuration problem ends a
// command at once with Explain's sentence instead of after the retryer's
// minutes. Other failures (a missing permission, throttling) are left to
// the command itself, which reports them in context.
func CheckAccess(ctx context.Context, c *Clients) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if c.Home() == "" {
		_, sentence := Explain(errors.New("Missing Region"))
		return errors.New(sentence)
	}
	_, err := c.EC2("").DescribeRegions(ctx, &ec2.DescribeRegionsInput{}, func(o *ec2.Options) {
		o.Retryer = aws.NopRetryer{}
	})
	if _, sentence := Explain(err); sentence != "" {
		return errors.New(sentence)
	}
	return nil
}
