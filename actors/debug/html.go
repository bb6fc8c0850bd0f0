package debug

import (
	"html/template"
	"net/http"
)

// page renders the tree for humans. html/template escapes every field: actor
// names and failure texts can come from the network (FQDNs, panic values).
var page = template.Must(template.New("actors").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>actors</title>
<style>
body{font-family:monospace} ul{list-style:none;padding-left:1.5em}
.kind{color:#555} .fail{color:#b00} .state{color:#06c}
</style></head><body>
<h1>actors</h1>
<p>taken {{.Taken.Format "2006-01-02 15:04:05.000"}} · <a href="actors">JSON</a> · <a href="pprof/">pprof</a></p>
{{define "nodes"}}<ul>{{range .}}<li>{{template "node" .}}{{if .Children}}{{template "nodes" .Children}}{{end}}</li>{{end}}</ul>{{end}}
{{define "node"}}<b>{{.ID}}</b> <span class="kind">[{{.Kind}}]</span> <span class="state">{{.State}}</span>
mailbox={{.Mailbox}} processed={{.Processed}} restarts={{.Restarts}}
{{if .LastFailure}}<span class="fail">last failure {{.LastFailureAt.Format "15:04:05.000"}}: {{.LastFailure}}</span>{{end}}
{{if not .NextRestartAt.IsZero}}next restart {{.NextRestartAt.Format "15:04:05.000"}}{{end}}{{end}}
{{template "nodes" .Actors}}
{{if .GaveUp}}<h2>gave up</h2>{{template "nodes" .GaveUp}}{{end}}
</body></html>
`))

func (s *Server) serveHTML(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := page.Execute(w, s.tree.Snapshot()); err != nil {
		s.logger.Debug("debug: render actor tree", "err", err)
	}
}
