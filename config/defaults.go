package config

import (
	"net/netip"
	"time"
)

// Default returns a Config with every default filled in: a healgate on
// 127.0.0.1:8080 in front of one local Document Server on 127.0.0.1:8000.
// Each call returns a new value that the caller may change.
func Default() *Config {
	return &Config{
		Listen: "127.0.0.1:8080",
		TrustedProxies: []netip.Prefix{
			netip.MustParsePrefix("127.0.0.1/32"),
			netip.MustParsePrefix("::1/128"),
		},
		Server: Server{
			HeaderTimeout:    60 * time.Second,
			KeepaliveTimeout: 75 * time.Second,
			MaxHeaderBytes:   64 * KiB,
			BodyTimeout:      60 * time.Second,
			ShutdownTimeout:  30 * time.Second,
		},
		Admin:     Admin{Listen: "127.0.0.1:9090"},
		Upstreams: []Upstream{{Name: "docservice", URL: "http://127.0.0.1:8000"}},
		Timeouts:  DefaultTimeouts(),
		Routes:    DefaultRoutes(),
		NextUpstream: NextUpstream{
			On:            []string{NextError, NextTimeout, NextHTTP502, NextHTTP503, NextHTTP504},
			Tries:         2,
			Timeout:       10 * time.Second,
			MaxReplayBody: 1 * MiB,
		},
		Breaker: Breaker{
			ConsecutiveFailures: 5,
			FailureRatio:        0.5,
			MinRequests:         20,
			Window:              10 * time.Second,
			OpenTimeout:         15 * time.Second,
			HalfOpenRequests:    1,
		},
		Sticky: Sticky{Keys: []string{"query:shardkey", "query:WOPISrc", "path:/doc/{key}/"}},
		Health: Health{
			Liveness:  Probe{Path: "/index.html", ExpectStatus: 200},
			Readiness: Probe{Path: "/healthcheck", ExpectStatus: 200, ExpectBody: "true"},
			Interval:  2 * time.Second,
			Timeout:   1 * time.Second,
			Rise:      2,
			Fall:      3,
		},
		Healing: Healing{
			Action:          ActionSystemd,
			Units:           []string{"ds-docservice.service"},
			Exec:            Exec{Timeout: 60 * time.Second},
			StartPeriod:     60 * time.Second,
			RestartTimeout:  90 * time.Second,
			RecoveryTimeout: 120 * time.Second,
			Budget:          Budget{Restarts: 3, Window: 30 * time.Minute},
			Backoff:         Backoff{Initial: 10 * time.Second, Max: 5 * time.Minute},
			HoldTimeout:     10 * time.Second,
			Drain:           Drain{Timeout: 60 * time.Second},
		},
		Notify: Notify{QueueSize: 64},
		Log:    Log{Format: LogAuto, Level: "info"},
	}
}

// DefaultTimeouts returns the top-level Timeouts defaults: connect 5s, send
// 60s, response_header 60s, read 60s, idle 90s.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		Connect:        5 * time.Second,
		Send:           60 * time.Second,
		ResponseHeader: 60 * time.Second,
		Read:           60 * time.Second,
		Idle:           90 * time.Second,
	}
}

// DefaultRoutes returns the route classes Document Server needs:
//   - "conversion": ConvertService.ashx, /converter and /docbuilder, which may
//     legitimately take up to 1800 s and answer a failed conversion as a 200
//     with a JSON error, so they never feed the breaker;
//   - "websocket": socket.io upgrades, idle for up to an hour, never fed to
//     the breaker (an upgraded connection's end is not an outage).
func DefaultRoutes() []Route {
	off := false
	return []Route{
		{
			Name:       "conversion",
			PathPrefix: []string{"/ConvertService.ashx", "/converter", "/docbuilder"},
			Timeouts:   Timeouts{ResponseHeader: 1800 * time.Second, Read: 1800 * time.Second},
			Breaker:    &off,
		},
		{
			Name:     "websocket",
			Upgrade:  "websocket",
			Timeouts: Timeouts{Read: time.Hour},
			Breaker:  &off,
		},
	}
}
