package udprange

import "testing"

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ok   bool
		size int
	}{
		{"64001-65000", true, 1000},
		{" 1024 - 1024 ", true, 1},
		{"65535-65535", true, 1},
		{"1023-2000", false, 0},
		{"65000-64001", false, 0},
		{"64001-65536", false, 0},
		{"64001", false, 0},
		{"a-b", false, 0},
		{"", false, 0},
		{"-5-10", false, 0},
	} {
		r, err := Parse(tc.in)
		if (err == nil) != tc.ok || (tc.ok && r.Size() != tc.size) {
			t.Errorf("Parse(%q) = %v, %v", tc.in, r, err)
		}
	}
	r := Default()
	if r.String() != "64001-65000" || !r.Contains(64001) || !r.Contains(65000) || r.Contains(64000) {
		t.Errorf("default %v", r)
	}
	l := NewLive(r)
	if err := l.Set(Range{First: 5000, Last: 4000}); err == nil || l.Get() != r {
		t.Errorf("invalid Set changed the range: %v %v", err, l.Get())
	}
	if err := l.Set(Range{First: 40000, Last: 40010}); err != nil || l.Get().First != 40000 {
		t.Errorf("Set: %v %v", err, l.Get())
	}
}
