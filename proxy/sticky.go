package proxy

import (
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
)

// stickyKind is where a document key is found.
type stickyKind uint8

const (
	stickyQuery stickyKind = iota
	stickyHeader
	stickyPath
)

// stickySource is one parsed Sticky.Keys entry.
type stickySource struct {
	kind   stickyKind
	name   string // query parameter or canonical header name
	prefix string // path: text before {key}
}

// sticky finds a request's document key (Sticky.Keys, first hit wins).
type sticky struct {
	sources []stickySource
}

func newSticky(keys []string) (*sticky, error) {
	s := &sticky{}
	for _, k := range keys {
		kind, arg, ok := strings.Cut(k, ":")
		if !ok || arg == "" {
			return nil, fmt.Errorf("sticky key %q: want query:NAME, header:NAME or path:/prefix/{key}/", k)
		}
		switch kind {
		case "query":
			s.sources = append(s.sources, stickySource{kind: stickyQuery, name: arg})
		case "header":
			s.sources = append(s.sources, stickySource{kind: stickyHeader, name: textproto.CanonicalMIMEHeaderKey(arg)})
		case "path":
			before, _, ok := strings.Cut(arg, "{key}")
			if !ok || !strings.HasPrefix(before, "/") {
				return nil, fmt.Errorf("sticky key %q: a path key must look like path:/prefix/{key}/", k)
			}
			s.sources = append(s.sources, stickySource{kind: stickyPath, prefix: before})
		default:
			return nil, fmt.Errorf("sticky key %q: unknown source %q", k, kind)
		}
	}
	return s, nil
}

// key returns the request's document key, "" when it has none.
func (s *sticky) key(r *http.Request) string {
	for i := range s.sources {
		src := &s.sources[i]
		var k string
		switch src.kind {
		case stickyQuery:
			k = queryValue(r.URL.RawQuery, src.name)
		case stickyHeader:
			if v := r.Header[src.name]; len(v) > 0 {
				k = v[0]
			}
		case stickyPath:
			k = pathSegment(r.URL.Path, src.prefix)
		}
		if k != "" {
			return k
		}
	}
	return ""
}

// queryValue returns the first value of the named parameter in a raw query,
// unescaped, without parsing the whole query into a map.
func queryValue(raw, name string) string {
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(pair, "=")
		if k != name {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			if u, err := url.QueryUnescape(v); err == nil {
				return u
			}
		}
		return v
	}
	return ""
}

// pathSegment returns the path segment right after prefix: "abc" for
// "/doc/abc/c/" and prefix "/doc/".
func pathSegment(path, prefix string) string {
	if !strings.HasPrefix(path, prefix) {
		return ""
	}
	seg, _, _ := strings.Cut(path[len(prefix):], "/")
	return seg
}

// FNV-1a, 64 bits.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func hashString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// mix is splitmix64's finalizer: it spreads FNV's weak low bits.
func mix(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// appendRendezvous appends ups to dst ordered by rendezvous (highest random
// weight) score for key, best first. The first usable one is the key's node:
// it stays the same while it stays usable, whatever happens to the others.
// ups is small (a handful of primaries), so insertion sort it is.
func appendRendezvous(dst, ups []*upstream, key string) []*upstream {
	kh := hashString(fnvOffset, key)
	start := len(dst)
	for _, u := range ups {
		dst = append(dst, u)
		for i := len(dst) - 1; i > start && score(kh, dst[i]) > score(kh, dst[i-1]); i-- {
			dst[i], dst[i-1] = dst[i-1], dst[i]
		}
	}
	return dst
}

func score(keyHash uint64, u *upstream) uint64 { return mix(keyHash ^ u.hash) }
