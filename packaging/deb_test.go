package packaging_test

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/healgate/healgate/internal/testproc"
	"github.com/healgate/healgate/test/systemdtest"
)

// TestDebInstallsStartsAndRemoves builds the .deb with build.sh and
// installs it with dpkg into a test system of its own, whose /etc, /usr and
// /var/lib/dpkg are overlays on private tmpfs (the host's stay untouched):
// the install creates the user and leaves healgate disabled, "systemctl
// start" returns with healgate ready and answering, "dpkg -r" stops it and
// keeps the config, "dpkg -P" deletes the config.
func TestDebInstallsStartsAndRemoves(t *testing.T) {
	lookTool(t, "dpkg", "dpkg")
	dist := t.TempDir()
	build := exec.Command("bash", "build.sh", "deb")
	build.Env = append(os.Environ(), "DIST="+dist, "VERSION=0.0.1+test")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build.sh deb: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dist, "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("build.sh made %d .deb files in %s", len(debs), dist)
	}
	deb, err := os.ReadFile(debs[0])
	if err != nil {
		t.Fatal(err)
	}

	s := systemdtest.Boot(t, systemdtest.Options{})
	const pkg = "/run/healgate-test/healgate.deb"
	if err := s.WriteFile(pkg, deb, 0o644); err != nil {
		t.Fatal(err)
	}
	// Private overlays for everything dpkg and the maintainer scripts write.
	script := "set -eu\n"
	for _, dir := range []string{"/etc", "/usr", "/var/lib/dpkg"} {
		ov := "/run/healgate-test/overlay" + strings.ReplaceAll(dir, "/", "_")
		script += fmt.Sprintf("mkdir -p %[1]s/upper %[1]s/work\nmount -t overlay overlay -o lowerdir=%[2]s,upperdir=%[1]s/upper,workdir=%[1]s/work %[2]s\n", ov, dir)
	}
	if out, err := s.Exec("sh", "-c", script); err != nil {
		t.Fatalf("mounting the overlays: %v\n%s", err, out)
	}
	if _, err := s.Exec("getent", "passwd", "healgate"); err == nil {
		t.Fatal("user healgate exists before the install: the test would prove nothing")
	}
	dpkg := func(args ...string) string {
		t.Helper()
		out, err := s.Exec(append([]string{"dpkg", "--log=/dev/null", "--force-confdef", "--force-confold"}, args...)...)
		if err != nil {
			t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}

	dpkg("-i", pkg)
	if _, err := s.Exec("getent", "passwd", "healgate"); err != nil {
		t.Errorf("no healgate user after install: %v", err)
	}
	if out, _ := s.Exec("stat", "-c", "%U:%G %a", "/etc/healgate", "/etc/healgate/healgate.yaml"); out != "root:healgate 750\nroot:healgate 640\n" {
		t.Errorf("/etc/healgate and its config: %q, want root:healgate 750 and 640", out)
	}
	if st, _ := s.Systemctl("is-enabled", "healgate.service"); strings.TrimSpace(st) != "disabled" {
		t.Errorf("after install healgate.service is %q, want disabled (not enabled by the package)", strings.TrimSpace(st))
	}
	if st, _ := s.Show("healgate.service", "ActiveState"); st != "inactive" {
		t.Errorf("after install healgate.service is %q, want inactive", st)
	}

	// Move the packaged config's ports to free ones (the network is the
	// host's), as an operator's edit of the conffile.
	cfg, err := os.ReadFile(s.HostPath("/etc/healgate/healgate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	adminPort := testproc.FreePort(t)
	edited := regexp.MustCompile(`(?m)^listen: 127\.0\.0\.1:8080$`).ReplaceAllString(string(cfg), fmt.Sprintf("listen: 127.0.0.1:%d", testproc.FreePort(t)))
	edited = regexp.MustCompile(`(?m)^  listen: 127\.0\.0\.1:9090$`).ReplaceAllString(edited, fmt.Sprintf("  listen: 127.0.0.1:%d", adminPort))
	if edited == string(cfg) {
		t.Fatal("the packaged config's listen lines were not found")
	}
	if err := os.WriteFile(s.HostPath("/etc/healgate/healgate.yaml"), []byte(edited), 0o640); err != nil {
		t.Fatal(err)
	}

	if out, err := s.Systemctl("start", "healgate.service"); err != nil {
		t.Fatalf("systemctl start healgate: %v\n%s\n%s", err, out, journal(s))
	}
	expectStatus(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", adminPort), http.StatusOK)
	if out, err := s.Exec("healgate", "version"); err != nil || !strings.Contains(out, "0.0.1+test") {
		t.Errorf("healgate version: %q, %v", out, err)
	}

	dpkg("-r", "healgate")
	if st, _ := s.Show("healgate.service", "ActiveState"); st == "active" {
		t.Error("healgate.service still active after dpkg -r")
	}
	if _, err := os.Stat(s.HostPath("/usr/bin/healgate")); err == nil {
		t.Error("/usr/bin/healgate is still there after dpkg -r")
	}
	if kept, err := os.ReadFile(s.HostPath("/etc/healgate/healgate.yaml")); err != nil || string(kept) != edited {
		t.Errorf("dpkg -r did not keep the edited config: %v", err)
	}
	dpkg("-P", "healgate")
	if _, err := os.Stat(s.HostPath("/etc/healgate")); err == nil {
		t.Error("/etc/healgate is still there after dpkg -P")
	}
	if out, _ := s.Exec("dpkg-query", "-W", "-f=${Status}", "healgate"); strings.Contains(out, "installed") && !strings.Contains(out, "not-installed") {
		t.Errorf("dpkg-query after purge: %q", out)
	}
}
