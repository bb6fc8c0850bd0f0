package debug

import (
	"encoding/json"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzRenderTree feeds arbitrary JSON (what FetchTree would decode from a
// server) to the terminal renderer and the HTML page: neither may panic.
func FuzzRenderTree(f *testing.F) {
	f.Add([]byte(`{"actors":[{"id":"node","kind":"node","children":[{"id":"node/x\n","last_failure":"<script>"}]}],"gave_up":[{"id":"a"}]}`))
	f.Add([]byte(`{"actors":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var tr Tree
		if json.Unmarshal(data, &tr) != nil {
			return
		}
		if err := RenderTree(io.Discard, tr); err != nil {
			t.Fatal(err)
		}
		srv := NewServer(staticTree(tr), quiet)
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", PathActorsHTML, nil))
		if rec.Code != 200 {
			t.Fatalf("status %d", rec.Code)
		}
		if strings.Contains(rec.Body.String(), "<script") {
			t.Fatal("unescaped markup from the tree in the page")
		}
	})
}
