// Package heal holds the healer's acceptance tests (issue 3): a real
// healgate process driving a real systemd 252 over a real system bus, with
// a real polkitd, and real nginx in front, on loopback ports chosen by the
// tests.
//
// One test system (test/systemdtest) is booted for the package and shared by
// its tests, which run one at a time and each install and remove units of
// their own. Document Server is the dsemu emulator installed as a unit shaped
// like the deb/rpm packages' ds-docservice.service (Restart=always,
// RestartSec=30); RabbitMQ is the amqpstub stand-in (test/heal/cmd/amqpstub),
// which answers healgate's production amqp:// probe. healgate runs on the host
// with DBUS_SYSTEM_BUS_ADDRESS pointing into the test system, except in the
// polkit test, where it runs inside as user nobody. Each test configures
// healgate with scaled-down timings, receives its webhooks on a loopback
// receiver, and reads its /status.
//
// Requirements: root, unshare(1) and nsenter(1) (util-linux), systemd, dbus,
// polkitd and nginx (Debian: apt-get install -y systemd dbus polkitd
// nginx-light). A missing requirement or a system that cannot boot fails the
// package; nothing is skipped. Run:
//
//	go test -race -count=1 ./test/heal/
//
// TestMTTR measures recovery times instead of asserting; it runs only with
// HEALGATE_MTTR_RUNS set (see bench/README.md).
//
// The package has no non-test code; this file only documents it.
package heal
