// Package memtest measures the heap for benchmarks and tests: the live
// heap after a full collection, and the most heap in use while a function
// runs. Figures are bytes.
package memtest

import (
	"runtime"
	"runtime/metrics"
	"sync"
	"time"
)

// Live returns the bytes of the heap objects still reachable: it runs a
// full collection first.
func Live() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// objects is the runtime metric of the heap in use by objects, reachable
// or not yet collected.
const objects = "/memory/classes/heap/objects:bytes"

// Peak runs f and returns the most heap in use by objects (reachable or
// not yet collected) seen while it ran, sampled every interval: what the
// process needed at its worst, garbage included. A peak between two
// samples can be missed, so a short interval (a millisecond) suits runs
// of a tenth of a second and more.
func Peak(interval time.Duration, f func()) uint64 {
	sample := []metrics.Sample{{Name: objects}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	peak := read()
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		stop = make(chan struct{})
	)
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				v := read()
				mu.Lock()
				peak = max(peak, v)
				mu.Unlock()
			}
		}
	})
	f()
	close(stop)
	wg.Wait()
	return max(peak, read())
}
