package tftp

import (
	"reflect"
	"testing"
	"time"
)

func TestNegotiate(t *testing.T) {
	def := limits{maxBlockSize: 1468, maxWindow: 64}
	tests := []struct {
		name string
		req  []option
		size int64
		lim  *limits // nil: def
		want params
	}{
		{name: "no options", want: params{blksize: 512, window: 1}},
		{name: "unknown ignored", req: []option{{"foo", "1"}, {"multicast", ""}},
			want: params{blksize: 512, window: 1}},
		{name: "blksize granted", req: []option{{"blksize", "1024"}},
			want: params{blksize: 1024, window: 1, oack: []option{{"blksize", "1024"}}}},
		{name: "blksize capped by server", req: []option{{"blksize", "65464"}},
			want: params{blksize: 1468, window: 1, oack: []option{{"blksize", "1468"}}}},
		{name: "blksize above rfc max capped", req: []option{{"blksize", "99999999999999"}}, lim: &limits{},
			want: params{blksize: 65464, window: 1, oack: []option{{"blksize", "65464"}}}},
		{name: "blksize default cap", req: []option{{"blksize", "65464"}}, lim: &limits{},
			want: params{blksize: 65464, window: 1, oack: []option{{"blksize", "65464"}}}},
		{name: "blksize minimum", req: []option{{"blksize", "8"}},
			want: params{blksize: 8, window: 1, oack: []option{{"blksize", "8"}}}},
		{name: "blksize too small", req: []option{{"blksize", "7"}}, want: params{blksize: 512, window: 1}},
		{name: "blksize not a number", req: []option{{"blksize", "12a"}}, want: params{blksize: 512, window: 1}},
		{name: "blksize negative", req: []option{{"blksize", "-1"}}, want: params{blksize: 512, window: 1}},
		{name: "blksize empty", req: []option{{"blksize", ""}}, want: params{blksize: 512, window: 1}},
		{name: "case insensitive, echoed as sent", req: []option{{"BlkSize", "1000"}},
			want: params{blksize: 1000, window: 1, oack: []option{{"BlkSize", "1000"}}}},
		{name: "first occurrence wins", req: []option{{"blksize", "1000"}, {"BLKSIZE", "600"}},
			want: params{blksize: 1000, window: 1, oack: []option{{"blksize", "1000"}}}},
		{name: "tsize real size", req: []option{{"tsize", "0"}}, size: 123456,
			want: params{blksize: 512, window: 1, tsize: true, oack: []option{{"tsize", "123456"}}}},
		{name: "tsize empty file", req: []option{{"tsize", "0"}}, size: 0,
			want: params{blksize: 512, window: 1, tsize: true, oack: []option{{"tsize", "0"}}}},
		{name: "tsize unknown size", req: []option{{"tsize", "0"}}, size: -1, want: params{blksize: 512, window: 1}},
		{name: "timeout", req: []option{{"timeout", "3"}},
			want: params{blksize: 512, window: 1, timeout: 3 * time.Second, oack: []option{{"timeout", "3"}}}},
		{name: "timeout max", req: []option{{"timeout", "255"}},
			want: params{blksize: 512, window: 1, timeout: 255 * time.Second, oack: []option{{"timeout", "255"}}}},
		{name: "timeout zero", req: []option{{"timeout", "0"}}, want: params{blksize: 512, window: 1}},
		{name: "timeout too big", req: []option{{"timeout", "256"}}, want: params{blksize: 512, window: 1}},
		{name: "windowsize", req: []option{{"windowsize", "16"}},
			want: params{blksize: 512, window: 16, oack: []option{{"windowsize", "16"}}}},
		{name: "windowsize capped", req: []option{{"windowsize", "65535"}},
			want: params{blksize: 512, window: 64, oack: []option{{"windowsize", "64"}}}},
		{name: "windowsize server cap", req: []option{{"windowsize", "16"}}, lim: &limits{maxBlockSize: 1468, maxWindow: 4},
			want: params{blksize: 512, window: 4, oack: []option{{"windowsize", "4"}}}},
		{name: "windowsize zero", req: []option{{"windowsize", "0"}}, want: params{blksize: 512, window: 1}},
		{name: "msftwindow", req: []option{{"msftwindow", "31416"}},
			want: params{blksize: 512, window: 1, msft: true, oack: []option{{"msftwindow", "27182"}}}},
		{name: "msftwindow wrong magic", req: []option{{"msftwindow", "1"}}, want: params{blksize: 512, window: 1}},
		{name: "uefi style", size: 1 << 20,
			req: []option{{"blksize", "1468"}, {"tsize", "0"}, {"windowsize", "4"}},
			want: params{blksize: 1468, window: 4, tsize: true,
				oack: []option{{"blksize", "1468"}, {"tsize", "1048576"}, {"windowsize", "4"}}}},
		{name: "wds style", size: 10,
			req: []option{{"blksize", "1456"}, {"tsize", "0"}, {"msftwindow", "31416"}, {"mode", "x"}},
			want: params{blksize: 1456, window: 1, msft: true, tsize: true,
				oack: []option{{"blksize", "1456"}, {"tsize", "10"}, {"msftwindow", "27182"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lim := def
			if tt.lim != nil {
				lim = *tt.lim
			}
			got := negotiate(tt.req, tt.size, lim)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("negotiate(%v) =\n %+v\nwant\n %+v", tt.req, got, tt.want)
			}
		})
	}
}

func TestNumber(t *testing.T) {
	for s, want := range map[string]int{"0": 0, "512": 512, "0065464": 65464, "99999999999999999999": 1 << 30} {
		got, ok := number(s)
		if !ok || (got != want && !(want == 1<<30 && got >= want)) {
			t.Errorf("number(%q) = %d, %v; want %d", s, got, ok, want)
		}
	}
	for _, s := range []string{"", "-1", "+1", "1.5", " 1", "1 ", "0x10", "999999999999999999999"} {
		if _, ok := number(s); ok {
			t.Errorf("number(%q) accepted", s)
		}
	}
}

func TestClampWindow(t *testing.T) {
	for _, c := range [][3]int{{0, 64, 1}, {1, 64, 1}, {16, 64, 16}, {200, 64, 64}, {255, 8, 8}} {
		if got := clampWindow(c[0], c[1]); got != c[2] {
			t.Errorf("clampWindow(%d, %d) = %d, want %d", c[0], c[1], got, c[2])
		}
	}
}
