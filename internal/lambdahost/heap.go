package lambdahost

import (
	"runtime"
	"runtime/metrics"
	"sync"
	"time"
)

// heapObjects is the heap's live objects plus those dead and not yet swept:
// what the Go runtime holds for the program's allocations at that moment.
const heapObjects = "/memory/classes/heap/objects:bytes"

// heapSampleEvery is how often HeapDuring reads the heap while fn runs.
const heapSampleEvery = time.Millisecond

// HeapDuring runs fn and returns how far the heap (runtime/metrics
// /memory/classes/heap/objects:bytes) rose above where it stood after a
// collection just before: the peak of what fn's allocations held, garbage
// not yet collected included, as a function's memory must hold it with Go's
// default GOGC. Whatever else the process does meanwhile counts too, so the
// caller runs fn alone.
func HeapDuring(fn func()) uint64 {
	runtime.GC()
	sample := []metrics.Sample{{Name: heapObjects}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	base := read()
	var (
		mu   sync.Mutex
		peak = base
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	note := func(v uint64) {
		mu.Lock()
		peak = max(peak, v)
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(heapSampleEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				note(read())
			}
		}
	}()
	fn()
	note(read())
	close(done)
	wg.Wait()
	return peak - base
}
