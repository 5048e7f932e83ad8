package config_test

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/healgate/healgate/config"
)

func TestWarnings(t *testing.T) {
	if ws := config.Warnings(config.Default()); len(ws) != 0 {
		t.Errorf("the defaults warn: %v", ws)
	}
	c := config.Default()
	c.Listen = "0.0.0.0:8080"
	c.TrustedProxies = append(c.TrustedProxies, netip.MustParsePrefix("0.0.0.0/0"))
	c.Upstreams[0].URL = "http://docs.internal:8000"
	c.Timeouts.Connect = c.NextUpstream.Timeout
	c.Health.Interval = 10 * time.Millisecond
	var paths []string
	for _, w := range config.Warnings(c) {
		paths = append(paths, w.Path)
		if w.Msg == "" {
			t.Errorf("warning %s has no message", w.Path)
		}
	}
	want := []string{"listen", "trusted_proxies[2]", "upstreams[0].url", "timeouts.connect", "health.interval"}
	if !slices.Equal(paths, want) {
		t.Errorf("warnings for %v, want %v", paths, want)
	}
}
