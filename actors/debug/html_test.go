package debug

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
)

// TestPageEscapesTreeText: the page is written without html/template, so
// every text from the tree (names, kinds, statuses, failures, info; any of
// them can come from the network) must reach it escaped, in element text
// and in the quoted attributes alike.
func TestPageEscapesTreeText(t *testing.T) {
	const evil = `x"><script>alert('1')</script>&`
	const escaped = `x&#34;&gt;&lt;script&gt;alert(&#39;1&#39;)&lt;/script&gt;&amp;`
	now := time.Now()
	tree := Tree{Taken: now, Actors: []Node{{
		ID: "node/" + evil, Kind: evil, State: supervise.StateBackoff, Status: evil,
		LastFailure: evil, LastFailureAt: now.Add(-time.Second), NextRestartAt: now.Add(time.Second),
		Info: map[string]string{evil: evil}, Queues: []supervise.Queue{{Name: evil, Len: 1}},
	}}, GaveUp: []Node{{ID: evil, Kind: evil, State: supervise.StateGaveUp}}}
	srv := NewServer(staticTree(tree), quiet)
	srv.Describe(evil, evil)
	for _, path := range []string{PathActorsHTML, PathActorsHTML + "?part=tree"} {
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		body := rec.Body.String()
		if strings.Contains(body, "alert('1')") || strings.Contains(body, `x">`) {
			t.Errorf("%s: unescaped text from the tree:\n%s", path, body)
		}
		for _, want := range []string{
			`<li data-id="node/` + escaped + `" data-state="`,
			`<b>` + escaped + `</b> <span class="kind">[` + escaped + `]</span>`,
			`last failure 1 s ago: ` + escaped + `</span>`,
			`<span class="dim">` + escaped + `=` + escaped + `</span>`,
			`<span class="q">` + escaped + ` 1</span>`,
			`<h2>gave up</h2><ul><li data-id="` + escaped + `"`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("%s: %q not in the page:\n%s", path, want, body)
			}
		}
		if path == PathActorsHTML && !strings.Contains(body, "<title>"+escaped+" · actors</title>") {
			t.Errorf("title not escaped:\n%s", body)
		}
	}
}
