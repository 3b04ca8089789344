package imaging

import (
	"errors"
	"strings"
	"testing"
)

func TestParseManifest(t *testing.T) {
	m, err := ParseManifest("w.img.json", []byte(`{
		"name": "Windows 11", "description": "line one\nline two", "arch": "arm64", "size": 68719476736,
		"sha256": "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08", "target_disk": "nvme0n1"
	}`))
	want := Manifest{Name: "Windows 11", Description: "line one\nline two", Arch: "arm64", Size: 68719476736,
		SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", TargetDisk: "nvme0n1"}
	if err != nil || m != want {
		t.Fatalf("manifest = %+v, %v", m, err)
	}
	for _, ok := range []string{`{}`, ` {"name": null, "size": null} `, `{"arch": ""}`} {
		if _, err := ParseManifest("w.img.json", []byte(ok)); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}

	for _, tc := range []struct {
		doc, field string
		want       error
		says       string
	}{
		{`{"name": "x", "colour": "red"}`, "colour", ErrUnknownField, `manifest dir/w.img.json: field "colour": unknown field (known: name, description, arch, size, sha256, target_disk)`},
		{`{"Name": "x"}`, "Name", ErrUnknownField, `field "Name"`},
		{`{"name": "a", "name": "b"}`, "name", ErrBadManifest, "given twice"},
		{`{"name": 5}`, "name", ErrBadManifest, "want a string"},
		{`{"name": "a\u0007b"}`, "name", ErrBadManifest, "control character U+0007"},
		{`{"arch": "x64"}`, "arch", ErrBadManifest, "want amd64, x86, arm64, arm or ia64"},
		{`{"size": -1}`, "size", ErrBadManifest, "positive whole number"},
		{`{"size": 0}`, "size", ErrBadManifest, "positive whole number"},
		{`{"size": 1.5}`, "size", ErrBadManifest, "positive whole number"},
		{`{"size": "10"}`, "size", ErrBadManifest, "positive whole number"},
		{`{"size": 1e400}`, "size", ErrBadManifest, "positive whole number"},
		{`{"sha256": "abc"}`, "sha256", ErrBadManifest, "64 hex digits"},
		{`{"sha256": "zz86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}`, "sha256", ErrBadManifest, "64 hex digits"},
		{`{"target_disk": ["a"]}`, "target_disk", ErrBadManifest, "want a string"},
		{``, "", ErrBadManifest, "empty file"},
		{`[1]`, "", ErrBadManifest, "want a JSON object"},
		{`"name"`, "", ErrBadManifest, "want a JSON object"},
		{`{"name": "a"} {}`, "", ErrBadManifest, "after the JSON object"},
		{`{"name": "a",}`, "", ErrBadManifest, "not JSON"},
		{`{"name": "a"`, "", ErrBadManifest, "not JSON"},
		{`{"name" "a"}`, "name", ErrBadManifest, "not JSON"},
		{"{\"name\": \"" + strings.Repeat("a", MaxManifestSize) + "\"}", "", ErrBadManifest, "at most"},
	} {
		_, err := ParseManifest("dir/w.img.json", []byte(tc.doc))
		var me *ManifestError
		if !errors.As(err, &me) || !errors.Is(err, tc.want) || me.Field != tc.field || me.File != "dir/w.img.json" || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%.40s: err = %v (field %q), want %v in field %q saying %q", tc.doc, err, fieldOf(me), tc.want, tc.field, tc.says)
		}
	}
}

func fieldOf(e *ManifestError) string {
	if e == nil {
		return "<no ManifestError>"
	}
	return e.Field
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"name": "x", "arch": "amd64", "size": 5, "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}`))
	f.Add([]byte(`{"colour": 1}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest("f.img.json", data)
		if err != nil {
			var me *ManifestError
			if !errors.As(err, &me) {
				t.Fatalf("error %v is a %T", err, err)
			}
			return
		}
		if m.Size < 0 || (m.SHA256 != "" && len(m.SHA256) != 64) {
			t.Fatalf("manifest %+v", m)
		}
	})
}
