package rotation

import (
	"fmt"
	"strings"
)

// InvalidInputError reports input that can never succeed as given: a bad
// policy or a bad execution input. It carries every problem found, so a user
// fixes them all in one go instead of one per run.
//
// Handlers return it unwrapped, as a value: aws-lambda-go reports the Go type
// name ("InvalidInputError") as the errorType, which the state machine
// matches to fail at once instead of retrying.
type InvalidInputError struct {
	Problems []Problem
}

// Problem is one thing wrong with an input: where it is and what to change.
type Problem struct {
	// Field is the path of the offending value as the user wrote it,
	// e.g. `policy.copyTo[1].region` or `policy.tags["aws:x"]`.
	Field string
	// Message says what is wrong and how to fix it.
	Message string
}

func (p Problem) String() string {
	if p.Field == "" {
		return p.Message
	}
	return p.Field + ": " + p.Message
}

// Error lists the problems one per line, each naming its field.
func (e InvalidInputError) Error() string {
	if len(e.Problems) == 0 {
		return "invalid input"
	}
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Invalid returns an InvalidInputError with a single problem.
func Invalid(field, format string, args ...any) InvalidInputError {
	return InvalidInputError{Problems: []Problem{{Field: field, Message: fmt.Sprintf(format, args...)}}}
}

// problems collects validation findings in the order they are found.
type problems []Problem

func (ps *problems) add(field, format string, args ...any) {
	*ps = append(*ps, Problem{Field: field, Message: fmt.Sprintf(format, args...)})
}

// err is nil when nothing was found, so callers can `return ps.err()`.
func (ps problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	return InvalidInputError{Problems: ps}
}
