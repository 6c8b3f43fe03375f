package ec2x

import (
	"context"
	"errors"
	"io"
	"net"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/amirotate/amirotate/internal/rotation"
)

// RetryableError is a failure that may succeed when the step runs again:
// throttling or a 5xx that outlived the SDK's retries, a network error, a
// resource EC2 does not show yet (eventual consistency). Handlers return it
// as a value, so its type name is the Lambda errorType the state machine's
// Retry matches.
type RetryableError struct {
	Code    string `json:"code,omitempty"` // the AWS error code, when there is one
	Message string `json:"message"`
}

func (e RetryableError) Error() string { return e.Message }

// FatalError is a refusal that will not change on a retry (missing
// permission, malformed request, a limit). The state machine catches it and
// reports the batch.
type FatalError struct {
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
}

func (e FatalError) Error() string { return e.Message }

// Code returns the AWS error code of err ("InvalidAMIID.NotFound"), or ""
// when err carries none.
func Code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// httpStatus returns the HTTP status of the response err came from, or 0.
func httpStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		return re.HTTPStatusCode()
	}
	return 0
}

// notFoundCodes are the codes with which EC2, SSM and Auto Scaling say a
// resource the call names does not exist (or no longer does). Listed, not
// matched by suffix: a code that merely ends in NotFound (say, a missing
// KMS key or IAM profile in a request) is a broken request, not a resource
// already gone.
var notFoundCodes = map[string]bool{
	"InvalidAMIID.NotFound":                       true,
	"InvalidAMIID.Unavailable":                    true, // deregistered
	"InvalidSnapshot.NotFound":                    true,
	"InvalidInstanceID.NotFound":                  true,
	"InvalidLaunchTemplateId.NotFound":            true,
	"InvalidLaunchTemplateName.NotFoundException": true,
	"InvalidLaunchTemplateId.VersionNotFound":     true,
	"ParameterNotFound":                           true,
	"ParameterVersionNotFound":                    true,
}

// Codes the steps act on, named once.
const (
	CodeNameTaken     = "InvalidAMIName.Duplicate"
	CodeCopyLimit     = "ResourceLimitExceeded"
	CodeSnapshotInUse = "InvalidSnapshot.InUse"
)

// IsNotFound reports whether err says the resource does not exist (or no
// longer does). Deleting something that is not found is success.
func IsNotFound(err error) bool { return notFoundCodes[Code(err)] }

// IsNameTaken reports whether CreateImage or CopyImage refused the name
// because an image of this account in the region already has it.
func IsNameTaken(err error) bool { return Code(err) == CodeNameTaken }

// IsCopyLimit reports whether CopyImage refused because the destination
// region has too many copies in progress.
func IsCopyLimit(err error) bool { return Code(err) == CodeCopyLimit }

// IsSnapshotInUse reports whether DeleteSnapshot refused because an image
// still uses the snapshot.
func IsSnapshotInUse(err error) bool { return Code(err) == CodeSnapshotInUse }

// Message is the AWS error message of err (its text when it has none).
func Message(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorMessage() != "" {
		return ae.ErrorMessage()
	}
	return err.Error()
}

// MustExist is for calls on a resource that has to be there (the source of
// a copy): NotFound will not change on a retry, so it becomes a FatalError
// instead of the RetryableError eventual consistency earns it elsewhere.
func MustExist(err error) error {
	if IsNotFound(err) {
		return FatalError{Code: Code(err), Message: err.Error()}
	}
	return err
}

// IsThrottled reports whether EC2 (or SSM, Auto Scaling) throttled the call.
func IsThrottled(err error) bool {
	if _, ok := retry.DefaultThrottleErrorCodes[Code(err)]; ok {
		return true
	}
	return httpStatus(err) == 429
}

// IsServerError reports whether the service failed on its side (HTTP 5xx or
// a server error code).
func IsServerError(err error) bool {
	if s := httpStatus(err); s >= 500 && s <= 599 {
		return true
	}
	switch Code(err) {
	case "InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable", "InternalServerError":
		return true
	}
	return false
}

// transientCodes are client-side codes that clear by themselves.
var transientCodes = map[string]bool{
	"ConcurrentTagAccess": true,
	CodeCopyLimit:         true, // concurrent copies: frees up as copies finish
	"ConcurrentCreateImageNoRebootLimitExceeded": true,
	"TooManyUpdates":          true, // SSM: a parameter changed concurrently
	"IncorrectState":          true,
	"RequestTimeout":          true,
	"RequestTimeoutException": true,
}

// IsRetryable reports whether running the step again may succeed.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	var (
		re  RetryableError
		fe  FatalError
		qe  ratelimit.QuotaExceededError
		ne  net.Error
		ie  rotation.InvalidInputError
		ope *smithy.OperationError
	)
	switch {
	case errors.As(err, &re):
		return true
	case errors.As(err, &fe), errors.As(err, &ie):
		return false
	case IsThrottled(err), IsServerError(err), IsNotFound(err), transientCodes[Code(err)]:
		return true
	case errors.As(err, &qe):
		return true
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return true
	case Code(err) != "":
		return false
	case errors.As(err, &ne):
		return true
	case errors.As(err, new(smithy.InvalidParamsError)), errors.As(err, new(*smithy.SerializationError)):
		// The request itself is wrong: a retry sends it again unchanged.
		return false
	case errors.As(err, &ope):
		// No API answer: retryable when it is transport trouble the SDK
		// itself retries (connection reset, a body cut short).
		return retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err).Bool() ||
			errors.Is(err, io.ErrUnexpectedEOF)
	}
	return false
}

// Classify turns any error into one of the three names the state machine
// matches: rotation.InvalidInputError (kept as it is), RetryableError or
// FatalError. A configuration problem (see Explain) is a FatalError whose
// message is the sentence that says what to fix: the SDK already retried
// it, and running the step again cannot help. The result is an unwrapped value, ready to return from a
// Lambda handler; nil stays nil.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	var (
		ie rotation.InvalidInputError
		re RetryableError
		fe FatalError
	)
	if code, sentence := Explain(err); code != "" {
		return FatalError{Code: code, Message: sentence}
	}
	switch {
	case errors.As(err, &ie):
		return ie
	case errors.As(err, &re):
		if re.Message != err.Error() {
			re.Message = err.Error()
		}
		return re
	case errors.As(err, &fe):
		if fe.Message != err.Error() {
			fe.Message = err.Error()
		}
		return fe
	case IsRetryable(err):
		return RetryableError{Code: Code(err), Message: err.Error()}
	}
	return FatalError{Code: Code(err), Message: err.Error()}
}
