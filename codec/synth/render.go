package synth

import (
	"image"
	"math"
	"runtime"
	"sync"

	"github.com/medvseg/medvseg/codec"
)

// Render draws frame index (0-based) into f and its ground-truth lesion mask
// (0 or 255) into mask. Both are resized when needed; mask may be nil. The
// result depends only on the options and the index, so frames can be drawn
// in any order.
func (s *Scene) Render(index int, f *codec.Frame, mask *image.Gray) *image.Gray {
	o := s.options
	f.Resize(o.Width, o.Height)
	f.Index = index
	f.PTS = frameTime(index, o.FPS)

	if mask == nil || mask.Rect.Dx() != o.Width || mask.Rect.Dy() != o.Height {
		mask = image.NewGray(image.Rect(0, 0, o.Width, o.Height))
	}

	// Rows are independent, so bands of rows render in parallel.
	bands := runtime.GOMAXPROCS(0)
	rowsPerBand := (o.Height + bands - 1) / bands
	var wg sync.WaitGroup
	for y0 := 0; y0 < o.Height; y0 += rowsPerBand {
		wg.Add(1)
		go func(y0, y1 int) {
			defer wg.Done()
			s.renderRows(y0, y1, index, f, mask)
		}(y0, min(y0+rowsPerBand, o.Height))
	}
	wg.Wait()

	return mask
}

func (s *Scene) renderRows(y0, y1, index int, f *codec.Frame, mask *image.Gray) {
	o := s.options
	cam := s.cameraAt(index)
	lx, ly, radius, reach := s.lesionAt(index)
	halfW, halfH := float64(o.Width)/2, float64(o.Height)/2
	cornerSquared := halfW*halfW + halfH*halfH
	noiseSeed := uint64(index)*0x9e3779b97f4a7c15 ^ o.RandomSeed

	for y := y0; y < y1; y++ {
		for x := 0; x < o.Width; x++ {
			px, py := float64(x)+0.5-halfW, float64(y)+0.5-halfH
			wx := cam.cx + (cam.cos*px-cam.sin*py)/cam.zoom
			wy := cam.cy + (cam.sin*px+cam.cos*py)/cam.zoom

			r, g, b := s.world.sample(wx, wy)
			inside := false

			dx, dy := wx-lx, wy-ly
			if d2 := dx*dx + dy*dy; d2 < reach*reach {
				d := math.Sqrt(d2)
				edge := radius(math.Atan2(dy, dx))
				// Coverage in view pixels, for an anti-aliased boundary.
				coverage := math.Min(math.Max((edge-d)*cam.zoom+0.5, 0), 1)
				inside = d < edge
				if coverage > 0 {
					lr, lg, lb := s.lesionColour(wx, wy)
					r += (lr - r) * coverage
					g += (lg - g) * coverage
					b += (lb - b) * coverage
				}
			}

			r, g, b = s.addHighlights(index, float64(x), float64(y), r, g, b)

			light := 1 - 0.35*(px*px+py*py)/cornerSquared
			n := pixelNoise(noiseSeed, x, y)
			i := (y*o.Width + x) * 3
			f.Pix[i] = toByte(b*light + n[2])
			f.Pix[i+1] = toByte(g*light + n[1])
			f.Pix[i+2] = toByte(r*light + n[0])

			mask.Pix[y*mask.Stride+x] = 0
			if inside {
				mask.Pix[y*mask.Stride+x] = 255
			}
		}
	}
}

// lesionColour returns the mottled lesion surface colour at a world position.
func (s *Scene) lesionColour(wx, wy float64) (r, g, b float64) {
	m := s.lesion.mottle
	mottle := 0.96 + 0.04*math.Sin(0.11*wx+m[0])*math.Sin(0.09*wy+m[1]) +
		0.02*math.Sin(0.31*wx+0.27*wy+m[2])*math.Sin(0.23*wx-0.29*wy+m[3]) - 0.02
	return lesionColour[0] * mottle, lesionColour[1] * mottle, lesionColour[2] * mottle
}

// addHighlights brightens the colour towards white near specular reflections.
func (s *Scene) addHighlights(index int, x, y, r, g, b float64) (float64, float64, float64) {
	t := float64(index)
	for _, h := range s.highlights {
		hx := h.x + 25*math.Sin(h.speed*t+h.angle)
		hy := h.y + 15*math.Cos(h.speed*t)
		u, v := x-hx, y-hy
		if math.Abs(u) > 4*h.rx || math.Abs(v) > 4*h.rx {
			continue
		}

		cos, sin := math.Cos(h.angle), math.Sin(h.angle)
		a, c := (cos*u+sin*v)/h.rx, (-sin*u+cos*v)/h.ry
		strength := math.Min(1.6*math.Exp(-(a*a+c*c)), 1)
		r += (1 - r) * strength
		g += (1 - g) * strength
		b += (1 - b) * strength
	}
	return r, g, b
}

// pixelNoise returns small sensor noise in [-0.01, 0.01] per channel from a hash.
func pixelNoise(seed uint64, x, y int) [3]float64 {
	h := seed ^ uint64(x)*0xbf58476d1ce4e5b9 ^ uint64(y)*0x94d049bb133111eb
	h ^= h >> 31
	h *= 0xd6e9f5a3c5b1e4f7
	h ^= h >> 29

	var out [3]float64
	for c := 0; c < 3; c++ {
		out[c] = (float64((h>>(c*16))&0xffff)/65535 - 0.5) * 0.02
	}
	return out
}

func toByte(v float64) byte {
	return byte(math.Round(math.Min(math.Max(v, 0), 1) * 255))
}
