#!/usr/bin/env bash
# packaging/build.sh — build healgate's .deb and .rpm into dist/.
#
#   packaging/build.sh [deb|rpm|all]      (default: all)
#
# Environment:
#   VERSION  package and binary version (default: the tag on HEAD without its
#            "v", else 0.0.0+git<commit time>.<commit>)
#   GOARCH   target architecture (default: go env GOARCH)
#   NFPM     the nfpm module to run (default: the version known to work here)
#   DIST     where the packages go (default: dist)
#
# It builds a static binary (CGO_ENABLED=0, -trimpath, stripped) into
# dist/build/healgate, then runs nfpm with packaging/nfpm.yaml. Nothing but
# the go command is needed: "go run module@version" fetches nfpm from the Go
# module proxy without touching go.mod.
set -euo pipefail
cd "$(dirname "$0")/.."

formats=${1:-all}
case "$formats" in
	deb | rpm) formats=("$formats") ;;
	all) formats=(deb rpm) ;;
	*) echo "usage: packaging/build.sh [deb|rpm|all]" >&2; exit 2 ;;
esac

NFPM=${NFPM:-github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2}
GOARCH=${GOARCH:-$(go env GOARCH)}
if [ -z "${VERSION:-}" ]; then
	if tag=$(git describe --tags --exact-match 2>/dev/null); then
		VERSION=${tag#v}
	else
		VERSION=0.0.0+git$(git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S).$(git rev-parse --short=12 HEAD)
	fi
fi
case "$VERSION" in
	[0-9]*) ;;
	*) echo "build.sh: VERSION must start with a digit (deb requires it), got $VERSION" >&2; exit 2 ;;
esac
export VERSION GOARCH
DIST=${DIST:-dist}
mkdir -p "$DIST"

mkdir -p dist/build
echo "build.sh: go build healgate $VERSION for linux/$GOARCH"
CGO_ENABLED=0 GOOS=linux GOARCH=$GOARCH \
	go build -trimpath -ldflags "-s -w -X main.version=$VERSION" -o dist/build/healgate ./cmd/healgate

for f in "${formats[@]}"; do
	echo "build.sh: nfpm package -p $f"
	go run "$NFPM" package --config packaging/nfpm.yaml --packager "$f" --target "$DIST/"
done
ls -l "$DIST"/*.deb "$DIST"/*.rpm 2>/dev/null || true
