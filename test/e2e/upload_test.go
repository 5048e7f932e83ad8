package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/healgate/healgate/internal/dsemu"
)

// TestUpload100MB streams a 100 MiB body (nginx's client_max_body_size 100m,
// Document Server's limit) through nginx → healgate → dsemu, generated on the
// fly rather than held in memory; the emulator's SHA-256 of what it read
// equals the sender's.
func TestUpload100MB(t *testing.T) {
	const size = 100 << 20
	up := startDsemu(t, "primary", "ok")
	s := startStack(t, gateConfig{upstreams: one(up)})

	var seed [32]byte
	copy(seed[:], "healgate e2e upload generator")
	generate := func() io.Reader { return io.LimitReader(rand.NewChaCha8(seed), size) }

	r := do(t, s.client, http.MethodPut, s.nginx.URL("/downloadas/doc-upload?cmd=e2e"), reqOpts{
		body: generate(), length: size,
		header: map[string]string{"Content-Type": "application/octet-stream"},
		limit:  2 * time.Minute,
	})
	if r.status != http.StatusOK {
		t.Fatalf("upload: %d (%s) %q", r.status, r.header.Get("X-Healgate-Error"), r.body)
	}
	var got dsemu.UploadResult
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatalf("upload answer %q: %v", r.body, err)
	}
	// The sender's hash, of the same generated stream (the transport's
	// goroutine read the first one).
	h := sha256.New()
	if _, err := io.Copy(h, generate()); err != nil {
		t.Fatal(err)
	}
	want := hex.EncodeToString(h.Sum(nil))
	if got.Bytes != size || got.SHA256 != want {
		t.Errorf("upstream read %d bytes with SHA-256 %s; sent %d bytes with %s", got.Bytes, got.SHA256, size, want)
	}
	t.Logf("100 MiB through nginx → healgate → dsemu in %v", r.elapsed)
}
