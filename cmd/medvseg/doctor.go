package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/segment"
	"github.com/medvseg/medvseg/trainer/unet"
)

// check is one line of the doctor's report.
type check struct {
	name     string
	detail   string
	problem  string
	fix      string
	optional bool
}

func newDoctorCommand(global *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check the native libraries and the GPU, and print the fix for each problem",
		Long: `doctor loads every native library medvseg uses (FFmpeg, OpenCV, ONNX Runtime)
and checks whether ONNX Runtime can use an NVIDIA GPU through CUDA. It exits
with 0 when everything required works, else with 2. A missing GPU is reported
but is not an error: medvseg then runs on the CPU.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			checks := runChecks(global)
			failed := printChecks(cmd.OutOrStdout(), checks)
			if failed > 0 {
				return exitError{code: 2, err: fmt.Errorf("%d required check(s) failed; apply the fixes above", failed)}
			}
			return nil
		},
	}
}

func runChecks(global *globalOptions) []check {
	checks := []check{
		{name: "FFmpeg", detail: codec.FFmpegVersion()},
		encoderCheck("libx264", "H.264 encoding of overlay.mp4"),
		{name: "OpenCV", detail: segment.OpenCVVersion()},
		{name: "libtorch", detail: unet.Version() + " (training)"},
	}

	library := segment.LibraryPath(global.ortLib)
	if err := segment.InitRuntime(library); err != nil {
		checks = append(checks, check{
			name:    "ONNX Runtime",
			problem: err.Error(),
			fix:     "run `make setup`, or pass --ort-lib PATH (or set " + segment.LibraryEnv + ") to a libonnxruntime.so",
		})
		return checks
	}
	checks = append(checks, check{name: "ONNX Runtime", detail: segment.RuntimeVersion() + " from " + library})

	cuda := check{name: "CUDA", optional: true, detail: "ONNX Runtime can run models on the GPU"}
	if err := segment.CheckCUDA(); err != nil {
		cuda.problem = err.Error()
		if errors.Is(err, segment.ErrNoCUDA) {
			cuda.fix = "none needed on a machine without an NVIDIA GPU: --device auto uses the CPU"
		}
	}
	return append(checks, cuda)
}

func encoderCheck(name, use string) check {
	c := check{name: "encoder " + name, detail: use}
	if !codec.HasEncoder(name) {
		c.problem = "FFmpeg has no " + name + " encoder"
		c.fix = "install Debian's FFmpeg libraries: make setup"
	}
	return c
}

// printChecks writes one block per check and returns the number of failed required checks.
func printChecks(out io.Writer, checks []check) int {
	failed := 0
	for _, c := range checks {
		switch {
		case c.problem == "":
			fmt.Fprintf(out, "ok      %-14s %s\n", c.name, c.detail)
		case c.optional:
			fmt.Fprintf(out, "absent  %-14s %s\n", c.name, c.problem)
		default:
			failed++
			fmt.Fprintf(out, "FAILED  %-14s %s\n", c.name, c.problem)
		}
		if c.problem != "" && c.fix != "" {
			fmt.Fprintf(out, "        fix: %s\n", c.fix)
		}
	}
	return failed
}
