// Command medvseg propagates a few seed masks through endoscopy video, trains
// a small segmentation network on the result and runs it in real time.
package main

import (
	"context"
	"errors"
	"os"

	"github.com/rs/zerolog/log"
)

func main() {
	root := newRootCommand()
	if err := root.Execute(); err != nil {
		if errors.Is(err, context.Canceled) {
			// Outputs are written under temporary names, so nothing half done is left.
			log.Warn().Msg("interrupted; earlier outputs are unchanged")
			os.Exit(130)
		}
		log.Error().Err(err).Msg("command failed")

		var exit exitError
		if errors.As(err, &exit) {
			os.Exit(exit.code)
		}
		os.Exit(1)
	}
}

// exitError carries a specific exit code, such as 2 for a failed doctor check.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }
