package gather

import "testing"

// yields counts the yields of f.
func yields(t *testing.T, f func()) int {
	t.Helper()
	n := 0
	gosched = func() { n++ }
	t.Cleanup(func() { gosched = runtimeGosched })
	f()
	return n
}

var runtimeGosched = gosched

func TestAFreshPointDoesNotYield(t *testing.T) {
	var p Point
	if n := yields(t, p.Yield); n != 0 {
		t.Fatalf("a point that handed on nothing yet yielded %d times", n)
	}
}

func TestYieldsOnlyAfterASharedBatch(t *testing.T) {
	var p Point
	for _, c := range []struct {
		batch int
		want  int
	}{
		{2, 1},  // shared: the others may add to the next one
		{64, 1}, // still shared
		{1, 0},  // alone: a yield would only delay it
		{0, 0},  // nothing left at all
		{3, 1},  // shared again
		{1, 0},
	} {
		p.HandedOn(c.batch)
		if n := yields(t, p.Yield); n != c.want {
			t.Fatalf("after a batch of %d: %d yields, want %d", c.batch, n, c.want)
		}
	}
}
