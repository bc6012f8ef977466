package loadgen

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
)

// MemorySample is the process's memory at one moment of a run. RSS splits into anonymous
// memory (the heaps and stacks the process owns) and file-backed pages (bbolt's mmapped
// files: page cache the kernel can drop and reread, not memory the process holds).
type MemorySample struct {
	Seconds  float64 `json:"t_s"`
	RSSMB    float64 `json:"rss_mb"`      // resident now (Linux /proc/self/status VmRSS; 0 elsewhere)
	AnonMB   float64 `json:"rss_anon_mb"` // of which anonymous (RssAnon)
	FileMB   float64 `json:"rss_file_mb"` // of which file-backed, mostly bbolt's maps (RssFile)
	HeapMB   float64 `json:"heap_mb"`     // Go heap in use (HeapInuse)
	GoSysMB  float64 `json:"go_sys_mb"`   // everything the Go runtime holds from the OS (Sys)
	Released float64 `json:"heap_released_mb"`
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
		s := resident()
		s.Seconds = time.Since(start).Seconds()
		s.HeapMB, s.GoSysMB, s.Released = mb(ms.HeapInuse), mb(ms.Sys), mb(ms.HeapReleased)
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

func mb(bytes uint64) float64 { return float64(bytes) / (1 << 20) }

// resident reads the resident set and its anonymous and file-backed parts from
// /proc/self/status (kB); zero where there is none.
func resident() MemorySample {
	var s MemorySample
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return s
	}
	fields := map[string]*float64{"VmRSS:": &s.RSSMB, "RssAnon:": &s.AnonMB, "RssFile:": &s.FileMB}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 2 {
			continue
		}
		if dst, ok := fields[string(f[0])]; ok {
			if kb, err := strconv.ParseFloat(string(f[1]), 64); err == nil {
				*dst = kb / 1024
			}
		}
	}
	return s
}
