package loadgen

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Sweep looks for the highest offered rate a run holds (RunResult.Held): it doubles the
// rate from From until a run fails, then bisects between the last rate that held and the
// first that did not, Steps times.
type Sweep struct {
	From       float64
	Steps      int
	P99BoundMS float64 // default 100
	// Settle is the pause between runs, so one run's stragglers do not load the next.
	Settle time.Duration
}

// SweepResult is the sweep's answer.
type SweepResult struct {
	P99BoundMS float64   `json:"p99_bound_ms"`
	BestRate   float64   `json:"best_rate"` // 0: even From did not hold
	Tried      []float64 `json:"tried"`
}

func sweep(ctx context.Context, t target, runID string, load Load, s Sweep, log *slog.Logger, keep func(RunResult)) (SweepResult, error) {
	if s.P99BoundMS == 0 {
		s.P99BoundMS = 100
	}
	if s.From <= 0 {
		s.From = 50
	}
	res := SweepResult{P99BoundMS: s.P99BoundMS}
	try := func(rate float64) (bool, error) {
		l := load
		l.Rate, l.InFlight = rate, 0
		r, err := runLoad(ctx, t, fmt.Sprintf("%s_%d", runID, len(res.Tried)), l)
		if err != nil {
			return false, err
		}
		res.Tried = append(res.Tried, rate)
		keep(r)
		held := r.Held(s.P99BoundMS)
		log.Info("sweep", "rate", rate, "held", held, "completed_per_s", r.CompletedPerSecond, "p99_ms", r.EndToEnd.P99)
		time.Sleep(s.Settle)
		return held, nil
	}
	lo, hi := 0.0, 0.0
	for rate := s.From; hi == 0 && rate <= maxSweepRate; rate *= 2 {
		held, err := try(rate)
		if err != nil {
			return res, err
		}
		if held {
			lo = rate
		} else {
			hi = rate
		}
	}
	for range s.Steps {
		mid := (lo + hi) / 2
		if lo == 0 {
			mid = hi / 2
		}
		held, err := try(mid)
		if err != nil {
			return res, err
		}
		if held {
			lo = mid
		} else {
			hi = mid
		}
	}
	res.BestRate = lo
	return res, nil
}

// maxSweepRate stops the doubling somewhere: far beyond any disk this runs on.
const maxSweepRate = 100_000
