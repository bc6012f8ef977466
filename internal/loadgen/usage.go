package loadgen

import (
	"runtime"
	"syscall"
	"time"
)

// usage is the process's CPU time and peak resident memory (getrusage), plus its live
// heap: in-process runs are the whole system and the generator in one process.
type usage struct {
	at        time.Time
	cpu       time.Duration
	maxRSSKiB int64
}

func readUsage() usage {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return usage{at: time.Now(), cpu: cpu, maxRSSKiB: ru.Maxrss}
}

// Resources is what a run cost the process.
type Resources struct {
	CPUSeconds float64 `json:"cpu_seconds"`
	// CPUCores is CPU seconds per wall second: 2 is the whole of this machine.
	CPUCores  float64 `json:"cpu_cores"`
	PeakRSSMB float64 `json:"peak_rss_mb"` // since the process started
	HeapMB    float64 `json:"heap_mb"`     // Go heap in use at the end of the run
}

func (u usage) since(before usage) Resources {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	cpu := u.cpu - before.cpu
	wall := u.at.Sub(before.at)
	return Resources{
		CPUSeconds: cpu.Seconds(), CPUCores: cpu.Seconds() / wall.Seconds(),
		PeakRSSMB: float64(u.maxRSSKiB) / 1024, HeapMB: float64(ms.HeapInuse) / (1 << 20),
	}
}
