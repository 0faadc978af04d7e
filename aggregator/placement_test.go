package aggregator

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// hostCands returns the free vGPUs of host (served by one server of the
// same name): for each GPU index listed in gpus, slots vGPUs, the GPU in
// NVLink island islands[i] (nil: every GPU its own island). Labels are
// "<host>.g<gpu>.<slot>".
func hostCands(host string, gpus []int, slots int, islands []int) []candidate {
	var out []candidate
	for i, g := range gpus {
		isl := g
		if islands != nil {
			isl = islands[i]
		}
		for s := range slots {
			out = append(out, candidate{
				VGPU:     fmt.Sprintf("%s.g%d.%d", host, g, s),
				Server:   host,
				Host:     host,
				Island:   int(host[0])*100 + isl,
				GPU:      fmt.Sprintf("%s.g%d", host, g),
				GPUIndex: g,
				Slot:     s,
			})
		}
	}
	return out
}

func seq(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func concat(parts ...[]candidate) []candidate { return slices.Concat(parts...) }

func labels(cs []candidate) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.VGPU
	}
	return out
}

func TestPlace(t *testing.T) {
	oneIsland := func(n int) []int { return make([]int, n) }
	tests := []struct {
		name  string
		cands []candidate
		n     int
		p     Placement
		want  []string
	}{
		{
			name: "pack: the host that fits most tightly",
			cands: concat(
				hostCands("a", seq(0, 8), 1, oneIsland(8)),
				hostCands("b", seq(0, 4), 1, oneIsland(4)),
				hostCands("c", seq(0, 2), 1, oneIsland(2)),
			),
			n: 3, p: PlacementPack,
			want: []string{"b.g0.0", "b.g1.0", "b.g2.0"},
		},
		{
			name: "pack: an exact fit",
			cands: concat(
				hostCands("a", seq(0, 8), 1, oneIsland(8)),
				hostCands("b", seq(0, 4), 1, oneIsland(4)),
				hostCands("c", seq(0, 2), 1, oneIsland(2)),
			),
			n: 2, p: PlacementPack,
			want: []string{"c.g0.0", "c.g1.0"},
		},
		{
			name: "pack: no host holds it, largest first, then the tightest for the rest",
			cands: concat(
				hostCands("a", seq(0, 8), 1, oneIsland(8)),
				hostCands("b", seq(0, 6), 1, oneIsland(6)),
				hostCands("c", seq(0, 3), 1, oneIsland(3)),
			),
			n: 10, p: PlacementPack,
			want: []string{"a.g0.0", "a.g1.0", "a.g2.0", "a.g3.0", "a.g4.0", "a.g5.0", "a.g6.0", "a.g7.0", "c.g0.0", "c.g1.0"},
		},
		{
			name:  "pack: inside a host, the island that fits exactly",
			cands: hostCands("a", []int{2, 3, 4, 5, 6, 7}, 1, []int{0, 0, 1, 1, 1, 1}),
			n:     2, p: PlacementPack,
			want: []string{"a.g2.0", "a.g3.0"},
		},
		{
			name:  "pack: inside a host, the tightest island that holds it",
			cands: hostCands("a", []int{2, 3, 4, 5, 6, 7}, 1, []int{0, 0, 1, 1, 1, 1}),
			n:     3, p: PlacementPack,
			want: []string{"a.g4.0", "a.g5.0", "a.g6.0"},
		},
		{
			name:  "pack: inside a host, the largest island whole, then the rest",
			cands: hostCands("a", []int{2, 3, 4, 5, 6, 7}, 1, []int{0, 0, 1, 1, 1, 1}),
			n:     5, p: PlacementPack,
			want: []string{"a.g4.0", "a.g5.0", "a.g6.0", "a.g7.0", "a.g2.0"},
		},
		{
			name: "pack: fewest GPUs inside an island",
			cands: concat(
				hostCands("a", []int{0}, 4, []int{0}),
				hostCands("a", []int{1}, 3, []int{0})[:3],
			),
			n: 3, p: PlacementPack,
			want: []string{"a.g1.0", "a.g1.1", "a.g1.2"},
		},
		{
			name: "pack: ties go to pool order",
			cands: concat(
				hostCands("b", seq(0, 4), 1, nil),
				hostCands("a", seq(0, 4), 1, nil),
			),
			n: 4, p: PlacementPack,
			// a's four GPUs are four islands: the largest (first) whole, and so on.
			want: []string{"a.g0.0", "a.g1.0", "a.g2.0", "a.g3.0"},
		},
		{
			name: "pack: the whole pool",
			cands: concat(
				hostCands("a", seq(0, 2), 1, nil),
				hostCands("b", seq(0, 1), 1, nil),
			),
			n: 3, p: PlacementPack,
			want: []string{"a.g0.0", "a.g1.0", "b.g0.0"},
		},
		{
			name: "spread: one per host, most free first",
			cands: concat(
				hostCands("a", seq(0, 4), 1, nil),
				hostCands("b", seq(0, 4), 1, nil),
				hostCands("c", seq(0, 2), 1, nil),
			),
			n: 3, p: PlacementSpread,
			want: []string{"a.g0.0", "b.g0.0", "c.g0.0"},
		},
		{
			name: "spread: round-robin, grouped by host",
			cands: concat(
				hostCands("a", seq(0, 4), 1, nil),
				hostCands("b", seq(0, 4), 1, nil),
				hostCands("c", seq(0, 2), 1, nil),
			),
			n: 5, p: PlacementSpread,
			want: []string{"a.g0.0", "a.g1.0", "b.g0.0", "b.g1.0", "c.g0.0"},
		},
		{
			name: "spread: the host with most free vGPUs when one is asked",
			cands: concat(
				hostCands("a", seq(0, 1), 1, nil),
				hostCands("b", seq(0, 3), 1, nil),
			),
			n: 1, p: PlacementSpread,
			want: []string{"b.g0.0"},
		},
		{
			name: "spread: across GPUs inside a host",
			cands: concat(
				hostCands("a", seq(0, 2), 2, nil),
			),
			n: 2, p: PlacementSpread,
			want: []string{"a.g0.0", "a.g1.0"},
		},
		{
			name: "spread: hosts run dry",
			cands: concat(
				hostCands("a", seq(0, 1), 1, nil),
				hostCands("b", seq(0, 3), 1, nil),
			),
			n: 4, p: PlacementSpread,
			want: []string{"b.g0.0", "b.g1.0", "b.g2.0", "a.g0.0"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := place(tt.cands, tt.n, tt.p)
			if err != nil {
				t.Fatalf("place: %v", err)
			}
			if !slices.Equal(labels(got), tt.want) {
				t.Errorf("place = %v, want %v", labels(got), tt.want)
			}
			// The order of the candidates does not matter.
			shuffled := slices.Clone(tt.cands)
			rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			again, err := place(shuffled, tt.n, tt.p)
			if err != nil || !slices.Equal(labels(again), tt.want) {
				t.Errorf("place of shuffled candidates = %v, %v; want %v", labels(again), err, tt.want)
			}
			if !slices.Equal(labels(tt.cands), labels(concat(tt.cands))) {
				t.Error("place changed its input")
			}
		})
	}
}

func TestPlaceErrors(t *testing.T) {
	cands := hostCands("a", seq(0, 2), 1, nil)
	tests := []struct {
		name string
		n    int
		p    Placement
		want error
	}{
		{"more than free", 3, PlacementPack, ErrExhausted},
		{"zero", 0, PlacementPack, ErrInvalid},
		{"negative", -1, PlacementSpread, ErrInvalid},
		{"unknown placement", 1, Placement(7), ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := place(cands, tt.n, tt.p)
			if !errors.Is(err, tt.want) {
				t.Fatalf("place = %v, %v; want an error wrapping %v", labels(got), err, tt.want)
			}
		})
	}
	_, err := place(cands, 3, PlacementPack)
	var ie *InsufficientError
	if !errors.As(err, &ie) || ie.Free != 2 || ie.Asked != 3 {
		t.Errorf("error = %#v, want InsufficientError{Free: 2, Asked: 3}", err)
	}
}

func TestParsePlacement(t *testing.T) {
	tests := []struct {
		in      string
		want    Placement
		wantErr bool
	}{
		{"pack", PlacementPack, false},
		{"SPREAD", PlacementSpread, false},
		{"", 0, true},
		{"ring", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePlacement(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParsePlacement(%q) = %v, %v", tt.in, got, err)
			}
			if err == nil && got.String() != map[Placement]string{PlacementPack: "pack", PlacementSpread: "spread"}[got] {
				t.Errorf("String = %q", got.String())
			}
		})
	}
}
