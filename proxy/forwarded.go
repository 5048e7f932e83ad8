package proxy

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
)

// Forwarding headers. ReverseProxy strips inbound Forwarded, X-Forwarded-For,
// X-Forwarded-Host and X-Forwarded-Proto before Rewrite runs; it leaves
// X-Forwarded-Prefix, which is handled here.
const (
	headerXFF    = "X-Forwarded-For"
	headerXFHost = "X-Forwarded-Host"
	headerXFProt = "X-Forwarded-Proto"
	headerXFPref = "X-Forwarded-Prefix"
)

// setForwarded sets the outbound forwarding headers.
//
// From a trusted peer (in TrustedProxies, or any unix-socket peer) nginx's
// X-Forwarded-Host, X-Forwarded-Proto and X-Forwarded-Prefix pass through
// unchanged (every value, in order) and the peer's IP is appended to its
// X-Forwarded-For. From any other peer their values are dropped:
// X-Forwarded-For is the peer's IP and X-Forwarded-Host the inbound Host.
// In both cases a missing X-Forwarded-Proto stays missing unless
// SetXForwardedProto is set (then "http", what healgate's plain listener
// saw); "https" is never derived from anything. The outbound Host is the
// inbound Host in both cases (ReverseProxy's default), as nginx's
// "proxy_set_header Host $host" does.
func (p *Proxy) setForwarded(pr *httputil.ProxyRequest) {
	in, out := pr.In, pr.Out.Header
	peer, unix := peerAddr(in)
	trusted := unix || p.isTrusted(peer)
	if trusted {
		copyValues(out, in.Header, headerXFHost)
		copyValues(out, in.Header, headerXFProt)
		// X-Forwarded-Prefix was not stripped; it is already in out.
		prior := in.Header[headerXFF]
		switch {
		case len(prior) > 0 && peer.IsValid():
			out[headerXFF] = []string{strings.Join(prior, ", ") + ", " + peer.String()}
		case len(prior) > 0:
			out[headerXFF] = []string{strings.Join(prior, ", ")}
		case peer.IsValid():
			out[headerXFF] = []string{peer.String()}
		}
	} else {
		out.Del(headerXFPref)
		if peer.IsValid() {
			out[headerXFF] = []string{peer.String()}
		}
		out[headerXFHost] = []string{in.Host}
	}
	if _, ok := out[headerXFProt]; !ok && p.cfg.SetXForwardedProto {
		out[headerXFProt] = []string{"http"}
	}
}

func copyValues(dst, src http.Header, key string) {
	if v := src[key]; len(v) > 0 {
		dst[key] = append([]string(nil), v...)
	}
}

// isTrusted reports whether the peer address is in TrustedProxies.
func (p *Proxy) isTrusted(peer netip.Addr) bool {
	if !peer.IsValid() {
		return false
	}
	for _, pfx := range p.cfg.TrustedProxies {
		if pfx.Contains(peer) {
			return true
		}
	}
	return false
}

// peerAddr returns the request's peer IP (IPv4-mapped addresses unmapped),
// and whether the request came over a unix socket.
func peerAddr(r *http.Request) (netip.Addr, bool) {
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok && la.Network() == "unix" {
		return netip.Addr{}, true
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), false
}
