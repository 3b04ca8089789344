package multicast

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// recordingTarget records every WriteAt into a byte image.
type recordingTarget struct {
	img    []byte
	writes int
	fail   error
}

func (t *recordingTarget) WriteAt(p []byte, off int64) (int, error) {
	if t.fail != nil {
		return 0, t.fail
	}
	t.writes++
	copy(t.img[off:], p)
	return len(p), nil
}

func TestBlockWriterCoalesces(t *testing.T) {
	const bs = 1000
	want := make([]byte, 600*bs)
	for i := range want {
		want[i] = byte(i * 7)
	}
	tg := &recordingTarget{img: make([]byte, len(want))}
	w := newBlockWriter(tg)
	// Blocks 0-299 in order, then 400-599, then 300-399 backwards.
	order := []int{}
	for b := range 300 {
		order = append(order, b)
	}
	for b := 400; b < 600; b++ {
		order = append(order, b)
	}
	for b := 399; b >= 300; b-- {
		order = append(order, b)
	}
	for _, b := range order {
		w.write(int64(b*bs), want[b*bs:(b+1)*bs])
	}
	if err := w.flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tg.img, want) {
		t.Fatal("target differs from the blocks written")
	}
	// 300 in-order blocks fill 2 writes (262 per 256 KiB), 200 more 1
	// (the jump to 400 flushes), the 100 backwards ones 100.
	if tg.writes != 2+1+100 {
		t.Errorf("%d writes, want %d", tg.writes, 2+1+100)
	}
	if err := w.flush(); err != nil || tg.writes != 103 {
		t.Errorf("empty flush: err %v, %d writes", err, tg.writes)
	}
}

func TestBlockWriterErrorSticks(t *testing.T) {
	boom := errors.New("disk gone")
	tg := &recordingTarget{img: make([]byte, 10000), fail: boom}
	w := newBlockWriter(tg)
	w.write(0, make([]byte, 100))
	w.write(5000, make([]byte, 100)) // not adjacent: the first is written and fails
	if !errors.Is(w.err, boom) || !strings.Contains(w.err.Error(), "100 bytes at 0") {
		t.Fatalf("err %v", w.err)
	}
	tg.fail = nil
	w.write(5100, make([]byte, 100))
	if err := w.flush(); !errors.Is(err, boom) || tg.writes != 0 {
		t.Errorf("after a failure: err %v, %d writes", err, tg.writes)
	}
}
