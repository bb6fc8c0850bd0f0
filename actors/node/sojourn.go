package node

import (
	"net/http"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
)

// PathSojourn is where the node serves its data plane's per-stage sojourn
// histograms as text on the debug address (where a batch waits under
// load). GET with ?reset=1 zeroes them and switches recording on (it is
// off until then, and costs a few clock reads per batch once on).
const PathSojourn = "/debug/sojourn"

func sojournHandler(dp *dataplane.Dataplane) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if r.URL.Query().Get("reset") == "1" {
			dp.SojournReset()
			_, _ = w.Write([]byte("reset; recording\n"))
			return
		}
		_ = dp.WriteSojourn(w)
	})
}
