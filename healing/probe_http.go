package healing

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/healgate/healgate/config"
)

// maxProbeBody bounds how much of a probe response body is read: enough for
// Document Server's "true"/"false" and a short error page, not a download.
const maxProbeBody = 4 << 10

// HTTPProbe checks an HTTP endpoint: a GET whose status and (optionally)
// trimmed body must match. Create it with NewHTTPProbe.
type HTTPProbe struct {
	client  *http.Client
	url     string
	want    config.Probe
	timeout time.Duration
}

// NewHTTPProbe returns a probe that GETs want.Path resolved against baseURL
// (an empty Path probes baseURL itself) and passes when the status equals
// want.ExpectStatus (zero: any 2xx) and, when want.ExpectBody is set, the
// first 4 KiB of the body with surrounding white space trimmed equal it.
// Document Server's /healthcheck answers 200 both ways: 200 "false" fails,
// "true\n" passes.
//
// client nil means a private client that ignores HTTP_PROXY, does not keep
// connections alive (each probe dials, like a new user would) and does not
// follow redirects (so a 3xx can be expected). timeout bounds each probe,
// dial to last body byte (zero: only the caller's context does). It returns
// an error if baseURL or want.Path does not parse or the URL is not http(s).
func NewHTTPProbe(client *http.Client, baseURL string, want config.Probe, timeout time.Duration) (*HTTPProbe, error) {
	base, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("http probe: %w", err)
	}
	if base.Scheme != "http" && base.Scheme != "https" || base.Host == "" {
		return nil, fmt.Errorf("http probe %q: want an http:// or https:// URL with a host", baseURL)
	}
	ref, err := url.Parse(want.Path)
	if err != nil {
		return nil, fmt.Errorf("http probe path: %w", err)
	}
	if client == nil {
		client = &http.Client{
			Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	return &HTTPProbe{client: client, url: base.ResolveReference(ref).String(), want: want, timeout: timeout}, nil
}

// URL returns the probed URL.
func (p *HTTPProbe) URL() string { return p.url }

// Probe performs one check.
func (p *HTTPProbe) Probe(ctx context.Context) Result {
	start := time.Now()
	ctx, cancel := withTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return failure(ctx, "http", p.url, start, err)
	}
	req.Header.Set("User-Agent", "healgate-probe")
	resp, err := p.client.Do(req)
	if err != nil {
		return failure(ctx, "http", p.url, start, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProbeBody))
	// Drain a bounded remainder so a kept-alive connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxProbeBody))
	if err != nil {
		return failure(ctx, "http", p.url, start, err)
	}
	detail := "HTTP " + strconv.Itoa(resp.StatusCode)
	if p.want.ExpectBody != "" || !statusOK(resp.StatusCode, p.want.ExpectStatus) {
		detail += " body " + quoteShort(body)
	}
	if !statusOK(resp.StatusCode, p.want.ExpectStatus) {
		return wrong(KindStatus, "http", p.url, start, detail)
	}
	if p.want.ExpectBody != "" && string(bytes.TrimSpace(body)) != p.want.ExpectBody {
		return wrong(KindBody, "http", p.url, start, detail)
	}
	return Result{OK: true, Latency: time.Since(start), Detail: detail}
}

// statusOK reports whether code is the wanted status (want zero: any 2xx).
func statusOK(code, want int) bool {
	if want == 0 {
		return code >= 200 && code <= 299
	}
	return code == want
}

// quoteShort quotes at most 64 bytes of b for a Detail.
func quoteShort(b []byte) string {
	const max = 64
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + "..."
	}
	return strconv.Quote(string(b))
}
