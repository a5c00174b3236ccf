// Command demo runs kloop's whole inner loop on a local sandbox cluster,
// step by step with timings, and ends with a short table (`make demo`):
//
//	go run ./test/demo/cmd/demo [-kloop bin/kloop] [-cluster kloop-demo] [-soak 10m]
//
// It starts its own sandbox cluster and removes it at the end; everything
// it creates is cleaned up also on failure and on Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kloop/kloop/test/demo"
)

func main() {
	var opts demo.Options
	flag.StringVar(&opts.Kloop, "kloop", "", "kloop binary to use (default: build ./cmd/kloop)")
	flag.StringVar(&opts.Cluster, "cluster", demo.DefaultCluster, "name of the sandbox cluster the demo starts and removes")
	flag.StringVar(&opts.Repo, "repo", "", "kloop repository holding the samples (default: the one this program was built from)")
	flag.DurationVar(&opts.Wait, "wait", 3*time.Minute, "longest wait for a request, a breakpoint or a relaunch before giving up")
	flag.BoolVar(&opts.KeepOnFailure, "keep", true, "keep the logs and the workspace when the demo fails")
	flag.DurationVar(&opts.Soak, "soak", 0, "after the loop, repeat it under steady traffic for this long and report the daemon's goroutines, heap, memory and open files (make soak: 10m)")
	flag.StringVar(&opts.HeapProfiles, "heap-profiles", "", "with -soak: write the daemon's heap profile at each sample into this directory")
	flag.BoolVar(&opts.Race, "race", false, "build kloop and the stand-ins with -race and fail on any data race they report")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	rep, err := demo.Run(ctx, opts)
	interrupted := ctx.Err() != nil
	stop()

	fmt.Println()
	rep.WriteTable(os.Stdout)
	switch {
	case interrupted:
		fmt.Fprintf(os.Stderr, "\ndemo interrupted: %v\nThe cleanup steps above say what was undone.\n", err)
		os.Exit(130)
	case err != nil:
		fmt.Fprintf(os.Stderr, "\ndemo failed: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf(`
The loop on cluster traffic: breakpoint hit at main.go:%d (%s), edit saved and
relaunched (%s), breakpoint hit in the new code at main.go:%d, workload restored,
slot %s released, cluster removed.
`, rep.Breakpoint, rep.FirstStop.Function, rep.Relaunched, rep.EditedBreakpoint, rep.Slot)
}
