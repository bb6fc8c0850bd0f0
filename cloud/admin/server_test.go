package admin

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/store"
)

func startServer(t *testing.T) *Server {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(context.Background(), filepath.Join(dir, "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s, err := Listen(Config{Path: filepath.Join(dir, SocketName), Store: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return s
}

// asUID runs fn on an OS thread whose credentials are uid's alone (Linux
// credentials are per thread; the raw setresuid leaves the process's other
// threads as they are), as another local user's process would connect.
// The thread is never handed back to the runtime: it exits with fn.
func asUID(t *testing.T, uid int, fn func()) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Fatal("needs root: it connects as another user")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // no Unlock: the thread dies with the goroutine
		if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
			t.Errorf("setresuid: %v", e)
			return
		}
		fn()
	}()
	<-done
}

// TestSocketRefusesOtherUsers attacks the admin socket as another local
// user (nobody, uid 65534), from a thread of this process running with
// that uid. With the socket as the cloud makes it (0600) the kernel refuses
// the connection; with the socket and its directory opened to everyone
// (chmod 0666 and 0755, a mistake an operator can make) the connection is made but the SO_PEERCRED
// check closes it before a request is read: no node list, a counted refusal.
// Root gets its answer both times.
func TestSocketRefusesOtherUsers(t *testing.T) {
	s := startServer(t)
	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	const nobody = 65534
	ctx := context.Background()
	asUID(t, nobody, func() {
		_, err := net.Dial("unix", s.Path())
		if !errors.Is(err, syscall.EACCES) {
			t.Errorf("nobody connected to a 0600 socket: %v", err)
		}
	})
	if _, err := NewClient(s.Path()).Nodes(ctx); err != nil {
		t.Fatalf("root: %v", err)
	}

	// The operator's mistake: the directory and the socket opened up.
	for d := filepath.Dir(s.Path()); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil { // t.TempDir's and its parent
			t.Fatal(err)
		}
	}
	if err := os.Chmod(s.Path(), 0o666); err != nil {
		t.Fatal(err)
	}
	asUID(t, nobody, func() {
		c, err := net.Dial("unix", s.Path())
		if err != nil {
			t.Errorf("nobody could not connect to a 0666 socket (the attack needs it to): %v", err)
			return
		}
		defer c.Close()
		// The connection is the thread's: the request goes on it.
		if _, err := c.Write([]byte("GET /v1/nodes HTTP/1.1\r\nHost: cloud\r\n\r\n")); err != nil {
			return // closed already: refused
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 512)
		if n, err := c.Read(b); n > 0 || err == nil {
			t.Errorf("nobody got an answer: %q", b[:n])
		}
	})
	if s.Refused() != 1 {
		t.Errorf("refused %d connections, want 1", s.Refused())
	}
	if _, err := NewClient(s.Path()).Nodes(ctx); err != nil {
		t.Fatalf("root after the attack: %v", err)
	}
}

// TestListenTakesOverOnlyDeadSockets: a second channel on the same path is
// refused while the first serves it; a socket left by a crash is replaced.
func TestListenTakesOverOnlyDeadSockets(t *testing.T) {
	s := startServer(t)
	if _, err := Listen(Config{Path: s.Path(), Store: s.cfg.Store}); err == nil {
		t.Fatal("a second channel took a served socket")
	}
	// A crash leaves the file with nobody behind it.
	path := filepath.Join(t.TempDir(), SocketName)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	s2, err := Listen(Config{Path: path, Store: s.cfg.Store})
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	if _, err := NewClient(path).Nodes(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := NewClient(path).Nodes(context.Background()); !errors.Is(err, ErrNoCloud) {
		t.Fatalf("after close: %v, want ErrNoCloud", err)
	}
}

// TestClientErrors: each refusal is its own error, naming its cause.
func TestClientErrors(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	c := NewClient(s.Path())
	if _, err := c.Node(ctx, "nobody.example.cyphonic"); !errors.Is(err, ErrUnknownNode) {
		t.Errorf("unknown node: %v", err)
	}
	if err := s.cfg.Store.PutNode(ctx, store.Node{FQDN: "alice.example.cyphonic", CertSerial: "0a"}); err != nil {
		t.Fatal(err)
	}
	n, err := c.Node(ctx, "alice.example.cyphonic")
	if err != nil || n.Online || n.CertSerial != "0a" {
		t.Errorf("alice: %+v, %v", n, err)
	}
	// No NMS in this channel: ending a session is refused with the reason.
	if _, err := c.EndSession(ctx, "alice.example.cyphonic"); err == nil || errors.Is(err, ErrUnknownNode) {
		t.Errorf("end-session without an NMS: %v", err)
	}
	if _, err := NewClient(filepath.Join(t.TempDir(), SocketName)).Nodes(ctx); !errors.Is(err, ErrNoCloud) {
		t.Errorf("no socket: %v", err)
	}
	resp, err := c.hc.Get("http://cloud/v1/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown path: %s", resp.Status)
	}
}
