package admin

import (
	"html/template"
	"net/http"
)

// indexPage is the admin home: links for reading, small forms for the
// POST endpoints.
var indexPage = template.Must(template.New("index").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Weft admin</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 52em; color: #222; }
h1 { font-size: 1.4em; }
table { border-collapse: collapse; width: 100%; }
td { padding: .35em .6em; border-bottom: 1px solid #ddd; vertical-align: top; }
td:first-child { white-space: nowrap; font-family: ui-monospace, monospace; }
form { display: inline; }
.state { font-weight: bold; }
</style>
</head>
<body>
<h1>Weft admin</h1>
<p>State: <span class="state">{{.State}}</span> &middot; log level: <span class="state">{{.Level}}</span></p>
<table>
<tr><td><a href="ready">/ready</a></td><td>Readiness: LIVE, or 503 when initialising or draining.</td></tr>
<tr><td><a href="stats">/stats</a></td><td>All stats as <code>name: value</code> lines (<a href="stats?usedonly">used only</a>, <a href="stats?format=json">JSON</a>; <code>?filter=REGEX</code>).</td></tr>
<tr><td><a href="stats/prometheus">/stats/prometheus</a></td><td>Stats in the Prometheus exposition format, with Go runtime and process metrics.</td></tr>
<tr><td><a href="config_dump">/config_dump</a></td><td>The running configuration as JSON.</td></tr>
<tr><td><a href="clusters">/clusters</a></td><td>Upstream clusters and hosts with health (<a href="clusters?format=json">JSON</a>).</td></tr>
<tr><td><a href="listeners">/listeners</a></td><td>Listeners and their bound addresses (<a href="listeners?format=json">JSON</a>).</td></tr>
<tr><td><a href="logging">/logging</a></td><td>Log level.
  <form method="post" action="logging"><select name="level">{{range .Levels}}<option{{if eq . $.Level}} selected{{end}}>{{.}}</option>{{end}}</select> <button>set</button></form></td></tr>
<tr><td>/healthcheck/fail</td><td>Fail health checks and report DRAINING, before taking this proxy out of service.
  <form method="post" action="healthcheck/fail"><button>fail</button></form></td></tr>
<tr><td>/healthcheck/ok</td><td>Pass health checks again. <form method="post" action="healthcheck/ok"><button>ok</button></form></td></tr>
<tr><td><a href="debug/pprof/">/debug/pprof/</a></td><td>Go profiles: CPU, heap, goroutines, trace.</td></tr>
{{if .Quit}}<tr><td>/quitquitquit</td><td>Exit the process. <form method="post" action="quitquitquit"><button>quit</button></form></td></tr>{{end}}
</table>
</body>
</html>
`))

func (s *Server) handleIndex(w http.ResponseWriter, _ *http.Request) {
	state := "LIVE"
	switch {
	case s.hcFailed.Load():
		state = "DRAINING"
	case s.opts.Ready != nil && !s.opts.Ready():
		state = "INITIALIZING"
	}
	levels := make([]string, 0, len(logLevels))
	for _, l := range logLevels {
		if l.name != "warn" {
			levels = append(levels, l.name)
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	err := indexPage.Execute(w, struct {
		State, Level string
		Levels       []string
		Quit         bool
	}{state, levelName(s.level.Level()), levels, s.opts.Quit != nil})
	if err != nil {
		s.log.Debug("index page", "err", err)
	}
}
