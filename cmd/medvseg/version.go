package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/segment"
	"github.com/medvseg/medvseg/trainer/unet"
)

func newVersionCommand(global *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the versions of medvseg and of the native libraries it uses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "medvseg      %s\n", buildVersion())
			fmt.Fprintf(out, "FFmpeg       %s\n", codec.FFmpegVersion())
			fmt.Fprintf(out, "OpenCV       %s\n", segment.OpenCVVersion())
			fmt.Fprintf(out, "libtorch     %s\n", unet.Version())

			library := segment.LibraryPath(global.ortLib)
			if err := segment.InitRuntime(library); err != nil {
				fmt.Fprintf(out, "ONNX Runtime not loaded: %v\n", err)
				return nil
			}
			fmt.Fprintf(out, "ONNX Runtime %s (%s)\n", segment.RuntimeVersion(), library)
			return nil
		},
	}
}

// buildVersion returns the module version, or the VCS revision of a build
// from a checkout.
func buildVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}

	version := info.Main.Version
	for _, setting := range info.Settings {
		if setting.Key == "vcs.revision" && len(setting.Value) >= 12 {
			version += " (" + setting.Value[:12] + ")"
		}
	}
	return version
}
