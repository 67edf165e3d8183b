package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/medvseg/medvseg/trainer"
)

func TestRenderRunRejectsOtherModel(t *testing.T) {
	run := t.TempDir()
	own := filepath.Join(run, "model.onnx")
	other := filepath.Join(t.TempDir(), "other.onnx")
	elsewhere := filepath.Join(t.TempDir(), "overlay.mp4")

	for _, c := range []struct {
		name   string
		model  string
		out    string
		clips  bool
		reject bool
	}{
		{name: "run's own model", model: own},
		{name: "no model", model: ""},
		{name: "other model into the run", model: other, reject: true},
		{name: "other model into a run of clips", model: other, out: elsewhere, clips: true, reject: true},
		{name: "other model written elsewhere", model: other, out: elsewhere},
	} {
		o := renderOptions{run: run, RenderOptions: trainer.RenderOptions{Model: c.model, Out: c.out}}
		err := checkRunModel(o, c.clips)
		if c.reject && (err == nil || !strings.Contains(err.Error(), "would replace the run's overlay")) {
			t.Errorf("%s: error %v, expected a rejection", c.name, err)
		}
		if !c.reject && err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}
