package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ExecTimeout bounds every command the Bed runs for itself or through Exec.
const ExecTimeout = 30 * time.Second

// StopGrace is how long Proc.Stop waits after SIGTERM before SIGKILL.
const StopGrace = 5 * time.Second

// maxOutput bounds what a Proc keeps of its output (the tail is kept).
const maxOutput = 1 << 20

// netnsDir is where iproute2 keeps its named namespaces.
const netnsDir = "/run/netns"

// run runs argv with stdin, returning combined output; the error carries
// the command and its output so a failed setup step explains itself.
func run(ctx context.Context, stdin string, argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, ExecTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("netlab: %s: %w: %s", strings.Join(argv, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// ipBatch runs iproute2 commands (one per line, without the leading "ip")
// in namespace ns with a single exec.
func ipBatch(ns string, lines ...string) error {
	_, err := run(context.Background(), strings.Join(lines, "\n")+"\n", "ip", "-n", ns, "-batch", "-")
	return err
}

// nftApply loads an nft script into namespace ns atomically.
func nftApply(ns, script string) error {
	if script == "" {
		return nil
	}
	_, err := run(context.Background(), script, "ip", "netns", "exec", ns, "nft", "-f", "-")
	return err
}

// doIn runs f on an OS thread that has entered namespace ns. Sockets f
// opens stay in ns for their whole life, whatever goroutine uses them later.
// The thread is never unlocked, so Go discards it when the goroutine ends
// rather than reusing a thread in the wrong namespace. Processes f starts
// inherit ns, but they do not see the namespace's /etc/netns files.
func doIn(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Stays set only if f leaves by runtime.Goexit (t.FailNow).
		err := fmt.Errorf("netlab: do in %s: function exited without returning", ns)
		defer func() { errc <- err }()
		err = enterAndRun(ns, f)
	}()
	return <-errc
}

// enterAndRun moves the calling (locked) thread into ns and runs f.
func enterAndRun(ns string, f func() error) error {
	fd, err := unix.Open(netnsDir+"/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netlab: open namespace %s: %w", ns, err)
	}
	err = unix.Setns(fd, unix.CLONE_NEWNET)
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("netlab: enter namespace %s: %w", ns, err)
	}
	return f()
}

// Proc is a process the Bed started in a namespace. The Bed stops it at
// cleanup and, if the test failed, logs its output.
type Proc struct {
	ns   string
	args []string
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{}
	err  error // set before done is closed

	stopOnce sync.Once
	stopErr  error
}

func startProc(ns string, argv []string) (*Proc, error) {
	if len(argv) == 0 {
		return nil, errors.New("netlab: start: empty command")
	}
	p := &Proc{ns: ns, args: argv, out: &tailBuffer{max: maxOutput}, done: make(chan struct{})}
	// "ip netns exec" execs argv in place, so the pid is the program's own
	// and /etc/netns/NS is mounted over /etc for it.
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true, // Stop signals the whole group, children included
		// If the test binary dies without cleanup (timeout panic, SIGKILL),
		// take the process with it.
		Pdeathsig: syscall.SIGKILL,
	}
	// The death signal fires when the forking *thread* exits, and Go ends
	// threads whose goroutine exits locked (as Do's do). So fork from a
	// thread pinned to this goroutine until the process is gone.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := p.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("netlab: start %s in %s: %w", strings.Join(argv, " "), ns, err)
	}
	return p, nil
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// NS is the namespace the process runs in.
func (p *Proc) NS() string { return p.ns }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait blocks until the process exits and returns its exit error.
func (p *Proc) Wait() error {
	<-p.done
	return p.err
}

// Output returns what the process wrote to stdout and stderr so far (the
// last MiB of it).
func (p *Proc) Output() string { return p.out.String() }

// Signal sends sig to the process group.
func (p *Proc) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("netlab: signal %d: %w", p.cmd.Process.Pid, err)
	}
	return nil
}

// Stop ends the process group: SIGTERM, then SIGKILL after StopGrace. It
// returns once the process has exited. An exit caused by Stop's own
// signals is not an error; calling Stop again returns the same result.
func (p *Proc) Stop() error {
	p.stopOnce.Do(func() {
		select {
		case <-p.done:
			p.stopErr = p.err
			return
		default:
		}
		p.stopErr = p.Signal(syscall.SIGTERM)
		timer := time.NewTimer(StopGrace)
		defer timer.Stop()
		select {
		case <-p.done:
		case <-timer.C:
			if err := p.Signal(syscall.SIGKILL); err != nil && p.stopErr == nil {
				p.stopErr = err
			}
			<-p.done
		}
		var exit *exec.ExitError
		if p.stopErr == nil && p.err != nil && !(errors.As(p.err, &exit) && !exit.Exited()) {
			p.stopErr = p.err
		}
	})
	return p.stopErr
}

func (p *Proc) String() string {
	return fmt.Sprintf("%q in %s (pid %d)", strings.Join(p.args, " "), p.ns, p.Pid())
}

// tailBuffer is an io.Writer keeping the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if len(p) >= b.max {
		p = p[len(p)-b.max:]
		b.buf = b.buf[:0]
	}
	if drop := len(b.buf) + len(p) - b.max; drop > 0 {
		b.buf = append(b.buf[:0], b.buf[drop:]...)
	}
	b.buf = append(b.buf, p...)
	return n, nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
