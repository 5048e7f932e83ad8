#!/bin/sh
# healgate preremove (deb: "remove" | "upgrade" | ...; rpm: 0 erase, 1 upgrade).
# On removal: stop and disable the service and its sockets. On upgrade:
# nothing (postinstall restarts a running healgate).
set -e

case "$1" in
	remove | 0) ;;
	*) exit 0 ;;
esac

if [ -d /run/systemd/system ]; then
	systemctl --no-reload disable --now healgate.service healgate.socket healgate-admin.socket >/dev/null 2>&1 || true
elif command -v systemctl >/dev/null 2>&1; then
	systemctl --no-reload disable healgate.service healgate.socket healgate-admin.socket >/dev/null 2>&1 || true
fi
exit 0
