package debug

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// profileStrings parses a gzip'd pprof profile (profile.proto) far enough
// to check it is one: the top-level fields, and its string table (field 6),
// which names the sample types ("inuse_space", "cpu").
func profileStrings(t *testing.T, body []byte) (strs []string, samples int) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("not gzip: %v (%q…)", err, body[:min(len(body), 40)])
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("bad tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			t.Fatalf("field %d: %v", num, protowire.ParseError(m))
		}
		if typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b)
			switch num {
			case 2: // sample
				samples++
			case 6: // string_table
				strs = append(strs, string(v))
			}
		}
		b = b[m:]
	}
	return strs, samples
}

// TestPprofWithoutNetHTTPPprof fetches what `go tool pprof` and `go tool
// trace` fetch from the debug endpoint, which serves them without
// net/http/pprof (and its html/template), and checks the formats.
func TestPprofWithoutNetHTTPPprof(t *testing.T) {
	srv := httptest.NewServer(NewServer(staticTree(Tree{}), quiet).Handler())
	t.Cleanup(srv.Close)
	get := func(path string, wantCode int) (*http.Response, []byte) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != wantCode {
			t.Fatalf("GET %s: status %d, want %d: %s", path, resp.StatusCode, wantCode, body)
		}
		return resp, body
	}

	// Something to profile while the CPU profile runs.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		x := 0
		for {
			select {
			case <-stop:
				return
			default:
			}
			for i := range 1 << 16 {
				x ^= i * i
			}
			_ = x
		}
	}()
	for _, c := range []struct {
		path, want string // want: a sample type's name in the string table
	}{
		{"/debug/pprof/heap", "inuse_space"},
		{"/debug/pprof/heap?gc=1", "inuse_space"},
		{"/debug/pprof/allocs", "alloc_space"},
		{"/debug/pprof/goroutine", "goroutine"},
		{"/debug/pprof/profile?seconds=1", "cpu"},
	} {
		resp, body := get(c.path, 200)
		if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
			t.Errorf("%s: Content-Type %q", c.path, ct)
		}
		strs, samples := profileStrings(t, body)
		if !slices.Contains(strs, c.want) {
			t.Errorf("%s: %q not in the string table %q", c.path, c.want, strs[:min(len(strs), 10)])
		}
		if c.path == "/debug/pprof/goroutine" && samples == 0 {
			t.Errorf("%s: no samples", c.path)
		}
	}
	close(stop)
	<-done

	_, body := get("/debug/pprof/heap?debug=1", 200)
	if !strings.HasPrefix(string(body), "heap profile: ") || !strings.Contains(string(body), "# runtime.MemStats") {
		t.Errorf("heap?debug=1 is not the legacy text form (test/perf reads its MemStats): %.200s", body)
	}
	_, body = get("/debug/pprof/goroutine?debug=2", 200)
	if !strings.Contains(string(body), "goroutine ") {
		t.Errorf("goroutine?debug=2: %.200s", body)
	}
	_, body = get("/debug/pprof/trace?seconds=1", 200)
	if !bytes.HasPrefix(body, []byte("go 1.")) {
		t.Errorf("trace: %q… is not a runtime/trace header", body[:min(len(body), 16)])
	}
	_, body = get("/debug/pprof/", 200)
	for _, want := range []string{`href="heap?debug=1"`, `href="goroutine?debug=1"`, `href="profile?seconds=30"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("index: %q not in\n%s", want, body)
		}
	}
	_, body = get("/debug/pprof/cmdline", 200)
	if len(body) == 0 {
		t.Error("cmdline: empty")
	}
	// pprof's symbol protocol: "num_symbols: 1", then one line per known PC.
	_, body = get("/debug/pprof/symbol", 200)
	if string(body) != "num_symbols: 1\n" {
		t.Errorf("symbol: %q", body)
	}

	pc := reflect.ValueOf(profileStrings).Pointer()
	resp, err := http.Post(srv.URL+"/debug/pprof/symbol", "text/plain", strings.NewReader(fmt.Sprintf("%#x+0x1", pc)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("num_symbols: 1\n%#x github.com/cyphonic/cyphonic-go/actors/debug.profileStrings\n", pc); string(body) != want {
		t.Errorf("symbol lookup: %q, want %q", body, want)
	}

	get("/debug/pprof/nosuch", 404)
	get("/debug/pprof/heap?seconds=5", 400)
	get("/debug/pprof/profile?seconds=0", 400)
	get("/debug/pprof/profile?seconds=x", 400)
	get("/debug/pprof/trace?seconds=100000", 400)
}
