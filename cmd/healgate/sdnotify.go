package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// notifier tells the service manager about healgate's state (sd_notify).
type notifier interface {
	ready(status string)
	reloading()
	stopping()
	status(s string)
	watchdog()
}

// systemdNotifier sends sd_notify messages to NOTIFY_SOCKET; without it
// (not started by systemd) every call does nothing.
type systemdNotifier struct{}

func (systemdNotifier) ready(status string) {
	_, _ = daemon.SdNotify(false, daemon.SdNotifyReady+"\nSTATUS="+status)
}

// reloading sends RELOADING=1 with MONOTONIC_USEC, as Type=notify-reload
// (systemd 253) requires and older systemd accepts.
func (systemdNotifier) reloading() {
	var ts unix.Timespec
	msg := daemon.SdNotifyReloading
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) == nil {
		msg += "\nMONOTONIC_USEC=" + strconv.FormatInt(ts.Nano()/1000, 10)
	}
	_, _ = daemon.SdNotify(false, msg)
}

func (systemdNotifier) stopping()       { _, _ = daemon.SdNotify(false, daemon.SdNotifyStopping) }
func (systemdNotifier) status(s string) { _, _ = daemon.SdNotify(false, "STATUS="+s) }
func (systemdNotifier) watchdog()       { _, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog) }

// nopNotifier tells no one.
type nopNotifier struct{}

func (nopNotifier) ready(string)  {}
func (nopNotifier) reloading()    {}
func (nopNotifier) stopping()     {}
func (nopNotifier) status(string) {}
func (nopNotifier) watchdog()     {}

// statusEvery is how often STATUS= is refreshed.
const statusEvery = 5 * time.Second

// watchdog refreshes STATUS= and, when systemd's watchdog is on
// (WatchdogSec=), pings it at half its interval while healgate is alive:
// the healing loop went round recently, and the admin listener answers
// /healthz. A wedged healgate stops pinging and systemd restarts it. It
// returns when ctx ends.
func watchdog(ctx context.Context, cur *current, admin net.Listener, n notifier, log *slog.Logger) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("sd_watchdog", "err", err)
	}
	every := statusEvery
	if interval > 0 {
		every = min(every, interval/2)
	}
	client := &http.Client{Timeout: max(every/2, 100*time.Millisecond), Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	t := time.NewTicker(every)
	defer t.Stop()
	lastStatus := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		g := cur.load()
		if s := statusLine(g); s != lastStatus {
			n.status(s)
			lastStatus = s
		}
		if interval <= 0 {
			continue
		}
		if why := wedged(ctx, g, admin, client); why != "" {
			log.Error("watchdog: not pinging systemd", "why", why)
			continue
		}
		n.watchdog()
	}
}

// wedged says why healgate looks stuck, or "" if it is alive.
func wedged(ctx context.Context, g *generation, admin net.Listener, client *http.Client) string {
	limit := 3*g.cfg.Health.Interval + 2*g.cfg.Health.Timeout
	if hb := g.healer.Heartbeat(); !hb.IsZero() && time.Since(hb) > limit {
		return "the healing loop has not gone round for " + time.Since(hb).Round(time.Millisecond).String()
	}
	if admin == nil {
		return ""
	}
	if _, ok := admin.Addr().(*net.TCPAddr); !ok {
		return "" // a unix or inherited socket: no self-check
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin.Addr().String()+"/healthz", nil)
	if err != nil {
		return err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		return "admin /healthz: " + err.Error()
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "admin /healthz: " + resp.Status
	}
	return ""
}
