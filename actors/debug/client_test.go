package debug

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestGetJSON(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			if r.URL.Query().Get("peer") != "a b" {
				http.Error(w, "query lost", http.StatusBadRequest)
				return
			}
			_, _ = w.Write([]byte(`{"n": 7}`))
		case "/big":
			_, _ = w.Write([]byte(`{"n": 123456789}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	for _, c := range []struct {
		name, url string
		limit     int64
		want      int
		wantErr   error // nil: any error when fail is set
		fail      bool
	}{
		{"ok", srv.URL + "/ok?peer=a+b", 1 << 10, 7, nil, false},
		{"not found", srv.URL + "/nope", 1 << 10, 0, ErrStatus, true},
		{"over limit", srv.URL + "/big", 8, 0, nil, true},
		{"https", "https://" + srv.Listener.Addr().String() + "/ok", 1 << 10, 0, ErrURL, true},
		{"no host", "http:///ok", 1 << 10, 0, ErrURL, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var v struct{ N int }
			err := GetJSON(context.Background(), c.url, c.limit, &v)
			if c.fail {
				if err == nil || (c.wantErr != nil && !errors.Is(err, c.wantErr)) {
					t.Fatalf("GetJSON(%s) = %v, want error %v", c.url, err, c.wantErr)
				}
				return
			}
			if err != nil || v.N != c.want {
				t.Fatalf("GetJSON(%s) = %d, %v; want %d", c.url, v.N, err, c.want)
			}
		})
	}
}

// TestGetJSONContext: a server that accepts but never answers does not
// hold GetJSON past its context.
func TestGetJSONContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	defer close(done)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		<-done
		c.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	var v struct{}
	if err := GetJSON(ctx, "http://"+ln.Addr().String()+"/x", 1<<10, &v); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GetJSON against a silent server = %v, want the context's deadline", err)
	}
}
