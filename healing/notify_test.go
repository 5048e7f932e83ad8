package healing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/healgate/healgate/config"
)

// notifyWait bounds every wait in these tests; reaching it fails the test.
const notifyWait = 10 * time.Second

// hookRequest is one request a hookReceiver got.
type hookRequest struct {
	method, path, query, contentType string
	body                             []byte
}

// hookReceiver is a real webhook endpoint on loopback. answer decides the
// response to the n-th request (1-based); each request is reported on reqs
// before it is answered.
type hookReceiver struct {
	srv  *httptest.Server
	reqs chan hookRequest

	mu sync.Mutex
	n  int
}

func newHookReceiver(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, n int)) *hookReceiver {
	t.Helper()
	rc := &hookReceiver{reqs: make(chan hookRequest, 64)}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.n++
		n := rc.n
		rc.mu.Unlock()
		rc.reqs <- hookRequest{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, contentType: r.Header.Get("Content-Type"), body: body}
		answer(w, r, n)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *hookReceiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.n
}

// next returns the next request, failing the test if none comes in time.
func (rc *hookReceiver) next(t *testing.T) hookRequest {
	t.Helper()
	select {
	case r := <-rc.reqs:
		return r
	case <-time.After(notifyWait):
		t.Fatal("no request reached the hookReceiver")
		return hookRequest{}
	}
}

func hookAnswer(code int, body string) func(http.ResponseWriter, *http.Request, int) {
	return func(w http.ResponseWriter, _ *http.Request, _ int) {
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

// fastWebhookClient is the production client with millisecond retry waits.
func fastWebhookClient() *retryablehttp.Client {
	c := newWebhookClient()
	c.RetryWaitMin = time.Millisecond
	c.RetryWaitMax = 2 * time.Millisecond
	return c
}

// runNotifier starts n.Run and returns a stop function that cancels it and
// waits for it to return nil.
func runNotifier(t *testing.T, n *Notifier) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- n.Run(ctx) }()
	var once sync.Once
	stop = func() {
		t.Helper()
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("Run = %v, want nil", err)
				}
			case <-time.After(notifyWait):
				t.Fatal("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// metric returns the value of the counter or gauge name with labels in reg
// (0 if absent).
func notifyMetric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !notifyLabelsMatch(m, labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return 0
}

func notifyLabelsMatch(m *dto.Metric, want map[string]string) bool {
	if len(m.GetLabel()) != len(want) {
		return false
	}
	for _, l := range m.GetLabel() {
		if want[l.GetName()] != l.GetValue() {
			return false
		}
	}
	return true
}

func sentCount(t *testing.T, reg *prometheus.Registry, format, result string) float64 {
	t.Helper()
	return notifyMetric(t, reg, "healgate_notify_sent_total", map[string]string{"format": format, "result": result})
}

// notifyLogs is a concurrency-safe log sink.
type notifyLogs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *notifyLogs) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *notifyLogs) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newNotifierT(t *testing.T, cfg config.Notify, opts NotifierOptions) (*Notifier, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	if opts.Client == nil {
		opts.Client = fastWebhookClient()
	}
	if opts.Host == "" {
		opts.Host = "node1"
	}
	n, err := NewNotifier(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return n, reg
}

var notifyRestartEvent = Event{
	Time:    time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
	Target:  "docservice",
	Kind:    EventHealSucceeded,
	From:    "healing",
	To:      "verifying",
	Reason:  "liveness failed 3 times: connection refused",
	Action:  "systemd",
	Unit:    "ds-docservice.service",
	Result:  "done",
	Details: map[string]string{"job": "1234"},
}

const notifyRestartSentence = "healgate on node1: ds-docservice.service restarted (liveness failed 3 times: connection refused) — result done"

func TestNotifyBodies(t *testing.T) {
	robotOK := hookAnswer(200, `{"errcode":0,"errmsg":"ok"}`)
	generic := newHookReceiver(t, hookAnswer(204, ""))
	slack := newHookReceiver(t, hookAnswer(200, "ok"))
	ding := newHookReceiver(t, robotOK)
	wecom := newHookReceiver(t, robotOK)
	n, reg := newNotifierT(t, config.Notify{QueueSize: 8, Webhooks: []config.Webhook{
		{URL: generic.srv.URL + "/hook"}, // empty format: generic
		{URL: slack.srv.URL + "/services/T0/B0/secret", Format: config.FormatSlack},
		{URL: ding.srv.URL + "/robot/send?access_token=tok", Format: config.FormatDingTalk},
		{URL: wecom.srv.URL + "/cgi-bin/webhook/send?key=k", Format: config.FormatWeCom},
	}}, NotifierOptions{})
	stop := runNotifier(t, n)

	if !n.Notify(notifyRestartEvent) {
		t.Fatal("Notify = false on an empty queue")
	}
	e2 := Event{Target: "docservice", Kind: EventBreakerOpened, Reason: "5 failures <in a row> & more"}
	if !n.Notify(e2) {
		t.Fatal("Notify = false on an empty queue")
	}

	got := map[*hookReceiver][]hookRequest{}
	for _, rc := range []*hookReceiver{generic, slack, ding, wecom} {
		for range 2 {
			r := rc.next(t)
			if r.method != http.MethodPost || r.contentType != "application/json" {
				t.Errorf("%s %s with Content-Type %q, want POST application/json", r.method, r.path, r.contentType)
			}
			got[rc] = append(got[rc], r)
		}
	}
	stop()

	// Generic: every Event field under its snake_case name, plus host and text.
	var g map[string]any
	if err := json.Unmarshal(got[generic][0].body, &g); err != nil {
		t.Fatalf("generic body %s: %v", got[generic][0].body, err)
	}
	wantGeneric := map[string]any{
		"time": "2026-03-01T12:00:00Z", "target": "docservice", "kind": "heal_succeeded",
		"from": "healing", "to": "verifying", "reason": "liveness failed 3 times: connection refused",
		"action": "systemd", "unit": "ds-docservice.service", "result": "done",
		"details": map[string]any{"job": "1234"}, "host": "node1", "text": notifyRestartSentence,
	}
	if len(g) != len(wantGeneric) {
		t.Errorf("generic body has %d fields, want %d: %s", len(g), len(wantGeneric), got[generic][0].body)
	}
	for k, want := range wantGeneric {
		if gb, wb := notifyJSON(t, g[k]), notifyJSON(t, want); gb != wb {
			t.Errorf("generic %q = %s, want %s", k, gb, wb)
		}
	}
	// The second event had no Time: Notify stamped it.
	var g2 Event
	if err := json.Unmarshal(got[generic][1].body, &g2); err != nil {
		t.Fatal(err)
	}
	if g2.Time.IsZero() || g2.Kind != EventBreakerOpened || g2.Details != nil {
		t.Errorf("second generic event = %+v, want a stamped breaker_opened without details", g2)
	}

	// Slack: {"text": ...} with &, < and > escaped.
	var sl struct{ Text string }
	decodeHookBody(t, got[slack][0].body, &sl)
	if sl.Text != notifyRestartSentence {
		t.Errorf("slack text = %q, want %q", sl.Text, notifyRestartSentence)
	}
	decodeHookBody(t, got[slack][1].body, &sl)
	if want := "healgate on node1: circuit breaker opened for docservice (5 failures &lt;in a row&gt; &amp; more)"; sl.Text != want {
		t.Errorf("slack text = %q, want %q", sl.Text, want)
	}
	if got[slack][0].path != "/services/T0/B0/secret" {
		t.Errorf("slack path = %q", got[slack][0].path)
	}

	// DingTalk and WeCom: {"msgtype":"text","text":{"content":...}}, URL query kept.
	for rc, query := range map[*hookReceiver]string{ding: "access_token=tok", wecom: "key=k"} {
		var rb struct {
			MsgType string `json:"msgtype"`
			Text    struct {
				Content string `json:"content"`
			} `json:"text"`
		}
		decodeHookBody(t, got[rc][0].body, &rb)
		if rb.MsgType != "text" || rb.Text.Content != notifyRestartSentence {
			t.Errorf("robot body = %s, want msgtype text and content %q", got[rc][0].body, notifyRestartSentence)
		}
		if got[rc][0].query != query {
			t.Errorf("robot query = %q, want %q", got[rc][0].query, query)
		}
	}

	for _, f := range []string{config.FormatGeneric, config.FormatSlack, config.FormatDingTalk, config.FormatWeCom} {
		if got := sentCount(t, reg, f, "ok"); got != 2 {
			t.Errorf("sent{%s,ok} = %v, want 2", f, got)
		}
		if got := sentCount(t, reg, f, "error"); got != 0 {
			t.Errorf("sent{%s,error} = %v, want 0", f, got)
		}
	}
}

func notifyJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// decodeHookBody decodes b into v, failing on fields v does not have.
func decodeHookBody(t *testing.T, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("body %s: %v", b, err)
	}
}

func TestNotifyRetriesThenSendsOnce(t *testing.T) {
	rc := newHookReceiver(t, func(w http.ResponseWriter, _ *http.Request, n int) {
		if n <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	n, reg := newNotifierT(t, config.Notify{QueueSize: 4, Webhooks: []config.Webhook{{URL: rc.srv.URL}}}, NotifierOptions{})
	stop := runNotifier(t, n)
	n.Notify(notifyRestartEvent)
	first := rc.next(t)
	for range 2 {
		if r := rc.next(t); !bytes.Equal(r.body, first.body) {
			t.Errorf("retry body = %s, want the first body %s", r.body, first.body)
		}
	}
	stop()
	if c := rc.count(); c != 3 {
		t.Errorf("hookReceiver got %d requests, want 3 (two 503s, then 200)", c)
	}
	if ok, bad := sentCount(t, reg, "generic", "ok"), sentCount(t, reg, "generic", "error"); ok != 1 || bad != 0 {
		t.Errorf("sent ok=%v error=%v, want 1 and 0", ok, bad)
	}
}

func TestNotifyRetryGivesUp(t *testing.T) {
	rc := newHookReceiver(t, hookAnswer(http.StatusBadGateway, "upstream down"))
	logs := &notifyLogs{}
	n, reg := newNotifierT(t, config.Notify{QueueSize: 4, Webhooks: []config.Webhook{{URL: rc.srv.URL}}},
		NotifierOptions{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	stop := runNotifier(t, n)
	n.Notify(notifyRestartEvent)
	for range 1 + webhookRetryMax {
		rc.next(t)
	}
	stop()
	if c := rc.count(); c != 1+webhookRetryMax {
		t.Errorf("hookReceiver got %d requests, want %d", c, 1+webhookRetryMax)
	}
	if ok, bad := sentCount(t, reg, "generic", "ok"), sentCount(t, reg, "generic", "error"); ok != 0 || bad != 1 {
		t.Errorf("sent ok=%v error=%v, want 0 and 1", ok, bad)
	}
	if l := logs.String(); !strings.Contains(l, "502") || !strings.Contains(l, "upstream down") {
		t.Errorf("log does not report the last answer:\n%s", l)
	}
}

func TestNotifyClientErrorNotRetried(t *testing.T) {
	for _, code := range []int{http.StatusBadRequest, http.StatusNotFound, http.StatusGone} {
		rc := newHookReceiver(t, hookAnswer(code, "invalid_payload"))
		n, reg := newNotifierT(t, config.Notify{QueueSize: 4, Webhooks: []config.Webhook{{URL: rc.srv.URL, Format: config.FormatSlack}}}, NotifierOptions{})
		stop := runNotifier(t, n)
		n.Notify(notifyRestartEvent)
		rc.next(t)
		stop()
		if c := rc.count(); c != 1 {
			t.Errorf("%d: hookReceiver got %d requests, want 1 (no retry)", code, c)
		}
		if bad := sentCount(t, reg, "slack", "error"); bad != 1 {
			t.Errorf("%d: sent{slack,error} = %v, want 1", code, bad)
		}
	}
}

func TestNotifyRobotErrcodeFails(t *testing.T) {
	for _, tc := range []struct {
		format, answer, wantLog string
	}{
		{config.FormatDingTalk, `{"errcode":310000,"errmsg":"keywords not in content"}`, "310000"},
		{config.FormatWeCom, `{"errcode":93000,"errmsg":"invalid webhook url"}`, "93000"},
		{config.FormatDingTalk, `<html>gateway says hi</html>`, "without errcode"},
	} {
		t.Run(tc.format, func(t *testing.T) {
			rc := newHookReceiver(t, hookAnswer(http.StatusOK, tc.answer))
			logs := &notifyLogs{}
			n, reg := newNotifierT(t, config.Notify{QueueSize: 4, Webhooks: []config.Webhook{
				{URL: rc.srv.URL + "/robot/send?access_token=SECRET-TOKEN", Format: tc.format},
			}}, NotifierOptions{Logger: slog.New(slog.NewTextHandler(logs, nil))})
			stop := runNotifier(t, n)
			n.Notify(notifyRestartEvent)
			rc.next(t)
			stop()
			if c := rc.count(); c != 1 {
				t.Errorf("hookReceiver got %d requests, want 1", c)
			}
			if ok, bad := sentCount(t, reg, tc.format, "ok"), sentCount(t, reg, tc.format, "error"); ok != 0 || bad != 1 {
				t.Errorf("sent ok=%v error=%v, want 0 and 1", ok, bad)
			}
			l := logs.String()
			if !strings.Contains(l, tc.wantLog) {
				t.Errorf("log does not mention %q:\n%s", tc.wantLog, l)
			}
			if strings.Contains(l, "SECRET-TOKEN") {
				t.Errorf("log leaks the webhook's token:\n%s", l)
			}
		})
	}
}

func TestNotifyLogsNoCredentials(t *testing.T) {
	// A port nothing listens on: every try is refused, and the error text
	// from net/http holds the URL.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	logs := &notifyLogs{}
	n, reg := newNotifierT(t, config.Notify{QueueSize: 4, Webhooks: []config.Webhook{
		{URL: "http://" + addr + "/services/T0/B0/SECRET-PATH?key=SECRET-KEY", Format: config.FormatSlack},
	}}, NotifierOptions{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	stop := runNotifier(t, n)
	n.Notify(notifyRestartEvent)
	stop() // the send ends within the flush time: refusals retry in milliseconds
	if bad := sentCount(t, reg, "slack", "error"); bad != 1 {
		t.Fatalf("sent{slack,error} = %v, want 1", bad)
	}
	l := logs.String()
	if !strings.Contains(l, "refused") || !strings.Contains(l, "http://"+addr) {
		t.Errorf("log does not name the failure and the webhook's host:\n%s", l)
	}
	if strings.Contains(l, "SECRET") {
		t.Errorf("log leaks the webhook's credentials:\n%s", l)
	}
}

func TestNotifyFullQueueDropsWithoutBlocking(t *testing.T) {
	release := make(chan struct{})
	rc := newHookReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release) // before the server's Close (cleanup), which waits for handlers
	n, reg := newNotifierT(t, config.Notify{QueueSize: 2, Webhooks: []config.Webhook{{URL: rc.srv.URL}}}, NotifierOptions{})
	stop := runNotifier(t, n)

	n.Notify(Event{Target: "docservice", Kind: EventHealStarted})
	rc.next(t) // Run is now blocked in the first send; the queue is empty

	results := make(chan []bool, 1)
	go func() {
		var r []bool
		for _, k := range []EventKind{EventHealSucceeded, EventRecovered, EventGaveUp, EventReset} {
			r = append(r, n.Notify(Event{Target: "docservice", Kind: k}))
		}
		results <- r
	}()
	select {
	case r := <-results:
		if want := []bool{true, true, false, false}; !slices.Equal(r, want) {
			t.Errorf("Notify results = %v, want %v", r, want)
		}
	case <-time.After(notifyWait):
		t.Fatal("Notify blocked on a full queue")
	}
	if d := notifyMetric(t, reg, "healgate_notify_dropped_total", nil); d != 2 {
		t.Errorf("dropped = %v, want 2", d)
	}
	if q := notifyMetric(t, reg, "healgate_notify_queue_length", nil); q != 2 {
		t.Errorf("queue length = %v, want 2", q)
	}

	release <- struct{}{} // the first send answers
	var kinds []EventKind
	for range 2 {
		var e Event
		if err := json.Unmarshal(rc.next(t).body, &e); err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, e.Kind)
		release <- struct{}{}
	}
	if kinds[0] != EventHealSucceeded || kinds[1] != EventRecovered {
		t.Errorf("queued events arrived as %v, want [heal_succeeded recovered]", kinds)
	}
	stop()
	if ok := sentCount(t, reg, "generic", "ok"); ok != 3 {
		t.Errorf("sent ok = %v, want 3", ok)
	}
	if q := notifyMetric(t, reg, "healgate_notify_queue_length", nil); q != 0 {
		t.Errorf("queue length = %v, want 0", q)
	}
}

func TestNotifierRunStopsOnCancel(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	// A hookReceiver that never answers: the send in flight is canceled once
	// the flush time runs out, and the queued events are dropped.
	rc := newHookReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) { <-r.Context().Done() })
	defer rc.srv.Close()
	n, reg := newNotifierT(t, config.Notify{QueueSize: 4, Webhooks: []config.Webhook{{URL: rc.srv.URL}}},
		NotifierOptions{FlushTimeout: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- n.Run(ctx) }()
	n.Notify(Event{Target: "docservice", Kind: EventHealStarted})
	rc.next(t)
	n.Notify(Event{Target: "docservice", Kind: EventHealFailed})
	n.Notify(Event{Target: "docservice", Kind: EventGaveUp})
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(notifyWait):
		t.Fatal("Run did not return after its context ended")
	}
	if bad := sentCount(t, reg, "generic", "error"); bad != 1 {
		t.Errorf("sent error = %v, want 1 (the canceled send)", bad)
	}
	if d := notifyMetric(t, reg, "healgate_notify_dropped_total", nil); d != 2 {
		t.Errorf("dropped = %v, want 2 (queued at shutdown)", d)
	}
	if c := rc.count(); c != 1 {
		t.Errorf("hookReceiver got %d requests, want 1", c)
	}
}

func TestNotifierFlushesOnCancel(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	rc := newHookReceiver(t, hookAnswer(http.StatusOK, ""))
	defer rc.srv.Close()
	n, reg := newNotifierT(t, config.Notify{QueueSize: 4, Webhooks: []config.Webhook{{URL: rc.srv.URL}}}, NotifierOptions{})
	for _, k := range []EventKind{EventHealStarted, EventHealSucceeded, EventRecovered} {
		n.Notify(Event{Target: "docservice", Kind: k})
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // Run starts already stopping: it only flushes
	if err := n.Run(ctx); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if c := rc.count(); c != 3 {
		t.Errorf("hookReceiver got %d requests, want 3 flushed", c)
	}
	if ok, d := sentCount(t, reg, "generic", "ok"), notifyMetric(t, reg, "healgate_notify_dropped_total", nil); ok != 3 || d != 0 {
		t.Errorf("sent ok=%v dropped=%v, want 3 and 0", ok, d)
	}
}

func TestNotifierNoFlush(t *testing.T) {
	rc := newHookReceiver(t, hookAnswer(http.StatusOK, ""))
	n, reg := newNotifierT(t, config.Notify{QueueSize: 4, Webhooks: []config.Webhook{{URL: rc.srv.URL}}},
		NotifierOptions{FlushTimeout: -1})
	for range 3 {
		n.Notify(Event{Target: "docservice", Kind: EventRecovered})
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := n.Run(ctx); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	// Run may have picked one event before it saw the context end; that
	// send was canceled at once, or had already been answered. Nothing
	// else reached the receiver.
	ok, bad, d := sentCount(t, reg, "generic", "ok"), sentCount(t, reg, "generic", "error"), notifyMetric(t, reg, "healgate_notify_dropped_total", nil)
	if ok > 1 || ok+bad > 1 || ok+bad+d != 3 || rc.count() > 1 {
		t.Errorf("sent ok=%v error=%v dropped=%v, received %d; want at most the one event in flight sent or canceled, the rest dropped",
			ok, bad, d, rc.count())
	}
}

func TestNotifierWithoutWebhooks(t *testing.T) {
	n, reg := newNotifierT(t, config.Notify{QueueSize: 1}, NotifierOptions{})
	for range 3 {
		if !n.Notify(notifyRestartEvent) {
			t.Fatal("Notify = false with no webhooks")
		}
	}
	if d := notifyMetric(t, reg, "healgate_notify_dropped_total", nil); d != 0 {
		t.Errorf("dropped = %v, want 0", d)
	}
	stop := runNotifier(t, n)
	stop()
}

func TestNewNotifierErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		hook config.Webhook
		want string
	}{
		{"relative", config.Webhook{URL: "/hook?key=SECRET"}, "notify.webhooks[0].url"},
		{"scheme", config.Webhook{URL: "ftp://h/x?key=SECRET"}, "notify.webhooks[0].url"},
		{"format", config.Webhook{URL: "http://h/x?key=SECRET", Format: "teams"}, "notify.webhooks[0].format"},
	} {
		_, err := NewNotifier(config.Notify{QueueSize: 1, Webhooks: []config.Webhook{tc.hook}}, NotifierOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one naming %s", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "SECRET") {
			t.Errorf("%s: err = %v leaks the URL", tc.name, err)
		}
	}
	reg := prometheus.NewRegistry()
	if _, err := NewNotifier(config.Notify{QueueSize: 1}, NotifierOptions{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	var are prometheus.AlreadyRegisteredError
	if _, err := NewNotifier(config.Notify{QueueSize: 1}, NotifierOptions{Registerer: reg}); !errors.As(err, &are) {
		t.Errorf("second registration: err = %v, want AlreadyRegisteredError", err)
	}
}

func TestEventSummary(t *testing.T) {
	for _, tc := range []struct {
		e    Event
		host string
		want string
	}{
		{notifyRestartEvent, "node1", notifyRestartSentence},
		{Event{Kind: EventHealStarted, Target: "docservice", Unit: "ds-docservice.service", Reason: "unit ds-docservice.service is failed/failed"}, "",
			"healgate: restarting ds-docservice.service (unit ds-docservice.service is failed/failed)"},
		{Event{Kind: EventHealStarted, Target: "docservice", Unit: "ds-docservice.service ds-converter.service", Reason: "liveness failed 3 times in a row", Result: "dry-run"}, "h",
			"healgate on h: dry run: would restart ds-docservice.service ds-converter.service (liveness failed 3 times in a row) — result dry-run"},
		{Event{Kind: EventHealFailed, Target: "docservice", Unit: "ds-docservice.service", Result: "timeout"}, "h",
			"healgate on h: healing ds-docservice.service failed — result timeout"},
		{Event{Kind: EventGaveUp, Target: "docservice", Reason: "restart budget spent (3 in 30m0s)"}, "h",
			"healgate on h: gave up healing docservice (restart budget spent (3 in 30m0s))"},
		{Event{Kind: EventDependencyDown, Target: "docservice", Unit: "rabbitmq-server.service", Details: map[string]string{"dependency": "rabbitmq"}}, "h",
			"healgate on h: dependency rabbitmq (rabbitmq-server.service) of docservice is down"},
		{Event{Kind: EventDependencyDown, Target: "docservice", Details: map[string]string{"dependency": "redis"}, Reason: "3 failed checks"}, "h",
			"healgate on h: dependency redis of docservice is down (3 failed checks)"},
		{Event{Kind: EventRecovered, Target: "docservice", Unit: "ds-docservice.service"}, "h",
			"healgate on h: docservice recovered"},
		{Event{Kind: EventReset, Target: "docservice"}, "h", "healgate on h: docservice reset by an operator"},
		{Event{Kind: "custom", Target: "docservice"}, "h", "healgate on h: docservice: custom"},
	} {
		if got := tc.e.Summary(tc.host); got != tc.want {
			t.Errorf("Summary(%+v) =\n %q, want\n %q", tc.e, got, tc.want)
		}
	}
}

func TestWeComTextIsCut(t *testing.T) {
	n, _ := newNotifierT(t, config.Notify{QueueSize: 1}, NotifierOptions{})
	e := Event{Kind: EventHealFailed, Target: "docservice", Reason: strings.Repeat("日志", 600)} // 3600 bytes
	b, err := n.body(config.FormatWeCom, e)
	if err != nil {
		t.Fatal(err)
	}
	var rb struct {
		Text struct{ Content string } `json:"text"`
	}
	if err := json.Unmarshal(b, &rb); err != nil {
		t.Fatal(err)
	}
	c := rb.Text.Content
	if len(c) > maxWeComText || !utf8.ValidString(c) || !strings.HasSuffix(c, "…") || len(c) < maxWeComText-3 {
		t.Errorf("WeCom content is %d bytes, valid UTF-8 %v, ends %q; want at most %d, valid, cut with …",
			len(c), utf8.ValidString(c), c[len(c)-6:], maxWeComText)
	}
}

func TestWebhookRetryPolicy(t *testing.T) {
	ctx := t.Context()
	for code, want := range map[int]bool{
		200: false, 204: false, 301: false, 400: false, 401: false, 404: false, 410: false,
		429: true, 500: true, 501: false, 502: true, 503: true, 504: true,
	} {
		got, err := webhookRetryPolicy(ctx, &http.Response{StatusCode: code}, nil)
		if got != want || err != nil {
			t.Errorf("status %d: retry = %v, %v; want %v", code, got, err, want)
		}
	}

	// Real transport errors: a refused connection is retried, an
	// untrusted certificate is not.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	plain := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	_, refused := plain.Get("http://" + addr + "/")
	if got, _ := webhookRetryPolicy(ctx, nil, refused); refused == nil || !got {
		t.Errorf("refused (%v): retry = %v, want true", refused, got)
	}
	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler())
	defer tlsSrv.Close()
	_, certErr := plain.Get(tlsSrv.URL)
	if got, _ := webhookRetryPolicy(ctx, nil, certErr); certErr == nil || got {
		t.Errorf("untrusted certificate (%v): retry = %v, want false", certErr, got)
	}

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if got, err := webhookRetryPolicy(canceled, &http.Response{StatusCode: 503}, nil); got || !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: retry = %v, %v; want false, context.Canceled", got, err)
	}
}

func TestWebhookBackoff(t *testing.T) {
	lo, hi := time.Second, 30*time.Second
	if got := webhookBackoff(lo, hi, 0, nil); got != lo {
		t.Errorf("first wait = %v, want %v", got, lo)
	}
	if got := webhookBackoff(lo, hi, 2, nil); got != 4*time.Second {
		t.Errorf("third wait = %v, want 4s", got)
	}
	if got := webhookBackoff(lo, hi, 10, nil); got != hi {
		t.Errorf("late wait = %v, want the cap %v", got, hi)
	}
	resp := &http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"3600"}}}
	if got := webhookBackoff(lo, hi, 0, resp); got != hi {
		t.Errorf("Retry-After 3600: wait = %v, want the cap %v", got, hi)
	}
	resp.Header.Set("Retry-After", "7")
	if got := webhookBackoff(lo, hi, 0, resp); got != 7*time.Second {
		t.Errorf("Retry-After 7: wait = %v, want 7s", got)
	}
}
