package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Errors of the client, for errors.Is.
var (
	// ErrNoCloud: nothing serves the socket (no cloud runs with that
	// data directory, or it runs as a user who cannot be reached).
	ErrNoCloud = errors.New("no cloud running")
	// ErrUnknownNode: the registry has no such FQDN.
	ErrUnknownNode = errors.New("unknown node")
	// ErrNoSession: the node has no session to end.
	ErrNoSession = errors.New("no session")
)

// Client speaks to a cloud's admin socket.
type Client struct {
	path string
	hc   *http.Client
}

// NewClient returns a client of the socket at path (DATA/admin.sock).
func NewClient(path string) *Client {
	d := net.Dialer{Timeout: 5 * time.Second}
	return &Client{path: path, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		},
		DisableKeepAlives: true,
	}}}
}

// Nodes lists every node the cloud's registry knows, ordered by FQDN.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	var out []Node
	return out, c.do(ctx, http.MethodGet, "/v1/nodes", &out)
}

// Node shows one node.
func (c *Client) Node(ctx context.Context, fqdn string) (Node, error) {
	var out Node
	return out, c.do(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(fqdn), &out)
}

// EndSession ends fqdn's session at the cloud's NMS.
func (c *Client) EndSession(ctx context.Context, fqdn string) (Ended, error) {
	var out Ended
	return out, c.do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(fqdn)+"/end-session", &out)
}

func (c *Client) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://cloud"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if isNoCloud(err) {
			return fmt.Errorf("%w with this data directory: nothing serves %s", ErrNoCloud, c.path)
		}
		return fmt.Errorf("admin socket %s: %w", c.path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("admin socket %s: %w", c.path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e apiError
		if json.Unmarshal(body, &e) != nil || e.Error == "" {
			return fmt.Errorf("admin socket %s: %s", c.path, resp.Status)
		}
		switch e.Code {
		case codeUnknownNode:
			return &refusal{ErrUnknownNode, e.Error}
		case codeNoSession:
			return &refusal{ErrNoSession, e.Error}
		}
		return errors.New(e.Error)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("admin socket %s: bad answer: %w", c.path, err)
	}
	return nil
}

// refusal is the cloud's message, which names the cause, as an error that
// is also its sentinel.
type refusal struct {
	kind error
	msg  string
}

func (r *refusal) Error() string { return r.msg }
func (r *refusal) Unwrap() error { return r.kind }
