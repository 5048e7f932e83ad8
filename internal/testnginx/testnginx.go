// Package testnginx starts a private nginx for one test, configured like
// Document Server's shipped ds.conf (ds.conf.tmpl: "location /" proxies with
// HTTP/1.0 and "Connection: close", the versioned path with HTTP/1.1 and
// Upgrade) with its "upstream docservice" at an address the test chooses.
//
// The nginx is the real Debian binary, run in the foreground as a child of
// the test (testproc) in a private prefix on a free loopback port. It is
// stopped with SIGQUIT (nginx's graceful shutdown) when the test ends; when
// the test failed, its error and access logs are printed.
//
// The package is for tests only: Start takes a testing.TB and fails it.
package testnginx

import (
	_ "embed"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/healgate/healgate/internal/testproc"
)

// confTemplate is ds.conf.tmpl, rendered with a confData.
//
//go:embed ds.conf.tmpl
var confTemplate string

// confData is what ds.conf.tmpl is rendered with.
type confData struct {
	Prefix           string // private prefix directory: temp paths and logs
	Port             int    // nginx's listening port on 127.0.0.1
	Upstream         string // host:port of "upstream docservice"
	ProxyReadTimeout string // proxy_read_timeout and proxy_send_timeout, nginx syntax ("120s")
	RunAsRoot        bool   // emit "user root;" so workers can write the test's temp dirs
}

// Server is a private nginx started by Start. Its embedded Proc is the nginx
// master process.
type Server struct {
	*testproc.Proc

	// Addr is the loopback host:port nginx listens on.
	Addr string

	// Prefix is nginx's private prefix directory (temp paths, logs,
	// ds.conf), removed when the test ends.
	Prefix string
}

// URL returns the http URL of path (which starts with "/") on the server.
func (s *Server) URL(path string) string { return "http://" + s.Addr + path }

// Start starts the nginx binary at path nginx on a free loopback port with
// "upstream docservice" at upstream (host:port) and proxy_read_timeout and
// proxy_send_timeout of readTimeout (rounded to whole seconds), and waits
// until it accepts connections. The test's cleanup stops it with SIGQUIT and
// waits for it (SIGKILL to its process group after 10s) and, if the test
// failed, prints the tail of its error and access logs. A failed start fails
// t.
func Start(t testing.TB, nginx, upstream string, readTimeout time.Duration) *Server {
	t.Helper()
	tmpl, err := template.New("ds.conf").Option("missingkey=error").Parse(confTemplate)
	if err != nil {
		t.Fatalf("nginx template: %v", err)
	}
	prefix := t.TempDir()
	for _, d := range []string{"client_body", "proxy", "logs"} {
		if err := os.MkdirAll(filepath.Join(prefix, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(prefix, "ds.conf")
	errorLog := filepath.Join(prefix, "error.log")
	p, addr := testproc.StartOnFreePort(t, "nginx", func(addr string) *testproc.Proc {
		var b strings.Builder
		err := tmpl.Execute(&b, confData{
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
		return testproc.Start(t, "nginx", testproc.Options{StopSignal: syscall.SIGQUIT}, nginx,
			"-p", prefix, "-c", conf, "-e", errorLog,
			"-g", fmt.Sprintf("daemon off; pid %s; error_log %s info;", filepath.Join(prefix, "nginx.pid"), errorLog))
	})
	// Registered after testproc.Start's cleanup, so it runs first: the logs
	// are printed while the prefix still exists.
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
			t.Logf("---- nginx %s ----\n%s---- end of nginx %s ----", f, testproc.Tail(string(b)), f)
		}
	})
	return &Server{Proc: p, Addr: addr, Prefix: prefix}
}

// portOf returns addr's port.
func portOf(t testing.TB, addr string) int {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
