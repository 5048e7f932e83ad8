package proxy

import (
	"bytes"
	"io"
	"net/http"
	"testing"
)

func BenchmarkProxyGET(b *testing.B) {
	be := newBackend(b, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "true") })
	f := newFront(b, testConfig(up("a", be.URL)), Options{})
	url := f.srv.URL + "/healthcheck"
	b.ReportAllocs()
	for b.Loop() {
		res, err := f.client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
}

func BenchmarkProxyPOST1KiB(b *testing.B) {
	be := newBackend(b, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{"error":0}`)
	})
	f := newFront(b, testConfig(up("a", be.URL)), Options{})
	url := f.srv.URL + "/coauthoring/CommandService.ashx"
	payload := bytes.Repeat([]byte("x"), 1024)
	b.ReportAllocs()
	for b.Loop() {
		res, err := f.client.Post(url, "application/json", bytes.NewReader(payload))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
}

func BenchmarkRouteMatch(b *testing.B) {
	p, err := New(testConfig(up("a", "http://127.0.0.1:8000")), Options{})
	if err != nil {
		b.Fatal(err)
	}
	r := httptestRequest("GET", "/doc/k/c/?EIO=4&transport=websocket", http.Header{"Connection": {"keep-alive, Upgrade"}, "Upgrade": {"websocket"}})
	b.ReportAllocs()
	for b.Loop() {
		p.routes.match(r)
	}
}
