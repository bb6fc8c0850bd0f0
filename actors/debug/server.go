// Package debug serves a daemon's live actor tree (JSON and HTML), pprof and
// any extra handlers (such as /metrics) on a mux of its own, and fetches and
// prints that tree on the client side (cyphonic actors).
package debug

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	rdebug "runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
)

// Tree is the actor tree as served and fetched.
type Tree = supervise.Tree

// Node is one actor in a Tree.
type Node = supervise.Node

// TreeSource provides the tree; *supervise.Registry implements it.
type TreeSource interface {
	Snapshot() supervise.Tree
}

// Paths served.
const (
	PathActors     = "/debug/actors"
	PathActorsHTML = "/debug/actors.html"
	PathPprof      = "/debug/pprof/"
)

// ErrStarted is returned by Start on a server that was already started.
var ErrStarted = errors.New("debug: server already started")

// Server is the debug HTTP server. Register extra handlers with Handle before
// Start.
type Server struct {
	mux    *http.ServeMux
	tree   TreeSource
	logger *slog.Logger

	// Set before Start (Describe, Annotate), read by every request.
	daemon, version string
	annotate        []func(*Tree)

	mu      sync.Mutex
	srv     *http1Server
	stopped chan struct{} // closed when Serve and the context watcher are done
}

// NewServer builds the mux: the tree at PathActors (JSON) and PathActorsHTML,
// an index at /debug/, and pprof under PathPprof. nil logger: slog.Default().
func NewServer(tree TreeSource, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{mux: http.NewServeMux(), tree: tree, logger: logger, version: BuildVersion()}
	s.mux.HandleFunc("GET "+PathActors, s.serveJSON)
	s.mux.HandleFunc("GET "+PathActorsHTML, s.serveHTML)
	s.mux.HandleFunc("GET /debug/{$}", s.serveHTML)
	// net/http/pprof's paths, served by pprof.go without that package.
	s.mux.HandleFunc(PathPprof, pprofIndex)
	s.mux.HandleFunc(PathPprof+"cmdline", pprofCmdline)
	s.mux.HandleFunc(PathPprof+"profile", pprofCPU)
	s.mux.HandleFunc(PathPprof+"symbol", pprofSymbol)
	s.mux.HandleFunc(PathPprof+"trace", pprofTrace)
	return s
}

// Handle mounts an extra handler, e.g. Handle("/metrics", promhttp.HandlerFor(…)).
// It panics on a conflicting pattern, like http.ServeMux.Handle.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Describe names the daemon the tree belongs to (a node's FQDN, "cloud
// services …") and its version ("" keeps BuildVersion's), for the page's
// title and the JSON. Call it before Start.
func (s *Server) Describe(daemon, version string) {
	s.daemon = daemon
	if version != "" {
		s.version = version
	}
}

// Annotate adds f, which every served snapshot passes through, so the
// actors' owners can fill their nodes' Status, Queues and Info from their
// own state when someone looks (Tree.Walk visits the nodes). f runs on the
// request's goroutine: it must only read thread-safe state, never ask an
// actor. Call it before Start.
func (s *Server) Annotate(f func(*Tree)) { s.annotate = append(s.annotate, f) }

// snapshot is the tree as served: the source's, described and annotated.
func (s *Server) snapshot() Tree {
	t := s.tree.Snapshot()
	t.Daemon, t.Version = s.daemon, s.version
	for _, f := range s.annotate {
		f(&t)
	}
	return t
}

// BuildVersion is the running binary's module version and VCS revision, as
// the Go toolchain stamped them ("(devel) 1a2b3c4d5e6f+dirty").
func BuildVersion() string {
	bi, ok := rdebug.ReadBuildInfo()
	if !ok {
		return ""
	}
	v := bi.Main.Version
	var rev, dirty string
	for _, st := range bi.Settings {
		switch st.Key {
		case "vcs.revision":
			rev = st.Value[:min(len(st.Value), 12)]
		case "vcs.modified":
			if st.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	// Since Go 1.24 the module version of a VCS build already names the
	// revision (v0.0.0-20261201112233-1a2b3c4d5e6f+dirty).
	if rev != "" && !strings.Contains(v, rev) {
		v += " " + rev + dirty
	}
	return strings.TrimSpace(v)
}

// Handler returns the mux, for tests and for embedding in another server
// (which then checks the Host itself: Start's guard is not in it).
func (s *Server) Handler() http.Handler { return s.mux }

// Start listens on addr (":0" picks a port) and serves until ctx ends or
// Shutdown is called. It returns the bound address. Requests whose Host
// header is neither localhost, a loopback address nor the listen address
// get 403 (DNS rebinding, see allowedHost).
func (s *Server) Start(ctx context.Context, addr string) (net.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return nil, ErrStarted
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug: listen %s: %w", addr, err)
	}
	var listen netip.Addr
	if ta, ok := ln.Addr().(*net.TCPAddr); ok {
		listen = ta.AddrPort().Addr()
	}
	srv := &http1Server{
		handler:           hostGuard(s.mux, listen),
		readHeaderTimeout: 10 * time.Second,
		logger:            s.logger,
	}
	s.srv = srv
	s.stopped = make(chan struct{})

	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, errServerClosed) {
			s.logger.Error("debug server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	stopped := s.stopped
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
			shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(shutdownCtx)
		case <-served:
		}
		<-served
	}()
	s.logger.Info("debug server listening", "addr", ln.Addr().String())
	return ln.Addr(), nil
}

// Shutdown stops a started server gracefully and waits for its goroutines.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	srv, stopped := s.srv, s.stopped
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	select {
	case <-stopped:
	case <-ctx.Done():
		return fmt.Errorf("debug: shutdown: %w", ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("debug: shutdown: %w", err)
	}
	return nil
}

func (s *Server) serveJSON(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s.snapshot()); err != nil {
		s.logger.Debug("debug: write actor tree", "err", err)
	}
}
