package codec

import (
	"bytes"
	"testing"
	"time"
)

// encodeSequence encodes frames of a moving gradient and forces a keyframe
// before frame forceAt. It returns the access units in order.
func encodeSequence(t *testing.T, codecName string, frames, forceAt int) []AccessUnit {
	t.Helper()

	options, err := RealtimeEncoderOptions(codecName, 64, 48, 25, 500_000)
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEncoder(options)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })

	var units []AccessUnit
	f := NewFrame(64, 48)
	for i := 0; i < frames; i++ {
		for p := range f.Pix {
			f.Pix[p] = byte(p + 3*i)
		}
		f.Index = i
		f.PTS = time.Duration(i) * 40 * time.Millisecond
		if i == forceAt {
			e.ForceKeyframe()
		}
		err := e.Encode(f, func(u AccessUnit) error {
			units = append(units, u)
			return nil
		})
		if err != nil {
			t.Fatalf("encode frame %d: %v", i, err)
		}
	}
	return units
}

func TestEncoderKeyframes(t *testing.T) {
	for _, codecName := range []string{CodecVP8, CodecH264} {
		t.Run(codecName, func(t *testing.T) {
			units := encodeSequence(t, codecName, 10, 6)
			if len(units) != 10 {
				t.Fatalf("%d access units for 10 frames, expected one each: the encoder must not buffer",
					len(units))
			}

			for i, u := range units {
				wantKeyframe := i == 0 || i == 6
				if u.Keyframe != wantKeyframe {
					t.Errorf("access unit %d: keyframe %v, expected %v", i, u.Keyframe, wantKeyframe)
				}
				if want := time.Duration(i) * 40 * time.Millisecond; u.PTS != want {
					t.Errorf("access unit %d: PTS %v, expected %v", i, u.PTS, want)
				}
				if len(u.Data) == 0 {
					t.Errorf("access unit %d is empty", i)
				}
			}
		})
	}
}

func TestEncoderH264HeadersInBand(t *testing.T) {
	units := encodeSequence(t, CodecH264, 8, 5)
	for _, i := range []int{0, 5} {
		data := units[i].Data
		if !bytes.HasPrefix(data, []byte{0, 0, 0, 1}) && !bytes.HasPrefix(data, []byte{0, 0, 1}) {
			t.Fatalf("access unit %d does not start with an Annex B start code: % x", i, data[:min(8, len(data))])
		}
		if !hasNALType(data, 7) || !hasNALType(data, 8) {
			t.Errorf("keyframe %d lacks SPS (7) or PPS (8): a viewer joining there could not decode", i)
		}
		if !hasNALType(data, 5) {
			t.Errorf("keyframe %d has no IDR slice (NAL type 5)", i)
		}
	}
}

func TestEncoderRejectsUnknownCodec(t *testing.T) {
	if _, err := RealtimeEncoderOptions("av1", 64, 48, 25, 500_000); err == nil {
		t.Error("codec av1 accepted, expected an error listing vp8 and h264")
	}
}

func TestEncoderClosed(t *testing.T) {
	options, _ := RealtimeEncoderOptions(CodecVP8, 64, 48, 25, 500_000)
	e, err := NewEncoder(options)
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	e.Close()
	if err := e.Encode(NewFrame(64, 48), func(AccessUnit) error { return nil }); err == nil {
		t.Error("Encode after Close succeeded, expected an error")
	}
}

// hasNALType reports whether an Annex B byte stream contains a NAL unit of the given type.
func hasNALType(data []byte, nalType byte) bool {
	for i := 0; i+3 < len(data); i++ {
		if data[i] == 0 && data[i+1] == 0 && data[i+2] == 1 && data[i+3]&0x1f == nalType {
			return true
		}
	}
	return false
}
