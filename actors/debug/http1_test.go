package debug

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startHTTP1 serves h on a loopback port until the test ends.
func startHTTP1(t *testing.T, h http.Handler, headerTimeout time.Duration) (*http1Server, string) {
	t.Helper()
	return serveHTTP1(t, &http1Server{handler: h, readHeaderTimeout: headerTimeout, logger: slog.New(slog.DiscardHandler)})
}

// serveHTTP1 serves s on a loopback port until the test ends.
func serveHTTP1(t *testing.T, s *http1Server) (*http1Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, errServerClosed) {
			t.Errorf("Serve returned %v, want errServerClosed", err)
		}
	})
	return s, ln.Addr().String()
}

// rawExchange writes req on a new connection and returns everything the
// server sent until it closed the connection.
func rawExchange(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	// A server that closes with the request unread (too large) resets the
	// connection after its answer.
	if err != nil && !(errors.Is(err, syscall.ECONNRESET) && len(b) > 0) {
		t.Fatalf("read answer: %v (got %q)", err, b)
	}
	return string(b)
}

func TestHTTP1Server(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"peer":"`+r.URL.Query().Get("peer")+`","host":"`+r.Host+`"}`)
	})
	mux.HandleFunc("GET /sniff", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "<html><body>x") })
	mux.HandleFunc("GET /empty", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("GET /nocontent", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("GET /panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
	_, addr := startHTTP1(t, mux, 10*time.Second)

	for _, c := range []struct {
		name, req string
		want      []string // substrings of the raw answer
		not       []string
	}{
		{"json", "GET /json?peer=bob HTTP/1.1\r\nHost: localhost\r\n\r\n",
			[]string{"HTTP/1.1 200 OK\r\n", "Content-Type: application/json\r\n", "Connection: close\r\n", "\r\n\r\n" + `{"peer":"bob","host":"localhost"}`}, nil},
		{"HTTP/1.0", "GET /json HTTP/1.0\r\n\r\n", []string{"HTTP/1.1 200 OK\r\n", `{"peer":"","host":""}`}, nil},
		{"head", "HEAD /json HTTP/1.1\r\nHost: x\r\n\r\n", []string{"HTTP/1.1 200 OK\r\n", "Content-Type: application/json\r\n"}, []string{"peer"}},
		{"sniffed", "GET /sniff HTTP/1.1\r\nHost: x\r\n\r\n", []string{"Content-Type: text/html; charset=utf-8\r\n", "<html><body>x"}, nil},
		{"empty", "GET /empty HTTP/1.1\r\nHost: x\r\n\r\n", []string{"HTTP/1.1 200 OK\r\n", "Content-Length: 0\r\n"}, nil},
		{"no content", "GET /nocontent HTTP/1.1\r\nHost: x\r\n\r\n", []string{"HTTP/1.1 204 No Content\r\n"}, nil},
		{"not found", "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", []string{"HTTP/1.1 404 Not Found\r\n", "404 page not found"}, nil},
		{"method", "POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", []string{"HTTP/1.1 405 Method Not Allowed\r\n"}, nil},
		{"garbage", "hello\r\n\r\n", []string{"HTTP/1.1 400 Bad Request\r\n"}, nil},
		{"header too large", "GET /json HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", maxHeaderBytes) + "\r\n\r\n", []string{"HTTP/1.1 400 Bad Request\r\n"}, []string{"peer"}},
		{"panic", "GET /panic HTTP/1.1\r\nHost: x\r\n\r\n", nil, []string{"HTTP/1.1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := rawExchange(t, addr, c.req)
			for _, w := range c.want {
				if !strings.Contains(got, w) {
					t.Errorf("answer lacks %q:\n%s", w, got)
				}
			}
			for _, w := range c.not {
				if strings.Contains(got, w) {
					t.Errorf("answer has %q:\n%s", w, got)
				}
			}
		})
	}

	// net/http's client reads the unframed, close-delimited body.
	resp, err := http.Get("http://" + addr + "/json?peer=a%20b")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || string(b) != `{"peer":"a b","host":"`+addr+`"}` {
		t.Fatalf("http.Get = %d %q, %v", resp.StatusCode, b, err)
	}
	http.DefaultClient.CloseIdleConnections()
}

// TestHTTP1HeaderTimeout: a client that never finishes its headers is
// dropped after the header timeout, not held forever.
func TestHTTP1HeaderTimeout(t *testing.T) {
	_, addr := startHTTP1(t, http.NotFoundHandler(), 100*time.Millisecond)
	if got := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n"); !strings.Contains(got, "400 Bad Request") {
		t.Fatalf("answer to unfinished headers = %q, want a 400 and a close", got)
	}
}

// TestHTTP1Shutdown: Shutdown waits for a request being served; when its
// context ends first it closes the connection, which ends the request's
// context, and returns only after the handler did.
func TestHTTP1Shutdown(t *testing.T) {
	entered := make(chan struct{}, 2)
	release := make(chan struct{})
	handlerDone := make(chan struct{}, 2)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { handlerDone <- struct{}{} }()
		entered <- struct{}{}
		select {
		case <-release:
			_, _ = io.WriteString(w, "done")
		case <-r.Context().Done():
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &http1Server{handler: h, readHeaderTimeout: time.Second, logger: slog.New(slog.DiscardHandler)}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()

	// A request that finishes: Shutdown waits for it.
	c := dialGET(t, ln.Addr().String())
	<-entered
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v while a request was being served", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if line, _ := bufio.NewReader(c).ReadString('\n'); line != "HTTP/1.1 200 OK\r\n" {
		t.Fatalf("the request served across Shutdown answered %q", line)
	}
	c.Close()
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	<-handlerDone
	if err := <-served; !errors.Is(err, errServerClosed) {
		t.Fatalf("Serve returned %v", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("the listener still accepts after Shutdown")
	}
}

func TestHTTP1ShutdownDeadline(t *testing.T) {
	entered := make(chan struct{})
	h := http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done() // only the closed connection ends it
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &http1Server{handler: h, readHeaderTimeout: time.Second, logger: slog.New(slog.DiscardHandler)}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	c := dialGET(t, ln.Addr().String())
	defer c.Close()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown past its deadline = %v, want DeadlineExceeded", err)
	}
	if err := <-served; !errors.Is(err, errServerClosed) {
		t.Fatalf("Serve returned %v", err)
	}
}

// TestHTTP1ClientGone: a client that hangs up ends its request's context
// (what pprof's profile waits on).
func TestHTTP1ClientGone(t *testing.T) {
	entered := make(chan struct{})
	gone := make(chan struct{})
	_, addr := startHTTP1(t, http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
		close(gone)
	}), time.Second)
	c := dialGET(t, addr)
	<-entered
	c.Close()
	<-gone
}

func dialGET(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestHTTP1RequestBody: a request body sent after its headers (as pprof's
// POST to /debug/pprof/symbol may arrive) reaches the handler whole; the
// server's watch for a client that hangs up must not read from it.
func TestHTTP1RequestBody(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond) // the body arrives while the handler is busy
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_, _ = w.Write(b)
	})
	_, addr := startHTTP1(t, mux, 10*time.Second)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	const body = "0x401000+0x402000"
	if _, err := io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the server has read the headers and runs the handler
	if _, err := io.WriteString(c, body); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read answer: %v (got %q)", err, got)
	}
	if !strings.HasPrefix(string(got), "HTTP/1.1 200 OK\r\n") || !strings.HasSuffix(string(got), "\r\n\r\n"+body) {
		t.Fatalf("answer %q, want 200 with the body %q", got, body)
	}
}

// TestHTTP1MaxConns: connections beyond maxConns are answered 503 and
// closed while the others are served; once those end, new ones are served.
func TestHTTP1MaxConns(t *testing.T) {
	const limit = 2
	entered := make(chan struct{}, limit)
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			entered <- struct{}{}
			<-release
		}
		_, _ = io.WriteString(w, "ok")
	})
	_, addr := serveHTTP1(t, &http1Server{handler: h, readHeaderTimeout: 10 * time.Second, maxConns: limit, logger: slog.New(slog.DiscardHandler)})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the server's Shutdown, which waits for the handlers
	held := make(chan string, limit)
	for range limit {
		go func() { held <- rawExchangeErr(addr, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n") }()
		<-entered
	}
	if got := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 503 ") {
		t.Fatalf("connection over the limit: answer %q, want 503", got)
	}
	unblock()
	for range limit {
		if got := <-held; !strings.HasPrefix(got, "HTTP/1.1 200 OK\r\n") {
			t.Fatalf("held request: answer %q, want 200", got)
		}
	}
	// The served connections are gone from the count once their handlers
	// return; the next request is served (retried briefly: the count drops
	// just after the answer's last byte).
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if strings.HasPrefix(got, "HTTP/1.1 200 OK\r\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the held requests ended: answer %q, want 200", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rawExchangeErr is rawExchange for a goroutine: errors become the answer.
func rawExchangeErr(addr, req string) string {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return err.Error()
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// TestHTTP1WriteTimeout: a client that asks for a large answer and never
// reads it does not hold the handler: its write fails after writeTimeout.
func TestHTTP1WriteTimeout(t *testing.T) {
	writeErr := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		chunk := make([]byte, 64<<10)
		for range 4096 { // 256 MiB: far more than the socket buffers hold
			if _, err := w.Write(chunk); err != nil {
				writeErr <- err
				return
			}
		}
		writeErr <- nil
	})
	_, addr := serveHTTP1(t, &http1Server{handler: h, readHeaderTimeout: 10 * time.Second, writeTimeout: 200 * time.Millisecond, logger: slog.New(slog.DiscardHandler)})
	c := dialGET(t, addr) // and never read
	defer c.Close()
	select {
	case err := <-writeErr:
		if err == nil {
			t.Fatal("the handler wrote 256 MiB to a client that reads nothing")
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("write error %v, want a deadline", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the handler's write to a client that reads nothing still blocks after 20 s")
	}
}
