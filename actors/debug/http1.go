package debug

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// http1Server serves an http.Handler over HTTP/1.1, one request per
// connection (every answer says Connection: close), for the debug endpoint.
//
// It replaces http.Server on purpose. http.Server links its HTTP/2 server
// and, through it, crypto/tls's client and server: about 0.8 MB of the
// node's binary, and the node has nearly every page of its binary resident
// at rest (issue 12). The debug endpoint answers a person's or a script's
// occasional GET on loopback; it needs neither keep-alive, nor HTTP/2, nor
// TLS. Parsing is still net/http's (http.ReadRequest, bounded by
// maxHeaderBytes and the header timeout), and handlers are ordinary
// http.Handlers. TestNodeBinaryLinks (cmd/cyphonic) keeps http.Server out.
//
// Unlike http.Server it bounds what clients can hold: at most maxConns
// connections are served at once (more are answered 503 and closed), and
// every write to a client must finish within writeTimeout, so a client
// that stops reading frees its handler. The bound is per write, not per
// answer, because /debug/pprof/profile streams for as long as it is asked.
type http1Server struct {
	handler           http.Handler
	readHeaderTimeout time.Duration
	writeTimeout      time.Duration // per write; 0: defaultWriteTimeout
	maxConns          int           // 0: defaultMaxConns
	logger            *slog.Logger

	mu       sync.Mutex
	ln       net.Listener
	conns    map[net.Conn]struct{}
	closing  bool
	handlers sync.WaitGroup // one per connection being served
}

// maxHeaderBytes bounds a request's line and headers, as http.Server's
// default does.
const maxHeaderBytes = 1 << 20

// The defaults of the bounds on clients. An operator's curl or a
// dashboard's scraper needs a handful of connections, not hundreds.
const (
	defaultMaxConns     = 32
	defaultWriteTimeout = 10 * time.Second
)

// busyAnswer is what a connection over maxConns gets before it is closed.
const busyAnswer = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nRetry-After: 1\r\n\r\n503 too many debug connections\n"

// errServerClosed is what Serve returns after Shutdown (http.Server's).
var errServerClosed = http.ErrServerClosed

// Serve accepts connections on ln until Shutdown, serving each on a
// goroutine of its own.
func (s *http1Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		_ = ln.Close()
		return errServerClosed
	}
	s.ln = ln
	s.conns = make(map[net.Conn]struct{})
	s.mu.Unlock()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return errServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("debug: accept: %w", err)
			}
			// Out of descriptors and the like: wait and try again, as
			// http.Server does, rather than stop serving.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.logger.Warn("debug: accept", "err", err, "retry in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			_ = c.Close()
			return errServerClosed
		}
		if len(s.conns) >= cmp.Or(s.maxConns, defaultMaxConns) {
			s.mu.Unlock()
			// A fresh connection's send buffer is empty, so this short
			// write does not block the accept loop; the deadline makes sure.
			_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			_, _ = io.WriteString(c, busyAnswer)
			_ = c.Close()
			s.logger.Warn("debug: connection refused: too many open", "remote", c.RemoteAddr().String(), "max", cmp.Or(s.maxConns, defaultMaxConns))
			continue
		}
		s.conns[c] = struct{}{}
		s.handlers.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

// Shutdown stops accepting and waits for the requests being served; when
// ctx ends first it closes their connections, waits for their handlers to
// return, and returns ctx's error.
func (s *http1Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	if s.ln != nil {
		_ = s.ln.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.handlers.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

func (s *http1Server) serveConn(c net.Conn) {
	ctx, cancel := context.WithCancel(context.Background())
	readDone := make(chan struct{})
	reading := false
	defer func() {
		cancel()
		_ = c.Close()
		if reading {
			<-readDone // the Close ended its read: no goroutine outlives the request
		}
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.handlers.Done()
	}()
	_ = c.SetReadDeadline(time.Now().Add(s.readHeaderTimeout))
	lr := &io.LimitedReader{R: c, N: maxHeaderBytes}
	req, err := http.ReadRequest(bufio.NewReader(lr))
	if err != nil {
		if !errors.Is(err, io.EOF) {
			_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request\n")
		}
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	// Like http.Server, cancel the request's context when its client goes
	// away: a GET has no body, so any read that returns means EOF (or a
	// pipelined request, which this server does not serve either way). The
	// read ends at the latest when the deferred Close runs.
	//
	// A request with a body (pprof's POST to /debug/pprof/symbol) is not
	// watched: the watch would read the body's bytes from under the
	// handler; instead its body must arrive within the header timeout, so
	// a client that never sends it does not hold the handler.
	if req.Body != http.NoBody {
		_ = c.SetReadDeadline(time.Now().Add(s.readHeaderTimeout))
	} else {
		reading = true
		go func() {
			defer close(readDone)
			var b [1]byte
			_, _ = c.Read(b[:])
			cancel()
		}()
	}
	req.RemoteAddr = c.RemoteAddr().String()
	req = req.WithContext(ctx)
	w := &http1Writer{conn: c, bw: bufio.NewWriter(deadlineWriter{c, cmp.Or(s.writeTimeout, defaultWriteTimeout)}), header: http.Header{}, head: req.Method == http.MethodHead}
	defer func() {
		if p := recover(); p != nil {
			if err, ok := p.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				return
			}
			s.logger.Error("debug: handler panicked", "path", req.URL.Path, "panic", p)
			return
		}
		w.finish()
	}()
	s.handler.ServeHTTP(w, req)
}

// deadlineWriter writes to a connection, each write bounded by timeout.
type deadlineWriter struct {
	conn    net.Conn
	timeout time.Duration
}

func (d deadlineWriter) Write(p []byte) (int, error) {
	_ = d.conn.SetWriteDeadline(time.Now().Add(d.timeout))
	return d.conn.Write(p)
}

// http1Writer is the http.ResponseWriter of one request: the status line
// and headers go out at the first Write (or WriteHeader), the body after
// them unframed, ended by closing the connection.
type http1Writer struct {
	conn   net.Conn
	bw     *bufio.Writer
	header http.Header
	head   bool // a HEAD request: headers only
	wrote  bool
	noBody bool // the status allows no body (1xx, 204, 304)
	err    error
}

func (w *http1Writer) Header() http.Header { return w.header }

func (w *http1Writer) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote = true
	w.noBody = code < 200 || code == http.StatusNoContent || code == http.StatusNotModified
	text := http.StatusText(code)
	if text == "" {
		text = "status code " + strconv.Itoa(code)
	}
	w.header.Set("Connection", "close")
	if w.header.Get("Date") == "" {
		w.header.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	_, _ = fmt.Fprintf(w.bw, "HTTP/1.1 %03d %s\r\n", code, text)
	_ = w.header.Write(w.bw)
	_, w.err = w.bw.WriteString("\r\n")
}

func (w *http1Writer) Write(p []byte) (int, error) {
	if !w.wrote {
		if w.header.Get("Content-Type") == "" && w.header.Get("Content-Encoding") == "" {
			w.header.Set("Content-Type", http.DetectContentType(p))
		}
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.head {
		return len(p), nil
	}
	if w.noBody {
		return 0, http.ErrBodyNotAllowed
	}
	n, err := w.bw.Write(p)
	w.err = err
	return n, err
}

// Flush sends what is buffered (http.Flusher), for streamed answers.
func (w *http1Writer) Flush() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.err == nil {
		w.err = w.bw.Flush()
	}
}

// finish sends the headers if the handler wrote nothing, and the rest.
func (w *http1Writer) finish() {
	if !w.wrote {
		if w.header.Get("Content-Length") == "" {
			w.header.Set("Content-Length", "0")
		}
		w.WriteHeader(http.StatusOK)
	}
	if w.err == nil {
		_ = w.bw.Flush()
	}
}
