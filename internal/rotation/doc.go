// Package rotation is amirotate's domain: the policy and its validation, the
// execution inputs, the names and tags of what the tool makes, and the
// retention planner. It is pure Go and imports nothing of AWS, so its rules
// are tested without any endpoint and every adapter (the step handlers, the
// CLI) shares one statement of them.
//
// Files:
//   - policy.go: DecodePolicy (strict JSON), defaults, validation
//   - input.go: ParseInput for the schedule, tag-change and manual triggers
//   - naming.go: rotation ids, AMI names and descriptions, copy tokens
//   - tags.go: the tag schema, ImageTags/CopyTags, Managed, Selector
//   - planner.go: PlanRetention, which decides what retention deletes
//   - errors.go: InvalidInputError, the error for input that cannot succeed
package rotation
