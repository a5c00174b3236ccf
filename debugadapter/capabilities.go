package debugadapter

import (
	"runtime"

	"github.com/go-delve/delve/pkg/proc"
)

// capabilities is what the bridge answers `initialize` with. It mirrors Delve's
// (service/dap onInitializeRequest) minus what depends on a launch attribute, so it stays
// true however many times the worker behind it is restarted or replaced. Restart is
// claimed because the bridge implements it (build, then relaunch).
func capabilities() map[string]any {
	caps := map[string]any{
		"supportsConfigurationDoneRequest":  true,
		"supportsConditionalBreakpoints":    true,
		"supportsHitConditionalBreakpoints": true,
		"supportsDelayedStackTraceLoading":  true,
		"supportsFunctionBreakpoints":       true,
		"supportsInstructionBreakpoints":    true,
		"supportsExceptionInfoRequest":      true,
		"supportsSetVariable":               true,
		"supportsEvaluateForHovers":         true,
		"supportsClipboardContext":          true,
		"supportsSteppingGranularity":       true,
		"supportsLogPoints":                 true,
		"supportsDisassembleRequest":        true,
		"supportsRestartRequest":            true,
		"supportsReadMemoryRequest":         true,
		"supportsWriteMemoryRequest":        true,
		"supportsStepBack":                  false,
		"supportTerminateDebuggee":          false,
		"supportsTerminateRequest":          false,
		"supportsSetExpression":             false,
		"supportsLoadedSourcesRequest":      false,
		"supportsCancelRequest":             false,
		"exceptionBreakpointFilters": []map[string]any{
			{"filter": proc.UnrecoveredPanic, "label": "Unrecovered Panics", "default": true},
			{"filter": proc.FatalThrow, "label": "Fatal Throws", "default": true},
		},
	}
	if runtime.GOOS == "linux" || runtime.GOOS == "darwin" {
		if runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64" {
			caps["supportsDataBreakpoints"] = true
		}
	}
	return caps
}
