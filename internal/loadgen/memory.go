package loadgen

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MemorySample is the process's memory at one moment of a run.
type MemorySample struct {
	Seconds float64 `json:"t_s"`
	RSSMB   float64 `json:"rss_mb"`  // resident now (Linux /proc/self/statm; 0 elsewhere)
	HeapMB  float64 `json:"heap_mb"` // Go heap in use
}

// sampleMemory records the process's memory every interval until stop is called: whether
// memory stays flat as checkouts pile up behind it.
func sampleMemory(interval time.Duration) (stop func() []MemorySample) {
	start := time.Now()
	var (
		mu      sync.Mutex
		samples []MemorySample
	)
	take := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		s := MemorySample{Seconds: time.Since(start).Seconds(), RSSMB: residentMB(), HeapMB: float64(ms.HeapInuse) / (1 << 20)}
		mu.Lock()
		samples = append(samples, s)
		mu.Unlock()
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				take()
			case <-done:
				return
			}
		}
	})
	return func() []MemorySample {
		close(done)
		wg.Wait()
		take()
		mu.Lock()
		defer mu.Unlock()
		return samples
	}
}

// residentMB reads the resident set size from /proc/self/statm.
func residentMB() float64 {
	raw, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(raw))
	if len(fields) < 2 {
		return 0
	}
	pages, err := strconv.ParseFloat(fields[1], 64)
	if err != nil {
		return 0
	}
	return pages * float64(os.Getpagesize()) / (1 << 20)
}
