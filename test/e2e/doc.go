// Package e2e holds healgate's end-to-end tests: real nginx, configured like
// Document Server's shipped ds.conf, in front of a real healgate process, in
// front of real upstreams (the dsemu Document Server emulator, or a real
// socket.io server from npm), all on loopback ports chosen by the tests.
//
// Each test owns its processes (internal/testproc): it starts them as
// children, captures their output (printed when the test fails), and stops
// and waits for them in t.Cleanup. The nginx is internal/testnginx's. TestMain builds healgate and dsemu once (with -race when the
// tests run with -race) and installs the socket.io packages with npm ci when
// node_modules is missing.
//
// Requirements: nginx (Debian: apt-get install -y nginx-light), node and npm
// (Node 18 or later). A missing requirement fails the package; nothing is
// skipped. Run:
//
//	go test -race -count=1 ./test/e2e/
//
// The package has no non-test code; this file only documents it.
package e2e
