package memtest

import (
	"runtime"
	"testing"
	"time"
)

// TestLiveAndPeak: 64 MiB kept alive show in Live; 64 MiB allocated and
// dropped inside Peak's function show in Peak but not in Live after it.
func TestLiveAndPeak(t *testing.T) {
	const size = 64 << 20
	before := Live()
	kept := make([]byte, size)
	if grown := int64(Live()) - int64(before); grown < size-size/8 || grown > size+size/8 {
		t.Errorf("Live grew by %d bytes with %d kept", grown, size)
	}
	runtime.KeepAlive(kept)
	base := Live()
	peak := Peak(time.Millisecond, func() {
		b := make([]byte, size)
		for i := range b {
			b[i] = 1
		}
		time.Sleep(5 * time.Millisecond)
		runtime.KeepAlive(b)
	})
	if grown := int64(peak) - int64(base); grown < size-size/8 {
		t.Errorf("Peak = base + %d bytes while %d were in use", grown, size)
	}
	if after := Live(); int64(after)-int64(base) > size/8 {
		t.Errorf("Live = base + %d bytes after the buffer was dropped", int64(after)-int64(base))
	}
}
