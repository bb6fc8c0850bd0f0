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
	f.Add([]byte(`{"actors":[{"id":"node","kind":"node","children":[{"id":"node/x\n","last_failure":"<script>","status":"<SCRIPT>","info":{"<script>":"<script>"},"queues":[{"name":"<script>"}]}]}],"gave_up":[{"id":"a"}]}`))
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
		// The page has one script, its own; the tree part none.
		for path, scripts := range map[string]int{PathActorsHTML: 1, PathActorsHTML + "?part=tree": 0} {
			rec := httptest.NewRecorder()
			srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
			if rec.Code != 200 {
				t.Fatalf("%s: status %d", path, rec.Code)
			}
			if n := strings.Count(strings.ToLower(rec.Body.String()), "<script"); n != scripts {
				t.Fatalf("%s: %d <script> tags, want %d: unescaped markup from the tree", path, n, scripts)
			}
		}
	})
}
