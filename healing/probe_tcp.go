package healing

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// TCPProbe checks that a TCP port accepts connections. It cannot see a
// process that is frozen or hung: the kernel completes the handshake for it.
// Use a protocol probe where one exists.
type TCPProbe struct {
	addr    string
	timeout time.Duration
}

// NewTCPProbe returns a probe that connects to addr (host:port) and closes.
// timeout bounds each probe (zero: only the caller's context does).
func NewTCPProbe(addr string, timeout time.Duration) *TCPProbe {
	return &TCPProbe{addr: addr, timeout: timeout}
}

// Probe performs one check.
func (p *TCPProbe) Probe(ctx context.Context) Result {
	return exchange(ctx, "tcp", p.addr, p.timeout, nil, func(*bufio.Reader) answer {
		return answer{ok: true, detail: "connected"}
	})
}

// PostgresProbe checks a PostgreSQL server at the protocol level: it sends an
// SSLRequest and expects the one-byte answer 'S' or 'N'. A PostgreSQL frozen
// by SIGSTOP accepts TCP but never answers, so this probe times out where a
// TCP probe passes.
type PostgresProbe struct {
	addr    string
	timeout time.Duration
}

// NewPostgresProbe returns a PostgreSQL probe for addr (host:port). timeout
// bounds each probe (zero: only the caller's context does).
func NewPostgresProbe(addr string, timeout time.Duration) *PostgresProbe {
	return &PostgresProbe{addr: addr, timeout: timeout}
}

// sslRequest is PostgreSQL's SSLRequest message: length 8, code 80877103.
var sslRequest = binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), 80877103)

// Probe performs one check.
func (p *PostgresProbe) Probe(ctx context.Context) Result {
	return exchange(ctx, "postgres", p.addr, p.timeout, sslRequest, func(r *bufio.Reader) answer {
		b, err := r.ReadByte()
		switch {
		case err != nil:
			return answer{err: err}
		case b == 'S' || b == 'N':
			return answer{ok: true, detail: fmt.Sprintf("SSLRequest answered %q", b)}
		default:
			return answer{detail: fmt.Sprintf("SSLRequest answered %q, want 'S' or 'N'", b)}
		}
	})
}

// AMQPProbe checks an AMQP 0-9-1 broker (RabbitMQ): it sends the protocol
// header and expects a Connection.Start method frame, then closes.
type AMQPProbe struct {
	addr    string
	timeout time.Duration
}

// NewAMQPProbe returns an AMQP probe for addr (host:port). timeout bounds each
// probe (zero: only the caller's context does).
func NewAMQPProbe(addr string, timeout time.Duration) *AMQPProbe {
	return &AMQPProbe{addr: addr, timeout: timeout}
}

// amqpHeader is the AMQP 0-9-1 protocol header.
var amqpHeader = []byte("AMQP\x00\x00\x09\x01")

// Probe performs one check.
func (p *AMQPProbe) Probe(ctx context.Context) Result {
	return exchange(ctx, "amqp", p.addr, p.timeout, amqpHeader, func(r *bufio.Reader) answer {
		// Frame header: type (1), channel (2), payload size (4); then the
		// method payload: class id (2), method id (2), version major, minor.
		var buf [13]byte
		if _, err := io.ReadFull(r, buf[:1]); err != nil {
			return answer{err: err}
		}
		if buf[0] == 'A' {
			// A server that does not speak 0-9-1 answers with its own header.
			return answer{detail: "server rejected AMQP 0-9-1 (sent its protocol header)"}
		}
		if _, err := io.ReadFull(r, buf[1:]); err != nil {
			return answer{err: err}
		}
		typ, channel := buf[0], binary.BigEndian.Uint16(buf[1:3])
		class, method := binary.BigEndian.Uint16(buf[7:9]), binary.BigEndian.Uint16(buf[9:11])
		if typ != 1 || channel != 0 || class != 10 || method != 10 {
			return answer{detail: fmt.Sprintf("frame type %d channel %d method %d.%d, want Connection.Start (1, 0, 10.10)",
				typ, channel, class, method)}
		}
		return answer{ok: true, detail: fmt.Sprintf("Connection.Start, AMQP %d-%d", buf[11], buf[12])}
	})
}

// RedisProbe checks a Redis server: it sends an inline PING and expects
// "+PONG". A "-NOAUTH" error also proves the server is alive and serving, so
// it counts as up (Detail says so).
type RedisProbe struct {
	addr    string
	timeout time.Duration
}

// NewRedisProbe returns a Redis probe for addr (host:port). timeout bounds
// each probe (zero: only the caller's context does).
func NewRedisProbe(addr string, timeout time.Duration) *RedisProbe {
	return &RedisProbe{addr: addr, timeout: timeout}
}

// Probe performs one check.
func (p *RedisProbe) Probe(ctx context.Context) Result {
	return exchange(ctx, "redis", p.addr, p.timeout, []byte("PING\r\n"), func(r *bufio.Reader) answer {
		line, err := readLine(r, 512)
		switch {
		case err != nil:
			return answer{err: err}
		case line == "+PONG":
			return answer{ok: true, detail: "PONG"}
		case strings.HasPrefix(line, "-NOAUTH"):
			return answer{ok: true, detail: "alive, authentication required (NOAUTH)"}
		default:
			return answer{detail: fmt.Sprintf("PING answered %q", truncate(line, 64))}
		}
	})
}

// answer is what a protocol reader made of the server's reply: up (ok), an
// I/O error (err), or a wrong reply (neither; detail says what came).
type answer struct {
	ok     bool
	err    error
	detail string
}

// exchange dials addr, writes send (if any) and lets read judge the reply,
// all within the probe's own timeout and the caller's context. A context
// that ends mid-I/O interrupts it at once through the connection deadline.
func exchange(ctx context.Context, probe, addr string, timeout time.Duration, send []byte, read func(*bufio.Reader) answer) Result {
	start := time.Now()
	ctx, cancel := withTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return failure(ctx, probe, addr, start, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// Cancellation without a deadline (caller shutting down) also interrupts.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if len(send) > 0 {
		if _, err := conn.Write(send); err != nil {
			return failure(ctx, probe, addr, start, err)
		}
	}
	a := read(bufio.NewReaderSize(conn, 512))
	switch {
	case a.err != nil:
		return failure(ctx, probe, addr, start, a.err)
	case !a.ok:
		return wrong(KindProtocol, probe, addr, start, a.detail)
	}
	return Result{OK: true, Latency: time.Since(start), Detail: a.detail}
}

// readLine reads one CRLF- or LF-terminated line of at most max bytes.
func readLine(r *bufio.Reader, max int) (string, error) {
	var sb strings.Builder
	for sb.Len() < max {
		b, err := r.ReadByte()
		if err != nil {
			return "", err
		}
		if b == '\n' {
			return strings.TrimSuffix(sb.String(), "\r"), nil
		}
		sb.WriteByte(b)
	}
	return sb.String(), nil
}

// truncate shortens s to at most n bytes.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
