package debug

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxTreeBytes bounds what FetchTree reads: the server is usually ours, but
// the address comes from a command line.
const maxTreeBytes = 64 << 20

// FetchTree gets the actor tree from a debug server at addr ("host:port" or
// a full http:// URL base).
func FetchTree(ctx context.Context, addr string) (Tree, error) {
	base := addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	var t Tree
	if err := GetJSON(ctx, strings.TrimSuffix(base, "/")+PathActors, maxTreeBytes, &t); err != nil {
		return Tree{}, fmt.Errorf("debug: fetch tree from %s: %w", addr, err)
	}
	return t, nil
}

// GetJSON gets rawURL (http:// only: a debug endpoint serves plain HTTP) in
// one HTTP/1.1 request on its own connection and decodes the 200 answer's
// body, at most limit bytes, as JSON into v.
//
// It does not use http.Client on purpose: the client's Transport (dialing,
// pooling, proxies, HTTP/2) is about 0.4 MB of the node's binary, and the
// kernel maps nearly every page of the binary's loaded segments at rest.
// The node only ever asks its own debug endpoint for one answer, which this
// does in a few lines; TestNodeBinaryLinks (cmd/cyphonic) keeps the
// Transport out.
func GetJSON(ctx context.Context, rawURL string, limit int64, v any) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	if u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("%w: %q: want an http://host:port URL", ErrURL, rawURL)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return err
	}
	defer conn.Close()
	// The context bounds the whole exchange, not only the dial.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	// Written out rather than by Request.Write, whose IDNA host
	// conversion links x/net/idna and its tables (0.1 MB) for a host that
	// is an address or localhost.
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", u.RequestURI(), u.Host); err != nil {
		return wrapCtx(ctx, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodGet})
	if err != nil {
		return wrapCtx(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s", ErrStatus, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, limit)).Decode(v); err != nil {
		return fmt.Errorf("decode: %w", wrapCtx(ctx, err))
	}
	return nil
}

// Errors of GetJSON.
var (
	ErrURL    = errors.New("debug: bad URL")
	ErrStatus = errors.New("debug: answer not OK")
)

// wrapCtx names the context's error when it is why the connection failed
// (AfterFunc's deadline shows only as an i/o timeout).
func wrapCtx(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", context.Cause(ctx), err)
	}
	return err
}

// RenderTree prints the tree indented, one actor per line, with the last path
// element as the name:
//
//	node [node] running mailbox=0 restarts=0
//	  peers [peers] running mailbox=0 restarts=0
//	    bob.example.cyphonic [peer] handshaking mailbox=3 out=32/32 (queue-full 3548) in=0/32 restarts=2 last failure 12:00:01.250: handshake timeout (backoff 2/10 failures in 5m0s, delay 200ms)
func RenderTree(w io.Writer, t Tree) error {
	ew := &ErrWriter{W: w}
	var walk func(ns []Node, depth int)
	walk = func(ns []Node, depth int) {
		for _, n := range ns {
			renderNode(ew, n, depth)
			walk(n.Children, depth+1)
		}
	}
	walk(t.Actors, 0)
	if len(t.GaveUp) > 0 {
		fmt.Fprintln(ew, "gave up:")
		for _, n := range t.GaveUp {
			renderLine(ew, n.ID, n, 1) // full ID: its parent may be gone too
		}
	}
	return ew.Err
}

func renderNode(w io.Writer, n Node, depth int) {
	name := n.ID
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	renderLine(w, name, n, depth)
}

func renderLine(w io.Writer, name string, n Node, depth int) {
	state, _ := stateOf(n) // a peer's tunnel state rather than "running", as on the page
	fmt.Fprintf(w, "%s%s [%s] %s mailbox=%d", strings.Repeat("  ", depth), OneLine(name), OneLine(n.Kind), OneLine(state), n.Mailbox)
	for _, q := range n.Queues {
		fmt.Fprintf(w, " %s=%s", OneLine(q.Name), queueText(q))
	}
	fmt.Fprintf(w, " restarts=%d", n.Restarts)
	if n.LastFailure != "" {
		// Failure text may hold anything: keep it on one line.
		fmt.Fprintf(w, " last failure %s: %s", n.LastFailureAt.Local().Format(time.TimeOnly+".000"), OneLine(n.LastFailure))
	}
	if !n.NextRestartAt.IsZero() {
		fmt.Fprintf(w, " next restart %s", n.NextRestartAt.Local().Format(time.TimeOnly+".000"))
	}
	if sv := supervisionText(n.Supervision); sv != "" {
		fmt.Fprintf(w, " (%s)", OneLine(sv))
	}
	fmt.Fprintln(w)
}

// OneLine replaces control characters with '?', so text that came from the
// network (names, failure reasons) cannot break a line-based rendering.
func OneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// ErrWriter keeps the first write error, so a renderer can print freely and
// report a failed write once at the end (Err).
type ErrWriter struct {
	W   io.Writer
	Err error
}

func (e *ErrWriter) Write(p []byte) (int, error) {
	if e.Err != nil {
		return 0, e.Err
	}
	n, err := e.W.Write(p)
	e.Err = err
	return n, err
}
