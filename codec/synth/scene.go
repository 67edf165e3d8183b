// Package synth generates the built-in default input of medvseg: an
// endoscopy-like clip with a ground-truth lesion mask for every frame.
//
// The scene is a tissue texture with vessels seen by a camera that pans,
// zooms and rolls, lit by a light that leaves specular highlights and
// vignetting. A lesion sits on the tissue, moves and deforms, and leaves the
// view in the middle of the clip before it re-enters. The lesion is clearly
// redder than everything else: on RGB values scaled to [0,1], R - 2G is
// above 0.25 on lesion pixels away from its boundary and from specular
// highlights, and below 0.1 on tissue and vessels, so a fixed colour rule
// can find it.
package synth

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Options sets the clip to generate.
type Options struct {
	Width  int
	Height int
	// Frames is the clip length in frames.
	Frames int
	// FPS is the frame rate of clip.mp4 in frames per second.
	FPS float64
	// RandomSeed selects the scene; the same seed gives the same frames and masks.
	RandomSeed uint64
}

// MaxSide is the largest frame width or height that Validate accepts.
const MaxSide = 4096

// DefaultOptions is the clip `medvseg synth` makes without flags: 10 s at 25 fps, 640x480.
var DefaultOptions = Options{Width: 640, Height: 480, Frames: 250, FPS: 25, RandomSeed: 1}

// Validate checks the options and names the value at fault.
func (o Options) Validate() error {
	if o.Width < 64 || o.Height < 64 || o.Width%2 != 0 || o.Height%2 != 0 {
		return fmt.Errorf("invalid synth size %dx%d: width and height must be even and at least 64", o.Width, o.Height)
	}
	// The scene's texture takes 16 bytes a pixel (RGB and vessel cover as
	// float32) over a square of twice the larger side: 1 GiB at this limit,
	// 24 GiB at 20000 pixels.
	if o.Width > MaxSide || o.Height > MaxSide {
		return fmt.Errorf("invalid synth size %dx%d: each side must be at most %d pixels (4K video)", o.Width, o.Height, MaxSide)
	}
	if o.Frames < 1 {
		return fmt.Errorf("invalid synth length %d frames: must be at least 1", o.Frames)
	}
	if o.FPS <= 0 || math.IsNaN(o.FPS) || math.IsInf(o.FPS, 0) {
		return fmt.Errorf("invalid synth frame rate %v: must be positive", o.FPS)
	}
	return nil
}

// Colours on [0,1] RGB. The lesion's R - 2G is 0.52 at full light and its
// mottling dims it by at most 8%; tissue is below 0 and vessels near 0.04, so
// vignetting down to 65% light and sensor noise keep the lesion above 0.25.
var (
	tissueColour = [3]float64{0.86, 0.53, 0.47}
	vesselColour = [3]float64{0.62, 0.29, 0.27}
	lesionColour = [3]float64{0.84, 0.16, 0.17}
)

// world is the tissue surface the camera looks at, in world pixels.
type world struct {
	size int
	rgb  []float32 // size*size*3, row-major
}

// lesion describes the lesion's shape as a function of time.
type lesion struct {
	center   [2]float64 // world position at t=0
	drift    [2]float64 // amplitude of its slow motion
	radius   float64
	harmonic [3]float64 // boundary amplitudes of the 2nd, 3rd and 5th harmonics
	phase    [3]float64
	speed    [3]float64 // deformation speeds in radians per frame, slow as in real footage
	mottle   [4]float64 // parameters of the surface pattern
}

// highlight is a specular reflection, fixed relative to the light and so to the view.
type highlight struct {
	x, y, rx, ry, angle, speed float64
}

// Scene renders frames and masks of one clip.
type Scene struct {
	options    Options
	world      world
	lesion     lesion
	highlights []highlight
	camera     [6]float64 // path parameters
}

// NewScene builds the scene for the given options.
func NewScene(o Options) (*Scene, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}

	rng := rand.New(rand.NewPCG(o.RandomSeed, 0x6d65647673656721))
	s := &Scene{options: o}

	s.world = newWorld(rng, 2*max(o.Width, o.Height))
	s.lesion = newLesion(rng, s.world.size, float64(min(o.Width, o.Height)))
	s.highlights = newHighlights(rng, o.Width, o.Height)
	for i := range s.camera {
		s.camera[i] = rng.Float64() * 2 * math.Pi
	}

	return s, nil
}

func newLesion(rng *rand.Rand, worldSize int, view float64) lesion {
	l := lesion{
		center: [2]float64{float64(worldSize) / 2, float64(worldSize) / 2},
		drift:  [2]float64{view * (0.03 + 0.03*rng.Float64()), view * (0.03 + 0.03*rng.Float64())},
		radius: view * (0.11 + 0.05*rng.Float64()),
	}
	for i := range l.harmonic {
		l.harmonic[i] = 0.06 + 0.08*rng.Float64()/float64(i+1)
		l.phase[i] = rng.Float64() * 2 * math.Pi
		l.speed[i] = (0.006 + 0.012*rng.Float64()) * (1 + float64(i))
	}
	for i := range l.mottle {
		l.mottle[i] = rng.Float64() * 2 * math.Pi
	}
	return l
}

func newHighlights(rng *rand.Rand, width, height int) []highlight {
	out := make([]highlight, 5+rng.IntN(4))
	for i := range out {
		out[i] = highlight{
			x:     rng.Float64() * float64(width),
			y:     rng.Float64() * float64(height),
			rx:    2 + 7*rng.Float64(),
			ry:    1.5 + 3*rng.Float64(),
			angle: rng.Float64() * math.Pi,
			speed: 0.01 + 0.02*rng.Float64(),
		}
	}
	return out
}

// view is the camera at one frame: world = centre + R(roll)/zoom * (pixel - frame centre).
type view struct {
	cx, cy, zoom, cos, sin float64
}

// cameraAt returns the camera at frame index. The camera follows the lesion
// with a gentle sway, and in the middle fifth of the clip it swings far
// enough away that the lesion leaves the view, then comes back.
func (s *Scene) cameraAt(index int) view {
	o := s.options
	t := float64(index)
	phase := t / float64(max(o.Frames-1, 1))
	view0 := float64(min(o.Width, o.Height))

	sway := 0.12 * view0
	dx := sway*math.Sin(0.045*t+s.camera[0]) + 0.5*sway*math.Sin(0.11*t+s.camera[1])
	dy := sway*math.Sin(0.037*t+s.camera[2]) + 0.5*sway*math.Sin(0.09*t+s.camera[3])

	// A smooth excursion that peaks at the middle of the clip.
	excursion := math.Exp(-math.Pow((phase-0.5)/0.08, 2))
	direction := s.camera[4]
	distance := excursion * (0.5*float64(o.Width) + 2.2*s.lesion.radius)
	dx += distance * math.Cos(direction)
	dy += distance * math.Sin(direction)

	zoom := 1 + 0.18*math.Sin(0.03*t+s.camera[5])
	roll := 0.15 * math.Sin(0.02*t+s.camera[1])

	return view{
		cx: s.lesion.center[0] + dx, cy: s.lesion.center[1] + dy,
		zoom: zoom, cos: math.Cos(roll), sin: math.Sin(roll),
	}
}

// lesionAt returns the lesion centre in world pixels and its radius function
// at frame index.
func (s *Scene) lesionAt(index int) (cx, cy float64, radius func(theta float64) float64, reach float64) {
	l := s.lesion
	t := float64(index)

	cx = l.center[0] + l.drift[0]*math.Sin(0.05*t+l.phase[0])
	cy = l.center[1] + l.drift[1]*math.Cos(0.04*t+l.phase[1])
	breathing := 1 + 0.08*math.Sin(0.03*t+l.phase[2])
	orders := [3]float64{2, 3, 5}

	radius = func(theta float64) float64 {
		r := 1.0
		for i, order := range orders {
			r += l.harmonic[i] * math.Sin(order*theta+l.phase[i]+l.speed[i]*t)
		}
		return l.radius * breathing * r
	}

	reach = l.radius * breathing * (1 + l.harmonic[0] + l.harmonic[1] + l.harmonic[2])
	return cx, cy, radius, reach
}
