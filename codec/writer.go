package codec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/asticode/go-astiav"
	"github.com/google/renameio/v2"
)

// WriterOptions configures an mp4 Writer. Width, Height and FrameRate are required.
type WriterOptions struct {
	EncoderOptions
	// Rotation, in clockwise degrees (0, 90, 180, 270), is stored in the
	// container for players to apply; the pixels are written as given.
	Rotation int
	// Audio, when not nil, is copied into the output without re-encoding,
	// timed so that it stays in sync with the video frames written.
	Audio *AudioTrack
}

// Writer encodes BGR frames to an mp4 file. It writes to a temporary file
// beside the destination and renames it on Close, so a failed or interrupted
// run never leaves a partial file under the final name.
type Writer struct {
	path      string
	temporary string
	pending   *renameio.PendingFile
	options   WriterOptions

	output  *astiav.FormatContext
	io      *astiav.IOContext
	stream  *astiav.Stream
	audio   *astiav.Stream
	encoder *encoder
	frames  int
	closed  bool
}

// Create opens an mp4 Writer for path.
func Create(path string, options WriterOptions) (*Writer, error) {
	options.GlobalHeader = true
	w := &Writer{path: path, options: options}

	pending, err := temporaryPath(path)
	if err != nil {
		return nil, err
	}
	w.pending, w.temporary = pending, pending.Name()

	if err := w.open(); err != nil {
		w.Abort()
		return nil, err
	}

	return w, nil
}

// temporaryPath reserves a hidden file beside path, with mode 0644 less the
// umask, and checks that the folder is writable.
func temporaryPath(path string) (*renameio.PendingFile, error) {
	dir := filepath.Dir(path)
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("create %q: output folder %q: %w; create it first", path, dir, err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("create %q: %q is not a folder", path, dir)
	}
	if info, err := os.Stat(path); err == nil && info.IsDir() {
		return nil, fmt.Errorf("create %q: it is a folder; name a file such as %q", path, filepath.Join(path, "overlay.mp4"))
	}

	file, err := renameio.NewPendingFile(path, renameio.WithPermissions(0o644))
	if err != nil {
		return nil, fmt.Errorf("create %q: output folder %q is not writable (%w); choose another "+
			"output path", path, dir, err)
	}
	return file, nil
}

func (w *Writer) open() error {
	var err error
	w.encoder, err = newEncoder(w.options.EncoderOptions)
	if err != nil {
		return fmt.Errorf("create %q: %w", w.path, err)
	}

	w.output, err = astiav.AllocOutputFormatContext(nil, "mp4", w.temporary)
	if err != nil {
		return fmt.Errorf("create %q: allocate mp4 muxer: %w", w.path, err)
	}

	w.stream = w.output.NewStream(nil)
	if err := w.stream.CodecParameters().FromCodecContext(w.encoder.context); err != nil {
		return fmt.Errorf("create %q: copy codec parameters: %w", w.path, err)
	}
	w.stream.SetTimeBase(w.encoder.context.TimeBase())
	w.stream.SetAvgFrameRate(w.encoder.context.Framerate())

	if w.options.Rotation != 0 {
		// av_display_rotation_set takes the clockwise angle.
		matrix := astiav.NewDisplayMatrixFromRotation(float64(w.options.Rotation))
		if err := w.stream.AddSideData(astiav.PacketSideDataTypeDisplaymatrix, matrix.Bytes()); err != nil {
			return fmt.Errorf("create %q: store rotation %d: %w", w.path, w.options.Rotation, err)
		}
	}

	if a := w.options.Audio; a != nil {
		w.audio = w.output.NewStream(nil)
		if err := a.parameters.Copy(w.audio.CodecParameters()); err != nil {
			return fmt.Errorf("create %q: copy audio parameters: %w", w.path, err)
		}
		w.audio.CodecParameters().SetCodecTag(0)
		w.audio.SetTimeBase(a.timeBase)
	}

	w.io, err = astiav.OpenIOContext(w.temporary, astiav.NewIOContextFlags(astiav.IOContextFlagWrite))
	if err != nil {
		return fmt.Errorf("create %q: open %q for writing: %w", w.path, w.temporary, err)
	}
	w.output.SetPb(w.io)

	if err := w.output.WriteHeader(nil); err != nil {
		return fmt.Errorf("create %q: write mp4 header: %w", w.path, err)
	}

	return nil
}

// Write encodes one frame. Frames are timed at the constant frame rate of
// the options, whatever their PTS.
func (w *Writer) Write(f *Frame) error {
	if w.closed {
		return fmt.Errorf("write %q: writer is closed", w.path)
	}

	if err := w.writeAudio(w.frameTime(w.frames + 1)); err != nil {
		return fmt.Errorf("write %q: %w", w.path, err)
	}
	if err := w.encoder.encode(f, w.writePacket); err != nil {
		return fmt.Errorf("write %q: %w", w.path, err)
	}

	w.frames++
	return nil
}

// frameTime returns the presentation time of frame n at the constant rate.
func (w *Writer) frameTime(n int) time.Duration {
	return time.Duration(float64(n) / w.options.FrameRate * float64(time.Second))
}

// writeAudio copies the queued audio that starts before until.
func (w *Writer) writeAudio(until time.Duration) error {
	if w.audio == nil {
		return nil
	}

	return w.options.Audio.drain(until, func(p *astiav.Packet) error {
		p.SetStreamIndex(w.audio.Index())
		p.RescaleTs(w.options.Audio.timeBase, w.audio.TimeBase())
		p.SetPos(-1)
		if err := w.output.WriteInterleavedFrame(p); err != nil {
			return fmt.Errorf("mux audio packet: %w", err)
		}
		return nil
	})
}

func (w *Writer) writePacket(p *astiav.Packet) error {
	p.SetStreamIndex(w.stream.Index())
	p.RescaleTs(w.encoder.context.TimeBase(), w.stream.TimeBase())
	if err := w.output.WriteInterleavedFrame(p); err != nil {
		return fmt.Errorf("mux packet: %w", err)
	}
	return nil
}

// Frames returns the number of frames written so far.
func (w *Writer) Frames() int { return w.frames }

// Close flushes the encoder, finishes the mp4 and moves it to its final
// path. On error the temporary file is removed and the destination is left
// as it was.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}

	err := w.finish()
	if err != nil {
		w.Abort()
		return fmt.Errorf("finish %q: %w", w.path, err)
	}

	w.release()
	w.closed = true
	// FFmpeg wrote the file through its own handle; the pending file's
	// handle syncs it to disk and renames it into place.
	if err := w.pending.CloseAtomicallyReplace(); err != nil {
		w.pending.Cleanup()
		return fmt.Errorf("finish %q: %w", w.path, err)
	}

	return nil
}

func (w *Writer) finish() error {
	if w.frames == 0 {
		return errors.New("no frame was written")
	}
	if err := w.encoder.flush(w.writePacket); err != nil {
		return err
	}
	// Audio that runs past the last frame is cut at the video's end.
	if err := w.writeAudio(w.frameTime(w.frames)); err != nil {
		return err
	}
	if err := w.output.WriteTrailer(); err != nil {
		return fmt.Errorf("write mp4 trailer: %w", err)
	}

	err := w.io.Close()
	w.io = nil
	if err != nil {
		return fmt.Errorf("close %q: %w", w.temporary, err)
	}
	return nil
}

// Abort stops writing and removes the temporary file; the destination is
// left as it was. It is safe to call after Close.
func (w *Writer) Abort() {
	if w.closed {
		return
	}

	w.release()
	w.closed = true
	if w.pending != nil {
		w.pending.Cleanup()
	}
}

func (w *Writer) release() {
	if w.io != nil {
		w.io.Close()
		w.io = nil
	}
	if w.output != nil {
		w.output.Free()
		w.output = nil
	}
	if w.encoder != nil {
		w.encoder.close()
		w.encoder = nil
	}
}
