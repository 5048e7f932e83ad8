package systemdtest

import (
	"fmt"
	"regexp"
	"strings"
)

// Paths inside the namespace. They all live on the namespace's private /run
// tmpfs, so they vanish with it.
const (
	// UnitDir is where InstallUnit writes unit files inside the namespace.
	UnitDir = "/run/systemd/system"

	// BinDir is where InstallBinary copies host files inside the namespace.
	BinDir = "/run/healgate-test/bin"

	// PolkitRulesDir is where polkit rules go inside the namespace. polkitd
	// 122 (Debian 12) reads only /etc/polkit-1/rules.d and
	// /usr/share/polkit-1/rules.d, not /run; the boot script bind-mounts a
	// private directory from /run over /etc/polkit-1/rules.d, so a rule
	// written here (or to /etc/polkit-1/rules.d inside) never reaches the
	// host's /etc.
	PolkitRulesDir = "/etc/polkit-1/rules.d"

	// Target is the unit the namespace's systemd boots.
	Target = "healgate-test.target"

	privateRulesDir = "/run/healgate-test/polkit-rules.d"
)

// maskedUnits returns the units that must not run in the test system because they
// would touch the host, which shares the kernel, /etc, /var, /dev and the
// network with the namespace: tmpfiles would empty the host's /tmp, sysctl
// and modprobe change the kernel, sysusers and ldconfig rewrite /etc, the
// timers run apt, and so on (docs/real-systemd.md lists the ones that bit).
func maskedUnits() []string {
	return []string{
		// Traps listed in docs/real-systemd.md.
		"systemd-tmpfiles-setup.service",
		"systemd-tmpfiles-setup-dev.service",
		"systemd-tmpfiles-clean.timer",
		"systemd-tmpfiles-clean.service",
		"systemd-sysctl.service",
		"systemd-sysusers.service",
		"systemd-remount-fs.service",
		"systemd-binfmt.service",
		"systemd-modules-load.service",
		"systemd-journal-flush.service",
		"systemd-update-utmp.service",
		"systemd-update-utmp-runlevel.service",
		"systemd-random-seed.service",
		"systemd-timesyncd.service",
		"console-getty.service",
		"getty.target",
		// Timers (apt-daily, man-db, fstrim, ...) and path units.
		"timers.target",
		"paths.target",
		"systemd-ask-password-console.path",
		"systemd-ask-password-wall.path",
		// ConditionNeedsUpdate= units that write to /etc and /var.
		"ldconfig.service",
		"systemd-hwdb-update.service",
		"systemd-update-done.service",
		"systemd-journal-catalog-update.service",
		// First-boot and hardware units.
		"systemd-machine-id-commit.service",
		"systemd-firstboot.service",
		"systemd-pstore.service",
		"systemd-repart.service",
		"systemd-pcrphase.service",
		"systemd-pcrphase-sysinit.service",
		"kmod-static-nodes.service",
		"modprobe@.service",
		"systemd-udevd.service",
		"systemd-udev-trigger.service",
		"systemd-udev-settle.service",
		"systemd-udevd-control.socket",
		"systemd-udevd-kernel.socket",
		"systemd-journald-audit.socket",
		// Kernel file systems systemd would mount (harmless in a private mount
		// namespace, but slow and noisy).
		"proc-sys-fs-binfmt_misc.automount",
		"proc-sys-fs-binfmt_misc.mount",
		"sys-fs-fuse-connections.mount",
		"sys-kernel-config.mount",
		"sys-kernel-debug.mount",
		"sys-kernel-tracing.mount",
		"dev-hugepages.mount",
		"dev-mqueue.mount",
		// Services the image enables in multi-user.target; not pulled by the
		// test target, masked in case a test pulls multi-user.target.
		"postgresql.service",
		"nginx.service",
		"haproxy.service",
		"e2scrub_reap.service",
		"apt-daily.service",
		"apt-daily-upgrade.service",
	}
}

var unitNameRE = regexp.MustCompile(`^[A-Za-z0-9:_.@\\-]+$`)

// checkUnitName rejects names that are not plain unit file names, so they
// are safe in a path and in the boot script.
func checkUnitName(name string) error {
	if !unitNameRE.MatchString(name) || name == "." || name == ".." || !strings.Contains(name, ".") {
		return fmt.Errorf("systemdtest: invalid unit name %q", name)
	}
	return nil
}

// cgroupMount is one cgroup hierarchy of the host, remounted on the
// namespace's private /sys/fs/cgroup tmpfs before systemd starts.
type cgroupMount struct {
	dir     string // mount point, e.g. /sys/fs/cgroup/systemd
	fstype  string // cgroup or cgroup2
	options string // e.g. "name=systemd" or "pids"; empty for cgroup2
	nested  string // the directory the namespace moves into, in this hierarchy; empty: none
}

// bootScript returns the shell script that unshare runs as the namespace's
// first process. It isolates what systemd would otherwise change on the host,
// then execs systemd:
//   - private tmpfs on /run, /tmp, /var/tmp and /var/lib/systemd (the default
//     boot empties /tmp; timers and random-seed write /var/lib/systemd);
//   - /proc/sys and /sys read-only (systemd raises fs.file-max and friends,
//     as it does in any container);
//   - a private tmpfs on /sys/fs/cgroup with the host's hierarchies mounted
//     again on it (systemd remounts /sys/fs/cgroup read-only and creates
//     directories there; on the shared tmpfs that changes the host's), and
//     the namespace moved into a cgroup of its own nested under the test's,
//     so two test systems never share a cgroup tree and limits still apply;
//   - a private directory over /etc/polkit-1/rules.d;
//   - the mask list and the test target in /run/systemd/system.
func bootScript(systemd string, cgroups []cgroupMount, masks []string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("set -eu")
	w("mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run")
	w("mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp")
	w("mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /var/tmp")
	w("mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /var/lib/systemd")
	w("mount --bind -o ro /proc/sys /proc/sys")
	w("mount -o remount,bind,ro /sys")
	w("mount -t tmpfs -o mode=0755,nosuid,nodev,noexec tmpfs /sys/fs/cgroup")
	for _, c := range cgroups {
		w("mkdir -p %s", shellQuote(c.dir))
		if c.fstype == "cgroup2" {
			w("mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 %s", shellQuote(c.dir))
		} else {
			w("mount -t cgroup -o nosuid,nodev,noexec,%s cgroup %s", shellQuote(c.options), shellQuote(c.dir))
		}
		if c.nested != "" {
			w("mkdir -p %s", shellQuote(c.nested))
			w("echo 0 > %s", shellQuote(c.nested+"/cgroup.procs"))
		}
	}
	w("mkdir -p %s %s %s", UnitDir, BinDir, privateRulesDir)
	w("mount --bind %s %s", privateRulesDir, PolkitRulesDir)
	for _, m := range masks {
		w("ln -sf /dev/null %s", shellQuote(UnitDir+"/"+m))
	}
	w("cat > %s <<'HEALGATE_EOF'", shellQuote(UnitDir+"/"+Target))
	w("[Unit]")
	w("Description=healgate test system")
	w("Wants=dbus.socket dbus.service")
	w("After=dbus.socket dbus.service")
	w("HEALGATE_EOF")
	w("export container=docker")
	w("exec %s --system --unit=%s", shellQuote(systemd), Target)
	return b.String()
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
