package admin

import (
	"html/template"
	"mime"
	"strings"
	"time"
)

// wantsHTML reports whether an Accept header prefers HTML to JSON, as a
// browser's does ("text/html,application/xhtml+xml,..."). Everything else,
// curl's "*/*", an empty header and "application/json" included, gets JSON.
func wantsHTML(accept string) bool {
	for part := range strings.SplitSeq(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case "text/html", "application/xhtml+xml":
			return true
		case "application/json":
			return false
		}
	}
	return false
}

// statusPage renders Status for operators; it refreshes itself every 5 s.
var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return time.Since(t).Round(time.Second).String() + " ago"
	},
	"ms": func(d time.Duration) string { return d.Round(100 * time.Microsecond).String() },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>healgate status</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f4f4f4}.ok{color:#080}.bad{color:#b00;font-weight:600}code{font-size:13px}
</style></head><body>
<h1>healgate {{.Version}}</h1>
<p>{{.Time.Format "2006-01-02 15:04:05 MST"}} — {{if .Ready}}<span class="ok">ready</span>{{else}}<span class="bad">not ready: no usable upstream</span>{{end}}
— <a href="?format=json">JSON</a>, <a href="/metrics">metrics</a></p>
<h2>Upstreams</h2>
<table><tr><th>name</th><th>url</th><th>role</th><th>breaker</th><th>ready</th><th>in flight</th></tr>
{{range .Upstreams}}<tr><td>{{.Name}}</td><td><code>{{.URL}}</code></td><td>{{if .Backup}}backup{{else}}primary{{end}}</td>
<td class="{{if eq .Breaker "closed"}}ok{{else}}bad{{end}}">{{.Breaker}}</td>
<td class="{{if .Ready}}ok{{else}}bad{{end}}">{{.Ready}}</td><td>{{.Inflight}}</td></tr>
{{end}}</table>
{{with .Healing}}
<h2>Health checks</h2>
<table><tr><th>upstream</th><th>check</th><th>up</th><th>last result</th><th>latency</th><th>when</th></tr>
{{range .Upstreams}}{{$u := .Name}}
<tr><td>{{$u}}</td><td>liveness <code>{{.Liveness.Target}}</code></td><td class="{{if .Liveness.Up}}ok{{else}}bad{{end}}">{{.Liveness.Up}}</td>
<td>{{.Liveness.Detail}} {{.Liveness.Error}}</td><td>{{ms .Liveness.Latency}}</td><td>{{ago .Liveness.At}}</td></tr>
<tr><td>{{$u}}</td><td>readiness <code>{{.Readiness.Target}}</code></td><td class="{{if .Readiness.Up}}ok{{else}}bad{{end}}">{{.Readiness.Up}}</td>
<td>{{.Readiness.Detail}} {{.Readiness.Error}}</td><td>{{ms .Readiness.Latency}}</td><td>{{ago .Readiness.At}}</td></tr>
{{end}}</table>
{{range .Targets}}
<h2>Healing {{.Name}} ({{.Action}}{{range .Units}} {{.}}{{end}})</h2>
<p>State <b class="{{if eq .Machine.State.String "healthy"}}ok{{else}}bad{{end}}">{{.Machine.State}}</b>{{with ago .Machine.Since}} since {{.}}{{end}}{{with .Machine.Reason}}: {{.}}{{end}}.
Restart budget left: {{.Machine.BudgetLeft}} of {{.Machine.BudgetRestarts}} per {{.Machine.BudgetWindow}}.
{{if .RestartDue}}<b class="bad">A restart is due: /healthz/upstream fails.</b>{{end}}{{if .Machine.DryRun}} Dry run: nothing is restarted.{{end}}</p>
{{with .UnitStates}}<table><tr><th>unit</th><th>state</th><th>main PID</th><th>restarts by systemd</th><th>last result</th></tr>
{{range .}}<tr><td>{{.Name}}</td><td>{{.ActiveState}}/{{.SubState}}</td><td>{{.MainPID}}</td><td>{{.NRestarts}}</td><td>{{.Result}}</td></tr>{{end}}</table>{{end}}
{{with .Dependencies}}<table><tr><th>dependency</th><th>probe</th><th>last result</th><th>latency</th></tr>
{{range $name, $p := .}}<tr><td>{{$name}}</td><td><code>{{$p.Target}}</code></td><td class="{{if $p.OK}}ok{{else}}bad{{end}}">{{$p.Detail}} {{$p.Error}}</td><td>{{ms $p.Latency}}</td></tr>{{end}}</table>{{end}}
<table><tr><th>when</th><th>event</th><th>reason</th><th>action</th><th>unit</th><th>result</th></tr>
{{range .Events}}<tr><td>{{.Time.Format "15:04:05"}}</td><td>{{.Kind}}</td><td>{{.Reason}}</td><td>{{.Action}}</td><td>{{.Unit}}</td><td>{{.Result}}</td></tr>
{{else}}<tr><td colspan="6">no events yet</td></tr>{{end}}</table>
{{end}}{{end}}
</body></html>
`))
