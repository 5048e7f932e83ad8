package proxy

import (
	"io"
	"sync/atomic"
	"time"
)

// upgradeConn is the upstream side of an upgraded (WebSocket) connection,
// as handed to the ReverseProxy's tunnel. It closes itself after idle time
// without a byte in either direction (the route's read timeout); the tunnel
// then closes the client side too.
type upgradeConn struct {
	rwc     io.ReadWriteCloser
	idle    time.Duration
	timer   *time.Timer // nil when idle <= 0
	closed  atomic.Bool
	onClose func()
}

func newUpgradeConn(rwc io.ReadWriteCloser, idle time.Duration, onClose func()) *upgradeConn {
	c := &upgradeConn{rwc: rwc, idle: idle, onClose: onClose}
	if idle > 0 {
		c.timer = time.AfterFunc(idle, func() { _ = c.Close() })
	}
	return c
}

func (c *upgradeConn) active() {
	if c.timer != nil && !c.closed.Load() {
		c.timer.Reset(c.idle)
	}
}

// Read reads from the upstream (upstream → client traffic).
func (c *upgradeConn) Read(p []byte) (int, error) {
	n, err := c.rwc.Read(p)
	if n > 0 {
		c.active()
	}
	return n, err
}

// Write writes to the upstream (client → upstream traffic).
func (c *upgradeConn) Write(p []byte) (int, error) {
	n, err := c.rwc.Write(p)
	if n > 0 {
		c.active()
	}
	return n, err
}

// Close closes the upstream connection once.
func (c *upgradeConn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	err := c.rwc.Close()
	c.onClose()
	return err
}
