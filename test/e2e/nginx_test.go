package e2e

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"
)

//go:embed nginx/ds.conf.tmpl
var nginxTemplateText string

// nginxTemplate is parsed once; templates are safe for concurrent use.
var nginxTemplate = template.Must(template.New("ds.conf").Option("missingkey=error").Parse(nginxTemplateText))

// nginxConfig is the data nginx/ds.conf.tmpl is rendered with.
type nginxConfig struct {
	Prefix           string // private prefix directory: temp paths and logs
	Port             int    // nginx's listening port on 127.0.0.1
	Upstream         string // host:port of "upstream docservice" (healgate)
	ProxyReadTimeout string // proxy_read_timeout and proxy_send_timeout, nginx syntax ("120s")
	RunAsRoot        bool   // emit "user root;" so workers can write the test's temp dirs
}

// nginxProc is a private nginx instance owned by one test.
type nginxProc struct {
	*proc
	addr   string // 127.0.0.1:port
	prefix string
}

// url returns the nginx URL of path (which starts with "/").
func (n *nginxProc) url(path string) string { return "http://" + n.addr + path }

// startNginx starts a private nginx on a free loopback port, configured like
// Document Server's ds.conf with its "upstream docservice" at upstream, and
// waits until it accepts. It is stopped with SIGQUIT (graceful shutdown) and
// waited for in t.Cleanup; on failure its error log is printed.
func startNginx(t *testing.T, upstream string, readTimeout time.Duration) *nginxProc {
	t.Helper()
	prefix := t.TempDir()
	for _, d := range []string{"client_body", "proxy", "logs"} {
		if err := os.MkdirAll(filepath.Join(prefix, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	n := &nginxProc{prefix: prefix}
	p, addr := startWithPort(t, "nginx", func(addr string) *proc {
		conf := filepath.Join(prefix, "ds.conf")
		var b strings.Builder
		err := nginxTemplate.Execute(&b, nginxConfig{
			Prefix:           prefix,
			Port:             portOf(t, addr),
			Upstream:         upstream,
			ProxyReadTimeout: fmt.Sprintf("%ds", int(readTimeout.Round(time.Second)/time.Second)),
			RunAsRoot:        os.Geteuid() == 0,
		})
		if err != nil {
			t.Fatalf("render nginx config: %v", err)
		}
		if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		errorLog := filepath.Join(prefix, "error.log")
		return startProc(t, "nginx", procOptions{stopSignal: syscall.SIGQUIT}, bin.nginx,
			"-p", prefix, "-c", conf, "-e", errorLog,
			"-g", fmt.Sprintf("daemon off; pid %s; error_log %s info;", filepath.Join(prefix, "nginx.pid"), errorLog))
	})
	n.proc, n.addr = p, addr
	// Registered after startProc's cleanup, so it runs first: the logs are
	// printed while the prefix still exists.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, f := range []string{"error.log", "access.log"} {
			b, err := os.ReadFile(filepath.Join(prefix, f))
			if err != nil {
				t.Logf("nginx %s: %v", f, err)
				continue
			}
			if len(b) > outputTail {
				b = b[len(b)-outputTail:]
			}
			t.Logf("---- nginx %s ----\n%s---- end of nginx %s ----", f, b, f)
		}
	})
	return n
}
