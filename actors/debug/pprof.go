package debug

import (
	"bufio"
	"bytes"
	"fmt"
	"html"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"time"
)

// The profiles under PathPprof, served with runtime/pprof and runtime/trace
// directly instead of net/http/pprof: that package renders its index with
// html/template, and text/template's reflection (MethodByName) makes the
// linker keep every exported method of every linked type, megabytes of a
// node's binary resident at rest (issue 12). Paths, parameters and formats
// are net/http/pprof's, so `go tool pprof http://…/debug/pprof/heap` and
// `…/profile?seconds=30` and `go tool trace` work as before. Not served:
// net/http/pprof's delta profiles (`heap?seconds=N`), which need a profile
// parser; take two profiles and compare them with `go tool pprof -base`.

// maxProfileSeconds bounds a CPU profile or trace request, so a forgotten
// request does not keep the profiler busy for ever.
const maxProfileSeconds = 600

// pprofIndex lists the runtime's profiles, or serves the one its last path
// element names (/debug/pprof/heap?debug=1).
func pprofIndex(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, PathPprof)
	if ok && name != "" {
		serveProfile(w, r, name)
		return
	}
	var b strings.Builder
	b.WriteString("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>/debug/pprof/</title></head><body>\n" +
		"<p>Profiles of this process (<code>go tool pprof http://HOST/debug/pprof/NAME</code>; " +
		"<code>?debug=1</code> for text):</p>\n<table>\n")
	for _, p := range pprof.Profiles() {
		n := html.EscapeString(p.Name())
		fmt.Fprintf(&b, "<tr><td>%d</td><td><a href=\"%s?debug=1\">%s</a></td></tr>\n", p.Count(), n, n)
	}
	b.WriteString("<tr><td></td><td><a href=\"profile?seconds=30\">profile</a> (CPU, 30 s)</td></tr>\n" +
		"<tr><td></td><td><a href=\"trace?seconds=5\">trace</a> (execution trace, 5 s)</td></tr>\n" +
		"</table>\n<p>goroutine stacks in full: <a href=\"goroutine?debug=2\">goroutine?debug=2</a></p>\n</body></html>\n")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = io.WriteString(w, b.String())
}

// serveProfile writes the named runtime profile: gzip'd protobuf by default,
// text with ?debug=N (N > 0); ?gc=1 collects garbage first (heap).
func serveProfile(w http.ResponseWriter, r *http.Request, name string) {
	p := pprof.Lookup(name)
	if p == nil {
		pprofError(w, http.StatusNotFound, "unknown profile "+strconv.Quote(name))
		return
	}
	if r.FormValue("seconds") != "" {
		pprofError(w, http.StatusBadRequest, "delta profiles (seconds=) are not served; take two and use go tool pprof -base")
		return
	}
	debug, _ := strconv.Atoi(r.FormValue("debug"))
	if name == "heap" && r.FormValue("gc") != "" {
		runtime.GC()
	}
	// Written to a buffer first, so that an error can still be an HTTP
	// error rather than a truncated profile.
	var b bytes.Buffer
	if err := p.WriteTo(&b, debug); err != nil {
		pprofError(w, http.StatusInternalServerError, "write profile: "+err.Error())
		return
	}
	pprofHeaders(w, name, debug)
	_, _ = w.Write(b.Bytes())
}

// pprofCPU is /debug/pprof/profile?seconds=N (default 30): a CPU profile of
// the next N seconds, or until the client goes away.
func pprofCPU(w http.ResponseWriter, r *http.Request) {
	d, ok := profileSeconds(w, r, 30)
	if !ok {
		return
	}
	var b bytes.Buffer
	if err := pprof.StartCPUProfile(&b); err != nil {
		pprofError(w, http.StatusInternalServerError, "could not enable CPU profiling: "+err.Error())
		return
	}
	sleep(r, d)
	pprof.StopCPUProfile()
	pprofHeaders(w, "profile", 0)
	_, _ = w.Write(b.Bytes())
}

// pprofTrace is /debug/pprof/trace?seconds=N (default 1): an execution trace
// of the next N seconds, for go tool trace.
func pprofTrace(w http.ResponseWriter, r *http.Request) {
	d, ok := profileSeconds(w, r, 1)
	if !ok {
		return
	}
	var b bytes.Buffer
	if err := trace.Start(&b); err != nil {
		pprofError(w, http.StatusInternalServerError, "could not enable tracing: "+err.Error())
		return
	}
	sleep(r, d)
	trace.Stop()
	pprofHeaders(w, "trace", 0)
	_, _ = w.Write(b.Bytes())
}

// pprofCmdline is the command line, NUL-separated, as net/http/pprof serves it.
func pprofCmdline(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = io.WriteString(w, strings.Join(os.Args, "\x00"))
}

// pprofSymbol answers pprof's symbol lookups: the program counters (hex,
// separated by '+') in the POST body or the GET query, one "0xPC name" line
// each, after "num_symbols: 1" (the protocol's "symbols available").
func pprofSymbol(w http.ResponseWriter, r *http.Request) {
	var out bytes.Buffer
	out.WriteString("num_symbols: 1\n")
	var in *bufio.Reader
	if r.Method == http.MethodPost {
		in = bufio.NewReader(io.LimitReader(r.Body, 1<<20))
	} else {
		in = bufio.NewReader(strings.NewReader(r.URL.RawQuery))
	}
	for {
		word, err := in.ReadSlice('+')
		if len(word) > 0 && word[len(word)-1] == '+' {
			word = word[:len(word)-1]
		}
		if pc, perr := strconv.ParseUint(string(word), 0, 64); perr == nil && pc != 0 {
			if f := runtime.FuncForPC(uintptr(pc)); f != nil {
				fmt.Fprintf(&out, "%#x %s\n", pc, f.Name())
			}
		}
		if err != nil {
			break
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(out.Bytes())
}

// profileSeconds reads ?seconds=, def when absent; it answers a bad or too
// long one itself (the debug server has no write timeout to check against).
func profileSeconds(w http.ResponseWriter, r *http.Request, def int) (time.Duration, bool) {
	sec := def
	if s := r.FormValue("seconds"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 || n > maxProfileSeconds {
			pprofError(w, http.StatusBadRequest, fmt.Sprintf("seconds must be 1 to %d", maxProfileSeconds))
			return 0, false
		}
		sec = n
	}
	d := time.Duration(sec) * time.Second
	return d, true
}

// sleep waits d or until the request's client goes away.
func sleep(r *http.Request, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
}

func pprofHeaders(w http.ResponseWriter, name string, debug int) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if debug > 0 {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
}

func pprofError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Del("Content-Disposition")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg+"\n")
}
