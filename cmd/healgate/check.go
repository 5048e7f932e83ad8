package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/healgate/healgate/config"
)

// defaultConfigPath is where the packages install the config.
const defaultConfigPath = "/etc/healgate/healgate.yaml"

// loadConfig loads, env-overrides and validates the config at path.
func loadConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if err := config.ApplyEnv(cfg, os.Getenv); err != nil {
		return nil, err
	}
	return cfg, nil
}

// runCheck is "healgate check": like nginx -t, it exits 0 and prints the
// effective config, or exits 1 with one line per problem on stderr.
func runCheck(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", defaultConfigPath, "config `file` to check")
	quiet := fs.Bool("q", false, "print nothing on success")
	if err := fs.Parse(args); err != nil {
		return &exitError{code: 2, err: err}
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		// One line per problem, as config's errors format themselves.
		fmt.Fprintln(stderr, err)
		return &exitError{code: 1}
	}
	if *quiet {
		return nil
	}
	if err := cfg.WriteYAML(stdout); err != nil {
		return fmt.Errorf("print config: %w", err)
	}
	for _, w := range config.Warnings(cfg) {
		fmt.Fprintf(stderr, "%s: warning: %s: %s\n", *path, w.Path, w.Msg)
	}
	fmt.Fprintf(stderr, "healgate: the configuration file %s syntax is ok\n", *path)
	return nil
}

// logWarnings logs the risky settings of cfg (config.Warnings).
func logWarnings(log *slog.Logger, cfg *config.Config) {
	for _, w := range config.Warnings(cfg) {
		log.Warn("config: "+w.Msg, "key", w.Path)
	}
}
