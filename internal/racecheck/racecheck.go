// Package racecheck lets test harnesses run the kloop processes they spawn
// under the race detector whenever the test binary itself runs under it, and
// find the detector's reports in what those processes printed. `make test`
// runs `go test -race`, so every daemon, forwarder, adapter and agent a test
// starts is checked too, not only the test's own goroutines.
package racecheck

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Marker starts every report a -race binary prints.
const Marker = "WARNING: DATA RACE"

// separator is the line the race detector prints before and after each report.
const separator = "=================="

// BuildFlags are the go build flags for a kloop binary a test spawns: -race
// when this binary runs under the race detector.
func BuildFlags() []string {
	if Enabled {
		return []string{"-race"}
	}
	return nil
}

// Reports returns every race report in output (each from its Marker line to
// the separator that ends it, or to the end of output when the process died
// mid-report), separated by blank lines; "" when there is none.
func Reports(output string) string {
	var reports []string
	for {
		i := strings.Index(output, Marker)
		if i < 0 {
			break
		}
		output = output[i:]
		end := strings.Index(output, "\n"+separator)
		if end < 0 {
			reports = append(reports, output)
			break
		}
		reports = append(reports, output[:end+1])
		output = output[end+1+len(separator):]
	}
	return strings.Join(reports, "\n")
}

// Check returns an error naming what printed output when output holds a race
// report, with the reports; nil otherwise.
func Check(what, output string) error {
	if r := Reports(output); r != "" {
		return fmt.Errorf("%s reported a data race:\n%s", what, r)
	}
	return nil
}

// LogEnv is a GORACE environment entry (keeping the caller's own GORACE
// options) that sends the reports of a -race process, and of the processes
// it starts with its environment, to files prefix.PID instead of stderr. A
// harness then finds the reports of every process it spawned, including
// those whose stderr nobody reads (a daemon started by a forwarder, a debug
// worker, a CLI command whose output a test ignores).
func LogEnv(prefix string) string {
	return "GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" log_path="+prefix)
}

// CheckLogs checks the files LogEnv(prefix) made: an error with every
// report they hold, naming the process id of each; nil when there is none.
func CheckLogs(prefix string) error {
	paths, err := filepath.Glob(prefix + ".*")
	if err != nil {
		return fmt.Errorf("list race logs %s.*: %w", prefix, err)
	}
	var errs []error
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("read race log: %w", err))
			continue
		}
		errs = append(errs, Check("process "+strings.TrimPrefix(filepath.Ext(p), "."), string(data)))
	}
	return errors.Join(errs...)
}
