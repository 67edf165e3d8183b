package main

import (
	"fmt"
	"os"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/rs/zerolog/log"
	"github.com/spf13/cobra"

	"github.com/medvseg/medvseg/codec"
)

// globalOptions are the flags every command accepts.
type globalOptions struct {
	logLevel  string
	logFormat string
	ortLib    string
}

func newRootCommand() *cobra.Command {
	var global globalOptions

	root := &cobra.Command{
		Use:   "medvseg",
		Short: "Lesion segmentation for endoscopy video from a few seed masks",
		Long: `medvseg propagates a few hand-drawn seed masks through endoscopy video
with optical flow, keeps the pseudo-labels that stay consistent in time,
trains a small U-Net on them and runs it in real time.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return setUpLogging(global)
		},
	}

	flags := root.PersistentFlags()
	flags.StringVar(&global.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	flags.StringVar(&global.logFormat, "log-format", "auto",
		"log format: console (human-readable), json, or auto (console on a terminal, else json)")
	flags.StringVar(&global.ortLib, "ort-lib", "",
		"path of the ONNX Runtime shared library (default: $MEDVSEG_ORT_LIB, else the one make setup unpacked)")

	root.AddCommand(
		newVersionCommand(&global),
		newDoctorCommand(&global),
		newExtractCommand(),
		newSynthCommand(),
		newProcessCommand(&global),
		newServeCommand(&global),
		newTrainCommand(),
		newExportCommand(),
		newPropagateCommand(),
		newFilterCommand(),
		newEvalCommand(),
		newTrainOfflineCommand(&global),
		newRenderCommand(&global),
	)

	return root
}

func setUpLogging(global globalOptions) error {
	level, err := zerolog.ParseLevel(global.logLevel)
	if err != nil || global.logLevel == "" {
		return fmt.Errorf("invalid --log-level %q: use debug, info, warn or error", global.logLevel)
	}
	zerolog.SetGlobalLevel(level)

	terminal := isatty.IsTerminal(os.Stderr.Fd())
	switch global.logFormat {
	case "console":
		log.Logger = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly, NoColor: !terminal}).
			With().Timestamp().Logger()
	case "json":
		log.Logger = zerolog.New(os.Stderr).With().Timestamp().Logger()
	case "auto":
		if terminal {
			log.Logger = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly}).
				With().Timestamp().Logger()
		} else {
			log.Logger = zerolog.New(os.Stderr).With().Timestamp().Logger()
		}
	default:
		return fmt.Errorf("invalid --log-format %q: use console, json or auto", global.logFormat)
	}

	codec.RouteFFmpegLogs(log.Logger)
	return nil
}

// isTerminal reports whether progress bars should be drawn on stderr.
func isTerminal() bool {
	return isatty.IsTerminal(os.Stderr.Fd())
}
