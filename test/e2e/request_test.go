package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/healgate/healgate/admin"
)

// result is a finished HTTP exchange.
type result struct {
	status  int
	header  http.Header
	body    string
	elapsed time.Duration // from sending the request to the end of the body
}

// reqOpts shapes one request.
type reqOpts struct {
	body   io.Reader
	length int64 // Content-Length when body is set; 0 means unknown (chunked)
	header map[string]string
	limit  time.Duration // bound on the whole exchange; 0 means 30s
}

// do sends method url and reads the whole answer within opts.limit. A
// transport error fails the test: use try when an error is an outcome.
func do(t *testing.T, client *http.Client, method, url string, opts reqOpts) result {
	t.Helper()
	r, err := try(t, client, method, url, opts)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

// try is do that returns a transport error instead of failing the test. It
// is safe to call from several goroutines.
func try(t *testing.T, client *http.Client, method, url string, opts reqOpts) (result, error) {
	t.Helper()
	limit := opts.limit
	if limit == 0 {
		limit = 30 * time.Second
	}
	req, err := http.NewRequestWithContext(contextFor(t, limit), method, url, opts.body)
	if err != nil {
		return result{}, err
	}
	if opts.body != nil && opts.length > 0 {
		req.ContentLength = opts.length
	}
	for k, v := range opts.header {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return result{elapsed: time.Since(start)}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	r := result{status: resp.StatusCode, header: resp.Header, body: string(b), elapsed: time.Since(start)}
	return r, err
}

// get is do with GET and no body.
func (s *stack) get(t *testing.T, path string, header map[string]string) result {
	t.Helper()
	return do(t, s.client, http.MethodGet, s.nginx.URL(path), reqOpts{header: header})
}

// url returns healgate's own URL of path, bypassing nginx.
func (g *gate) url(path string) string { return "http://" + g.addr + path }

// status returns healgate's /status document.
func (g *gate) status(t *testing.T) admin.Status {
	t.Helper()
	code, body := g.adminGet(t, "/status")
	var st admin.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != http.StatusOK {
		t.Fatalf("healgate /status: %d %v\n%s", code, err, body)
	}
	return st
}

// breaker returns the breaker state of the upstream named name, as /status
// reports it: "closed", "half-open" or "open".
func (g *gate) breaker(t *testing.T, name string) string {
	t.Helper()
	st := g.status(t)
	for _, u := range st.Upstreams {
		if u.Name == name {
			return u.Breaker
		}
	}
	t.Fatalf("healgate /status has no upstream %q: %+v", name, st.Upstreams)
	return ""
}

// requestIDs makes unique X-Request-ID values for one test.
type requestIDs struct {
	prefix string
	n      atomic.Int64
}

func newRequestIDs(t *testing.T) *requestIDs {
	return &requestIDs{prefix: fmt.Sprintf("e2e-%s-%d", strings.NewReplacer("/", "-", " ", "_").Replace(t.Name()), time.Now().UnixNano())}
}

func (r *requestIDs) next() string { return fmt.Sprintf("%s-%d", r.prefix, r.n.Add(1)) }

// conversionBody returns a ConvertService.ashx request of about 700 bytes,
// shaped like a document management system's (key, url, output type and a
// JWT in "token").
func conversionBody(key string) string {
	token := "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + strings.Repeat("eyJwYXlsb2FkIjoiZTJlIn0", 18) + ".c2lnbmF0dXJl"
	return fmt.Sprintf(`{"async":false,"filetype":"docx","key":%q,"outputtype":"pdf",`+
		`"title":"Quarterly report.docx","url":"https://dms.example.com/files/%s/download?version=3",`+
		`"region":"en-US","thumbnail":{"aspect":1,"first":true,"height":150,"width":100},"token":%q}`, key, key, token)
}

// errorClass returns the X-Healgate-Error class of a response: its first
// token (the header may carry more, like the request ID).
func errorClass(h http.Header) string {
	v := h.Get("X-Healgate-Error")
	if i := strings.IndexAny(v, " ;,"); i >= 0 {
		v = v[:i]
	}
	return v
}
