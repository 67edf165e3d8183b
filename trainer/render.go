package trainer

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"path/filepath"
	"time"

	"github.com/rs/zerolog/log"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/segment"
)

// RenderOptions sets what Render reads and writes.
type RenderOptions struct {
	// Model is the ONNX model to run on every frame.
	Model string
	// Video is the video to segment. Leave it empty to read Frames instead.
	Video string
	// Frames is a folder of PNG frames, read in name order.
	Frames string
	// FrameRate is the rate of the output in frames per second when the
	// frames come from a folder; 0 means 25. A video keeps its own rate.
	FrameRate float64
	// Out is the mp4 to write, with the mask drawn over every frame.
	Out string
	// MasksDir, when set, receives every binary mask (0/255 PNG), named
	// like the frame file, or 0001.png ... for a video.
	MasksDir string
	// RuntimeLibrary is the ONNX Runtime library, as for segment.LibraryPath.
	RuntimeLibrary string
	// Device is the device the model runs on; "" means auto.
	Device segment.Device
	// Threads is ONNX Runtime's thread count per operator; 0 lets it choose.
	Threads int
	// Overlay sets how the mask is drawn; the zero value means
	// segment.DefaultOverlayOptions.
	Overlay segment.OverlayOptions
	// Progress, if not nil, is called after every frame with the stage
	// "render".
	Progress func(stage string, done, total int)
}

// Render runs the model on every frame of a video or a PNG folder, draws
// each mask over its frame and encodes the result to an H.264 mp4. The mp4
// and the masks folder appear under their names only when every frame is
// written. It returns the number of frames.
func Render(ctx context.Context, o RenderOptions) (int, error) {
	if (o.Video == "") == (o.Frames == "") {
		return 0, errors.New("render: give exactly one of a video or a frames folder")
	}
	if o.Out == "" {
		return 0, errors.New("render: no output mp4: name the file to write")
	}
	if o.Overlay == (segment.OverlayOptions{}) {
		o.Overlay = segment.DefaultOverlayOptions
	}

	if err := segment.InitRuntime(segment.LibraryPath(o.RuntimeLibrary)); err != nil {
		return 0, err
	}
	model, err := segment.LoadModel(o.Model, segment.ModelOptions{Device: o.Device, IntraOpThreads: o.Threads})
	if err != nil {
		return 0, err
	}
	defer model.Close()

	source, err := openRenderSource(o)
	if err != nil {
		return 0, err
	}
	defer source.close()

	r := &renderer{options: o, model: model, source: source}
	defer r.abort()
	start := time.Now()
	if err := r.run(ctx); err != nil {
		return 0, err
	}
	if err := r.commit(); err != nil {
		return 0, err
	}

	log.Info().Str("stage", "render").Str("out", o.Out).Int("frames", r.frames).
		Float64("seconds", time.Since(start).Seconds()).Msg("rendered overlay")
	return r.frames, nil
}

// renderSource delivers frames with the name their mask takes.
type renderSource interface {
	// next reads the next frame into f, or returns io.EOF.
	next(f *codec.Frame) (name string, err error)
	count() int
	frameRate() float64
	close()
}

func openRenderSource(o RenderOptions) (renderSource, error) {
	if o.Video != "" {
		reader, err := codec.Open(o.Video, codec.ReaderOptions{})
		if err != nil {
			return nil, err
		}
		return &videoSource{reader: reader}, nil
	}

	clip, err := OpenClip(o.Frames)
	if err != nil {
		return nil, err
	}
	rate := o.FrameRate
	if rate == 0 {
		rate = 25
	}
	if !(rate > 0) {
		return nil, fmt.Errorf("invalid frame rate %v: must be positive frames per second", rate)
	}
	return &folderSource{clip: clip, rate: rate}, nil
}

type videoSource struct {
	reader *codec.Reader
	read   int
}

func (s *videoSource) next(f *codec.Frame) (string, error) {
	if err := s.reader.Read(f); err != nil {
		return "", err
	}
	s.read++
	return codec.FrameName(s.read), nil
}

func (s *videoSource) count() int         { return s.reader.Info().FrameCount }
func (s *videoSource) frameRate() float64 { return s.reader.Info().FrameRate }
func (s *videoSource) close()             { s.reader.Close() }

type folderSource struct {
	clip *Clip
	rate float64
	read int
}

func (s *folderSource) next(f *codec.Frame) (string, error) {
	if s.read == len(s.clip.Frames) {
		return "", io.EOF
	}
	frame := s.clip.Frames[s.read]
	if err := codec.ReadPNG(frame.Path, f); err != nil {
		return "", err
	}
	s.read++
	return frame.Name, nil
}

func (s *folderSource) count() int         { return len(s.clip.Frames) }
func (s *folderSource) frameRate() float64 { return s.rate }
func (s *folderSource) close()             {}

// renderer segments and draws frames in batches of the model's batch size.
type renderer struct {
	options RenderOptions
	model   *segment.Model
	source  renderSource

	writer  *codec.Writer
	masks   *stagedFolder
	overlay *segment.Overlay
	frames  int
}

func (r *renderer) run(ctx context.Context) error {
	overlay, err := segment.NewOverlay(r.options.Overlay)
	if err != nil {
		return err
	}
	r.overlay = overlay
	if r.options.MasksDir != "" {
		if r.masks, err = newStagedFolder(r.options.MasksDir); err != nil {
			return err
		}
	}

	batch := max(r.model.BatchSize(), 1)
	frames := make([]*codec.Frame, batch)
	for i := range frames {
		frames[i] = &codec.Frame{}
	}
	names := make([]string, batch)
	masks := make([]*image.Gray, batch)

	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("render %q: %w", r.options.Out, err)
		}
		n, err := r.readBatch(frames, names)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		if err := r.model.Predict(frames[:n], nil, masks[:n]); err != nil {
			return err
		}
		for i := range n {
			if err := r.write(frames[i], names[i], masks[i]); err != nil {
				return err
			}
		}
		if n < batch {
			break
		}
	}

	if r.frames == 0 {
		return fmt.Errorf("render %q: the input has no frames", r.options.Out)
	}
	return nil
}

// readBatch fills frames from the source and returns how many it read;
// fewer than len(frames) means the source ended.
func (r *renderer) readBatch(frames []*codec.Frame, names []string) (int, error) {
	for i := range frames {
		name, err := r.source.next(frames[i])
		if errors.Is(err, io.EOF) {
			return i, nil
		}
		if err != nil {
			return i, err
		}
		names[i] = name
	}
	return len(frames), nil
}

func (r *renderer) write(frame *codec.Frame, name string, mask *image.Gray) error {
	if r.masks != nil {
		if err := codec.WriteGray(r.masks.path(name), mask); err != nil {
			return err
		}
	}
	if err := r.overlay.Draw(frame, mask); err != nil {
		return err
	}

	if r.writer == nil {
		if frame.Width%2 != 0 || frame.Height%2 != 0 {
			return fmt.Errorf("render %q: frame %q is %dx%d, but H.264 needs an even width and height: resize the frames to an even size, for example with medvseg extract --resize",
				r.options.Out, name, frame.Width, frame.Height)
		}
		writer, err := codec.Create(r.options.Out, codec.WriterOptions{EncoderOptions: codec.EncoderOptions{
			Width: frame.Width, Height: frame.Height, FrameRate: r.source.frameRate(), CRF: 20,
		}})
		if err != nil {
			return err
		}
		r.writer = writer
	}
	if err := r.writer.Write(frame); err != nil {
		return err
	}

	r.frames++
	if r.options.Progress != nil {
		r.options.Progress("render", r.frames, r.source.count())
	}
	return nil
}

// commit finishes the mp4 and moves the masks folder into place.
func (r *renderer) commit() error {
	if err := r.writer.Close(); err != nil {
		return err
	}
	r.writer = nil
	if r.masks != nil {
		return r.masks.commit()
	}
	return nil
}

// abort removes whatever was not committed and releases the overlay.
func (r *renderer) abort() {
	if r.writer != nil {
		r.writer.Abort()
	}
	r.masks.abort()
	if r.overlay != nil {
		r.overlay.Close()
	}
}

// masksFolderName is the folder of the run where the student's masks go.
var masksFolderName = filepath.Join("student", "masks")
