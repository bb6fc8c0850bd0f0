package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cyphonic/cyphonic-go/cloud/nms"
	"github.com/cyphonic/cyphonic-go/cloud/store"
)

// ErrInUse: another cloud process serves the socket.
var ErrInUse = errors.New("another cloud process serves this admin socket (it shares the data directory)")

// Sessions is what the channel needs of an NMS (*nms.Service).
type Sessions interface {
	LiveSessions(ctx context.Context) ([]nms.LiveSession, error)
	EndSession(ctx context.Context, fqdn string) (bool, error)
}

// Config configures the channel.
type Config struct {
	Path  string // the socket, normally DATA/admin.sock
	Store store.Store
	NMS   Sessions // nil when NMS does not run in this process
	// Home is that NMS's HomeNMS in the records it writes: a valid session
	// in a record homed elsewhere is another NMS's (a shared store).
	Home string
	// Allowed reports whether a peer uid may use the channel (default:
	// root and this process's uid).
	Allowed func(uid uint32) bool
	Logger  *slog.Logger
}

// Server serves the channel until Close.
type Server struct {
	cfg     Config
	ln      *net.UnixListener
	http    *http.Server
	done    chan struct{}
	refused atomic.Uint64
}

// Listen creates the socket (refusing to take it from a cloud that still
// serves it) and serves it.
func Listen(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("admin: config needs a Store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Allowed == nil {
		self := uint32(os.Getuid())
		cfg.Allowed = func(uid uint32) bool { return uid == 0 || uid == self }
	}
	ln, err := listen(cfg.Path)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, ln: ln, done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/nodes", s.list)
	mux.HandleFunc("GET /v1/nodes/{fqdn}", s.show)
	mux.HandleFunc("POST /v1/nodes/{fqdn}/end-session", s.endSession)
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn)}
	go func() {
		defer close(s.done)
		if err := s.http.Serve(&credListener{UnixListener: ln, s: s}); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cfg.Logger.Error("admin: serve", "socket", cfg.Path, "err", err)
		}
	}()
	return s, nil
}

// listen binds path with mode 0600 from the start: it binds a temporary
// name, sets the mode, and renames it into place. A socket already at path
// that still answers belongs to a running cloud: refused. One that does
// not (left by a crash) is replaced.
func listen(path string) (*net.UnixListener, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("admin: %s: %w", path, ErrInUse)
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket == 0 {
		return nil, fmt.Errorf("admin: %s exists and is not a socket", path)
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+"."+strconv.Itoa(os.Getpid()))
	_ = os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("admin: listen: %w", err)
	}
	ln.SetUnlinkOnClose(false) // it is unlinked by name in Close: it moved
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("admin: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("admin: %w", err)
	}
	return ln, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.cfg.Path }

// Refused counts connections refused for their peer's uid.
func (s *Server) Refused() uint64 { return s.refused.Load() }

// Close stops serving and removes the socket.
func (s *Server) Close(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	<-s.done
	if rerr := os.Remove(s.cfg.Path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
}

// credListener hands the HTTP server only connections whose peer (the
// process that connected, as the kernel recorded it at connect) is allowed.
type credListener struct {
	*net.UnixListener
	s *Server
}

func (l *credListener) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		if err == nil && l.s.cfg.Allowed(uid) {
			return c, nil
		}
		l.s.refused.Add(1)
		l.s.cfg.Logger.Warn("admin: connection refused: the peer's uid may not administer this cloud", "uid", uid, "err", err)
		c.Close()
	}
}

// peerUID is the uid of the process at c's other end (SO_PEERCRED).
func peerUID(c *net.UnixConn) (uint32, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, fmt.Errorf("SO_PEERCRED: %w", serr)
	}
	return cred.Uid, nil
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	nodes, err := s.nodes(r.Context())
	if err != nil {
		s.fail(w, http.StatusInternalServerError, codeInternal, err)
		return
	}
	writeJSON(w, http.StatusOK, nodes)
}

func (s *Server) show(w http.ResponseWriter, r *http.Request) {
	n, err := s.node(r.Context(), r.PathValue("fqdn"))
	if err != nil {
		s.failNode(w, err)
		return
	}
	writeJSON(w, http.StatusOK, n)
}

func (s *Server) endSession(w http.ResponseWriter, r *http.Request) {
	fqdn := r.PathValue("fqdn")
	if s.cfg.NMS == nil {
		s.fail(w, http.StatusConflict, codeNoNMS, errors.New("NMS does not run in this cloud process: end the session at the process that runs it"))
		return
	}
	n, err := s.node(r.Context(), fqdn)
	if err != nil {
		s.failNode(w, err)
		return
	}
	ended, err := s.cfg.NMS.EndSession(r.Context(), fqdn)
	if err != nil {
		s.fail(w, http.StatusInternalServerError, codeInternal, err)
		return
	}
	if !ended {
		s.fail(w, http.StatusConflict, codeNoSession, fmt.Errorf("%s has no session at this cloud's NMS (offline, or held by another NMS)", fqdn))
		return
	}
	s.cfg.Logger.Warn("admin: node's session ended", "fqdn", fqdn, "session", n.Session)
	writeJSON(w, http.StatusOK, Ended{FQDN: fqdn, Session: n.Session})
}

var errUnknownNode = errors.New("unknown node")

func (s *Server) failNode(w http.ResponseWriter, err error) {
	if errors.Is(err, errUnknownNode) {
		s.fail(w, http.StatusNotFound, codeUnknownNode, err)
		return
	}
	s.fail(w, http.StatusInternalServerError, codeInternal, err)
}

func (s *Server) fail(w http.ResponseWriter, status int, code string, err error) {
	if status >= 500 {
		s.cfg.Logger.Warn("admin: request failed", "err", err)
	}
	writeJSON(w, status, apiError{Error: err.Error(), Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// nodes merges the registry's records with NMS's live sessions.
func (s *Server) nodes(ctx context.Context) ([]Node, error) {
	recs, err := s.cfg.Store.ListNodes(ctx)
	if err != nil {
		return nil, fmt.Errorf("admin: registry: %w", err)
	}
	live, err := s.live(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Node, 0, len(recs))
	for _, rec := range recs {
		ls, ok := live[rec.FQDN]
		out = append(out, merge(rec, ls, ok, s.cfg.NMS != nil && rec.HomeNMS == s.cfg.Home, time.Now()))
	}
	return out, nil
}

func (s *Server) node(ctx context.Context, fqdn string) (Node, error) {
	rec, err := s.cfg.Store.GetNode(ctx, fqdn)
	if errors.Is(err, store.ErrNotFound) {
		return Node{}, fmt.Errorf("%w %q: the registry has no record of it (never logged in to this cloud?)", errUnknownNode, fqdn)
	}
	if err != nil {
		return Node{}, fmt.Errorf("admin: registry: %w", err)
	}
	live, err := s.live(ctx)
	if err != nil {
		return Node{}, err
	}
	ls, ok := live[fqdn]
	return merge(rec, ls, ok, s.cfg.NMS != nil && rec.HomeNMS == s.cfg.Home, time.Now()), nil
}

func (s *Server) live(ctx context.Context) (map[string]nms.LiveSession, error) {
	if s.cfg.NMS == nil {
		return nil, nil
	}
	ss, err := s.cfg.NMS.LiveSessions(ctx)
	if err != nil {
		return nil, fmt.Errorf("admin: NMS sessions: %w", err)
	}
	m := make(map[string]nms.LiveSession, len(ss))
	for _, x := range ss {
		m[x.FQDN] = x
	}
	return m, nil
}

// merge is what the channel says about rec, given NMS's live session ls
// (ok: it holds one; here: the record is homed at an NMS of this process,
// whose word on online is then the truth).
func merge(rec store.Node, ls nms.LiveSession, ok, here bool, now time.Time) Node {
	n := Node{
		FQDN: rec.FQDN, VIP6: rec.VIP6, VIP4: rec.VIP4,
		Observed4: rec.Locator.Observed4, Observed6: rec.Locator.Observed6, Locals: rec.Locator.Locals,
		NAT4: rec.Locator.NAT4.String(), NAT6: rec.Locator.NAT6.String(),
		CertSerial: rec.CertSerial, CertNotAfter: rec.CertNotAfter, HomeNMS: rec.HomeNMS,
		LastSeen: rec.Updated,
	}
	if rec.Session.ID != 0 && now.Before(rec.Session.Expires) {
		n.Session, n.SessionExpires = rec.Session.ID, rec.Session.Expires
		// Homed at no NMS of this process: a valid session in the
		// registry is the best knowledge there is.
		n.Online = !here
	}
	if ok {
		n.Online, n.Live = true, true
		n.Session, n.SessionExpires = ls.ID, ls.Expires
		n.LastSeen, n.From = ls.Seen, ls.From
		if n.CertSerial == "" {
			n.CertSerial = ls.Serial
		}
	}
	return n
}

// isNoCloud reports whether a dial error means nobody serves the socket.
func isNoCloud(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
}
