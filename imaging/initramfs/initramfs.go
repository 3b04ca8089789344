// Package initramfs builds the imaging agent's boot environment: a gzip'd
// newc cpio archive (the format the Linux kernel unpacks, see the kernel's
// Documentation/driver-api/early-userspace/buffer-format.rst) holding the
// agent as /init and the kernel modules it needs for network and disks,
// with their dependencies from modules.dep, in load order.
package initramfs

import (
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cavaliergopher/cpio"
)

// DefaultModules are the drivers an agent needs on common hardware and
// in virtual machines: network, disks, and the buses below them.
var DefaultModules = [...]string{
	"virtio_pci", "virtio_net", "virtio_blk", "virtio_scsi",
	"e1000", "e1000e", "igb", "r8169",
	"ahci", "nvme", "sd_mod",
}

// LoadList is the file in the archive listing the modules in load order,
// one path per line, relative to the modules directory.
const LoadList = "etc/netdeploy/modules"

// Options say what goes in.
type Options struct {
	// Agent is the static agent binary; it becomes /init.
	Agent string
	// ModulesDir is /lib/modules/<version> of the kernel that boots.
	ModulesDir string
	// Modules are module names ('-' and '_' alike); nil: DefaultModules.
	Modules []string
}

func (o Options) modules() []string {
	if o.Modules != nil {
		return o.Modules
	}
	return DefaultModules[:]
}

// modName is a module's name from its path: kernel/drivers/net/virtio_net.ko
// -> virtio_net.
func modName(p string) string {
	b := path.Base(p)
	for _, ext := range []string{".ko.xz", ".ko.zst", ".ko.gz", ".ko"} {
		if strings.HasSuffix(b, ext) {
			b = strings.TrimSuffix(b, ext)
			break
		}
	}
	return strings.ReplaceAll(b, "-", "_")
}

// maxDepLine caps a modules.dep line.
const maxDepLine = 1 << 20

// Resolve reads modulesDir/modules.dep and returns the paths of names and
// their dependencies, dependencies first, each once; names the kernel
// does not have are returned in missing (a kernel may build some in).
func Resolve(modulesDir string, names []string) (paths, missing []string, err error) {
	f, err := os.Open(filepath.Join(modulesDir, "modules.dep"))
	if err != nil {
		return nil, nil, fmt.Errorf("initramfs: %w", err)
	}
	defer f.Close()
	deps := map[string][]string{} // path -> its dependencies (paths)
	byName := map[string]string{} // name -> path
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), maxDepLine)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		mod = strings.TrimSpace(mod)
		deps[mod] = strings.Fields(rest)
		byName[modName(mod)] = mod
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("initramfs: modules.dep: %w", err)
	}
	seen := map[string]bool{}
	var visit func(p string, depth int) error
	visit = func(p string, depth int) error {
		if seen[p] {
			return nil
		}
		if depth > 64 {
			return fmt.Errorf("initramfs: modules.dep: dependency chain too deep at %s", p)
		}
		seen[p] = true
		// modules.dep lists a module's dependencies so that loading them
		// from last to first works (modprobe does so).
		d := deps[p]
		for i := len(d) - 1; i >= 0; i-- {
			if err := visit(d[i], depth+1); err != nil {
				return err
			}
		}
		paths = append(paths, p)
		return nil
	}
	for _, n := range names {
		p, ok := byName[strings.ReplaceAll(n, "-", "_")]
		if !ok {
			missing = append(missing, n)
			continue
		}
		if err := visit(p, 0); err != nil {
			return nil, nil, err
		}
	}
	return paths, missing, nil
}

// Build writes the archive to w and returns the modules it holds in load
// order and the requested modules the kernel lacks.
func Build(w io.Writer, o Options) (mods, missing []string, err error) {
	if o.Agent == "" {
		return nil, nil, errors.New("initramfs: no agent binary")
	}
	mods, missing, err = Resolve(o.ModulesDir, o.modules())
	if err != nil {
		return nil, nil, err
	}
	zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
	cw := cpio.NewWriter(zw)
	dirs := map[string]bool{}
	mkdirs := func(p string) error {
		var chain []string
		for d := path.Dir(p); d != "." && d != "/" && !dirs[d]; d = path.Dir(d) {
			chain = append(chain, d)
		}
		for i := len(chain) - 1; i >= 0; i-- {
			dirs[chain[i]] = true
			if err := cw.WriteHeader(&cpio.Header{Name: chain[i], Mode: cpio.TypeDir | 0o755, Links: 2}); err != nil {
				return err
			}
		}
		return nil
	}
	addFile := func(name, src string, mode cpio.FileMode) error {
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", src)
		}
		if err := mkdirs(name); err != nil {
			return err
		}
		if err := cw.WriteHeader(&cpio.Header{Name: name, Mode: cpio.TypeReg | mode, Size: st.Size(), Links: 1}); err != nil {
			return err
		}
		n, err := io.Copy(cw, f)
		if err == nil && n != st.Size() {
			err = fmt.Errorf("%s changed while read", src)
		}
		return err
	}
	addBytes := func(name string, b []byte) error {
		if err := mkdirs(name); err != nil {
			return err
		}
		if err := cw.WriteHeader(&cpio.Header{Name: name, Mode: cpio.TypeReg | 0o644, Size: int64(len(b)), Links: 1}); err != nil {
			return err
		}
		_, err := cw.Write(b)
		return err
	}
	for _, d := range []string{"dev", "proc", "sys", "tmp"} {
		if err := mkdirs(d + "/x"); err != nil {
			return nil, nil, fmt.Errorf("initramfs: %w", err)
		}
	}
	if err := addFile("init", o.Agent, 0o755); err != nil {
		return nil, nil, fmt.Errorf("initramfs: agent: %w", err)
	}
	modRoot := "lib/modules/" + filepath.Base(o.ModulesDir)
	for _, m := range mods {
		if err := addFile(modRoot+"/"+m, filepath.Join(o.ModulesDir, filepath.FromSlash(m)), 0o644); err != nil {
			return nil, nil, fmt.Errorf("initramfs: module: %w", err)
		}
	}
	list := strings.Join(mods, "\n")
	if list != "" {
		list += "\n"
	}
	if err := addBytes(LoadList, []byte(list)); err != nil {
		return nil, nil, fmt.Errorf("initramfs: %w", err)
	}
	if err := cw.Close(); err != nil {
		return nil, nil, fmt.Errorf("initramfs: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, nil, fmt.Errorf("initramfs: %w", err)
	}
	return mods, missing, nil
}

// Cached returns the path of an archive for o in cacheDir, building it
// only when an input changed: the key hashes the agent's and every
// module's path, size and modification time.
func Cached(cacheDir string, o Options) (string, error) {
	mods, _, err := Resolve(o.ModulesDir, o.modules())
	if err != nil {
		return "", err
	}
	h := sha256.New()
	inputs := append([]string{o.Agent}, func() []string {
		out := make([]string, len(mods))
		for i, m := range mods {
			out[i] = filepath.Join(o.ModulesDir, filepath.FromSlash(m))
		}
		return out
	}()...)
	sort.Strings(inputs[1:])
	for _, p := range inputs {
		st, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("initramfs: %w", err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\n", p, st.Size(), st.ModTime().UnixNano())
	}
	key := hex.EncodeToString(h.Sum(nil))[:16]
	out := filepath.Join(cacheDir, "agent-initrd-"+key+".cpio.gz")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	tmp, err := os.CreateTemp(cacheDir, ".agent-initrd-*")
	if err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if _, _, err := Build(bw, o); err != nil {
		tmp.Close()
		return "", err
	}
	err = bw.Flush()
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	// Older archives of this cache are stale now.
	old, _ := filepath.Glob(filepath.Join(cacheDir, "agent-initrd-*.cpio.gz"))
	for _, p := range old {
		if p != out {
			os.Remove(p)
		}
	}
	return out, nil
}
