package ec2sim

import (
	"fmt"
	"net/http"
	"strings"
)

// apiError is an error the simulator answers on the wire: an EC2 XML error
// envelope, an SSM JSON error or an Auto Scaling query error.
type apiError struct {
	Code    string
	Message string
	Status  int
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

// errorf builds an apiError whose HTTP status follows from the code.
func errorf(code, format string, args ...any) *apiError {
	return &apiError{Code: code, Message: fmt.Sprintf(format, args...), Status: StatusForCode(code)}
}

// StatusForCode is the HTTP status EC2 answers with for an error code:
// 503 for RequestLimitExceeded and unavailability, 412 for DryRunOperation,
// 500 for internal errors, 403 for authorization failures, 400 otherwise.
func StatusForCode(code string) int {
	switch code {
	case "RequestLimitExceeded", "Unavailable", "ServiceUnavailable", "ServiceUnavailableException", "InsufficientInstanceCapacity.Throttled":
		return http.StatusServiceUnavailable
	case "DryRunOperation":
		return http.StatusPreconditionFailed
	case "InternalError", "InternalFailure", "InternalServerError", "InternalServerErrorException":
		return http.StatusInternalServerError
	case "UnauthorizedOperation", "AccessDenied", "AccessDeniedException":
		return http.StatusForbidden
	case "AuthFailure":
		return http.StatusUnauthorized
	case "ThrottlingException", "Throttling":
		return http.StatusBadRequest
	}
	if strings.HasPrefix(code, "Server.") {
		return http.StatusInternalServerError
	}
	return http.StatusBadRequest
}

func errDryRun() *apiError {
	return errorf("DryRunOperation", "Request would have succeeded, but DryRun flag is set.")
}

func errThrottled() *apiError {
	return errorf("RequestLimitExceeded", "Request limit exceeded.")
}

func errMissing(param string) *apiError {
	return errorf("MissingParameter", "The request must contain the parameter %s", param)
}

func errInvalidValue(format string, args ...any) *apiError {
	return errorf("InvalidParameterValue", format, args...)
}

func errInternal(format string, args ...any) *apiError {
	return errorf("InternalError", format, args...)
}
