package web

import (
	"fmt"

	"github.com/medvseg/medvseg/codec"
)

// stampBits is the width of the frame number a stamp carries. At 30 fps it
// wraps after 36 minutes, far longer than any frame spends in flight.
const stampBits = 16

// stampCells is the number of square cells in a stamp: a white and a black
// reference cell, the frame number's bits, most significant first, and an
// even parity bit.
const stampCells = 2 + stampBits + 1

// stampLayout places the stamp: a row of Cells square cells of Cell pixels,
// starting at pixel (X, Y). White cells are bits set to 1. The page reads
// the centre of each cell and compares it with the two reference cells.
type stampLayout struct {
	X     int `json:"x"`
	Y     int `json:"y"`
	Cell  int `json:"cell"`
	Cells int `json:"cells"`
	Bits  int `json:"bits"`
}

// newStampLayout sizes the stamp for frames of the given size. Cells are at
// least 8 pixels, one VP8 or H.264 block, and grow with the width so the
// code survives compression and scaling at any resolution.
func newStampLayout(width, height int) (*stampLayout, error) {
	cell := max(8, width/80) &^ 1
	if cell*stampCells > width || cell > height {
		return nil, fmt.Errorf("frames of %dx%d are too small for the latency stamp: it needs %dx%d pixels; "+
			"give --size or leave out --stamp", width, height, 8*stampCells, 8)
	}
	return &stampLayout{Cell: cell, Cells: stampCells, Bits: stampBits}, nil
}

// stampValue is the number the stamp of frame index carries.
func stampValue(index int) int { return index & (1<<stampBits - 1) }

// draw paints the stamp of frame index onto f, in the top left corner.
func (l *stampLayout) draw(f *codec.Frame, index int) {
	value := stampValue(index)
	parity := 0
	for cell := 0; cell < l.Cells; cell++ {
		var white bool
		switch {
		case cell == 0:
			white = true
		case cell == 1:
			white = false
		case cell < 2+l.Bits:
			white = value>>(l.Bits-1-(cell-2))&1 == 1
			if white {
				parity ^= 1
			}
		default:
			white = parity == 1
		}
		l.fillCell(f, cell, white)
	}
}

func (l *stampLayout) fillCell(f *codec.Frame, cell int, white bool) {
	var level byte
	if white {
		level = 255
	}
	x0 := l.X + cell*l.Cell
	for y := l.Y; y < l.Y+l.Cell; y++ {
		row := f.Pix[(y*f.Width+x0)*3 : (y*f.Width+x0+l.Cell)*3]
		for i := range row {
			row[i] = level
		}
	}
}

// read decodes the stamp of f, the inverse of draw, and reports whether
// the parity matched. Tests use it to check the layout that the page reads.
func (l *stampLayout) read(f *codec.Frame) (int, bool) {
	centre := func(cell int) int {
		x := l.X + cell*l.Cell + l.Cell/2
		y := l.Y + l.Cell/2
		p := f.Pix[(y*f.Width+x)*3:]
		return (int(p[0]) + int(p[1]) + int(p[2])) / 3
	}
	threshold := (centre(0) + centre(1)) / 2
	if centre(0)-centre(1) < 64 {
		return 0, false
	}

	value, parity := 0, 0
	for bit := 0; bit < l.Bits; bit++ {
		one := centre(2+bit) > threshold
		value <<= 1
		if one {
			value |= 1
			parity ^= 1
		}
	}
	paritySet := centre(2+l.Bits) > threshold
	return value, paritySet == (parity == 1)
}
