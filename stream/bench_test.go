package stream

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/codec/synth"
	"github.com/medvseg/medvseg/segment"
	"github.com/medvseg/medvseg/segment/onnx"
)

// boxVideo is a real 640x480 H.264 clip of 456 frames from Debian's opencv-doc package.
const boxVideo = "/usr/share/doc/opencv-doc/opencv4/html/box.mp4.gz"

func unzipBox(b *testing.B) string {
	b.Helper()
	file, err := os.Open(boxVideo)
	if err != nil {
		b.Fatalf("%v: install Debian's opencv-doc package (make bench does)", err)
	}
	defer file.Close()
	zipped, err := gzip.NewReader(file)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "box.mp4")
	out, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, zipped); err != nil {
		b.Fatal(err)
	}
	return path
}

// benchUNet loads the student's architecture (16-32-64-128 at 256x256) with
// random weights: the cost of a trained model, not its accuracy.
func benchUNet(b *testing.B) *segment.Model {
	b.Helper()
	if err := segment.InitRuntime(segment.LibraryPath("")); err != nil {
		b.Fatal(err)
	}
	weights := onnx.RandomUNetWeights(onnx.DefaultUNetChannels, 1)
	network, err := onnx.UNet(onnx.UNetOptions{Width: 256, Height: 256, Channels: onnx.DefaultUNetChannels}, weights)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "unet.onnx")
	if err := network.WriteFile(path); err != nil {
		b.Fatal(err)
	}
	model, err := segment.LoadModel(path, segment.ModelOptions{Device: segment.DeviceCPU})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { model.Close() })
	return model
}

// maskCollector keeps every mask of a run, for scoring against ground truth.
type maskCollector struct{ masks []*image.Gray }

func (c *maskCollector) Write(r *Result) error {
	mask := image.NewGray(r.Mask.Rect)
	copy(mask.Pix, r.Mask.Pix)
	c.masks = append(c.masks, mask)
	return nil
}

func (c *maskCollector) Close(error) error { return nil }

// processOnce runs the loop over a video with an mp4 sink and returns the
// stats and the masks.
func processOnce(b *testing.B, video string, segmenter Segmenter, interval int) (Stats, []*image.Gray) {
	reader, err := codec.Open(video, codec.ReaderOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer reader.Close()
	info := reader.Info()

	processor, err := NewProcessor(segmenter, Options{KeyframeInterval: interval})
	if err != nil {
		b.Fatal(err)
	}
	defer processor.Close()

	mp4, err := NewMP4Sink(filepath.Join(b.TempDir(), "overlay.mp4"), codec.WriterOptions{
		EncoderOptions: codec.EncoderOptions{Width: info.Width, Height: info.Height, FrameRate: info.FrameRate}})
	if err != nil {
		b.Fatal(err)
	}
	collector := &maskCollector{}
	stats, err := processor.Run(context.Background(), reader, mp4, collector)
	if err != nil {
		b.Fatal(err)
	}
	return stats, collector.masks
}

// transcode decodes and re-encodes a video with no processing: the ceiling of the loop.
func transcode(b *testing.B, video string) int {
	reader, err := codec.Open(video, codec.ReaderOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer reader.Close()
	info := reader.Info()
	w, err := codec.Create(filepath.Join(b.TempDir(), "copy.mp4"), codec.WriterOptions{
		EncoderOptions: codec.EncoderOptions{Width: info.Width, Height: info.Height, FrameRate: info.FrameRate}})
	if err != nil {
		b.Fatal(err)
	}
	frame := &codec.Frame{}
	n := 0
	for ; ; n++ {
		err := reader.Read(frame)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		if err := w.Write(frame); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	return n
}

// BenchmarkProcess reports the frames per second of the whole loop (decode,
// flow, model, overlay, x264 encode) at 640x480 on a 250-frame synth clip and
// on box.mp4, against the decode+encode ceiling, and the Dice of the
// colour-rule model on the synth clip for each keyframe interval.
func BenchmarkProcess(b *testing.B) {
	o := synth.DefaultOptions
	synthClip := writeTestClip(b, o)
	videos := map[string]string{"synth": synthClip.path, "box": unzipBox(b)}
	unet := benchUNet(b)

	for _, name := range []string{"synth", "box"} {
		video := videos[name]
		b.Run(name+"/ceiling", func(b *testing.B) {
			frames := 0
			for i := 0; i < b.N; i++ {
				frames += transcode(b, video)
			}
			b.ReportMetric(float64(frames)/b.Elapsed().Seconds(), "frames/s")
		})

		for _, interval := range []int{1, 5, 10} {
			b.Run(fmt.Sprintf("%s/unet-k%d", name, interval), func(b *testing.B) {
				frames, keyframes := 0, 0
				for i := 0; i < b.N; i++ {
					stats, _ := processOnce(b, video, NewModelSegmenter(unet), interval)
					frames += stats.Frames
					keyframes += stats.Keyframes
				}
				b.ReportMetric(float64(frames)/b.Elapsed().Seconds(), "frames/s")
				b.ReportMetric(float64(keyframes)/float64(b.N), "keyframes")
			})
		}
	}

	rule := colourRuleModel(b, o.Width, o.Height)
	for _, interval := range []int{1, 5, 10} {
		b.Run(fmt.Sprintf("synth/colour-rule-k%d", interval), func(b *testing.B) {
			var dice float64
			frames := 0
			for i := 0; i < b.N; i++ {
				stats, masks := processOnce(b, synthClip.path, NewModelSegmenter(rule), interval)
				frames += stats.Frames
				dice = meanDice(b, masks, synthClip.masks, nil)
			}
			b.ReportMetric(float64(frames)/b.Elapsed().Seconds(), "frames/s")
			b.ReportMetric(dice, "dice")
		})
	}
}
