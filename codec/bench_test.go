package codec_test

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/medvseg/medvseg/codec"
)

var benchSizes = []struct{ width, height int }{{640, 480}, {1280, 720}}

// BenchmarkDecode reports decoded frames per second, BGR output included.
func BenchmarkDecode(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dx%d", size.width, size.height), func(b *testing.B) {
			path, _ := writeSynthClip(b, b.TempDir(), size.width, size.height, 50, codec.WriterOptions{})
			frame := codec.NewFrame(size.width, size.height)
			frames := 0

			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r, err := codec.Open(path, codec.ReaderOptions{})
				if err != nil {
					b.Fatal(err)
				}
				for {
					err := r.Read(frame)
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					frames++
				}
				r.Close()
			}
			b.ReportMetric(float64(frames)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}

// BenchmarkEncode reports x264 veryfast frames per second into mp4, BGR input included.
func BenchmarkEncode(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dx%d", size.width, size.height), func(b *testing.B) {
			dir := b.TempDir()
			_, frames := writeSynthClip(b, dir, size.width, size.height, 50, codec.WriterOptions{})

			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				w, err := codec.Create(dir+"/bench.mp4", codec.WriterOptions{EncoderOptions: codec.EncoderOptions{
					Width: size.width, Height: size.height, FrameRate: 25}})
				if err != nil {
					b.Fatal(err)
				}
				for _, f := range frames {
					if err := w.Write(f); err != nil {
						b.Fatal(err)
					}
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(frames))/b.Elapsed().Seconds(), "frames/s")
		})
	}
}

// BenchmarkOpenLavfi reports the time from open to the first frame of a
// live lavfi input: the part of a reconnect that is not backoff.
func BenchmarkOpenLavfi(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dx%d", size.width, size.height), func(b *testing.B) {
			url := fmt.Sprintf("lavfi:testsrc2=size=%dx%d:rate=30", size.width, size.height)
			frame := codec.NewFrame(size.width, size.height)

			for b.Loop() {
				r, err := codec.Open(url, codec.ReaderOptions{})
				if err != nil {
					b.Fatal(err)
				}
				if err := r.Read(frame); err != nil {
					b.Fatal(err)
				}
				r.Close()
			}
		})
	}
}
