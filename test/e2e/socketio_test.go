package e2e

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/healgate/healgate/internal/testproc"
)

// socketIOPath is the socket.io server's `path` option: Document Server's
// co-editing endpoint for the document key "k".
const socketIOPath = "/doc/k/c/"

// startSocketIOServer runs test/e2e/socketio/server.js, a real socket.io
// server, and returns it with its address.
func startSocketIOServer(t *testing.T) (*testproc.Proc, string) {
	t.Helper()
	p := testproc.Start(t, "socket.io server", testproc.Options{Dir: bin.socketio}, bin.node, "server.js", socketIOPath)
	m := p.WaitLine(t, regexp.MustCompile(`LISTENING (\d+)`), 15*time.Second)
	return p, "127.0.0.1:" + m[1]
}

// runSocketIOClient runs test/e2e/socketio/client.js (a real socket.io-client)
// against base with the client's path option path and the one transport, and
// returns its output; a non-zero exit fails the test.
func runSocketIOClient(t *testing.T, base, path, transport string) string {
	t.Helper()
	ctx := contextFor(t, 40*time.Second)
	cmd := exec.CommandContext(ctx, bin.node, "client.js", base, path, transport, "20")
	cmd.Dir = bin.socketio
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("socket.io client (%s via %s%s): %v\n%s", transport, base, path, err, out)
	}
	return string(out)
}

// testSocketIO connects a real socket.io client through nginx → healgate to
// a real socket.io server with one transport, exchanges messages both ways
// (server → client → server with the hello nonce, client → server → client
// with 20 acknowledged echoes), and checks what the server saw.
func testSocketIO(t *testing.T, transport, clientPath string) {
	srv, addr := startSocketIOServer(t)
	s := startStack(t, gateConfig{upstreams: []upstreamSpec{{name: "socketio", addr: addr}}})

	out := runSocketIOClient(t, "http://"+s.nginx.Addr, clientPath, transport)
	if !strings.Contains(out, `OK {"transport":"`+transport+`"`) {
		t.Fatalf("socket.io client did not report success over %s:\n%s", transport, out)
	}
	// The server saw the connection over the same transport, with the
	// shard key and the client's X-Forwarded-Proto unchanged.
	want := "transport=" + transport + " shardkey=k xfp=https"
	testproc.PollUntil(t, 5*time.Second, "the socket.io server logged the connection", func() bool {
		return strings.Contains(srv.Output(), want)
	})
	if strings.Contains(srv.Output(), "connection_error") {
		t.Errorf("the socket.io server reported a connection error:\n%s", srv.Output())
	}
}

// TestSocketIOWebSocket: socket.io with transports ['websocket'] through
// ds.conf's versioned location (HTTP/1.1, Upgrade), as Document Server 8.x
// editors connect.
func TestSocketIOWebSocket(t *testing.T) {
	testSocketIO(t, "websocket", socketIOVersion+socketIOPath)
}

// TestSocketIOPolling: socket.io with transports ['polling'] through
// ds.conf's "location /", which speaks HTTP/1.0 with "Connection: close" to
// healgate.
func TestSocketIOPolling(t *testing.T) {
	testSocketIO(t, "polling", socketIOPath)
}
