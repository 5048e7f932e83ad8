package healing

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/healgate/healgate/config"
)

// EventKind says what happened to a healing target. Its values are the
// "kind" field of the generic webhook body and of /status.
type EventKind string

// Event kinds.
const (
	// EventHealStarted: a restart (systemd, or the exec command) was
	// started, or would have been under dry_run (Result "dry-run").
	EventHealStarted EventKind = "heal_started"
	// EventHealSucceeded: the heal worked: after the restart the target
	// passed its checks again (verifying → healthy).
	EventHealSucceeded EventKind = "heal_succeeded"
	// EventHealFailed: the action failed or timed out, or the target did
	// not recover after it; the healer backs off.
	EventHealFailed EventKind = "heal_failed"
	// EventGaveUp: the restart budget is spent; the target is left alone
	// until its health returns or an operator resets it.
	EventGaveUp EventKind = "gave_up"
	// EventBreakerOpened: the target's circuit breaker opened.
	EventBreakerOpened EventKind = "breaker_opened"
	// EventDependencyDown: a dependency (PostgreSQL, RabbitMQ, Redis) is down.
	EventDependencyDown EventKind = "dependency_down"
	// EventRecovered: the target passes its checks again without a
	// successful heal (health returned during backoff or after giving up).
	EventRecovered EventKind = "recovered"
	// EventReset: an operator reset the target (POST /heal/{target}/reset).
	EventReset EventKind = "reset"
)

// Event is one heal event, as given to Notifier.Notify and shown by /status.
// Its JSON form (the generic webhook body) has these stable snake_case
// fields, all always present except details: time (RFC 3339 with
// nanoseconds), target, kind, from, to, reason, action, unit, result,
// details.
type Event struct {
	// Time is when it happened. Zero means the time Notify is called.
	Time time.Time `json:"time"`

	// Target names the healing target (an upstream name, "docservice").
	Target string `json:"target"`

	// Kind says what happened.
	Kind EventKind `json:"kind"`

	// From and To are the target's states before and after (State.String:
	// "healthy", "healing", …); empty for events that are not transitions.
	From string `json:"from"`
	To   string `json:"to"`

	// Reason says why, in a short phrase ("liveness failed 3 times in a
	// row").
	Reason string `json:"reason"`

	// Action is the healing action taken: "systemd", "exec" or "none";
	// empty when none was taken.
	Action string `json:"action"`

	// Unit is the unit (or space-separated units) acted on or reported
	// about: the target's, or for EventDependencyDown the dependency's
	// (empty if it has none).
	Unit string `json:"unit"`

	// Result is the action's outcome: a systemd job result ("done",
	// "failed", "timeout", …), "exit 1", "dry-run"; empty when none.
	Result string `json:"result"`

	// Details holds optional extra facts. The key "dependency" names the
	// dependency of an EventDependencyDown. Notify keeps a copy.
	Details map[string]string `json:"details,omitempty"`
}

// Summary returns the event as one human sentence, as sent to chat webhooks:
//
//	healgate on HOST: ds-docservice.service restarted (liveness failed 3 times: connection refused) — result done
//
// The subject is Unit, else Target. An empty host leaves out " on HOST".
func (e Event) Summary(host string) string {
	var b strings.Builder
	b.WriteString("healgate")
	if host != "" {
		b.WriteString(" on ")
		b.WriteString(host)
	}
	b.WriteString(": ")
	subject := e.Unit
	if subject == "" {
		subject = e.Target
	}
	if subject == "" {
		subject = "the target"
	}
	switch e.Kind {
	case EventHealStarted:
		if e.Result == "dry-run" {
			b.WriteString("dry run: would restart " + subject)
		} else {
			b.WriteString("restarting " + subject)
		}
	case EventHealSucceeded:
		b.WriteString(subject + " restarted")
	case EventHealFailed:
		b.WriteString("healing " + subject + " failed")
	case EventGaveUp:
		b.WriteString("gave up healing " + subject)
	case EventBreakerOpened:
		b.WriteString("circuit breaker opened for " + subject)
	case EventDependencyDown:
		dep := e.Details["dependency"]
		switch {
		case dep != "" && e.Unit != "":
			dep += " (" + e.Unit + ")"
		case dep == "":
			dep = e.Unit
		}
		if dep == "" {
			b.WriteString("a dependency")
		} else {
			b.WriteString("dependency " + dep)
		}
		if e.Target != "" {
			b.WriteString(" of " + e.Target)
		}
		b.WriteString(" is down")
	case EventRecovered:
		if e.Target != "" {
			subject = e.Target
		}
		b.WriteString(subject + " recovered")
	case EventReset:
		if e.Target != "" {
			subject = e.Target
		}
		b.WriteString(subject + " reset by an operator")
	default:
		b.WriteString(subject + ": " + string(e.Kind))
	}
	if e.Reason != "" {
		b.WriteString(" (" + e.Reason + ")")
	}
	if e.Result != "" {
		b.WriteString(" — result " + e.Result)
	}
	return b.String()
}

// Notifier sends heal events to the configured webhooks without ever
// blocking the healer: Notify puts an event on a bounded queue, and Run, the
// one sender loop, POSTs each event to every webhook (in parallel, each
// event in turn), retrying failures with go-retryablehttp.
//
// Webhook URLs carry credentials (Slack's path, DingTalk's access_token,
// WeCom's key), so logs name a webhook by its index, format, scheme and host
// only.
//
// Metrics: healgate_notify_sent_total{format,result="ok"|"error"} counts
// sends per webhook (a send retried and then delivered counts once, as ok),
// healgate_notify_dropped_total counts events dropped (queue full, or
// still queued at shutdown when the flush time ran out), and
// healgate_notify_queue_length is the number of events waiting.
type Notifier struct {
	log          *slog.Logger
	client       *retryablehttp.Client
	host         string
	hooks        []webhook
	queue        chan Event
	flushTimeout time.Duration

	sent    *prometheus.CounterVec
	dropped prometheus.Counter
}

// NotifierOptions are a Notifier's collaborators; every field may be zero.
type NotifierOptions struct {
	// Logger receives a warning per failed send and per dropped event, and
	// a debug line per delivered one. Nil discards.
	Logger *slog.Logger

	// Registerer receives the notifier's metrics. Nil: the metrics are kept
	// but not registered.
	Registerer prometheus.Registerer

	// Client sends the webhooks, and is used as is; each send (all its
	// tries) is bounded by 2 minutes in any case. Nil: a client that tries
	// each send at most 4 times (3 retries, waits of 1s, 2s, 4s, a
	// Retry-After honoured up to 30s), with a 10s limit per try; it retries
	// connection errors (not certificate errors), 429 and 5xx other than
	// 501, never another 4xx; it follows no redirects (a 3xx is a failed
	// send); it does not keep connections alive (events are rare); and it
	// honours HTTPS_PROXY, HTTP_PROXY and NO_PROXY from the environment,
	// since chat webhooks are often reached only through an egress proxy
	// (loopback addresses are never proxied). Its go-retryablehttp Logger is
	// nil: that library would log full webhook URLs, credentials included.
	Client *retryablehttp.Client

	// Host names this machine in messages ("healgate on HOST: …") and in
	// the generic body's "host". Empty: os.Hostname.
	Host string

	// FlushTimeout is how long Run, once its context ends, keeps sending:
	// the event in flight and then those still queued. When it runs out,
	// sends in flight are canceled and the rest is dropped and counted.
	// Zero means 5s; negative means no flush: stop at once.
	FlushTimeout time.Duration
}

// Defaults of the Notifier and of its built-in client.
const (
	defaultFlushTimeout = 5 * time.Second
	webhookTryTimeout   = 10 * time.Second // one try: dial to last body byte
	webhookRetryMax     = 3                // retries after the first try
	webhookWaitMin      = 1 * time.Second
	webhookWaitMax      = 30 * time.Second
	// webhookSendTimeout bounds one send, all tries and waits included.
	webhookSendTimeout = 2 * time.Minute
	// maxWebhookAnswer bounds how much of a webhook's answer is read.
	maxWebhookAnswer = 16 << 10
	// maxWeComText is WeCom's limit on text.content, in bytes.
	maxWeComText = 2048
)

// webhook is one configured endpoint.
type webhook struct {
	index  int
	url    string // carries credentials: never log it
	where  string // scheme://host, safe to log
	format string
}

// NewNotifier returns a Notifier for cfg (notify.webhooks, notify.queue_size;
// a QueueSize below 1 means 1; an empty Format means generic). It returns an
// error if a webhook URL is not an absolute http(s) URL, a format is
// unknown, or the metrics cannot be registered. With no webhooks, Notify
// accepts and discards every event and Run only waits for its context.
func NewNotifier(cfg config.Notify, opts NotifierOptions) (*Notifier, error) {
	n := &Notifier{
		log:          opts.Logger,
		client:       opts.Client,
		host:         opts.Host,
		queue:        make(chan Event, max(cfg.QueueSize, 1)),
		flushTimeout: opts.FlushTimeout,
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if n.host == "" {
		n.host, _ = os.Hostname()
	}
	if n.flushTimeout == 0 {
		n.flushTimeout = defaultFlushTimeout
	}
	for i, w := range cfg.Webhooks {
		u, err := url.Parse(w.URL)
		if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			// The URL holds credentials: do not repeat it.
			return nil, fmt.Errorf("notify.webhooks[%d].url: want an absolute http or https URL", i)
		}
		format := w.Format
		switch format {
		case "":
			format = config.FormatGeneric
		case config.FormatGeneric, config.FormatSlack, config.FormatDingTalk, config.FormatWeCom:
		default:
			return nil, fmt.Errorf("notify.webhooks[%d].format: unknown format %q", i, w.Format)
		}
		n.hooks = append(n.hooks, webhook{index: i, url: w.URL, where: u.Scheme + "://" + u.Host, format: format})
	}
	if n.client == nil {
		n.client = newWebhookClient()
	}

	n.sent = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "healgate_notify_sent_total",
		Help: "Heal events sent to webhooks, by webhook format and result (ok, error); retries of one send are not counted.",
	}, []string{"format", "result"})
	n.dropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "healgate_notify_dropped_total",
		Help: "Heal events dropped because the notify queue was full, or still queued at shutdown.",
	})
	queueLen := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "healgate_notify_queue_length",
		Help: "Heal events waiting to be sent to webhooks.",
	}, func() float64 { return float64(len(n.queue)) })
	for _, w := range n.hooks {
		n.sent.WithLabelValues(w.format, "ok")
		n.sent.WithLabelValues(w.format, "error")
	}
	if reg := opts.Registerer; reg != nil {
		for _, c := range []prometheus.Collector{n.sent, n.dropped, queueLen} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("notify: register metrics: %w", err)
			}
		}
	}
	return n, nil
}

// newWebhookClient returns the client described at NotifierOptions.Client.
func newWebhookClient() *retryablehttp.Client {
	return &retryablehttp.Client{
		HTTPClient: &http.Client{
			Timeout: webhookTryTimeout,
			Transport: &http.Transport{
				Proxy:               http.ProxyFromEnvironment,
				DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
				TLSHandshakeTimeout: 5 * time.Second,
				DisableKeepAlives:   true,
				ForceAttemptHTTP2:   true,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		Logger:       nil,
		RetryWaitMin: webhookWaitMin,
		RetryWaitMax: webhookWaitMax,
		RetryMax:     webhookRetryMax,
		CheckRetry:   webhookRetryPolicy,
		Backoff:      webhookBackoff,
		// Hand back the last answer, so its status and body can be
		// reported, instead of an error holding the URL.
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
}

// webhookRetryPolicy retries connection errors other than certificate and
// TLS protocol errors, 429, and 5xx other than 501. Other answers, 4xx
// included, are final.
func webhookRetryPolicy(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		var certErr *tls.CertificateVerificationError
		var recErr tls.RecordHeaderError
		return !errors.As(err, &certErr) && !errors.As(err, &recErr), nil
	}
	code := resp.StatusCode
	return code == http.StatusTooManyRequests || code >= 500 && code != http.StatusNotImplemented, nil
}

// webhookBackoff is go-retryablehttp's exponential backoff (lo doubled per
// try, capped at hi; a Retry-After on 429 or 503 wins) with the Retry-After
// capped at hi too, so a receiver cannot park the sender.
func webhookBackoff(lo, hi time.Duration, attempt int, resp *http.Response) time.Duration {
	return min(retryablehttp.DefaultBackoff(lo, hi, attempt, resp), hi)
}

// Notify queues e for every webhook and reports whether it was queued. It
// never blocks: when the queue is full, e is dropped, counted in
// healgate_notify_dropped_total, and Notify returns false. A zero e.Time is
// set to now. With no webhooks configured it discards e and returns true.
// It is safe for concurrent use. Events queued after Run returned are never
// sent.
func (n *Notifier) Notify(e Event) bool {
	if len(n.hooks) == 0 {
		return true
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Details = maps.Clone(e.Details)
	select {
	case n.queue <- e:
		return true
	default:
		n.dropped.Inc()
		n.log.Warn("notify: queue full, event dropped", "kind", e.Kind, "target", e.Target, "queue_size", cap(n.queue))
		return false
	}
}

// Run sends queued events until ctx ends, then flushes for at most the
// FlushTimeout (see NotifierOptions) and returns nil. Each event goes to
// every webhook in parallel; the next event starts when all of them are
// done, so each webhook sees events in order. Call Run once, from the
// goroutine that owns the Notifier; every goroutine it starts has ended
// when it returns.
func (n *Notifier) Run(ctx context.Context) error {
	defer func() {
		if hc := n.client.HTTPClient; hc != nil { // set by the first Do if nil
			hc.CloseIdleConnections()
		}
	}()
	// Sends outlive ctx by the flush time; cancelSend ends them.
	sendCtx, cancelSend := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSend()

	stopping := ctx.Done()        // nil once flushing
	var deadline <-chan time.Time // the flush time running out
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	startFlush := func() {
		stopping = nil
		if n.flushTimeout < 0 {
			cancelSend()
			return
		}
		timer = time.NewTimer(n.flushTimeout)
		deadline = timer.C
	}

	done := make(chan struct{})
	for {
		var e Event
		if stopping != nil {
			select {
			case e = <-n.queue:
			case <-stopping:
				startFlush()
				continue
			}
		} else {
			if sendCtx.Err() != nil {
				n.dropQueued()
				return nil
			}
			select {
			case e = <-n.queue:
			case <-deadline:
				cancelSend()
				continue
			default:
				return nil
			}
		}
		go func() {
			n.deliver(sendCtx, e)
			done <- struct{}{}
		}()
	wait:
		for {
			select {
			case <-done:
				break wait
			case <-stopping:
				startFlush()
			case <-deadline:
				deadline = nil
				cancelSend()
			}
		}
	}
}

// dropQueued drops and counts what is left in the queue at shutdown.
func (n *Notifier) dropQueued() {
	dropped := 0
	for {
		select {
		case e := <-n.queue:
			dropped++
			n.dropped.Inc()
			n.log.Debug("notify: event dropped at shutdown", "kind", e.Kind, "target", e.Target)
		default:
			if dropped > 0 {
				n.log.Warn("notify: events dropped at shutdown", "count", dropped)
			}
			return
		}
	}
}

// deliver sends e to every webhook in parallel and waits for all of them.
func (n *Notifier) deliver(ctx context.Context, e Event) {
	var wg sync.WaitGroup
	for i := range n.hooks {
		w := &n.hooks[i]
		wg.Go(func() {
			if err := n.send(ctx, w, e); err != nil {
				n.sent.WithLabelValues(w.format, "error").Inc()
				n.log.Warn("notify: webhook send failed", "webhook", w.index, "format", w.format, "host", w.where,
					"kind", e.Kind, "target", e.Target, "err", w.scrub(err))
				return
			}
			n.sent.WithLabelValues(w.format, "ok").Inc()
			n.log.Debug("notify: webhook sent", "webhook", w.index, "format", w.format, "host", w.where,
				"kind", e.Kind, "target", e.Target)
		})
	}
	wg.Wait()
}

// statusError is the error of a send that a webhook answered with a status
// other than 2xx (after retries, for the retried ones).
type statusError struct {
	code int
	// body is the start of the answer (at most 512 bytes), white space
	// trimmed: Slack names the problem there ("invalid_payload").
	body string
}

func (e *statusError) Error() string {
	if e.body == "" {
		return fmt.Sprintf("webhook answered %d %s", e.code, http.StatusText(e.code))
	}
	return fmt.Sprintf("webhook answered %d %s: %s", e.code, http.StatusText(e.code), e.body)
}

// robotError is the error of a send that DingTalk or WeCom answered with
// HTTP 200 and a non-zero errcode in the JSON body (a bad token, a keyword
// or IP restriction, a rate limit). Such sends are not retried.
type robotError struct {
	// code is the body's errcode; -1 stands for a body that is not the
	// robot API's JSON answer (then msg says so).
	code int
	msg  string // the body's errmsg
}

func (e *robotError) Error() string {
	return fmt.Sprintf("robot answered errcode %d: %s", e.code, e.msg)
}

// send POSTs e to w and reports why it was not delivered, if it was not.
func (n *Notifier) send(ctx context.Context, w *webhook, e Event) error {
	body, err := n.body(w.format, e)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, webhookSendTimeout)
	defer cancel()
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, w.url, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "healgate")
	resp, err := n.client.Do(req)
	if resp != nil {
		defer func() {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxWebhookAnswer))
			resp.Body.Close()
		}()
	}
	if err != nil {
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return &statusError{code: resp.StatusCode, body: strings.TrimSpace(string(b))}
	}
	if w.format != config.FormatDingTalk && w.format != config.FormatWeCom {
		return nil
	}
	// DingTalk and WeCom answer 200 both ways, with the outcome in errcode.
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxWebhookAnswer))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	var ans struct {
		ErrCode *int   `json:"errcode"`
		ErrMsg  string `json:"errmsg"`
	}
	if err := json.Unmarshal(b, &ans); err != nil || ans.ErrCode == nil {
		return &robotError{code: -1, msg: "answer without errcode"}
	}
	if *ans.ErrCode != 0 {
		return &robotError{code: *ans.ErrCode, msg: ans.ErrMsg}
	}
	return nil
}

// slackEscaper escapes the three characters Slack's text format reserves.
var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// body returns e encoded for format:
//   - generic: the Event's JSON plus "host" and "text" (Summary);
//   - slack: an incoming webhook's {"text": …}, with &, < and > escaped;
//   - dingtalk, wecom: a group robot's {"msgtype": "text", "text":
//     {"content": …}}, cut to 2048 bytes for WeCom.
func (n *Notifier) body(format string, e Event) ([]byte, error) {
	text := e.Summary(n.host)
	var v any
	switch format {
	case config.FormatSlack:
		v = struct {
			Text string `json:"text"`
		}{slackEscaper.Replace(text)}
	case config.FormatDingTalk, config.FormatWeCom:
		if format == config.FormatWeCom {
			text = truncateUTF8(text, maxWeComText)
		}
		type content struct {
			Content string `json:"content"`
		}
		v = struct {
			MsgType string  `json:"msgtype"`
			Text    content `json:"text"`
		}{"text", content{text}}
	default:
		v = struct {
			Event
			Host string `json:"host"`
			Text string `json:"text"`
		}{e, n.host, text}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode %s body: %w", format, err)
	}
	return buf.Bytes(), nil
}

// truncateUTF8 cuts s to at most n bytes on a rune boundary, marking the cut
// with "…".
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// scrub returns err's text with the webhook's URL (which holds
// credentials) replaced by its scheme and host.
func (w *webhook) scrub(err error) string {
	msg := err.Error()
	if u, perr := url.Parse(w.url); perr == nil {
		msg = strings.ReplaceAll(msg, u.String(), w.where)
		msg = strings.ReplaceAll(msg, u.Redacted(), w.where)
	}
	return strings.ReplaceAll(msg, w.url, w.where)
}
