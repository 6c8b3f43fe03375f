package steps

import "github.com/amirotate/amirotate/internal/ec2x"

// classified is what a Handle returns: out, or on error the zero value and
// the error as one of the types the state machine's Retry/Catch match (a
// wrapped error would reach Step Functions as wrapError and match nothing).
func classified[O any](out O, err error) (O, error) {
	if err != nil {
		var zero O
		return zero, ec2x.Classify(err)
	}
	return out, nil
}
