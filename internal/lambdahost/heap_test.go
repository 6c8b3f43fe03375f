package lambdahost

import (
	"context"
	"net/http/httptest"
	"runtime"
	"testing"
)

const mib = 1 << 20

// slack is how far below what a function holds a reading may fall: a
// collection during the call may free what stood on the heap when it
// started (the race detector's own allocations, the test's garbage).
const slack = 4 * mib

// hold allocates n bytes and keeps them reachable until it returns.
func hold(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func TestHeapDuring_SeesWhatTheFunctionHolds(t *testing.T) {
	got := HeapDuring(func() {
		b := hold(32 * mib)
		runtime.KeepAlive(b)
	})
	if got < 32*mib-slack || got > 64*mib {
		t.Errorf("holding 32 MiB raised the heap by %d MiB", got/mib)
	}
	if idle := HeapDuring(func() {}); idle > 4*mib {
		t.Errorf("doing nothing raised the heap by %d MiB", idle/mib)
	}
}

// With MeasureHeap on, the host records each function's largest
// invocation; it always sums the handlers' running time.
func TestHost_MeasuresHeapPerFunction(t *testing.T) {
	h := New(map[string]any{
		"big": func(context.Context) (map[string]int, error) {
			b := hold(24 * mib)
			runtime.KeepAlive(b)
			return map[string]int{"n": len(b)}, nil
		},
		"small": func(context.Context) (map[string]int, error) { return map[string]int{"n": 1}, nil },
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	post(t, srv.URL, "big", "{}")
	if st := h.Stats(); len(st.PeakHeapBytes) != 0 || st.Seconds["big"] <= 0 {
		t.Fatalf("measuring off: heap %v, seconds %v", st.PeakHeapBytes, st.Seconds)
	}
	h.MeasureHeap(true)
	post(t, srv.URL, "big", "{}")
	post(t, srv.URL, "small", "{}")
	st := h.Stats()
	if st.PeakHeapBytes["big"] < 24*mib-slack || st.PeakHeapBytes["small"] > 4*mib {
		t.Errorf("peak heap: big %d MiB, small %d MiB", st.PeakHeapBytes["big"]/mib, st.PeakHeapBytes["small"]/mib)
	}
	if st.Invocations["big"] != 2 || st.Seconds["small"] <= 0 {
		t.Errorf("invocations %v, seconds %v", st.Invocations, st.Seconds)
	}
}
