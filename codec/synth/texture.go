package synth

import (
	"math"
	"math/rand/v2"
)

// valueNoise is smooth noise on [0,1]: random values on a square lattice,
// blended with a smoothstep between lattice points.
type valueNoise struct {
	cell   float64
	cells  int
	values []float64
}

func newValueNoise(rng *rand.Rand, size int, cell float64) valueNoise {
	cells := int(math.Ceil(float64(size)/cell)) + 2
	n := valueNoise{cell: cell, cells: cells, values: make([]float64, cells*cells)}
	for i := range n.values {
		n.values[i] = rng.Float64()
	}
	return n
}

func (n valueNoise) at(x, y float64) float64 {
	fx, fy := x/n.cell, y/n.cell
	ix, iy := int(fx), int(fy)
	tx, ty := smoothstep(fx-float64(ix)), smoothstep(fy-float64(iy))

	v00 := n.values[iy*n.cells+ix]
	v10 := n.values[iy*n.cells+ix+1]
	v01 := n.values[(iy+1)*n.cells+ix]
	v11 := n.values[(iy+1)*n.cells+ix+1]

	top := v00 + (v10-v00)*tx
	bottom := v01 + (v11-v01)*tx
	return top + (bottom-top)*ty
}

func smoothstep(t float64) float64 { return t * t * (3 - 2*t) }

// newWorld paints the tissue: shading from broad folds, a fine grain, and a
// network of vessels.
func newWorld(rng *rand.Rand, size int) world {
	folds := newValueNoise(rng, size, 160)
	patches := newValueNoise(rng, size, 48)
	grain := newValueNoise(rng, size, 7)
	hue := newValueNoise(rng, size, 90)

	vessels := paintVessels(rng, size)

	w := world{size: size, rgb: make([]float32, size*size*3)}
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			fx, fy := float64(x), float64(y)
			shade := 0.72 + 0.28*folds.at(fx, fy)
			shade *= 0.94 + 0.06*patches.at(fx, fy) + 0.05*(grain.at(fx, fy)-0.5)
			warm := 0.04 * (hue.at(fx, fy) - 0.5)

			tissue := [3]float64{tissueColour[0] + warm, tissueColour[1] - warm, tissueColour[2] - warm}
			alpha := float64(vessels[y*size+x])

			i := (y*size + x) * 3
			for c := 0; c < 3; c++ {
				w.rgb[i+c] = float32(shade * (tissue[c]*(1-alpha) + vesselColour[c]*alpha))
			}
		}
	}

	return w
}

// paintVessels returns the vessel coverage on [0,1] of every world pixel:
// random walks that taper, drawn as chains of anti-aliased discs.
func paintVessels(rng *rand.Rand, size int) []float32 {
	coverage := make([]float32, size*size)
	count := size * size / 60000

	for v := 0; v < count; v++ {
		x, y := rng.Float64()*float64(size), rng.Float64()*float64(size)
		direction := rng.Float64() * 2 * math.Pi
		width := 1.2 + 2*rng.Float64()
		steps := 60 + rng.IntN(140)
		strength := 0.45 + 0.4*rng.Float64()

		for s := 0; s < steps; s++ {
			radius := width * (1 - 0.7*float64(s)/float64(steps))
			stampDisc(coverage, size, x, y, radius, strength)

			direction += 0.35 * (rng.Float64() - 0.5)
			x += 2 * math.Cos(direction)
			y += 2 * math.Sin(direction)
		}
	}

	return coverage
}

func stampDisc(coverage []float32, size int, cx, cy, radius, strength float64) {
	x0, x1 := max(int(cx-radius-1), 0), min(int(cx+radius+2), size)
	y0, y1 := max(int(cy-radius-1), 0), min(int(cy+radius+2), size)

	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			d := math.Hypot(float64(x)-cx, float64(y)-cy)
			a := float32(strength * math.Min(math.Max(radius+0.5-d, 0), 1))
			if a > coverage[y*size+x] {
				coverage[y*size+x] = a
			}
		}
	}
}

// sample returns the world colour at (x, y) with bilinear interpolation.
// Coordinates outside the world are mirrored back into it, so the camera can
// travel anywhere.
func (w *world) sample(x, y float64) (r, g, b float64) {
	x, y = mirror(x, float64(w.size-1)), mirror(y, float64(w.size-1))
	ix, iy := int(x), int(y)
	ix1, iy1 := min(ix+1, w.size-1), min(iy+1, w.size-1)
	tx, ty := float32(x-float64(ix)), float32(y-float64(iy))

	at := func(px, py, c int) float32 { return w.rgb[(py*w.size+px)*3+c] }
	var out [3]float64
	for c := 0; c < 3; c++ {
		top := at(ix, iy, c) + (at(ix1, iy, c)-at(ix, iy, c))*tx
		bottom := at(ix, iy1, c) + (at(ix1, iy1, c)-at(ix, iy1, c))*tx
		out[c] = float64(top + (bottom-top)*ty)
	}
	return out[0], out[1], out[2]
}

// mirror reflects v into [0, limit].
func mirror(v, limit float64) float64 {
	period := 2 * limit
	v = math.Mod(v, period)
	if v < 0 {
		v += period
	}
	if v > limit {
		v = period - v
	}
	return v
}
