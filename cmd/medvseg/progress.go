package main

import (
	"os"

	"github.com/schollz/progressbar/v3"
)

// newProgress returns a progress bar on stderr when it is a terminal, else
// a bar that draws nothing. A total of -1 draws a spinner.
func newProgress(total int, description string) *progressbar.ProgressBar {
	if !isTerminal() {
		return progressbar.DefaultSilent(int64(total), description)
	}

	return progressbar.NewOptions(total,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetDescription(description),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("frames"),
		progressbar.OptionThrottle(100_000_000),
		progressbar.OptionClearOnFinish(),
	)
}
