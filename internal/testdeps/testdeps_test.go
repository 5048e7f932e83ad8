package testdeps

import (
	"context"
	"testing"
	"time"
)

// TestFreeze checks the property the healer's tests rely on: a frozen server
// still completes TCP handshakes but answers nothing until thawed.
func TestFreeze(t *testing.T) {
	s := StartRedis(t)
	s.Freeze()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err := exchange(ctx, s.Addr, []byte("PING\r\n"), "+PONG")
	cancel()
	if err == nil {
		t.Fatal("frozen redis answered PING")
	}
	s.Thaw()
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := exchange(ctx, s.Addr, []byte("PING\r\n"), "+PONG"); err != nil {
		t.Fatalf("thawed redis: %v", err)
	}
	s.Stop()
	if !s.Exited() {
		t.Fatal("redis still running after Stop")
	}
}

func TestStartAll(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and RabbitMQ")
	}
	pg := StartPostgres(t)
	rmq := StartRabbitMQ(t)
	for _, s := range []*Server{pg, rmq} {
		s.Stop()
		if !s.Exited() {
			t.Errorf("%s still running after Stop", s.Name)
		}
	}
}
