#!/bin/sh
# healgate postremove (deb: "remove" | "purge" | "upgrade" | ...; rpm: 0 erase, 1 upgrade).
# Reloads systemd once the units are gone. "remove" keeps the config in
# /etc/healgate; "purge" (deb) deletes it, the admin token included. The
# healgate system user is kept, as Debian policy asks: files may still be
# owned by it.
set -e

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi

if [ "$1" = "purge" ]; then
	rm -rf /etc/healgate
fi
exit 0
