package debug

import (
	"crypto/sha256"
	"encoding/base64"
	"html/template"
	"net/http"
)

// The page's only style sheet and script, inline so that the page needs
// nothing but this server (it works offline and through the Host check),
// and allowed by hash in the Content-Security-Policy, so that nothing else
// inline would run even if some text escaped html/template.
const (
	pageStyle = `
body{font-family:monospace;margin:1em 2em;color:#222}
h1{font-size:1.3em;margin:0} h1 small{color:#666;font-weight:normal}
ul{list-style:none;padding-left:1.5em;margin:0} li{margin:.15em 0}
.kind,.dim,.old{color:#777} .ok{color:#080} .pending{color:#b60} .bad,.fail{color:#b00}
.state{font-weight:bold} .q{color:#04a} #live{padding:0 .3em}
`
	// The script fetches the tree as rendered here (?part=tree) rather than
	// the JSON: one renderer, html/template's, escapes every name and
	// failure text, and the page cannot disagree with itself.
	pageScript = `
(function(){
  var tree = document.getElementById("tree"), live = document.getElementById("live");
  function again(){ setTimeout(tick, 1000); }
  function tick(){
    if (document.hidden) { again(); return; } // nobody is looking
    fetch("actors.html?part=tree", {cache: "no-store"}).then(function(r){
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.text();
    }).then(function(t){
      tree.innerHTML = t;
      live.textContent = "live"; live.className = "ok";
    }).catch(function(e){
      live.textContent = "not updating: " + e.message; live.className = "bad";
    }).then(again);
  }
  again();
})();
`
)

// pageCSP allows the page's own style and script and fetches from this
// server, nothing else.
var pageCSP = "default-src 'none'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; " +
	"style-src '" + hashSource(pageStyle) + "'; script-src '" + hashSource(pageScript) + "'"

func hashSource(s string) string {
	h := sha256.Sum256([]byte(s))
	return "sha256-" + base64.StdEncoding.EncodeToString(h[:])
}

// page renders the tree for humans. html/template escapes every field: actor
// names and failure texts can come from the network (FQDNs, panic values).
// data-* attributes let tests read the DOM without parsing prose.
var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"style":  func() template.CSS { return template.CSS(pageStyle) },
	"script": func() template.JS { return template.JS(pageScript) },
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>{{.Daemon}} · actors</title>
<style>{{style}}</style></head><body>
<h1>{{.Daemon}} <small>{{.Version}}</small></h1>
<p class="dim">actor tree · <span id="live" class="pending">loading</span> · <a href="actors">JSON</a> · <a href="pprof/">pprof</a> · <a href="../metrics">metrics</a></p>
<div id="tree">{{template "tree" .}}</div>
<script>{{script}}</script>
</body></html>
{{define "tree"}}<p class="dim">taken <span id="taken">{{.Taken}}</span></p>
{{template "nodes" .Actors}}
{{if .GaveUp}}<h2>gave up</h2>{{template "nodes" .GaveUp}}{{end}}{{end}}
{{define "nodes"}}<ul>{{range .}}<li data-id="{{.ID}}" data-state="{{.State}}" data-restarts="{{.Restarts}}">{{template "node" .}}{{if .Children}}{{template "nodes" .Children}}{{end}}</li>{{end}}</ul>{{end}}
{{define "node"}}<b>{{.Name}}</b> <span class="kind">[{{.Kind}}]</span> <span class="state {{.StateClass}}">{{.State}}</span>
mailbox={{.Mailbox}}{{range .Queues}} <span class="q">{{.}}</span>{{end}} processed={{.Processed}} restarts={{.Restarts}}
{{- range .Info}} <span class="dim">{{.}}</span>{{end}}
{{- if .Supervision}} <span class="dim">· {{.Supervision}}</span>{{end}}
{{- if .NextRetry}} <span class="{{if .RetryPending}}pending{{else}}dim{{end}}" data-next-retry>next retry {{.NextRetry}}</span>{{end}}
{{- if .Failure}} <span class="{{if .FailureFresh}}fail{{else}}old{{end}}">last failure {{.FailureAge}}: {{.Failure}}</span>{{end}}{{end}}`))

func (s *Server) serveHTML(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", pageCSP)
	w.Header().Set("Cache-Control", "no-store")
	name := "page"
	if r.URL.Query().Get("part") == "tree" {
		name = "tree"
	}
	if err := page.ExecuteTemplate(w, name, newPageView(s.snapshot())); err != nil {
		s.logger.Debug("debug: render actor tree", "err", err)
	}
}
