package dsemu

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/coder/websocket"
)

// Engine.IO v4 constants, as Document Server's socket.io is configured.
const (
	pingInterval = 25000   // ms
	pingTimeout  = 20000   // ms
	maxPayload   = 1000000 // bytes, socket.io's default maxHttpBufferSize
)

// isSocketIO reports whether p is a socket.io path: /doc/KEY/c/, optionally
// under one version segment (/8.1.0-123/doc/KEY/c/), KEY without "/".
func isSocketIO(p string) bool {
	seg := strings.Split(p, "/") // "/doc/k/c/" → "", "doc", "k", "c", ""
	if len(seg) == 6 && seg[0] == "" && seg[1] != "" {
		seg = seg[1:] // drop the version segment
		seg[0] = ""
	}
	return len(seg) == 5 && seg[0] == "" && seg[1] == "doc" && seg[2] != "" && seg[3] == "c" && seg[4] == ""
}

// openPacket is the payload of the Engine.IO "open" packet.
type openPacket struct {
	SID          string   `json:"sid"`
	Upgrades     []string `json:"upgrades"`
	PingInterval int      `json:"pingInterval"`
	PingTimeout  int      `json:"pingTimeout"`
	MaxPayload   int      `json:"maxPayload"`
}

// socketIO serves the socket.io endpoint: a request with "Upgrade:
// websocket" gets a real WebSocket that echoes every message; a polling GET
// without "sid" gets an Engine.IO open packet, with "sid" it is held
// PollHold and answered with a ping packet "2"; a polling POST is echoed.
// EIO must be 4 and transport polling or websocket, as in Engine.IO.
func (s *Server) socketIO(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("EIO") != "4" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"code": 5, "message": "Unsupported protocol version"})
		return
	}
	if t := q.Get("transport"); t != "polling" && t != "websocket" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"code": 0, "message": "Transport unknown"})
		return
	}
	if hasToken(r.Header, "Upgrade", "websocket") {
		s.echoWebSocket(r, w)
		return
	}
	switch r.Method {
	case http.MethodGet:
		if q.Get("sid") == "" {
			s.mu.Lock()
			s.sids++
			sid := fmt.Sprintf("%s-%d", s.opts.Name, s.sids)
			s.mu.Unlock()
			b, err := json.Marshal(openPacket{
				SID: sid, Upgrades: []string{"websocket"},
				PingInterval: pingInterval, PingTimeout: pingTimeout, MaxPayload: maxPayload,
			})
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
			w.Write(append([]byte("0"), b...))
			return
		}
		s.mu.Lock()
		hold := s.pollHold
		s.mu.Unlock()
		if !s.sleep(w, r, hold) {
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		io.WriteString(w, "2")
	case http.MethodPost:
		body, err := io.ReadAll(io.LimitReader(r.Body, maxPayload+1))
		if err != nil {
			return
		}
		if len(body) > maxPayload {
			http.Error(w, "payload too large", http.StatusRequestEntityTooLarge)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		w.Write(body)
	default:
		allow(w, r, http.MethodGet, http.MethodPost)
	}
}

// echoWebSocket completes the WebSocket handshake (any Origin) and echoes
// every message, text or binary, as one frame, until the peer closes or the
// server stops. Messages above socket.io's maxPayload (1 MB) close the
// connection with status 1009, as socket.io does.
func (s *Server) echoWebSocket(r *http.Request, w http.ResponseWriter) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return // Accept answered the bad handshake
	}
	defer c.CloseNow()
	c.SetReadLimit(maxPayload)

	// The connection is hijacked: its life is bounded by the server's,
	// not by the request context.
	ctx, cancel := context.WithCancel(s.stopCtx)
	defer cancel()
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			return
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			return
		}
	}
}

// hasToken reports whether the comma-separated header key has token (any case).
func hasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
