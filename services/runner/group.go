package runner

import (
	"context"
	"sync"

	"github.com/jetcheckout/jetcheckout/events"
	bolt "go.etcd.io/bbolt"
)

// maxGroup bounds how many events share one transaction.
const maxGroup = 128

// group commits the events its lanes hand it together: whatever is waiting when the
// previous commit ends goes into one bbolt transaction, so one fsync carries them all. An
// event waits for no timer: alone, it commits at once; behind a busy disk, it shares the
// next commit. Each event's handler runs in the shared transaction as it would in its own,
// in arrival order, seeing the writes of those before it.
//
// A handler that fails rolls back the whole transaction; the others run again in a new
// one, so handlers of a grouping runner may run more than once for one delivery. Only
// handlers whose every effect is in the transaction may be grouped (Config.GroupCommit).
type group struct {
	r    *Runner
	reqs chan *commitReq
	wg   sync.WaitGroup
}

type commitReq struct {
	ctx    context.Context
	in     events.Envelope
	seq    uint64
	handle Handler
	done   chan commitRes
}

type commitRes struct {
	outs []events.Envelope
	err  error
}

func (r *Runner) startGroup() *group {
	g := &group{r: r, reqs: make(chan *commitReq, maxGroup)}
	g.wg.Go(g.loop)
	return g
}

// commit queues one event and waits for the commit that carries it.
func (g *group) commit(ctx context.Context, in events.Envelope, seq uint64, handle Handler) ([]events.Envelope, error) {
	q := &commitReq{ctx: ctx, in: in, seq: seq, handle: handle, done: make(chan commitRes, 1)}
	g.reqs <- q
	res := <-q.done
	return res.outs, res.err
}

// stop ends the loop once nothing can queue any more (the lanes have finished).
func (g *group) stop() {
	close(g.reqs)
	g.wg.Wait()
}

func (g *group) loop() {
	for first := range g.reqs {
		batch := []*commitReq{first}
	fill:
		for len(batch) < maxGroup {
			select {
			case q, ok := <-g.reqs:
				if !ok {
					break fill
				}
				batch = append(batch, q)
			default:
				break fill
			}
		}
		g.run(batch)
	}
}

// run commits a batch in one transaction. A failing handler gets its error and the rest
// of the batch is run again without it.
func (g *group) run(batch []*commitReq) {
	outs := make([][]events.Envelope, len(batch))
	failed := -1
	var handlerErr error
	err := g.r.cfg.DB.Update(func(tx *bolt.Tx) error {
		for i, q := range batch {
			o, err := g.r.commitIn(q.ctx, tx, q.in, q.seq, q.handle)
			if err != nil {
				failed, handlerErr = i, err
				return err
			}
			outs[i] = o
		}
		return nil
	})
	switch {
	case err == nil:
		for i, q := range batch {
			q.done <- commitRes{outs: outs[i]}
		}
	case failed < 0: // the commit itself failed: nothing of the batch is stored
		for _, q := range batch {
			q.done <- commitRes{err: err}
		}
	default:
		batch[failed].done <- commitRes{err: handlerErr}
		rest := append(batch[:failed:failed], batch[failed+1:]...)
		if len(rest) > 0 {
			g.run(rest)
		}
	}
}
