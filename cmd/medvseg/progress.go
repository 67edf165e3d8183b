package main

import (
	"os"

	"github.com/schollz/progressbar/v3"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/stream"
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

// progressSource advances a progress bar for every frame read.
type progressSource struct {
	stream.Source
	bar *progressbar.ProgressBar
}

func (s *progressSource) Read(f *codec.Frame) error {
	err := s.Source.Read(f)
	if err == nil {
		s.bar.Add(1)
	} else {
		s.bar.Finish()
	}
	return err
}
