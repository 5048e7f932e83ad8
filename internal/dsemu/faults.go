package dsemu

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// Shape of the partial response written by mode reset.
const (
	resetDeclared = 1024 // Content-Length announced
	resetWritten  = 100  // bytes written before the RST
)

// fault applies the current mode to a counted request. It reports whether
// the request is to be served normally; otherwise the fault answered it (or
// dropped it, or its client went away).
func (s *Server) fault(w http.ResponseWriter, r *http.Request) bool {
	for {
		s.mu.Lock()
		m, changed := s.mode, s.modeChanged
		s.mu.Unlock()

		switch m.Kind {
		case KindHang:
			select {
			case <-changed:
				continue // serve under the new mode
			case <-r.Context().Done():
				return false
			case <-s.stopCtx.Done():
				abort(w)
			}
		case KindSlow:
			return s.sleep(w, r, m.Delay)
		case KindReset:
			h := w.Header()
			h.Set("Content-Type", "text/plain; charset=utf-8")
			h.Set("Content-Length", strconv.Itoa(resetDeclared))
			w.WriteHeader(http.StatusOK)
			w.Write([]byte(strings.Repeat("r", resetWritten)))
			http.NewResponseController(w).Flush()
			resetConn(w)
			return false
		case KindResetBefore:
			resetConn(w)
			return false
		case Kind5xx:
			http.Error(w, fmt.Sprintf("%d %s (dsemu %s)", m.Status, http.StatusText(m.Status), s.opts.Name), m.Status)
			return false
		}
		return true
	}
}

// resetConn closes the connection with a TCP RST (SO_LINGER 0): the client
// sees "connection reset by peer". Unflushed output is discarded.
func resetConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		abort(w)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}
