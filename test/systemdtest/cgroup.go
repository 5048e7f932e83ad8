package systemdtest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// cgroupMounts lists the host's cgroup hierarchies mounted under
// /sys/fs/cgroup and, for each, the directory the test system moves into:
// name nested under the cgroup the test process is in, so the test system
// gets a tree of its own (two systems booted by two test binaries at once
// never share one) and the test's own limits still apply to it.
//
// It reads /proc/self/mountinfo and /proc/self/cgroup. A hierarchy the host
// has not mounted is left to systemd, which mounts it on the namespace's
// private /sys/fs/cgroup and does not use it.
func cgroupMounts(name string) ([]cgroupMount, error) {
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	type mnt struct {
		dir, fstype string
		super       []string
	}
	var mounts []mnt
	for line := range strings.Lines(string(mountinfo)) {
		// id parent maj:min root mountpoint opts [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(strings.TrimSpace(line), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 || (g[0] != "cgroup" && g[0] != "cgroup2") {
			continue
		}
		dir := unescapeMountinfo(f[4])
		if dir != "/sys/fs/cgroup" && !strings.HasPrefix(dir, "/sys/fs/cgroup/") {
			continue
		}
		if f[3] != "/" {
			return nil, fmt.Errorf("systemdtest: cgroup mount %s shows %s, not its hierarchy's root; run the tests outside a cgroup namespace", dir, f[3])
		}
		mounts = append(mounts, mnt{dir: dir, fstype: g[0], super: strings.Split(g[2], ",")})
	}

	var out []cgroupMount
	for line := range strings.Lines(string(self)) {
		// hierarchy-id:controllers:path
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		controllers, cgpath := parts[1], parts[2]
		for _, m := range mounts {
			v2 := parts[0] == "0" && controllers == ""
			match := v2 && m.fstype == "cgroup2"
			if !v2 && m.fstype == "cgroup" {
				match = true
				for c := range strings.SplitSeq(controllers, ",") {
					if !slices.Contains(m.super, c) {
						match = false
					}
				}
			}
			if !match {
				continue
			}
			cm := cgroupMount{dir: m.dir, fstype: m.fstype}
			// A new v1 cpuset group has no CPUs, so nothing can join it
			// until they are copied in; systemd 252 does not use the v1
			// cpuset controller, so the system stays where it is there.
			if controllers != "cpuset" {
				cm.nested = path.Join(m.dir, cgpath, name)
			}
			if !v2 {
				cm.options = controllers
			}
			out = append(out, cm)
			break
		}
	}
	if len(out) == 0 {
		return nil, errors.New("systemdtest: no cgroup hierarchy mounted under /sys/fs/cgroup")
	}
	// On a pure cgroup2 host the hierarchy's mount point is /sys/fs/cgroup
	// itself: the script mounts it over the private tmpfs, which is fine.
	return out, nil
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeCgroupTree removes dir and every cgroup below it, deepest first.
// It is called once the test system's processes are gone; cgroup
// directories are removed with rmdir, never by deleting their files. A tree
// that does not exist is not an error.
func removeCgroupTree(dir string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range slices.Backward(dirs) {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}
