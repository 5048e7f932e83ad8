// Package healing keeps the upstream healthy: active health checks (HTTP,
// TCP and dependency protocol probes), the health state machine, the healer
// that decides, acts, verifies and backs off, its actions (systemd over
// D-Bus, exec, none) and its notifications.
//
// The systemd action ([Systemd]) restarts only the units named in the
// configuration, over the system bus, as an unprivileged service that a
// polkit rule allows to restart exactly those units; it also reads unit
// states and watches them ([UnitWatcher]) so that a unit entering failed or
// auto-restart is seen at once. The exec action ([ExecAction]) runs a
// configured command without a shell.
package healing
