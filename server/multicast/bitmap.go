package multicast

import "math/bits"

// bitmap is a fixed-size set of block indexes.
type bitmap struct {
	w []uint64
	n uint32
}

func newBitmap(n uint32) bitmap {
	return bitmap{w: make([]uint64, (uint64(n)+63)/64), n: n}
}

func (b bitmap) get(i uint32) bool { return i < b.n && b.w[i/64]&(1<<(i%64)) != 0 }
func (b bitmap) set(i uint32)      { b.w[i/64] |= 1 << (i % 64) }
func (b bitmap) unset(i uint32)    { b.w[i/64] &^= 1 << (i % 64) }

func (b bitmap) reset() { clear(b.w) }

// fill sets every bit.
func (b bitmap) fill() {
	for i := range b.w {
		b.w[i] = ^uint64(0)
	}
	if r := b.n % 64; r != 0 {
		b.w[len(b.w)-1] = 1<<r - 1
	}
}

func (b bitmap) count() uint32 {
	n := 0
	for _, w := range b.w {
		n += bits.OnesCount64(w)
	}
	return uint32(n)
}

// nextSet returns the first set index >= from, or b.n.
func (b bitmap) nextSet(from uint32) uint32 {
	if from >= b.n {
		return b.n
	}
	i := from / 64
	w := b.w[i] >> (from % 64)
	if w != 0 {
		return from + uint32(bits.TrailingZeros64(w))
	}
	for i++; i < uint32(len(b.w)); i++ {
		if b.w[i] != 0 {
			return min(i*64+uint32(bits.TrailingZeros64(b.w[i])), b.n)
		}
	}
	return b.n
}

// nextClear returns the first clear index >= from, or b.n.
func (b bitmap) nextClear(from uint32) uint32 {
	if from >= b.n {
		return b.n
	}
	i := from / 64
	w := ^b.w[i] >> (from % 64)
	if w != 0 {
		return min(from+uint32(bits.TrailingZeros64(w)), b.n)
	}
	for i++; i < uint32(len(b.w)); i++ {
		if b.w[i] != ^uint64(0) {
			return min(i*64+uint32(bits.TrailingZeros64(^b.w[i])), b.n)
		}
	}
	return b.n
}
