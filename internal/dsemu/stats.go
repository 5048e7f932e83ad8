package dsemu

import (
	"maps"
	"net/http"
	"slices"
	"time"
)

// DefaultHistory is the number of recent requests kept by default.
const DefaultHistory = 64

// Stats is what the emulator received, as served by GET /_dsemu/stats.
//
// A request is counted when its headers have been read and the handler is
// entered: before its body is read and before any fault mode applies. So a
// request answered by hang, slow, reset, reset-before, 5xx, or cut by a
// crash is counted exactly once, and "the upstream received it" is provable.
// A connection that never completes its request headers is not counted, nor
// are requests to /_dsemu/* (the control endpoints), nor requests arriving
// after the server crashed or stopped.
type Stats struct {
	// Name is Options.Name.
	Name string `json:"name"`
	// Mode is the current mode, in ParseMode's form.
	Mode string `json:"mode"`
	// Inactive is true after PUT /internal/cluster/inactive and false again
	// after DELETE /internal/cluster/inactive (Document Server's drain).
	Inactive bool `json:"inactive"`
	// Total is the number of requests counted.
	Total int64 `json:"total"`
	// Requests counts requests by "METHOD /decoded/path", for example
	// "POST /ConvertService.ashx".
	Requests map[string]int64 `json:"requests"`
	// RequestIDs counts requests by their X-Request-ID header value;
	// requests without one are not in the map.
	RequestIDs map[string]int64 `json:"request_ids"`
	// Recent are the last Options.History requests, oldest first.
	Recent []Request `json:"recent"`
}

// Request records one received request as it arrived.
type Request struct {
	// Seq numbers requests from 1 in arrival order.
	Seq int64 `json:"seq"`
	// Time is when the request was counted.
	Time time.Time `json:"time"`
	// Method is the request method.
	Method string `json:"method"`
	// URI is the request target exactly as it appeared on the request line.
	URI string `json:"uri"`
	// Path is the decoded path.
	Path string `json:"path"`
	// RawQuery is the query exactly as received, without the "?".
	RawQuery string `json:"raw_query"`
	// Proto is "HTTP/1.0" or "HTTP/1.1".
	Proto string `json:"proto"`
	// Host is the Host header (the request line's authority for an
	// absolute-form target).
	Host string `json:"host"`
	// RemoteAddr is the peer's address.
	RemoteAddr string `json:"remote_addr"`
	// ContentLength is the declared body length; -1 means unknown (chunked).
	ContentLength int64 `json:"content_length"`
	// Header holds the recorded headers, every value as received:
	// Connection, Upgrade, Forwarded, X-Forwarded-For, X-Forwarded-Host,
	// X-Forwarded-Proto, X-Forwarded-Prefix, X-Real-IP, X-Request-ID.
	Header http.Header `json:"header"`
}

// recordedHeader reports whether a (canonical) header is kept in Request.Header.
func recordedHeader(name string) bool {
	switch name {
	case "Connection", "Upgrade", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host",
		"X-Forwarded-Proto", "X-Forwarded-Prefix", "X-Real-Ip", "X-Request-Id":
		return true
	}
	return false
}

// counter is the mutable part of Stats, guarded by Server.mu.
type counter struct {
	total    int64
	inactive bool
	requests map[string]int64
	ids      map[string]int64
	recent   []Request // ring buffer of at most cap entries
	next     int       // index of the oldest entry once the ring is full
	cap      int
}

func newCounter(history int) counter {
	return counter{requests: map[string]int64{}, ids: map[string]int64{}, cap: history}
}

// add counts r, arrived at now.
func (c *counter) add(r *http.Request, now time.Time) {
	c.total++
	c.requests[r.Method+" "+r.URL.Path]++
	for _, id := range r.Header.Values("X-Request-Id") {
		c.ids[id]++
	}
	if c.cap <= 0 {
		return
	}
	rec := Request{
		Seq:           c.total,
		Time:          now,
		Method:        r.Method,
		URI:           r.RequestURI,
		Path:          r.URL.Path,
		RawQuery:      r.URL.RawQuery,
		Proto:         r.Proto,
		Host:          r.Host,
		RemoteAddr:    r.RemoteAddr,
		ContentLength: r.ContentLength,
		Header:        http.Header{},
	}
	for name, values := range r.Header {
		if recordedHeader(name) {
			rec.Header[name] = slices.Clone(values)
		}
	}
	if len(c.recent) < c.cap {
		c.recent = append(c.recent, rec)
		return
	}
	c.recent[c.next] = rec
	c.next = (c.next + 1) % c.cap
}

// snapshot returns a deep copy of the counts, oldest request first.
func (c *counter) snapshot() Stats {
	st := Stats{
		Inactive:   c.inactive,
		Total:      c.total,
		Requests:   maps.Clone(c.requests),
		RequestIDs: maps.Clone(c.ids),
		Recent:     make([]Request, 0, len(c.recent)),
	}
	st.Recent = append(st.Recent, c.recent[c.next:]...)
	st.Recent = append(st.Recent, c.recent[:c.next]...)
	for i := range st.Recent {
		st.Recent[i].Header = st.Recent[i].Header.Clone()
	}
	return st
}
