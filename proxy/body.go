package proxy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// bufSize is the size of the ReverseProxy's copy buffers.
const bufSize = 32 << 10

// copyBuffers is the ReverseProxy's httputil.BufferPool: 32 KiB buffers,
// owned by one Proxy. Pooling array pointers means Put does not allocate.
type copyBuffers struct{ pool sync.Pool }

func newCopyBuffers() *copyBuffers {
	return &copyBuffers{pool: sync.Pool{New: func() any { return new([bufSize]byte) }}}
}

// Get returns a 32 KiB buffer.
func (c *copyBuffers) Get() []byte { return c.pool.Get().(*[bufSize]byte)[:] }

// Put returns a buffer got from Get.
func (c *copyBuffers) Put(b []byte) {
	if cap(b) >= bufSize {
		c.pool.Put((*[bufSize]byte)(b[:bufSize]))
	}
}

// errBodyTooLate is returned by a try's body reader used after its try ended.
var errBodyTooLate = errors.New("request body read after its try ended")

// reqBody is one request's body as seen by the retry loop: absent, buffered
// in memory (replayable: every try gets a fresh reader), or streamed (a try
// may be repeated only while no byte of it was consumed).
type reqBody struct {
	kind   bodyKind
	length int64 // ContentLength to send: buffered length, or the inbound one

	buf *sharedBuf // buffered, and the prefix already read of a streamed body

	// streamed
	src       io.Reader                 // prefix + rest of the client's body
	consumed  atomic.Int64              // bytes handed to a transport
	clientErr atomic.Pointer[bodyError] // the first error reading src
}

type bodyKind uint8

const (
	bodyNone bodyKind = iota
	bodyBuffered
	bodyStreamed
)

// sharedBuf is a pooled buffer shared by the retry loop and every try's
// reader. It goes back to the pool when the last of them lets go: a
// transport may still read a try's body after RoundTrip returned.
type sharedBuf struct {
	b    *bytes.Buffer
	refs atomic.Int32
	pool *sync.Pool
}

func (s *sharedBuf) acquire() { s.refs.Add(1) }

func (s *sharedBuf) release() {
	if s.refs.Add(-1) == 0 {
		s.b.Reset()
		s.pool.Put(s.b)
		s.b = nil
	}
}

// prepareBody decides how the request's body is handled. A body whose size is
// known and at most MaxReplayBody, or a chunked one that ends within
// MaxReplayBody+1 bytes, is buffered; anything else, and every upgrade
// request, streams. A read error from the client is returned as a *bodyError.
func (p *Proxy) prepareBody(out *http.Request, upgrade bool) (*reqBody, error) {
	if out.Body == nil || out.Body == http.NoBody {
		return &reqBody{kind: bodyNone}, nil
	}
	max := int64(p.cfg.NextUpstream.MaxReplayBody)
	if upgrade || max <= 0 || out.ContentLength > max {
		return &reqBody{kind: bodyStreamed, length: out.ContentLength, src: out.Body}, nil
	}
	sb := &sharedBuf{b: p.bodyPool.Get().(*bytes.Buffer), pool: &p.bodyPool}
	sb.refs.Store(1)
	n, err := sb.b.ReadFrom(io.LimitReader(out.Body, max+1))
	if err != nil {
		sb.release()
		return nil, &bodyError{err}
	}
	if out.ContentLength >= 0 && n != out.ContentLength {
		sb.release()
		return nil, &bodyError{io.ErrUnexpectedEOF}
	}
	if n <= max {
		return &reqBody{kind: bodyBuffered, length: n, buf: sb}, nil
	}
	// Chunked and larger than MaxReplayBody: stream what was read, then the rest.
	return &reqBody{
		kind: bodyStreamed, length: out.ContentLength, buf: sb,
		src: io.MultiReader(bytes.NewReader(sb.b.Bytes()), out.Body),
	}, nil
}

// release lets go of the loop's reference to the buffer.
func (b *reqBody) release() {
	if b.buf != nil {
		b.buf.release()
	}
}

// readErr returns the error with which the client's streamed body broke off,
// nil while it did not. The transport reads the body on its own goroutine;
// the error is recorded before the transport sees it.
func (b *reqBody) readErr() *bodyError { return b.clientErr.Load() }

// replayable reports whether another try can send the whole body again.
func (b *reqBody) replayable() bool {
	return b.kind != bodyStreamed || b.consumed.Load() == 0
}

// reader returns the body of one try, and the value for its ContentLength.
// Reads restart the try's send timer.
func (b *reqBody) reader(tt *tryTimer) (io.ReadCloser, int64) {
	switch b.kind {
	case bodyBuffered:
		b.buf.acquire()
		return &replayReader{r: bytes.NewReader(b.buf.b.Bytes()), buf: b.buf, tt: tt}, b.length
	case bodyStreamed:
		return &streamReader{b: b, tt: tt}, b.length
	default:
		return nil, 0
	}
}

// replayReader reads a buffered body for one try.
type replayReader struct {
	mu     sync.Mutex
	r      *bytes.Reader
	buf    *sharedBuf
	tt     *tryTimer
	closed bool
}

func (r *replayReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, errBodyTooLate
	}
	r.tt.touch()
	return r.r.Read(p)
}

// Close releases the try's reference to the shared buffer (once).
func (r *replayReader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		r.buf.release()
	}
	return nil
}

// streamReader reads a streamed body for one try. Its Close does not close
// the client's body (the transport closes a request body when a dial fails,
// and the next try still needs it); it only detaches this try. Close never
// blocks, even while a Read waits for the client.
type streamReader struct {
	b      *reqBody
	tt     *tryTimer
	closed atomic.Bool
}

func (r *streamReader) Read(p []byte) (int, error) {
	if r.closed.Load() {
		return 0, errBodyTooLate
	}
	r.tt.touch()
	n, err := r.b.src.Read(p)
	if n > 0 {
		r.b.consumed.Add(int64(n))
		r.tt.touch()
	}
	if err != nil && err != io.EOF {
		r.b.clientErr.CompareAndSwap(nil, &bodyError{err})
	}
	return n, err
}

func (r *streamReader) Close() error {
	r.closed.Store(true)
	return nil
}

// clientBody bounds the time between two reads of a client's request body
// (server.body_timeout, nginx client_body_timeout) with read deadlines on the
// client's connection: a client that stalls mid-body makes the read fail
// with os.ErrDeadlineExceeded, answered 408 client_timeout. The transport
// may read the body from its own goroutine, and a deadline must never be
// set once the handler has returned (the connection may then serve another
// request): mu orders the deadline updates with finish.
type clientBody struct {
	rc      io.ReadCloser
	ctl     *http.ResponseController
	timeout time.Duration

	mu   sync.Mutex
	done bool // finish ran, or the body ended: no more deadlines
}

func (b *clientBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if !b.done {
		_ = b.ctl.SetReadDeadline(time.Now().Add(b.timeout))
	}
	b.mu.Unlock()
	n, err := b.rc.Read(p)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		// Keep the passed deadline: the connection is closed after the
		// 408, and net/http's drain of the rest must not wait for it.
		b.mu.Lock()
		b.done = true
		b.mu.Unlock()
	case err != nil:
		b.clear()
	}
	return n, err
}

func (b *clientBody) Close() error { return b.rc.Close() }

// finish clears the deadline before the handler returns; later reads set
// none.
func (b *clientBody) finish() { b.clear() }

func (b *clientBody) clear() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.done {
		b.done = true
		_ = b.ctl.SetReadDeadline(time.Time{})
	}
}
