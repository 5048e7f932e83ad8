package dsemu

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// serveDS answers a Document Server endpoint.
func (s *Server) serveDS(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/healthcheck":
		if !allow(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		body := "true"
		if s.Mode().Kind == KindFalse {
			body = "false"
		}
		writeText(w, http.StatusOK, body)
	case p == "/index.html":
		if !allow(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<!DOCTYPE html>\n<html><head><title>ONLYOFFICE Document Server (dsemu)</title></head>"+
			"<body>Document Server is running</body></html>\n")
	case p == "/baseurl":
		if !allow(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		writeText(w, http.StatusOK, BaseURL(r))
	case p == "/ConvertService.ashx" || p == "/converter" || p == "/docbuilder":
		s.convert(w, r)
	case strings.HasPrefix(p, "/downloadas/") || strings.HasPrefix(p, "/upload/"):
		s.upload(w, r)
	case p == "/internal/cluster/inactive":
		s.inactive(w, r)
	case isSocketIO(p):
		s.socketIO(w, r)
	default:
		http.NotFound(w, r)
	}
}

// allow answers 405 and reports false unless r's method is one of methods.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

// BaseURL returns the absolute base URL DocService builds for r:
// PROTO://HOST+PREFIX, where PROTO is X-Forwarded-Proto if it is "http" or
// "https" (any case, kept as sent), else "http"; HOST is X-Forwarded-Host,
// else Host, else "localhost"; PREFIX is X-Forwarded-Prefix, else "".
// Of each header only the first value counts: the first field line, and
// within it the text before the first comma, trimmed.
//
// This follows getBaseUrl in ONLYOFFICE/server Common/sources/utils.js
// (ALLOWED_PROTO = /^https?$/i; host falls back to Host then "localhost";
// the prefix is appended verbatim). Two deliberate differences: DocService
// would use a comma-joined list as is (Node joins repeated X-Forwarded-*
// lines with ", "), which makes a list fail the proto check and end up
// verbatim in the host; the emulator takes the first value, the rule the
// rest of healgate reasons with. And CloudFront-Forwarded-Proto, which
// DocService prefers to X-Forwarded-Proto, is not emulated.
func BaseURL(r *http.Request) string {
	proto := firstValue(r.Header.Get("X-Forwarded-Proto"))
	if !strings.EqualFold(proto, "http") && !strings.EqualFold(proto, "https") {
		proto = "http"
	}
	host := firstValue(r.Header.Get("X-Forwarded-Host"))
	if host == "" {
		host = r.Host
	}
	if host == "" {
		host = "localhost"
	}
	return proto + "://" + host + firstValue(r.Header.Get("X-Forwarded-Prefix"))
}

// firstValue returns the part of a header value before the first comma, trimmed.
func firstValue(v string) string {
	v, _, _ = strings.Cut(v, ",")
	return strings.TrimSpace(v)
}

// convertResult is Document Server's answer to a finished conversion
// (ConvertService.ashx with Accept: application/json).
type convertResult struct {
	EndConvert bool   `json:"endConvert"`
	FileType   string `json:"fileType"`
	FileURL    string `json:"fileUrl"`
	Percent    int    `json:"percent"`
}

// convertError is Document Server's answer to a failed conversion (HTTP 200).
type convertError struct {
	Error int `json:"error"`
}

// convert reads the whole body, waits the conversion delay, and answers a
// conversion result or error. The body length is in X-Dsemu-Body-Bytes.
func (s *Server) convert(w http.ResponseWriter, r *http.Request) {
	n, err := io.Copy(io.Discard, r.Body)
	if err != nil {
		return // client gone (or server stopped: the deadline cut the read)
	}
	s.mu.Lock()
	delay, code := s.convertDelay, s.convertError
	s.mu.Unlock()
	q := r.URL.Query()
	if v := q.Get("delay"); v != "" {
		if delay, err = time.ParseDuration(v); err != nil {
			http.Error(w, "bad delay: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	if v := q.Get("error"); v != "" {
		if code, err = strconv.Atoi(v); err != nil {
			http.Error(w, "bad error code: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	if !s.sleep(w, r, delay) {
		return
	}
	w.Header().Set("X-Dsemu-Body-Bytes", strconv.FormatInt(n, 10))
	if code != 0 {
		writeJSON(w, http.StatusOK, convertError{Error: code})
		return
	}
	writeJSON(w, http.StatusOK, convertResult{
		EndConvert: true,
		FileType:   "docx",
		FileURL:    BaseURL(r) + "/cache/files/data/conv/output.docx",
		Percent:    100,
	})
}

// UploadResult is the answer to an upload: what the emulator read.
type UploadResult struct {
	// Bytes is the number of body bytes read.
	Bytes int64 `json:"bytes"`
	// SHA256 is the hex SHA-256 of the body.
	SHA256 string `json:"sha256"`
}

// upload hashes the body while streaming it (bounded memory, any size) and
// answers UploadResult.
func (s *Server) upload(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodPost, http.MethodPut) {
		return
	}
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		return // client gone or server stopped
	}
	writeJSON(w, http.StatusOK, UploadResult{Bytes: n, SHA256: hex.EncodeToString(h.Sum(nil))})
}

// inactive is Document Server's drain switch: PUT sets the node inactive
// (no new sessions), DELETE sets it active again.
func (s *Server) inactive(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodPut, http.MethodDelete) {
		return
	}
	s.mu.Lock()
	s.count.inactive = r.Method == http.MethodPut
	s.mu.Unlock()
	writeText(w, http.StatusOK, "true")
}

// isControl reports whether p is an emulator control endpoint, exempt from
// faults and counting.
func isControl(p string) bool {
	return p == "/_dsemu" || strings.HasPrefix(p, "/_dsemu/")
}

// settings is the JSON body of POST /_dsemu/mode; absent fields are left
// unchanged.
type settings struct {
	Mode         *string `json:"mode"`
	ConvertDelay *string `json:"convert_delay"` // Go duration
	ConvertError *int    `json:"convert_error"`
	PollHold     *string `json:"poll_hold"` // Go duration
}

// control serves /_dsemu/*.
func (s *Server) control(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/_dsemu/stats":
		if allow(w, r, http.MethodGet, http.MethodHead) {
			writeJSON(w, http.StatusOK, s.Stats())
		}
	case "/_dsemu/stats/reset":
		if allow(w, r, http.MethodPost) {
			s.ResetStats()
			writeText(w, http.StatusOK, "reset")
		}
	case "/_dsemu/mode":
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			writeText(w, http.StatusOK, s.Mode().String())
		case http.MethodPost:
			s.postMode(w, r)
		default:
			allow(w, r, http.MethodGet, http.MethodHead, http.MethodPost)
		}
	default:
		http.NotFound(w, r)
	}
}

// postMode applies "MODE" or a settings JSON object; nothing changes
// unless every given field is valid.
func (s *Server) postMode(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 4096))
	if err != nil {
		return
	}
	var st settings
	body = bytes.TrimSpace(body)
	if bytes.HasPrefix(body, []byte("{")) {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&st); err != nil {
			http.Error(w, "bad settings: "+err.Error(), http.StatusBadRequest)
			return
		}
	} else {
		mode := string(body)
		st.Mode = &mode
	}

	var (
		mode               Mode
		convertDelay, hold time.Duration
	)
	if st.Mode != nil {
		if mode, err = ParseMode(*st.Mode); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	if st.ConvertDelay != nil {
		if convertDelay, err = time.ParseDuration(*st.ConvertDelay); err != nil {
			http.Error(w, "convert_delay: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	if st.PollHold != nil {
		if hold, err = time.ParseDuration(*st.PollHold); err != nil {
			http.Error(w, "poll_hold: "+err.Error(), http.StatusBadRequest)
			return
		}
	}

	if st.ConvertDelay != nil {
		s.SetConvertDelay(convertDelay)
	}
	if st.ConvertError != nil {
		s.SetConvertError(*st.ConvertError)
	}
	if st.PollHold != nil {
		s.SetPollHold(hold)
	}
	if st.Mode != nil {
		s.SetMode(mode)
	}
	writeText(w, http.StatusOK, s.Mode().String())
}

// SetConvertDelay sets Options.ConvertDelay at run time.
func (s *Server) SetConvertDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.convertDelay = d
}

// SetConvertError sets Options.ConvertError at run time (0: conversions succeed).
func (s *Server) SetConvertError(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.convertError = code
}

// SetPollHold sets Options.PollHold at run time (0 or negative: answer at once).
func (s *Server) SetPollHold(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pollHold = d
}

// writeText answers status with body plus a newline, as text/plain.
func writeText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, body+"\n")
}

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}
