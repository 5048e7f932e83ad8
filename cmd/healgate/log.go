package main

import (
	"io"
	"log/slog"
	"strings"

	"github.com/healgate/healgate/config"
)

// newLogger builds healgate's logger from cfg. Format auto writes text
// without timestamps when stderr is journald's (JOURNAL_STREAM is set by
// systemd; journald stamps each line itself), and JSON otherwise.
func newLogger(cfg config.Log, w io.Writer, getenv func(string) string) *slog.Logger {
	var level slog.Level
	switch strings.ToLower(cfg.Level) {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	format := cfg.Format
	if format == config.LogAuto || format == "" {
		format = config.LogJSON
		if getenv("JOURNAL_STREAM") != "" {
			format = config.LogText
			opts.ReplaceAttr = dropTime
		}
	}
	if format == config.LogText {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// dropTime removes the top-level time attribute (journald adds its own).
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
