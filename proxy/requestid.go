package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync/atomic"
)

// Header names healgate sets on responses (and, for the request ID, on the
// request sent upstream).
const (
	headerRequestID = "X-Request-Id" // canonical form of X-Request-ID
	headerError     = "X-Healgate-Error"
)

// maxRequestIDLen bounds an inbound X-Request-ID that is kept.
const maxRequestIDLen = 128

// idGen makes request IDs: a random per-Proxy prefix and a counter, unique
// within a process lifetime and across restarts with overwhelming odds.
type idGen struct {
	prefix string
	n      atomic.Uint64
}

func newIDGen() *idGen {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return &idGen{prefix: hex.EncodeToString(b[:]) + "-"}
}

// next returns a new request ID such as "3f9a0c1b2d4e-1a".
func (g *idGen) next() string {
	var buf [32]byte
	b := append(buf[:0], g.prefix...)
	b = strconv.AppendUint(b, g.n.Add(1), 36)
	return string(b)
}

// requestID returns the inbound X-Request-ID if it is sane (1 to 128 visible
// ASCII characters), else a new one.
func (g *idGen) requestID(inbound []string) string {
	if len(inbound) == 1 && saneRequestID(inbound[0]) {
		return inbound[0]
	}
	return g.next()
}

func saneRequestID(s string) bool {
	if s == "" || len(s) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}
