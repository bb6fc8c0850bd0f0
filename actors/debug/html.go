package debug

import (
	"crypto/sha256"
	"encoding/base64"
	"html"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// The page's only style sheet and script, inline so that the page needs
// nothing but this server (it works offline and through the Host check),
// and allowed by hash in the Content-Security-Policy, so that nothing else
// inline would run even if some text escaped the escaping (esc).
const (
	pageStyle = `
body{font-family:monospace;margin:1em 2em;color:#222}
h1{font-size:1.3em;margin:0} h1 small{color:#666;font-weight:normal}
ul{list-style:none;padding-left:1.5em;margin:0} li{margin:.15em 0}
.kind,.dim,.old{color:#777} .ok{color:#080} .pending{color:#b60} .bad,.fail{color:#b00}
.state{font-weight:bold} .q{color:#04a} #live{padding:0 .3em}
`
	// The script fetches the tree as rendered here (?part=tree) rather than
	// the JSON: one renderer (writeTree) escapes every name and
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

// The page renders the tree for humans, written out here rather than with
// html/template: text/template's reflection (MethodByName) makes the linker
// keep every exported method of every linked type, which was 4 MB of the
// node's binary and 2 MiB of its RSS at rest (issue 12). Every text from the
// tree goes through esc (html.EscapeString: & ' < > "), which is enough for
// element text and for the double-quoted attributes below: actor names and
// failure texts can come from the network (FQDNs, panic values). Classes
// come from fixed sets (view.go). data-* attributes let tests read the DOM
// without parsing prose.
func writePage(w *strings.Builder, v pageView) {
	w.WriteString("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>")
	esc(w, v.Daemon)
	w.WriteString(" · actors</title>\n<style>" + pageStyle + "</style></head><body>\n<h1>")
	esc(w, v.Daemon)
	w.WriteString(" <small>")
	esc(w, v.Version)
	w.WriteString("</small></h1>\n" +
		`<p class="dim">actor tree · <span id="live" class="pending">loading</span> · <a href="actors">JSON</a> · <a href="pprof/">pprof</a> · <a href="../metrics">metrics</a></p>` +
		"\n<div id=\"tree\">")
	writeTree(w, v)
	w.WriteString("</div>\n<script>" + pageScript + "</script>\n</body></html>\n")
}

// writeTree is the part the page's script fetches again (?part=tree).
func writeTree(w *strings.Builder, v pageView) {
	w.WriteString(`<p class="dim">taken <span id="taken">`)
	esc(w, v.Taken)
	w.WriteString("</span></p>\n")
	writeNodes(w, v.Actors)
	w.WriteString("\n")
	if len(v.GaveUp) > 0 {
		w.WriteString("<h2>gave up</h2>")
		writeNodes(w, v.GaveUp)
	}
}

func writeNodes(w *strings.Builder, ns []nodeView) {
	w.WriteString("<ul>")
	for _, n := range ns {
		w.WriteString(`<li data-id="`)
		esc(w, n.ID)
		w.WriteString(`" data-state="`)
		esc(w, n.State)
		w.WriteString(`" data-restarts="` + strconv.Itoa(n.Restarts) + `">`)
		writeNode(w, n)
		if len(n.Children) > 0 {
			writeNodes(w, n.Children)
		}
		w.WriteString("</li>")
	}
	w.WriteString("</ul>")
}

func writeNode(w *strings.Builder, n nodeView) {
	w.WriteString("<b>")
	esc(w, n.Name)
	w.WriteString(`</b> <span class="kind">[`)
	esc(w, n.Kind)
	w.WriteString(`]</span> <span class="state `)
	esc(w, n.StateClass)
	w.WriteString(`">`)
	esc(w, n.State)
	w.WriteString("</span>\nmailbox=" + strconv.Itoa(n.Mailbox))
	for _, q := range n.Queues {
		w.WriteString(` <span class="q">`)
		esc(w, q)
		w.WriteString("</span>")
	}
	w.WriteString(" processed=" + strconv.FormatUint(n.Processed, 10) + " restarts=" + strconv.Itoa(n.Restarts))
	for _, s := range n.Info {
		w.WriteString(` <span class="dim">`)
		esc(w, s)
		w.WriteString("</span>")
	}
	if n.Supervision != "" {
		w.WriteString(` <span class="dim">· `)
		esc(w, n.Supervision)
		w.WriteString("</span>")
	}
	if n.NextRetry != "" {
		class := "dim"
		if n.RetryPending {
			class = "pending"
		}
		w.WriteString(` <span class="` + class + `" data-next-retry>next retry `)
		esc(w, n.NextRetry)
		w.WriteString("</span>")
	}
	if n.Failure != "" {
		class := "old"
		if n.FailureFresh {
			class = "fail"
		}
		w.WriteString(` <span class="` + class + `">last failure `)
		esc(w, n.FailureAge)
		w.WriteString(": ")
		esc(w, n.Failure)
		w.WriteString("</span>")
	}
}

// esc writes s escaped for HTML text and double-quoted attribute values.
func esc(w *strings.Builder, s string) { w.WriteString(html.EscapeString(s)) }

func (s *Server) serveHTML(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", pageCSP)
	w.Header().Set("Cache-Control", "no-store")
	var b strings.Builder
	if r.URL.Query().Get("part") == "tree" {
		writeTree(&b, newPageView(s.snapshot()))
	} else {
		writePage(&b, newPageView(s.snapshot()))
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		s.logger.Debug("debug: render actor tree", "err", err)
	}
}
