#!/bin/sh
# healgate postinstall (deb: "configure [old-version]"; rpm: 1 install, 2 upgrade).
# Creates the healgate user and its directories, reloads systemd, and
# restarts healgate on upgrade if it was running. A fresh install does not
# enable or start it: review /etc/healgate/healgate.yaml and nginx's
# upstream first, then "systemctl enable --now healgate".
set -e

case "$1" in
	configure | 1 | 2) ;;
	*) exit 0 ;;
esac

if command -v systemd-sysusers >/dev/null 2>&1; then
	systemd-sysusers /usr/lib/sysusers.d/healgate.conf
elif ! getent passwd healgate >/dev/null; then
	useradd --system --user-group --home-dir /var/lib/healgate --no-create-home \
		--shell /usr/sbin/nologin --comment "healgate proxy" healgate
fi

if command -v systemd-tmpfiles >/dev/null 2>&1; then
	systemd-tmpfiles --create /usr/lib/tmpfiles.d/healgate.conf || true
else
	chgrp healgate /etc/healgate /etc/healgate/healgate.yaml
	chmod 0750 /etc/healgate
	chmod 0640 /etc/healgate/healgate.yaml
fi

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	upgrade=
	case "$1" in
		configure) [ -n "$2" ] && upgrade=1 ;;
		2) upgrade=1 ;;
	esac
	if [ -n "$upgrade" ]; then
		# Restarts only a running healgate; with socket activation the
		# sockets stay open and connections queue meanwhile.
		systemctl try-restart healgate.service || true
	fi
fi
exit 0
