package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// socketIOVersion is the version segment of Document Server 8.x editor URLs,
// routed by ds.conf's versioned location (HTTP/1.1, upgrades allowed).
const socketIOVersion = "/8.3.0-e2e"

// connectionForm rewrites the Connection header of the WebSocket handshake:
// coder/websocket always sends "Connection: Upgrade", browsers send
// "Connection: keep-alive, Upgrade".
type connectionForm struct {
	base  http.RoundTripper
	value string
}

func (c connectionForm) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Connection", c.value)
	return c.base.RoundTrip(r)
}

// wsClient returns an HTTP client for WebSocket handshakes that sends the
// given Connection header. Its idle connections are closed when the test ends.
func wsClient(t *testing.T, connection string) *http.Client {
	tr := &http.Transport{Proxy: nil}
	t.Cleanup(tr.CloseIdleConnections)
	// No Client.Timeout: coder/websocket bounds the handshake with its context.
	return &http.Client{Transport: connectionForm{base: tr, value: connection}}
}

// exchange sends text and binary messages over c and checks each comes back
// unchanged from the echoing upstream: frames flow both ways.
func exchange(ctx context.Context, c *websocket.Conn) error {
	msgs := []struct {
		typ  websocket.MessageType
		data []byte
	}{
		{websocket.MessageText, []byte(`40{"sid":"e2e"}`)},
		{websocket.MessageText, []byte(`42["message",{"type":"cursor","text":"a+b%20c ✓"}]`)},
		{websocket.MessageBinary, bytes.Repeat([]byte{0, 1, 2, 0xfe, 0xff}, 50_000)}, // 250 kB: several frames and buffers
		{websocket.MessageText, []byte("3")},
	}
	for i, m := range msgs {
		if err := c.Write(ctx, m.typ, m.data); err != nil {
			return fmt.Errorf("write %d: %w", i, err)
		}
		typ, got, err := c.Read(ctx)
		if err != nil {
			return fmt.Errorf("read %d: %w", i, err)
		}
		if typ != m.typ || !bytes.Equal(got, m.data) {
			return fmt.Errorf("message %d came back as %v of %d bytes, want %v of %d bytes", i, typ, len(got), m.typ, len(m.data))
		}
	}
	return nil
}

// dialWS performs the handshake with the given Connection header form and
// returns the connection and the handshake's status.
func dialWS(t *testing.T, url, connection string, header http.Header) (*websocket.Conn, int) {
	t.Helper()
	ctx := contextFor(t, 10*time.Second)
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPClient: wsClient(t, connection),
		HTTPHeader: header,
	})
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	if err != nil {
		t.Fatalf("WebSocket handshake to %s with Connection %q: %v (status %d)", url, connection, err, status)
	}
	t.Cleanup(func() { c.CloseNow() })
	c.SetReadLimit(1 << 20)
	return c, status
}

// TestF7WebSocketUpgrade is fault corpus F7: through nginx's versioned
// location, a socket.io WebSocket handshake with "Connection: Upgrade" and
// with the browser form "Connection: keep-alive, Upgrade" both tunnel as
// 101 and carry frames both ways; healgate is also dialled directly, where
// the browser form reaches it unnormalised. The same URL with
// transport=polling and no Upgrade is a plain HTTP exchange.
func TestF7WebSocketUpgrade(t *testing.T) {
	up := startDsemu(t, "primary", "ok")
	s := startStack(t, gateConfig{upstreams: one(up)})
	const path = "/doc/abc/c/"
	const query = "?EIO=4&transport=websocket"

	for _, tc := range []struct {
		name, base, connection string
	}{
		{"NginxConnectionUpgrade", "ws://" + s.nginx.Addr + socketIOVersion, "Upgrade"},
		{"NginxBrowserForm", "ws://" + s.nginx.Addr + socketIOVersion, "keep-alive, Upgrade"},
		{"DirectConnectionUpgrade", "ws://" + s.gate.addr, "Upgrade"},
		{"DirectBrowserForm", "ws://" + s.gate.addr, "keep-alive, Upgrade"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, status := dialWS(t, tc.base+path+query, tc.connection, nil)
			if status != http.StatusSwitchingProtocols {
				t.Fatalf("handshake status %d, want 101", status)
			}
			if err := exchange(contextFor(t, 10*time.Second), c); err != nil {
				t.Fatal(err)
			}
			if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
				t.Errorf("close: %v", err)
			}
			rec := up.lastRequest(t, path)
			if !strings.EqualFold(rec.Header.Get("Upgrade"), "websocket") {
				t.Errorf("upstream saw Upgrade %q, want websocket", rec.Header.Get("Upgrade"))
			}
			if rec.RawQuery != query[1:] {
				t.Errorf("upstream saw query %q, want %q", rec.RawQuery, query[1:])
			}
		})
	}

	t.Run("PollingIsPlainHTTP", func(t *testing.T) {
		id := newRequestIDs(t).next()
		r := s.get(t, socketIOVersion+path+"?EIO=4&transport=polling", map[string]string{"X-Request-ID": id})
		if r.status != http.StatusOK || !strings.HasPrefix(r.body, `0{"sid":`) {
			t.Fatalf("polling handshake: %d %q (%s), want 200 and an Engine.IO open packet", r.status, r.body, r.header.Get("X-Healgate-Error"))
		}
		st := up.stats(t)
		if st.RequestIDs[id] != 1 {
			t.Errorf("upstream received the polling request %d times, want 1", st.RequestIDs[id])
		}
		for i := len(st.Recent) - 1; i >= 0; i-- {
			if rec := st.Recent[i]; rec.Header.Get("X-Request-Id") == id {
				if u := rec.Header.Get("Upgrade"); u != "" {
					t.Errorf("a polling request reached the upstream with Upgrade %q", u)
				}
				if rec.RawQuery != "EIO=4&transport=polling" {
					t.Errorf("upstream saw query %q", rec.RawQuery)
				}
			}
		}
	})
}

// TestF9ForwardedProtoOnUpgrade is fault corpus F9: X-Forwarded-Proto https
// on a WebSocket upgrade arrives at the upstream unchanged, with nginx in
// front and without; healgate never derives the scheme from its own
// plain-HTTP listener.
func TestF9ForwardedProtoOnUpgrade(t *testing.T) {
	up := startDsemu(t, "primary", "ok")
	s := startStack(t, gateConfig{upstreams: one(up)})
	const path = "/doc/f9/c/"
	for _, tc := range []struct{ name, base string }{
		{"Nginx", "ws://" + s.nginx.Addr + socketIOVersion},
		{"Direct", "ws://" + s.gate.addr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			h.Set("X-Forwarded-Proto", "https")
			h.Set("X-Forwarded-Host", "docs.example.com")
			h.Set("X-Forwarded-Prefix", "/office")
			c, status := dialWS(t, tc.base+path+"?EIO=4&transport=websocket", "keep-alive, Upgrade", h)
			if status != http.StatusSwitchingProtocols {
				t.Fatalf("handshake status %d, want 101", status)
			}
			if err := exchange(contextFor(t, 10*time.Second), c); err != nil {
				t.Fatal(err)
			}
			c.Close(websocket.StatusNormalClosure, "done")
			rec := up.lastRequest(t, path)
			for k, want := range map[string]string{
				"X-Forwarded-Proto":  "https",
				"X-Forwarded-Host":   "docs.example.com",
				"X-Forwarded-Prefix": "/office",
			} {
				if got := rec.Header.Values(k); len(got) != 1 || got[0] != want {
					t.Errorf("upstream saw %s %q, want exactly %q", k, got, want)
				}
			}
		})
	}
}
