// Package conformance checks the local simulator from the outside: its
// tests build and start a real `amirotate sim` process and drive it
// through the AWS CLI (v1 from the machine's Python and, where installed,
// Debian's v2) and, side by side with moto, through the AWS SDK for Go.
//
// The package has no code of its own; everything is in its tests. They
// need `aws` (CLI v1) on PATH, /usr/bin/aws (CLI v2; apt-get install
// awscli) and moto_server, and fail with the install step when one is
// missing.
package conformance
