package packaging_test

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/healgate/healgate/config"
)

// TestSysusersAndTmpfiles applies sysusers.d/healgate.conf and then
// tmpfiles.d/healgate.conf with the real systemd-sysusers and
// systemd-tmpfiles to a scratch root (a copy of the host's passwd and group
// files, never the host's): the healgate user and group appear, and the
// directories and the config get the owners and modes the service needs.
func TestSysusersAndTmpfiles(t *testing.T) {
	sysusers := lookTool(t, "systemd-sysusers", "systemd")
	tmpfiles := lookTool(t, "systemd-tmpfiles", "systemd")
	root := t.TempDir()
	for _, dir := range []string{"etc/healgate", "run"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"passwd", "group"} {
		b, err := os.ReadFile("/etc/" + f)
		if err != nil {
			t.Fatal(err)
		}
		// Drop a healgate entry a package install may have left on this
		// host: the test must see sysusers create it.
		var kept bytes.Buffer
		for _, line := range strings.SplitAfter(string(b), "\n") {
			if !strings.HasPrefix(line, "healgate:") {
				kept.WriteString(line)
			}
		}
		if err := os.WriteFile(filepath.Join(root, "etc", f), kept.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc/healgate/healgate.yaml"), readFile(t, "healgate.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf, err := filepath.Abs("sysusers.d/healgate.conf")
	if err != nil {
		t.Fatal(err)
	}
	command(t, sysusers, "--root="+root, conf)

	user := passwdEntry(t, filepath.Join(root, "etc/passwd"), "healgate")
	if user == nil {
		t.Fatal("systemd-sysusers made no healgate user")
	}
	uid, _ := strconv.Atoi(user[2])
	if uid <= 0 || uid >= 1000 || user[5] != "/var/lib/healgate" || !strings.HasSuffix(user[6], "nologin") {
		t.Errorf("healgate user %q: want a system uid, home /var/lib/healgate, no login shell", user)
	}
	group := passwdEntry(t, filepath.Join(root, "etc/group"), "healgate")
	if group == nil {
		t.Fatal("systemd-sysusers made no healgate group")
	}
	gid, _ := strconv.Atoi(group[2])
	if user[3] != group[2] {
		t.Errorf("healgate's primary gid %s is not the healgate group's %s", user[3], group[2])
	}

	conf, err = filepath.Abs("tmpfiles.d/healgate.conf")
	if err != nil {
		t.Fatal(err)
	}
	command(t, tmpfiles, "--root="+root, "--create", conf)
	for _, want := range []struct {
		path     string
		mode     fs.FileMode
		uid, gid int
	}{
		{"run/healgate", fs.ModeDir | 0o750, uid, gid},
		{"etc/healgate", fs.ModeDir | 0o750, 0, gid},
		{"etc/healgate/healgate.yaml", 0o640, 0, gid},
	} {
		fi, err := os.Lstat(filepath.Join(root, want.path))
		if err != nil {
			t.Errorf("after systemd-tmpfiles: %v", err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode() != want.mode || int(st.Uid) != want.uid || int(st.Gid) != want.gid {
			t.Errorf("/%s: %v %d:%d, want %v %d:%d", want.path, fi.Mode(), st.Uid, st.Gid, want.mode, want.uid, want.gid)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/healgate/admin.token")); err == nil {
		t.Error("systemd-tmpfiles created admin.token; the z line must only fix an existing file")
	}
}

// passwdEntry returns the colon-separated fields of name's line in a
// passwd or group file, nil if there is none.
func passwdEntry(t *testing.T, file, name string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Split(sc.Text(), ":"); fields[0] == name {
			return fields
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return nil
}

// TestSocketActivationConfig: the example config for socket activation is
// valid and names exactly the FileDescriptorName= of the packaged socket
// units, each of which starts healgate.service.
func TestSocketActivationConfig(t *testing.T) {
	cfg, err := config.Load("healgate-socket.yaml")
	if err != nil {
		t.Fatalf("healgate-socket.yaml: %v", err)
	}
	for _, c := range []struct{ listen, unit string }{
		{cfg.Listen, "healgate.socket"},
		{cfg.Admin.Listen, "healgate-admin.socket"},
	} {
		unit := string(readFile(t, "systemd/"+c.unit))
		name, ok := strings.CutPrefix(c.listen, "systemd:")
		if !ok {
			t.Errorf("listen %q: want systemd:NAME", c.listen)
			continue
		}
		if !strings.Contains(unit, "\nFileDescriptorName="+name+"\n") || !strings.Contains(unit, "\nService=healgate.service\n") {
			t.Errorf("%s: want FileDescriptorName=%s and Service=healgate.service", c.unit, name)
		}
	}
}

// TestDockerfile checks what can be checked without a container engine: a
// Go builder of the go.mod's version, a static build, a non-root final
// stage, the exposed ports and the entrypoint.
func TestDockerfile(t *testing.T) {
	df := string(readFile(t, "Dockerfile"))
	gomod := string(readFile(t, "../go.mod"))
	goVersion := ""
	for _, line := range strings.Split(gomod, "\n") {
		if v, ok := strings.CutPrefix(line, "go "); ok {
			goVersion = strings.Join(strings.Split(strings.TrimSpace(v), ".")[:2], ".")
		}
	}
	for _, want := range []string{
		"FROM golang:" + goVersion + " AS build",
		"CGO_ENABLED=0",
		"-trimpath",
		"FROM gcr.io/distroless/static",
		"USER 65532:65532",
		"EXPOSE 8080 9090",
		`ENTRYPOINT ["/usr/bin/healgate", "run", "-config", "/etc/healgate/healgate.yaml"]`,
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if n := strings.Count(df, "\nFROM "); n != 2 {
		t.Errorf("Dockerfile has %d stages, want 2 (builder and runtime)", n)
	}
}
