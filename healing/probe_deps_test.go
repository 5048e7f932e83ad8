package healing

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/healgate/healgate/internal/testdeps"
)

// These tests run the probes against the real servers Document Server
// depends on (Debian packages, private instances on loopback).

// probeFrozen checks the failure only a protocol probe sees: a SIGSTOPped
// server whose kernel still completes TCP handshakes.
func probeFrozen(t *testing.T, s *testdeps.Server, p Prober) {
	t.Helper()
	if r := p.Probe(context.Background()); !r.OK {
		t.Fatalf("running %s: %v", s.Name, r.Err)
	}
	s.Freeze()
	start := time.Now()
	r := p.Probe(context.Background())
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("frozen %s: probe took %v", s.Name, el)
	}
	if k := kindOf(t, r); k != KindTimeout {
		t.Errorf("frozen %s: kind = %q, want timeout (detail %q)", s.Name, k, r.Detail)
	}
	if r := NewTCPProbe(s.Addr, time.Second).Probe(context.Background()); !r.OK {
		t.Errorf("frozen %s: TCP connect failed (%v); the kernel should still accept", s.Name, r.Err)
	}
	s.Thaw()
	// The thawed server answers again (the backlog may be busy: poll).
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := p.Probe(context.Background())
		if r.OK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("thawed %s: still failing: %v", s.Name, r.Err)
		}
	}
	s.Stop()
	if k := kindOf(t, p.Probe(context.Background())); k != KindRefused {
		t.Errorf("stopped %s: kind = %q, want refused", s.Name, k)
	}
}

func TestPostgresProbeReal(t *testing.T) {
	s := testdeps.StartPostgres(t)
	p, err := ParseDependencyProbe("postgres://"+s.Addr, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	r := p.Probe(context.Background())
	if !r.OK || !strings.Contains(r.Detail, "SSLRequest answered") {
		t.Fatalf("got %+v", r)
	}
	probeFrozen(t, s, p)
}

func TestRedisProbeReal(t *testing.T) {
	s := testdeps.StartRedis(t)
	p, err := ParseDependencyProbe("redis://"+s.Addr, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if r := p.Probe(context.Background()); !r.OK || r.Detail != "PONG" {
		t.Fatalf("got %+v", r)
	}
	probeFrozen(t, s, p)
}

func TestRedisProbeRealNoAuth(t *testing.T) {
	s := testdeps.StartRedis(t, "--requirepass", "secret")
	r := NewRedisProbe(s.Addr, time.Second).Probe(context.Background())
	if !r.OK || !strings.Contains(r.Detail, "NOAUTH") {
		t.Fatalf("got %+v, want up with NOAUTH detail", r)
	}
}

func TestAMQPProbeReal(t *testing.T) {
	s := testdeps.StartRabbitMQ(t)
	p, err := ParseDependencyProbe("amqp://guest:guest@"+s.Addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r := p.Probe(context.Background())
	if !r.OK || r.Detail != "Connection.Start, AMQP 0-9" {
		t.Fatalf("got %+v", r)
	}
	s.Stop()
	if k := kindOf(t, p.Probe(context.Background())); k != KindRefused {
		t.Errorf("stopped rabbitmq: kind = %q, want refused", k)
	}
}
