package ec2x

// Regional is a step's view of one AWS service: a client per region, typed
// to the narrow interface of the calls the step's IAM role grants (a
// Regional[TagEC2], say). A step that holds only its Regional cannot
// compile a call its role lacks.
type Regional[T any] struct {
	home   string
	client func(region string) T
}

// NewRegional returns the view of clients whose home region is home. The
// client function converts each region's SDK client to T, which is where
// the compiler checks that the real client has T's methods.
func NewRegional[T any](home string, client func(region string) T) Regional[T] {
	return Regional[T]{home: home, client: client}
}

// Home is the region the source images are made in.
func (r Regional[T]) Home() string { return r.home }

// In returns the client of region ("" = home).
func (r Regional[T]) In(region string) T {
	if region == "" {
		region = r.home
	}
	return r.client(region)
}

// Configured reports whether the view has clients (a step built without
// them answers every call with an error instead of a nil dereference).
func (r Regional[T]) Configured() bool { return r.client != nil }
