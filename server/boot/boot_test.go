package boot

import (
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestClean(t *testing.T) {
	for _, tc := range []struct{ in, out string }{
		{"undionly.kpxe", "undionly.kpxe"},
		{"/undionly.kpxe", "undionly.kpxe"},
		{`\Boot\x64\wdsmgfw.efi`, "Boot/x64/wdsmgfw.efi"},
		{"a//b/./c", "a/b/c"},
		{"../etc/passwd", ""},
		{"a/../../etc/passwd", ""},
		{`..\..\windows`, ""},
		{"a/..", ""},
		{"C:/windows", ""},
		{`c:\boot`, ""},
		{"a\x00b", ""},
		{"", ""},
		{"/", ""},
		{".", ""},
	} {
		got, err := Clean(tc.in)
		if tc.out == "" {
			if !errors.Is(err, ErrInvalidPath) {
				t.Errorf("Clean(%q) = %q, %v; want ErrInvalidPath", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.out {
			t.Errorf("Clean(%q) = %q, %v; want %q", tc.in, got, err, tc.out)
		}
	}
}

func TestChoose(t *testing.T) {
	all := func(string) bool { return true }
	only := func(names ...string) func(string) bool {
		return func(n string) bool {
			for _, x := range names {
				if x == n {
					return true
				}
			}
			return false
		}
	}
	url := ScriptURL(net.IPv4(198, 18, 0, 1), 80)
	if url != "http://198.18.0.1/boot.ipxe" {
		t.Fatalf("script url %s", url)
	}
	if u := ScriptURL(net.IPv4(198, 18, 0, 1), 8080); u != "http://198.18.0.1:8080/boot.ipxe" {
		t.Fatalf("script url %s", u)
	}
	for _, tc := range []struct {
		arch Arch
		ipxe bool
		has  func(string) bool
		file string
		http bool
		err  error
	}{
		{ArchBIOS, false, all, "undionly.kpxe", false, nil},
		{ArchEFIBC, false, all, "snponly.efi", false, nil},
		{ArchEFIX64, false, all, "snponly.efi", false, nil},
		{ArchEFIX64, false, only("ipxe.efi"), "ipxe.efi", false, nil},
		{ArchEFIARM64, false, only("undionly.kpxe", "ipxe.efi"), "", false, ErrNoBinary},
		{ArchEFIARM64, false, only("ipxe-arm64.efi"), "ipxe-arm64.efi", false, nil},
		{ArchEFIIA32, false, all, "", false, ErrUnknownArch},
		{Arch(42), false, all, "", false, ErrUnknownArch},
		{ArchBIOS, true, all, url, true, nil},
		{Arch(42), true, all, url, true, nil},
		{ArchHTTPX64, false, all, "http://198.18.0.1/snponly.efi", true, nil},
		{ArchBIOS, false, only(), "", false, ErrNoBinary},
	} {
		c, err := Choose(tc.arch, tc.ipxe, url, tc.has)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%s ipxe=%v: err %v, want %v", tc.arch, tc.ipxe, err, tc.err)
			}
			continue
		}
		if err != nil || c.File != tc.file || c.HTTP != tc.http {
			t.Errorf("%s ipxe=%v: %+v %v, want %s http=%v", tc.arch, tc.ipxe, c, err, tc.file, tc.http)
		}
	}
	if ArchEFIBC.String() != "efi-x64" || ArchBIOS.String() != "bios" || Arch(42).String() != "arch-42" {
		t.Error("arch names")
	}
}

func write(t *testing.T, p, body string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readAll(t *testing.T, f File) string {
	t.Helper()
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != f.Size() {
		t.Fatalf("size %d, read %d", f.Size(), len(b))
	}
	return string(b)
}

func TestFS(t *testing.T) {
	dir := t.TempDir()
	root, ipxe, outside := filepath.Join(dir, "root"), filepath.Join(dir, "ipxe"), filepath.Join(dir, "secret")
	write(t, filepath.Join(root, "Boot", "x64", "wdsmgfw.efi"), "wds")
	write(t, filepath.Join(root, "snponly.efi"), "override")
	write(t, filepath.Join(ipxe, "undionly.kpxe"), "undi")
	write(t, filepath.Join(ipxe, "snponly.efi"), "snp")
	write(t, filepath.Join(ipxe, "not-served.txt"), "no")
	write(t, outside, "secret")
	write(t, filepath.Join(dir, "vmlinuz"), "kernel")
	if err := os.Symlink(outside, filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(root, "etc")); err != nil {
		t.Fatal(err)
	}
	os.Symlink("Boot/x64/wdsmgfw.efi", filepath.Join(root, "inside"))
	f := &FS{Root: root, IPXEDir: ipxe, Script: func() []byte { return []byte("#!ipxe\n") }, Entry: Entry{Kernel: filepath.Join(dir, "vmlinuz")}}

	for name, want := range map[string]string{
		"undionly.kpxe":         "undi",
		"snponly.efi":           "override", // the TFTP root shadows the iPXE dir
		`\Boot\x64\wdsmgfw.efi`: "wds",
		`\BOOT\X64\WDSMGFW.EFI`: "wds",
		"/boot/X64/WdsMgFw.efi": "wds",
		"boot.ipxe":             "#!ipxe\n",
		"netdeploy/kernel":      "kernel",
		"inside":                "wds", // symlink staying inside
	} {
		file, err := f.Open(name)
		if err != nil {
			t.Errorf("Open(%q): %v", name, err)
			continue
		}
		if got := readAll(t, file); got != want {
			t.Errorf("Open(%q) = %q, want %q", name, got, want)
		}
	}
	for _, name := range []string{"escape", "etc/passwd", "../secret", "a/../../secret", "x\x00y"} {
		file, err := f.Open(name)
		if err == nil {
			file.Close()
			t.Errorf("Open(%q) succeeded; must be refused", name)
		} else if !errors.Is(err, ErrInvalidPath) {
			t.Errorf("Open(%q): %v, want ErrInvalidPath", name, err)
		}
	}
	for _, name := range []string{"not-served.txt", "missing", "netdeploy/initrd", "Boot"} {
		if _, err := f.Open(name); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Open(%q): %v, want not exist", name, err)
		}
	}
	if !f.Has("undionly.kpxe") || f.Has("ipxe.efi") {
		t.Error("Has")
	}
}

func TestScript(t *testing.T) {
	base := BaseURL(net.IPv4(198, 18, 0, 1), 8080)
	s := string(Script(ScriptParams{BaseURL: base, Entry: Entry{Kernel: "/k", Initrd: "/i", Cmdline: "console=ttyS0"}}))
	for _, want := range []string{"#!ipxe\n", "kernel http://198.18.0.1:8080/netdeploy/kernel?mac=${mac:hexhyp} initrd=initrd console=ttyS0\n", "initrd --name initrd http://198.18.0.1:8080/netdeploy/initrd?mac=${mac:hexhyp}\n", "boot\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q:\n%s", want, s)
		}
	}
	s = string(Script(ScriptParams{BaseURL: base, Entry: Entry{Kernel: "/k"}}))
	if strings.Contains(s, "initrd") {
		t.Errorf("no initrd configured but script mentions one:\n%s", s)
	}
	if s := string(Script(ScriptParams{BaseURL: base})); !strings.Contains(s, "no boot entry") || strings.Contains(s, "kernel http") {
		t.Errorf("no entry:\n%s", s)
	}
	if s := string(Script(ScriptParams{BaseURL: base, Entry: Entry{Kernel: "/k"}, Pending: true})); !strings.Contains(s, "chain --autofree http://198.18.0.1:8080/boot.ipxe") || strings.Contains(s, "kernel http") {
		t.Errorf("pending:\n%s", s)
	}
	if s := string(Script(ScriptParams{BaseURL: base, Entry: Entry{Kernel: "/k"}, Denied: true})); !strings.Contains(s, "denied") || strings.Contains(s, "kernel http") {
		t.Errorf("denied:\n%s", s)
	}
}

// FuzzClean: whatever a client sends, a cleaned name stays inside the root.
func FuzzClean(f *testing.F) {
	for _, s := range []string{"undionly.kpxe", `\Boot\x64\wdsmgfw.efi`, "../../etc/passwd", "a/../b", "/", "C:\\x", "a\x00b", "....//", "./.././", "%2e%2e/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got, err := Clean(name)
		if err != nil {
			if !errors.Is(err, ErrInvalidPath) {
				t.Fatalf("Clean(%q): unexpected error %v", name, err)
			}
			return
		}
		if got == "" || strings.HasPrefix(got, "/") || strings.ContainsRune(got, 0) || strings.Contains(got, `\`) {
			t.Fatalf("Clean(%q) = %q", name, got)
		}
		for _, part := range strings.Split(got, "/") {
			if part == ".." || part == "." || part == "" {
				t.Fatalf("Clean(%q) = %q has component %q", name, got, part)
			}
		}
	})
}
