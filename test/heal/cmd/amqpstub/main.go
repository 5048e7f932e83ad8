// Command amqpstub is test equipment for healgate: a stand-in for RabbitMQ
// that speaks just enough AMQP 0-9-1 for healgate's production amqp://
// dependency probe. To every client that sends the protocol header
// "AMQP\x00\x00\x09\x01" it answers one Connection.Start frame (version 0-9,
// empty server properties, mechanisms "PLAIN", locales "en_US"), then waits
// for the client to close; to any other first bytes it answers its own
// protocol header and closes, as a real broker does.
//
//	amqpstub -listen 127.0.0.1:5672
//
// It prints "amqpstub listening on ADDR" once listening and exits 0 on
// SIGINT or SIGTERM, 1 on an error, 2 on a usage error.
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, &ue):
		fmt.Fprintln(os.Stderr, "amqpstub:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "amqpstub:", err)
		os.Exit(1)
	}
}

type usageError struct{ error }

// connIdle bounds how long a connection may stay open after the
// Connection.Start frame, and how long the protocol header may take.
const connIdle = 10 * time.Second

// protocolHeader is AMQP 0-9-1's protocol header.
var protocolHeader = []byte("AMQP\x00\x00\x09\x01")

// run listens and serves until ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("amqpstub", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:5672", "`host:port` to listen on")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "amqpstub listening on %s\n", ln.Addr())

	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	start := connectionStart()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Go(func() {
			defer c.Close()
			// Closing the connection when ctx ends unblocks serve.
			stopConn := context.AfterFunc(ctx, func() { c.Close() })
			defer stopConn()
			serve(c, start)
		})
	}
}

// serve answers one client.
func serve(c net.Conn, start []byte) {
	_ = c.SetDeadline(time.Now().Add(connIdle))
	var hdr [8]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	if !bytes.Equal(hdr[:], protocolHeader) {
		_, _ = c.Write(protocolHeader)
		return
	}
	if _, err := c.Write(start); err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, c) // until the client closes or the deadline
}

// connectionStart returns the Connection.Start method frame.
func connectionStart() []byte {
	var p bytes.Buffer
	_ = binary.Write(&p, binary.BigEndian, uint16(10)) // class connection
	_ = binary.Write(&p, binary.BigEndian, uint16(10)) // method start
	p.Write([]byte{0, 9})                              // version-major, version-minor
	_ = binary.Write(&p, binary.BigEndian, uint32(0))  // server-properties: empty table
	for _, s := range []string{"PLAIN", "en_US"} {     // mechanisms, locales (longstr)
		_ = binary.Write(&p, binary.BigEndian, uint32(len(s)))
		p.WriteString(s)
	}
	var f bytes.Buffer
	f.WriteByte(1)                                    // frame type method
	_ = binary.Write(&f, binary.BigEndian, uint16(0)) // channel 0
	_ = binary.Write(&f, binary.BigEndian, uint32(p.Len()))
	f.Write(p.Bytes())
	f.WriteByte(0xCE) // frame end
	return f.Bytes()
}
