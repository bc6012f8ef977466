package chaos

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// process is one OS process that is kept running, like a container with a restart policy:
// when it exits (or is killed) it is started again, after the pause Kill asked for.
type process struct {
	name string
	bin  string
	args []string
	env  []string
	logs io.Writer

	mu        sync.Mutex
	cmd       *exec.Cmd
	holdUntil time.Time
	wipe      string // a directory to remove once the process has died, before its restart
	stopping  bool
	starts    int
	done      chan struct{}
}

// restartDelay is the least a dead process waits before it is started again, so a process
// that cannot start (its NATS server is down) does not spin.
const restartDelay = 200 * time.Millisecond

func newProcess(name, bin string, args, env []string, logs io.Writer) *process {
	return &process{name: name, bin: bin, args: args, env: env, logs: logs, done: make(chan struct{})}
}

// run starts the process and supervises it until stop.
func (p *process) run() error {
	if err := p.start(); err != nil {
		return err
	}
	go p.supervise()
	return nil
}

func (p *process) start() error {
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.mu.Lock()
	p.cmd = cmd
	p.starts++
	p.mu.Unlock()
	return nil
}

func (p *process) supervise() {
	defer close(p.done)
	for {
		p.mu.Lock()
		cmd := p.cmd
		p.mu.Unlock()
		_ = cmd.Wait()
		p.mu.Lock()
		stopping, wait := p.stopping, max(time.Until(p.holdUntil), restartDelay)
		p.mu.Unlock()
		if stopping {
			return
		}
		time.Sleep(wait)
		// The wipe is read here, just before the restart: a kill that came while the process
		// was already down (waiting to restart) wipes it too, and the final stop never does,
		// so reconciliation reads the file the last process left.
		p.mu.Lock()
		stopping, wipe := p.stopping, p.wipe
		p.wipe = ""
		p.mu.Unlock()
		if stopping {
			return
		}
		if wipe != "" {
			_ = os.RemoveAll(wipe) // its disk is gone: it starts on an empty data directory
		}
		for p.start() != nil {
			time.Sleep(restartDelay)
		}
	}
}

// kill SIGKILLs the process; it is started again after pause, on an empty dir when wipe
// names one (its data directory: the machine it ran on is gone).
func (p *process) kill(pause time.Duration, wipe string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holdUntil, p.wipe = time.Now().Add(pause), wipe
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
}

// stop asks the process to finish (SIGTERM) and waits for it, killing it after grace.
func (p *process) stop(grace time.Duration) error {
	p.mu.Lock()
	p.stopping = true
	cmd := p.cmd
	p.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		return errors.New(p.name + " did not stop within " + grace.String() + ": killed")
	}
}
